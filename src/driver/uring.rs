//! The io_uring driver: ring setup and flags, batched submission, user_data <-> slab slot, CQE
//! dispatch, and drain-on-drop.

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
use super::faults::Fault;
use super::fd::WeakFd;
use super::op::{Deliver, Orphan};
use crate::backend::FastPaths;
use crate::buf::pool::{POOL_GROUP, Pool};
use crate::stats::Counters;

/// user_data of the eventfd read that wakes the loop from other threads.
const WAKE_TAG: u64 = u64::MAX;
/// user_data of `ASYNC_CANCEL` requests (their own CQEs need no handling).
const CANCEL_TAG: u64 = u64::MAX - 1;
/// user_data of the CQE another loop's `MSG_RING` posts into this ring to wake it. No SQE of
/// this ring made it, so it does not count as in flight.
const MSG_WAKE_TAG: u64 = u64::MAX - 3;
/// Bit set in the user_data of this ring's own `MSG_RING` SQEs (the rest is a `msgs` key).
const MSG_SENT_BIT: u64 = 1 << 62;

const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: u32 = 20;
const IORING_UNREGISTER_RING_FDS: u32 = 21;

/// `struct io_uring_getevents_arg` with the field Linux 6.12 added (`min_wait_usec`, formerly
/// padding): the argument of an `EXT_ARG` enter that batches its wait.
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// How long a batched wait holds out for more completions once one came (see
/// `UringDriver::park`).
const BATCH_WAIT_USEC: u32 = 10;

/// Waits batch only while at most this many ops are in flight: with more, completions come in
/// batches by themselves, and holding out measured slower (BENCHMARKS.md, streaming).
const BATCH_MAX_IN_FLIGHT: usize = 8;

/// `struct io_uring_rsrc_update`, the argument of `IORING_(UN)REGISTER_RING_FDS`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Where one submitted op is.
enum Lifecycle {
    /// In flight; wake this when the CQE arrives.
    Waiting(Waker),
    /// The CQE arrived; the op's future has not seen it yet.
    Completed(io::Result<u32>),
    /// A zero-copy send's result came (a CQE with `IORING_CQE_F_MORE`), but the kernel may still
    /// read the buffer: the op completes, with this result, when the notification CQE comes.
    Notifying(Waker, io::Result<u32>),
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
}

/// Builds a ring with the fastest flags the kernel accepts, dropping them one by one on `EINVAL`.
fn build_ring(entries: u32, fast: FastPaths) -> io::Result<(IoUring, &'static str)> {
    type Setup = fn(&mut io_uring::Builder) -> &mut io_uring::Builder;
    let attempts: [(&str, Setup); 5] = [
        // SUBMIT_ALL (5.18): a bad SQE in a batch does not hold back the ones after it.
        // NO_SQARRAY (6.6): SQEs are taken from the SQ in order, with no index array to fill.
        (
            "SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|SUBMIT_ALL|NO_SQARRAY",
            |b| {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun()
                    .setup_submit_all()
                    .setup_no_sqarray()
            },
        ),
        ("SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_coop_taskrun()
        }),
        ("SINGLE_ISSUER|COOP_TASKRUN", |b| {
            b.setup_single_issuer().setup_coop_taskrun()
        }),
        ("COOP_TASKRUN", |b| b.setup_coop_taskrun()),
        ("none", |b| b),
    ];
    let mut last = None;
    let skip = usize::from(!fast.setup_flags);
    for (name, setup) in attempts.into_iter().skip(skip) {
        let mut builder = IoUring::builder();
        builder
            .setup_clamp()
            .setup_cqsize(entries.saturating_mul(4));
        setup(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// A waiting enter's result: a timeout, a signal, or completions backed up (`EBUSY`, `EAGAIN`)
/// only end the wait early, which the next loop turn handles.
fn wait_ended(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn cqe_result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

impl UringDriver {
    pub(super) fn new(
        entries: u32,
        shared: &Shared,
        counters: Rc<Counters>,
        fast: FastPaths,
    ) -> io::Result<Self> {
        let (ring, setup) = build_ring(entries, fast)?;
        if !ring.params().is_feature_ext_arg() {
            // Waits are bounded through EXT_ARG (Linux 5.11); the backend probe refuses io_uring
            // without it, so this is only reached by a ring built past the probe.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11)",
            ));
        }
        let defer_taskrun = setup.contains("DEFER_TASKRUN");
        let mut driver = UringDriver {
            // Only with DEFER_TASKRUN does a waiting task stay asleep until its count is reached.
            batch_waits: fast.wait_batch && defer_taskrun && ring.params().is_feature_min_timeout(),
            last_reaped: 0,
            defer_taskrun,
            ring,
            ops: Slab::with_capacity(entries as usize),
            in_flight: 0,
            setup,
            wake_fd: shared.eventfd(),
            wake_buf: Box::new(0),
            wake_armed: false,
            closing: false,
            orphans: Vec::new(),
            msgs: Slab::new(),
            pool: None,
            ring_index: None,
            pool_registered: false,
            multis: 0,
            counters,
            batch: Vec::new(),
            late: Vec::new(),
        };
        if fast.registered_ring {
            driver.ring_index = driver.register_ring_fd();
        }
        if crate::backend::uring_features().msg_ring {
            shared.accept_messages(driver.ring.as_raw_fd());
        }
        driver.arm_wake()?;
        Ok(driver)
    }

    /// Registers the ring's fd with this thread (Linux 5.18+), so enters skip the fd lookup.
    /// `None` if the kernel refuses: enters then pass the fd as usual.
    fn register_ring_fd(&self) -> Option<u32> {
        let mut up = RsrcUpdate {
            offset: u32::MAX, // any free slot
            resv: 0,
            data: self.ring.as_raw_fd() as u64,
        };
        // SAFETY: `up` is one valid io_uring_rsrc_update for the duration of the call.
        let res = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_REGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1,
            )
        };
        (res == 1).then_some(up.offset)
    }

    /// Drops the ring's registration with this thread (it keeps the ring alive otherwise).
    fn unregister_ring_fd(&mut self) {
        let Some(index) = self.ring_index.take() else {
            return;
        };
        let mut up = RsrcUpdate {
            offset: index,
            resv: 0,
            data: 0,
        };
        // SAFETY: `up` is one valid io_uring_rsrc_update for the duration of the call.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_UNREGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1,
            )
        };
    }

    /// `io_uring_enter` with the registered ring index when there is one.
    ///
    /// # Safety
    ///
    /// `arg` must be null (with `argsz` 0) or what `flags` says it is, valid for the call.
    unsafe fn sys_enter(
        &mut self,
        min_complete: u32,
        flags: u32,
        arg: *const libc::c_void,
        argsz: usize,
    ) -> io::Result<()> {
        Counters::bump(&self.counters.uring_enters);
        let mut to_submit = self.ring.submission().len() as u32;
        let mut min_complete = min_complete;
        if to_submit > 0 && self.counters.faults.inject(Fault::SubmitRefused) {
            // Completions are backed up: the kernel takes nothing.
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        if to_submit > 1 && self.counters.faults.inject(Fault::PartialSubmit) {
            // The kernel takes fewer SQEs than offered, and then (as it does) does not wait.
            to_submit = 1 + self.counters.faults.below(u64::from(to_submit) - 1) as u32;
            min_complete = 0;
        }
        let (fd, flags) = match self.ring_index {
            Some(index) => (index as i32, flags | IORING_ENTER_REGISTERED_RING),
            None => (self.ring.as_raw_fd(), flags),
        };
        // SAFETY: the SQEs queued up to the tail are valid (see `push`); the caller vouches for
        // `arg`.
        let res = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                min_complete,
                flags,
                arg,
                argsz,
            )
        };
        if res < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Registers the receive pool's buffer ring as group [`POOL_GROUP`].
    pub(super) fn register_pool(&mut self, pool: &Rc<Pool>) -> io::Result<()> {
        let addr = pool
            .ring_addr()
            .ok_or_else(|| io::Error::other("a free-list pool"))?;
        // SAFETY: the ring's entries live in the pool's memory, which the loop keeps (through its
        // `Rc<Pool>`) until `unregister_pool` ran after the last CQE.
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                addr,
                pool.count(),
                POOL_GROUP,
                0,
            )?;
        }
        self.pool_registered = true;
        self.pool = Some(pool.clone());
        Ok(())
    }

    /// Unregisters the pool's buffer ring (every CQE came in, so no op selects from it).
    fn unregister_pool(&mut self) {
        if std::mem::take(&mut self.pool_registered) {
            let _ = self.ring.submitter().unregister_buf_ring(POOL_GROUP);
        }
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
    pub(super) fn sq_empty(&mut self) -> bool {
        self.ring.submission().is_empty()
    }

    /// Whether no op is queued or in the kernel (the loop's own wake read and timeouts aside): a
    /// new op would make the next ring trip alone.
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

    /// Wakes the sleeping uring loop `target` with a `MSG_RING` from this ring, submitted now:
    /// the wake must reach its target whatever this loop does next (its main future may have
    /// returned, or the task may block its thread), so it cannot wait for this loop's next ring
    /// trip. One syscall, as an eventfd write would be, and the target is spared re-arming its
    /// eventfd read. False if `target` takes no messages or the message could not be submitted
    /// at once: the caller writes its eventfd instead (a message that goes later as well only
    /// makes a spurious wake).
    pub(super) fn send_wake_message(&mut self, target: &Arc<Shared>) -> bool {
        let Some(fd) = target.msg_fd() else {
            return false;
        };
        if self.closing {
            return false;
        }
        let raw = fd.as_raw_fd();
        let key = self.msgs.insert((target.clone(), fd));
        let entry = opcode::MsgRingData::new(Fd(raw), 0, MSG_WAKE_TAG, None)
            .build()
            .user_data(MSG_SENT_BIT | key as u64);
        // SAFETY: MSG_RING carries no pointers; the target's ring fd stays open while `msgs`
        // holds its `Arc<OwnedFd>`, until this SQE's CQE.
        if unsafe { self.push(&entry) }.is_err() {
            self.msgs.remove(key);
            return false;
        }
        Counters::bump(&self.counters.wake_messages);
        // SAFETY: no argument; every queued SQE's memory is kept until its CQE (see `push`).
        let submitted = unsafe { self.sys_enter(0, 0, std::ptr::null(), 0) };
        // The kernel takes SQEs in order: with none left queued, the message went.
        submitted.is_ok() && self.sq_empty()
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
                Lifecycle::Completed(res) => Poll::Ready(res),
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
                Lifecycle::Completed(res) => Some((data, res)),
                _ => unreachable!("slot {key} was Completed a moment ago"),
            };
        }
        if let Lifecycle::Notifying(..) = &self.ops[key] {
            // The send is done; only its notification is to come, and a cancel cannot hurry it.
            self.ops[key] = Lifecycle::Ignored(data);
            return None;
        }
        self.ops[key] = Lifecycle::Ignored(data);
        let cancel = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: ASYNC_CANCEL carries no pointers. If the push fails the op still completes on
        // its own and its data is freed then.
        let _ = unsafe { self.push(&cancel) };
        None
    }

    /// Keeps a read of the wake eventfd in flight so other threads can wake a blocked loop.
    fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_armed || self.closing {
            return Ok(());
        }
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.wake_fd), buf.cast(), 8)
            .build()
            .user_data(WAKE_TAG);
        // SAFETY: `wake_buf` is boxed in the driver, which waits for every CQE (this one included)
        // before it is dropped; the eventfd is owned by `Shared`, which outlives the driver.
        unsafe { self.push(&entry)? };
        self.wake_armed = true;
        Ok(())
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions or `timeout`.
    fn enter(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        let res = match timeout {
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                let arg: *const SubmitArgs<'_, '_> = &args;
                // SAFETY: `args` is a valid `io_uring_getevents_arg` for this call (EXT_ARG); we
                // always pass GETEVENTS, so a `min_complete` of 0 still runs deferred task work
                // and posts completions, as DEFER_TASKRUN requires.
                unsafe {
                    self.sys_enter(
                        want,
                        IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                        arg.cast(),
                        std::mem::size_of::<SubmitArgs<'_, '_>>(),
                    )
                }
            }
            None => self.submit_and_wait(want),
        };
        wait_ended(res)
    }

    /// A busy loop's wait: for `want` completions, but for at most [`BATCH_WAIT_USEC`] once one
    /// came, then up to `timeout` for the first. A waiting task is woken once per completion
    /// otherwise, and each wake of a sleeping thread is paid by the thread that completes the
    /// I/O (on a virtual machine an interrupt to another vCPU): with a few connections streaming
    /// into the loop, the senders spent more on those wakes than on sending (BENCHMARKS.md,
    /// streaming).
    fn enter_batched(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        // Without a general timeout the kernel ends the whole wait when the min-wait ends, with
        // or without a completion: an hour stands for "none" (a loop that sleeps that long wakes
        // once for nothing).
        let ts = Timespec::from(timeout.unwrap_or(Duration::from_secs(3600)));
        let arg = GeteventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: BATCH_WAIT_USEC,
            ts: std::ptr::from_ref(&ts) as u64,
        };
        // SAFETY: `arg` is a valid `io_uring_getevents_arg` for this call (EXT_ARG, with the
        // min-wait field the kernel has, IORING_FEAT_MIN_TIMEOUT), and `ts` outlives it.
        let res = unsafe {
            self.sys_enter(
                want,
                IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                std::ptr::from_ref(&arg).cast(),
                std::mem::size_of::<GeteventsArg>(),
            )
        };
        wait_ended(res)
    }

    fn submit_and_wait(&mut self, want: u32) -> io::Result<()> {
        // SAFETY: no argument.
        unsafe { self.sys_enter(want, IORING_ENTER_GETEVENTS, std::ptr::null(), 0) }
    }

    /// One loop turn's trip to the kernel: submit, then wait up to `timeout` (`None` = until a
    /// completion), then dispatch every completion.
    pub(super) fn park(&mut self, timeout: Option<Duration>, shared: &Shared) -> io::Result<()> {
        self.arm_wake()?;
        // Completions held back are due at this reap, and orphans reaped outside a park (by a
        // full SQ's submit, or `stop_multishot_now`) are released right after it: a read may
        // wait for one of them, so no blocking before.
        let mut block =
            timeout != Some(Duration::ZERO) && self.late.is_empty() && self.orphans.is_empty();
        if block && !shared.prepare_sleep() {
            block = false;
        }
        let res = if block {
            let ops_in_flight = self.in_flight - usize::from(self.wake_armed);
            let r = if self.batch_waits
                && self.last_reaped >= 2
                && (2..=BATCH_MAX_IN_FLIGHT).contains(&ops_in_flight)
            {
                // All but one of the ops in flight, at least two and at most three.
                self.enter_batched((ops_in_flight as u32 - 1).clamp(2, 3), timeout)
            } else {
                self.enter(1, timeout)
            };
            shared.finish_sleep();
            r
        } else {
            let queued = !self.ring.submission().is_empty();
            // Without DEFER_TASKRUN the kernel posts completions by itself and reaping needs no
            // syscall; with it, completions are only posted inside an enter with GETEVENTS.
            let ops_in_flight = self.in_flight > usize::from(self.wake_armed);
            if queued || (self.defer_taskrun && ops_in_flight) {
                self.enter(0, Some(Duration::ZERO))
            } else {
                Ok(())
            }
        };
        self.reap();
        res
    }

    /// Dispatches every CQE, flushing the kernel's overflow list if the CQ overflowed. The
    /// completions held back before (`late`) go first; fault injection may hold back some of
    /// these for the next reap (never one of an op that already has one waiting, so each op's
    /// completions keep their order).
    fn reap(&mut self) {
        self.reap_with(true);
    }

    /// As `reap`, but holds nothing back: every completion that came is dispatched now.
    fn reap_all(&mut self) {
        self.reap_with(false);
    }

    fn reap_with(&mut self, may_hold: bool) {
        let mut stop = Vec::new();
        let mut late = mem::take(&mut self.late);
        for (user_data, result, flags) in late.drain(..) {
            self.dispatch(user_data, result, flags, &mut stop);
        }
        let mut batch = mem::take(&mut self.batch);
        let mut reaped = 0;
        loop {
            let mut cq = self.ring.completion();
            cq.sync();
            batch.extend((&mut cq).map(|c| (c.user_data(), c.result(), c.flags())));
            drop(cq);
            reaped += batch.len();
            for (user_data, result, flags) in batch.drain(..) {
                if may_hold
                    && self.counters.faults.enabled()
                    && !self.closing
                    && (late.iter().any(|l| l.0 == user_data)
                        || self.counters.faults.inject(Fault::LateCompletion))
                {
                    late.push((user_data, result, flags));
                    continue;
                }
                self.dispatch(user_data, result, flags, &mut stop);
            }
            // With IORING_FEAT_NODROP an overflowing CQ parks completions in the kernel; an enter
            // with GETEVENTS moves them to the CQ once it has room.
            if !self.ring.submission().cq_overflow() {
                break;
            }
            let _ = self.submit_and_wait(0);
        }
        self.batch = batch;
        self.last_reaped = reaped;
        // Held back now, delivered at the next reap (after completions that came later).
        self.late.append(&mut late);
        for key in stop {
            self.push_cancel(key);
        }
    }

    /// Dispatches one completion.
    fn dispatch(&mut self, user_data: u64, result: i32, flags: u32, stop: &mut Vec<usize>) {
        if user_data == MSG_WAKE_TAG {
            // Another loop woke us; the turn that follows looks at the queues.
            return;
        }
        let more = io_uring::cqueue::more(flags);
        if !more {
            // A multishot op stays in flight until its last CQE.
            self.in_flight -= 1;
        }
        Counters::bump(&self.counters.completions);
        let res = cqe_result(result);
        match user_data {
            WAKE_TAG => self.wake_armed = false,
            CANCEL_TAG => {}
            tag if tag & MSG_SENT_BIT != 0 => {
                let (target, _fd) = self.msgs.remove((tag & !MSG_SENT_BIT) as usize);
                if res.is_err() {
                    // The message did not go (the target's CQ overflowed, or the kernel
                    // refused): wake it the plain way.
                    target.write_eventfd();
                }
            }
            key => {
                let key = key as usize;
                match self.ops.get_mut(key) {
                    Some(Lifecycle::Multi {
                        fd,
                        deliver,
                        stopping,
                        ..
                    }) => {
                        let go_on = deliver(fd, self.pool.as_ref(), res, flags, more);
                        if !more {
                            // The op is over: its fd (if its owner went away) may close.
                            self.ops.remove(key);
                            self.multis -= 1;
                        } else if !go_on && !*stopping {
                            *stopping = true;
                            stop.push(key);
                        }
                    }
                    Some(Lifecycle::Waiting(_) | Lifecycle::Notifying(..)) => {
                        let placeholder = Lifecycle::Completed(Ok(0)); // replaced below
                        match mem::replace(&mut self.ops[key], placeholder) {
                            Lifecycle::Waiting(w) if more => {
                                // A zero-copy send's result: the kernel may read the buffer
                                // until its notification comes.
                                Counters::bump(&self.counters.zero_copy_sends);
                                self.ops[key] = Lifecycle::Notifying(w, res);
                            }
                            Lifecycle::Waiting(w) => {
                                self.ops[key] = Lifecycle::Completed(res);
                                w.wake();
                            }
                            Lifecycle::Notifying(w, sent) => {
                                // The notification: the kernel is done with the buffer.
                                Counters::bump(&self.counters.zero_copy_notifications);
                                self.ops[key] = Lifecycle::Completed(sent);
                                w.wake();
                            }
                            _ => unreachable!("slot {key} was Waiting or Notifying a moment ago"),
                        }
                    }
                    Some(Lifecycle::Ignored(_)) if more => {
                        // An abandoned zero-copy send: its data waits for the notification.
                        Counters::bump(&self.counters.zero_copy_sends);
                    }
                    Some(Lifecycle::Ignored(_)) => {
                        if io_uring::cqueue::notif(flags) {
                            Counters::bump(&self.counters.zero_copy_notifications);
                        }
                        if let Lifecycle::Ignored(data) = self.ops.remove(key) {
                            self.orphans.push((data, res));
                        }
                    }
                    Some(Lifecycle::Completed(_)) | None => {
                        unreachable!("a CQE arrived for op slot {key}, which has none in flight")
                    }
                }
            }
        }
    }

    /// Orphaned ops whose CQE arrived, to be released outside the driver's borrow.
    pub(super) fn take_orphans(&mut self) -> Vec<(Box<dyn Orphan>, io::Result<u32>)> {
        mem::take(&mut self.orphans)
    }

    /// Cancels everything in flight and waits for every CQE, so no memory the kernel may write is
    /// freed. Waiting ops get their result (usually `ECANCELED`) in their slot.
    pub(super) fn shutdown(&mut self) {
        self.closing = true;
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
        // Every op was cancelled, so each CQE comes soon; wait without a timeout (on kernels
        // without EXT_ARG a timeout would be one more op in flight).
        while self.in_flight > 0 {
            if self.late.is_empty() && self.enter(1, None).is_err() {
                // The ring itself failed; nothing more can be reaped from it.
                break;
            }
            self.reap();
        }
        if self.in_flight > 0 {
            // The kernel may still write into these: leak them rather than free them.
            mem::forget(mem::take(&mut self.ops));
            mem::forget(mem::replace(&mut self.wake_buf, Box::new(0)));
        } else {
            self.unregister_pool();
        }
    }

    /// Whether every CQE came in (after `shutdown`): nothing the kernel may write is still in use.
    /// Registers `iovecs` as the ring's buffer table (`IORING_REGISTER_BUFFERS`).
    pub(super) fn register_buffers(&mut self, iovecs: &[libc::iovec]) -> io::Result<()> {
        let bytes: usize = iovecs.iter().map(|v| v.iov_len).sum();
        // SAFETY: every iovec describes memory of a `FixedBufs` set, which the driver keeps
        // alive (`DriverCell::fixed`) until it unregisters the table or the ring is gone, and
        // which ops in flight keep through the `FixedBuf` they own.
        unsafe { self.ring.submitter().register_buffers(iovecs) }.map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ENOMEM) => {
                    "the kernel could not pin the memory: raise RLIMIT_MEMLOCK (ulimit -l; \
                     kernels before 5.12) or the memory cgroup's limit, or register fewer or \
                     smaller buffers"
                }
                Some(libc::EBUSY) => "the ring has a buffer table already",
                _ => "the kernel refused the registration",
            };
            io::Error::new(
                if e.raw_os_error() == Some(libc::ENOMEM) {
                    io::ErrorKind::OutOfMemory
                } else {
                    e.kind()
                },
                format!(
                    "FixedBufs::register: registering {} buffers ({bytes} bytes) failed: {e}: {why}",
                    iovecs.len()
                ),
            )
        })
    }

    /// Drops the ring's buffer table.
    pub(super) fn unregister_buffers(&mut self) {
        let _ = self.ring.submitter().unregister_buffers();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn driver(shared: &Shared) -> UringDriver {
        UringDriver::new(8, shared, Rc::new(Counters::default()), FastPaths::ALL)
            .expect("io_uring is required")
    }

    /// Parks for 20 ms with nothing to complete and checks the wait lasted about that long.
    fn park_20ms(d: &mut UringDriver, shared: &Shared) {
        let start = Instant::now();
        d.park(Some(Duration::from_millis(20)), shared).unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(20),
            "woke early: {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "overslept: {waited:?}");
    }

    /// On this kernel (6.x) the ring fd is registered and the first setup flags are taken; with
    /// those fast paths off, the fallbacks run (and a wait still works through them).
    #[test]
    fn the_ring_fd_is_registered_and_the_setup_flags_taken_unless_switched_off() {
        let shared = Shared::new().unwrap();
        let mut d = driver(&shared);
        assert!(d.ring_index.is_some(), "IORING_REGISTER_RING_FDS failed");
        assert!(d.setup.contains("NO_SQARRAY"), "{}", d.setup);
        park_20ms(&mut d, &shared);
        let off = FastPaths {
            registered_ring: false,
            setup_flags: false,
            ..FastPaths::ALL
        };
        let mut d = UringDriver::new(8, &shared, Rc::new(Counters::default()), off).unwrap();
        assert!(d.ring_index.is_none());
        assert!(!d.setup.contains("NO_SQARRAY"), "{}", d.setup);
        park_20ms(&mut d, &shared);
    }

    #[test]
    fn a_wait_ends_at_its_timeout_with_ext_arg() {
        let shared = Shared::new().unwrap();
        let mut d = driver(&shared);
        park_20ms(&mut d, &shared);
    }

    #[test]
    fn a_remote_wake_ends_a_blocking_wait() {
        let shared = std::sync::Arc::new(Shared::new().unwrap());
        let mut d = driver(&shared);
        let s = shared.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s.push_remote(1);
        });
        let start = Instant::now();
        d.park(None, &shared).unwrap(); // no timeout: only the eventfd can end it
        assert!(start.elapsed() < Duration::from_secs(5));
        waker.join().unwrap();
        let mut ids = Vec::new();
        shared.take_remote(&mut ids, &mut Vec::new());
        assert_eq!(ids, vec![1]);
    }

    /// A batched wait (a busy loop with a few ops in flight) still ends soon after one
    /// completion: it holds out microseconds for more, not until the others come.
    #[test]
    fn a_batched_wait_ends_soon_after_one_completion() {
        let shared = Shared::new().unwrap();
        let mut d = driver(&shared);
        if crate::backend::kernel_version().is_some_and(|v| v >= (6, 12)) {
            assert!(d.batch_waits, "IORING_FEAT_MIN_TIMEOUT on Linux 6.12+");
        }
        let waker = std::task::Waker::noop();
        let times: Vec<Box<Timespec>> = [5u64, 2_000, 3_000]
            .iter()
            .map(|&ms| Box::new(Timespec::from(Duration::from_millis(ms))))
            .collect();
        for ts in &times {
            let entry = opcode::Timeout::new(&**ts).build();
            // The test keeps `times` alive until the driver shut down below.
            d.submit_op(entry, waker).unwrap();
        }
        d.last_reaped = 2; // as if the last turn was busy
        let start = Instant::now();
        d.park(None, &shared).unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(5), "woke early: {waited:?}");
        assert!(
            waited < Duration::from_millis(1_000),
            "a batched wait held out for the slower ops: {waited:?}"
        );
        d.shutdown();
        drop(d);
        drop(times);
    }
}
