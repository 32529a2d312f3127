//! The server's side of one connection: a [`PollIo`] that also tells the connection's task when
//! the protocol is known (hyper-util's version detection is over) and fails a write the peer has
//! not let through for the stalled-send timeout.
//!
//! Until the protocol is known it reads with plain nonblocking reads, so a `Pending` read means
//! the socket is empty (a pooled read on io_uring answers `Pending` while its multishot receive
//! is armed, data or not): the connection's task relies on that to close, at shutdown, a
//! connection that sent nothing. Then it switches to pooled reads.

use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::hyper::rt::{self, ReadBufCursor};

use crate::compat::PollIo;
use crate::net::TcpStream;
use crate::time::Sleep;

/// The HTTP/2 connection preface, which hyper-util's auto builder looks for in the first bytes.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the connection's task learns from its stream: how many bytes of the h2 preface matched
/// so far, and whether the protocol is known.
#[derive(Debug, Default)]
pub(super) struct Detect {
    matched: Cell<usize>,
    known: Cell<bool>,
    h2: Cell<bool>,
}

impl Detect {
    /// Whether the first bytes decided the protocol, as hyper-util's version detection does: a
    /// byte that differs from the h2 preface (HTTP/1.1), the whole preface (h2), or the end of
    /// the stream.
    pub(super) fn known(&self) -> bool {
        self.known.get()
    }

    /// Whether the peer sent the whole h2 preface: the connection speaks HTTP/2.
    pub(super) fn h2(&self) -> bool {
        self.h2.get()
    }

    fn saw(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.known.set(true);
            return;
        }
        let at = self.matched.get();
        let want = &H2_PREFACE[at..];
        let n = bytes.len().min(want.len());
        if bytes[..n] != want[..n] || at + n == H2_PREFACE.len() {
            self.known.set(true);
            self.h2.set(bytes[..n] == want[..n]);
        } else {
            self.matched.set(at + n);
        }
    }
}

/// Makes the socket's close send a reset (`SO_LINGER` 0) and drop what it still holds.
pub(super) fn reset_on_close(stream: &impl std::os::fd::AsFd) -> io::Result<()> {
    socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))
}

/// A [`PollIo`] for hyper with the server's two watches on it.
pub(super) struct ServerIo {
    /// Always `Some`, but for the moment it switches to pooled reads.
    io: Option<PollIo<TcpStream>>,
    detect: Rc<Detect>,
    /// How long a write may wait for the peer to make room; `None` waits for ever.
    write_timeout: Option<Duration>,
    /// Armed while a write waits for room; dropped as soon as a write makes progress.
    stalled: Option<Sleep>,
}

impl ServerIo {
    pub(super) fn new(
        stream: TcpStream,
        detect: Rc<Detect>,
        write_timeout: Option<Duration>,
    ) -> ServerIo {
        ServerIo {
            io: Some(PollIo::new(stream)),
            detect,
            write_timeout,
            stalled: None,
        }
    }

    fn io(&mut self) -> &mut PollIo<TcpStream> {
        match &mut self.io {
            Some(io) => io,
            None => unreachable!("ServerIo lost its stream"),
        }
    }

    /// Passes a write's result on; a `Pending` that has lasted the stalled-send timeout becomes
    /// a `TimedOut` error, which ends the connection.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let Some(limit) = self.write_timeout else {
            return res;
        };
        let stalled = self
            .stalled
            .get_or_insert_with(|| crate::time::sleep(limit));
        ready!(Pin::new(stalled).poll(cx));
        self.stalled = None;
        // Closed with a reset, not a FIN queued behind data the peer will never read: the
        // kernel frees the send buffer at once instead of probing a zero window for minutes.
        let _ = reset_on_close(self.io().get_ref());
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the peer read nothing for {limit:?} (ServeConfig::write_timeout): the \
                 connection is closed"
            ),
        )))
    }
}

impl rt::Read for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: only the kernel (or the stash copy) writes into the slice, and `advance` marks
        // only the `n` bytes it wrote.
        let unfilled = unsafe { buf.as_mut() };
        let (ptr, len) = (unfilled.as_mut_ptr().cast::<u8>(), unfilled.len());
        // SAFETY: `ptr` is valid for writes of `len` bytes (the cursor's unfilled part).
        let n = ready!(unsafe { this.io().poll_read_raw(cx, ptr, len) })?;
        if !this.detect.known() && len > 0 {
            // SAFETY: the first `n` bytes at `ptr` were just written by the read.
            this.detect
                .saw(unsafe { std::slice::from_raw_parts(ptr, n) });
            if this.detect.known()
                && let Some(io) = this.io.take()
            {
                // Nothing is armed after a read that returned data: the switch loses nothing.
                this.io = Some(PollIo::pooled(io.into_inner()));
            }
        }
        // SAFETY: the first `n` bytes of the unfilled part were just initialised.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl rt::Write for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = this.io().poll_write(cx, buf);
        this.watch_write(cx, res)
    }

    /// Nothing is buffered: always ready.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = this.io().poll_shutdown(cx);
        this.watch_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = this.io().poll_write_vectored(cx, bufs);
        this.watch_write(cx, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(chunks: &[&[u8]]) -> bool {
        let d = Detect::default();
        chunks.iter().for_each(|c| d.saw(c));
        d.known()
    }

    #[test]
    fn the_protocol_is_known_as_hyper_util_would_know_it() {
        assert!(detect(&[b"G"]), "one byte that is not the preface's");
        let d = Detect::default();
        d.saw(b"PRI * HTTP/2.0\r\n");
        d.saw(b"\r\nSM\r\n\r\n\0");
        assert!(d.known() && d.h2(), "the preface in two is h2");
        let d = Detect::default();
        d.saw(b"PRI * HTTP/1.1");
        assert!(d.known() && !d.h2(), "a preface gone wrong is not h2");
        assert!(detect(&[b"GET / HTTP/1.1\r\n"]));
        assert!(!detect(&[b"PRI * HTTP/2.0\r\n"]), "half the preface");
        assert!(
            !detect(&[b"P", b"RI", b" * HTTP/2.0\r\n\r\nSM\r\n\r"]),
            "all but one byte"
        );
        assert!(
            detect(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"]),
            "the preface in two"
        );
        assert!(
            detect(&[H2_PREFACE.as_slice(), b"\0\0\0\x04"]),
            "the preface and more"
        );
        assert!(detect(&[b"PRI * HTTP/1.1"]), "a preface gone wrong");
        assert!(detect(&[b""]), "end of stream");
    }
}
