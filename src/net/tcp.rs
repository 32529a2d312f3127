//! `TcpListener` (and its builder) and `TcpStream`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::addr::{ToSocketAddrs, resolve};
use super::stream::{Stream, stream_methods};
use crate::driver::fd::SharedFd;
use crate::driver::op::Op;
use crate::op::socket::Connect;

/// The default listen backlog; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

pub(crate) fn to_std_addr(addr: &SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the kernel returned a non-IP address for an IP socket",
        )
    })
}

/// Tries `f` on each address in turn; the last error if none works.
pub(crate) fn first_ok<T>(
    addrs: impl IntoIterator<Item = SocketAddr>,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addrs {
        match f(addr) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no socket address to use")))
}

/// Makes a std socket nonblocking for the loop (`from_std`).
pub(crate) fn adopt(fd: OwnedFd) -> io::Result<SharedFd> {
    SockRef::from(&fd).set_nonblocking(true)?;
    Ok(SharedFd::new(fd))
}

/// Gives the fd back in blocking mode, as std's types expect (`into_std`).
pub(crate) fn release(fd: SharedFd) -> io::Result<OwnedFd> {
    let fd = fd.into_owned()?;
    SockRef::from(&fd).set_nonblocking(false)?;
    Ok(fd)
}

/// Options for a [`TcpListener`]: `SO_REUSEPORT` (so N loops on N threads can share one port,
/// the kernel spreading connections between them) and the listen backlog.
///
/// # Examples
///
/// ```
/// use ringloop::net::TcpListener;
/// let a = TcpListener::builder().reuse_port(true).backlog(1024).bind("127.0.0.1:0").unwrap();
/// let port = a.local_addr().unwrap().port();
/// // A second listener on the same port, for a second loop on another thread.
/// let b = TcpListener::builder().reuse_port(true).bind(("127.0.0.1", port)).unwrap();
/// assert_eq!(b.local_addr().unwrap().port(), port);
/// ```
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    reuse_port: bool,
    backlog: u32,
}

impl ListenerBuilder {
    /// Sets `SO_REUSEPORT` (default off). Every listener sharing the port must set it.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The listen backlog (default 4096; the kernel caps it at `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Binds and listens, as [`TcpListener::bind`].
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`].
    pub fn bind(self, addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        first_ok(addr.to_socket_addrs()?, |addr| {
            let socket = Socket::new(
                Domain::for_address(addr),
                Type::STREAM.nonblocking(),
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            if self.reuse_port {
                socket.set_reuse_port(true)?;
            }
            socket.bind(&addr.into())?;
            socket.listen(self.backlog.min(i32::MAX as u32) as i32)?;
            Ok(TcpListener {
                fd: SharedFd::new(socket.into()),
            })
        })
    }
}

/// A TCP socket server, listening for connections.
///
/// # Examples
///
/// ```
/// use ringloop::net::{TcpListener, TcpStream};
/// ringloop::run(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     let client = ringloop::spawn(async move { TcpStream::connect(addr).await });
///     let (_server_side, peer) = listener.accept().await?;
///     let client = client.await??;
///     assert_eq!(peer, client.local_addr()?);
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub struct TcpListener {
    fd: SharedFd,
}

impl TcpListener {
    /// Binds to `addr` and starts listening (`SO_REUSEADDR`, backlog 4096 capped by
    /// `somaxconn`), as std's `TcpListener::bind`: synchronous, and usable before a loop runs.
    /// With several addresses the first that binds wins. See [`builder`](Self::builder) for
    /// `SO_REUSEPORT` and the backlog.
    ///
    /// # Errors
    ///
    /// Resolution or socket errors, e.g. `AddrInUse` or `PermissionDenied` for a privileged port.
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        Self::builder().bind(addr)
    }

    /// Options for binding: `SO_REUSEPORT` and the backlog.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder {
            reuse_port: false,
            backlog: BACKLOG,
        }
    }

    /// Takes over a listening std socket (made nonblocking).
    ///
    /// # Errors
    ///
    /// The kernel's error from `fcntl`.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            fd: adopt(listener.into())?,
        })
    }

    /// Gives the socket back as a std listener (in blocking mode).
    ///
    /// # Errors
    ///
    /// `ResourceBusy` if a cancelled accept on it is still in the kernel.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        release(self.fd).map(Into::into)
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// On io_uring (Linux 5.19+) the first `accept` arms one multishot accept that stays armed:
    /// connections that arrive while nobody awaits `accept` wait in the listener's queue (up to
    /// 64; past that they wait in the kernel's backlog), and dropping the listener closes them.
    ///
    /// Cancel-safe: if the future is dropped, no connection is lost or leaked. With a multishot
    /// accept a connection it took waits for the next `accept`; with a one-shot accept op (epoll
    /// does not need one) a connection the kernel accepted anyway is closed.
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EMFILE` ("too many open files") when the fd table is full; the
    /// listener stays usable and a later `accept` succeeds once fds are freed.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = loop {
            let (fd, addr) = crate::op::socket::accept(&self.fd).await?;
            // A multishot accept gives no address: ask the socket.
            match addr.map_or_else(|| SockRef::from(&fd).peer_addr(), Ok) {
                Ok(addr) => break (fd, addr),
                // Reset before anyone looked at it: nothing to serve, take the next one.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
                Err(e) => return Err(e),
            }
        };
        let fd = SharedFd::new(fd);
        if let Some(driver) = crate::driver::current() {
            driver.register_direct(&fd);
        }
        let stream = TcpStream {
            io: Stream::tcp(fd),
        };
        Ok((stream, to_std_addr(&addr)?))
    }

    /// The address this listener is bound to (with the real port after binding port 0).
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.fd).local_addr()?)
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Borrows the socket's fd, e.g. for `socket2::SockRef` to set options ringloop has no method for.
impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A TCP connection.
///
/// Reads and writes take an owned buffer and give it back: `let (res, buf) = s.read(buf).await;`.
///
/// # Reading and writing from two tasks
///
/// Every method takes `&self`, so there is no `into_split`: share the stream with an `Rc` and let
/// one task `read` (or `recv_pooled`) while another `write_all`s. One read and one write may be
/// in flight at the same time on either backend, as with tokio's split halves.
///
/// # A stream belongs to its loop
///
/// A `TcpStream` is `!Send`: its fd is registered with the loop that made it (its ring or its
/// epoll set), and the compiler's complaint when it is moved to a thread names that private
/// state. To hand a connection to another thread or another loop of a
/// [`LoopPool`](crate::LoopPool), turn it into a std stream with
/// [`into_std`](TcpStream::into_std), send that, and [`from_std`](TcpStream::from_std) it inside
/// the other loop. The same holds for every socket, file and [`AsyncFd`](crate::io::AsyncFd).
///
/// # Examples
///
/// ```no_run
/// use ringloop::net::TcpStream;
/// ringloop::run(async {
///     let stream = TcpStream::connect("127.0.0.1:7000").await?;
///     let (res, _) = stream.write_all(b"ping".to_vec()).await;
///     res?;
///     let (res, buf) = stream.read(Vec::with_capacity(64)).await;
///     println!("got {} bytes: {:?}", res?, buf);
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub struct TcpStream {
    io: Stream,
}

impl TcpStream {
    /// Opens a connection to `addr`: a `SocketAddr`, `"host:port"`, `("host", port)`, ... (see
    /// [`ToSocketAddrs`]). Host names resolve on the blocking pool; each resolved address is tried
    /// in turn.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens, `TimedOut` or `HostUnreachable` for an unreachable
    /// host (wrap the call in [`timeout`](crate::time::timeout) to bound it), resolution errors.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addrs = resolve(&addr).await?;
        let mut last = None;
        for addr in addrs {
            match Self::connect_one(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        let fd = SharedFd::new(socket.into());
        Op::new(Connect::new(fd.clone(), addr.into())).await?;
        Ok(TcpStream {
            io: Stream::tcp(fd),
        })
    }

    /// Takes over a connected std stream (made nonblocking).
    ///
    /// # Errors
    ///
    /// The kernel's error from `fcntl`.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: Stream::tcp(adopt(stream.into())?),
        })
    }

    /// Gives the connection back as a std stream (in blocking mode).
    ///
    /// # Errors
    ///
    /// `ResourceBusy` if a cancelled op on it is still in the kernel, or an error if bytes a
    /// cancelled read received are still unread (they would be lost).
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        release(self.io.into_fd()).map(Into::into)
    }

    stream_methods!();

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Errors
    ///
    /// The kernel's error from `setsockopt`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        SockRef::from(&self.io.fd).set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockopt`.
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(&self.io.fd).tcp_nodelay()
    }

    /// This end's address.
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.io.fd).local_addr()?)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` if the connection is gone.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.io.fd).peer_addr()?)
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd.raw()
    }
}

/// Borrows the socket's fd, e.g. for `socket2::SockRef` to set options ringloop has no method for.
impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd.as_fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.io.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}
