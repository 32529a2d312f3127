//! `UdpSocket`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::addr::{ToSocketAddrs, resolve};
use super::tcp::{adopt, first_ok, release, to_std_addr};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Op};
use crate::op::msg::{RecvMsg, SendMsg};
use crate::op::rw::{Recv, Send, Source};

/// A UDP socket.
///
/// # Examples
///
/// ```
/// use ringloop::net::UdpSocket;
/// ringloop::run(async {
///     let a = UdpSocket::bind("127.0.0.1:0")?;
///     let b = UdpSocket::bind("127.0.0.1:0")?;
///     let (res, _) = a.send_to(b"hi".to_vec(), b.local_addr()?).await;
///     res?;
///     let (res, buf) = b.recv_from(Vec::with_capacity(64)).await;
///     let (n, from) = res?;
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr()?));
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub struct UdpSocket {
    fd: SharedFd,
}

impl UdpSocket {
    /// Binds to `addr` (synchronous, as std's). With several addresses the first that binds wins.
    ///
    /// # Errors
    ///
    /// Resolution or socket errors, e.g. `AddrInUse`.
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<UdpSocket> {
        first_ok(addr.to_socket_addrs()?, |addr| {
            let socket = Socket::new(
                Domain::for_address(addr),
                Type::DGRAM.nonblocking(),
                Some(Protocol::UDP),
            )?;
            socket.bind(&addr.into())?;
            Ok(UdpSocket {
                fd: SharedFd::new(socket.into()),
            })
        })
    }

    /// Sets the default peer (synchronous, as std's): [`send`](Self::send) goes there and
    /// [`recv`](Self::recv) only takes its datagrams.
    ///
    /// # Errors
    ///
    /// Resolution or socket errors.
    pub fn connect(&self, addr: impl std::net::ToSocketAddrs) -> io::Result<()> {
        first_ok(addr.to_socket_addrs()?, |addr| {
            SockRef::from(&self.fd).connect(&addr.into())
        })
    }

    /// Takes over a std socket (made nonblocking).
    ///
    /// # Errors
    ///
    /// The kernel's error from `fcntl`.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            fd: adopt(socket.into())?,
        })
    }

    /// Gives the socket back as a std socket (in blocking mode).
    ///
    /// # Errors
    ///
    /// `ResourceBusy` if a cancelled op on it is still in the kernel.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        release(self.fd).map(Into::into)
    }

    /// Sends `buf`'s initialised bytes as one datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// `NotConnected` without [`connect`](Self::connect); `ConnectionRefused` after an ICMP port
    /// unreachable from the peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        Op::new(Send::datagram(self.fd.clone(), buf)).await
    }

    /// Receives one datagram from the connected peer into `buf` (from its start up to its
    /// capacity). A datagram longer than that is never cut silently: its first bytes are in
    /// `buf` and the result is a [`TruncatedDatagram`] error.
    ///
    /// Cancel-safe: if the future is dropped (say, by a timeout) after the kernel delivered a
    /// datagram to it, the next `recv` or [`recv_from`](Self::recv_from) on this socket returns
    /// that datagram first, whole (as much as the dropped receive's buffer held), in order.
    ///
    /// # Errors
    ///
    /// - `InvalidData` carrying a [`TruncatedDatagram`] (see [`TruncatedDatagram::of`]) when
    ///   the datagram did not fit: the buffer holds its first bytes, the rest is gone;
    /// - the kernel's error, e.g. `ConnectionRefused` after an ICMP port unreachable.
    pub async fn recv<B: IoBufMut>(&self, mut buf: B) -> BufResult<usize, B> {
        // A dropped receive still in the kernel goes first, and what it took comes out first.
        self.fd.settled(Interest::Read).await;
        if let Some(stashed) = self.fd.take_datagram() {
            let res = stashed.and_then(|d| {
                let (len, held) = d.copy_into(&mut buf);
                TruncatedDatagram::check(len, held, None)
            });
            return (res, buf);
        }
        let (res, buf) = Op::new(Recv::new(self.fd.clone(), buf, Source::Datagram)).await;
        match res {
            Ok(len) => (TruncatedDatagram::check(len, buf.bytes_total(), None), buf),
            Err(e) => (Err(e), buf),
        }
    }

    /// Sends `buf`'s initialised bytes as one datagram to `addr` (host names resolve on the
    /// blocking pool; the first address is used).
    ///
    /// # Errors
    ///
    /// Resolution or socket errors.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: impl ToSocketAddrs) -> BufResult<usize, B> {
        let addr = match resolve(&addr).await {
            Ok(addrs) => addrs[0],
            Err(e) => return (Err(e), buf),
        };
        let (res, mut bufs) =
            Op::new(SendMsg::new(self.fd.clone(), vec![buf], Some(addr.into()))).await;
        (res, bufs.pop().expect("one buffer in, one out"))
    }

    /// Receives one datagram into `buf` (from its start up to its capacity) and says who sent
    /// it. A datagram longer than the buffer is never cut silently: its first bytes are in `buf`
    /// and the result is a [`TruncatedDatagram`] error, which names the sender too.
    ///
    /// Cancel-safe as [`recv`](Self::recv) is: a datagram a dropped receive took comes out
    /// first, with its sender.
    ///
    /// # Errors
    ///
    /// - `InvalidData` carrying a [`TruncatedDatagram`] (see [`TruncatedDatagram::of`]) when
    ///   the datagram did not fit;
    /// - `AddrNotAvailable` for a datagram that a dropped [`recv`](Self::recv) took on a socket
    ///   that was not connected (its sender is unknown): its bytes are in `buf`. Use `recv_from`
    ///   alone on a socket that is not connected;
    /// - the kernel's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::net::{TruncatedDatagram, UdpSocket};
    /// ringloop::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///     let (res, _) = a.send_to(vec![7u8; 100], b.local_addr()?).await;
    ///     res?;
    ///     let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
    ///     let err = res.unwrap_err();
    ///     let cut = TruncatedDatagram::of(&err).expect("a truncation");
    ///     assert_eq!((cut.received(), cut.datagram_len()), (16, 100));
    ///     assert_eq!(cut.from(), Some(a.local_addr()?));
    ///     assert_eq!(buf, [7u8; 16]);
    ///     std::io::Result::Ok(())
    /// }).unwrap();
    /// ```
    pub async fn recv_from<B: IoBufMut>(&self, mut buf: B) -> BufResult<(usize, SocketAddr), B> {
        self.fd.settled(Interest::Read).await;
        if let Some(stashed) = self.fd.take_datagram() {
            let res = stashed.and_then(|d| {
                let (len, held) = d.copy_into(&mut buf);
                let from = d.from().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        "a datagram that a dropped UdpSocket::recv took on a socket that was not \
                         connected: its sender is unknown (its bytes are in the buffer); on a \
                         socket that is not connected receive with recv_from alone",
                    )
                });
                let from = to_std_addr(from?)?;
                Ok((TruncatedDatagram::check(len, held, Some(from))?, from))
            });
            return (res, buf);
        }
        let (res, mut bufs) = Op::new(RecvMsg::new(self.fd.clone(), vec![buf], false)).await;
        let buf = bufs.pop().expect("one buffer in, one out");
        let res = res.and_then(|(len, addr)| {
            let from = to_std_addr(&addr)?;
            let n = TruncatedDatagram::check(len, buf.bytes_total(), Some(from))?;
            Ok((n, from))
        });
        (res, buf)
    }

    /// This socket's address.
    ///
    /// # Errors
    ///
    /// The kernel's error from `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.fd).local_addr()?)
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` without [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        to_std_addr(&SockRef::from(&self.fd).peer_addr()?)
    }

    /// Sets `SO_BROADCAST`.
    ///
    /// # Errors
    ///
    /// The kernel's error from `setsockopt`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_broadcast(on)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Borrows the socket's fd, e.g. for `socket2::SockRef` to set options ringloop has no method for.
impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// The error of a [`UdpSocket::recv`] or [`UdpSocket::recv_from`] whose datagram was longer than
/// the buffer: the buffer holds the datagram's first [`received`](Self::received) bytes and the
/// rest of it is gone (a datagram socket cannot return it later). It comes inside an
/// `io::Error` of kind `InvalidData`; [`TruncatedDatagram::of`] finds it there.
///
/// Receive into a buffer as large as the largest datagram the protocol allows (65,507 bytes
/// for UDP over IPv4, 65,527 over IPv6) where truncation must not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedDatagram {
    received: usize,
    datagram_len: usize,
    from: Option<SocketAddr>,
}

impl TruncatedDatagram {
    /// The truncation inside `err`, if `err` is one.
    pub fn of(err: &io::Error) -> Option<&TruncatedDatagram> {
        err.get_ref()?.downcast_ref()
    }

    /// The bytes that are in the buffer (its capacity).
    pub fn received(&self) -> usize {
        self.received
    }

    /// The datagram's full length, as the sender sent it.
    pub fn datagram_len(&self) -> usize {
        self.datagram_len
    }

    /// Who sent it: the sender for [`UdpSocket::recv_from`], `None` for [`UdpSocket::recv`]
    /// (the connected peer sent it).
    pub fn from(&self) -> Option<SocketAddr> {
        self.from
    }

    /// `Ok(len)` if a datagram of `len` bytes fit in `capacity`; the truncation error otherwise.
    fn check(len: usize, capacity: usize, from: Option<SocketAddr>) -> io::Result<usize> {
        if len <= capacity {
            return Ok(len);
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            TruncatedDatagram {
                received: capacity,
                datagram_len: len,
                from,
            },
        ))
    }
}

impl fmt::Display for TruncatedDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a datagram of {} bytes", self.datagram_len)?;
        if let Some(from) = self.from {
            write!(f, " from {from}")?;
        }
        write!(
            f,
            " was truncated to the buffer's {} bytes and the rest discarded: receive into a \
             buffer as large as the largest datagram (up to 65,507 bytes for UDP over IPv4)",
            self.received
        )
    }
}

impl std::error::Error for TruncatedDatagram {}
