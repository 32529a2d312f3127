//! Vectored and address-carrying socket I/O: `SendMsg` and `RecvMsg` (`writev`/`readv` on
//! streams, `send_to`/`recv_from` on datagram sockets).

use std::io;

use io_uring::{opcode, squeue};
use socket2::{SockAddr, SockAddrStorage};

use super::{clamp_len, cvt};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::{SharedFd, StashedDatagram};
use crate::driver::op::{Interest, Operation};

fn empty_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid "no address, no buffers" header.
    unsafe { std::mem::zeroed() }
}

/// Sends the initialised bytes of several buffers in order, optionally to an address.
pub(crate) struct SendMsg<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    addr: Option<SockAddr>,
    msg: libc::msghdr,
}

impl<B: IoBuf> SendMsg<B> {
    pub(crate) fn new(fd: SharedFd, bufs: Vec<B>, addr: Option<SockAddr>) -> Self {
        let iovecs = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.stable_ptr() as *mut _,
                iov_len: clamp_len(b.bytes_init()) as usize,
            })
            .collect();
        SendMsg {
            fd,
            bufs,
            iovecs,
            addr,
            msg: empty_msghdr(),
        }
    }

    /// Points the header at this op's iovecs and address; called once the op is boxed in place.
    fn header(&mut self) -> *const libc::msghdr {
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len();
        if let Some(addr) = &self.addr {
            self.msg.msg_name = addr.as_ptr() as *mut _;
            self.msg.msg_namelen = addr.len();
        }
        &self.msg
    }
}

// SAFETY: the header points at `iovecs` (a Vec whose storage does not move), at `addr` and `msg`
// (fields of the boxed op) and, through the iovecs, at the buffers' stable storage.
unsafe impl<B: IoBuf> Operation for SendMsg<B> {
    type Output = BufResult<usize, Vec<B>>;

    fn sqe(&mut self) -> squeue::Entry {
        let msg = self.header();
        sqe_fd!(self.fd, |fd| opcode::SendMsg::new(fd, msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build())
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Write))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let msg = self.header();
        // SAFETY: `msg` describes live iovecs and address owned by this op.
        cvt(unsafe { libc::sendmsg(self.fd.raw(), msg, libc::MSG_NOSIGNAL) })
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        (res.map(|n| n as usize), self.bufs)
    }
}

/// Receives into several buffers in order (each from its start up to its capacity), and the
/// sender's address. On a datagram socket the result is the datagram's full length
/// (`MSG_TRUNC`), which exceeds the buffers' capacity when it was truncated; the caller reports
/// that.
pub(crate) struct RecvMsg<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    storage: SockAddrStorage,
    msg: libc::msghdr,
    /// A stream's bytes are stashed for the next read if the future is dropped; a datagram is
    /// kept whole, with its sender, for the next receive (merging it into a byte stash would
    /// merge datagrams).
    stream: bool,
}

impl<B: IoBufMut> RecvMsg<B> {
    pub(crate) fn new(fd: SharedFd, mut bufs: Vec<B>, stream: bool) -> Self {
        let iovecs = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.stable_mut_ptr().cast(),
                iov_len: clamp_len(b.bytes_total()) as usize,
            })
            .collect();
        RecvMsg {
            fd,
            bufs,
            iovecs,
            storage: SockAddrStorage::zeroed(),
            msg: empty_msghdr(),
            stream,
        }
    }

    fn header(&mut self) -> *mut libc::msghdr {
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len();
        self.msg.msg_name = (&mut self.storage as *mut SockAddrStorage).cast();
        self.msg.msg_namelen = self.storage.size_of();
        &mut self.msg
    }

    /// `MSG_TRUNC` for a datagram (the call returns its full length, so truncation shows);
    /// none for a stream, where it would discard bytes.
    fn recv_flags(&self) -> i32 {
        if self.stream { 0 } else { libc::MSG_TRUNC }
    }

    /// Marks the first `n` received bytes initialised, buffer by buffer (a truncated datagram's
    /// `n` may exceed them all: each is then full).
    fn fill(&mut self, mut n: usize) {
        for (buf, iov) in self.bufs.iter_mut().zip(&self.iovecs) {
            let here = n.min(iov.iov_len);
            // SAFETY: the kernel wrote `here <= iov_len <= bytes_total` bytes at the start of
            // this buffer (iovecs are filled in order).
            unsafe { buf.set_init(here) };
            n -= here;
        }
    }

    /// The bytes received, in order, for the stash of a dropped read.
    fn received(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut left = n;
        for iov in &self.iovecs {
            let here = left.min(iov.iov_len);
            // SAFETY: the kernel wrote `here` bytes at the start of this iovec's buffer, which the
            // op still owns.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(iov.iov_base as *const u8, here)
            });
            left -= here;
        }
        out
    }
}

// SAFETY: as for SendMsg: every pointer in the header is into the boxed op or the buffers it owns.
unsafe impl<B: IoBufMut> Operation for RecvMsg<B> {
    type Output = BufResult<(usize, SockAddr), Vec<B>>;

    fn sqe(&mut self) -> squeue::Entry {
        let msg = self.header();
        let flags = self.recv_flags() as u32;
        sqe_fd!(self.fd, |fd| opcode::RecvMsg::new(fd, msg)
            .flags(flags)
            .build())
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Read))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let msg = self.header();
        // SAFETY: `msg` describes live iovecs and address storage owned by this op.
        cvt(unsafe { libc::recvmsg(self.fd.raw(), msg, self.recv_flags()) })
    }

    fn complete(mut self, res: io::Result<u32>) -> Self::Output {
        match res {
            Ok(n) => {
                self.fill(n as usize);
                // SAFETY: the kernel wrote an address of `msg_namelen` bytes into `storage`.
                let addr = unsafe { SockAddr::new(self.storage, self.msg.msg_namelen) };
                (Ok((n as usize, addr)), self.bufs)
            }
            Err(e) => (Err(e), self.bufs),
        }
    }

    fn orphaned(self, res: io::Result<u32>) {
        if !self.stream {
            // A datagram's `n` is its full length (`MSG_TRUNC`); the buffers hold what fit.
            let res = match res {
                Ok(n) => {
                    let held = (n as usize).min(self.iovecs.iter().map(|iov| iov.iov_len).sum());
                    let bytes = self.received(held);
                    // SAFETY: the kernel wrote an address of `msg_namelen` bytes into `storage`.
                    let from = unsafe { SockAddr::new(self.storage, self.msg.msg_namelen) };
                    Ok(StashedDatagram::new(bytes, n as usize, Some(from)))
                }
                Err(e) => Err(e),
            };
            self.fd.stash_datagram(res);
            return;
        }
        match res {
            Ok(n) => self.fd.stash(&self.received(n as usize)),
            // A reset (say) that nobody saw: the next read must, not a clean end of stream.
            Err(e) => self.fd.stash_error(e),
        }
    }
}
