//! `TaskGroup`: structured concurrency with asyncio's semantics. The first member that fails
//! (returns `Err` or panics) cancels the others, and [`TaskGroup::join`] waits for every member,
//! the cancelled ones included, then reports every error, as asyncio's `ExceptionGroup` does.
//!
//! How a failure is seen at once: each member's future carries a [`Member`] guard. The guard is
//! dropped with the future however it ends: after an output (the member recorded whether it was
//! `Ok`), while a panic unwinds through the member's poll (`std::thread::panicking()`), or when
//! the member is aborted or its loop closes (neither: a cancellation, not a failure). A failure
//! aborts every other member through its `JoinHandle`; an abort only marks and wakes the task, so
//! the cancelled futures are dropped at the loop's next turn, never inside the guard.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;

use super::JoinHandle;

/// The members of a group, in spawn order, and what the group has seen of them.
struct State<T, E> {
    /// Each member's handle until `join` has taken its result.
    members: Vec<Option<JoinHandle<Result<T, E>>>>,
    /// Indices of the members that failed, in the order their failures were seen.
    failed: Vec<usize>,
    /// Set by the first failure or by `cancel`: every member is aborted, and so is every member
    /// spawned from now on (before its first poll).
    cancelling: bool,
}

impl<T, E> State<T, E> {
    /// Aborts every member but `except` (the member that failed: it has finished already).
    fn cancel_all(&mut self, except: Option<usize>) {
        self.cancelling = true;
        for (i, handle) in self.members.iter().enumerate() {
            if Some(i) != except
                && let Some(handle) = handle
            {
                handle.abort();
            }
        }
    }
}

/// How a member's future ended, as far as its guard knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No output yet: if the guard is dropped now, the member panicked or was cancelled.
    Running,
    Ok,
    Err,
}

/// Dropped with a member's future: reports a failure to the group, which cancels the others.
struct Member<T, E> {
    state: Rc<RefCell<State<T, E>>>,
    index: usize,
    outcome: Outcome,
}

impl<T, E> Drop for Member<T, E> {
    fn drop(&mut self) {
        let failed = match self.outcome {
            Outcome::Ok => false,
            Outcome::Err => true,
            // Dropped without an output: a panic unwinding through the member (its poll, or the
            // drop of its future), else a cancellation (an abort, or its loop closing).
            Outcome::Running => std::thread::panicking(),
        };
        if !failed {
            return;
        }
        // The group's state is only borrowed inside `TaskGroup`'s own calls, never across a poll
        // of a member; `try_borrow_mut` keeps a surprise from turning into a double panic.
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.failed.push(self.index);
            state.cancel_all(Some(self.index));
        }
    }
}

/// Why a member gave no output.
pub enum MemberError<E> {
    /// The member returned `Err`.
    Failed(E),
    /// The member panicked (while polled, or while its future was dropped); the payload can be
    /// resumed with `std::panic::resume_unwind`.
    Panicked(Box<dyn Any + Send + 'static>),
}

impl<E> MemberError<E> {
    /// The error the member returned, if it returned one (not if it panicked).
    pub fn into_failed(self) -> Option<E> {
        match self {
            MemberError::Failed(e) => Some(e),
            MemberError::Panicked(_) => None,
        }
    }

    /// Whether the member panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, MemberError::Panicked(_))
    }

    fn panic_message(&self) -> Option<&str> {
        match self {
            MemberError::Panicked(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            MemberError::Failed(_) => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for MemberError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            MemberError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message())
                .finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for MemberError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.panic_message()) {
            (MemberError::Failed(e), _) => write!(f, "a member failed: {e}"),
            (MemberError::Panicked(_), Some(msg)) => write!(f, "a member panicked: {msg}"),
            (MemberError::Panicked(_), None) => f.write_str("a member panicked"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for MemberError<E> {}

/// What [`TaskGroup::join`] reports when not every member gave an output: the errors of the
/// members that failed, first failure first (asyncio's `ExceptionGroup`), and how many members
/// were cancelled.
///
/// With no error, the group was cancelled with [`TaskGroup::cancel`] (or dropped members were
/// aborted by other means) before every member finished.
pub struct GroupError<E> {
    errors: Vec<MemberError<E>>,
    cancelled: usize,
}

impl<E> GroupError<E> {
    /// The failures, in the order the group saw them: the first is the one that cancelled the
    /// others (unless the group had been cancelled first).
    pub fn errors(&self) -> &[MemberError<E>] {
        &self.errors
    }

    /// The failures, first failure first.
    pub fn into_errors(self) -> Vec<MemberError<E>> {
        self.errors
    }

    /// How many members were cancelled before they gave an output.
    pub fn cancelled(&self) -> usize {
        self.cancelled
    }
}

impl<E: fmt::Debug> fmt::Debug for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupError")
            .field("errors", &self.errors)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.first() {
            None => write!(
                f,
                "the task group was cancelled ({} members cancelled)",
                self.cancelled
            ),
            Some(first) => {
                write!(
                    f,
                    "{} of the task group's members failed ({} cancelled); the first: {first}",
                    self.errors.len(),
                    self.cancelled
                )
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GroupError<E> {}

/// Structured concurrency with asyncio's `TaskGroup` semantics: tasks on the current loop that
/// succeed together or fail together.
///
/// - The first member that fails, by returning `Err` or by panicking, cancels every other
///   member (and any member spawned after it, before its first poll).
/// - [`join`](TaskGroup::join) waits for every member, the cancelled ones included (their
///   futures have been dropped, so their I/O is cancelled and their guards have run, when it
///   returns), and gives every output in spawn order, or a [`GroupError`] with every failure.
/// - Dropping the group, or its `join` future, aborts the members still running without waiting
///   for them (a `Drop` cannot wait): they are dropped at the loop's next turn.
///
/// Members whose failures should not affect the others belong in a [`JoinSet`](crate::JoinSet).
///
/// # Examples
///
/// Every member succeeds: their outputs, in spawn order.
///
/// ```
/// use std::time::Duration;
/// use ringloop::TaskGroup;
///
/// ringloop::run(async {
///     let mut group = TaskGroup::new();
///     for ms in [30u64, 10, 20] {
///         group.spawn(async move {
///             ringloop::time::sleep(Duration::from_millis(ms)).await;
///             Ok::<_, std::io::Error>(ms)
///         });
///     }
///     assert_eq!(group.join().await.unwrap(), [30, 10, 20]);
/// });
/// ```
///
/// One member fails: the others are cancelled, and `join` returns once they are gone.
///
/// ```
/// use std::time::Duration;
/// use ringloop::TaskGroup;
///
/// ringloop::run(async {
///     let mut group = TaskGroup::new();
///     group.spawn(async {
///         ringloop::time::sleep(Duration::from_secs(3600)).await;
///         Ok(())
///     });
///     group.spawn(async { Err("the upstream refused") });
///     let err = group.join().await.unwrap_err();
///     assert_eq!(err.cancelled(), 1);
///     assert_eq!(err.errors().len(), 1);
///     assert_eq!(err.to_string(), "1 of the task group's members failed (1 cancelled); \
///                                  the first: a member failed: the upstream refused");
/// });
/// ```
pub struct TaskGroup<T, E> {
    state: Rc<RefCell<State<T, E>>>,
}

impl<T, E> fmt::Debug for TaskGroup<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("TaskGroup")
            .field("members", &state.members.len())
            .field("failed", &state.failed.len())
            .field("cancelling", &state.cancelling)
            .finish()
    }
}

impl<T, E> Default for TaskGroup<T, E> {
    fn default() -> Self {
        TaskGroup {
            state: Rc::new(RefCell::new(State {
                members: Vec::new(),
                failed: Vec::new(),
                cancelling: false,
            })),
        }
    }
}

impl<T: 'static, E: 'static> TaskGroup<T, E> {
    /// An empty group.
    pub fn new() -> TaskGroup<T, E> {
        TaskGroup::default()
    }

    /// Spawns `fut` on the current loop as a member of this group.
    ///
    /// If the group is already cancelling (a member failed, or [`cancel`](TaskGroup::cancel)
    /// was called), the member is cancelled before its first poll, as asyncio refuses new tasks
    /// in a group that is shutting down; `join` counts it as cancelled.
    ///
    /// # Panics
    ///
    /// Panics if no event loop is running on this thread.
    #[track_caller]
    pub fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = Result<T, E>> + 'static,
    {
        let index = self.state.borrow().members.len();
        let member = Member {
            state: self.state.clone(),
            index,
            outcome: Outcome::Running,
        };
        let handle = crate::spawn(async move {
            // Moved in whole (the block would capture only the field it assigns otherwise), so
            // it is dropped with the future.
            let mut member = member;
            let out = fut.await;
            member.outcome = if out.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Err
            };
            out // `member` is dropped here, after the outcome is known
        });
        let mut state = self.state.borrow_mut();
        if state.cancelling {
            handle.abort();
        }
        state.members.push(Some(handle));
    }

    /// How many members were spawned (those `join` has not taken yet).
    pub fn len(&self) -> usize {
        self.state
            .borrow()
            .members
            .iter()
            .filter(|m| m.is_some())
            .count()
    }

    /// Whether the group has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the group is cancelling its members: one failed, or `cancel` was called.
    pub fn is_cancelling(&self) -> bool {
        self.state.borrow().cancelling
    }

    /// Cancels every member (asyncio: the task around the `async with` was cancelled); `join`
    /// then waits for them to be dropped and reports them as cancelled.
    pub fn cancel(&self) {
        self.state.borrow_mut().cancel_all(None);
    }

    /// Waits for every member to finish (the cancelled ones included: when this returns, their
    /// futures have been dropped) and gives their outputs in spawn order.
    ///
    /// Dropping this future drops the group, which aborts the members still running without
    /// waiting for them.
    ///
    /// # Errors
    ///
    /// A [`GroupError`] if any member failed (every failure is in it, first failure first) or
    /// was cancelled; the outputs of the members that succeeded are dropped then.
    pub async fn join(self) -> Result<Vec<T>, GroupError<E>> {
        let mut outputs = Vec::new();
        let mut errors = Vec::new();
        let mut cancelled = 0;
        let mut i = 0;
        while i < self.state.borrow().members.len() {
            let res = poll_fn(|cx| {
                let mut state = self.state.borrow_mut();
                let handle = state.members[i]
                    .as_mut()
                    .expect("a member's handle is taken once, by join");
                Pin::new(handle).poll(cx)
            })
            .await;
            self.state.borrow_mut().members[i] = None;
            match res {
                Ok(Ok(v)) => outputs.push(v),
                Ok(Err(e)) => errors.push((i, MemberError::Failed(e))),
                Err(e) if e.is_cancelled() => cancelled += 1,
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => errors.push((i, MemberError::Panicked(payload))),
                    Err(_) => unreachable!("a JoinError is a panic or a cancellation"),
                },
            }
            i += 1;
        }
        if errors.is_empty() && cancelled == 0 {
            return Ok(outputs);
        }
        // First failure first; a failure the guards did not see (none is expected) goes last.
        let state = self.state.borrow();
        let rank = |i: usize| {
            state
                .failed
                .iter()
                .position(|&f| f == i)
                .unwrap_or(usize::MAX)
        };
        errors.sort_by_key(|&(i, _)| rank(i));
        Err(GroupError {
            errors: errors.into_iter().map(|(_, e)| e).collect(),
            cancelled,
        })
    }
}

impl<T, E> Drop for TaskGroup<T, E> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.cancel_all(None);
        }
    }
}
