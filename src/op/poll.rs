//! Readiness: `PollAdd` (a one-shot `IORING_OP_POLL_ADD`) and `ReadyWait`, which waits for an fd to
//! become readable or writable on either backend. Poll-based I/O (`compat`) uses it: no kernel op
//! ever holds the caller's memory, only the fd.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::{opcode, squeue};

use super::cvt;
use crate::driver::DriverCell;
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Op, Operation};
use crate::faults::Fault;

fn poll_events(dir: Interest) -> i16 {
    match dir {
        // POLLRDHUP: a peer's FIN wakes a reader too (it reads 0).
        Interest::Read => libc::POLLIN | libc::POLLRDHUP,
        Interest::Write => libc::POLLOUT,
    }
}

/// Waits until `fd` is ready in one direction (errors and hang-ups count as ready: the syscall
/// that follows reports them).
pub(crate) struct PollAdd {
    fd: SharedFd,
    dir: Interest,
}

impl PollAdd {
    pub(crate) fn new(fd: SharedFd, dir: Interest) -> Self {
        PollAdd { fd, dir }
    }
}

// SAFETY: the SQE carries no pointer, only the fd, which `self.fd` keeps open until the CQE.
unsafe impl Operation for PollAdd {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let events = poll_events(self.dir) as u32;
        sqe_fd!(self.fd, |fd| opcode::PollAdd::new(fd, events).build())
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, self.dir))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let mut pfd = libc::pollfd {
            fd: self.fd.raw(),
            events: poll_events(self.dir),
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let n = cvt(unsafe { libc::poll(&mut pfd, 1, 0) } as isize)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(pfd.revents as u16 as u32)
    }

    fn complete(self, res: io::Result<u32>) -> io::Result<()> {
        res.map(|_| ())
    }

    fn spurious_result(&self) -> Option<i32> {
        Some(i32::from(poll_events(self.dir)))
    }
}

enum WaitState {
    Idle,
    /// uring: a one-shot poll in the ring.
    Ring(Op<PollAdd>),
    /// epoll: the fd's registration is armed in this direction.
    Armed(u64),
}

/// One direction's wait for readiness, for a caller that polls (the `compat` streams).
pub(crate) struct ReadyWait {
    dir: Interest,
    state: WaitState,
    /// The last transfer was short: the socket was drained (or full) then, so the next syscall
    /// would most likely say `EAGAIN`. uring polls first instead (epoll knows from its flags).
    drained: bool,
}

impl std::fmt::Debug for ReadyWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            WaitState::Idle => "idle",
            WaitState::Ring(_) => "poll in the ring",
            WaitState::Armed(_) => "armed",
        };
        f.debug_struct("ReadyWait")
            .field("dir", &self.dir)
            .field("state", &state)
            .finish()
    }
}

impl ReadyWait {
    pub(crate) fn new(dir: Interest) -> Self {
        ReadyWait {
            dir,
            state: WaitState::Idle,
            drained: false,
        }
    }

    /// Before a syscall: `Ready` when it is worth trying (no wait outstanding, or the wait is
    /// over); `Pending`, with the waker kept, while a wait is outstanding, or when epoll knows the
    /// fd is not ready since the last short transfer (a syscall could only say `EAGAIN`).
    pub(crate) fn poll_ready(
        &mut self,
        driver: &Rc<DriverCell>,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.state {
            WaitState::Idle => {
                if std::mem::take(&mut self.drained) && driver.readiness_in_ring() {
                    // A poll in the ring completes at once if data came meanwhile; it saves the
                    // syscall that would most likely only say EAGAIN.
                    return self.poll_begin(driver, fd, cx);
                }
                if let Some(token) = driver.arm_if_known_not_ready(fd, self.dir, cx.waker()) {
                    self.state = WaitState::Armed(token);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            WaitState::Ring(op) => {
                let res = std::task::ready!(Pin::new(op).poll(cx));
                self.state = WaitState::Idle;
                Poll::Ready(res)
            }
            WaitState::Armed(token) => {
                if driver.poll_armed(*token, self.dir, cx.waker()) {
                    self.state = WaitState::Idle;
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    /// The syscall said `EAGAIN`: starts waiting. `Ready` if readiness came at once (try again).
    pub(crate) fn poll_begin(
        &mut self,
        driver: &Rc<DriverCell>,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if driver.readiness_in_ring() {
            let mut op = Op::new(PollAdd::new(fd.clone(), self.dir));
            match Pin::new(&mut op).poll(cx) {
                Poll::Pending => {
                    self.state = WaitState::Ring(op);
                    Poll::Pending
                }
                ready => ready,
            }
        } else {
            let token = driver.arm_readiness(fd, self.dir, cx.waker())?;
            self.state = WaitState::Armed(token);
            Poll::Pending
        }
    }

    /// Runs the nonblocking `syscall` on `fd` in this direction until it gives something other
    /// than `EAGAIN`: tries it when worth it (`poll_ready`), waits for readiness after `EAGAIN`
    /// (`poll_begin`), and spends a unit of cooperative budget per try. `len` is what the call
    /// asks for, to notice a short transfer.
    pub(crate) fn poll_syscall(
        &mut self,
        driver: &Rc<DriverCell>,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        len: usize,
        mut syscall: impl FnMut(std::os::fd::RawFd) -> io::Result<u32>,
    ) -> Poll<io::Result<usize>> {
        self.poll_transfer_inner(driver, fd, cx, len, (false, true), |raw, _| syscall(raw))
    }

    /// As [`poll_syscall`](Self::poll_syscall) for a byte transfer that may move fewer bytes
    /// than `len`: `syscall` gets the fd and the most it may move this time (`len`, or less when
    /// fault injection cuts the transfer short).
    pub(crate) fn poll_transfer(
        &mut self,
        driver: &Rc<DriverCell>,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        len: usize,
        syscall: impl FnMut(std::os::fd::RawFd, usize) -> io::Result<u32>,
    ) -> Poll<io::Result<usize>> {
        self.poll_transfer_inner(driver, fd, cx, len, (true, true), syscall)
    }

    /// As [`poll_transfer`](Self::poll_transfer) for a transfer whose short result proves
    /// nothing about the fd (`sendfile` stops short at the end of the file, with room left in
    /// the socket): the next try is never skipped for it.
    pub(crate) fn poll_transfer_unproven(
        &mut self,
        driver: &Rc<DriverCell>,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        len: usize,
        syscall: impl FnMut(std::os::fd::RawFd, usize) -> io::Result<u32>,
    ) -> Poll<io::Result<usize>> {
        self.poll_transfer_inner(driver, fd, cx, len, (true, false), syscall)
    }

    /// `shortable`: fault injection may cut the transfer short; `short_proves`: a short result
    /// shows the fd drained or full.
    fn poll_transfer_inner(
        &mut self,
        driver: &Rc<DriverCell>,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        len: usize,
        (shortable, short_proves): (bool, bool),
        mut syscall: impl FnMut(std::os::fd::RawFd, usize) -> io::Result<u32>,
    ) -> Poll<io::Result<usize>> {
        let faults = &driver.counters().faults;
        loop {
            std::task::ready!(self.poll_ready(driver, fd, cx))?;
            if !crate::coop::proceed() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if faults.inject(Fault::Interrupted) {
                continue; // as if a signal interrupted the call: try again
            }
            let mut max = len;
            if shortable && len > 1 && faults.inject(Fault::ShortTransfer) {
                max = 1 + faults.below(len as u64 - 1) as usize;
            }
            crate::stats::Counters::bump(&driver.counters().io_syscalls);
            match syscall(fd.raw(), max) {
                Ok(n) => {
                    let n = n as usize;
                    if short_proves {
                        self.transferred(driver, fd, n, max);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.poll_begin(driver, fd, cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// A transfer of `n` bytes of the `len` asked for went through. A short one suggests the fd
    /// is drained (reads) or full (writes): uring polls first next time, which is always safe.
    /// epoll skips the syscall until the next edge only where that is proven: a short write,
    /// or a short read on a transport where it proves emptiness (`SharedFd::short_read_drains`).
    fn transferred(&mut self, driver: &Rc<DriverCell>, fd: &SharedFd, n: usize, len: usize) {
        self.drained = n > 0 && n < len;
        let proven = match self.dir {
            Interest::Read => fd.short_read_drains(n, len),
            Interest::Write => self.drained,
        };
        if proven {
            driver.note_drained(fd, self.dir);
        }
    }
}
