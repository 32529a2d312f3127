//! The byte-stream I/O shared by `TcpStream` and `UnixStream`.

use std::io;
use std::net::Shutdown;

use socket2::SockRef;

use crate::buf::{BufResult, IoBuf, IoBufMut, write_all_with};
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Op};
use crate::op::msg::{RecvMsg, SendMsg};
use crate::op::rw::{Recv, Send};

/// A connected stream socket.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) fd: SharedFd,
}

impl Stream {
    pub(crate) fn new(fd: SharedFd) -> Self {
        Stream { fd }
    }

    /// Bytes a dropped read received, into `buf` (up to its capacity); `None` if there are none.
    fn take_stashed_into<B: IoBufMut>(&self, buf: &mut B) -> Option<usize> {
        if !self.fd.has_stash() {
            return None;
        }
        let cap = buf.bytes_total();
        // SAFETY: the buffer is writable for `bytes_total` bytes.
        let n = unsafe { self.fd.take_stash(buf.stable_mut_ptr(), cap) }?;
        // SAFETY: `take_stash` initialised the first `n <= cap` bytes.
        unsafe { buf.set_init(n) };
        Some(n)
    }

    pub(crate) async fn read<B: IoBufMut>(&self, mut buf: B) -> BufResult<usize, B> {
        self.fd.settled(Interest::Read).await;
        if let Some(n) = self.take_stashed_into(&mut buf) {
            return (Ok(n), buf);
        }
        Op::new(Recv::new(self.fd.clone(), buf, true)).await
    }

    pub(crate) async fn readv<B: IoBufMut>(&self, mut bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.fd.settled(Interest::Read).await;
        if let Some(first) = bufs.first_mut()
            && let Some(n) = self.take_stashed_into(first)
        {
            for b in bufs.iter_mut().skip(1) {
                // SAFETY: zero bytes are always initialised.
                unsafe { b.set_init(0) };
            }
            return (Ok(n), bufs);
        }
        let (res, bufs) = Op::new(RecvMsg::new(self.fd.clone(), bufs, true)).await;
        (res.map(|(n, _)| n), bufs)
    }

    pub(crate) async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.fd.settled(Interest::Write).await;
        Op::new(Send::new(self.fd.clone(), buf)).await
    }

    pub(crate) async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.fd.settled(Interest::Write).await;
        Op::new(SendMsg::new(self.fd.clone(), bufs, None)).await
    }

    pub(crate) async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        write_all_with(buf, |slice, _| self.write(slice)).await
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.fd).shutdown(how)
    }
}

/// The public I/O methods of a stream type with a field `io: Stream`.
macro_rules! stream_methods {
    () => {
        /// The shared fd, for poll-based I/O (`compat`).
        #[allow(dead_code)]
        pub(crate) fn shared_fd(&self) -> &$crate::driver::fd::SharedFd {
            &self.io.fd
        }

        /// Reads into `buf` from its start up to its capacity and sets its length to the bytes
        /// read. `Ok(0)` means the peer closed its side (or `buf` has no capacity).
        ///
        /// Cancel-safe: if the future is dropped (say, by a timeout) after the kernel received
        /// data into it, those bytes are returned first by the next read on this stream.
        ///
        /// # Errors
        ///
        /// The kernel's error, e.g. `ConnectionReset` when the peer reset the connection.
        pub async fn read<B: $crate::buf::IoBufMut>(
            &self,
            buf: B,
        ) -> $crate::buf::BufResult<usize, B> {
            self.io.read(buf).await
        }

        /// Reads into several buffers in order, each from its start up to its capacity, and sets
        /// each one's length to what it received. Returns the total.
        ///
        /// # Errors
        ///
        /// As [`read`](Self::read).
        pub async fn readv<B: $crate::buf::IoBufMut>(
            &self,
            bufs: Vec<B>,
        ) -> $crate::buf::BufResult<usize, Vec<B>> {
            self.io.readv(bufs).await
        }

        /// Writes some of `buf`'s initialised bytes; returns how many.
        ///
        /// # Errors
        ///
        /// The kernel's error, e.g. `BrokenPipe` or `ConnectionReset` when the peer is gone
        /// (never a `SIGPIPE`).
        pub async fn write<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
        ) -> $crate::buf::BufResult<usize, B> {
            self.io.write(buf).await
        }

        /// Writes the initialised bytes of several buffers in order, in one call; returns how
        /// many bytes went (possibly fewer than all).
        ///
        /// # Errors
        ///
        /// As [`write`](Self::write).
        pub async fn writev<B: $crate::buf::IoBuf>(
            &self,
            bufs: Vec<B>,
        ) -> $crate::buf::BufResult<usize, Vec<B>> {
            self.io.writev(bufs).await
        }

        /// Writes all of `buf`'s initialised bytes.
        ///
        /// # Errors
        ///
        /// As [`write`](Self::write); `WriteZero` if the kernel accepted no bytes. On error, an
        /// unknown prefix of the bytes may have been sent.
        pub async fn write_all<B: $crate::buf::IoBuf>(
            &self,
            buf: B,
        ) -> $crate::buf::BufResult<(), B> {
            self.io.write_all(buf).await
        }

        /// Shuts down the read half, the write half, or both (the peer reads end-of-stream after
        /// a write shutdown).
        ///
        /// # Errors
        ///
        /// `NotConnected` if the connection is gone.
        pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
            self.io.shutdown(how)
        }
    };
}

pub(crate) use stream_methods;
