//! `EventLoop`, its `Builder`, `run`, `spawn`, and the thread-local "current loop" context.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

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
    fn spawn<F>(
        &self,
        future: F,
        spawned_at: &'static std::panic::Location<'static>,
        name: Option<Rc<str>>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.executor
            .spawn(future, &self.shared, &self.counters, spawned_at, name)
    }

    /// One loop turn: run ready tasks, then one trip to the kernel (not blocking if there is more
    /// to run), then timers and wakes from other threads.
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
        self.fire_timers();
        let timeout = if yielded || self.executor.has_work() {
            Some(Duration::ZERO)
        } else {
            self.timers
                .borrow()
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        if let Err(e) = self.driver.park(timeout, &self.shared) {
            panic!(
                "ringloop: the {} backend failed to wait for I/O: {e}",
                self.driver.backend()
            );
        }
        self.collect_remote();
        self.fire_timers();
        if yielded {
            self.wake_yielded();
        }
    }

    /// Wakes the futures that yielded, behind every task that the look at I/O, timers and other
    /// threads just woke. If the main future yielded, those tasks run before it resumes too.
    fn wake_yielded(&self) {
        let yielded = std::mem::take(&mut *self.yielded.borrow_mut());
        for w in yielded {
            w.wake();
        }
        if self.executor.main_woken() && self.executor.has_ready_tasks() {
            self.polls_since_io
                .set(self.executor.run_ready(&self.counters));
        }
    }

    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let mut fired = self.scratch_wakers.borrow_mut();
        self.timers.borrow_mut().fire(Instant::now(), &mut fired);
        for w in fired.drain(..) {
            w.wake();
        }
    }

    fn collect_remote(&self) {
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
                let started = executor.slow_poll.as_ref().map(|_| Instant::now());
                let poll = future.as_mut().poll(&mut cx);
                executor.set_main_current(false);
                if let (Some(watch), Some(started)) = (&executor.slow_poll, started) {
                    let main = || {
                        let polls = self.inner.counters.task_polls.get();
                        TaskInfo::new(MAIN_ID, Some(Rc::from("main")), called_at, polls)
                    };
                    watch.check(main, started.elapsed());
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

/// Configures an [`EventLoop`].
///
/// # Examples
///
/// ```
/// use ringloop::{Backend, EventLoop};
/// let lp = EventLoop::builder().backend(Backend::Epoll).entries(512).build().unwrap();
/// assert_eq!(lp.backend(), Backend::Epoll);
/// ```
#[derive(Clone)]
pub struct Builder {
    backend: Option<Backend>,
    entries: u32,
    recv_pool: (u16, u32),
    zero_copy_threshold: Option<usize>,
    disable: Option<String>,
    debug: Option<bool>,
    slow_poll_threshold: Duration,
    on_slow_poll: Option<crate::executor::info::SlowPollHook>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("backend", &self.backend)
            .field("entries", &self.entries)
            .field("recv_pool", &self.recv_pool)
            .field("zero_copy_threshold", &self.zero_copy_threshold)
            .field("debug", &self.debug)
            .field("slow_poll_threshold", &self.slow_poll_threshold)
            .field("on_slow_poll", &self.on_slow_poll.is_some())
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            backend: None,
            entries: DEFAULT_ENTRIES,
            recv_pool: (
                crate::buf::DEFAULT_POOL_COUNT,
                crate::buf::DEFAULT_POOL_SIZE,
            ),
            zero_copy_threshold: DEFAULT_ZERO_COPY_THRESHOLD,
            disable: None,
            debug: None,
            slow_poll_threshold: DEFAULT_SLOW_POLL,
            on_slow_poll: None,
        }
    }
}

impl Builder {
    /// Forces a backend; this wins over `RINGLOOP_BACKEND`.
    pub fn backend(mut self, backend: Backend) -> Builder {
        self.backend = Some(backend);
        self
    }

    /// The io_uring submission queue size (rounded up to a power of two, capped by the kernel;
    /// the completion queue is four times larger) and the epoll event batch. Default 256.
    pub fn entries(mut self, entries: u32) -> Builder {
        self.entries = entries;
        self
    }

    /// The loop's receive pool, which [`recv_pooled`](crate::net::TcpStream::recv_pooled) takes
    /// buffers from: `count` buffers (a power of two, at most 32768) of `size` bytes, allocated
    /// the first time a stream calls `recv_pooled`. Default: 1024 buffers of 4 KiB (4 MiB of
    /// address space, mapped lazily: a page costs memory once a receive used it), which serves a
    /// thousand busy connections at once and any number of idle ones: a connection holds a buffer
    /// only from the moment data arrives until the `PooledBuf` is dropped. The ring the kernel
    /// picks from holds 64 buffers at first and more each time it runs empty, so a loop whose
    /// connections are mostly idle keeps reusing a few buffers.
    ///
    /// A receive fills at most one buffer, so `size` is also the most one `recv_pooled` returns.
    /// On io_uring the buffers are a provided buffer ring (Linux 5.19+) the kernel picks from when
    /// data arrives; on epoll the loop takes one just before each `recv`.
    ///
    /// [`build`](Builder::build) refuses a `count` that is not a power of two from 1 to 32768, a
    /// `size` of 0, and a pool larger than 4 GiB.
    pub fn recv_pool(mut self, count: u16, size: u32) -> Builder {
        self.recv_pool = (count, size);
        self
    }

    /// Stream writes of owned buffers of at least this many bytes are zero-copy sends on io_uring
    /// (`IORING_OP_SEND_ZC`, Linux 6.0+): the kernel pins the buffer's pages and sends from them
    /// instead of copying, and the write completes, handing the buffer back, only once the kernel
    /// has let go of it. `None` makes every write a plain send (a copy). On epoll, and where the
    /// kernel has no zero-copy send, every write is a plain send whatever this says.
    ///
    /// Default: [`DEFAULT_ZERO_COPY_THRESHOLD`] (off). Pinning pages and the second completion
    /// cost more than copying a small buffer does, and the notification comes only once the peer
    /// acknowledged the data, so one stream's writes wait longer; over loopback the kernel copies
    /// zero-copy data when it delivers it, so there it never pays (BENCHMARKS.md has the
    /// figures). For large buffers sent through a network device, 64 KiB is a starting point to
    /// measure from. `RINGLOOP_DISABLE=send-zc` switches it off whatever the builder says.
    pub fn zero_copy_threshold(mut self, bytes: Option<usize>) -> Builder {
        self.zero_copy_threshold = bytes;
        self
    }

    /// Switches io_uring fast paths off, as `RINGLOOP_DISABLE` does (a comma-separated list of
    /// `multishot-recv`, `buf-ring`, `multishot-accept`, `registered-ring`, `setup-flags`, `splice`,
    /// `send-zc`); for tests and measurements of the fallbacks.
    #[doc(hidden)]
    pub fn disable_fast_paths(mut self, list: &str) -> Builder {
        self.disable = Some(list.to_owned());
        self
    }

    /// Debug mode (asyncio's): a poll of one task, or of the main future, that takes at least
    /// [`slow_poll_threshold`](Builder::slow_poll_threshold) prints a warning on stderr naming
    /// the task (its name, else where it was spawned) and how long it took, and closing the loop
    /// lists the tasks still alive. Without this call the environment variable `RINGLOOP_DEBUG`
    /// decides (`1` on, `0` or unset off; any other value is an error from
    /// [`build`](Builder::build)). Off, it costs one branch per poll.
    pub fn debug(mut self, on: bool) -> Builder {
        self.debug = Some(on);
        self
    }

    /// How long one poll may take before debug mode reports it. Default 100 ms, asyncio's.
    pub fn slow_poll_threshold(mut self, threshold: Duration) -> Builder {
        self.slow_poll_threshold = threshold;
        self
    }

    /// In debug mode, calls `f` with the task and the time its poll took instead of printing the
    /// warning (for a logger or metrics). `f` runs on the loop's thread, right after the poll.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    ///
    /// let slow = Rc::new(RefCell::new(Vec::new()));
    /// let seen = slow.clone();
    /// let mut lp = ringloop::EventLoop::builder()
    ///     .debug(true)
    ///     .slow_poll_threshold(Duration::from_millis(20))
    ///     .on_slow_poll(move |task, took| {
    ///         seen.borrow_mut().push((task.name().map(String::from), took))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// lp.run_until_complete(async {
    ///     ringloop::spawn_named("sleepy", async { std::thread::sleep(Duration::from_millis(30)) })
    ///         .await
    ///         .unwrap();
    /// });
    /// assert_eq!(slow.borrow()[0].0.as_deref(), Some("sleepy"));
    /// ```
    pub fn on_slow_poll(mut self, f: impl Fn(&TaskInfo, Duration) + 'static) -> Builder {
        self.on_slow_poll = Some(Rc::new(f));
        self
    }

    /// Builds the loop.
    ///
    /// Without [`backend`](Builder::backend), `RINGLOOP_BACKEND` decides: `auto` (or unset)
    /// picks io_uring when the kernel allows it and falls back to epoll otherwise, keeping the
    /// reason for [`EventLoop::fallback_reason`].
    ///
    /// # Errors
    ///
    /// - `InvalidInput` if `RINGLOOP_BACKEND` names no backend (the message lists the accepted
    ///   values) or `entries` is 0, a bad [`recv_pool`](Builder::recv_pool), or a
    ///   `RINGLOOP_DISABLE` that names no fast path, or a `RINGLOOP_DEBUG` other than 0 or 1;
    /// - the kernel's error if io_uring was asked for and cannot run (e.g. `PermissionDenied` for
    ///   `EPERM` under a seccomp filter), never a silent fallback;
    /// - `OutOfMemory` (`ENOMEM`) at ring setup, with what to raise;
    /// - errors creating the eventfd or epoll fd (e.g. `EMFILE`).
    pub fn build(self) -> io::Result<EventLoop> {
        if self.entries == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Builder::entries must be at least 1",
            ));
        }
        crate::buf::pool::check_config(self.recv_pool.0, self.recv_pool.1)?;
        let debug = match self.debug {
            Some(on) => on,
            None => debug_from_env()?,
        };
        let fast = crate::backend::FastPaths::resolve(self.disable.as_deref())?;
        let choice = match self.backend {
            Some(b) => Choice::Forced(b),
            None => backend::choice_from_env()?,
        };
        let (backend, fallback_reason) = match choice {
            Choice::Forced(Backend::Epoll) => (Backend::Epoll, None),
            Choice::Forced(Backend::Uring) => match backend::probe() {
                Ok(()) => (Backend::Uring, None),
                Err(why) => {
                    return Err(why.to_io_error(
                        "the io_uring backend was requested (RINGLOOP_BACKEND=uring or \
                         Builder::backend) but cannot run here; use RINGLOOP_BACKEND=epoll or auto",
                    ));
                }
            },
            Choice::Auto => match backend::probe() {
                Ok(()) => (Backend::Uring, None),
                Err(why) if why.fatal => return Err(why.to_io_error("cannot set up io_uring")),
                Err(why) => (Backend::Epoll, Some(why.reason.clone())),
            },
        };
        let shared = Arc::new(Shared::new()?);
        let counters = Rc::new(Counters {
            faults: crate::faults::Faults::from_env()?,
            ..Counters::default()
        });
        // Faults on: a small ring, so bursts overflow the completion queue.
        let entries = match crate::faults::RING_ENTRIES {
            Some(small) if counters.faults.enabled() => small,
            _ => self.entries,
        };
        let config = DriverConfig {
            backend,
            entries,
            fast,
            pool_config: self.recv_pool,
            zero_copy_threshold: self.zero_copy_threshold,
            nothing_else_ready: crate::executor::context::nothing_else_ready,
        };
        let driver =
            DriverCell::new(config, &shared, counters.clone()).map_err(|e| match backend {
                Backend::Uring => {
                    backend::describe_setup_error(&e).to_io_error("cannot set up the io_uring ring")
                }
                Backend::Epoll => e,
            })?;
        let main = Arc::new(TaskWaker::new(MAIN_ID, shared.clone(), false));
        Ok(EventLoop {
            inner: Rc::new(LoopInner {
                executor: Executor::with_slow_poll(debug.then(|| {
                    crate::executor::info::SlowPoll {
                        threshold: self.slow_poll_threshold,
                        hook: self.on_slow_poll.clone(),
                    }
                })),
                timers: Rc::new(RefCell::new(TimerStore::default())),
                driver,
                shared,
                main: main.clone(),
                counters,
                scratch_wakers: RefCell::new(Vec::new()),
                scratch_ids: RefCell::new(Vec::new()),
                polls_since_io: Cell::new(0),
                yielded: Default::default(),
            }),
            main,
            backend,
            fallback_reason,
            entries: self.entries,
            closed: false,
            debug,
        })
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
