//! Reaching a loop from any thread: `LoopHandle` (asyncio's `call_soon_threadsafe` and
//! `run_coroutine_threadsafe`), `RemoteJoinHandle`, and `Shutdown`, a signal every loop can await.
//!
//! What the protocols promise (model-checked in `loom_model` below):
//! - A `RemoteJoinHandle` resolves exactly once: to the output if the task finished, else to a
//!   cancellation (aborted, or its loop closed and dropped the task). Everything is decided under
//!   one lock, and whoever awaits the handle is woken after the result is stored; an `abort`
//!   that comes after the task's poll registered its waker wakes the task.
//! - `Shutdown::trigger` sets the flag before it takes the waker list, and `triggered()` checks
//!   the flag again under the lock after registering: every `triggered()` future completes,
//!   whether it was first polled before or after the trigger.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::driver::Shared;
use crate::executor::JoinError;
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering};

/// A handle to one event loop that any thread may hold and use: spawn work onto the loop, or run
/// a closure there. `Clone + Send + Sync`.
///
/// Get one from [`EventLoop::handle`](crate::EventLoop::handle), [`current_handle`] inside a
/// loop, or a [`LoopPool`](crate::LoopPool). Work sent after the loop closed is dropped: a
/// `spawn` then resolves to a [`JoinError`] with [`is_cancelled`](JoinError::is_cancelled).
///
/// # Examples
///
/// ```
/// let mut lp = ringloop::EventLoop::new().unwrap();
/// let handle = lp.handle();
/// let remote = std::thread::spawn(move || handle.spawn(async { 6 * 7 })).join().unwrap();
/// assert_eq!(lp.run_until_complete(remote).unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle")
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

impl LoopHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LoopHandle { shared }
    }

    /// Runs `f` on the loop's thread at its next turn (asyncio's `call_soon_threadsafe`). Inside
    /// `f`, [`crate::spawn`] spawns on that loop. If the loop has closed, `f` is dropped unrun. A
    /// panic in `f` is reported by the panic hook and does not stop the loop.
    pub fn call_soon(&self, f: impl FnOnce() + Send + 'static) {
        if let Err(job) = self.shared.push_job(Box::new(f)) {
            drop(job);
        }
    }

    /// Spawns `fut` on the loop (asyncio's `run_coroutine_threadsafe`); the returned handle can be
    /// awaited anywhere: on this loop, another loop, or another executor.
    pub fn spawn<F>(&self, fut: F) -> RemoteJoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (completer, handle) = remote_pair();
        let task = Remote {
            fut: Box::pin(fut),
            completer,
        };
        self.call_soon(move || {
            crate::spawn(task);
        });
        handle
    }

    /// Makes a future on the loop's thread with `make` and spawns it there: the future need not be
    /// `Send` (it may hold `Rc`s, streams of that loop), only `make` and the output must be.
    pub fn spawn_with<C, Fut>(&self, make: C) -> RemoteJoinHandle<Fut::Output>
    where
        C: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let (completer, handle) = remote_pair();
        self.call_soon(move || {
            // If `make` panics, `completer` is dropped and the handle reports a cancellation; the
            // panic hook has reported the panic.
            let fut = make();
            crate::spawn(Remote {
                fut: Box::pin(fut),
                completer,
            });
        });
        handle
    }

    /// Whether the loop has closed (work sent to it is dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

/// The [`LoopHandle`] of the loop running on this thread, or `None` outside a loop.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let handle = ringloop::current_handle().expect("inside a loop");
///     let answer = handle.spawn(async { 1 + 1 }).await.unwrap();
///     assert_eq!(answer, 2);
/// });
/// ```
pub fn current_handle() -> Option<LoopHandle> {
    crate::executor::context::current_shared().map(LoopHandle::new)
}

struct RemoteState<T> {
    result: Option<Result<T, JoinError>>,
    finished: bool,
    taken: bool,
    aborted: bool,
    /// Whoever awaits the `RemoteJoinHandle`.
    join_waker: Option<Waker>,
    /// The task on the loop, to wake it when aborted.
    task_waker: Option<Waker>,
}

type SharedState<T> = Arc<Mutex<RemoteState<T>>>;

fn lock<T>(s: &SharedState<T>) -> MutexGuard<'_, RemoteState<T>> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn remote_pair<T>() -> (Completer<T>, RemoteJoinHandle<T>) {
    let state = Arc::new(Mutex::new(RemoteState {
        result: None,
        finished: false,
        taken: false,
        aborted: false,
        join_waker: None,
        task_waker: None,
    }));
    (
        Completer {
            state: Some(state.clone()),
        },
        RemoteJoinHandle { state },
    )
}

/// The loop side's promise to deliver a result; dropped unfulfilled, it delivers a cancellation.
struct Completer<T> {
    state: Option<SharedState<T>>,
}

impl<T> Completer<T> {
    fn complete(&mut self, result: Result<T, JoinError>) {
        let Some(state) = self.state.take() else {
            return;
        };
        let waker = {
            let mut s = lock(&state);
            s.result = Some(result);
            s.finished = true;
            s.task_waker = None;
            s.join_waker.take()
        };
        // The handle may be awaited by any executor: its waker's panic is contained.
        if let Some(w) = waker {
            crate::blocking::wake_contained(w);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        self.complete(Err(JoinError::cancelled()));
    }
}

/// The task spawned on the target loop: runs the future, catching its panic, and delivers.
struct Remote<F: Future> {
    fut: Pin<Box<F>>,
    completer: Completer<F::Output>,
}

impl<F: Future> Future for Remote<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(state) = &this.completer.state else {
            return Poll::Ready(());
        };
        {
            let mut s = lock(state);
            if s.aborted {
                drop(s);
                this.completer.complete(Err(JoinError::cancelled()));
                return Poll::Ready(());
            }
            if !s
                .task_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                s.task_waker = Some(cx.waker().clone());
            }
        }
        match catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                this.completer.complete(Ok(v));
                Poll::Ready(())
            }
            Err(payload) => {
                this.completer.complete(Err(JoinError::panic(payload)));
                Poll::Ready(())
            }
        }
    }
}

/// The output of a future spawned through a [`LoopHandle`]: a `Send` future that any executor
/// may await, giving `Ok(output)`, or a [`JoinError`] if the future panicked, was aborted, or its
/// loop closed before it finished.
pub struct RemoteJoinHandle<T> {
    state: SharedState<T>,
}

impl<T> RemoteJoinHandle<T> {
    /// Cancels the task: it is dropped on its loop at the loop's next turn (if it has not finished)
    /// and the handle gives a [`JoinError`] with [`is_cancelled`](JoinError::is_cancelled).
    pub fn abort(&self) {
        let waker = {
            let mut s = lock(&self.state);
            if s.finished {
                return;
            }
            s.aborted = true;
            s.task_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the task has finished (returned, panicked, was aborted, or its loop closed).
    pub fn is_finished(&self) -> bool {
        lock(&self.state).finished
    }
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    ///
    /// Panics if polled again after it returned the output.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.state);
        if let Some(result) = s.result.take() {
            s.taken = true;
            return Poll::Ready(result);
        }
        assert!(
            !s.taken,
            "a ringloop RemoteJoinHandle was polled after returning its output"
        );
        if !s
            .join_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            s.join_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

struct ShutdownInner {
    triggered: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

/// A one-way signal to stop, shared by any number of threads and loops: [`trigger`] it once,
/// and every [`triggered`] future completes. `Clone + Send + Sync`; clones share the signal.
///
/// [`trigger`]: Shutdown::trigger
/// [`triggered`]: Shutdown::triggered
///
/// # Examples
///
/// ```
/// let shutdown = ringloop::Shutdown::new();
/// let s = shutdown.clone();
/// std::thread::spawn(move || s.trigger());
/// ringloop::run(shutdown.triggered());
/// assert!(shutdown.is_triggered());
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    /// A new signal, not triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(ShutdownInner {
                triggered: AtomicBool::new(false),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Triggers the signal (later calls do nothing) and wakes everything awaiting it.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
            return;
        }
        // Every waiter is woken even if one waker panics (a foreign executor's): a pool whose
        // loops wait here would otherwise never return from `join`.
        let wakers = std::mem::take(&mut *self.wakers());
        for w in wakers {
            crate::blocking::wake_contained(w);
        }
    }

    /// Whether [`trigger`](Shutdown::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// Completes once the signal is triggered (at once if it already is). `Send`: await it on
    /// any loop or executor.
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        std::future::poll_fn(move |cx| {
            if inner.triggered.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            let mut wakers = inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            // Checked again under the lock: `trigger` sets the flag before taking the lock.
            if inner.triggered.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn wakers(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.inner.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(all(test, ringloop_loom))]
mod loom_model {
    use super::*;
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Count(crate::sync::AtomicU32);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn counting_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(crate::sync::AtomicU32::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    /// The handle's result, given its first poll's outcome (after the task's thread ended): if
    /// that poll was pending, the awaiter must have been woken and a second poll must resolve.
    fn settled<T>(
        first: Poll<Result<T, JoinError>>,
        handle: &mut RemoteJoinHandle<T>,
        count: &Count,
        waker: &Waker,
    ) -> Result<T, JoinError> {
        match first {
            Poll::Ready(r) => r,
            Poll::Pending => {
                assert_eq!(
                    count.0.load(Ordering::Acquire),
                    1,
                    "the awaiter was not woken"
                );
                match poll_once(handle, waker) {
                    Poll::Ready(r) => r,
                    Poll::Pending => panic!("woken, but no result"),
                }
            }
        }
    }

    /// The task finishes on its loop's thread while another thread awaits the handle: the
    /// awaiting side is woken if it went pending, and gets the output exactly once.
    #[test]
    fn loom_a_remote_result_reaches_its_awaiter() {
        loom::model(|| {
            let (mut completer, mut handle) = remote_pair::<u32>();
            let task = crate::sync::thread::spawn(move || completer.complete(Ok(5)));
            let (count, waker) = counting_waker();
            let first = poll_once(&mut handle, &waker);
            task.join().unwrap();
            let result = settled(first, &mut handle, &count, &waker);
            assert_eq!(result.unwrap(), 5);
        });
    }

    /// `abort` from another thread against the task's poll on its loop: the task that registered
    /// its waker first is woken by the abort, and its next poll ends it; the handle then gives
    /// the output (the task finished first) or a cancellation, never both or neither.
    #[test]
    fn loom_abort_against_the_tasks_poll() {
        loom::model(|| {
            let (completer, mut handle) = remote_pair::<u32>();
            // A future that needs two polls: the abort can land before, between or after them.
            let mut polls = 0;
            let fut = std::future::poll_fn(move |_| {
                polls += 1;
                if polls == 2 {
                    Poll::Ready(5)
                } else {
                    Poll::Pending
                }
            });
            let mut remote = Remote {
                fut: Box::pin(fut),
                completer,
            };
            let task = crate::sync::thread::spawn(move || {
                let (count, waker) = counting_waker();
                let first = Pin::new(&mut remote).poll(&mut Context::from_waker(&waker));
                (remote, first.is_ready(), count, waker)
            });
            handle.abort();
            let (mut remote, first_ready, count, waker) = task.join().unwrap();
            if !first_ready {
                // The first poll did not see the abort: the abort must have woken the task.
                assert_eq!(
                    count.0.load(Ordering::Acquire),
                    1,
                    "an abort did not wake its task"
                );
                let second = Pin::new(&mut remote).poll(&mut Context::from_waker(&waker));
                assert!(second.is_ready());
            }
            let (_, waker) = counting_waker();
            match poll_once(&mut handle, &waker) {
                Poll::Ready(Ok(v)) => assert_eq!(v, 5),
                Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
                Poll::Pending => panic!("the handle never resolved"),
            }
            assert!(handle.is_finished());
        });
    }

    /// The task is dropped unfinished (its loop closed) while the handle is awaited: the handle
    /// resolves to a cancellation and its awaiter is woken.
    #[test]
    fn loom_a_dropped_task_cancels_its_handle() {
        loom::model(|| {
            let (completer, mut handle) = remote_pair::<u32>();
            let task = crate::sync::thread::spawn(move || drop(completer));
            let (count, waker) = counting_waker();
            let first = poll_once(&mut handle, &waker);
            task.join().unwrap();
            let result = settled(first, &mut handle, &count, &waker);
            assert!(result.unwrap_err().is_cancelled());
        });
    }

    /// `trigger` from one thread while another polls `triggered()`: a poll that returned
    /// `Pending` is always woken.
    #[test]
    fn loom_shutdown_wakes_every_waiter() {
        loom::model(|| {
            let shutdown = Shutdown::new();
            let s = shutdown.clone();
            let trigger = crate::sync::thread::spawn(move || s.trigger());
            let mut waiting = Box::pin(shutdown.triggered());
            let (count, waker) = counting_waker();
            let first = waiting.as_mut().poll(&mut Context::from_waker(&waker));
            trigger.join().unwrap();
            if first.is_pending() {
                assert_eq!(
                    count.0.load(Ordering::Acquire),
                    1,
                    "a waiter was never woken"
                );
                assert!(
                    waiting
                        .as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_ready()
                );
            }
            assert!(shutdown.is_triggered());
        });
    }
}
