//! [`Builder`]: how an [`EventLoop`] is made.

use super::*;

/// The environment variable that turns direct descriptors on where the builder did not say:
/// a slot count, as [`Builder::direct_descriptors`] takes.
const DIRECT_FDS_ENV: &str = "RINGLOOP_DIRECT_FDS";

/// [`Builder::direct_descriptors`] from `RINGLOOP_DIRECT_FDS`: off (0) when unset.
fn direct_from_env() -> io::Result<u32> {
    let Some(raw) = std::env::var_os(DIRECT_FDS_ENV) else {
        return Ok(0);
    };
    let raw = raw.to_string_lossy();
    match raw.trim() {
        "" => Ok(0),
        n => n.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{DIRECT_FDS_ENV}={n:?} is not a slot count: a number from 0 (off) to \
                     4294967295, e.g. 4096"
                ),
            )
        }),
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
    direct_descriptors: Option<u32>,
    disable: Option<String>,
    debug: Option<bool>,
    slow_poll_threshold: Duration,
    start_paused: bool,
    on_slow_poll: Option<crate::executor::info::SlowPollHook>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("backend", &self.backend)
            .field("entries", &self.entries)
            .field("recv_pool", &self.recv_pool)
            .field("zero_copy_threshold", &self.zero_copy_threshold)
            .field("direct_descriptors", &self.direct_descriptors)
            .field("debug", &self.debug)
            .field("slow_poll_threshold", &self.slow_poll_threshold)
            .field("start_paused", &self.start_paused)
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
            direct_descriptors: None,
            disable: None,
            debug: None,
            slow_poll_threshold: DEFAULT_SLOW_POLL,
            start_paused: false,
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

    /// How many accepted TCP connections at once also get a slot in the ring's file table (a
    /// direct descriptor) on io_uring: their ring ops then name the slot instead of the fd, which
    /// saves the kernel an fd lookup and a reference count per op. The table is registered when
    /// the first connection is accepted, with no more slots than `RLIMIT_NOFILE`; a connection
    /// accepted while every slot is taken stays a plain fd (counted in
    /// [`Stats::direct_table_full`](crate::Stats::direct_table_full)). A connection keeps its
    /// fd as well, so every method (`peer_addr`, socket options, `into_std`, ...) works on it
    /// as on any other, and dropping it empties its slot at once (one more register call), so
    /// the connection closes then as any other does.
    ///
    /// Default: off (0), unless the environment variable `RINGLOOP_DIRECT_FDS` gives a slot
    /// count (4096 is a good start; [`build`](Builder::build) refuses a value that is not a
    /// number). Off because it did not measure faster here: over loopback, under the echo
    /// harness, it moved neither throughput nor CPU per message beyond the noise, and it costs
    /// two more syscalls per connection (BENCHMARKS.md, "Direct descriptors"). `0`, epoll, a
    /// kernel before Linux 5.19 and `RINGLOOP_DISABLE=direct-fd` leave every connection a plain
    /// fd.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = ringloop::EventLoop::builder().direct_descriptors(4096).build().unwrap();
    /// # drop(lp);
    /// ```
    pub fn direct_descriptors(mut self, slots: u32) -> Builder {
        self.direct_descriptors = Some(slots);
        self
    }

    /// Switches io_uring fast paths off, as `RINGLOOP_DISABLE` does (a comma-separated list of
    /// `multishot-recv`, `buf-ring`, `multishot-accept`, `registered-ring`, `setup-flags`, `splice`,
    /// `send-zc`, `direct-fd`, ...); for tests and measurements of the fallbacks.
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

    /// Starts the loop's clock paused, as [`time::pause`](crate::time::pause) would at the top of
    /// the first future: timers complete as soon as nothing else can run, without waiting for
    /// real time, which tests of timeouts and retries want. Default `false`. See
    /// [`time`](crate::time) for what follows the paused clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut lp = ringloop::EventLoop::builder().start_paused(true).build().unwrap();
    /// let real = std::time::Instant::now();
    /// lp.run_until_complete(ringloop::time::sleep(Duration::from_secs(24 * 3600)));
    /// assert!(real.elapsed() < Duration::from_secs(60));
    /// ```
    pub fn start_paused(mut self, paused: bool) -> Builder {
        self.start_paused = paused;
        self
    }

    /// In debug mode, calls `f` with the task and the time its poll took instead of printing the
    /// warning (for a logger or metrics). `f` runs on the loop's thread, right after the poll. A
    /// panic in `f` is contained (the panic hook reports it; the loop goes on).
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
        let direct_slots = match self.direct_descriptors {
            Some(slots) => slots,
            None => direct_from_env()?,
        };
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
            direct_slots,
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
        let timers = TimerStore::default();
        Ok(EventLoop {
            inner: Rc::new(LoopInner {
                executor: Executor::with_slow_poll(debug.then(|| {
                    crate::executor::info::SlowPoll {
                        threshold: self.slow_poll_threshold,
                        hook: self.on_slow_poll.clone(),
                    }
                })),
                first_deadline: timers.first_cell(),
                timers: Rc::new(RefCell::new(timers)),
                clock: Rc::new(crate::time::Clock::new(self.start_paused)),
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
