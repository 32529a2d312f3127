//! `Semaphore` and `BoundedSemaphore`, and the permit counting `Lock` is built on.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::wait_list::{NIL, WaitList};

/// A count of permits and the tasks waiting for one. A released permit goes straight to the
/// first waiter (it is *assigned*), so a task that comes later cannot take it first, and
/// `permits > 0` only while nobody waits.
#[derive(Debug)]
pub(super) struct SemCore {
    state: RefCell<SemState>,
}

#[derive(Debug)]
struct SemState {
    /// Free permits.
    permits: usize,
    /// Permits handed to notified waiters that have not run yet.
    assigned: usize,
    /// `BoundedSemaphore`'s initial count: free and assigned permits never exceed it.
    bound: Option<usize>,
    waiters: WaitList,
}

impl SemState {
    /// One permit back: to the first waiter, else to the free count. `None` or the waker of the
    /// waiter that now owns it.
    #[inline]
    fn release_one(&mut self) -> Option<std::task::Waker> {
        match self.waiters.notify_first(0) {
            Some(w) => {
                self.assigned += 1;
                Some(w)
            }
            None => {
                self.permits = self
                    .permits
                    .checked_add(1)
                    .expect("Semaphore::release: the permit count would pass usize::MAX");
                None
            }
        }
    }

    #[inline]
    fn at_bound(&self) -> bool {
        self.bound
            .is_some_and(|b| self.permits + self.assigned >= b)
    }
}

impl SemCore {
    pub(super) const fn new(permits: usize, bound: Option<usize>) -> SemCore {
        SemCore {
            state: RefCell::new(SemState {
                permits,
                assigned: 0,
                bound,
                waiters: WaitList::new(),
            }),
        }
    }

    #[inline]
    pub(super) fn acquire(&self) -> Acquire<'_> {
        Acquire {
            core: self,
            key: NIL,
        }
    }

    #[inline]
    pub(super) fn try_acquire(&self) -> bool {
        let mut s = self.state.borrow_mut();
        if s.permits > 0 {
            s.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Adds a permit, or gives back one that was taken (a permit or a guard dropped); on a
    /// bounded core, `false` (and nothing changes) at the bound: a permit dropped after a
    /// `release` already counted it.
    #[inline]
    pub(super) fn release(&self) -> bool {
        let waker = {
            let mut s = self.state.borrow_mut();
            if s.at_bound() {
                return false;
            }
            s.release_one()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    #[inline]
    pub(super) fn available(&self) -> usize {
        self.state.borrow().permits
    }

    fn waiting(&self) -> usize {
        self.state.borrow().waiters.waiting()
    }
}

/// Waits for a permit; owns one when it returns `Ready`. Dropped after its permit was assigned
/// but before it ran, it hands that permit to the next waiter.
pub(super) struct Acquire<'a> {
    core: &'a SemCore,
    key: usize,
}

impl Future for Acquire<'_> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut s = this.core.state.borrow_mut();
        if this.key == NIL {
            if s.permits > 0 {
                s.permits -= 1;
                return Poll::Ready(());
            }
            this.key = s.waiters.push(cx.waker());
            return Poll::Pending;
        }
        match s.waiters.poll(this.key, cx.waker()) {
            Poll::Ready(_) => {
                this.key = NIL;
                s.assigned -= 1;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Acquire<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.key == NIL {
            return;
        }
        let waker = {
            let mut s = self.core.state.borrow_mut();
            if !s.waiters.remove(self.key) {
                return;
            }
            s.assigned -= 1;
            s.release_one()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// asyncio's `Semaphore`: a count of permits that tasks of one loop take and give back.
///
/// [`acquire`](Semaphore::acquire) waits for a permit and returns a [`SemaphorePermit`], which
/// gives it back when dropped. Waiting tasks get permits in the order they asked. A task dropped
/// while waiting (a timeout, an aborted task) takes nothing, and one dropped after a permit was
/// handed to it but before it ran passes that permit to the next waiter.
///
/// [`release`](Semaphore::release) adds a permit without taking one first, as asyncio's does:
/// the count may grow beyond its start. Use [`BoundedSemaphore`] where that would be a bug.
///
/// # Examples
///
/// At most two downloads at a time:
///
/// ```
/// use std::rc::Rc;
/// use ringloop::sync::Semaphore;
///
/// ringloop::run(async {
///     let sem = Rc::new(Semaphore::new(2));
///     let tasks: Vec<_> = (0..5)
///         .map(|i| {
///             let sem = sem.clone();
///             ringloop::spawn(async move {
///                 let _permit = sem.acquire().await;
///                 ringloop::yield_now().await; // the download
///                 i
///             })
///         })
///         .collect();
///     for t in tasks {
///         t.await.unwrap();
///     }
///     assert_eq!(sem.available_permits(), 2);
/// });
/// ```
pub struct Semaphore {
    core: SemCore,
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Semaphore {
        Semaphore {
            core: SemCore::new(permits, None),
        }
    }

    /// Waits for a permit, first come, first served. Cancel-safe: dropping the future takes
    /// nothing, and a permit already handed to it goes to the next waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::Semaphore::new(1);
    /// ringloop::run(async {
    ///     let permit = sem.acquire().await;
    ///     assert_eq!(sem.available_permits(), 0);
    ///     drop(permit);
    ///     assert_eq!(sem.available_permits(), 1);
    /// });
    /// ```
    #[inline]
    pub fn acquire(&self) -> impl Future<Output = SemaphorePermit<'_>> + '_ {
        let acquire = self.core.acquire();
        async move {
            acquire.await;
            SemaphorePermit { core: &self.core }
        }
    }

    /// A permit if one is free now (never ahead of a task that waits: while one waits, no
    /// permit is free).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::Semaphore::new(1);
    /// let permit = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_none());
    /// drop(permit);
    /// assert!(sem.try_acquire().is_some());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.core
            .try_acquire()
            .then(|| SemaphorePermit { core: &self.core })
    }

    /// Adds a permit (to the first waiter, if one waits), as asyncio's `release()`: the count
    /// may grow past the one the semaphore started with. Pairs with
    /// [`SemaphorePermit::forget`].
    ///
    /// # Panics
    ///
    /// Panics if the count of free permits would pass `usize::MAX` (it never wraps around).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::Semaphore::new(0);
    /// sem.release();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    #[inline]
    pub fn release(&self) {
        self.core.release();
    }

    /// The permits free now (not counting those handed to waiters that have not run yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::Semaphore::new(3);
    /// let _p = sem.try_acquire();
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    #[inline]
    pub fn available_permits(&self) -> usize {
        self.core.available()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.core.available())
            .field("waiting", &self.core.waiting())
            .finish()
    }
}

/// A [`Semaphore`] whose permits never exceed the count it started with, as asyncio's
/// `BoundedSemaphore`: a [`release`](BoundedSemaphore::release) beyond it is an error, where a
/// plain semaphore would grow.
///
/// # Examples
///
/// ```
/// use ringloop::sync::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1);
/// assert!(sem.release().is_err()); // nothing was taken
/// let permit = sem.try_acquire().unwrap();
/// permit.forget(); // keep it taken...
/// assert!(sem.release().is_ok()); // ...and give it back by hand
/// assert_eq!(sem.available_permits(), 1);
/// ```
pub struct BoundedSemaphore {
    core: SemCore,
    bound: usize,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `permits` permits, which is also its bound.
    pub const fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            core: SemCore::new(permits, Some(permits)),
            bound: permits,
        }
    }

    /// Waits for a permit, first come, first served; as [`Semaphore::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::BoundedSemaphore::new(1);
    /// ringloop::run(async {
    ///     let _permit = sem.acquire().await;
    ///     assert_eq!(sem.available_permits(), 0);
    /// });
    /// ```
    #[inline]
    pub fn acquire(&self) -> impl Future<Output = SemaphorePermit<'_>> + '_ {
        let acquire = self.core.acquire();
        async move {
            acquire.await;
            SemaphorePermit { core: &self.core }
        }
    }

    /// A permit if one is free now; as [`Semaphore::try_acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::BoundedSemaphore::new(1);
    /// let _p = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_none());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.core
            .try_acquire()
            .then(|| SemaphorePermit { core: &self.core })
    }

    /// Adds a permit (to the first waiter, if one waits).
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] if the permits would exceed the count the semaphore started with
    /// (asyncio's `ValueError`): a release that no [`forget`](SemaphorePermit::forget) or
    /// lost permit pairs with. Nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::BoundedSemaphore::new(2);
    /// sem.try_acquire().unwrap().forget();
    /// assert!(sem.release().is_ok());
    /// assert!(sem.release().is_err());
    /// ```
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        if self.core.release() {
            Ok(())
        } else {
            Err(ReleaseError { bound: self.bound })
        }
    }

    /// The permits free now (not counting those handed to waiters that have not run yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::BoundedSemaphore::new(2);
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    #[inline]
    pub fn available_permits(&self) -> usize {
        self.core.available()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available_permits", &self.core.available())
            .field("bound", &self.bound)
            .field("waiting", &self.core.waiting())
            .finish()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]: given back when dropped.
///
/// Dropping it after the bounded semaphore was already [`release`](BoundedSemaphore::release)d
/// up to its bound gives nothing back (the permit was counted there already).
#[must_use = "the permit is given back at once if it is not kept"]
pub struct SemaphorePermit<'a> {
    core: &'a SemCore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken: dropped, it gives nothing back. [`Semaphore::release`] adds one
    /// later.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = ringloop::sync::Semaphore::new(1);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.release();
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

/// [`BoundedSemaphore::release`] would go beyond the semaphore's initial count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseError {
    bound: usize,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BoundedSemaphore released too many times: its {} permits are all free already; \
             release() only what a forgotten permit took",
            self.bound
        )
    }
}

impl std::error::Error for ReleaseError {}
