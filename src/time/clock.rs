//! The loop's clock, which tests can pause: [`Instant`], [`pause`], [`resume`], [`advance`].
//!
//! Each loop has one clock. Unpaused, it reads the system's monotonic clock (shifted by whatever it
//! was advanced while paused). Paused, it stands still: only [`advance`] moves it, and the loop
//! moves it to the next timer's deadline when nothing else can run (see the module docs of
//! [`time`](crate::time)). The timers, [`Instant::now`] and debug mode's slow-poll timing read it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

thread_local! {
    /// The clock of the loop running on this thread (entered and left with the loop).
    static CURRENT: RefCell<Option<Rc<Clock>>> = const { RefCell::new(None) };
}

/// The clock of the loop running on this thread, or `None` outside a loop.
pub(crate) fn current() -> Option<Rc<Clock>> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
}

/// Makes `clock` the current one on this thread (`None`: no loop runs here any more).
pub(crate) fn set_current(clock: Option<Rc<Clock>>) {
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = clock);
}

#[derive(Clone, Copy, Debug)]
struct State {
    paused: bool,
    /// Paused: the time the clock shows. Running: the time it showed when it last resumed.
    base: std::time::Instant,
    /// When (system time) the clock last resumed; equal to `base` while it was never paused.
    resumed_at: std::time::Instant,
    /// How far `advance` and the loop's jumps have moved the clock in all.
    jumped: Duration,
}

/// `CLOCK_MONOTONIC` in nanoseconds: what `std::time::Instant` reads, without its checked
/// arithmetic.
pub(crate) fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC cannot fail on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// One loop's clock.
#[derive(Debug)]
pub(crate) struct Clock {
    state: Cell<State>,
    /// `is_system`'s answer, kept with `state` (`set_state`): the loop asks every turn.
    system: Cell<bool>,
    /// When the loop was built (system time): the origin of [`Clock::busy`].
    origin: std::time::Instant,
    /// `monotonic_nanos` read just after `origin`: never behind it.
    origin_nanos: u64,
    /// The last deadline `nanos_of` converted, and what it gave.
    converted: Cell<Option<(std::time::Instant, u64)>>,
    /// Ops that must finish before the paused clock may jump (file ops, `spawn_blocking`): they
    /// complete without the loop waiting for anything outside the process.
    holds: Arc<AtomicUsize>,
}

impl Clock {
    pub(crate) fn new(paused: bool) -> Clock {
        let now = std::time::Instant::now();
        Clock {
            state: Cell::new(State {
                paused,
                base: now,
                resumed_at: now,
                jumped: Duration::ZERO,
            }),
            system: Cell::new(!paused),
            origin: now,
            origin_nanos: monotonic_nanos(),
            converted: Cell::new(None),
            holds: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether the clock shows the system's monotonic clock as it is: never paused nor moved.
    /// Then `monotonic_nanos() >= nanos_of(deadline)` means `now() >= deadline`.
    #[inline]
    pub(crate) fn is_system(&self) -> bool {
        self.system.get()
    }

    /// Sets the state, and `is_system`'s answer with it.
    fn set_state(&self, s: State) {
        self.system.set(!s.paused && s.base == s.resumed_at);
        self.state.set(s);
    }

    /// `deadline` in `monotonic_nanos` terms, never earlier than the deadline itself (the origin
    /// was read before its nanoseconds were), so a timer due by a raw clock read is due by
    /// `now()` read after it. Meaningful while `is_system`. The last deadline converted is
    /// remembered: the loop asks for the same earliest deadline every turn.
    #[inline]
    pub(crate) fn nanos_of(&self, deadline: std::time::Instant) -> u64 {
        if let Some((d, nanos)) = self.converted.get()
            && d == deadline
        {
            return nanos;
        }
        let since = deadline.saturating_duration_since(self.origin).as_nanos();
        let nanos = self
            .origin_nanos
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX));
        self.converted.set(Some((deadline, nanos)));
        nanos
    }

    /// The time the clock shows.
    pub(crate) fn now(&self) -> std::time::Instant {
        let s = self.state.get();
        if s.paused {
            return s.base;
        }
        let real = std::time::Instant::now();
        if s.base == s.resumed_at {
            return real; // never shifted (or by exactly nothing): the system's clock
        }
        s.base + real.saturating_duration_since(s.resumed_at)
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.state.get().paused
    }

    fn pause(&self) {
        let mut s = self.state.get();
        if !s.paused {
            s.base = self.now();
            s.paused = true;
            self.set_state(s);
        }
    }

    fn resume(&self) {
        let mut s = self.state.get();
        if s.paused {
            s.paused = false;
            s.resumed_at = std::time::Instant::now();
            self.set_state(s);
        }
    }

    /// Moves the paused clock forward by `by` (false if it is not paused).
    fn advance(&self, by: Duration) -> bool {
        let mut s = self.state.get();
        if !s.paused {
            return false;
        }
        match s.base.checked_add(by) {
            Some(t) => s.base = t,
            None => return false,
        }
        s.jumped = s.jumped.saturating_add(by);
        self.set_state(s);
        true
    }

    /// Moves the paused clock to `deadline` if that is later than what it shows.
    pub(crate) fn jump_to(&self, deadline: std::time::Instant) {
        let s = self.state.get();
        if s.paused && deadline > s.base {
            self.advance(deadline - s.base);
        }
    }

    /// The time the loop has been running by this clock, not counting its jumps: what a poll's
    /// duration is measured with (debug mode's slow polls). While paused it stands still.
    pub(crate) fn busy(&self) -> Duration {
        let s = self.state.get();
        self.now()
            .saturating_duration_since(self.origin)
            .saturating_sub(s.jumped)
    }

    /// Whether an op that holds the clock is in flight (the paused clock must not jump then).
    pub(crate) fn held(&self) -> bool {
        self.holds.load(Ordering::Acquire) > 0
    }
}

/// Held by an op that completes without anything outside the process (a file op, a
/// `spawn_blocking` closure): while one is alive, the loop waits for it instead of moving the
/// paused clock to the next timer, so a timeout does not beat a file read on a paused clock.
#[derive(Debug)]
pub(crate) struct ClockHold(Arc<AtomicUsize>);

impl ClockHold {
    /// A hold on the running loop's clock; `None` outside a loop.
    pub(crate) fn new() -> Option<ClockHold> {
        let clock = current()?;
        clock.holds.fetch_add(1, Ordering::AcqRel);
        Some(ClockHold(clock.holds.clone()))
    }
}

impl Drop for ClockHold {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The running loop's clock, or a panic naming `what` that says where to call it.
#[track_caller]
fn running(what: &str) -> Rc<Clock> {
    current().unwrap_or_else(|| {
        panic!(
            "{what} was called outside a running ringloop event loop: call it inside a future \
             the loop runs (EventLoop::run_until_complete, ringloop::run, #[ringloop::test]), or \
             build the loop with Builder::start_paused(true)"
        )
    })
}

/// Pauses the running loop's clock (tokio's `time::pause`): [`Instant::now`] stops, and timers
/// only fire when the clock is moved, by [`advance`] or by the loop itself, which moves it to the
/// next timer's deadline whenever no task is ready and a look at I/O found nothing. A test of
/// timeouts and retries then takes no real time. Pausing a paused clock does nothing.
///
/// # Panics
///
/// Panics outside a running ringloop event loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::time::{self, Instant};
///
/// ringloop::run(async {
///     time::pause();
///     let start = Instant::now();
///     let real = std::time::Instant::now();
///     time::sleep(Duration::from_secs(3600)).await;
///     assert_eq!(start.elapsed(), Duration::from_secs(3600));
///     assert!(real.elapsed() < Duration::from_secs(60));
/// });
/// ```
#[track_caller]
pub fn pause() {
    running("ringloop::time::pause()").pause();
}

/// Lets the running loop's clock go on from where it stands (it does not catch up with the time
/// that passed while it was paused). Resuming a running clock does nothing.
///
/// # Panics
///
/// Panics outside a running ringloop event loop.
#[track_caller]
pub fn resume() {
    running("ringloop::time::resume()").resume();
}

/// Moves the paused clock forward by `duration` at once, then yields so that the timers now due
/// (and the tasks they wake) run before this future completes. Timers due at several points
/// within `duration` all fire in this one step, in deadline order; an [`Interval`] that missed
/// ticks skips them as it would on a loop that fell behind.
///
/// [`Interval`]: crate::time::Interval
///
/// Cancel-safe: dropped after its first poll, the clock has moved by the whole `duration`;
/// dropped before, it has not moved.
///
/// # Panics
///
/// The future panics outside a running loop, and when the clock is not paused (call [`pause`]
/// first, or build the loop with [`Builder::start_paused`](crate::Builder::start_paused)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::time;
///
/// ringloop::run(async {
///     time::pause();
///     let start = time::Instant::now();
///     time::advance(Duration::from_secs(5)).await;
///     assert_eq!(start.elapsed(), Duration::from_secs(5));
/// });
/// ```
pub async fn advance(duration: Duration) {
    let clock = running("ringloop::time::advance()");
    if !clock.advance(duration) {
        if clock.is_paused() {
            panic!("ringloop::time::advance({duration:?}) overflows the clock");
        }
        panic!(
            "ringloop::time::advance() needs a paused clock: call ringloop::time::pause() first, \
             or build the loop with Builder::start_paused(true)"
        );
    }
    drop(clock);
    YieldOnce(false).await;
}

/// Pending once, woken behind what the loop's next look at I/O and timers wakes.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        if !crate::coop::defer_yield(cx.waker()) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// A point in time on the loop's clock: what [`Instant::now`] returns, what the timers take and
/// give back. It is a [`std::time::Instant`] underneath ([`from_std`](Instant::from_std) and
/// [`into_std`](Instant::into_std) convert without changing the value), so while the clock was
/// never paused the two agree; once a test paused and advanced it, only this one follows the
/// loop's time.
///
/// Outside a loop (on another thread, say) `now()` reads the system's clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::time::Instant;
///
/// ringloop::run(async {
///     let start = Instant::now();
///     ringloop::time::sleep(Duration::from_millis(2)).await;
///     assert!(start.elapsed() >= Duration::from_millis(2));
///     assert!(Instant::now() > start + Duration::from_millis(1));
/// });
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(std::time::Instant);

impl Instant {
    /// The time on the running loop's clock (the system's monotonic clock outside a loop).
    pub fn now() -> Instant {
        let on_loop = CURRENT
            .try_with(|c| c.try_borrow().ok()?.as_ref().map(|clock| clock.now()))
            .ok()
            .flatten();
        Instant(on_loop.unwrap_or_else(std::time::Instant::now))
    }

    /// The same instant as a `std::time::Instant`.
    pub fn from_std(std: std::time::Instant) -> Instant {
        Instant(std)
    }

    /// This instant as a `std::time::Instant`.
    pub fn into_std(self) -> std::time::Instant {
        self.0
    }

    /// How much later than `earlier` this is; zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// How much later than `earlier` this is, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.0.checked_duration_since(earlier.0)
    }

    /// How much later than `earlier` this is; zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// How much time passed on the loop's clock since this instant.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(*self)
    }

    /// `self + duration`, or `None` if that does not fit.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        self.0.checked_add(duration).map(Instant)
    }

    /// `self - duration`, or `None` if that does not fit.
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        self.0.checked_sub(duration).map(Instant)
    }
}

impl From<std::time::Instant> for Instant {
    fn from(std: std::time::Instant) -> Instant {
        Instant(std)
    }
}

impl From<Instant> for std::time::Instant {
    fn from(i: Instant) -> std::time::Instant {
        i.0
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// Panics on overflow, as `std::time::Instant` does; see [`Instant::checked_add`].
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0 + rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        self.0 += rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// Panics on overflow, as `std::time::Instant` does; see [`Instant::checked_sub`].
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0 - rhs)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        self.0 -= rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// As [`duration_since`](Instant::duration_since): zero if `rhs` is later.
    fn sub(self, rhs: Instant) -> Duration {
        self.duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
