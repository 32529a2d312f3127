//! Stream reads and writes: `Recv` and `Send`, on sockets (`recv(2)`, `send(2)`) and on pipes
//! (`read(2)`, `write(2)` at the pipe's position: a child process's stdio).

use std::io;

use io_uring::{opcode, squeue, types::Fd};

use super::{clamp_len, cvt};
use crate::backend::uring_features;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::{SharedFd, StashedDatagram};
use crate::driver::op::{Interest, Operation, WriteAtOnce, write_at_once};

/// `IORING_RECVSEND_POLL_FIRST`, in the SQE's ioprio field of a receive (Linux 5.19).
const RECVSEND_POLL_FIRST: u16 = 1;

/// A stream read that follows one which filled a buffer of at least this size is tried inline on
/// uring even when other ops share the ring trip (see `Operation::inline_always`): more data is
/// most likely queued. Measured with four connections streaming 64 KiB writes (BENCHMARKS.md,
/// streaming). Other reads batch in the ring.
const INLINE_BULK_MIN: u32 = 16 * 1024;

/// The offset io_uring takes as "the file's current position" (a pipe has no other).
const CURRENT_POSITION: u64 = u64::MAX;

/// What a read reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A datagram socket: the datagram of a dropped read is kept whole for the next receive.
    Datagram,
    /// A stream socket: bytes of a dropped read are kept for the next read.
    Stream,
    /// A pipe: a byte stream too, read with `read(2)`.
    Pipe,
}

/// Receives into a buffer from its start up to its capacity.
pub(crate) struct Recv<B> {
    fd: SharedFd,
    buf: B,
    /// The most one receive may take (`u32::MAX` unless fault injection cuts it short).
    max: u32,
    /// A byte stream (its bytes of a dropped read join the stream's stash), not a datagram
    /// socket (whose datagram of a dropped read is kept whole).
    stream: bool,
    pipe: bool,
}

impl<B: IoBufMut> Recv<B> {
    /// Receives into `buf`. For a datagram socket the result is the datagram's full length
    /// (`MSG_TRUNC`), which exceeds the buffer's capacity when the datagram was truncated; the
    /// buffer then holds its first `capacity` bytes. The caller reports the truncation.
    pub(crate) fn new(fd: SharedFd, buf: B, source: Source) -> Self {
        Recv {
            fd,
            buf,
            max: u32::MAX,
            stream: source != Source::Datagram,
            pipe: source == Source::Pipe,
        }
    }
}

// SAFETY: the SQE points at `buf`'s storage, which `IoBuf` keeps in place while the op owns it.
unsafe impl<B: IoBufMut> Operation for Recv<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.len();
        if self.pipe {
            return opcode::Read::new(Fd(self.fd.raw()), self.buf.stable_mut_ptr(), len)
                .offset(CURRENT_POSITION)
                .build();
        }
        // The last read emptied the socket: wait for data rather than try a receive that would
        // only find nothing and then arm the same poll.
        let poll_first = self.stream && self.fd.read_drained() && uring_features().recv_poll_first;
        let (ptr, flags) = (self.buf.stable_mut_ptr(), self.recv_flags());
        sqe_fd!(self.fd, |fd| opcode::Recv::new(fd, ptr, len)
            .flags(flags)
            .ioprio(if poll_first { RECVSEND_POLL_FIRST } else { 0 })
            .build())
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Read))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let len = self.len() as usize;
        let ptr = self.buf.stable_mut_ptr().cast();
        // SAFETY: the buffer is writable for `len <= bytes_total` bytes.
        let res = cvt(unsafe {
            if self.pipe {
                libc::read(self.fd.raw(), ptr, len)
            } else {
                libc::recv(self.fd.raw(), ptr, len, self.recv_flags())
            }
        });
        if self.stream && matches!(&res, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.fd.set_read_drained(true);
            self.fd.set_read_waits();
        }
        res
    }

    fn drained(&self, n: u32) -> bool {
        // Only where a short read proves the fd empty: elsewhere (a Unix stream stops after a
        // segment with SCM_RIGHTS) data may still be queued, and no new edge would announce it.
        self.stream && self.fd.short_read_drains(n as usize, self.len() as usize)
    }

    fn shorten(&mut self, max: u32) -> bool {
        // A datagram read is cut only by the buffer's size: it is never short by choice.
        if self.stream {
            self.max = max;
        }
        self.stream
    }

    fn inline_first(&self) -> bool {
        self.stream && !self.fd.read_drained() && !self.fd.read_waits()
    }

    fn inline_always(&self) -> bool {
        self.stream && self.fd.read_full()
    }

    fn complete(mut self, res: io::Result<u32>) -> Self::Output {
        if self.stream {
            // The hint for the next read (uring polls first): any short read suggests it.
            let total = self.len() as usize;
            self.fd
                .set_read_drained(matches!(res, Ok(n) if n > 0 && (n as usize) < total));
            // And the opposite: a large buffer filled, so the next read goes inline.
            self.fd.set_read_full(
                total >= INLINE_BULK_MIN as usize && matches!(res, Ok(n) if n as usize == total),
            );
        }
        if let Ok(n) = res {
            // A datagram's `n` is its full length (`MSG_TRUNC`), which may exceed the buffer.
            let written = n.min(self.len()) as usize;
            // SAFETY: the kernel wrote `written <= len <= bytes_total` bytes from the buffer's
            // start.
            unsafe { self.buf.set_init(written) };
        }
        (res.map(|n| n as usize), self.buf)
    }

    fn orphaned(self, res: io::Result<u32>) {
        if !self.stream {
            // A datagram's `n` is its full length (`MSG_TRUNC`); the buffer holds what fit.
            let res = res.map(|n| {
                let held = n.min(self.len()) as usize;
                // SAFETY: the kernel wrote `held <= len <= bytes_total` bytes from the buffer's
                // start, and it is done with the buffer (this is its completion).
                let bytes = unsafe { std::slice::from_raw_parts(self.buf.stable_ptr(), held) };
                // A plain `recv` does not learn the sender: on a connected socket (the only
                // one `recv` is documented for) it is the peer. Rare path: one syscall.
                let from = socket2::SockRef::from(&self.fd).peer_addr().ok();
                StashedDatagram::new(bytes.to_vec(), n as usize, from)
            });
            self.fd.stash_datagram(res);
            return;
        }
        match res {
            Ok(n) => {
                // SAFETY: the kernel wrote `n <= bytes_total` bytes from the buffer's start, and
                // it is done with the buffer (this is its completion).
                let received =
                    unsafe { std::slice::from_raw_parts(self.buf.stable_ptr(), n as usize) };
                self.fd.stash(received);
            }
            // A reset (say) that nobody saw: the next read must, not a clean end of stream.
            Err(e) => self.fd.stash_error(e),
        }
    }
}

/// A stream socket's send of `len` bytes at `ptr`, tried at once without building its op (see
/// `driver::op::write_at_once`): the syscall `Send::try_syscall` makes, with the fd borrowed.
///
/// # Safety
///
/// `ptr` points at `len` initialised bytes that stay in place during the call.
#[inline(always)]
pub(crate) unsafe fn send_at_once(fd: &SharedFd, ptr: *const u8, len: usize) -> WriteAtOnce {
    let len = clamp_len(len);
    write_at_once(fd, len, |want| {
        // SAFETY: the caller's promise: `len >= want` initialised bytes at `ptr`. MSG_NOSIGNAL
        // turns a closed peer into EPIPE instead of SIGPIPE, as in `Send::try_syscall`.
        unsafe { libc::send(fd.raw(), ptr.cast(), want as usize, libc::MSG_NOSIGNAL) }
    })
}

/// Sends a buffer's initialised bytes (to a socket, or with `pipe` to a pipe).
pub(crate) struct Send<B> {
    fd: SharedFd,
    buf: B,
    pipe: bool,
    /// The most one send may move (`u32::MAX` unless fault injection cuts it short).
    max: u32,
    /// A byte stream (a stream socket or a pipe), not a datagram: only a stream send may move
    /// fewer bytes than given.
    stream: bool,
    /// uring: a zero-copy send (`IORING_OP_SEND_ZC`), counted in the fd's zero-copy sends in
    /// flight until the op is dropped (after its notification, or when it never started).
    zero_copy: Option<ZeroCopyCount>,
}

/// One zero-copy send in its fd's count, until dropped.
struct ZeroCopyCount(SharedFd);

impl ZeroCopyCount {
    fn new(fd: &SharedFd) -> Self {
        fd.count_zero_copy(true);
        ZeroCopyCount(fd.clone())
    }
}

impl Drop for ZeroCopyCount {
    fn drop(&mut self) {
        self.0.count_zero_copy(false);
    }
}

impl<B: IoBuf> Send<B> {
    #[inline]
    pub(crate) fn new(fd: SharedFd, buf: B, pipe: bool) -> Self {
        Send {
            fd,
            buf,
            pipe,
            max: u32::MAX,
            stream: true,
            zero_copy: None,
        }
    }

    /// Sends one datagram on a connected datagram socket.
    pub(crate) fn datagram(fd: SharedFd, buf: B) -> Self {
        Send {
            stream: false,
            ..Send::new(fd, buf, false)
        }
    }

    /// The bytes this send moves at most.
    fn len(&self) -> u32 {
        clamp_len(self.buf.bytes_init()).min(self.max)
    }
}

impl<B: IoBufMut> Recv<B> {
    /// The bytes this receive takes at most.
    fn len(&self) -> u32 {
        clamp_len(self.buf.bytes_total()).min(self.max)
    }

    /// `MSG_TRUNC` for a datagram (the call returns the datagram's full length, so truncation
    /// shows); none for a stream, where it would discard bytes.
    fn recv_flags(&self) -> i32 {
        if self.stream { 0 } else { libc::MSG_TRUNC }
    }
}

// SAFETY: the SQE points at `buf`'s storage, which `IoBuf` keeps in place while the op owns it.
unsafe impl<B: IoBuf> Operation for Send<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.len();
        if self.pipe {
            return opcode::Write::new(Fd(self.fd.raw()), self.buf.stable_ptr(), len)
                .offset(CURRENT_POSITION)
                .build();
        }
        let ptr = self.buf.stable_ptr();
        if self.zero_copy.is_some() {
            return sqe_fd!(self.fd, |fd| opcode::SendZc::new(fd, ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build());
        }
        sqe_fd!(self.fd, |fd| opcode::Send::new(fd, ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build())
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Write))
    }

    #[inline]
    fn try_syscall(&mut self) -> io::Result<u32> {
        let len = self.len() as usize;
        let ptr = self.buf.stable_ptr().cast();
        // SAFETY: the buffer holds `len <= bytes_init` initialised bytes. MSG_NOSIGNAL turns a
        // closed peer into EPIPE instead of SIGPIPE (for a pipe, Rust programs ignore SIGPIPE).
        cvt(unsafe {
            if self.pipe {
                libc::write(self.fd.raw(), ptr, len)
            } else {
                libc::send(self.fd.raw(), ptr, len, libc::MSG_NOSIGNAL)
            }
        })
    }

    fn drained(&self, n: u32) -> bool {
        n < self.len()
    }

    fn shorten(&mut self, max: u32) -> bool {
        // A datagram goes whole or not at all.
        if self.stream {
            self.max = max;
        }
        self.stream
    }

    fn offer_zero_copy(&mut self, min: u32) {
        // A zero-copy send completes only after the kernel's notification that it no longer
        // reads the buffer, so handing the buffer back stays safe.
        // By the buffer's size, not by how much this one send may move (fault injection may cut
        // that short).
        // Only TCP: AF_UNIX has no zero-copy and would fail every such send with EOPNOTSUPP.
        let zero_copy = self.stream
            && !self.pipe
            && self.fd.zero_copy_allowed()
            && clamp_len(self.buf.bytes_init()) >= min;
        if zero_copy != self.zero_copy.is_some() {
            self.zero_copy = zero_copy.then(|| ZeroCopyCount::new(&self.fd));
        }
    }

    fn refuse_zero_copy(&mut self) -> bool {
        self.zero_copy.take().is_some()
    }

    fn zero_copy_fd(&self) -> Option<&SharedFd> {
        self.zero_copy.as_ref().map(|z| &z.0)
    }

    fn inline_first(&self) -> bool {
        // An inline send would copy: a zero-copy one goes to the ring.
        self.zero_copy.is_none()
    }

    #[inline]
    fn complete(self, res: io::Result<u32>) -> Self::Output {
        (res.map(|n| n as usize), self.buf)
    }
}
