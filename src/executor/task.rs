//! One spawned task: its future, its output slot and its join waker, in one allocation.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::join::{JoinError, JoinSide};
use super::waker::TaskWaker;
use crate::blocking::drop_contained;

/// The side of a task the executor sees.
pub(crate) trait Runnable {
    /// Polls the task once if its id is `id` (else it is a newer task in a finished one's slab
    /// slot, woken under the old id: `None`, and it is not polled); `Some(true)` when it has
    /// finished. One virtual call per poll checks the id and polls.
    fn run(&self, id: u64) -> Option<bool>;
    /// Drops the future (the loop is closing).
    fn cancel(&self);
    /// The task's waker state.
    fn header(&self) -> &Arc<TaskWaker>;
    /// What introspection shows of the task with this id (and this name: names live with the
    /// executor, so unnamed tasks do not pay for them).
    fn info(&self, id: u64, name: Option<std::rc::Rc<str>>) -> super::TaskInfo;
}

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Task<F: Future> {
    header: Arc<TaskWaker>,
    /// With the feature `tracing`, the waker the task is polled with (its events name the
    /// task); without it the task is polled with a waker that borrows `header`.
    #[cfg(feature = "tracing")]
    waker: Waker,
    stage: RefCell<Stage<F>>,
    join_waker: Cell<Option<Waker>>,
    aborted: Cell<bool>,
    /// False once the `JoinHandle` is gone: nobody can take the output, so it is dropped at once.
    joinable: Cell<bool>,
    spawned_at: &'static std::panic::Location<'static>,
    /// Polls so far (saturating; `TaskInfo::polls`). 32 bits, beside the two flags above, so
    /// that every task's allocation is a word smaller.
    polls: Cell<u32>,
    /// Entered around each poll (cargo feature `tracing`; `()` without it).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    span: TaskSpan,
}

/// A task's `tracing` span (cargo feature `tracing`), or nothing.
#[cfg(feature = "tracing")]
pub(crate) type TaskSpan = tracing::Span;
/// A task's `tracing` span (cargo feature `tracing`), or nothing.
#[cfg(not(feature = "tracing"))]
pub(crate) type TaskSpan = ();

/// The waker a task is polled with: with the feature `tracing`, one whose clones, drops and
/// wakes are `tracing` events.
#[cfg(feature = "tracing")]
fn task_waker(header: &Arc<TaskWaker>) -> Waker {
    super::trace::waker(header.clone())
}

impl<F: Future> Task<F> {
    pub(crate) fn new(
        future: F,
        header: Arc<TaskWaker>,
        spawned_at: &'static std::panic::Location<'static>,
        span: TaskSpan,
    ) -> Self {
        Task {
            spawned_at,
            polls: Cell::new(0),
            span,
            #[cfg(feature = "tracing")]
            waker: task_waker(&header),
            header,
            stage: RefCell::new(Stage::Running(future)),
            join_waker: Cell::new(None),
            aborted: Cell::new(false),
            joinable: Cell::new(true),
        }
    }

    /// Stores the result and wakes whoever awaits the handle. The assignment drops the future in
    /// place, which keeps the pinning promise made in `run`.
    ///
    /// A panic in the future's destructor is contained: the loop and the other tasks go on, and
    /// the handle gives a `JoinError` with `is_panic()` carrying that panic (it replaces `result`,
    /// which is dropped). If nobody holds the handle, the output is dropped here, its own panic
    /// contained too.
    fn finish(&self, stage: &mut Stage<F>, result: Result<F::Output, JoinError>) {
        // An assignment whose drop of the old value unwinds still writes the new value, so
        // `stage` is `Finished(result)` whichever way this returns.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Finished(result))) {
            let old = std::mem::replace(stage, Stage::Finished(Err(JoinError::panic(payload))));
            drop_contained(old);
        }
        if !self.joinable.get() {
            drop_contained(std::mem::replace(stage, Stage::Consumed));
        }
        // The handle may be awaited by another executor: its waker's panic is contained.
        if let Some(w) = self.join_waker.take() {
            crate::blocking::wake_contained(w);
        }
    }
}

impl<F: Future> Runnable for Task<F> {
    fn run(&self, id: u64) -> Option<bool> {
        if self.header.id != id {
            return None;
        }
        self.header.clear_scheduled();
        let mut stage = self.stage.borrow_mut();
        let Stage::Running(future) = &mut *stage else {
            return Some(true);
        };
        if self.aborted.get() {
            self.finish(&mut stage, Err(JoinError::cancelled()));
            return Some(true);
        }
        // SAFETY: the task lives in an `Rc` allocation that never moves, and the future inside
        // `Stage::Running` is never moved out: it is only ever dropped in place, by assigning a new
        // stage (`finish`, `cancel`).
        let future = unsafe { Pin::new_unchecked(future) };
        #[cfg(feature = "tracing")]
        let waker = &self.waker;
        #[cfg(not(feature = "tracing"))]
        let borrowed = super::waker::borrowed(&self.header);
        #[cfg(not(feature = "tracing"))]
        let waker: &Waker = &borrowed;
        let mut cx = Context::from_waker(waker);
        self.polls.set(self.polls.get().saturating_add(1));
        #[cfg(feature = "tracing")]
        let _entered = self.span.enter();
        match catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx))) {
            Ok(Poll::Pending) => Some(false),
            Ok(Poll::Ready(v)) => {
                self.finish(&mut stage, Ok(v));
                Some(true)
            }
            Err(payload) => {
                self.finish(&mut stage, Err(JoinError::panic(payload)));
                Some(true)
            }
        }
    }

    fn header(&self) -> &Arc<TaskWaker> {
        &self.header
    }

    fn info(&self, id: u64, name: Option<std::rc::Rc<str>>) -> super::TaskInfo {
        super::TaskInfo::new(id, name, self.spawned_at, u64::from(self.polls.get()))
    }

    fn cancel(&self) {
        // A task being polled right now cannot be cancelled from inside itself; that only happens
        // when a future's drop closes a loop, and the task is then cancelled by its own loop.
        let Ok(mut stage) = self.stage.try_borrow_mut() else {
            return;
        };
        if matches!(&*stage, Stage::Running(_)) {
            self.finish(&mut stage, Err(JoinError::cancelled()));
        }
    }
}

impl<F: Future> JoinSide<F::Output> for Task<F> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        let mut stage = self.stage.borrow_mut();
        match &*stage {
            Stage::Running(_) => {
                self.join_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
            Stage::Finished(_) => match std::mem::replace(&mut *stage, Stage::Consumed) {
                Stage::Finished(result) => Poll::Ready(result),
                _ => unreachable!("the stage was Finished a moment ago"),
            },
            Stage::Consumed => {
                panic!("a ringloop JoinHandle was polled after returning its output")
            }
        }
    }

    fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_finished() {
            return Poll::Ready(());
        }
        self.join_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    fn is_finished(&self) -> bool {
        // A task being polled is running, so a failed borrow means "not finished".
        self.stage
            .try_borrow()
            .map(|s| !matches!(&*s, Stage::Running(_)))
            .unwrap_or(false)
    }

    fn detach(&self) {
        self.joinable.set(false);
        // An output nobody can take now: drop it here, containing a panic of its destructor. If the
        // task is being polled (the handle was dropped by the task itself), `finish` drops it.
        if let Ok(mut stage) = self.stage.try_borrow_mut()
            && matches!(&*stage, Stage::Finished(_))
        {
            let old = std::mem::replace(&mut *stage, Stage::Consumed);
            drop(stage);
            drop_contained(old);
        }
    }

    fn abort(&self) {
        if !self.is_finished() {
            self.aborted.set(true);
            super::waker::borrowed(&self.header).wake_by_ref();
        }
    }
}
