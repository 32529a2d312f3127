//! `JoinSet`: independent tasks whose outputs are collected as they finish (tokio's `JoinSet`).

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use slab::Slab;

use super::{JoinError, JoinHandle};

/// What the set's tasks tell it: which of them finished, in order, and who waits for that.
#[derive(Default)]
struct Done {
    keys: std::collections::VecDeque<usize>,
    waker: Option<Waker>,
}

/// Pushes its task's key to the set's done list when dropped: when the task's future finishes,
/// panics or is aborted (its future is dropped in each case).
struct Finished {
    key: usize,
    done: Rc<RefCell<Done>>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut done = self.done.borrow_mut();
        done.keys.push_back(self.key);
        if let Some(w) = done.waker.take() {
            crate::blocking::wake_contained(w);
        }
    }
}

/// A set of independent tasks on the current loop whose outputs are collected as they finish
/// (tokio's `JoinSet`); dropping the set aborts every task still in it.
///
/// [`join_next`](JoinSet::join_next) returns results in completion order. The members do not
/// affect each other: a task that panics gives a [`JoinError`] with
/// [`is_panic`](JoinError::is_panic) and the others go on; an aborted task gives one with
/// [`is_cancelled`](JoinError::is_cancelled). For asyncio's semantics (the first failure cancels
/// the rest, and one exit waits for every member and reports every error), use
/// [`TaskGroup`](crate::TaskGroup).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::JoinSet;
///
/// ringloop::run(async {
///     let mut set = JoinSet::new();
///     for ms in [30u64, 10, 20] {
///         set.spawn(async move {
///             ringloop::time::sleep(Duration::from_millis(ms)).await;
///             ms
///         });
///     }
///     let mut order = Vec::new();
///     while let Some(res) = set.join_next().await {
///         order.push(res.unwrap());
///     }
///     assert_eq!(order, [10, 20, 30]);
/// });
/// ```
pub struct JoinSet<T> {
    tasks: Slab<JoinHandle<T>>,
    done: Rc<RefCell<Done>>,
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("tasks", &self.tasks.len())
            .field("finished", &self.done.borrow().keys.len())
            .finish()
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet {
            tasks: Slab::new(),
            done: Rc::default(),
        }
    }
}

impl<T: 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        JoinSet::default()
    }

    /// Spawns `fut` on the current loop as a task of this set.
    ///
    /// # Panics
    ///
    /// Panics if no event loop is running on this thread.
    #[track_caller]
    pub fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = T> + 'static,
    {
        let entry = self.tasks.vacant_entry();
        let finished = Finished {
            key: entry.key(),
            done: self.done.clone(),
        };
        let handle = crate::spawn(async move {
            let _finished = finished; // dropped with the future, however it ends
            fut.await
        });
        entry.insert(handle);
    }

    /// How many tasks are in the set (finished ones count until `join_next` returned them).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the set has no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The output of the next task to finish, in completion order; `None` once the set is
    /// empty.
    ///
    /// Cancel-safe: if the future is dropped, no result is lost; the next call returns it.
    pub fn join_next(&mut self) -> impl Future<Output = Option<Result<T, JoinError>>> + '_ {
        poll_fn(move |cx| {
            loop {
                if self.tasks.is_empty() {
                    return Poll::Ready(None);
                }
                let next = self.done.borrow().keys.front().copied();
                let Some(key) = next else {
                    self.done.borrow_mut().waker = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                let Some(handle) = self.tasks.get_mut(key) else {
                    // Already returned (cannot happen: a key is pushed once per task).
                    self.done.borrow_mut().keys.pop_front();
                    continue;
                };
                // Its future is gone; the result is stored right after, before the loop polls
                // anything else, so this is ready (or wakes us when it is).
                let res = std::task::ready!(Pin::new(handle).poll(cx));
                self.done.borrow_mut().keys.pop_front();
                self.tasks.remove(key);
                return Poll::Ready(Some(res));
            }
        })
    }

    /// Aborts every task in the set; `join_next` then returns their results (cancelled errors
    /// for those that had not finished).
    pub fn abort_all(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }
}
