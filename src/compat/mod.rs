//! Poll-based I/O for the crates that speak it: hyper, rustls, tungstenite, tokio-util's codecs.
//!
//! [`PollIo`] wraps a [`TcpStream`](crate::net::TcpStream) or
//! [`UnixStream`](crate::net::UnixStream) and implements, each behind an off-by-default cargo
//! feature:
//!
//! | feature | traits |
//! |---|---|
//! | `futures-io` | `futures_io::AsyncRead`, `futures_io::AsyncWrite` |
//! | `tokio-io` | `tokio::io::AsyncRead`, `tokio::io::AsyncWrite` |
//! | `hyper` | `hyper::rt::Read`, `hyper::rt::Write`, plus `compat::hyper::LocalExec` and `compat::hyper::Timer` |
//! | `tokio-compat` | no traits: every loop runs in a tokio runtime context, so `tokio::spawn`, `tokio::time` and `tokio::net` work in ringloop tasks (see `compat::tokio_handle`) |
//! | `axum` | everything of `hyper`, plus `compat::axum::serve`: an `axum::Router` on a ringloop listener |
//!
//! # How it works: readiness, no copy
//!
//! A poll tries the nonblocking syscall straight into (or from) the caller's slice. If the kernel
//! says `EAGAIN`, it waits for readiness (on io_uring a one-shot `IORING_OP_POLL_ADD` on the fd;
//! on epoll the fd's edge-triggered registration) and returns `Pending`; when the fd becomes
//! ready the task is woken and the next poll tries again. No kernel op ever holds the caller's
//! memory, so a caller may stop polling at any point (drop the future, let a timeout win a
//! `select`) and nothing is lost or duplicated. Bytes that a dropped owned-buffer
//! [`read`](crate::net::TcpStream::read) left stashed on the stream come out first. Reads and
//! writes wait separately, with their own wakers, so two tasks may drive the two halves.
//!
//! # When to use which
//!
//! - **`PollIo`** to run code written against the poll-based traits: hyper, TLS, WebSocket,
//!   framed codecs. It costs one syscall per read or write that finds the socket ready, like any
//!   readiness-based runtime, on both backends.
//! - **The owned-buffer API** (`stream.read(buf)`, `write_all`) for code you write yourself: on
//!   io_uring it batches every connection's reads and writes into one ring trip per loop turn,
//!   which is what makes the uring backend fast. A stream can be taken back out of a `PollIo` with
//!   [`into_inner`](PollIo::into_inner) at any time.
//!
//! # Examples
//!
//! The inherent poll methods work without any feature:
//!
//! ```
//! use std::future::poll_fn;
//! use ringloop::compat::PollIo;
//! use ringloop::net::UnixStream;
//!
//! ringloop::run(async {
//!     let (a, b) = UnixStream::pair().unwrap();
//!     let (mut a, mut b) = (PollIo::new(a), PollIo::new(b));
//!     let n = poll_fn(|cx| a.poll_write(cx, b"hello")).await.unwrap();
//!     assert_eq!(n, 5);
//!     let mut buf = [0u8; 16];
//!     let n = poll_fn(|cx| b.poll_read(cx, &mut buf)).await.unwrap();
//!     assert_eq!(&buf[..n], b"hello");
//!     // The owned-buffer API is still there underneath.
//!     let (res, _) = a.get_ref().write_all(&b" world"[..]).await;
//!     res.unwrap();
//!     let (res, buf) = b.into_inner().read(Vec::with_capacity(16)).await;
//!     assert_eq!(&buf[..res.unwrap()], b" world");
//! });
//! ```

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "tokio-compat")]
pub use crate::tokio_rt::tokio_handle;
#[cfg(feature = "tokio-io")]
mod tokio_io;

use std::fmt;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use crate::driver::DriverCell;
use crate::driver::fd::SharedFd;
use crate::driver::op::Interest;
use crate::op::cvt;
use crate::op::poll::ReadyWait;

#[allow(private_interfaces)]
mod sealed {
    /// Gives `PollIo` the stream's shared fd.
    pub trait Sealed {
        fn stream_fd(&self) -> &crate::driver::fd::SharedFd;
        fn shutdown_write(&self) -> std::io::Result<()>;
    }
}

/// A stream [`PollIo`] can wrap: [`TcpStream`](crate::net::TcpStream) and
/// [`UnixStream`](crate::net::UnixStream). Sealed: it cannot be implemented outside ringloop.
pub trait PollStream: sealed::Sealed + fmt::Debug + Unpin {}

macro_rules! poll_stream {
    ($t:ty) => {
        #[allow(private_interfaces)]
        impl sealed::Sealed for $t {
            fn stream_fd(&self) -> &SharedFd {
                self.shared_fd()
            }
            fn shutdown_write(&self) -> io::Result<()> {
                self.shutdown(Shutdown::Write)
            }
        }
        impl PollStream for $t {}
    };
}
poll_stream!(crate::net::TcpStream);
poll_stream!(crate::net::UnixStream);

/// A ringloop stream with poll-based reads and writes: readiness-based on both backends, no
/// copy, safe to abandon at any point. See the [module docs](self).
///
/// It must be polled from a task of the loop the stream belongs to; polled elsewhere, a read or
/// write returns an error saying so.
pub struct PollIo<S> {
    stream: S,
    read: ReadyWait,
    write: ReadyWait,
    write_shut: bool,
    /// Reads come from the loop's receive pool where a multishot receive can feed it.
    pooled_reads: bool,
}

impl<S: PollStream> fmt::Debug for PollIo<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollIo")
            .field("stream", &self.stream)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("write_shut", &self.write_shut)
            .finish()
    }
}

fn outside_loop() -> io::Error {
    io::Error::other(
        "ringloop PollIo was polled outside a running event loop: poll it from a task of the loop \
         its stream belongs to",
    )
}

fn current_driver() -> io::Result<Rc<DriverCell>> {
    crate::driver::current().ok_or_else(outside_loop)
}

impl<S: PollStream> PollIo<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> PollIo<S> {
        PollIo {
            stream,
            read: ReadyWait::new(Interest::Read),
            write: ReadyWait::new(Interest::Write),
            write_shut: false,
            pooled_reads: false,
        }
    }

    /// Wraps a stream whose reads come from the loop's receive pool: on io_uring with a buffer
    /// ring and multishot receives (Linux 6.0+), one receive per stream stays armed and each read
    /// copies out of the buffers it filled, so a read makes no syscall and waits for no readiness
    /// poll; bytes arrive in pool-sized pieces (4 KiB by default). Elsewhere (epoll, older
    /// kernels, an exhausted pool) it reads as [`new`](Self::new) does. It suits
    /// request/response protocols on many connections (HTTP servers: `compat::axum::serve`
    /// uses it); a stream that moves bulk data one way reads faster with `new`.
    pub fn pooled(stream: S) -> PollIo<S> {
        PollIo {
            pooled_reads: true,
            ..PollIo::new(stream)
        }
    }

    /// The stream, for its owned-buffer methods, addresses and options.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Unwraps the stream. Nothing is lost: a `PollIo` holds no bytes of its own.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Reads into `buf`; `Ok(0)` at end of stream (or for an empty `buf`).
    ///
    /// # Errors
    ///
    /// The kernel's error (e.g. `ConnectionReset`), or an error if polled outside the stream's
    /// event loop.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        // SAFETY: `buf` is valid for writes of its length.
        unsafe { self.poll_read_raw(cx, buf.as_mut_ptr(), buf.len()) }
    }

    /// Reads into `len` bytes at `ptr`, which need not be initialised.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `len` bytes for the duration of the call (no kernel op
    /// keeps it past the call).
    pub(crate) unsafe fn poll_read_raw(
        &mut self,
        cx: &mut Context<'_>,
        ptr: *mut u8,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let fd = self.stream.stream_fd();
        // A dropped owned-buffer read still in the kernel goes first, then what it left.
        ready!(fd.poll_settled(Interest::Read, cx));
        // SAFETY: the caller makes `ptr` writable for `len` bytes.
        if let Some(res) = unsafe { fd.take_stash(ptr, len) } {
            return Poll::Ready(res);
        }
        // Then what pooled receives delivered, if any are in play.
        // SAFETY: the caller makes `ptr` writable for `len` bytes.
        if let Some(res) = ready!(unsafe { crate::op::pooled::poll_queued_into(fd, cx, ptr, len) })
        {
            return Poll::Ready(res);
        }
        let driver = current_driver()?;
        if self.pooled_reads {
            match crate::op::pooled::try_arm_ring_recv(fd, &driver, cx) {
                Some(Ok(())) => return Poll::Pending, // the queue wakes this task
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => {}
            }
        }
        self.read.poll_transfer(&driver, fd, cx, len, |raw, max| {
            // SAFETY: the caller makes `ptr` writable for `len >= max` bytes; the call does not
            // keep it.
            cvt(unsafe { libc::recv(raw, ptr.cast(), max, libc::MSG_DONTWAIT) })
        })
    }

    /// Writes some of `buf`; returns how many bytes went.
    ///
    /// # Errors
    ///
    /// The kernel's error (e.g. `BrokenPipe` once the peer is gone: never a `SIGPIPE`), or an
    /// error if polled outside the stream's event loop.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, buf.len(), |fd, max| {
            // SAFETY: `buf` is valid for reads of its length (at least `max`) during the call.
            cvt(unsafe {
                libc::send(
                    fd,
                    buf.as_ptr().cast(),
                    max,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            })
        })
    }

    /// Writes from several buffers in order, in one `sendmsg`; returns how many bytes went.
    ///
    /// # Errors
    ///
    /// As [`poll_write`](Self::poll_write).
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The kernel takes at most IOV_MAX (1024) entries; the rest waits for the next call.
        let bufs = &bufs[..bufs.len().min(1024)];
        let len = bufs.iter().map(|b| b.len()).sum();
        self.poll_write_with(cx, len, |fd, max| {
            // A transfer cut short (fault injection) sends a prefix of the buffers.
            let cut;
            let bufs = if max < len {
                cut = prefix(bufs, max);
                &cut[..]
            } else {
                bufs
            };
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            // `IoSlice` is ABI-compatible with `iovec`; sendmsg only reads through the pointer.
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len() as _;
            // SAFETY: `msg` points at `bufs`, valid for reads during the call.
            cvt(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })
        })
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        syscall: impl FnMut(i32, usize) -> io::Result<u32>,
    ) -> Poll<io::Result<usize>> {
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let fd = self.stream.stream_fd();
        // A dropped owned-buffer write still in the kernel goes first.
        ready!(fd.poll_settled(Interest::Write, cx));
        let driver = current_driver()?;
        self.write.poll_transfer(&driver, fd, cx, len, syscall)
    }

    /// Shuts the write side (the peer reads end of stream) once; calls after one that succeeded
    /// do nothing. Writes are never buffered here, but an owned-buffer write that was dropped
    /// while the kernel still had it goes first (as for [`poll_write`](Self::poll_write)), so
    /// its bytes cannot land after the end of stream; until it has, this returns `Pending`.
    ///
    /// # Errors
    ///
    /// The kernel's error from `shutdown`, but not `NotConnected` (the connection is gone, so the
    /// write side is shut anyway). After an error the write side is not marked shut: the next
    /// call tries again, and reports the error again if it persists.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_shut {
            return Poll::Ready(Ok(()));
        }
        ready!(self.stream.stream_fd().poll_settled(Interest::Write, cx));
        match self.stream.shutdown_write() {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => {
                self.write_shut = true;
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// The first `max` bytes of `bufs`, as slices.
fn prefix<'a>(bufs: &'a [IoSlice<'a>], mut max: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::new();
    for b in bufs {
        if max == 0 {
            break;
        }
        let take = b.len().min(max);
        out.push(IoSlice::new(&b[..take]));
        max -= take;
    }
    out
}
