//! Timers: [`sleep`], [`sleep_until`], [`timeout`] and [`interval`], on the loop's clock, which
//! tests can pause ([`pause`], [`resume`], [`advance`], [`Builder::start_paused`]).
//!
//! Timers live in the loop's timer store and wake their task through the backend's wait timeout, so
//! they cost no syscall of their own. A timer never fires before its deadline; it may fire later by
//! up to the backend's wait granularity (a millisecond on epoll) plus whatever the loop was busy with.
//!
//! # The paused clock
//!
//! Each loop has a clock, read by [`Instant::now`]. While it runs, it is the system's monotonic
//! clock. Paused (tokio's `test-util` does the same), it stands still, and:
//!
//! - [`advance`] moves it forward at once; the timers now due fire, in deadline order;
//! - when no task is ready and a non-blocking look at I/O delivered nothing, the loop moves it to
//!   the next timer's deadline instead of waiting, so a test of a one-hour timeout takes
//!   milliseconds. Sockets, pipes and signals keep working while paused: what the look at I/O
//!   delivers runs first, at the time the clock shows. A file op (`send_file`'s disk reads too)
//!   or a [`spawn_blocking`] closure in flight holds the clock until it finishes, or until its
//!   future or `JoinHandle` is dropped or aborted: an aborted `spawn_blocking` closure runs on,
//!   unseen by the clock. What comes from outside the loop's thread
//!   (another thread, another process, a peer over the network) may arrive only after the clock
//!   jumped past a timer, so race those against timers with the clock running;
//! - [`sleep`], [`sleep_until`], [`timeout`], [`interval`], hyper's timer
//!   (`compat::hyper::Timer`) and debug mode's slow-poll timing follow it (a poll takes no time
//!   on a paused clock, and a jump is never counted as a slow poll).
//!
//! # Which `Instant`
//!
//! [`time::Instant`](Instant) is a point on the loop's clock; `std::time::Instant` is the
//! system's. They hold the same value while the clock was never paused, and convert both ways
//! ([`Instant::from_std`], [`Instant::into_std`], `From`).
//!
//! - Taking either (`impl Into<time::Instant>`): [`sleep_until`], [`Sleep::reset`]. A
//!   `std::time::Instant` passed in is read as a point on the loop's clock.
//! - Returning ringloop's: [`Instant::now`], [`Sleep::deadline`], [`Interval::tick`].
//! - Durations ([`sleep`], [`timeout`], [`interval`]) count from the loop's `now()`.
//! - The rest of ringloop (socket and server timeouts) is built on these timers and follows the
//!   clock too. tokio's `tokio::time` under `tokio-compat` has its own clock, which ringloop's
//!   pause does not stop.
//!
//! [`Builder::start_paused`]: crate::Builder::start_paused
//! [`spawn_blocking`]: crate::spawn_blocking
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use ringloop::time::{self, Instant};
//!
//! let mut lp = ringloop::EventLoop::builder().start_paused(true).build().unwrap();
//! lp.run_until_complete(async {
//!     let start = Instant::now();
//!     let slow = time::sleep(Duration::from_secs(3600));
//!     assert!(time::timeout(Duration::from_secs(60), slow).await.is_err());
//!     assert_eq!(start.elapsed(), Duration::from_secs(60));
//! });
//! ```

mod clock;
mod store;

pub(crate) use clock::{Clock, ClockHold, monotonic_nanos};
pub use clock::{Instant, advance, pause, resume};
pub(crate) use store::{TimerKey, TimerStore};

/// Makes `clock` the running loop's on this thread (`None`: no loop runs here any more).
pub(crate) fn set_current_clock(clock: Option<Rc<Clock>>) {
    clock::set_current(clock);
}

/// The running loop's busy time (see `Clock::busy`), for debug mode's slow-poll timing; outside a
/// loop, the time since the first such call.
pub(crate) fn busy_now() -> Duration {
    match clock::current() {
        Some(clock) => clock.busy(),
        None => {
            static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            ORIGIN.get_or_init(std::time::Instant::now).elapsed()
        }
    }
}

thread_local! {
    /// The timers of the loop running on this thread (entered and left with the loop).
    static CURRENT: RefCell<Option<Rc<RefCell<TimerStore>>>> = const { RefCell::new(None) };
}

/// The timers of the loop running on this thread, or `None` outside a loop.
pub(crate) fn current() -> Option<Rc<RefCell<TimerStore>>> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
}

/// Makes `timers` the current ones on this thread (`None`: no loop runs here any more).
pub(crate) fn set_current(timers: Option<Rc<RefCell<TimerStore>>>) {
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = timers);
}

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Waits until `duration` has passed.
///
/// # Panics
///
/// The returned future panics when polled outside a running ringloop event loop.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// ringloop::run(async {
///     let start = Instant::now();
///     ringloop::time::sleep(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let now = Instant::now();
    sleep_until(now.checked_add(duration).unwrap_or_else(far_future))
}

/// Waits until `deadline`: a [`time::Instant`](Instant) or a `std::time::Instant` (read as a point
/// on the loop's clock, the same thing unless a test paused and advanced it).
///
/// # Panics
///
/// The returned future panics when polled outside a running ringloop event loop.
pub fn sleep_until(deadline: impl Into<Instant>) -> Sleep {
    Sleep {
        deadline: deadline.into(),
        entry: None,
    }
}

/// A deadline about 30 years away, for durations too large to add to `Instant::now()`.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// The future of [`sleep`] and [`sleep_until`].
///
/// A sleep whose deadline has passed (`sleep(Duration::ZERO)`, `sleep_until` of a past instant,
/// a sleep [`reset`](Sleep::reset) to the past) is ready at its next poll, as tokio's is, while
/// the task has cooperative budget left; each one spends a unit of it. Once a task poll has
/// spent its budget, an elapsed sleep yields instead (as [`yield_now`](crate::yield_now)): the
/// loop runs the other ready tasks, looks at I/O and fires due timers first. So a task looping
/// on `sleep(Duration::ZERO)` never stalls the loop, as asyncio's `sleep(0)` does not.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    entry: Option<(Rc<RefCell<TimerStore>>, TimerKey)>,
}

impl Sleep {
    /// When the sleep ends, on the loop's clock.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (either kind of `Instant`, as [`sleep_until`]); the sleep can be
    /// awaited again.
    pub fn reset(&mut self, deadline: impl Into<Instant>) {
        self.disarm();
        self.deadline = deadline.into();
    }

    fn disarm(&mut self) {
        if let Some((store, key)) = self.entry.take() {
            store.borrow_mut().remove(&key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            // Ready while the task has budget; a yield once it is spent, so a task looping on
            // an elapsed sleep lets the rest of the loop run.
            std::task::ready!(crate::coop::poll_proceed(cx));
            this.disarm();
            return Poll::Ready(());
        }
        if let Some((store, key)) = &this.entry
            && store.borrow_mut().update_waker(key, cx.waker())
        {
            return Poll::Pending;
        }
        let store = current().unwrap_or_else(|| {
            panic!(
                "a ringloop timer was polled outside a running event loop: await it inside \
                 EventLoop::run_until_complete or ringloop::run"
            )
        });
        let key = store
            .borrow_mut()
            .insert(this.deadline.into_std(), cx.waker().clone());
        this.entry = Some((store, key));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Runs `future` for at most `duration`: `Ok` with its output if it finished in time, `Err(Elapsed)`
/// otherwise, in which case `future` is dropped (an in-flight I/O op is cancelled; a stream read
/// dropped this way loses no bytes).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// ringloop::run(async {
///     let slow = ringloop::time::sleep(Duration::from_secs(10));
///     let res = ringloop::time::timeout(Duration::from_millis(5), slow).await;
///     assert!(res.is_err());
/// });
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A ticker that fires every `period`, the first tick at once.
///
/// When the loop falls behind by more than a period, missed ticks are skipped rather than fired in
/// a burst: the next tick is scheduled a period after the late one.
///
/// # Panics
///
/// Panics if `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// ringloop::run(async {
///     let mut ticks = ringloop::time::interval(Duration::from_millis(2));
///     let first = ticks.tick().await;
///     let second = ticks.tick().await;
///     assert!(second >= first + Duration::from_millis(2));
/// });
/// ```
pub fn interval(period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "ringloop::time::interval: the period must be non-zero"
    );
    let now = Instant::now();
    Interval {
        period,
        sleep: sleep_until(now),
    }
}

/// The ticker of [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time, on the loop's clock.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick, for hand-written futures.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                let tick = self.sleep.deadline();
                let now = Instant::now();
                // A period too long to add to an instant puts the next tick in the far future.
                let mut next = tick.checked_add(self.period).unwrap_or_else(far_future);
                if next <= now {
                    next = now.checked_add(self.period).unwrap_or_else(far_future);
                }
                self.sleep.reset(next);
                Poll::Ready(tick)
            }
        }
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Restarts the ticker: the next tick is one period from now.
    pub fn reset(&mut self) {
        let next = Instant::now()
            .checked_add(self.period)
            .unwrap_or_else(far_future);
        self.sleep.reset(next);
    }
}
