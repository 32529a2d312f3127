//! Timers: [`sleep`], [`sleep_until`], [`timeout`] and [`interval`].
//!
//! Timers live in the loop's timer store and wake their task through the backend's wait timeout, so
//! they cost no syscall of their own. A timer never fires before its deadline; it may fire later by
//! up to the backend's wait granularity (a millisecond on epoll) plus whatever the loop was busy with.

mod store;

pub(crate) use store::{TimerKey, TimerStore};

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
use std::time::{Duration, Instant};

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

/// Waits until `deadline`.
///
/// # Panics
///
/// The returned future panics when polled outside a running ringloop event loop.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
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
    /// When the sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline; the sleep can be awaited again.
    pub fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
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
        let key = store.borrow_mut().insert(this.deadline, cx.waker().clone());
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
    /// Waits for the next tick and returns its scheduled time.
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
