//! Wakes from other threads: a remote queue of task ids, an eventfd, and an "asleep" flag so the
//! eventfd is written only when the loop is really blocked in the kernel.
//!
//! The protocol (model-checked in `loom_model` below): a sender queues its id or job under the
//! lock, then swaps `has_remote` to true, then swaps `sleeping` to false and, if it was true,
//! wakes the loop (a `MSG_RING` submitted at once, or an eventfd write). The loop, before it
//! blocks, swaps `sleeping` to true and then reads `has_remote` with a read-modify-write; if a
//! wake is pending it does not block. Both flags move only by read-modify-writes on the sending
//! side and on the sleeping side, so under acquire/release alone either the loop sees the queued
//! work or the sender sees the loop asleep and wakes it: **a loop never blocks with remote work
//! queued and no wake on its way**, and the wake needs nothing more of the sender's thread.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::sync::{AtomicBool, Mutex, Ordering};
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
        self.has_remote.swap(true, Ordering::AcqRel);
        if self.sleeping.swap(false, Ordering::AcqRel) {
            if super::current().is_some_and(|d| d.send_wake_message(self)) {
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

    /// Whether other threads queued anything since the last `take_remote` (a hint: a sender that
    /// comes later is seen by the next call, or wakes the loop if it sleeps).
    #[inline]
    pub(crate) fn remote_pending(&self) -> bool {
        self.has_remote.load(Ordering::Acquire)
    }

    /// Moves the remotely woken ids and the jobs sent from other threads into `ids` and `jobs`.
    pub(crate) fn take_remote(&self, ids: &mut Vec<u64>, jobs: &mut Vec<Job>) {
        // One flag for both queues: a turn with nothing from other threads takes no lock.
        if !self.has_remote.load(Ordering::Acquire) {
            return;
        }
        let mut q = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        // Cleared under the lock, before the queues are taken: a sender that queues after this
        // sets it again (its swap comes after ours, as its lock came after ours).
        self.has_remote.swap(false, Ordering::AcqRel);
        ids.append(&mut q);
        drop(q);
        if let Some(queued) = &mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) {
            jobs.append(queued);
        }
    }

    /// Announces that the loop is about to block. False if a remote wake is already pending, in
    /// which case the loop must not block. Pairs with `notify`: both flags are read-modify-written
    /// on both sides, so either the loop sees the queued work here or the sender's swap of
    /// `sleeping` sees `true` and wakes the loop (see the module docs).
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.swap(true, Ordering::AcqRel);
        // A read-modify-write, not a load: it reads the latest `has_remote`, and if a sender's
        // swap comes after it, that swap acquires our `sleeping = true`.
        if self.has_remote.fetch_or(false, Ordering::AcqRel) {
            self.sleeping.store(false, Ordering::Release);
            return false;
        }
        true
    }

    pub(crate) fn finish_sleep(&self) {
        self.sleeping.store(false, Ordering::Release);
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

#[cfg(all(test, ringloop_loom))]
mod loom_model {
    use super::*;

    fn eventfd_count(s: &Shared) -> u64 {
        let mut buf = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from our nonblocking eventfd.
        let n = unsafe { libc::read(s.eventfd(), (&mut buf as *mut u64).cast(), 8) };
        if n == 8 { buf } else { 0 }
    }

    /// One loop turn that finds nothing and goes to sleep, against another thread sending work
    /// (`send`). If the loop blocks, a wake must be on its way; the work is never lost.
    fn check(send: fn(&Arc<Shared>)) {
        loom::model(move || {
            let shared = Arc::new(Shared::new().unwrap());
            let s = shared.clone();
            let remote = crate::sync::thread::spawn(move || send(&s));
            let (mut ids, mut jobs) = (Vec::new(), Vec::new());
            shared.take_remote(&mut ids, &mut jobs);
            let blocks = ids.is_empty() && jobs.is_empty() && shared.prepare_sleep();
            remote.join().unwrap();
            if blocks {
                // Blocked in the kernel, only a wake can end the sleep.
                assert_eq!(
                    eventfd_count(&shared),
                    1,
                    "the loop slept with work queued and no wake sent"
                );
                shared.finish_sleep();
            }
            shared.take_remote(&mut ids, &mut jobs);
            assert_eq!(ids.len() + jobs.len(), 1, "the work was lost or doubled");
        });
    }

    #[test]
    fn loom_a_remote_wake_never_finds_the_loop_asleep_unwoken() {
        check(|s| s.push_remote(1));
    }

    #[test]
    fn loom_a_job_never_finds_the_loop_asleep_unwoken() {
        check(|s| {
            let _ = s.push_job(Box::new(|| {}));
        });
    }

    /// Two senders at once: one wake is enough, and neither item is lost.
    #[test]
    fn loom_two_senders_and_a_sleeping_loop() {
        loom::model(|| {
            let shared = Arc::new(Shared::new().unwrap());
            let senders: Vec<_> = (0..2)
                .map(|i| {
                    let s = shared.clone();
                    crate::sync::thread::spawn(move || s.push_remote(i))
                })
                .collect();
            let (mut ids, mut jobs) = (Vec::new(), Vec::new());
            shared.take_remote(&mut ids, &mut jobs);
            let blocks = ids.len() < 2 && shared.prepare_sleep();
            for s in senders {
                s.join().unwrap();
            }
            if blocks {
                let woken = eventfd_count(&shared);
                // Woken at most once per time it went to sleep; unless everything was taken
                // before, at least once.
                assert!(woken <= 1);
                assert!(woken == 1 || ids.len() == 2, "slept through a queued wake");
                shared.finish_sleep();
            }
            shared.take_remote(&mut ids, &mut jobs);
            ids.sort_unstable();
            assert_eq!(ids, [0, 1]);
        });
    }
}
