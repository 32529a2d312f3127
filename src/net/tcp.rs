//! `TcpListener` and `TcpStream`.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::addr::{ToSocketAddrs, resolve};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Op};
use crate::op::rw::{Recv, Send};
use crate::op::socket::{Accept, Connect};

/// The listen backlog; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

fn to_std_addr(addr: &SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the kernel returned a non-IP address for a TCP socket",
        )
    })
}

/// Tries `f` on each address in turn; the last error if none works.
fn first_ok<T>(
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
    /// Binds to `addr` and starts listening (`SO_REUSEADDR`, backlog up to `somaxconn`), as std's
    /// `TcpListener::bind`: synchronous, and usable before a loop runs. With several addresses the
    /// first that binds wins.
    ///
    /// # Errors
    ///
    /// Resolution or socket errors, e.g. `AddrInUse` or `PermissionDenied` for a privileged port.
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<TcpListener> {
        first_ok(addr.to_socket_addrs()?, |addr| {
            let socket = Socket::new(
                Domain::for_address(addr),
                Type::STREAM.nonblocking(),
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            Ok(TcpListener {
                fd: SharedFd::new(socket.into()),
            })
        })
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// Cancel-safe: if the future is dropped while the kernel accepts a connection anyway, that
    /// connection is closed, never leaked.
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EMFILE` ("too many open files") when the fd table is full; the
    /// listener stays usable and a later `accept` succeeds once fds are freed.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = Op::new(Accept::new(self.fd.clone())).await?;
        Ok((
            TcpStream {
                fd: SharedFd::new(fd),
            },
            to_std_addr(&addr)?,
        ))
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
    fd: SharedFd,
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
        Ok(TcpStream { fd })
    }

    /// Reads into `buf` from its start up to its capacity and sets its length to the bytes read.
    /// `Ok(0)` means the peer closed its side (or `buf` has no capacity).
    ///
    /// Cancel-safe: if the future is dropped (say, by a timeout) after the kernel received data
    /// into it, those bytes are returned first by the next read on this stream.
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `ConnectionReset` when the peer reset the connection.
    pub async fn read<B: IoBufMut>(&self, mut buf: B) -> BufResult<usize, B> {
        self.fd.settled(Interest::Read).await;
        if self.fd.has_stash() {
            let cap = buf.bytes_total();
            // SAFETY: the buffer is writable for `bytes_total` bytes.
            if let Some(n) = unsafe { self.fd.take_stash(buf.stable_mut_ptr(), cap) } {
                // SAFETY: `take_stash` initialised the first `n <= cap` bytes.
                unsafe { buf.set_init(n) };
                return (Ok(n), buf);
            }
        }
        Op::new(Recv::new(self.fd.clone(), buf)).await
    }

    /// Writes some of `buf`'s initialised bytes; returns how many.
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `BrokenPipe` or `ConnectionReset` when the peer is gone (never a
    /// `SIGPIPE`).
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.fd.settled(Interest::Write).await;
        Op::new(Send::new(self.fd.clone(), buf)).await
    }

    /// Writes all of `buf`'s initialised bytes.
    ///
    /// # Errors
    ///
    /// As [`write`](TcpStream::write); `WriteZero` if the kernel accepted no bytes. On error, an
    /// unknown prefix of the bytes may have been sent.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        let total = buf.bytes_init();
        let mut buf = buf;
        let mut written = 0;
        while written < total {
            let (res, slice) = self.write(buf.slice(written..total)).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the socket accepted no more bytes",
                        )),
                        buf,
                    );
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Shuts down the read half, the write half, or both (the peer reads end-of-stream after a
    /// write shutdown).
    ///
    /// # Errors
    ///
    /// `NotConnected` if the connection is gone.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.fd).shutdown(how)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    ///
    /// # Errors
    ///
    /// The kernel's error from `setsockopt`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockopt`.
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).tcp_nodelay()
    }

    /// This end's address.
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.fd).local_addr()?)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` if the connection is gone.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.fd).peer_addr()?)
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}
