//! Wakes from other threads: a remote queue of task ids, an eventfd, and an "asleep" flag so the
//! eventfd is written only when the loop is really blocked in the kernel.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::{fmt, io};

/// A closure sent to a loop from any thread, run on the loop's thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The part of a loop other threads may touch. Owned by the loop and by every waker, so the
/// eventfd stays open as long as anyone could write to it.
pub(crate) struct Shared {
    remote: Mutex<Vec<u64>>,
    /// Work sent from other threads (`LoopHandle`); `None` once the loop has closed.
    jobs: Mutex<Option<Vec<Job>>>,
    has_remote: AtomicBool,
    sleeping: AtomicBool,
    eventfd: OwnedFd,
    /// uring loops on kernels with a trusted `IORING_OP_MSG_RING`: a duplicate of the ring's fd,
    /// so another uring loop can wake this one through its own ring. A sender holds a clone of
    /// the `Arc` until its message's completion, so the fd number a submitted message names is
    /// never closed or reused under it. Taken (`None`) when the loop closes: the dup would
    /// otherwise keep the closed loop's ring allocated in the kernel for as long as any waker or
    /// `LoopHandle` of it lives.
    msg_fd: Mutex<Option<Arc<OwnedFd>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("eventfd", &self.eventfd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative return is an error, checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Shared {
            remote: Mutex::new(Vec::new()),
            jobs: Mutex::new(Some(Vec::new())),
            has_remote: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            msg_fd: Mutex::new(None),
        })
    }

    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Queues a task woken from outside the loop's thread, and wakes the loop if it sleeps.
    pub(crate) fn push_remote(self: &Arc<Self>, id: u64) {
        self.remote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
        self.notify();
    }

    /// Queues a job for the loop's thread and wakes the loop if it sleeps. Gives the job back if
    /// the loop has closed (the caller drops it).
    pub(crate) fn push_job(self: &Arc<Self>, job: Job) -> Result<(), Job> {
        match &mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(jobs) => jobs.push(job),
            None => return Err(job),
        }
        self.notify();
        Ok(())
    }

    /// The loop is closing: refuse jobs from now on, stop taking wake messages (the ring's dup is
    /// closed once no sender holds it), and hand back the jobs still queued (the caller drops
    /// them outside the lock).
    pub(crate) fn close_jobs(&self) -> Vec<Job> {
        drop(self.msg_fd.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Whether the loop has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Lets other uring loops wake this one with `IORING_OP_MSG_RING` on `ring_fd`.
    pub(crate) fn accept_messages(&self, ring_fd: RawFd) {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes no pointers; a negative return is an error.
        let dup = unsafe { libc::fcntl(ring_fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup >= 0 {
            // SAFETY: `dup` is a new fd nobody else owns.
            let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(dup) });
            *self.msg_fd.lock().unwrap_or_else(|e| e.into_inner()) = Some(fd);
        }
    }

    /// The ring fd other uring loops may message, if any (none once the loop closed). The
    /// sender keeps the `Arc` until its message completes.
    pub(crate) fn msg_fd(&self) -> Option<Arc<OwnedFd>> {
        self.msg_fd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Something was queued: make the loop look at its queues. If it sleeps, wake it: through
    /// the calling thread's own ring (`MSG_RING`, submitted at once) when both are uring loops
    /// that allow it, else by writing the eventfd. Either way the wake is on its way when this
    /// returns: nothing further is asked of the calling thread.
    fn notify(self: &Arc<Self>) {
        self.has_remote.store(true, Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            if crate::context::send_wake_message(self) {
                return;
            }
            self.write_eventfd();
        }
    }

    /// Wakes the loop through its eventfd.
    pub(crate) fn write_eventfd(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. A failure can only be
        // EAGAIN (counter saturated), in which case the loop is already due to wake.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Moves the remotely woken ids and the jobs sent from other threads into `ids` and `jobs`.
    pub(crate) fn take_remote(&self, ids: &mut Vec<u64>, jobs: &mut Vec<Job>) {
        // One flag for both queues: a turn with nothing from other threads takes no lock.
        if !self.has_remote.load(Ordering::SeqCst) {
            return;
        }
        let mut q = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        self.has_remote.store(false, Ordering::SeqCst);
        ids.append(&mut q);
        drop(q);
        if let Some(queued) = &mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) {
            jobs.append(queued);
        }
    }

    /// Announces that the loop is about to block. False if a remote wake is already pending, in
    /// which case the loop must not block. Pairs with `push_remote`: with both sides SeqCst, either
    /// the loop sees the queued id here or the waker sees `sleeping` and writes the eventfd.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.has_remote.load(Ordering::SeqCst) {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn finish_sleep(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Resets the eventfd counter (epoll backend; the uring backend reads it through the ring).
    pub(crate) fn drain_eventfd(&self) {
        let mut buf = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64; the fd is nonblocking, so this never
        // blocks, and EAGAIN just means it was already drained.
        unsafe {
            libc::read(
                self.eventfd.as_raw_fd(),
                (&mut buf as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventfd_count(s: &Shared) -> u64 {
        let mut buf = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from our nonblocking eventfd.
        let n = unsafe { libc::read(s.eventfd(), (&mut buf as *mut u64).cast(), 8) };
        if n == 8 { buf } else { 0 }
    }

    #[test]
    fn the_eventfd_is_written_only_while_the_loop_sleeps() {
        let s = Arc::new(Shared::new().unwrap());
        s.push_remote(1);
        s.push_remote(2);
        assert_eq!(eventfd_count(&s), 0, "an awake loop needs no eventfd write");
        let (mut ids, mut jobs) = (Vec::new(), Vec::new());
        s.take_remote(&mut ids, &mut jobs);
        assert_eq!(ids, vec![1, 2]);

        assert!(s.prepare_sleep());
        s.push_remote(3);
        s.push_remote(4);
        assert_eq!(
            eventfd_count(&s),
            1,
            "one write wakes a sleeping loop, once"
        );
        s.finish_sleep();
    }

    #[test]
    fn a_pending_remote_wake_forbids_sleeping() {
        let s = Arc::new(Shared::new().unwrap());
        s.push_remote(9);
        assert!(
            !s.prepare_sleep(),
            "the loop must not block with a wake queued"
        );
    }
}
