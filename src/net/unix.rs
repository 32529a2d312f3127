//! `UnixListener` and `UnixStream`.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use super::stream::{Stream, stream_methods};
use super::tcp::{adopt, release};
use crate::driver::fd::SharedFd;
use crate::driver::op::Op;
use crate::op::socket::Connect;

const BACKLOG: i32 = 4096;

/// Asks std for a Unix socket's own or peer address (std's `SocketAddr` has no public
/// constructor for every kind of address).
fn std_addr(fd: RawFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: `fd` is a live Unix socket owned by the caller for the duration of this call;
    // `ManuallyDrop` makes sure the temporary std value never closes it.
    let s = ManuallyDrop::new(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) });
    if peer { s.peer_addr() } else { s.local_addr() }
}

/// A Unix-domain stream socket server.
///
/// # Examples
///
/// ```
/// use ringloop::net::{UnixListener, UnixStream};
/// let dir = std::env::temp_dir().join(format!("ringloop-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("sock");
/// let _ = std::fs::remove_file(&path);
/// ringloop::run(async {
///     let listener = UnixListener::bind(&path)?;
///     let client = UnixStream::connect(&path).await?;
///     let (server_side, _addr) = listener.accept().await?;
///     let (res, _) = client.write_all(b"hi".to_vec()).await;
///     res?;
///     let (res, buf) = server_side.read(Vec::with_capacity(8)).await;
///     assert_eq!(&buf[..res?], b"hi");
///     std::io::Result::Ok(())
/// }).unwrap();
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct UnixListener {
    fd: SharedFd,
}

impl UnixListener {
    /// Binds to `path` and listens (synchronous, as std's). The path must not exist.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the path exists, `NotFound` if its directory does not, `InvalidInput` for a
    /// path longer than a socket address holds.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(BACKLOG)?;
        Ok(UnixListener {
            fd: SharedFd::new(socket.into()),
        })
    }

    /// Takes over a listening std socket (made nonblocking).
    ///
    /// # Errors
    ///
    /// The kernel's error from `fcntl`.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            fd: adopt(listener.into())?,
        })
    }

    /// Gives the socket back as a std listener (in blocking mode).
    ///
    /// # Errors
    ///
    /// `ResourceBusy` if a cancelled accept on it is still in the kernel.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        release(self.fd).map(Into::into)
    }

    /// Waits for a connection and returns it with the peer's address (usually unnamed).
    /// Cancel-safe as [`TcpListener::accept`](super::TcpListener::accept).
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EMFILE` when the fd table is full.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, _) = crate::op::socket::accept(&self.fd).await?;
        let addr = std_addr(fd.as_raw_fd(), true)?;
        Ok((
            UnixStream {
                io: Stream::new(SharedFd::new(fd)),
            },
            addr,
        ))
    }

    /// The address this listener is bound to.
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        std_addr(self.fd.raw(), false)
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Borrows the socket's fd, e.g. for `socket2::SockRef` to set options ringloop has no method for.
impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A Unix-domain stream connection, with the same owned-buffer I/O as
/// [`TcpStream`](super::TcpStream): one task may read while another writes (share it with an
/// `Rc`), and it belongs to its loop (move it with `into_std` / `from_std`).
pub struct UnixStream {
    io: Stream,
}

impl UnixStream {
    /// Connects to the socket at `path`.
    ///
    /// # Errors
    ///
    /// `NotFound` if nothing is bound there, `ConnectionRefused` if nothing listens,
    /// `ResourceBusy` if the listener's backlog is full (epoll backend).
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        let fd = SharedFd::new(socket.into());
        Op::new(Connect::new(fd.clone(), addr)).await?;
        Ok(UnixStream {
            io: Stream::new(fd),
        })
    }

    /// A connected pair of streams (`socketpair`).
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EMFILE`.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        let wrap = |s: Socket| UnixStream {
            io: Stream::new(SharedFd::new(s.into())),
        };
        Ok((wrap(a), wrap(b)))
    }

    /// Takes over a connected std stream (made nonblocking).
    ///
    /// # Errors
    ///
    /// The kernel's error from `fcntl`.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            io: Stream::new(adopt(stream.into())?),
        })
    }

    /// Gives the connection back as a std stream (in blocking mode).
    ///
    /// # Errors
    ///
    /// As [`TcpStream::into_std`](super::TcpStream::into_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        release(self.io.into_fd()).map(Into::into)
    }

    stream_methods!();

    /// This end's address (usually unnamed for a connecting socket).
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        std_addr(self.io.fd.raw(), false)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` if the connection is gone.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        std_addr(self.io.fd.raw(), true)
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd.raw()
    }
}

/// Borrows the socket's fd, e.g. for `socket2::SockRef` to set options ringloop has no method for.
impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd.as_fd()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.io.fd.raw())
            .finish()
    }
}
