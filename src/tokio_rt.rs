//! The `tokio-compat` feature: every ringloop loop runs inside a tokio runtime context, so crates
//! that call `tokio::spawn`, `tokio::time` or `tokio::net` (reqwest, tower-http's timeout, database
//! drivers) work inside ringloop tasks.
//!
//! The context is the caller's own tokio runtime when a loop is run from inside one (say, from
//! tokio's `spawn_blocking`); otherwise one process-wide runtime that starts on first use with a
//! single worker thread (`ringloop-tokio`), I/O and timers enabled, and lives until the process
//! exits. The loop enters it for as long as `run_until_complete` (or `run`, or a pool's loop)
//! runs and while the loop closes, so futures dropped then find it too.
//!
//! What runs where: tokio's sockets and timers are served by that runtime's reactor on its own
//! thread, not by the ring; when one is ready the reactor wakes the ringloop task through its
//! `Send` waker, a cross-thread wake (an eventfd write or a ring message). `tokio::spawn` runs the
//! future on the tokio worker, `tokio::task::spawn_blocking` on tokio's blocking pool. Code that
//! needs the ring's speed uses ringloop's own types.

use std::sync::OnceLock;

use tokio::runtime::{Builder, EnterGuard, Handle, Runtime};

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

/// Enters the tokio context for a loop that starts running, unless the thread already is in one.
pub(crate) fn enter() -> Option<EnterGuard<'static>> {
    if Handle::try_current().is_ok() {
        return None;
    }
    runtime().map(Runtime::enter)
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
