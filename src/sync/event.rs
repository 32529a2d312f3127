//! `Event`: asyncio's flag that tasks of one loop wait on.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::wait_list::{NIL, WaitList};

/// asyncio's `Event`: a flag, initially clear; [`wait`](Event::wait) returns once it is set.
///
/// [`set`](Event::set) wakes every task waiting and lets later waits return at once, until
/// [`clear`](Event::clear). A task woken by `set` returns from `wait` even if the flag was
/// cleared again before it ran (as asyncio's).
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use ringloop::sync::Event;
///
/// ringloop::run(async {
///     let started = Rc::new(Event::new());
///     let s = started.clone();
///     let worker = ringloop::spawn(async move {
///         s.set();
///         "working"
///     });
///     started.wait().await;
///     assert_eq!(worker.await.unwrap(), "working");
/// });
/// ```
pub struct Event {
    state: RefCell<EventState>,
}

#[derive(Debug)]
struct EventState {
    set: bool,
    waiters: WaitList,
}

impl Event {
    /// A clear event.
    pub const fn new() -> Event {
        Event {
            state: RefCell::new(EventState {
                set: false,
                waiters: WaitList::new(),
            }),
        }
    }

    /// Sets the flag and wakes every task that waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let ev = ringloop::sync::Event::new();
    /// ev.set();
    /// assert!(ev.is_set());
    /// ```
    #[inline]
    pub fn set(&self) {
        let n = {
            let mut s = self.state.borrow_mut();
            if s.set {
                return;
            }
            s.set = true;
            s.waiters.waiting()
        };
        for _ in 0..n {
            let waker = self.state.borrow_mut().waiters.notify_first(0);
            match waker {
                Some(w) => w.wake(),
                None => break,
            }
        }
    }

    /// Clears the flag: later waits wait for the next [`set`](Event::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let ev = ringloop::sync::Event::new();
    /// ev.set();
    /// ev.clear();
    /// assert!(!ev.is_set());
    /// ```
    #[inline]
    pub fn clear(&self) {
        self.state.borrow_mut().set = false;
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ringloop::sync::Event::new().is_set());
    /// ```
    #[inline]
    pub fn is_set(&self) -> bool {
        self.state.borrow().set
    }

    /// Returns once the flag is set (at once if it is). Cancel-safe.
    ///
    /// # Examples
    ///
    /// ```
    /// let ev = ringloop::sync::Event::new();
    /// ev.set();
    /// ringloop::run(async { ev.wait().await });
    /// ```
    #[inline]
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        EventWait {
            event: self,
            key: NIL,
        }
    }
}

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("Event")
            .field("set", &s.set)
            .field("waiting", &s.waiters.waiting())
            .finish()
    }
}

struct EventWait<'a> {
    event: &'a Event,
    key: usize,
}

impl Future for EventWait<'_> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut s = this.event.state.borrow_mut();
        if this.key == NIL {
            if s.set {
                return Poll::Ready(());
            }
            this.key = s.waiters.push(cx.waker());
            return Poll::Pending;
        }
        let seen = s.waiters.poll(this.key, cx.waker());
        if seen.is_ready() {
            this.key = NIL;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for EventWait<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.key != NIL {
            // A wake it had not seen yet reached every other waiter too: nothing to pass on.
            self.event.state.borrow_mut().waiters.remove(self.key);
        }
    }
}
