//! ringloop: a single-threaded async event loop for Linux servers, with two interchangeable
//! backends behind one API.
//!
//! | backend | model | how it does I/O |
//! |---|---|---|
//! | [`Backend::Uring`] | completion ("proactor") | submits ops to io_uring; a completion wakes the future |
//! | [`Backend::Epoll`] | readiness ("selector") | tries the syscall; on `EAGAIN` waits for epoll readiness, then retries |
//!
//! A future is the coroutine; [`EventLoop::run_until_complete`] runs it, [`spawn`] makes a task,
//! [`wait`] returns done and pending tasks, [`gather`] collects outputs in order, and
//! [`run`] builds a loop, runs a future and closes the loop.
//!
//! ```
//! use std::time::Duration;
//!
//! let mut lp = ringloop::EventLoop::new().expect("cannot build a loop");
//! let out = lp.run_until_complete(async {
//!     let task = ringloop::spawn(async {
//!         ringloop::time::sleep(Duration::from_millis(1)).await;
//!         "in coroutine"
//!     });
//!     task.await.unwrap()
//! });
//! assert_eq!(out, "in coroutine");
//! lp.close();
//! ```
//!
//! # Choosing the backend
//!
//! 1. [`Builder::backend`] wins.
//! 2. Else `RINGLOOP_BACKEND`: `auto` (default), `uring` (also `io_uring`, `proactor`), `epoll`
//!    (also `selector`). Any other value is an error that names the accepted values.
//! 3. `auto` probes io_uring once per process. `ENOSYS`, `EPERM` (seccomp, as under Docker's
//!    default profile), `kernel.io_uring_disabled` and a missing opcode fall back to epoll;
//!    [`EventLoop::backend`] says which runs and [`EventLoop::fallback_reason`] says why.
//! 4. Asking for `uring` where it cannot run is an error with the kernel's reason, never a silent
//!    fallback. `ENOMEM` at ring setup is an error saying what to raise.
//!
//! # Buffers
//!
//! The kernel owns a buffer while an io_uring op runs, so I/O methods take buffers by value and
//! give them back: `let (res, buf) = stream.read(buf).await;`. See [`buf`].
//!
//! # Pooled receives
//!
//! `stream.recv_pooled().await` returns a [`buf::PooledBuf`] from the loop's receive pool
//! ([`Builder::recv_pool`]): a connection holds a buffer only from the moment data arrives until
//! the `PooledBuf` is dropped, so idle connections cost no buffer memory. On io_uring the kernel
//! picks the buffer from a provided buffer ring, fed by one multishot receive per stream.
//!
//! # Cancellation
//!
//! Dropping an I/O future cancels its op. On io_uring the op's memory stays with the loop until
//! the kernel confirms; an fd a cancelled accept produced is closed (a multishot accept keeps it
//! for the next `accept`); bytes a cancelled stream read
//! received are returned by the next read on that stream. Closing (or dropping) a loop cancels
//! every task and op and waits for the kernel before freeing any buffer.
//!
//! # Tests
//!
//! With the `macros` feature, `#[ringloop::test]` runs an `async fn` test on every backend, each
//! on a fresh loop, and `#[ringloop::main]` runs `async fn main()`. For tests of timeouts and
//! retries, [`time::pause`] (or `#[ringloop::test(start_paused = true)]`) stops the loop's clock:
//! timers then complete as soon as nothing else can run, without waiting for real time.

// Layers (for contributors; not part of the public docs).
//
// Imports between the crate's top-level modules go one way, bottom to top; `python3
// ci/module_graph.py --check` (run by CI) fails on a circle. Each layer keeps what it needs of
// the running loop in a thread-local of its own, which the loop's context sets when it enters:
//
// 1. `sync`, `backend`, `coop`, `faults`, `tokio_rt`: loom switch (`sync::shim`) and the
//    single-loop primitives (which know wakers only as `std::task::Waker`), backend choice and
//    probe, cooperative budget and the yield list, fault injection, tokio-compat's runtime
//    context.
// 2. `blocking`, `stats`, `time`: the blocking pool, the counters, the timer store
//    (`time::current`).
// 3. `buf`: owned buffers, the receive pool, `AlignedBuf`.
// 4. `driver`: uring and epoll drivers, ops' lifecycle, fds, cross-thread wakes
//    (`driver::current`).
// 5. `executor`, `op`: tasks, wakers, the loop's context and `spawn`; the op families.
// 6. `fs`, `io`, `handle`: files and fixed buffers, `AsyncFd`, `LoopHandle`.
// 7. `event_loop`, `net`, `signal`: the loop and its builder, sockets, signals.
// 8. `compat`, `pool`, `process`: ecosystem adapters, the pool of loops, subprocesses.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(feature = "macros")]
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;
mod backend;
mod blocking;
pub mod buf;
pub mod compat;
mod coop;
mod driver;
mod event_loop;
mod executor;
mod faults;
pub mod fs;
mod handle;
pub mod io;
pub mod net;
mod op;
mod pool;
pub mod process;
pub mod signal;
mod stats;
pub mod sync;
pub mod time;
#[cfg(feature = "tokio-compat")]
mod tokio_rt;

pub use backend::{BACKEND_ENV, Backend, ParseBackendError};
pub use event_loop::{
    Builder, DEBUG_ENV, DEFAULT_ZERO_COPY_THRESHOLD, EventLoop, current_backend, current_stats,
    current_task, run,
};
pub use executor::{
    AbortOnDrop, GroupError, JoinError, JoinHandle, JoinSet, MemberError, ReturnWhen, TaskGroup,
    TaskInfo, gather, spawn, spawn_blocking, spawn_named, wait, yield_now,
};
pub use handle::{LoopHandle, RemoteJoinHandle, Shutdown, current_handle};
pub use pool::{LoopContext, LoopPool, PoolBuilder};
pub use stats::{FaultCounts, Stats};

#[cfg(feature = "macros")]
#[doc(inline)]
pub use ringloop_macros::{main, test};
