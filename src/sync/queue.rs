//! `Queue`, `PriorityQueue` and `LifoQueue`: the public faces of `queue_core::Core`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

use super::queue_core::{Core, QueueEmpty, QueueFull, TaskDoneError};

/// The methods the three queues share, with their docs. `$first` names the item a `get` takes;
/// the examples use `i32` items, which every queue takes.
macro_rules! queue_methods {
    ($name:ident, [$($bound:tt)*], $first:literal) => {
        impl<T $($bound)*> $name<T> {
            /// A queue holding at most `maxsize` items; 0 means no limit (as asyncio).
            pub fn new(maxsize: usize) -> $name<T> {
                $name { core: Core::new(maxsize) }
            }

            /// Puts `item`, waiting for a free slot while the queue is full. Putters waiting
            /// for a slot get one in the order they came.
            ///
            /// Cancel-safe: dropped before it completes, the future has put nothing (the item
            /// is dropped with it), and a slot that had been freed for it goes to the next
            /// putter.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("use ringloop::sync::", stringify!($name), ";")]
            ///
            /// ringloop::run(async {
            #[doc = concat!("    let q = ", stringify!($name), "::new(1);")]
            ///     q.put(7).await;
            ///     assert!(q.full());
            ///     assert_eq!(q.get().await, 7);
            /// });
            /// ```
            pub fn put(&self, item: T) -> impl Future<Output = ()> + '_ {
                self.core.put(item)
            }

            #[doc = concat!("Takes the ", $first, " item, waiting while there is none.")]
            /// Getters waiting for an item get one in the order they came.
            ///
            /// Cancel-safe: dropped before it completes, the future has taken nothing, and an
            /// item it had been woken for stays in the queue for the next getter.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::rc::Rc;
            #[doc = concat!("use ringloop::sync::", stringify!($name), ";")]
            ///
            /// ringloop::run(async {
            #[doc = concat!("    let q = Rc::new(", stringify!($name), "::new(0));")]
            ///     let q2 = q.clone();
            ///     let consumer = ringloop::spawn(async move { q2.get().await });
            ///     q.put(5).await;
            ///     assert_eq!(consumer.await.unwrap(), 5);
            /// });
            /// ```
            pub fn get(&self) -> impl Future<Output = T> + '_ {
                self.core.get()
            }

            /// Puts `item` if a slot is free now (never ahead of a putter that waits).
            ///
            /// # Errors
            ///
            /// [`QueueFull`] with the item if the queue is full.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let q = ringloop::sync::", stringify!($name), "::new(1);")]
            /// q.put_nowait(1).unwrap();
            /// assert_eq!(q.put_nowait(2).unwrap_err().into_inner(), 2);
            /// ```
            pub fn put_nowait(&self, item: T) -> Result<(), QueueFull<T>> {
                self.core.put_nowait(item)
            }

            #[doc = concat!("Takes the ", $first, " item if there is one now.")]
            ///
            /// An item already promised to a waiting [`get`](Self::get) (put while it waited,
            /// and it has not run yet) is not there to take.
            ///
            /// # Errors
            ///
            /// [`QueueEmpty`] if there is no item to take.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let q = ringloop::sync::", stringify!($name), "::new(0);")]
            /// assert!(q.get_nowait().is_err());
            /// q.put_nowait(1).unwrap();
            /// assert_eq!(q.get_nowait(), Ok(1));
            /// ```
            pub fn get_nowait(&self) -> Result<T, QueueEmpty> {
                self.core.get_nowait()
            }

            /// Marks one item taken from the queue as processed, for [`join`](Self::join).
            ///
            /// # Errors
            ///
            /// [`TaskDoneError`] if every item put was marked done already (asyncio's
            /// `ValueError`); nothing changes then.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let q = ringloop::sync::", stringify!($name), "::new(0);")]
            /// q.put_nowait(1).unwrap();
            /// let _item = q.get_nowait().unwrap();
            /// assert!(q.task_done().is_ok());
            /// assert!(q.task_done().is_err());
            /// ```
            pub fn task_done(&self) -> Result<(), TaskDoneError> {
                self.core.task_done()
            }

            /// Waits until every item put has been marked done with
            /// [`task_done`](Self::task_done) (at once if it has). Cancel-safe.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::rc::Rc;
            #[doc = concat!("use ringloop::sync::", stringify!($name), ";")]
            ///
            /// ringloop::run(async {
            #[doc = concat!("    let q = Rc::new(", stringify!($name), "::new(0));")]
            ///     let q2 = q.clone();
            ///     ringloop::spawn(async move {
            ///         loop {
            ///             let _job = q2.get().await;
            ///             q2.task_done().unwrap();
            ///         }
            ///     });
            ///     for job in 0..3 {
            ///         q.put(job).await;
            ///     }
            ///     q.join().await; // the worker has processed all three
            /// });
            /// ```
            pub fn join(&self) -> impl Future<Output = ()> + '_ {
                self.core.join()
            }

            /// How many items a `get` can take now (an item already promised to a waiting
            /// `get` is not counted).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let q = ringloop::sync::", stringify!($name), "::new(0);")]
            /// q.put_nowait(1).unwrap();
            /// assert_eq!(q.qsize(), 1);
            /// ```
            pub fn qsize(&self) -> usize {
                self.core.qsize()
            }

            /// Whether [`qsize`](Self::qsize) is 0.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("assert!(ringloop::sync::", stringify!($name), "::<i32>::new(0).empty());")]
            /// ```
            pub fn empty(&self) -> bool {
                self.core.qsize() == 0
            }

            /// Whether a `put` would wait: `maxsize` items are in the queue or promised to
            /// waiting putters. Never true for an unbounded queue.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let q = ringloop::sync::", stringify!($name), "::new(1);")]
            /// assert!(!q.full());
            /// q.put_nowait(1).unwrap();
            /// assert!(q.full());
            /// ```
            pub fn full(&self) -> bool {
                self.core.full()
            }

            /// The most items the queue holds; 0 means no limit.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("assert_eq!(ringloop::sync::", stringify!($name), "::<i32>::new(8).maxsize(), 8);")]
            /// ```
            pub fn maxsize(&self) -> usize {
                self.core.maxsize()
            }
        }

        impl<T $($bound)*> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt(stringify!($name), f)
            }
        }
    };
}

/// asyncio's `Queue`: first in, first out, between the tasks of one loop.
///
/// `Queue::new(maxsize)` holds at most `maxsize` items (0: no limit): [`put`](Queue::put) waits
/// while it is full, [`get`](Queue::get) while it is empty, each in the order the tasks came.
/// [`task_done`](Queue::task_done) and [`join`](Queue::join) let a producer wait until every
/// item was processed. A waiter dropped at any point (a timeout, an aborted task) loses no item
/// and no slot: what it had been woken for goes to the next waiter.
///
/// # Examples
///
/// A producer and a consumer with a bounded queue between them:
///
/// ```
/// use std::rc::Rc;
/// use ringloop::sync::Queue;
///
/// ringloop::run(async {
///     let q = Rc::new(Queue::new(2));
///     let consumer = {
///         let q = q.clone();
///         ringloop::spawn(async move {
///             let mut sum = 0;
///             while let Some(n) = q.get().await {
///                 sum += n;
///             }
///             sum
///         })
///     };
///     for n in 1..=10 {
///         q.put(Some(n)).await; // waits while two items are queued
///     }
///     q.put(None).await;
///     assert_eq!(consumer.await.unwrap(), 55);
/// });
/// ```
pub struct Queue<T> {
    core: Core<VecDeque<T>>,
}

queue_methods!(Queue, [], "oldest");

/// asyncio's `PriorityQueue`: smallest item first (by `Ord`), between the tasks of one loop.
///
/// The same methods and promises as [`Queue`]; a `get` takes the smallest item in the queue when
/// it runs. Put `(priority, item)` tuples to order by a priority.
///
/// # Examples
///
/// ```
/// let q = ringloop::sync::PriorityQueue::new(0);
/// q.put_nowait((2, "later")).unwrap();
/// q.put_nowait((1, "first")).unwrap();
/// assert_eq!(q.get_nowait(), Ok((1, "first")));
/// ```
pub struct PriorityQueue<T: Ord> {
    core: Core<BinaryHeap<Reverse<T>>>,
}

queue_methods!(PriorityQueue, [: Ord], "smallest");

/// asyncio's `LifoQueue`: last in, first out, between the tasks of one loop.
///
/// The same methods and promises as [`Queue`]; a `get` takes the newest item.
///
/// # Examples
///
/// ```
/// let q = ringloop::sync::LifoQueue::new(0);
/// q.put_nowait(1).unwrap();
/// q.put_nowait(2).unwrap();
/// assert_eq!(q.get_nowait(), Ok(2));
/// ```
pub struct LifoQueue<T> {
    core: Core<Vec<T>>,
}

queue_methods!(LifoQueue, [], "newest");
