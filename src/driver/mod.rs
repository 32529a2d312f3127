//! The driver: `enum Driver { Uring, Epoll }`. This is the only place that matches on the backend;
//! everything above it (`op`, `net`, the loop) calls the same methods whichever runs.

mod epoll;
pub(crate) mod fd;
pub(crate) mod op;
mod readiness;
pub(crate) mod small;
mod uring;
mod wake;

pub(crate) use wake::Shared;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::Backend;
use crate::backend::FastPaths;
use crate::buf::pool::Pool;
use crate::faults::Fault;
use crate::stats::Counters;
use crate::time::monotonic_nanos;
use epoll::EpollDriver;
use fd::SharedFd;
use op::{AtOnce, Deliver, OpCore, Operation, Orphan, Slot};
use uring::UringDriver;

// One per loop, matched on every op: boxing the big variant would add a pointer chase there.
#[allow(clippy::large_enum_variant)]
enum Driver {
    Uring(UringDriver),
    Epoll(EpollDriver),
    /// The loop was closed: every CQE came in and the ring or epoll fd is gone.
    Closed,
}

/// The driver of one loop, shared by the loop, its ops and its registered fds.
pub(crate) struct DriverCell {
    driver: RefCell<Driver>,
    backend: Backend,
    counters: Rc<Counters>,
    fast: FastPaths,
    /// `Builder::recv_pool`: buffer count and size.
    pool_config: (u16, u32),
    /// The receive pool, made on first use.
    pool: RefCell<Option<Rc<Pool>>>,
    /// Stream sends of at least this many bytes are zero-copy (uring with `IORING_OP_SEND_ZC`).
    zero_copy: Option<u32>,
    /// The `FixedBufs` set registered with the ring (uring): its id, and its memory, kept while
    /// the ring may use it.
    fixed: RefCell<Option<(u64, FixedMemory)>>,
    /// The address of the loop's `Shared`, to tell this loop from another (`wake`).
    shared: usize,
    /// Whether the running loop has nothing else ready to poll (the executor's answer, which
    /// the loop hands down: the driver sits below the executor).
    nothing_else_ready: fn() -> bool,
    /// Slots of the ring's file table whose connection closed while the driver was busy: their
    /// closes are queued at the next park (`uring::direct`).
    direct_pending: RefCell<Vec<u32>>,
}

thread_local! {
    /// The address of the current driver (see `CURRENT`), compared by `is_current` on the
    /// submission path without touching the `Rc`.
    static CURRENT_ADDR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The driver of the loop running on this thread, set while the loop runs (the loop's
    /// context enters and leaves it). Ops, files and streams find their loop's driver here.
    static CURRENT: RefCell<Option<Rc<DriverCell>>> = const { RefCell::new(None) };
}

/// The driver of the loop running on this thread, or `None` outside a loop.
#[inline]
pub(crate) fn current() -> Option<Rc<DriverCell>> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
}

/// Runs `f` with the driver of the loop running on this thread (`None` outside a loop), without
/// the `RefCell` borrow and the `Rc` clone of [`current`]: for the write path's send tried at
/// once, which clones the `Rc` only when the op must wait. Always inlined: it is a few
/// instructions around `f`, and a call would move `f`'s result through memory.
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(&Rc<DriverCell>) -> R) -> Option<R> {
    let addr = CURRENT_ADDR.try_with(std::cell::Cell::get).unwrap_or(0);
    if addr == 0 {
        return None;
    }
    // `CURRENT_ADDR` is not 0 only while a loop is entered on this thread (the loop's context
    // calls `set_current` with its own driver on entering and with `None` on leaving), and it
    // is the address of that loop's `Rc<DriverCell>`, which `CURRENT` and the loop itself hold
    // meanwhile. `f` gets a borrow and runs within this call.
    // SAFETY: `addr` is a live `Rc<DriverCell>`'s (above); `ManuallyDrop` keeps the count
    // `from_raw` did not take from being given back.
    let driver = std::mem::ManuallyDrop::new(unsafe { Rc::from_raw(addr as *const DriverCell) });
    Some(f(&driver))
}

/// Makes `driver` the current one on this thread (`None`: no loop runs here any more).
pub(crate) fn set_current(driver: Option<Rc<DriverCell>>) {
    let addr = driver.as_ref().map_or(0, |d| Rc::as_ptr(d) as usize);
    let _ = CURRENT_ADDR.try_with(|c| c.set(addr));
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = driver);
}

/// Whether `driver` is the one of the loop running on this thread.
pub(crate) fn is_current(driver: &Rc<DriverCell>) -> bool {
    CURRENT_ADDR
        .try_with(|c| c.get() == Rc::as_ptr(driver) as usize)
        .unwrap_or(false)
}

/// The memory of a registered buffer set, kept alive by the driver while the ring has it.
pub(crate) type FixedMemory = std::sync::Arc<dyn std::any::Any + Send + Sync>;

impl fmt::Debug for DriverCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverCell")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn closed_error() -> io::Error {
    io::Error::other("the ringloop event loop this I/O belongs to was closed")
}

/// What a loop's builder decided for its driver.
pub(crate) struct DriverConfig {
    pub(crate) backend: Backend,
    /// Ring entries (uring) or events per wait (epoll).
    pub(crate) entries: u32,
    pub(crate) fast: FastPaths,
    /// `Builder::recv_pool`: buffer count and size.
    pub(crate) pool_config: (u16, u32),
    pub(crate) zero_copy_threshold: Option<usize>,
    /// The executor's answer to "is anything else ready to poll?" (see `DriverCell`).
    pub(crate) nothing_else_ready: fn() -> bool,
    /// `Builder::direct_descriptors`: slots of the ring's file table for accepted connections.
    pub(crate) direct_slots: u32,
}

impl DriverCell {
    pub(crate) fn new(
        config: DriverConfig,
        shared: &Shared,
        counters: Rc<Counters>,
    ) -> io::Result<Rc<Self>> {
        let DriverConfig {
            backend,
            entries,
            fast,
            pool_config,
            zero_copy_threshold,
            nothing_else_ready,
            direct_slots,
        } = config;
        let zero_copy = zero_copy_threshold
            .filter(|_| {
                backend == Backend::Uring
                    && fast.send_zc
                    && crate::backend::uring_features().send_zc
            })
            .map(|t| u32::try_from(t.max(1)).unwrap_or(u32::MAX));
        let fast = FastPaths {
            bundle: fast.bundle
                && fast.multishot_recv
                && backend == Backend::Uring
                && crate::backend::uring_features().recv_bundle,
            ..fast
        };
        let driver = match backend {
            Backend::Uring => Driver::Uring(UringDriver::new(
                entries,
                shared,
                counters.clone(),
                fast,
                direct_slots,
            )?),
            Backend::Epoll => Driver::Epoll(EpollDriver::new(entries, shared, counters.clone())?),
        };
        Ok(Rc::new(DriverCell {
            driver: RefCell::new(driver),
            backend,
            counters,
            fast,
            pool_config,
            pool: RefCell::new(None),
            zero_copy,
            fixed: RefCell::new(None),
            shared: shared as *const Shared as usize,
            nothing_else_ready,
            direct_pending: RefCell::new(Vec::new()),
        }))
    }

    /// Registers a buffer set with the ring (uring): true if registered, false on epoll (no
    /// ring; the set is plain memory there). `keep` is the set's memory, kept until
    /// `unregister_fixed` or the loop's close.
    pub(crate) fn register_fixed(
        &self,
        id: u64,
        iovecs: &[libc::iovec],
        keep: FixedMemory,
    ) -> io::Result<bool> {
        let mut fixed = self.fixed.borrow_mut();
        if fixed.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "FixedBufs::register: this loop has a set of fixed buffers registered already \
                 (one per ring); drop it first or take buffers from it",
            ));
        }
        match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) => u.register_buffers(iovecs)?,
            Driver::Epoll(_) => return Ok(false),
            Driver::Closed => return Err(closed_error()),
        }
        *fixed = Some((id, keep));
        Ok(true)
    }

    /// Unregisters the buffer set `id` (its last handle went). Ops in flight with its buffers
    /// keep them: the kernel holds a registered buffer until the ops that use it complete, and
    /// each op owns its `FixedBuf`, which keeps the memory.
    pub(crate) fn unregister_fixed(&self, id: u64) {
        let mut fixed = self.fixed.borrow_mut();
        if fixed.as_ref().is_some_and(|(set, _)| *set == id) {
            if let Ok(Driver::Uring(u)) = self.driver.try_borrow_mut().as_deref_mut() {
                u.unregister_buffers();
            }
            *fixed = None;
        }
    }

    /// The id of the buffer set registered with the ring, if any.
    pub(crate) fn fixed_set(&self) -> Option<u64> {
        self.fixed.borrow().as_ref().map(|(id, _)| *id)
    }

    /// The fast paths this loop uses (uring).
    pub(crate) fn fast(&self) -> FastPaths {
        self.fast
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The loop's receive pool, allocated (and on uring registered as a buffer ring) on first use.
    ///
    /// # Errors
    ///
    /// `OutOfMemory` if the pool cannot be allocated; an error if the loop was closed.
    pub(crate) fn recv_pool(&self) -> io::Result<Rc<Pool>> {
        if let Some(pool) = &*self.pool.borrow() {
            return Ok(pool.clone());
        }
        let (count, size) = self.pool_config;
        let counters = self.counters.clone();
        let pool = match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) if self.fast.buf_ring => {
                let pool = Pool::with_ring(count, size, counters.clone())?;
                match u.register_pool(pool, self.fast.buf_inc) {
                    Ok(pool) => pool,
                    // An older kernel, or no room for the ring: the free list works everywhere.
                    Err(_) => Rc::new(Pool::with_list(count, size, counters)?),
                }
            }
            Driver::Closed => return Err(closed_error()),
            _ => Rc::new(Pool::with_list(count, size, counters)?),
        };
        *self.pool.borrow_mut() = Some(pool.clone());
        Ok(pool)
    }

    /// Cancels a multishot op and waits until it ended, its last completions delivered (for
    /// `into_std`). It may still be armed afterwards on kernels without synchronous cancel.
    pub(crate) fn stop_multishot_now(&self, key: usize) -> io::Result<()> {
        match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) => u.stop_multishot_now(key),
            _ => Ok(()),
        }
    }

    /// Starts a multishot op on `fd` (uring only); its completions go to `deliver`.
    pub(crate) fn submit_multishot(
        &self,
        entry: io_uring::squeue::Entry,
        fd: &SharedFd,
        deliver: Deliver,
        ends_with: i32,
    ) -> io::Result<usize> {
        match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) => u.submit_multishot(entry, fd.downgrade(), deliver, ends_with),
            Driver::Closed => Err(closed_error()),
            Driver::Epoll(_) => Err(io::Error::other("multishot ops need the io_uring backend")),
        }
    }

    /// Cancels a multishot op. `keep`: the fd of an owner that went away, closed after the op's
    /// last completion. If the driver is busy (never expected) the fd is leaked rather than closed
    /// under the kernel.
    pub(crate) fn stop_multishot(&self, key: usize, keep: Option<std::os::fd::OwnedFd>) {
        match self.driver.try_borrow_mut().as_deref_mut() {
            Ok(Driver::Uring(u)) => u.stop_multishot(key, keep),
            // Closed: every CQE came in, so the fd may close.
            Ok(_) => drop(keep),
            Err(_) => std::mem::forget(keep),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether file ops run on the blocking pool (epoll: a regular file is always "ready") rather
    /// than as ring ops.
    pub(crate) fn files_on_pool(&self) -> bool {
        matches!(self.backend, Backend::Epoll)
    }

    /// Whether a file op should first try its syscall inline without blocking (`try_nowait`):
    /// always on epoll (the alternative is a pool thread); on uring only while nothing is queued
    /// in the SQ, since a lone ring op costs a whole ring trip and a batch shares one.
    pub(crate) fn try_files_inline(&self) -> bool {
        match &mut *self.driver.borrow_mut() {
            Driver::Epoll(_) => true,
            Driver::Uring(u) => u.sq_empty(),
            Driver::Closed => false,
        }
    }

    /// The io_uring setup flags in use, for diagnostics.
    pub(crate) fn uring_setup(&self) -> Option<&'static str> {
        match &*self.driver.borrow() {
            Driver::Uring(u) => Some(u.setup),
            _ => None,
        }
    }

    /// One trip to the kernel: submit what is queued, wait up to `timeout`, wake what completed.
    /// Inline in the loop's turn, as the uring park and its reap are in it.
    #[inline(always)]
    pub(crate) fn park(
        &self,
        timeout: Option<Duration>,
        shared: &Shared,
        before: Option<u64>,
    ) -> io::Result<Option<u64>> {
        let mut driver = self.driver.borrow_mut();
        // Only a park that may sleep is timed (`Stats::park_time`): one that only looks costs
        // no clock reads, which a busy loop would pay every turn. The caller's own reading, if
        // it just took one, is the start.
        let start =
            (timeout != Some(Duration::ZERO)).then(|| before.unwrap_or_else(monotonic_nanos));
        let res = match &mut *driver {
            Driver::Uring(u) => {
                if !self.direct_pending.borrow().is_empty() {
                    self.close_pending_direct(u);
                }
                u.park(timeout, shared)
            }
            Driver::Epoll(e) => e.park(timeout, shared),
            Driver::Closed => Ok(()),
        };
        let end = start.map(|start| {
            let end = monotonic_nanos();
            self.counters
                .park_nanos
                .set(self.counters.park_nanos.get() + end.saturating_sub(start));
            end
        });
        let orphans = match &mut *driver {
            Driver::Uring(u) if u.has_orphans() => Some(u.take_orphans()),
            _ => None,
        };
        drop(driver);
        if let Some(orphans) = orphans {
            release_orphans(orphans);
        }
        res.map(|()| end)
    }

    /// Queues the closes of the file-table slots whose connection closed while the driver was
    /// busy (out of line: most parks have none).
    #[cold]
    #[inline(never)]
    fn close_pending_direct(&self, u: &mut UringDriver) {
        for slot in self.direct_pending.borrow_mut().drain(..) {
            u.close_direct(slot);
        }
    }

    /// Cancels everything in flight, waits until the kernel is done with every buffer, releases
    /// the orphans, and closes the ring or epoll fd.
    pub(crate) fn shutdown(&self) {
        let mut driver = self.driver.borrow_mut();
        let orphans = match &mut *driver {
            Driver::Uring(u) => {
                u.shutdown();
                if let Some(pool) = &*self.pool.borrow() {
                    if u.drained() {
                        // The ring was unregistered: returned buffers stay in the pool.
                        pool.retire_ring();
                    } else {
                        // The kernel may still select and fill pool buffers: never free them.
                        std::mem::forget(pool.clone());
                    }
                }
                if !u.drained()
                    && let Some((_, memory)) = self.fixed.borrow_mut().take()
                {
                    // Likewise for registered buffers the kernel may still write.
                    std::mem::forget(memory);
                }
                u.take_orphans()
            }
            Driver::Epoll(e) => {
                e.shutdown();
                Vec::new()
            }
            Driver::Closed => Vec::new(),
        };
        let old = std::mem::replace(&mut *driver, Driver::Closed);
        drop(driver);
        release_orphans(orphans);
        drop(old);
        // Buffers still held by users keep the pool's memory; the loop lets go of it.
        self.pool.borrow_mut().take();
    }

    /// Drives one op on this loop's backend.
    pub(crate) fn poll_op<T: Operation>(
        self: &Rc<Self>,
        op: &mut OpCore<T>,
        cx: &mut Context<'_>,
    ) -> Poll<T::Output> {
        let mut driver = self.driver.borrow_mut();
        match &mut *driver {
            Driver::Uring(u) => {
                if matches!(op.slot, Slot::Idle) {
                    self.maybe_shorten(op.data_mut());
                    if let Some(min) = self.zero_copy {
                        op.data_mut().offer_zero_copy(min);
                    }
                }
                // Submits the op's SQE; `Err` if it could not be queued (it never started).
                let submit = |u: &mut UringDriver, op: &mut OpCore<T>| {
                    if let Some(result) = op.data.as_ref().and_then(|d| d.spurious_result())
                        && self.counters.faults.inject(Fault::SpuriousWakeup)
                    {
                        // Readiness is a hint: report it when the fd may not be ready.
                        op.slot = Slot::Submitted(u.complete_spuriously(result, cx.waker()));
                        return Ok(());
                    }
                    let key = u.submit_op(op.data_mut().sqe(), cx.waker())?;
                    op.slot = Slot::Submitted(key);
                    if let Some(fd) = op.data.as_ref().and_then(|d| d.zero_copy_fd()) {
                        u.note_zero_copy(fd.downgrade());
                    }
                    if let Some(d) = op.data.as_ref() {
                        if d.uses_fixed_buffer() {
                            Counters::bump(&self.counters.fixed_buffer_ops);
                        }
                        if d.submit_at_once() {
                            // The SQE is queued whatever this enter says: refused now, it goes
                            // with the loop's next one (which reports a ring that failed). So
                            // the op is in flight from here on and keeps its buffer until its
                            // completion; handing it back now would let the kernel write into
                            // a buffer the caller owns again.
                            let _ = u.submit_now();
                        }
                    }
                    Ok::<(), io::Error>(())
                };
                // `Ok(result)`: the op is done; `Err(submitted)`: it went to the ring (pending), or
                // its SQE could not be queued.
                let res = match op.slot {
                    Slot::Idle
                        if op.data.as_ref().is_some_and(|d| self.worth_inline(u, &**d))
                            && crate::coop::proceed() =>
                    {
                        // This op would make the ring trip alone: try its nonblocking syscall
                        // first, which costs one syscall instead of an enter plus a loop turn.
                        Counters::bump(&self.counters.io_syscalls);
                        let tried = if self.counters.faults.inject(Fault::Interrupted) {
                            Err(io::Error::from_raw_os_error(libc::EINTR))
                        } else {
                            op.data_mut().try_syscall()
                        };
                        match tried {
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                                ) =>
                            {
                                Err(submit(u, op))
                            }
                            res => Ok(res),
                        }
                    }
                    Slot::Idle | Slot::Tried => Err(submit(u, op)),
                    Slot::Submitted(key) => match u.poll_op(key, cx) {
                        // Cancelled, but not by us (the op is alive and the loop not closing):
                        // it did not run, so it is submitted again.
                        Poll::Ready(Err(e))
                            if e.raw_os_error() == Some(libc::ECANCELED) && !u.is_closing() =>
                        {
                            Err(submit(u, op))
                        }
                        // A socket without zero-copy: the same bytes as a plain send.
                        Poll::Ready(Err(e))
                            if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                                && op.data_mut().refuse_zero_copy() =>
                        {
                            Err(submit(u, op))
                        }
                        Poll::Ready(res) => Ok(res),
                        Poll::Pending => return Poll::Pending,
                    },
                    Slot::Armed(..) | Slot::Done => {
                        unreachable!("a uring op in state {:?} was polled", op.slot)
                    }
                };
                drop(driver);
                match res {
                    Ok(res) => Poll::Ready(op.finish(res)),
                    Err(Ok(())) => Poll::Pending,
                    Err(Err(e)) => Poll::Ready(op.finish_unstarted(e)),
                }
            }
            Driver::Epoll(_) => {
                drop(driver);
                self.poll_epoll_op(op, cx)
            }
            Driver::Closed => {
                drop(driver);
                Poll::Ready(op.finish(Err(closed_error())))
            }
        }
    }

    /// The epoll half: try the syscall; on `EAGAIN` wait for the fd's next edge and retry.
    fn poll_epoll_op<T: Operation>(
        self: &Rc<Self>,
        op: &mut OpCore<T>,
        cx: &mut Context<'_>,
    ) -> Poll<T::Output> {
        if let Slot::Armed(token, interest) = op.slot
            && !self.with_epoll(|e| e.poll_ready(token, interest, cx.waker()))
        {
            return Poll::Pending; // no edge since EAGAIN: nothing to try yet
        }
        if !crate::coop::proceed() {
            // This task has completed many ops in one poll: let the others run first.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match op.slot {
            Slot::Tried => {
                // `try_at_once` just got `EAGAIN` (and counted the op): wait for the next edge.
                return self.arm_after_eagain(op, cx, io::ErrorKind::WouldBlock.into());
            }
            Slot::Idle => {
                Counters::bump(&self.counters.ops_submitted);
                // Known not ready (EAGAIN or a short transfer since the last edge): wait for the
                // edge rather than make a syscall that can only say EAGAIN.
                if let Some((fd, interest)) = op.data_mut().readiness()
                    && let Some(token) = fd.registration(self)
                    && self.with_epoll(|e| e.arm_unless_ready(token, interest, cx.waker()))
                {
                    op.slot = Slot::Armed(token, interest);
                    return Poll::Pending;
                }
            }
            Slot::Armed(..) => {}
            Slot::Submitted(_) | Slot::Done => {
                unreachable!("an epoll op in state {:?} was polled", op.slot)
            }
        }
        loop {
            if self.counters.faults.inject(Fault::Interrupted) {
                continue; // as if a signal interrupted the syscall: try again
            }
            self.maybe_shorten(op.data_mut());
            Counters::bump(&self.counters.io_syscalls);
            match op.data_mut().try_syscall() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.arm_after_eagain(op, cx, e);
                }
                res => {
                    self.note_epoll_transfer(op.data_mut(), &res);
                    return Poll::Ready(op.finish(res));
                }
            }
        }
    }

    /// epoll: the op's syscall said `EAGAIN` (`e`): it waits for its fd's next edge, or, for an
    /// op with no fd to wait on, ends with `e`.
    fn arm_after_eagain<T: Operation>(
        self: &Rc<Self>,
        op: &mut OpCore<T>,
        cx: &mut Context<'_>,
        e: io::Error,
    ) -> Poll<T::Output> {
        let Some((fd, interest)) = op.data_mut().readiness() else {
            return Poll::Ready(op.finish(Err(e)));
        };
        let token = match self.epoll_token(fd) {
            Ok(t) => t,
            Err(e) => return Poll::Ready(op.finish(Err(e))),
        };
        self.with_epoll(|e| e.arm(token, interest, cx.waker()));
        op.slot = Slot::Armed(token, interest);
        Poll::Pending
    }

    /// epoll, after an op's syscall moved bytes: a short transfer emptied (or filled) the
    /// socket, so it is not ready until the next edge.
    fn note_epoll_transfer<T: Operation>(self: &Rc<Self>, op: &T, res: &io::Result<u32>) {
        if let Ok(n) = *res
            && op.drained(n)
            && let Some((fd, interest)) = op.readiness()
            && let Some(token) = fd.registration(self)
        {
            self.with_epoll(|e| e.clear_ready(token, interest, Some(fd.raw())));
        }
    }

    /// uring: whether an op about to be submitted should first try its nonblocking syscall on
    /// the loop thread (see `Operation::inline_first` and `inline_always`).
    fn worth_inline<T: Operation>(&self, u: &mut UringDriver, d: &T) -> bool {
        d.inline_always() || (d.inline_first() && u.no_ops() && (self.nothing_else_ready)())
    }

    /// Tries `op`'s nonblocking syscall at once, while its data is still on the caller's
    /// stack (see `Op::at_once`), where the op's own first poll would try it too: on epoll
    /// always (unless the fd is known not ready since its last edge), on uring when the op is
    /// worth trying inline. Fault injection, the cooperative budget and the counters are as in
    /// `poll_op`. A stream socket's write takes `op::write_at_once` instead, which makes these
    /// same decisions without the op: a change here belongs there too.
    #[inline]
    pub(crate) fn try_at_once<T: Operation>(self: &Rc<Self>, op: &mut T) -> AtOnce {
        match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) => {
                if let Some(min) = self.zero_copy {
                    op.offer_zero_copy(min);
                }
                if !self.worth_inline(u, op) {
                    return AtOnce::NotTried;
                }
            }
            Driver::Epoll(e) => {
                if let Some((fd, interest)) = op.readiness()
                    && let Some(token) = fd.registration(self)
                    && e.known_not_ready(token, interest)
                {
                    return AtOnce::NotTried;
                }
            }
            Driver::Closed => return AtOnce::NotTried,
        }
        if !crate::coop::proceed() {
            return AtOnce::NotTried;
        }
        let epoll = self.backend == Backend::Epoll;
        if epoll {
            Counters::bump(&self.counters.ops_submitted);
        }
        loop {
            self.maybe_shorten(op);
            Counters::bump(&self.counters.io_syscalls);
            let res = if self.counters.faults.inject(Fault::Interrupted) {
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                op.try_syscall()
            };
            match res {
                // epoll retries an interrupted syscall, as its `poll_op` does; uring lets the
                // ring run it.
                Err(e) if e.kind() == io::ErrorKind::Interrupted && epoll => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return AtOnce::WouldBlock;
                }
                res => {
                    if epoll {
                        self.note_epoll_transfer(op, &res);
                    }
                    return AtOnce::Done(res);
                }
            }
        }
    }

    /// Fault injection: cuts a byte transfer short, as the kernel may.
    fn maybe_shorten<T: Operation>(&self, op: &mut T) {
        let faults = &self.counters.faults;
        if faults.roll() {
            let max = 1 + faults.below(512) as u32;
            if op.shorten(max) {
                faults.count(Fault::ShortTransfer);
            }
        }
    }

    fn with_epoll<R>(&self, f: impl FnOnce(&mut EpollDriver) -> R) -> R {
        match &mut *self.driver.borrow_mut() {
            Driver::Epoll(e) => f(e),
            _ => unreachable!("epoll op on a loop that is not running epoll"),
        }
    }

    /// Queues a `MSG_RING` to wake the sleeping uring loop `target` with this loop's next ring
    /// trip. False if this loop is not a uring loop, is `target` itself, or is busy (the caller
    /// writes the eventfd).
    pub(crate) fn send_wake_message(&self, target: &std::sync::Arc<Shared>) -> bool {
        if std::sync::Arc::as_ptr(target) as usize == self.shared {
            return false;
        }
        match self.driver.try_borrow_mut().as_deref_mut() {
            Ok(Driver::Uring(u)) => u.send_wake_message(target),
            _ => false,
        }
    }

    /// An op's future is being dropped.
    pub(crate) fn drop_op<T: Operation>(&self, op: &mut OpCore<T>) {
        let Slot::Submitted(key) = op.slot else {
            return; // epoll ops and unstarted ops hold nothing the kernel uses
        };
        let Some(data) = op.data.take() else { return };
        let mut driver = self.driver.borrow_mut();
        let done = match &mut *driver {
            Driver::Uring(u) => u.abandon(key, data),
            // Closed: every CQE came in before the ring went away.
            _ => None,
        };
        drop(driver);
        if let Some((data, res)) = done {
            data.orphaned(res);
        }
    }
}

fn release_orphans(orphans: Vec<(Box<dyn Orphan>, io::Result<u32>)>) {
    for (data, res) in orphans {
        data.orphaned(res);
    }
}
