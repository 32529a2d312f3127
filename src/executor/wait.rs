//! `yield_now`, `wait` (asyncio.wait) and `gather` (asyncio.gather).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use super::JoinHandle;

/// Yields to the loop once: other ready tasks, I/O and timers run before this task resumes.
///
/// When `yield_now().await` returns, on both backends:
/// - the loop has looked at I/O without blocking, and every task an I/O completion (or readiness)
///   found by that look woke has been polled;
/// - every timer that was due when the task yielded has fired, and the tasks it woke have been
///   polled;
/// - every task woken from another thread before the yield has been polled.
///
/// So a task that yields in a loop while it waits for a timer or for I/O costs one non-blocking
/// look at the kernel per yield, not a burst of polls. Tasks that wake each other without
/// yielding still run in batches between looks at I/O. Outside a ringloop loop (say, a future
/// polled by another executor) it wakes itself and returns `Pending` once.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     ringloop::yield_now().await;
/// });
/// ```
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            if !crate::coop::defer_yield(cx.waker()) {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    })
    .await
}

/// When [`wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as at least one task has finished.
    FirstCompleted,
    /// When every task has finished.
    AllCompleted,
}

/// Waits for spawned tasks, as asyncio's `wait`: returns `(done, pending)`, where every handle in
/// `done` has finished (awaiting it returns at once) and the rest are still running. Handles keep
/// their input order within each vector. With no handles it returns two empty vectors at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::{ReturnWhen, spawn, time::sleep};
/// ringloop::run(async {
///     let fast = spawn(async { 1 });
///     let slow = spawn(async { sleep(Duration::from_secs(5)).await; 2 });
///     let (done, pending) = ringloop::wait(vec![fast, slow], ReturnWhen::FirstCompleted).await;
///     assert_eq!((done.len(), pending.len()), (1, 1));
///     for h in pending { h.abort(); }
/// });
/// ```
pub async fn wait<T>(
    handles: impl IntoIterator<Item = JoinHandle<T>>,
    return_when: ReturnWhen,
) -> (Vec<JoinHandle<T>>, Vec<JoinHandle<T>>) {
    let handles: Vec<JoinHandle<T>> = handles.into_iter().collect();
    poll_fn(|cx| {
        let mut finished = 0;
        for h in &handles {
            if h.poll_finished(cx).is_ready() {
                finished += 1;
            }
        }
        let enough = match return_when {
            ReturnWhen::FirstCompleted => finished > 0 || handles.is_empty(),
            ReturnWhen::AllCompleted => finished == handles.len(),
        };
        if enough {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    handles.into_iter().partition(JoinHandle::is_finished)
}

/// Runs the futures concurrently on the current task and returns their outputs in input order, as
/// asyncio's `gather`.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let out = ringloop::gather((1..=3).map(|i| async move { i * 10 })).await;
///     assert_eq!(out, vec![10, 20, 30]);
/// });
/// ```
pub async fn gather<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    type Slot<F> = (Option<Pin<Box<F>>>, Option<<F as Future>::Output>);
    let mut slots: Vec<Slot<F>> = futures
        .into_iter()
        .map(|f| (Some(Box::pin(f)), None))
        .collect();
    poll_fn(|cx| {
        let mut all_done = true;
        for (future, output) in slots.iter_mut() {
            if let Some(f) = future {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *output = Some(v);
                        *future = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    slots
        .into_iter()
        .map(|(_, out)| out.expect("every gathered future finished"))
        .collect()
}
