//! Entering the kernel, waiting (batched on Linux 6.12+), and reaping: every CQE dispatched to
//! its op, multishot sink or orphan.

use super::*;

const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;

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

/// A waiting enter's result: a timeout, a signal, or completions backed up (`EBUSY`, `EAGAIN`)
/// only end the wait early, which the next loop turn handles.
#[inline]
pub(super) fn wait_ended(res: io::Result<()>) -> io::Result<()> {
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

pub(super) fn cqe_result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

impl UringDriver {
    /// `io_uring_enter` with the registered ring index when there is one.
    ///
    /// # Safety
    ///
    /// `arg` must be null (with `argsz` 0) or what `flags` says it is, valid for the call.
    #[inline(always)]
    pub(super) unsafe fn sys_enter(
        &mut self,
        min_complete: u32,
        flags: u32,
        arg: *const libc::c_void,
        argsz: usize,
    ) -> io::Result<()> {
        Counters::bump(&self.counters.uring_enters);
        if let Some(pool) = &self.pool {
            // The buffers taken and given back since the last enter go back into the ring.
            pool.refill();
        }
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

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions or `timeout`.
    #[inline(never)]
    pub(super) fn enter(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        self.enter_inline(want, timeout)
    }

    /// `enter`, inline in the park's wait (which most turns at a moderate load run): one
    /// `sys_enter` for both kinds of wait.
    #[inline(always)]
    fn enter_inline(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        let ts;
        let args;
        let (flags, arg, argsz) = match timeout {
            Some(t) => {
                ts = Timespec::from(t);
                args = SubmitArgs::new().timespec(&ts);
                let arg: *const SubmitArgs<'_, '_> = &args;
                (
                    IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                    arg.cast(),
                    std::mem::size_of::<SubmitArgs<'_, '_>>(),
                )
            }
            None => (IORING_ENTER_GETEVENTS, std::ptr::null(), 0),
        };
        // SAFETY: `arg` is null (no timeout) or `args`, a valid `io_uring_getevents_arg` for this
        // call (EXT_ARG) whose `ts` outlives it; we always pass GETEVENTS, so a `min_complete` of
        // 0 still runs deferred task work and posts completions, as DEFER_TASKRUN requires.
        wait_ended(unsafe { self.sys_enter(want, flags, arg, argsz) })
    }

    /// A busy loop's wait: for `want` completions, but for at most [`BATCH_WAIT_USEC`] once one
    /// came, then up to `timeout` for the first. A waiting task is woken once per completion
    /// otherwise, and each wake of a sleeping thread is paid by the thread that completes the
    /// I/O (on a virtual machine an interrupt to another vCPU): with a few connections streaming
    /// into the loop, the senders spent more on those wakes than on sending (BENCHMARKS.md,
    /// streaming).
    pub(super) fn enter_batched(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
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

    pub(super) fn submit_and_wait(&mut self, want: u32) -> io::Result<()> {
        // SAFETY: no argument.
        unsafe { self.sys_enter(want, IORING_ENTER_GETEVENTS, std::ptr::null(), 0) }
    }

    /// One loop turn's trip to the kernel: submit, then wait up to `timeout` (`None` = until a
    /// completion), then dispatch every completion. Inline in `DriverCell::park`, its one caller
    /// outside tests, with the reap: a turn runs through them once.
    #[inline(always)]
    pub(in crate::driver) fn park(
        &mut self,
        timeout: Option<Duration>,
        shared: &Shared,
    ) -> io::Result<()> {
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
                self.enter_inline(1, timeout)
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
        self.reap_with(true);
        res
    }

    /// Dispatches every CQE, flushing the kernel's overflow list if the CQ overflowed. The
    /// completions held back before (`late`) go first; fault injection may hold back some of
    /// these for the next reap (never one of an op that already has one waiting, so each op's
    /// completions keep their order).
    ///
    /// Out of line: the park has its own copy of the reap inline, and the other callers (a full
    /// SQ's submit, tests) are rare.
    #[inline(never)]
    pub(super) fn reap(&mut self) {
        self.reap_with(true);
    }

    /// As `reap`, but holds nothing back: every completion that came is dispatched now.
    pub(super) fn reap_all(&mut self) {
        // Without completions held back this dispatches as `reap_direct` does.
        self.reap_holding(false);
    }

    /// Whether a completion must keep its place in the CQ (fault injection holds it back
    /// never): it names a buffer of an incremental ring, whose completions continue one another
    /// in the order the kernel filled the buffer (see `Pool::take_bundle`).
    fn in_buffer_order(&self, flags: u32) -> bool {
        io_uring::cqueue::buffer_select(flags).is_some()
            && self.pool.as_ref().is_some_and(|p| p.is_incremental())
    }

    /// `reap`, or the park's own copy of it (inline there: the park runs every turn).
    #[inline(always)]
    pub(super) fn reap_with(&mut self, may_hold: bool) {
        if self.late.is_empty() && !self.counters.faults.enabled() {
            self.reap_direct();
        } else {
            self.reap_holding(may_hold);
        }
    }

    /// `reap_with` without completions held back, injected or earlier (the common case): each
    /// CQE is copied out and its slot handed back to the kernel before it is dispatched (the
    /// dispatch needs the driver), until the CQ is empty. A turn reaps one or two: no chunk to
    /// set up, and the empty CQ is seen in one look at its tail.
    #[inline(always)]
    fn reap_direct(&mut self) {
        let mut stop = Vec::new();
        let mut reaped = 0;
        loop {
            let next = {
                let mut cq = self.ring.completion();
                cq.next().map(|c| (c.user_data(), c.result(), c.flags()))
                // Dropping `cq` hands the slot back to the kernel: the CQE is a copy.
            };
            if let Some((user_data, result, flags)) = next {
                reaped += 1;
                self.dispatch(user_data, result, flags, &mut stop);
                continue;
            }
            // With IORING_FEAT_NODROP an overflowing CQ parks completions in the kernel; an enter
            // with GETEVENTS moves them to the CQ once it has room.
            if !self.ring.submission().cq_overflow() {
                break;
            }
            let _ = self.submit_and_wait(0);
        }
        self.last_reaped = reaped;
        if !stop.is_empty() {
            for key in stop {
                self.push_cancel(key);
            }
        }
    }

    /// `reap_with` when completions may be held back (fault injection) or some were.
    #[inline(never)]
    fn reap_holding(&mut self, may_hold: bool) {
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
                    && !self.in_buffer_order(flags)
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

    /// Dispatches one completion. Inline in the reaps (a turn dispatches one or two).
    #[inline(always)]
    pub(super) fn dispatch(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        stop: &mut Vec<usize>,
    ) {
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
            // A multishot poll stays armed while its CQEs say `F_MORE`.
            WAKE_TAG => self.wake_armed = more,
            CANCEL_TAG => {}
            tag if tag & MSG_SENT_BIT != 0 => {
                let (target, _fd) = self.msgs.remove((tag & !MSG_SENT_BIT) as usize);
                if res.is_err() {
                    // The message did not go (the target's CQ overflowed, or the kernel
                    // refused): wake it the plain way.
                    target.write_eventfd();
                }
            }
            tag if tag & DIRECT_CLOSE_BIT != 0 => self.direct_closed(tag as u32),
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
                        let placeholder = Lifecycle::Completed(0); // replaced below
                        match mem::replace(&mut self.ops[key], placeholder) {
                            Lifecycle::Waiting(w) if more => {
                                // A zero-copy send's result: the kernel may read the buffer
                                // until its notification comes.
                                Counters::bump(&self.counters.zero_copy_sends);
                                self.ops[key] = Lifecycle::Notifying(w, result);
                            }
                            Lifecycle::Waiting(w) => {
                                self.ops[key] = Lifecycle::Completed(result);
                                // Contained: the rest of the batch is still dispatched.
                                crate::blocking::wake_contained(w);
                            }
                            Lifecycle::Notifying(w, sent) => {
                                // The notification: the kernel is done with the buffer.
                                Counters::bump(&self.counters.zero_copy_notifications);
                                self.ops[key] = Lifecycle::Completed(sent);
                                crate::blocking::wake_contained(w);
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
}
