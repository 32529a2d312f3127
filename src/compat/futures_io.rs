//! `futures_io::AsyncRead` and `AsyncWrite` for `PollIo` (feature `futures-io`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{PollIo, PollStream};

impl<S: PollStream> futures_io::AsyncRead for PollIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        PollIo::poll_read(self.get_mut(), cx, buf)
    }
}

impl<S: PollStream> futures_io::AsyncWrite for PollIo<S> {
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

    /// Nothing is buffered: always ready.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write side, once; later calls return `Ok` at once.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        PollIo::poll_shutdown(self.get_mut(), cx)
    }
}
