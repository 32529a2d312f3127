//! The `Op<T>` future, its lifecycle, and the per-op trait that every op in `op/` implements for
//! both backends side by side.
//!
//! Lifecycle on uring: `Idle` -> `Submitted(key)` (an SQE pushed, its memory owned by the op's
//! heap allocation) -> completed. Dropped while submitted, the op's allocation moves into the
//! driver, an `ASYNC_CANCEL` is pushed, and the allocation is freed only when the op's CQE arrives.
//! On epoll: `Idle` -> try the syscall -> on `EAGAIN`, `Armed` until readiness -> retry.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::fd::SharedFd;
use super::{Driver, DriverCell};
use crate::faults::Fault;
use crate::stats::Counters;

/// Which readiness an epoll op waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// One kind of I/O operation, both halves side by side.
///
/// # Safety
///
/// Every pointer the SQE from [`sqe`](Operation::sqe) carries must point into `self` (which lives
/// in a `Box` that does not move) or into memory `self` owns and keeps alive and unaliased until
/// [`complete`](Operation::complete) or [`orphaned`](Operation::orphaned) consumes it.
pub(crate) unsafe trait Operation: Sized + 'static {
    type Output;

    /// uring half: the SQE to submit (user_data is set by the driver).
    fn sqe(&mut self) -> io_uring::squeue::Entry;

    /// epoll half: the fd and direction to wait on after `EAGAIN`; `None` for ops that never block.
    fn readiness(&self) -> Option<(&SharedFd, Interest)>;

    /// epoll half: the nonblocking syscall, its result as a CQE would carry it.
    fn try_syscall(&mut self) -> io::Result<u32>;

    /// Whether a successful result of `n` shows the fd has nothing more in the op's direction
    /// right now (a short stream read or write). epoll then treats the fd as not ready until its
    /// next edge, and skips the syscall that would only say `EAGAIN`.
    fn drained(&self, n: u32) -> bool {
        let _ = n;
        false
    }

    /// Both halves: move at most `max` bytes (a stream read or write cut short by fault
    /// injection, as the kernel may do). False for ops that are not byte transfers.
    fn shorten(&mut self, max: u32) -> bool {
        let _ = max;
        false
    }

    /// uring half: the loop sends stream writes of at least `min` bytes zero-copy
    /// (`Builder::zero_copy_threshold`); an op that can (a stream socket's send) switches to it.
    /// Called before the op's first submission.
    fn offer_zero_copy(&mut self, min: u32) {
        let _ = min;
    }

    /// uring half: the kernel refused this op's zero-copy send (`EOPNOTSUPP`: a socket without
    /// zero-copy). A zero-copy op turns into its plain form and says true, and the driver submits
    /// it again; false for every other op.
    fn refuse_zero_copy(&mut self) -> bool {
        false
    }

    /// uring half: the socket of this op's zero-copy send, if it is one (closing the loop may
    /// have to reset it; see `UringDriver::shutdown`).
    fn zero_copy_fd(&self) -> Option<&SharedFd> {
        None
    }

    /// uring half: whether this op's nonblocking syscall (`try_syscall`) is worth trying inline
    /// when the op would otherwise make a ring trip alone (nothing else queued, in flight or
    /// ready to run). True for ops that usually complete at once: a send; a stream read whose
    /// last read did not drain the socket, on a socket where an inline read never found nothing.
    fn inline_first(&self) -> bool {
        false
    }

    /// uring half: whether this op's nonblocking syscall (`try_syscall`) is tried inline even
    /// when other ops would share its ring trip: a stream read right after one that filled a
    /// large buffer, which most likely finds more at once (as epoll's reads do). Queued in the
    /// ring it would wait for the loop turn's end.
    fn inline_always(&self) -> bool {
        false
    }

    /// File ops, both halves: the syscall tried on the loop thread without blocking (a read the
    /// page cache serves whole), before the op goes to the blocking pool (epoll) or the ring
    /// (uring, when the SQ is empty). `None` sends it on its way.
    fn try_nowait(&mut self) -> Option<io::Result<u32>> {
        None
    }

    /// File ops, uring half: whether this kernel's ring has the op's opcode (probed). False
    /// sends the op to the blocking pool, as on epoll.
    fn on_ring(&self) -> bool {
        true
    }

    /// uring half: whether the SQE goes to the kernel at once rather than with the loop turn's
    /// other SQEs: a direct (`O_DIRECT`) file transfer, which the device starts on its own. A
    /// batch submitted together reaches the device as one plugged batch, and on some devices
    /// completes together too, which locks a loop's reads into lockstep rounds.
    fn submit_at_once(&self) -> bool {
        false
    }

    /// uring half: whether the SQE reads or writes a registered buffer (`READ_FIXED` /
    /// `WRITE_FIXED`), for `Stats::fixed_buffer_ops`.
    fn uses_fixed_buffer(&self) -> bool {
        false
    }

    /// Both halves: turns the kernel's result into the output.
    fn complete(self, res: io::Result<u32>) -> Self::Output;

    /// The future was dropped but the kernel completed the op anyway (uring): release what the
    /// result holds (close an accepted fd, keep received bytes for the next read).
    fn orphaned(self, res: io::Result<u32>) {
        let _ = res;
    }

    /// uring half, fault injection: the result a spurious completion of this op would carry
    /// (a readiness poll reporting ready when the fd is not). `None` for ops that cannot complete
    /// spuriously.
    fn spurious_result(&self) -> Option<i32> {
        None
    }

    /// The op never reached the kernel: its SQE could not be queued (`err`). By default the
    /// error is its result; an op that owns a resource the kernel was to consume (a `Close`'s
    /// fd) releases it here instead.
    fn unstarted(self, err: io::Error) -> Self::Output {
        self.complete(Err(err))
    }
}

/// An op whose future is gone, kept by the driver until its CQE arrives.
///
/// While it is in the kernel it counts as an orphan on the fd and direction it uses (its
/// `readiness`), so a new stream op in that direction waits for it and cannot overtake it.
pub(crate) trait Orphan {
    /// The future was dropped while the op is still in the kernel.
    fn abandoned(&mut self);
    /// Its completion came: release what it holds, then stop counting it.
    fn orphaned(self: Box<Self>, res: io::Result<u32>);
}

impl<T: Operation> Orphan for T {
    fn abandoned(&mut self) {
        if let Some((fd, dir)) = self.readiness() {
            fd.orphan_started(dir);
        }
    }

    fn orphaned(self: Box<Self>, res: io::Result<u32>) {
        let counted = self.readiness().map(|(fd, dir)| (fd.clone(), dir));
        // Release first (a read's bytes go to the stash), so a waiting op finds them.
        Operation::orphaned(*self, res);
        if let Some((fd, dir)) = counted {
            fd.orphan_finished(dir);
        }
    }
}

/// What a multishot op (a receive or accept that stays armed and posts one completion per message
/// or connection; uring only) does with each completion: its fd (held weakly: the fd's owner going
/// away cancels the op), the loop's receive pool if any, the result, the CQE flags, and whether
/// the op stays armed (`more`). Returns false to stop the op: the driver cancels it, and
/// completions already on their way still come until the last one (`more == false`).
///
/// A plain function rather than a boxed object: every armed connection has one, and an
/// allocation each would be memory a server pays per idle connection.
pub(crate) type Deliver = fn(
    fd: &super::fd::WeakFd,
    pool: Option<&Rc<crate::buf::pool::Pool>>,
    res: io::Result<u32>,
    flags: u32,
    more: bool,
) -> bool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Not started yet.
    Idle,
    /// Not started, but its syscall was just tried at once and would block
    /// ([`Op::at_once`]): it goes to the ring (uring) or waits for the fd's next edge (epoll)
    /// without trying it again.
    Tried,
    /// uring: an SQE is in flight with this user_data.
    Submitted(usize),
    /// epoll: waiting for this registration to become ready in this direction.
    Armed(u64, Interest),
    /// The output was returned.
    Done,
}

/// The op's data and where it is in its life.
pub(crate) struct OpCore<T> {
    pub(super) data: Option<Box<T>>,
    pub(super) slot: Slot,
}

impl<T: Operation> OpCore<T> {
    pub(super) fn data_mut(&mut self) -> &mut T {
        self.data
            .as_mut()
            .expect("an op was polled after it completed")
    }

    /// The op's SQE could not be queued: it never reached the kernel.
    pub(super) fn finish_unstarted(&mut self, err: io::Error) -> T::Output {
        self.take_done().unstarted(err)
    }

    pub(super) fn finish(&mut self, res: io::Result<u32>) -> T::Output {
        self.take_done().complete(res)
    }

    /// Marks the op done and takes its data.
    fn take_done(&mut self) -> Box<T> {
        self.slot = Slot::Done;
        self.data
            .take()
            .expect("an op was polled after it completed")
    }
}

/// The future of one I/O operation on whichever backend the current loop runs.
pub(crate) struct Op<T: Operation> {
    driver: Option<Rc<DriverCell>>,
    core: OpCore<T>,
}

impl<T: Operation> Op<T> {
    pub(crate) fn new(data: T) -> Self {
        Self::new_boxed(Box::new(data))
    }

    pub(crate) fn new_boxed(data: Box<T>) -> Self {
        Op {
            driver: None,
            core: OpCore {
                data: Some(data),
                slot: Slot::Idle,
            },
        }
    }

    /// Starts an op whose data is still where the caller made it (its stack): if the op's
    /// syscall completes at once (see [`DriverCell::try_at_once`]) its output comes back and the
    /// data is never boxed; otherwise the data is boxed into an `Op` to be polled as usual,
    /// which remembers that the syscall would block.
    ///
    /// This is the common path of a write: an op's `Box` is made only when it must wait for
    /// the kernel (its data then has to stay in place until the completion), so a send that
    /// goes out at once costs no allocation and no second poll.
    #[inline]
    pub(crate) fn at_once(mut data: T) -> Result<T::Output, Self> {
        // The driver is borrowed, not cloned: an op that goes out at once takes no count.
        let tried = crate::driver::with_current(|driver| match driver.try_at_once(&mut data) {
            AtOnce::Done(res) => Ok(res),
            AtOnce::WouldBlock => Err((Slot::Tried, driver.clone())),
            AtOnce::NotTried => Err((Slot::Idle, driver.clone())),
        });
        let (slot, driver) = match tried {
            Some(Ok(res)) => return Ok(data.complete(res)),
            Some(Err(waits)) => waits,
            // `Op`'s poll reports the missing loop.
            None => return Err(Op::new(data)),
        };
        Err(Op {
            driver: Some(driver),
            core: OpCore {
                data: Some(Box::new(data)),
                slot,
            },
        })
    }
}

impl<T: Operation> Op<T> {
    /// An op whose syscall [`write_at_once`] just `tried` (it would block) or chose not to
    /// try on `driver`: it is polled as if `at_once` had made it.
    pub(crate) fn waiting(data: T, tried: bool, driver: Rc<DriverCell>) -> Self {
        Op {
            driver: Some(driver),
            core: OpCore {
                data: Some(Box::new(data)),
                slot: if tried { Slot::Tried } else { Slot::Idle },
            },
        }
    }
}

/// What [`write_at_once`] did with a stream write.
pub(crate) enum WriteAtOnce {
    /// The syscall ran and moved this many bytes.
    Sent(u32),
    /// The syscall ran and failed with this error (never `EAGAIN`, nor `EINTR`).
    Failed(io::Error),
    /// The write must wait: its op goes on `driver`, `tried` if the syscall said `EAGAIN` (or
    /// was interrupted, on uring), else untried; see [`Op::waiting`].
    Wait { tried: bool, driver: Rc<DriverCell> },
    /// Not for this path (no loop runs here): [`Op::at_once`] takes it.
    Slow,
}

/// The fast path of a plain stream write (`op::rw::send_at_once`) tried at once: what
/// [`Op::at_once`] does with a stream socket's `Send` that wants no zero-copy, without building
/// the op. `len` bytes (clamped to one op's most) go with `syscall` (the nonblocking call, its
/// return value as libc gives it), which runs only when [`DriverCell::try_at_once`] would run
/// the op's: on epoll unless the fd is known not ready, on uring when the send would make the
/// ring trip alone and is not zero-copy; the cooperative budget, the counters and epoll's
/// readiness bookkeeping are the same, and so are the faults injected (`RINGLOOP_FAULTS`: a
/// send cut short, an interrupted call), so the fault suite runs this path too. `syscall` gets
/// the bytes to send, at most `len`.
#[inline(always)]
pub(crate) fn write_at_once(
    fd: &SharedFd,
    len: u32,
    syscall: impl FnMut(u32) -> isize,
) -> WriteAtOnce {
    crate::driver::with_current(
        #[inline(always)]
        |driver| driver.write_at_once(fd, len, syscall),
    )
    .unwrap_or(WriteAtOnce::Slow)
}

impl DriverCell {
    /// `write_at_once`'s answer for a write that must wait (`tried`: its syscall said so).
    fn wait(self: &Rc<Self>, tried: bool) -> WriteAtOnce {
        WriteAtOnce::Wait {
            tried,
            driver: self.clone(),
        }
    }

    #[inline(always)]
    fn write_at_once(
        self: &Rc<Self>,
        fd: &SharedFd,
        len: u32,
        mut syscall: impl FnMut(u32) -> isize,
    ) -> WriteAtOnce {
        let faults = self.counters.faults.enabled();
        let mut driver = self.driver.borrow_mut();
        // epoll: the driver and the fd's registration, for the readiness bookkeeping.
        let mut epoll = match &mut *driver {
            Driver::Uring(u) => {
                // As `Send::offer_zero_copy` and `worth_inline` decide: a zero-copy send, or
                // one that would share its ring trip, goes to the ring untried.
                let zero_copy =
                    self.zero_copy.is_some_and(|min| len >= min) && fd.zero_copy_allowed();
                if zero_copy || !(u.no_ops() && (self.nothing_else_ready)()) {
                    return self.wait(false);
                }
                None
            }
            Driver::Epoll(e) => {
                let token = fd.registration(self);
                if let Some(token) = token
                    && e.known_not_ready(token, Interest::Write)
                {
                    return self.wait(false);
                }
                Some((e, token))
            }
            Driver::Closed => return self.wait(false),
        };
        if !crate::coop::proceed() {
            return self.wait(false);
        }
        if epoll.is_some() {
            Counters::bump(&self.counters.ops_submitted);
        }
        loop {
            // Fault injection, as `try_at_once` does it: the send cut short, or interrupted.
            let (want, interrupted) = if faults {
                self.write_faults(len)
            } else {
                (len, false)
            };
            Counters::bump(&self.counters.io_syscalls);
            let ret = if interrupted { -1 } else { syscall(want) };
            if ret >= 0 {
                let n = ret as u32;
                // epoll: a short write filled the socket; not ready until the next edge.
                if n < want
                    && let Some((e, Some(token))) = &mut epoll
                {
                    e.clear_ready(*token, Interest::Write, Some(fd.raw()));
                }
                return WriteAtOnce::Sent(n);
            }
            let err = if interrupted {
                io::Error::from_raw_os_error(libc::EINTR)
            } else {
                io::Error::last_os_error()
            };
            match err.raw_os_error() {
                // epoll retries an interrupted syscall; uring lets the ring run it.
                Some(libc::EINTR) if epoll.is_some() => continue,
                Some(libc::EAGAIN | libc::EINTR) => return self.wait(true),
                _ => return WriteAtOnce::Failed(err),
            }
        }
    }

    /// The faults injected into one try of a write of `len` bytes at once: the bytes it may
    /// send (cut short as `maybe_shorten` cuts an op) and whether the call is interrupted.
    #[cold]
    #[inline(never)]
    fn write_faults(&self, len: u32) -> (u32, bool) {
        let faults = &self.counters.faults;
        let mut want = len;
        if faults.roll() {
            want = want.min(1 + faults.below(512) as u32);
            faults.count(Fault::ShortTransfer);
        }
        (want, faults.inject(Fault::Interrupted))
    }
}

/// What [`DriverCell::try_at_once`] did with an op.
pub(crate) enum AtOnce {
    /// The syscall ran, with this result.
    Done(io::Result<u32>),
    /// The syscall said `EAGAIN` (or was interrupted): the op must wait.
    WouldBlock,
    /// The syscall was not tried (the op goes the usual way).
    NotTried,
}

impl<T: Operation> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        if this.driver.is_none() {
            match crate::driver::current() {
                Some(d) => this.driver = Some(d),
                None => {
                    return Poll::Ready(this.core.finish(Err(io::Error::other(
                        "ringloop I/O was polled outside a running event loop: await it inside \
                         EventLoop::run_until_complete or ringloop::run",
                    ))));
                }
            }
        }
        let driver = this.driver.as_ref().expect("set just above");
        driver.poll_op(&mut this.core, cx)
    }
}

impl<T: Operation> Drop for Op<T> {
    fn drop(&mut self) {
        // Only a submitted op holds anything the kernel uses (see `DriverCell::drop_op`).
        if let Some(driver) = &self.driver
            && matches!(self.core.slot, Slot::Submitted(_))
        {
            driver.drop_op(&mut self.core);
        }
    }
}

/// Where a file op's pool job leaves its result; whichever side comes second releases it.
struct PoolSlot<T> {
    result: Option<(Box<T>, io::Result<u32>)>,
    waker: Option<std::task::Waker>,
    abandoned: bool,
}

type SharedSlot<T> = std::sync::Arc<std::sync::Mutex<PoolSlot<T>>>;

fn lock<T>(slot: &SharedSlot<T>) -> std::sync::MutexGuard<'_, PoolSlot<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

enum FileState<T: Operation> {
    Start(Option<Box<T>>),
    Ring(Op<T>),
    Pool(SharedSlot<T>),
    Done,
}

/// The future of a file op: a ring op on uring; the syscall on the blocking pool on epoll. If it
/// is dropped while the pool runs it, the pool thread releases the result (closing an opened fd).
pub(crate) struct FileOp<T: Operation + Send> {
    state: FileState<T>,
    /// While the op is in flight, a paused clock waits for it instead of jumping to a timer.
    hold: Option<crate::time::ClockHold>,
}

impl<T: Operation + Send> FileOp<T> {
    pub(crate) fn new(data: T) -> Self {
        FileOp {
            state: FileState::Start(Some(Box::new(data))),
            hold: None,
        }
    }
}

fn run_on_pool<T: Operation + Send>(mut data: Box<T>, slot: SharedSlot<T>) {
    crate::blocking::execute(Box::new(move || {
        let res = loop {
            match data.try_syscall() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let mut guard = lock(&slot);
        if guard.abandoned {
            drop(guard);
            data.orphaned(res);
            return;
        }
        guard.result = Some((data, res));
        let waker = guard.waker.take();
        drop(guard);
        // Contained: the waker may be a foreign executor's (the file future polled by it); the
        // pool thread also contains a job's panic, but not when the job runs inline (no thread
        // could be made).
        if let Some(w) = waker {
            crate::blocking::wake_contained(w);
        }
    }));
}

impl<T: Operation + Send> Future for FileOp<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        match &mut this.state {
            FileState::Start(data) => {
                let driver = crate::driver::current();
                if let Some(d) = &driver
                    && d.try_files_inline()
                {
                    // A read the page cache can serve whole completes here, without the pool or
                    // a ring trip. It spends cooperative budget like any op that completes at once.
                    if !crate::coop::proceed() {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let op = data.as_mut().expect("a file op starts once");
                    if let Some(res) = op.try_nowait() {
                        let op = data.take().expect("checked just above");
                        this.state = FileState::Done;
                        return Poll::Ready(op.complete(res));
                    }
                }
                let data = data.take().expect("a file op starts once");
                this.hold = crate::time::ClockHold::new();
                match driver {
                    Some(d) if d.files_on_pool() || !data.on_ring() => {
                        let slot = std::sync::Arc::new(std::sync::Mutex::new(PoolSlot {
                            result: None,
                            waker: Some(cx.waker().clone()),
                            abandoned: false,
                        }));
                        run_on_pool(data, slot.clone());
                        this.state = FileState::Pool(slot);
                        Poll::Pending
                    }
                    _ => {
                        // A ring op (or, outside a loop, `Op` reports the error).
                        let mut op = Op::new_boxed(data);
                        let poll = Pin::new(&mut op).poll(cx);
                        this.state = FileState::Ring(op);
                        if poll.is_ready() {
                            this.hold = None;
                        }
                        poll
                    }
                }
            }
            FileState::Ring(op) => {
                let poll = Pin::new(op).poll(cx);
                if poll.is_ready() {
                    this.hold = None;
                }
                poll
            }
            FileState::Pool(slot) => {
                let mut guard = lock(slot);
                match guard.result.take() {
                    Some((data, res)) => {
                        drop(guard);
                        this.state = FileState::Done;
                        this.hold = None;
                        Poll::Ready(data.complete(res))
                    }
                    None => {
                        guard.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
            FileState::Done => panic!("a file op was polled after it completed"),
        }
    }
}

impl<T: Operation + Send> Drop for FileOp<T> {
    fn drop(&mut self) {
        if let FileState::Pool(slot) = &self.state {
            let mut guard = lock(slot);
            match guard.result.take() {
                Some((data, res)) => {
                    drop(guard);
                    data.orphaned(res);
                }
                None => guard.abandoned = true,
            }
        }
    }
}
