//! `JoinHandle` and `JoinError`.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The side of a task its `JoinHandle` sees.
pub(crate) trait JoinSide<T> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    /// Ready once the task has finished; registers `cx`'s waker otherwise. Takes no output.
    fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()>;
    fn is_finished(&self) -> bool;
    fn abort(&self);
    /// The handle is being dropped: nobody will take the output.
    fn detach(&self);
}

/// An owned permission to await a spawned task's output.
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] if the task panicked or was aborted. Dropping
/// it detaches the task, which keeps running; its output is then dropped as soon as it is produced.
///
/// A panic while the task's future is dropped (a field's `Drop` that panics, when the task
/// finishes, is aborted or its loop closes) never escapes the loop: the loop and the other tasks
/// go on, and awaiting the handle gives a [`JoinError`] with [`is_panic`](JoinError::is_panic)
/// that carries that panic, even if the task had returned or been aborted. A panic while dropping
/// an output nobody awaited is contained the same way and discarded.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let handle = ringloop::spawn(async { 6 * 7 });
///     assert_eq!(handle.await.unwrap(), 42);
/// });
/// ```
pub struct JoinHandle<T> {
    task: Rc<dyn JoinSide<T>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: Rc<dyn JoinSide<T>>) -> Self {
        JoinHandle { task }
    }

    /// Cancels the task: it is dropped at the loop's next turn (if it has not finished yet) and
    /// awaiting the handle gives a [`JoinError`] with [`is_cancelled`](JoinError::is_cancelled).
    /// In-flight I/O of the task is cancelled as when any I/O future is dropped.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Whether the task has finished (returned, panicked or been aborted); if so, awaiting the
    /// handle returns at once.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub(crate) fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.task.poll_finished(cx)
    }

    /// Turns the handle into one that aborts the task when dropped, so a task whose result nobody
    /// wants any more (a request given up on, a `select` that took the other branch) does not
    /// keep running. Awaiting it gives the output as the plain handle does.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// ringloop::run(async {
    ///     let guard = ringloop::spawn(async {
    ///         ringloop::time::sleep(Duration::from_secs(3600)).await;
    ///     })
    ///     .abort_on_drop();
    ///     drop(guard); // the task is aborted, not left sleeping for an hour
    /// });
    /// ```
    pub fn abort_on_drop(self) -> AbortOnDrop<T> {
        AbortOnDrop { handle: Some(self) }
    }
}

/// A [`JoinHandle`] that aborts its task when dropped; made by [`JoinHandle::abort_on_drop`].
///
/// Awaiting it gives the task's output (or a [`JoinError`]) like the handle it wraps.
pub struct AbortOnDrop<T> {
    /// `None` only after `detach` took it out.
    handle: Option<JoinHandle<T>>,
}

impl<T> AbortOnDrop<T> {
    /// Aborts the task now (see [`JoinHandle::abort`]).
    pub fn abort(&self) {
        self.handle().abort();
    }

    /// Whether the task has finished (see [`JoinHandle::is_finished`]).
    pub fn is_finished(&self) -> bool {
        self.handle().is_finished()
    }

    /// Gives back the plain handle: the task is no longer aborted when it is dropped.
    pub fn detach(mut self) -> JoinHandle<T> {
        self.handle
            .take()
            .expect("AbortOnDrop holds its handle until detach")
    }

    fn handle(&self) -> &JoinHandle<T> {
        self.handle
            .as_ref()
            .expect("AbortOnDrop holds its handle until detach")
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    ///
    /// Panics if polled again after it returned the output.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let handle = self
            .handle
            .as_mut()
            .expect("AbortOnDrop holds its handle until detach");
        Pin::new(handle).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

impl<T> fmt::Debug for AbortOnDrop<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortOnDrop")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    ///
    /// Panics if polled again after it returned the output.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.task.poll_join(cx)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.task.detach();
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

enum Repr {
    Cancelled,
    Panic(Box<dyn Any + Send + 'static>),
}

/// Why a task gave no output: it panicked or it was aborted.
pub struct JoinError {
    repr: Repr,
}

impl JoinError {
    pub(crate) fn cancelled() -> Self {
        JoinError {
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> Self {
        JoinError {
            repr: Repr::Panic(payload),
        }
    }

    /// The task was aborted (or its loop was closed before it finished).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The task panicked, while being polled or while its future was being dropped.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The panic's payload, to resume it with `std::panic::resume_unwind`.
    ///
    /// # Errors
    ///
    /// Gives `self` back if the task did not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p),
            Repr::Cancelled => Err(self),
        }
    }

    fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panic(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            Repr::Cancelled => None,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.repr, self.panic_message()) {
            (Repr::Cancelled, _) => f.write_str("task was cancelled"),
            (Repr::Panic(_), Some(msg)) => write!(f, "task panicked: {msg}"),
            (Repr::Panic(_), None) => f.write_str("task panicked"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("JoinError::Cancelled"),
            Repr::Panic(_) => write!(f, "JoinError::Panic({:?})", self.panic_message()),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(e: JoinError) -> io::Error {
        io::Error::other(e.to_string())
    }
}
