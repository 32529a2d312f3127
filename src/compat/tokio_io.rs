//! `tokio::io::AsyncRead` and `AsyncWrite` for `PollIo` (feature `tokio-io`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::ReadBuf;

use super::{PollIo, PollStream};

impl<S: PollStream> tokio::io::AsyncRead for PollIo<S> {
    /// Reads into the unfilled part of `buf` without zeroing it first.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: only the kernel writes into the unfilled part, and only `n` bytes it reports
        // written are marked initialised and filled.
        let unfilled = unsafe { buf.unfilled_mut() };
        let (ptr, len) = (unfilled.as_mut_ptr().cast::<u8>(), unfilled.len());
        // SAFETY: `ptr` is valid for writes of `len` bytes (the unfilled part of `buf`).
        let n = ready!(unsafe { self.get_mut().poll_read_raw(cx, ptr, len) })?;
        // SAFETY: the kernel (or the stash copy) initialised the first `n` unfilled bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: PollStream> tokio::io::AsyncWrite for PollIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        PollIo::poll_write(self.get_mut(), cx, buf)
    }

    /// One `sendmsg` for all the slices.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        PollIo::poll_write_vectored(self.get_mut(), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Nothing is buffered: always ready.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write side, once; later calls return `Ok` at once.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        PollIo::poll_shutdown(self.get_mut(), cx)
    }
}
