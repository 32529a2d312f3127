//! `EventLoop` (its `Builder` is in `builder`), `run`, `current_task` and `current_stats`; the loop
//! turn itself (`LoopInner::turn`).
//!
//! The turn is one out-of-line function: the polls of the ready tasks (`Executor::run_ready`),
//! the look at the system clock, the driver's park with its enter and its reap are inlined into
//! it, so a turn pays one frame rather than one per step (at about one message per turn, every
//! step's prologue is paid per message). Rare paths stay out of line: a paused or moved clock
//! (`look_on_loop_clock`), futures that yielded, wakes from other threads, debug mode's timed
//! polls, a park that failed. What the turn reads every time sits in plain cells: the ready
//! queue (a ring of ids), the clock's "system" flag, the timers' earliest deadline.

mod builder;

pub use builder::Builder;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::backend::{self, Backend, Choice};
use crate::driver::{DriverCell, DriverConfig, Shared};
use crate::executor::context::{Enter, LoopInner, current};
use crate::executor::waker::{MAIN_ID, TaskWaker};
use crate::executor::{Executor, JoinHandle, POLLS_PER_TURN, TaskInfo};
use crate::stats::{Counters, Stats};
use crate::time::TimerStore;

/// The default ring size (and epoll event batch).
const DEFAULT_ENTRIES: u32 = 256;

/// The environment variable that turns debug mode on (`1`) or off (`0`).
pub const DEBUG_ENV: &str = "RINGLOOP_DEBUG";

/// The default of [`Builder::slow_poll_threshold`], asyncio's.
const DEFAULT_SLOW_POLL: Duration = Duration::from_millis(100);

/// The default of [`Builder::zero_copy_threshold`]: off. Measured over loopback (where the kernel
/// copies zero-copy data on delivery anyway), zero-copy sends of 64 KiB and 1 MiB chunks took
/// 1.3-1.4x the CPU per byte of plain sends and moved 0.5-0.6x the bytes per second
/// (BENCHMARKS.md, "Zero-copy sends"); a server sending large buffers to a network device is where
/// to try it.
pub const DEFAULT_ZERO_COPY_THRESHOLD: Option<usize> = None;

fn debug_from_env() -> io::Result<bool> {
    let Some(raw) = std::env::var_os(DEBUG_ENV) else {
        return Ok(false);
    };
    match raw.to_string_lossy().trim() {
        "" | "0" => Ok(false),
        "1" => Ok(true),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{DEBUG_ENV}={other:?} is not a debug setting: accepted values are 0 and 1"),
        )),
    }
}

impl LoopInner {
    /// One loop turn: run ready tasks, then one trip to the kernel (not blocking if there is more
    /// to run), then timers and wakes from other threads.
    ///
    /// One function for the common turn, out of line from the (generic) `run_until_complete`:
    /// the ready tasks' polls, the look at the system clock, the park and the reap are inlined
    /// into it, so a turn pays one call's prologue and epilogue rather than one per step, and
    /// the rare paths (a moved clock, yielded futures, remote wakes) stay out of line.
    #[inline(never)]
    fn turn(&self) {
        let polled = self.polls_since_io.get() + self.executor.run_ready(&self.counters);
        let yielded = !self.yielded.borrow().is_empty();
        if !yielded && self.executor.main_woken() && polled < POLLS_PER_TURN {
            // A task woke the main future: poll it straight away, as any other woken task would
            // be, and look at I/O once the turn's poll budget is spent.
            self.polls_since_io.set(polled);
            return;
        }
        self.polls_since_io.set(0);
        self.collect_remote();
        if self.clock.is_system() {
            self.look_on_system_clock(yielded);
        } else {
            self.look_on_loop_clock(yielded);
        }
    }

    /// The turn's look at I/O and timers while the clock shows the system's (the common case):
    /// one raw clock read before the park and one after, which the park's timing shares, each
    /// compared with the earliest deadline in the same terms (`Clock::nanos_of`). The loop's
    /// `Instant` is read only when a timer is due.
    #[inline(always)]
    fn look_on_system_clock(&self, yielded: bool) {
        let mut due = self.first_deadline_nanos();
        let mut busy = yielded || self.executor.has_work();
        // Read when a timer may be due or the park may sleep (and is timed): a busy turn without
        // timers reads no clock.
        let before = (due.is_some() || !busy).then(crate::time::monotonic_nanos);
        if let (Some(d), Some(before)) = (due, before)
            && d <= before
        {
            self.wake_timers_at(self.clock.now());
            due = self.first_deadline_nanos();
            busy = yielded || self.executor.has_work();
        }
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            due.map(|d| Duration::from_nanos(d.saturating_sub(before.unwrap_or(d))))
        };
        let after = self.park(timeout, before);
        self.collect_remote();
        if let Some(d) = self.first_deadline_nanos()
            && d <= after.unwrap_or_else(crate::time::monotonic_nanos)
        {
            self.wake_timers_at(self.clock.now());
        }
        if yielded {
            self.wake_yielded();
        }
    }

    /// The earliest timer's deadline in `monotonic_nanos` terms (see `Clock::nanos_of`).
    #[inline(always)]
    fn first_deadline_nanos(&self) -> Option<u64> {
        let first = self.first_deadline.get()?;
        Some(self.clock.nanos_of(first))
    }

    /// One trip to the kernel; the raw clock reading at its end when it was timed.
    #[inline(always)]
    fn park(&self, timeout: Option<Duration>, before: Option<u64>) -> Option<u64> {
        match self.driver.park(timeout, &self.shared, before) {
            Ok(after) => after,
            Err(e) => self.park_failed(e),
        }
    }

    #[cold]
    #[inline(never)]
    fn park_failed(&self, e: io::Error) -> ! {
        panic!(
            "ringloop: the {} backend failed to wait for I/O: {e}",
            self.driver.backend()
        )
    }

    /// The turn's look at I/O and timers on a clock paused or moved (tests).
    #[inline(never)]
    fn look_on_loop_clock(&self, yielded: bool) {
        // One clock read serves both the timers due now and the wait until the next one.
        let now = if self.timers.borrow().is_empty() {
            None
        } else {
            let now = self.clock.now();
            self.fire_due_timers(now);
            Some(now)
        };
        let mut timeout = match now {
            _ if yielded || self.executor.has_work() => Some(Duration::ZERO),
            None => None,
            Some(now) => self
                .timers
                .borrow()
                .next_deadline()
                .map(|d| d.saturating_duration_since(now)),
        };
        // A paused clock does not wait for a timer: it looks at I/O without blocking and, if that
        // delivered nothing, jumps to the timer. An op that holds the clock (a file op) is waited
        // for instead.
        let jump = self.clock.is_paused() && timeout.is_some_and(|t| !t.is_zero());
        if jump {
            timeout = if self.clock.held() {
                None
            } else {
                Some(Duration::ZERO)
            };
        }
        self.park(timeout, None);
        self.collect_remote();
        if jump
            && timeout.is_some()
            && !self.executor.has_work()
            && let Some(next) = self.timers.borrow().next_deadline()
        {
            self.clock.jump_to(next);
        }
        if !self.timers.borrow().is_empty() {
            self.fire_due_timers(self.clock.now());
        }
        if yielded {
            self.wake_yielded();
        }
    }

    /// Wakes the futures that yielded, behind every task that the look at I/O, timers and other
    /// threads just woke. If the main future yielded, those tasks run before it resumes too.
    #[inline(never)]
    fn wake_yielded(&self) {
        let yielded = std::mem::take(&mut *self.yielded.borrow_mut());
        for w in yielded {
            crate::blocking::wake_contained(w);
        }
        if self.executor.main_woken() && self.executor.has_ready_tasks() {
            self.polls_since_io
                .set(self.executor.run_ready(&self.counters));
        }
    }

    /// Wakes the timers due at `now`; most turns have none, and those return after one look at
    /// the earliest deadline.
    #[inline(always)]
    fn fire_due_timers(&self, now: std::time::Instant) {
        if self
            .timers
            .borrow()
            .next_deadline()
            .is_some_and(|d| d <= now)
        {
            self.wake_timers_at(now);
        }
    }

    /// Wakes every timer due at `now`, once one is (kept out of line: the look before it stays
    /// small).
    #[inline(never)]
    fn wake_timers_at(&self, now: std::time::Instant) {
        let mut fired = self.scratch_wakers.borrow_mut();
        self.timers.borrow_mut().fire(now, &mut fired);
        for w in fired.drain(..) {
            crate::blocking::wake_contained(w);
        }
    }

    #[inline]
    fn collect_remote(&self) {
        // The common turn: nothing came from other threads.
        if self.shared.remote_pending() {
            self.take_remote();
        }
    }

    /// `collect_remote` once something came from other threads.
    #[inline(never)]
    fn take_remote(&self) {
        let mut ids = self.scratch_ids.borrow_mut();
        let mut jobs = Vec::new();
        self.shared.take_remote(&mut ids, &mut jobs);
        for id in ids.drain(..) {
            // Taking the id clears the task's remote flag (acquiring what its waker published);
            // a task already queued, or gone, is not queued again.
            let queue = if id == MAIN_ID {
                self.main.take_remote_wake()
            } else {
                self.executor.take_remote_wake(id)
            };
            if queue {
                self.executor.schedule(id);
            }
        }
        drop(ids);
        for job in jobs {
            // A panicking job (a `call_soon` closure) is reported by the panic hook and does not
            // take the loop down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}

/// A single-threaded event loop on the io_uring or the epoll backend.
///
/// Build one with [`EventLoop::new`] (backend from `RINGLOOP_BACKEND`, default `auto`) or
/// [`EventLoop::builder`], run futures with [`run_until_complete`](EventLoop::run_until_complete),
/// and close it with [`close`](EventLoop::close) or by dropping it. An `EventLoop` stays on the
/// thread that made it (it is `!Send`), which lets the ring use `SINGLE_ISSUER`.
///
/// # Examples
///
/// ```
/// let mut lp = ringloop::EventLoop::new().expect("no event loop");
/// eprintln!("running on {}", lp.backend());
/// let answer = lp.run_until_complete(async { 42 });
/// assert_eq!(answer, 42);
/// lp.close();
/// ```
pub struct EventLoop {
    inner: Rc<LoopInner>,
    main: Arc<TaskWaker>,
    backend: Backend,
    fallback_reason: Option<String>,
    entries: u32,
    closed: bool,
    debug: bool,
}

impl EventLoop {
    /// Builds a loop on the backend `RINGLOOP_BACKEND` names (`auto` when unset).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new() -> io::Result<EventLoop> {
        Builder::default().build()
    }

    /// A builder to choose the backend and the ring size in code.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The backend this loop runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why `auto` did not pick io_uring (`None` if it did, or if a backend was forced).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// A handle to this loop that other threads can use to spawn onto it or run closures on it.
    pub fn handle(&self) -> crate::LoopHandle {
        crate::LoopHandle::new(self.inner.shared.clone())
    }

    /// The loop's counters: ops, completions, syscalls, polls, spawns.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Runs `future` to completion on this loop, running spawned tasks, I/O and timers meanwhile,
    /// and returns its output (asyncio's `run_until_complete`). Tasks still pending when it returns
    /// stay on the loop and run again during the next call.
    ///
    /// # Panics
    ///
    /// Panics with a message containing "already running" if an event loop is already running on
    /// this thread. A panic of `future` itself propagates to the caller; the loop stays usable.
    #[track_caller]
    pub fn run_until_complete<F: Future>(&mut self, future: F) -> F::Output {
        let called_at = std::panic::Location::caller();
        let _enter = Enter::new(&self.inner);
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(self.main.clone());
        let mut cx = Context::from_waker(&waker);
        self.inner.executor.schedule(MAIN_ID);
        loop {
            if self.inner.executor.take_main_woken() {
                self.main.clear_scheduled();
                Counters::bump(&self.inner.counters.task_polls);
                let polls = &self.inner.polls_since_io;
                polls.set(polls.get() + 1);
                crate::coop::reset();
                let executor = &self.inner.executor;
                executor.set_main_current(true);
                let clock = &self.inner.clock;
                let started = executor.slow_poll.as_ref().map(|_| clock.busy());
                let poll = future.as_mut().poll(&mut cx);
                executor.set_main_current(false);
                if let (Some(watch), Some(started)) = (&executor.slow_poll, started) {
                    let main = || {
                        let polls = self.inner.counters.task_polls.get();
                        TaskInfo::new(MAIN_ID, Some(Rc::from("main")), called_at, polls)
                    };
                    watch.check(main, clock.busy().saturating_sub(started));
                }
                if let Poll::Ready(out) = poll {
                    return out;
                }
            }
            self.inner.turn();
        }
    }

    /// Spawns a task on this loop; it starts running at the next `run_until_complete`.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.inner
            .spawn(future, std::panic::Location::caller(), None)
    }

    /// Every task alive on this loop (asyncio's `all_tasks`), in no particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut lp = ringloop::EventLoop::new().unwrap();
    /// lp.spawn(std::future::pending::<()>());
    /// let tasks = lp.tasks();
    /// assert_eq!(tasks.len(), 1);
    /// assert!(tasks[0].spawned_at().file().ends_with(".rs"));
    /// ```
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.inner.executor.tasks()
    }

    /// Closes the loop: cancels every task and every in-flight op, waits until the kernel has
    /// finished with every buffer, and frees everything. Dropping the loop does the same.
    ///
    /// The wait is bounded whatever peers do. A cancelled op completes at once, but the kernel
    /// holds the pages of a zero-copy send (`Builder::zero_copy_threshold`, uring) until the peer
    /// has taken its bytes, and a peer that stopped reading never does: after a second, the
    /// connections of such sends are reset (`connect(AF_UNSPEC)`), which makes the kernel let go
    /// of them. Whatever the kernel still holds a second after that is leaked, never freed under
    /// it.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.debug {
            let alive = self.inner.executor.tasks();
            if !alive.is_empty() {
                eprintln!(
                    "ringloop: closing the loop with {} task(s) still alive (they are dropped now):",
                    alive.len()
                );
                for task in &alive {
                    eprintln!("ringloop:   {task}, polled {} time(s)", task.polls());
                }
            }
        }
        let _enter = Enter::try_new(&self.inner);
        // Work sent from other threads is refused from now on; what is queued is dropped, which
        // resolves its `RemoteJoinHandle`s as cancelled.
        for job in self.inner.shared.close_jobs() {
            crate::executor::drop_contained(job);
        }
        // Dropping the futures cancels their ops (on uring the data waits in the driver for its
        // CQE); a dropped future may wake or spawn, so clear twice.
        self.inner.executor.cancel_all();
        self.inner.timers.borrow_mut().clear();
        self.inner.driver.shutdown();
        self.inner.counters.faults.add_to_totals();
        self.inner.executor.cancel_all();
        self.inner.timers.borrow_mut().clear();
        self.inner.yielded.borrow_mut().clear();
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("backend", &self.backend)
            .field("fallback_reason", &self.fallback_reason)
            .field("entries", &self.entries)
            .field("uring_setup", &self.inner.driver.uring_setup())
            .field("tasks", &self.inner.executor.task_count())
            .field("debug", &self.debug)
            .field("timers", &self.inner.timers.borrow().len())
            .finish()
    }
}

/// The task being polled on this thread's loop (asyncio's `current_task`); `None` in the main
/// future (the one `run_until_complete` runs) and outside a loop.
pub fn current_task() -> Option<TaskInfo> {
    current()?.executor.current_task()
}

/// The counters of the loop running on this thread, or `None` outside a loop; for tasks that
/// export metrics.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let stats = ringloop::current_stats().expect("inside a loop");
///     assert!(stats.task_polls >= 1);
/// });
/// ```
pub fn current_stats() -> Option<Stats> {
    current().map(|inner| inner.counters.snapshot())
}

/// The backend of the loop running on this thread, or `None` outside a loop: for code (a
/// `#[ringloop::test]` body, which runs on every backend) that checks something only one backend
/// does.
///
/// # Examples
///
/// ```
/// let mut lp = ringloop::EventLoop::builder().backend(ringloop::Backend::Epoll).build().unwrap();
/// let backend = lp.run_until_complete(async { ringloop::current_backend() });
/// assert_eq!(backend, Some(ringloop::Backend::Epoll));
/// assert_eq!(ringloop::current_backend(), None);
/// ```
pub fn current_backend() -> Option<Backend> {
    current().map(|inner| inner.driver.backend())
}

/// Runs `future` on a new event loop and closes the loop (asyncio's `run`): the backend comes from
/// `RINGLOOP_BACKEND`, default `auto`.
///
/// # Panics
///
/// Panics with the setup error's message if no loop can be built (say, a bad `RINGLOOP_BACKEND`),
/// and with "already running" if a loop already runs on this thread.
///
/// # Examples
///
/// ```
/// let out = ringloop::run(async { "done" });
/// assert_eq!(out, "done");
/// ```
pub fn run<F: Future>(future: F) -> F::Output {
    let mut lp = EventLoop::new()
        .unwrap_or_else(|e| panic!("ringloop::run: cannot build an event loop: {e}"));
    let out = lp.run_until_complete(future);
    lp.close();
    out
}
