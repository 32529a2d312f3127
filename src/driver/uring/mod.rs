//! The io_uring driver: the slab of ops (user_data <-> slot), submission, multishot ops,
//! cancellation and drain-on-drop. Setting the ring up is in `setup`, waiting and reaping in
//! `wait`, wakes from other threads in `wake`.

mod direct;
mod setup;
#[cfg(test)]
mod tests;
mod wait;
mod wake;

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode, squeue};
use slab::Slab;

use super::Shared;
use super::fd::WeakFd;
use super::op::{Deliver, Orphan};
use crate::backend::FastPaths;
use crate::buf::pool::{POOL_GROUP, Pool};
use crate::faults::Fault;
use crate::stats::Counters;
pub(crate) use direct::Direct;
use direct::{DIRECT_CLOSE_BIT, DirectTable};

/// user_data of the eventfd poll (or read) that wakes the loop from other threads.
const WAKE_TAG: u64 = u64::MAX;
/// user_data of `ASYNC_CANCEL` requests (their own CQEs need no handling).
const CANCEL_TAG: u64 = u64::MAX - 1;
/// user_data of the CQE another loop's `MSG_RING` posts into this ring to wake it. No SQE of
/// this ring made it, so it does not count as in flight.
const MSG_WAKE_TAG: u64 = u64::MAX - 3;
/// Bit set in the user_data of this ring's own `MSG_RING` SQEs (the rest is a `msgs` key).
const MSG_SENT_BIT: u64 = 1 << 62;

/// Where one submitted op is.
enum Lifecycle {
    /// In flight; wake this when the CQE arrives.
    Waiting(Waker),
    /// The CQE arrived; the op's future has not seen it yet.
    /// (The CQE's raw result: 4 bytes in every op slot rather than an `io::Result`'s 16.)
    Completed(i32),
    /// A zero-copy send's result came (a CQE with `IORING_CQE_F_MORE`), but the kernel may still
    /// read the buffer: the op completes, with this result, when the notification CQE comes.
    Notifying(Waker, i32),
    /// The op's future was dropped; its data waits here for the CQE.
    Ignored(Box<dyn Orphan>),
    /// A multishot op: every CQE goes to `deliver`, until one comes without `IORING_CQE_F_MORE`.
    Multi {
        fd: WeakFd,
        deliver: Deliver,
        /// A cancel was pushed (the sink asked to stop, or its fd's owner went away).
        stopping: bool,
        /// The fd of an owner that went away, closed once the last CQE came.
        keep: Option<OwnedFd>,
    },
}

pub(crate) struct UringDriver {
    ring: IoUring,
    ops: Slab<Lifecycle>,
    /// SQEs pushed whose CQE has not arrived yet (ops, wake read, cancels, timeouts).
    in_flight: usize,
    defer_taskrun: bool,
    /// Waits may batch (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.12, and the fast path on).
    batch_waits: bool,
    /// Completions the last reap dispatched: two or more mark the loop busy, and its next wait
    /// batches.
    last_reaped: usize,
    /// Which setup flags the ring got, for `EventLoop`'s debug output.
    pub(super) setup: &'static str,
    wake_fd: RawFd,
    /// Wakes arrive through a multishot poll of `wake_fd` (else an eventfd read into `wake_buf`).
    wake_poll: bool,
    wake_buf: Box<u64>,
    wake_armed: bool,
    closing: bool,
    orphans: Vec<(Box<dyn Orphan>, io::Result<u32>)>,
    /// Loops woken through `MSG_RING` whose message has not completed: each `Shared` keeps its
    /// ring's fd open until then.
    msgs: Slab<(Arc<Shared>, Arc<OwnedFd>)>,
    /// The receive pool registered as the ring's buffer group, for multishot receives.
    pool: Option<Rc<Pool>>,
    /// The ring's index among this thread's registered ring fds (`IORING_REGISTER_RING_FDS`):
    /// every enter passes it instead of the fd, which saves the kernel an fd lookup.
    ring_index: Option<u32>,
    /// The receive pool's buffer ring is registered with this ring.
    pool_registered: bool,
    /// Multishot ops in `ops`: they stay armed for long, so they do not count for `no_ops`.
    multis: usize,
    counters: Rc<Counters>,
    /// Completions taken from the CQ, dispatched one by one (reused, so reaping allocates
    /// nothing).
    batch: Vec<(u64, i32, u32)>,
    /// Completions to dispatch at the next reap, before the CQ's: held back by fault injection,
    /// or made up for an op that was never submitted. The loop does not block while any wait.
    late: Vec<(u64, i32, u32)>,
    /// Sockets that had zero-copy sends submitted (pruned as it grows): closing the loop resets
    /// those whose pages the kernel still holds after `CLOSE_WAIT`.
    zero_copy_socks: Vec<WeakFd>,
    /// Closing gave up waiting and leaked what the kernel still holds: a second `shutdown` (the
    /// drop after `close`) does not wait again.
    abandoned: bool,
    /// Accepted connections in the ring's file table (`direct`).
    direct: DirectTable,
}

/// How long closing the loop waits for its cancelled ops to complete before it resets the
/// connections whose zero-copy sends a peer still pins (one that stopped reading holds their
/// notification for good), and then again before it leaks what the kernel still holds rather
/// than wait without end.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

impl UringDriver {
    /// A zero-copy send was submitted on `fd`.
    pub(super) fn note_zero_copy(&mut self, fd: WeakFd) {
        if self.zero_copy_socks.len() >= 64 && self.zero_copy_socks.len().is_power_of_two() {
            self.zero_copy_socks
                .retain(|w| w.upgrade().is_some_and(|f| f.zero_copy_in_flight() > 0));
        }
        self.zero_copy_socks.push(fd);
    }

    /// Starts a multishot op on `fd`; its completions go to `deliver` until the last one.
    pub(super) fn submit_multishot(
        &mut self,
        entry: squeue::Entry,
        fd: WeakFd,
        deliver: Deliver,
        ends_with: i32,
    ) -> io::Result<usize> {
        if self.closing {
            return Err(io::Error::other("the loop is closing"));
        }
        let key = self.ops.insert(Lifecycle::Multi {
            fd,
            deliver,
            stopping: false,
            keep: None,
        });
        self.multis += 1;
        if self.counters.faults.inject(Fault::MultishotEnd) {
            // Ended before its first completion (no F_MORE): the pool ran dry, or cancelled.
            self.complete_without_kernel(key, -ends_with);
            return Ok(key);
        }
        let entry = entry.user_data(key as u64);
        // SAFETY: multishot receives and accepts carry no pointer into user memory (the kernel
        // picks pool buffers, which the pool keeps alive until its ring is unregistered); the fd
        // stays open until the last CQE (its owner's `SharedFd`, or `keep`).
        if let Err(e) = unsafe { self.push(&entry) } {
            self.ops.remove(key);
            self.multis -= 1;
            return Err(e);
        }
        Counters::bump(&self.counters.ops_submitted);
        Ok(key)
    }

    /// Cancels the multishot op in slot `key` (once); the fd `keep`, if any, is closed after its
    /// last CQE.
    pub(super) fn stop_multishot(&mut self, key: usize, keep: Option<OwnedFd>) {
        let Some(Lifecycle::Multi {
            stopping,
            keep: kept,
            ..
        }) = self.ops.get_mut(key)
        else {
            return; // keep, if any, is closed here: its op is over
        };
        if keep.is_some() {
            *kept = keep;
        }
        if !std::mem::replace(stopping, true) {
            self.push_cancel(key);
        }
    }

    /// Cancels the multishot op in slot `key` and waits for it (`IORING_REGISTER_SYNC_CANCEL`,
    /// Linux 6.0+), delivering what it completed before it ended. Falls back to an async cancel.
    pub(super) fn stop_multishot_now(&mut self, key: usize) -> io::Result<()> {
        if !matches!(self.ops.get(key), Some(Lifecycle::Multi { .. })) {
            return Ok(());
        }
        // Only submitted requests can be cancelled synchronously.
        while !self.sq_empty() {
            self.submit_queued()?;
        }
        let cancel = io_uring::types::CancelBuilder::user_data(key as u64);
        if self
            .ring
            .submitter()
            .register_sync_cancel(None, cancel)
            .is_err()
        {
            self.stop_multishot(key, None);
        }
        // Post and dispatch the completions (with DEFER_TASKRUN they wait for an enter), every
        // one of them now: the caller looks at the op's state right after.
        self.enter(0, Some(Duration::ZERO))?;
        self.reap_all();
        Ok(())
    }

    /// Queues an `ASYNC_CANCEL` of the op in slot `key`.
    ///
    /// The slot may be free by the time the cancel is queued (the op's last completion came in
    /// the same reap, or in the one a full SQ's submit made inside `push`), and user_data has
    /// no generation. That is safe: nothing takes the freed slot before the cancel is queued,
    /// so the slot's next op is queued behind it; the kernel issues SQEs in order and a cancel
    /// only finds requests issued before it, so it misses (`ENOENT`).
    fn push_cancel(&mut self, key: usize) {
        let cancel = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: ASYNC_CANCEL carries no pointers. If the push fails the op ends with its fd.
        let _ = unsafe { self.push(&cancel) };
    }

    /// Queues an SQE. Pushing never enters the kernel unless the SQ is full, in which case what is
    /// queued is submitted first.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid until its CQE is reaped (see `Operation`).
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller keeps the entry's memory alive until its CQE arrives.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.submit_queued()?;
        }
    }

    /// Whether the loop is closing (its ops are being cancelled).
    pub(super) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether no SQE waits to be submitted.
    #[inline]
    pub(super) fn sq_empty(&mut self) -> bool {
        self.ring.submission().is_empty()
    }

    /// Whether no op is queued or in the kernel (the loop's own wake read and timeouts aside): a
    /// new op would make the next ring trip alone.
    #[inline]
    pub(super) fn no_ops(&mut self) -> bool {
        self.ops.len() == self.multis && self.sq_empty()
    }

    /// Hands the queued SQEs to the kernel without waiting (the SQ was full).
    /// Submits what is queued now, without waiting (see `Operation::submit_at_once`), when
    /// other ops are in flight; alone, the op goes with the wait that follows (one enter).
    pub(super) fn submit_now(&mut self) -> io::Result<()> {
        if self.in_flight <= 1 + usize::from(self.wake_armed) {
            return Ok(());
        }
        self.submit_queued()
    }

    fn submit_queued(&mut self) -> io::Result<()> {
        // SAFETY: no argument.
        match unsafe { self.sys_enter(0, 0, std::ptr::null(), 0) } {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => Ok(()),
                // The kernel is short of room for completions: reap, then try again.
                Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    self.enter(0, Some(Duration::ZERO))?;
                    self.reap();
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Starts an op: a slab slot for its state, its SQE queued with the slot as user_data.
    pub(super) fn submit_op(&mut self, entry: squeue::Entry, waker: &Waker) -> io::Result<usize> {
        let key = self.ops.insert(Lifecycle::Waiting(waker.clone()));
        if !self.closing && self.counters.faults.inject(Fault::CancelledBeforeStart) {
            // Cancelled before it started: nothing of it reached the kernel.
            self.complete_without_kernel(key, -libc::ECANCELED);
            return Ok(key);
        }
        let entry = entry.user_data(key as u64);
        // SAFETY: the entry's memory belongs to an op whose data stays boxed in its `Op` or, if
        // the future is dropped, in `Lifecycle::Ignored`, until this slot's CQE arrives.
        if let Err(e) = unsafe { self.push(&entry) } {
            self.ops.remove(key);
            return Err(e);
        }
        Counters::bump(&self.counters.ops_submitted);
        Ok(key)
    }

    /// Fault injection: an op that completes with `result` without reaching the kernel (a
    /// spurious readiness report). Its completion comes with the next reap.
    pub(super) fn complete_spuriously(&mut self, result: i32, waker: &Waker) -> usize {
        let key = self.ops.insert(Lifecycle::Waiting(waker.clone()));
        self.complete_without_kernel(key, result);
        key
    }

    /// Fault injection: the op in slot `key` ends with `result` (its final completion, at the
    /// next reap) without its SQE ever reaching the kernel.
    fn complete_without_kernel(&mut self, key: usize, result: i32) {
        self.in_flight += 1;
        self.late.push((key as u64, result, 0));
        Counters::bump(&self.counters.ops_submitted);
    }

    /// Checks an op's slot: its result if the CQE came, else remembers the waker.
    pub(super) fn poll_op(&mut self, key: usize, cx: &Context<'_>) -> Poll<io::Result<u32>> {
        match &mut self.ops[key] {
            Lifecycle::Waiting(w) | Lifecycle::Notifying(w, _) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
                Poll::Pending
            }
            Lifecycle::Completed(_) => match self.ops.remove(key) {
                Lifecycle::Completed(res) => Poll::Ready(wait::cqe_result(res)),
                _ => unreachable!("slot {key} was Completed a moment ago"),
            },
            Lifecycle::Ignored(_) => unreachable!("an abandoned op was polled"),
            Lifecycle::Multi { .. } => unreachable!("a multishot op was polled as a one-shot"),
        }
    }

    /// The op's future was dropped. If its CQE already came, the data and result are handed back
    /// to be released by the caller; otherwise the data is parked until the CQE and a cancel is
    /// pushed.
    pub(super) fn abandon(
        &mut self,
        key: usize,
        mut data: Box<dyn Orphan>,
    ) -> Option<(Box<dyn Orphan>, io::Result<u32>)> {
        data.abandoned();
        if let Lifecycle::Completed(_) = &self.ops[key] {
            return match self.ops.remove(key) {
                Lifecycle::Completed(res) => Some((data, wait::cqe_result(res))),
                _ => unreachable!("slot {key} was Completed a moment ago"),
            };
        }
        if let Lifecycle::Notifying(..) = &self.ops[key] {
            // The send is done; only its notification is to come, and a cancel cannot hurry it.
            self.ops[key] = Lifecycle::Ignored(data);
            return None;
        }
        self.ops[key] = Lifecycle::Ignored(data);
        // If the push fails the op still completes on its own and its data is freed then.
        self.push_cancel(key);
        None
    }

    /// Whether orphaned ops wait to be released (`take_orphans`).
    pub(super) fn has_orphans(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// Orphaned ops whose CQE arrived, to be released outside the driver's borrow.
    pub(super) fn take_orphans(&mut self) -> Vec<(Box<dyn Orphan>, io::Result<u32>)> {
        mem::take(&mut self.orphans)
    }

    /// Cancels everything in flight and waits for every CQE, so no memory the kernel may write is
    /// freed. Waiting ops get their result (usually `ECANCELED`) in their slot.
    pub(super) fn shutdown(&mut self) {
        self.closing = true;
        if self.abandoned {
            return;
        }
        if self.in_flight == 0 {
            self.unregister_pool();
            return;
        }
        let keys: Vec<u64> = self
            .ops
            .iter()
            .filter(|(_, l)| !matches!(l, Lifecycle::Completed(_)))
            .map(|(k, _)| k as u64)
            .collect();
        let targets = keys.into_iter().chain(self.wake_armed.then_some(WAKE_TAG));
        for target in targets {
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: ASYNC_CANCEL carries no pointers.
            let _ = unsafe { self.push(&cancel) };
        }
        // Every op was cancelled, so each CQE comes soon, except a zero-copy send's
        // notification, which comes when the peer has taken the bytes: after `CLOSE_WAIT`, the
        // connections that still pin pages are reset, so the kernel drops them; after another,
        // what is left is leaked below. (EXT_ARG, which bounds the wait, is required.)
        let mut deadline = std::time::Instant::now() + CLOSE_WAIT;
        let mut reset = false;
        while self.in_flight > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                if reset {
                    break;
                }
                reset = true;
                for sock in mem::take(&mut self.zero_copy_socks) {
                    if let Some(fd) = sock.upgrade().filter(|f| f.zero_copy_in_flight() > 0) {
                        fd.abort_connection();
                    }
                }
                deadline = now + CLOSE_WAIT;
                continue;
            }
            if self.late.is_empty() && self.enter(1, Some(deadline - now)).is_err() {
                // The ring itself failed; nothing more can be reaped from it.
                break;
            }
            self.reap();
        }
        if self.in_flight > 0 {
            // The kernel may still write into these: leak them rather than free them.
            self.abandoned = true;
            mem::forget(mem::take(&mut self.ops));
            mem::forget(mem::replace(&mut self.wake_buf, Box::new(0)));
        } else {
            self.unregister_pool();
        }
    }

    pub(super) fn drained(&self) -> bool {
        self.in_flight == 0
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // Normally `shutdown` ran already; this covers a driver dropped during a panic.
        self.shutdown();
        self.unregister_ring_fd();
        // Orphans left here are released with the driver, after every CQE came.
    }
}
