//! Stream reads and writes: `Recv` and `Send`.

use std::io;

use io_uring::{opcode, squeue, types::Fd};

use super::{clamp_len, cvt};
use crate::backend::uring_features;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Operation};

/// `IORING_RECVSEND_POLL_FIRST`, in the SQE's ioprio field of a receive (Linux 5.19).
const RECVSEND_POLL_FIRST: u16 = 1;

/// Receives into a buffer from its start up to its capacity.
pub(crate) struct Recv<B> {
    fd: SharedFd,
    buf: B,
    /// Stream bytes of a dropped read are kept for the next read; a datagram is not (see
    /// `RecvMsg`).
    stream: bool,
}

impl<B: IoBufMut> Recv<B> {
    pub(crate) fn new(fd: SharedFd, buf: B, stream: bool) -> Self {
        Recv { fd, buf, stream }
    }
}

// SAFETY: the SQE points at `buf`'s storage, which `IoBuf` keeps in place while the op owns it.
unsafe impl<B: IoBufMut> Operation for Recv<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_total());
        let mut recv = opcode::Recv::new(Fd(self.fd.raw()), self.buf.stable_mut_ptr(), len);
        if self.stream && self.fd.read_drained() && uring_features().recv_poll_first {
            // The last read emptied the socket: wait for data rather than try a receive that
            // would only find nothing and then arm the same poll.
            recv = recv.ioprio(RECVSEND_POLL_FIRST);
        }
        recv.build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Read))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_total()) as usize;
        // SAFETY: the buffer is writable for `len <= bytes_total` bytes.
        let res =
            cvt(unsafe { libc::recv(self.fd.raw(), self.buf.stable_mut_ptr().cast(), len, 0) });
        if self.stream && matches!(&res, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.fd.set_read_drained(true);
            self.fd.set_read_waits();
        }
        res
    }

    fn drained(&self, n: u32) -> bool {
        self.stream && n > 0 && (n as usize) < self.buf.bytes_total()
    }

    fn inline_first(&self) -> bool {
        self.stream && !self.fd.read_drained() && !self.fd.read_waits()
    }

    fn complete(mut self, res: io::Result<u32>) -> Self::Output {
        if self.stream {
            self.fd
                .set_read_drained(matches!(res, Ok(n) if self.drained(n)));
        }
        if let Ok(n) = res {
            // SAFETY: the kernel wrote `n <= bytes_total` bytes from the buffer's start.
            unsafe { self.buf.set_init(n as usize) };
        }
        (res.map(|n| n as usize), self.buf)
    }

    fn orphaned(self, res: io::Result<u32>) {
        if let Ok(n) = res
            && self.stream
        {
            // SAFETY: the kernel wrote `n <= bytes_total` bytes from the buffer's start, and it
            // is done with the buffer (this is its completion).
            let received = unsafe { std::slice::from_raw_parts(self.buf.stable_ptr(), n as usize) };
            self.fd.stash(received);
        }
    }
}

/// Sends a buffer's initialised bytes.
pub(crate) struct Send<B> {
    fd: SharedFd,
    buf: B,
}

impl<B: IoBuf> Send<B> {
    pub(crate) fn new(fd: SharedFd, buf: B) -> Self {
        Send { fd, buf }
    }
}

// SAFETY: the SQE points at `buf`'s storage, which `IoBuf` keeps in place while the op owns it.
unsafe impl<B: IoBuf> Operation for Send<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        opcode::Send::new(Fd(self.fd.raw()), self.buf.stable_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Write))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_init()) as usize;
        // SAFETY: the buffer holds `len <= bytes_init` initialised bytes. MSG_NOSIGNAL turns a
        // closed peer into EPIPE instead of SIGPIPE.
        cvt(unsafe {
            libc::send(
                self.fd.raw(),
                self.buf.stable_ptr().cast(),
                len,
                libc::MSG_NOSIGNAL,
            )
        })
    }

    fn drained(&self, n: u32) -> bool {
        (n as usize) < self.buf.bytes_init()
    }

    fn inline_first(&self) -> bool {
        true
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        (res.map(|n| n as usize), self.buf)
    }
}
