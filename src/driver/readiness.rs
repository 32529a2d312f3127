//! Readiness for poll-based callers (`compat`, `io::AsyncFd`, epoll ops): the fd's epoll
//! registration and its per-direction flags, or, on uring, polls in the ring.

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

use super::fd::SharedFd;
use super::uring::Direct;
use super::{Driver, DriverCell, closed_error, op};
use crate::Backend;
use crate::stats::Counters;

impl DriverCell {
    /// Whether poll-based callers wait for readiness with a ring op (`POLL_ADD`) rather than the
    /// fd's epoll registration.
    pub(crate) fn readiness_in_ring(&self) -> bool {
        matches!(self.backend, Backend::Uring)
    }

    /// epoll: the fd's registration with this loop's epoll (its token), added on first need.
    pub(crate) fn epoll_token(self: &Rc<Self>, fd: &SharedFd) -> io::Result<u64> {
        if let Some(token) = fd.registration(self) {
            return Ok(token);
        }
        let token = self.with_epoll(|e| e.register(fd.raw()))?;
        if let Some((old_driver, old_token)) = fd.set_registration(self.clone(), token) {
            // The fd moved here from another loop: release it there.
            old_driver.deregister(fd.raw(), old_token, true);
        }
        Ok(token)
    }

    /// epoll: registers `fd` if needed and arms its `dir` readiness (the syscall said `EAGAIN`);
    /// returns the token. Other backends: an error (they wait with a ring op).
    pub(crate) fn arm_readiness(
        self: &Rc<Self>,
        fd: &SharedFd,
        dir: op::Interest,
        waker: &std::task::Waker,
    ) -> io::Result<u64> {
        if !matches!(&*self.driver.borrow(), Driver::Epoll(_)) {
            return Err(closed_error());
        }
        let token = self.epoll_token(fd)?;
        self.with_epoll(|e| e.arm(token, dir, waker));
        Ok(token)
    }

    /// epoll: if `fd` is registered and known not ready in `dir` (a short transfer since its last
    /// edge), arms it and returns the token. `None` otherwise, and on other backends.
    pub(crate) fn arm_if_known_not_ready(
        self: &Rc<Self>,
        fd: &SharedFd,
        dir: op::Interest,
        waker: &std::task::Waker,
    ) -> Option<u64> {
        let token = fd.registration(self)?;
        match &mut *self.driver.borrow_mut() {
            Driver::Epoll(e) => e.arm_unless_ready(token, dir, waker).then_some(token),
            _ => None,
        }
    }

    /// epoll: whether an armed registration saw an edge in `dir` (if not, `waker` is kept). True on
    /// other backends, so the caller retries its syscall and finds out.
    pub(crate) fn poll_armed(
        &self,
        token: u64,
        dir: op::Interest,
        waker: &std::task::Waker,
    ) -> bool {
        match &mut *self.driver.borrow_mut() {
            Driver::Epoll(e) => e.poll_ready(token, dir, waker),
            _ => true,
        }
    }

    /// epoll: a short transfer drained (or filled) the socket; not ready until its next edge
    /// (see `EpollDriver::clear_ready`).
    pub(crate) fn note_drained(self: &Rc<Self>, fd: &SharedFd, dir: op::Interest) {
        self.clear_ready(fd, dir, Some(fd.raw()));
    }

    /// epoll: an `AsyncFd` user cleared readiness (a call said `WouldBlock`); not ready until
    /// the next edge unless the fd hung up.
    pub(crate) fn note_would_block(self: &Rc<Self>, fd: &SharedFd, dir: op::Interest) {
        self.clear_ready(fd, dir, None);
    }

    fn clear_ready(self: &Rc<Self>, fd: &SharedFd, dir: op::Interest, verify: Option<RawFd>) {
        let Some(token) = fd.registration(self) else {
            return;
        };
        if let Driver::Epoll(e) = &mut *self.driver.borrow_mut() {
            e.clear_ready(token, dir, verify);
        }
    }

    /// Forgets an fd's registration (called when the fd closes or moves to another loop): its
    /// epoll registration, or on uring its slot in the ring's file table (`token` is the slot),
    /// emptied now or, if the driver is busy, by a close queued at the next park.
    pub(crate) fn deregister(&self, fd: RawFd, token: u64, still_open: bool) {
        match self.driver.try_borrow_mut().as_deref_mut() {
            Ok(Driver::Epoll(e)) => e.deregister(fd, token, still_open),
            Ok(Driver::Uring(u)) => u.release_direct(token as u32),
            // Closed: the ring and its table are gone.
            Ok(Driver::Closed) => {}
            Err(_) if self.backend == Backend::Uring => {
                self.direct_pending.borrow_mut().push(token as u32);
            }
            Err(_) => {}
        }
    }

    /// uring: puts a newly accepted connection in the ring's file table as well (a direct
    /// descriptor, `uring::direct`), so its ring ops name the slot. Nothing on epoll, with
    /// `RINGLOOP_DISABLE=direct-fd`, or where the kernel has no table; a full table is counted
    /// and leaves the connection a plain fd.
    pub(crate) fn register_direct(self: &Rc<Self>, fd: &SharedFd) {
        if !self.fast.direct_fd || fd.has_registration() {
            return;
        }
        let direct = match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) => u.register_direct(fd.raw()),
            _ => return,
        };
        match direct {
            Direct::Slot(slot) => {
                fd.set_direct(self.clone(), slot);
                Counters::bump(&self.counters.direct_descriptors);
            }
            Direct::Full => Counters::bump(&self.counters.direct_table_full),
            Direct::Off => {}
        }
    }
}
