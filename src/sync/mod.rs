//! asyncio's synchronization primitives, for the tasks of one loop.
//!
//! | asyncio | ringloop | waits in |
//! |---|---|---|
//! | `asyncio.Queue` | [`Queue`] | [`put`](Queue::put) (while full), [`get`](Queue::get) (while empty), [`join`](Queue::join) |
//! | `asyncio.PriorityQueue` | [`PriorityQueue`] (smallest first) | the same |
//! | `asyncio.LifoQueue` | [`LifoQueue`] | the same |
//! | `asyncio.Event` | [`Event`] | [`wait`](Event::wait) |
//! | `asyncio.Lock` | [`Lock`], held by a [`LockGuard`] | [`lock`](Lock::lock) |
//! | `asyncio.Semaphore` | [`Semaphore`], [`SemaphorePermit`] | [`acquire`](Semaphore::acquire) |
//! | `asyncio.BoundedSemaphore` | [`BoundedSemaphore`] | [`acquire`](BoundedSemaphore::acquire) |
//! | `asyncio.Condition` | [`Condition`] | [`lock`](Condition::lock), [`wait`](Condition::wait), [`wait_for`](Condition::wait_for) |
//! | `asyncio.Barrier` | [`Barrier`] | [`wait`](Barrier::wait) |
//!
//! All methods take `&self`: share a primitive between tasks with an `Rc` (or borrow it from
//! a future that outlives the tasks using it). They serve the tasks of **one loop**: they are
//! `!Send` and `!Sync`, count with plain integers, and keep their waiters in a list without
//! atomics or locks, which is what makes them cheaper than `tokio::sync` here. For what crosses
//! threads or loops (a [`LoopPool`](crate::LoopPool), [`spawn_blocking`](crate::spawn_blocking),
//! another runtime), `tokio::sync` and `futures::channel` work on ringloop as they are: their
//! futures wake whatever waker polls them.
//!
//! ```compile_fail
//! // A primitive stays on its loop's thread.
//! fn send<T: Send>(_: T) {}
//! send(ringloop::sync::Lock::new());
//! ```
//!
//! Waiters are served first come, first served, as asyncio does: what is freed (an item, a slot,
//! a permit, the lock) goes to the task that has waited longest, and a task that comes later
//! cannot take it first, not even with a `try_`/`_nowait` call. Every future here is
//! cancel-safe: dropped at any point (a [`timeout`](crate::time::timeout), an aborted task), a
//! waiter takes nothing with it, and one that had been woken for something but had not run yet
//! passes it on to the next waiter, so no item, permit or wake-up is ever lost.
//!
//! # Examples
//!
//! A pool of three workers fed by a bounded queue, as asyncio's documentation builds it:
//!
//! ```
//! use std::rc::Rc;
//! use ringloop::sync::Queue;
//!
//! ringloop::run(async {
//!     let jobs = Rc::new(Queue::new(4));
//!     let workers: Vec<_> = (0..3)
//!         .map(|_| {
//!             let jobs = jobs.clone();
//!             ringloop::spawn(async move {
//!                 loop {
//!                     let n: u64 = jobs.get().await;
//!                     ringloop::yield_now().await; // the work
//!                     let _ = n * n;
//!                     jobs.task_done().unwrap();
//!                 }
//!             })
//!         })
//!         .collect();
//!     for n in 0..20 {
//!         jobs.put(n).await;
//!     }
//!     jobs.join().await; // every job was processed
//!     for w in workers {
//!         w.abort();
//!     }
//! });
//! ```

mod barrier;
mod condition;
mod event;
mod lock;
mod queue;
mod queue_core;
mod semaphore;
mod shim;
mod wait_list;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use queue::{LifoQueue, PriorityQueue, Queue};
pub use queue_core::{QueueEmpty, QueueFull, TaskDoneError};
pub use semaphore::{BoundedSemaphore, ReleaseError, Semaphore, SemaphorePermit};

// The crate's cross-thread shim (std's or loom's atomics, locks and threads): see `shim`.
pub(crate) use shim::{
    AtomicBool, AtomicI32, AtomicU32, Condvar, Mutex, MutexGuard, Ordering, spin_loop, thread,
};
