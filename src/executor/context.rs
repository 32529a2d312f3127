//! The current-loop context: the thread-local "which loop runs here" (`LoopInner`), which the
//! executor's wakers, `spawn`, handles and signals read. Only the loop (`event_loop`) enters it.
//!
//! It names the parts a loop is made of (driver, timers, counters: all in layers below the
//! executor) and calls nothing above it. Entering it also enters the lower layers' own
//! thread-locals (`driver::current`, `time::current`, the yield list in `coop`), so those layers
//! never reach up here.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use crate::driver::{DriverCell, Shared};
use crate::executor::Executor;
use crate::stats::Counters;
use crate::time::TimerStore;

thread_local! {
    static CURRENT: RefCell<Option<Rc<LoopInner>>> = const { RefCell::new(None) };
    /// The running loop's `Shared` and `LoopInner`, as plain pointers for the wake path (a
    /// task woken on its own loop's thread): set and cleared with `CURRENT`, which keeps the
    /// `LoopInner` (and through it the `Shared`) alive meanwhile. A `Cell` of pointers has no
    /// destructor, so reading it costs one load.
    static LOCAL: Cell<(*const Shared, *const LoopInner)> =
        const { Cell::new((std::ptr::null(), std::ptr::null())) };
}

/// Everything a running loop's futures reach through the thread-local context.
pub(crate) struct LoopInner {
    pub(crate) executor: Executor,
    pub(crate) timers: Rc<RefCell<TimerStore>>,
    /// The timers' earliest deadline (`TimerStore::first_cell`), read every turn without a
    /// borrow of the store.
    pub(crate) first_deadline: Rc<Cell<Option<std::time::Instant>>>,
    /// The loop's clock (pausable, for tests).
    pub(crate) clock: Rc<crate::time::Clock>,
    pub(crate) driver: Rc<DriverCell>,
    pub(crate) shared: Arc<Shared>,
    /// The main future's waker state (its remote wakes are taken like a task's).
    pub(crate) main: Arc<crate::executor::waker::TaskWaker>,
    pub(crate) counters: Rc<Counters>,
    pub(crate) scratch_wakers: RefCell<Vec<Waker>>,
    pub(crate) scratch_ids: RefCell<Vec<u64>>,
    /// Task polls since the loop last polled for I/O.
    pub(crate) polls_since_io: Cell<usize>,
    /// Wakers of futures that called `yield_now`: woken after the next look at I/O, timers and
    /// wakes from other threads, never within the same batch of task polls.
    pub(crate) yielded: crate::coop::Yielded,
}

impl LoopInner {
    /// Spawns a task on this loop (as `spawn` does on the running one).
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        spawned_at: &'static std::panic::Location<'static>,
        name: Option<Rc<str>>,
    ) -> crate::JoinHandle<F::Output>
    where
        F: std::future::Future + 'static,
        F::Output: 'static,
    {
        self.executor
            .spawn(future, &self.shared, &self.counters, spawned_at, name)
    }
}

pub(crate) fn current() -> Option<Rc<LoopInner>> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
}

/// On the thread of the loop `shared` belongs to, queues task `id` there if `first()` says it is
/// not queued yet, and returns true; false on any other thread (the caller then goes through the
/// remote queue).
#[inline]
pub(crate) fn schedule_local(shared: &Arc<Shared>, id: u64, first: impl FnOnce() -> bool) -> bool {
    let Ok((running, inner)) = LOCAL.try_with(Cell::get) else {
        return false;
    };
    if !std::ptr::eq(running, Arc::as_ptr(shared)) || inner.is_null() {
        return false;
    }
    if first() {
        // SAFETY: `LOCAL` names the loop entered on this thread, whose `LoopInner` `CURRENT`
        // keeps alive until `Enter`'s drop clears both; the executor is only ever used through
        // shared references and `RefCell`s.
        unsafe { &*inner }.executor.schedule(id);
    }
    true
}

/// Whether the running loop has no task (nor main future) waiting to be polled besides the one
/// being polled now.
pub(crate) fn nothing_else_ready() -> bool {
    // Through `LOCAL` rather than `current()`: no `RefCell` borrow and no `Rc` clone (this runs
    // for every op tried at once).
    let Ok((_, inner)) = LOCAL.try_with(Cell::get) else {
        return false;
    };
    if inner.is_null() {
        return false;
    }
    // SAFETY: as in `schedule_local`: `LOCAL` names the loop entered on this thread, which
    // `CURRENT` keeps alive until `Enter`'s drop clears both.
    !unsafe { &*inner }.executor.has_work()
}

/// The shared (cross-thread) part of the loop running on this thread.
pub(crate) fn current_shared() -> Option<Arc<Shared>> {
    current().map(|inner| inner.shared.clone())
}

/// Marks a loop as running on this thread for as long as it lives (and, with `tokio-compat`, keeps
/// the thread in a tokio runtime context meanwhile).
pub(crate) struct Enter {
    #[cfg(feature = "tokio-compat")]
    _tokio: Option<tokio::runtime::EnterGuard<'static>>,
}

impl Enter {
    fn entered() -> Enter {
        Enter {
            #[cfg(feature = "tokio-compat")]
            _tokio: crate::tokio_rt::enter(),
        }
    }
}

impl Enter {
    pub(crate) fn new(inner: &Rc<LoopInner>) -> Enter {
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_some() {
                drop(c);
                panic!(
                    "ringloop: cannot run an event loop: an event loop is already running on this \
                     thread (nested run_until_complete or run). Spawn the future with \
                     ringloop::spawn and await its JoinHandle instead"
                );
            }
            *c = Some(inner.clone());
        });
        enter_layers(inner);
        Enter::entered()
    }

    /// Like `new`, but if another loop is running just returns `None`.
    pub(crate) fn try_new(inner: &Rc<LoopInner>) -> Option<Enter> {
        CURRENT
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                if c.is_some() {
                    return None;
                }
                *c = Some(inner.clone());
                Some(())
            })
            .ok()
            .flatten()
            .map(|()| {
                enter_layers(inner);
                Enter::entered()
            })
    }
}

/// The layers below keep what they need of the running loop in thread-locals of their own
/// (they do not reach up here): the driver, the timers, the yield list.
fn enter_layers(inner: &LoopInner) {
    LOCAL.with(|l| l.set((Arc::as_ptr(&inner.shared), std::ptr::from_ref(inner))));
    crate::driver::set_current(Some(inner.driver.clone()));
    crate::time::set_current(Some(inner.timers.clone()));
    crate::time::set_current_clock(Some(inner.clock.clone()));
    crate::coop::set_yielded(Some(inner.yielded.clone()));
}

impl Drop for Enter {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| l.set((std::ptr::null(), std::ptr::null())));
        crate::driver::set_current(None);
        crate::time::set_current(None);
        crate::time::set_current_clock(None);
        crate::coop::set_yielded(None);
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = None);
    }
}
