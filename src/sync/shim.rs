//! The synchronisation that threads share, in one place.
//!
//! Every atomic, lock, condition variable and thread that two threads touch is imported from
//! here: std's in a normal build, [loom]'s under `RUSTFLAGS="--cfg ringloop_loom"`, so that the protocols'
//! own code (not a copy of it) runs under the model checker. `ci/loom.sh` runs the models; each
//! sits next to its protocol in a `loom_model` module:
//!
//! | protocol | module | promise |
//! |---|---|---|
//! | a task's `queued` and `remote` flags against wakes from other threads | `executor::waker` | a wake from another thread either queues the task again or is seen by the poll that follows the loop's taking of an earlier one |
//! | remote queue, `has_remote` and `sleeping` against the loop going to sleep | `driver::wake` | a loop never blocks with a remote wake or job queued and no wake on its way |
//! | `RemoteJoinHandle` against completion, `abort` and drop | `handle` | the handle resolves exactly once, to the output or a cancellation, and whoever awaits it is woken |
//! | `Shutdown` | `handle` | every `triggered()` future registered before or after `trigger` completes |
//! | signal slots | `signal` | a handler never writes to a slot's eventfd after the slot was released (so never to its next listener) |
//! | the blocking pool's hand-off | `blocking` | every job runs exactly once, and no job waits while a thread sleeps idle |
//!
//! loom treats `SeqCst` loads and stores as `AcqRel` (it would report false alarms on a
//! store-then-load handshake), so a flag that hands a duty from one thread to another is moved
//! with read-modify-writes on both sides: those are exact under acquire/release, under the model
//! and on the machine alike. `Arc` stays std's: its counting is std's to get right, and wakers
//! need `std::sync::Arc` (`Waker::from`).
//!
//! [loom]: https://docs.rs/loom

#[cfg(ringloop_loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(ringloop_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
#[cfg(ringloop_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(ringloop_loom)]
pub(crate) use loom::thread;

#[cfg(not(ringloop_loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(ringloop_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
#[cfg(not(ringloop_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(ringloop_loom))]
pub(crate) use std::thread;
