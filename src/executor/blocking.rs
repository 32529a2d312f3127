//! `spawn_blocking`: a closure on the blocking pool, its output awaited by a task.

use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::sync::Mutex;

use super::JoinHandle;

/// A one-value channel from a pool thread to the task awaiting it.
struct Slot<T> {
    inner: Mutex<(Option<std::thread::Result<T>>, Option<Waker>)>,
}

/// Runs `f` on a thread of the blocking pool and returns a handle to its output, for work that
/// would stall the loop (blocking syscalls, CPU-heavy code, blocking libraries).
///
/// The handle gives a [`JoinError`](crate::JoinError) with `is_panic()` if `f` panics. Aborting
/// the handle does not stop `f` once it has started; its output is then dropped.
///
/// # Panics
///
/// Panics if no event loop is running on this thread, as [`spawn`](crate::spawn) does.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let sum = ringloop::spawn_blocking(|| (1..=100u64).sum::<u64>()).await.unwrap();
///     assert_eq!(sum, 5050);
/// });
/// ```
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Slot {
        inner: Mutex::new((None, None)),
    });
    let sender = slot.clone();
    // A paused clock waits for the closure instead of jumping to the next timer.
    let hold = crate::time::ClockHold::new();
    let receiver = async move {
        let result = poll_fn(|cx| {
            let mut inner = slot.inner.lock().unwrap_or_else(|e| e.into_inner());
            match inner.0.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    inner.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        drop(hold);
        result.unwrap_or_else(|payload| resume_unwind(payload))
    };
    let handle = super::spawn(receiver);
    crate::blocking::execute(Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(f));
        let waker = {
            let mut inner = sender.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.0 = Some(result);
            inner.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }));
    handle
}
