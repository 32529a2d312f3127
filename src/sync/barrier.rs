//! `Barrier`: asyncio's meeting point for a fixed number of tasks of one loop.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::wait_list::{NIL, WaitList};

/// asyncio's `Barrier`: [`wait`](Barrier::wait) returns once `parties` tasks wait, then the
/// barrier is ready for the next round.
///
/// Each `wait` of a round returns a distinct index in `0..parties`, in the order the tasks
/// arrived (the last to arrive, which releases the others, gets `parties - 1`). A task dropped
/// while it waits leaves the round: it no longer counts towards `parties`.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use ringloop::sync::Barrier;
///
/// ringloop::run(async {
///     let barrier = Rc::new(Barrier::new(3));
///     let tasks: Vec<_> = (0..3)
///         .map(|_| {
///             let b = barrier.clone();
///             ringloop::spawn(async move { b.wait().await })
///         })
///         .collect();
///     let mut indices = Vec::new();
///     for t in tasks {
///         indices.push(t.await.unwrap());
///     }
///     indices.sort();
///     assert_eq!(indices, [0, 1, 2]);
/// });
/// ```
pub struct Barrier {
    parties: usize,
    waiters: RefCell<WaitList>,
}

impl Barrier {
    /// A barrier for `parties` tasks (0 is taken as 1: every `wait` returns at once).
    pub const fn new(parties: usize) -> Barrier {
        Barrier {
            parties: if parties == 0 { 1 } else { parties },
            waiters: RefCell::new(WaitList::new()),
        }
    }

    /// Waits until `parties` tasks wait, and returns this task's index in the round. Cancel-safe:
    /// dropped before the round is complete, the task leaves it.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = ringloop::sync::Barrier::new(1);
    /// ringloop::run(async {
    ///     assert_eq!(b.wait().await, 0);
    ///     assert_eq!(b.wait().await, 0); // a new round
    /// });
    /// ```
    #[inline]
    pub fn wait(&self) -> impl Future<Output = usize> + '_ {
        BarrierWait {
            barrier: self,
            key: NIL,
        }
    }

    /// How many tasks the barrier lets through together.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ringloop::sync::Barrier::new(4).parties(), 4);
    /// ```
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many tasks wait in the current round.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ringloop::sync::Barrier::new(4).n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        self.waiters.borrow().waiting()
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .finish()
    }
}

struct BarrierWait<'a> {
    barrier: &'a Barrier,
    key: usize,
}

impl Future for BarrierWait<'_> {
    type Output = usize;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = self.get_mut();
        let b = this.barrier;
        if this.key != NIL {
            let seen = b.waiters.borrow_mut().poll(this.key, cx.waker());
            if seen.is_ready() {
                this.key = NIL;
            }
            return seen;
        }
        let arrived = b.waiters.borrow().waiting();
        if arrived + 1 < b.parties {
            this.key = b.waiters.borrow_mut().push(cx.waker());
            return Poll::Pending;
        }
        // The last of the round: release the others, in the order they came.
        for index in 0..arrived {
            let waker = b.waiters.borrow_mut().notify_first(index);
            match waker {
                Some(w) => w.wake(),
                None => break,
            }
        }
        Poll::Ready(b.parties - 1)
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        if self.key != NIL {
            // Released already: the round is over, nobody waits for this task.
            self.barrier.waiters.borrow_mut().remove(self.key);
        }
    }
}
