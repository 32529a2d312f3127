//! `Condition`: asyncio's condition variable for the tasks of one loop.

use std::cell::RefCell;
use std::fmt;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::lock::{Lock, LockGuard};
use super::semaphore::{Acquire, SemCore};
use super::wait_list::WaitList;

/// asyncio's `Condition`: a [`Lock`] and a list of tasks waiting to be told that something
/// changed.
///
/// A task takes the lock ([`lock`](Condition::lock)), looks at the shared state and, if it must
/// wait, hands its guard to [`wait`](Condition::wait), which unlocks, waits for a
/// [`notify`](Condition::notify), and locks again before it returns the guard.
/// [`wait_for`](Condition::wait_for) loops until a predicate holds. Waiters are notified in the
/// order they started waiting. A waiter dropped after it was notified (before it got the lock
/// back) passes its notification to the next waiter, so `notify(1)` is never lost; that waiter
/// may then find nothing changed, which the condition-variable protocol allows: check the state
/// again after each wait (`wait_for` does).
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use ringloop::sync::Condition;
///
/// ringloop::run(async {
///     let cond = Rc::new(Condition::new());
///     let ready = Rc::new(Cell::new(false));
///     let waiter = {
///         let (cond, ready) = (cond.clone(), ready.clone());
///         ringloop::spawn(async move {
///             let guard = cond.lock().await;
///             let _guard = cond.wait_for(guard, || ready.get()).await;
///             "saw it"
///         })
///     };
///     ringloop::yield_now().await; // the waiter now waits
///     {
///         let _guard = cond.lock().await;
///         ready.set(true);
///         cond.notify_all();
///     }
///     assert_eq!(waiter.await.unwrap(), "saw it");
/// });
/// ```
pub struct Condition {
    lock: Lock,
    waiters: RefCell<WaitList>,
}

impl Condition {
    /// A condition with a lock of its own, unlocked.
    pub const fn new() -> Condition {
        Condition {
            lock: Lock::new(),
            waiters: RefCell::new(WaitList::new()),
        }
    }

    /// Takes the condition's lock, as [`Lock::lock`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = ringloop::sync::Condition::new();
    /// ringloop::run(async {
    ///     let _guard = cond.lock().await;
    ///     assert!(cond.locked());
    /// });
    /// ```
    #[inline]
    pub fn lock(&self) -> impl Future<Output = LockGuard<'_>> + '_ {
        self.lock.lock()
    }

    /// Whether the condition's lock is held.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = ringloop::sync::Condition::new();
    /// assert!(!cond.locked());
    /// ```
    #[inline]
    pub fn locked(&self) -> bool {
        self.lock.locked()
    }

    /// Unlocks `guard`'s lock, waits for a [`notify`](Condition::notify) or
    /// [`notify_all`](Condition::notify_all), locks again and returns the guard.
    ///
    /// The guard normally comes from [`lock`](Condition::lock); a guard of another [`Lock`]
    /// works too, and that lock is the one released and taken again.
    ///
    /// Cancel-safe: dropped, the future leaves the lock unlocked (the guard went into it), and
    /// a notification it had received goes to the next waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use ringloop::sync::Condition;
    ///
    /// ringloop::run(async {
    ///     let cond = Rc::new(Condition::new());
    ///     let c = cond.clone();
    ///     let waiter = ringloop::spawn(async move {
    ///         let guard = c.lock().await;
    ///         let guard = c.wait(guard).await; // the lock is free while it waits
    ///         drop(guard);
    ///     });
    ///     ringloop::yield_now().await;
    ///     assert!(!cond.locked());
    ///     cond.notify(1);
    ///     waiter.await.unwrap();
    /// });
    /// ```
    pub fn wait<'a>(&'a self, guard: LockGuard<'a>) -> impl Future<Output = LockGuard<'a>> + 'a {
        CondWait {
            cond: self,
            lock: guard.core(),
            phase: Phase::Start(guard),
        }
    }

    /// Waits (as [`wait`](Condition::wait), as often as needed) until `predicate` returns
    /// true; checks it first, with the lock held, and after each wake-up. Returns the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use ringloop::sync::Condition;
    ///
    /// ringloop::run(async {
    ///     let cond = Rc::new(Condition::new());
    ///     let count = Rc::new(Cell::new(0));
    ///     let (c, n) = (cond.clone(), count.clone());
    ///     let waiter = ringloop::spawn(async move {
    ///         let guard = c.lock().await;
    ///         let _guard = c.wait_for(guard, || n.get() >= 3).await;
    ///         n.get()
    ///     });
    ///     for _ in 0..3 {
    ///         ringloop::yield_now().await;
    ///         count.set(count.get() + 1);
    ///         cond.notify_all();
    ///     }
    ///     assert_eq!(waiter.await.unwrap(), 3);
    /// });
    /// ```
    pub async fn wait_for<'a>(
        &'a self,
        mut guard: LockGuard<'a>,
        mut predicate: impl FnMut() -> bool,
    ) -> LockGuard<'a> {
        while !predicate() {
            guard = self.wait(guard).await;
        }
        guard
    }

    /// Wakes up to `n` waiters, the longest waiting first. Each takes the lock in turn before
    /// its `wait` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = ringloop::sync::Condition::new();
    /// cond.notify(1); // nobody waits: nothing happens, nothing is remembered
    /// ```
    #[inline]
    pub fn notify(&self, n: usize) {
        for _ in 0..n {
            let waker = self.waiters.borrow_mut().notify_first(0);
            match waker {
                Some(w) => w.wake(),
                None => break,
            }
        }
    }

    /// Wakes every task waiting now.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = ringloop::sync::Condition::new();
    /// cond.notify_all();
    /// ```
    pub fn notify_all(&self) {
        let n = self.waiters.borrow().waiting();
        self.notify(n);
    }
}

impl Default for Condition {
    fn default() -> Condition {
        Condition::new()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &self.locked())
            .field("waiting", &self.waiters.borrow().waiting())
            .finish()
    }
}

enum Phase<'a> {
    /// Not polled yet: holds the lock.
    Start(LockGuard<'a>),
    /// Registered, the lock released.
    Waiting(usize),
    /// Notified, taking the lock again.
    Relocking(Acquire<'a>),
    Done,
}

struct CondWait<'a> {
    cond: &'a Condition,
    lock: &'a SemCore,
    phase: Phase<'a>,
}

impl<'a> Future for CondWait<'a> {
    type Output = LockGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard<'a>> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Start(_) => {
                    let key = this.cond.waiters.borrow_mut().push(cx.waker());
                    // Registered first, then unlocked: a notify from the task the unlock lets
                    // in reaches this waiter.
                    if let Phase::Start(guard) = mem::replace(&mut this.phase, Phase::Waiting(key))
                    {
                        drop(guard);
                    }
                    return Poll::Pending;
                }
                Phase::Waiting(key) => {
                    let seen = this.cond.waiters.borrow_mut().poll(*key, cx.waker());
                    if seen.is_pending() {
                        return Poll::Pending;
                    }
                    this.phase = Phase::Relocking(this.lock.acquire());
                }
                Phase::Relocking(acquire) => {
                    if Pin::new(acquire).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.phase = Phase::Done;
                    return Poll::Ready(LockGuard::new(this.lock));
                }
                Phase::Done => return Poll::Pending,
            }
        }
    }
}

impl Drop for CondWait<'_> {
    fn drop(&mut self) {
        let pass_on = match self.phase {
            Phase::Waiting(key) => self.cond.waiters.borrow_mut().remove(key),
            Phase::Relocking(_) => true,
            Phase::Start(_) | Phase::Done => false,
        };
        if pass_on {
            self.cond.notify(1);
        }
    }
}
