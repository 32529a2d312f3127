//! The `tokio-compat` feature: every ringloop loop runs inside a tokio runtime context, so crates
//! that call `tokio::spawn`, `tokio::time` or `tokio::net` (reqwest, tower-http's timeout, database
//! drivers) work inside ringloop tasks.
//!
//! The context is the caller's own tokio runtime when a loop is run from a thread that is in that
//! runtime's context but drives none of its work (a thread that called `Handle::enter` on a
//! multi-thread runtime, or the main thread of `#[tokio::main]` blocked in `block_on`): its
//! workers keep serving timers, sockets and `tokio::spawn` while the loop runs. Otherwise one
//! process-wide runtime that starts on first use with a single worker thread (`ringloop-tokio`),
//! I/O and timers enabled, and lives until the process exits. That includes a loop run from inside
//! a current_thread runtime (`#[tokio::test]`: the loop blocks the only thread that drives it) and
//! from inside a task of a multi-thread runtime (the loop blocks that worker: with one worker
//! nothing drives the timers, with more a `tokio::spawn` lands in the blocked worker's own queue
//! slot and never runs). The loop enters it for as long as `run_until_complete` (or `run`, or a pool's loop)
//! runs and while the loop closes, so futures dropped then find it too.
//!
//! What runs where: tokio's sockets and timers are served by that runtime's reactor on its own
//! thread, not by the ring; when one is ready the reactor wakes the ringloop task through its
//! `Send` waker, a cross-thread wake (an eventfd write or a ring message). `tokio::spawn` runs the
//! future on the tokio worker, `tokio::task::spawn_blocking` on tokio's blocking pool. Code that
//! needs the ring's speed uses ringloop's own types.

use std::sync::OnceLock;

use tokio::runtime::{Builder, EnterGuard, Handle, Runtime, RuntimeFlavor};

/// The process-wide runtime, or `None` if it could not be built (the reason was printed).
static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

fn runtime() -> Option<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            match Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ringloop-tokio")
                .enable_all()
                .build()
            {
                Ok(rt) => Some(rt),
                Err(e) => {
                    eprintln!(
                        "ringloop: cannot start the tokio runtime of the tokio-compat feature \
                         ({e}); tokio calls inside ringloop tasks will panic"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Enters the tokio context for a loop that starts running, unless the thread already is in the
/// context of a runtime that keeps running while this thread runs the loop.
pub(crate) fn enter() -> Option<EnterGuard<'static>> {
    if Handle::try_current().is_ok_and(|current| runs_without_this_thread(&current)) {
        return None;
    }
    runtime().map(Runtime::enter)
}

/// Whether the runtime of `handle`, current on this thread, goes on serving its timers, sockets
/// and spawned tasks while this thread is blocked in a ringloop loop.
///
/// A current_thread runtime never does: only its `block_on` drives it, and that is either this
/// thread (now blocked) or nobody. A multi-thread runtime does unless this thread is one of its
/// workers: inside a task (`tokio::task::try_id` is set) the worker is blocked, and with it its
/// queue and, with one worker, the whole runtime. (A closure on tokio's blocking pool may count as
/// a task too; ringloop's runtime serves it just as well.)
fn runs_without_this_thread(handle: &Handle) -> bool {
    matches!(handle.runtime_flavor(), RuntimeFlavor::MultiThread) && tokio::task::try_id().is_none()
}

/// The handle of the tokio runtime that ringloop's loops enter when no other is current:
/// for spawning onto it from outside a loop, or for `block_on` from a thread that runs no loop.
///
/// # Examples
///
/// ```
/// let handle = ringloop::compat::tokio_handle().expect("the tokio runtime started");
/// let n = handle.block_on(async { tokio::task::spawn_blocking(|| 6 * 7).await.unwrap() });
/// assert_eq!(n, 42);
/// ```
pub fn tokio_handle() -> Option<&'static Handle> {
    runtime().map(Runtime::handle)
}
