//! `Lock`: asyncio's mutual exclusion between the tasks of one loop.

use std::fmt;

use super::semaphore::SemCore;

/// asyncio's `Lock`: one task at a time holds it, across `.await`s.
///
/// [`lock`](Lock::lock) waits for the lock and returns a [`LockGuard`] that unlocks it when
/// dropped. Waiting tasks get the lock in the order they asked: an unlock hands it straight to
/// the first waiter, so a task that comes later cannot take it first. A waiter dropped while
/// waiting takes nothing; one dropped after the lock was handed to it passes it to the next.
///
/// The lock guards no data of its own, as asyncio's; keep the data in a `RefCell` next to it
/// and borrow it between `.await`s, or use a lock that owns its data (`tokio::sync::Mutex`
/// works on ringloop too).
///
/// # Examples
///
/// Two tasks each write a whole line, however their writes interleave:
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use ringloop::sync::Lock;
///
/// ringloop::run(async {
///     let lock = Rc::new(Lock::new());
///     let out = Rc::new(RefCell::new(String::new()));
///     let tasks: Vec<_> = ["a", "b"]
///         .into_iter()
///         .map(|name| {
///             let (lock, out) = (lock.clone(), out.clone());
///             ringloop::spawn(async move {
///                 let _guard = lock.lock().await;
///                 out.borrow_mut().push_str(name);
///                 ringloop::yield_now().await; // the other task runs, and waits
///                 out.borrow_mut().push_str(name);
///             })
///         })
///         .collect();
///     for t in tasks {
///         t.await.unwrap();
///     }
///     assert_eq!(*out.borrow(), "aabb");
/// });
/// ```
pub struct Lock {
    core: SemCore,
}

impl Lock {
    /// An unlocked lock.
    pub const fn new() -> Lock {
        Lock {
            core: SemCore::new(1, Some(1)),
        }
    }

    /// Waits for the lock, first come, first served. Cancel-safe: dropping the future takes
    /// nothing, and a lock already handed to it goes to the next waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = ringloop::sync::Lock::new();
    /// ringloop::run(async {
    ///     let guard = lock.lock().await;
    ///     assert!(lock.locked());
    ///     drop(guard);
    ///     assert!(!lock.locked());
    /// });
    /// ```
    #[inline]
    pub fn lock(&self) -> impl Future<Output = LockGuard<'_>> + '_ {
        let acquire = self.core.acquire();
        async move {
            acquire.await;
            LockGuard { core: &self.core }
        }
    }

    /// The lock if it is free now (never ahead of a task that waits: while one waits, the lock
    /// is held).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = ringloop::sync::Lock::new();
    /// let guard = lock.try_lock().unwrap();
    /// assert!(lock.try_lock().is_none());
    /// drop(guard);
    /// assert!(lock.try_lock().is_some());
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        self.core
            .try_acquire()
            .then(|| LockGuard { core: &self.core })
    }

    /// Whether a task holds the lock (or it was handed to a waiter that has not run yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = ringloop::sync::Lock::new();
    /// assert!(!lock.locked());
    /// let _g = lock.try_lock();
    /// assert!(lock.locked());
    /// ```
    #[inline]
    pub fn locked(&self) -> bool {
        self.core.available() == 0
    }
}

impl Default for Lock {
    fn default() -> Lock {
        Lock::new()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.locked())
            .finish()
    }
}

/// A held [`Lock`] (or [`Condition`](super::Condition)'s lock); unlocks it when dropped,
/// handing it to the first waiter.
#[must_use = "the lock is unlocked at once if the guard is not kept"]
pub struct LockGuard<'a> {
    core: &'a SemCore,
}

impl<'a> LockGuard<'a> {
    pub(super) fn new(core: &'a SemCore) -> LockGuard<'a> {
        LockGuard { core }
    }

    /// The lock this guard holds (`Condition::wait` releases and takes it again).
    pub(super) fn core(&self) -> &'a SemCore {
        self.core
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.release();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}
