//! The executor: spawned tasks in a slab, a local ready queue, and the helpers built on them
//! (`spawn`, `yield_now`, `wait`, `gather`). It makes no syscalls.

mod blocking;
pub(crate) mod context;
mod group;
pub(crate) mod info;
mod join;
mod join_set;
mod ready;
mod spawn;
mod task;
#[cfg(feature = "tracing")]
mod trace;
mod wait;
pub(crate) mod waker;

pub(crate) use crate::blocking::drop_contained;
pub use blocking::spawn_blocking;
pub use group::{GroupError, MemberError, TaskGroup};
pub use info::TaskInfo;
pub use join::{AbortOnDrop, JoinError, JoinHandle};
pub use join_set::JoinSet;
pub use spawn::{spawn, spawn_named};
pub use wait::{ReturnWhen, gather, wait, yield_now};

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;

use slab::Slab;

use crate::driver::Shared;
use crate::stats::Counters;
use task::{Runnable, Task};
use waker::{MAIN_ID, TaskWaker};

/// The most polls one loop turn runs (beyond the tasks ready when it began) before the loop
/// polls for I/O and timers again.
pub(crate) const POLLS_PER_TURN: usize = 64;

/// `Executor::current` while no task is polled: no id (a task's key is below `u32::MAX`) and
/// not `MAIN_ID`.
const NO_TASK: u64 = u32::MAX as u64;

/// Tasks and the ready queue of one loop.
pub(crate) struct Executor {
    /// The live tasks by slab key; a task's id (key and generation) is in its header, so a
    /// stale id (a finished task's, its key reused) is told apart without a generation here.
    tasks: RefCell<Slab<Rc<dyn Runnable>>>,
    next_gen: Cell<u32>,
    ready: ready::ReadyQueue,
    main_woken: Cell<bool>,
    /// The id of the task being polled (`MAIN_ID` for the main future, `NO_TASK` for none).
    current: Cell<u64>,
    /// Debug mode's slow-poll watch; `None` when debug mode is off.
    pub(crate) slow_poll: Option<info::SlowPoll>,
    /// The names of the live tasks spawned with a name, by task id.
    names: RefCell<std::collections::HashMap<u64, Rc<str>>>,
}

impl Default for Executor {
    fn default() -> Self {
        Executor {
            tasks: RefCell::default(),
            next_gen: Cell::default(),
            ready: ready::ReadyQueue::default(),
            main_woken: Cell::default(),
            current: Cell::new(NO_TASK),
            slow_poll: None,
            names: RefCell::default(),
        }
    }
}

impl Executor {
    /// An executor; `slow_poll` is debug mode's watch (`None`: debug mode off).
    pub(crate) fn with_slow_poll(slow_poll: Option<info::SlowPoll>) -> Executor {
        Executor {
            slow_poll,
            ..Executor::default()
        }
    }
}

fn split_id(id: u64) -> (usize, u32) {
    ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
}

impl Executor {
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        shared: &Arc<Shared>,
        counters: &Counters,
        spawned_at: &'static Location<'static>,
        name: Option<Rc<str>>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        assert!(
            key < u32::MAX as usize,
            "ringloop: more than 2^32 live tasks"
        );
        let generation = self.next_gen.get();
        self.next_gen.set(generation.wrapping_add(1));
        let id = (u64::from(generation) << 32) | key as u64;
        #[cfg(feature = "tracing")]
        let (header, span) = {
            let span = trace::task_span(id, name.as_deref(), spawned_at);
            let span_id = span.id().map(|s| s.into_u64());
            (
                TaskWaker::new(id, shared.clone(), true).traced(span_id),
                span,
            )
        };
        #[cfg(not(feature = "tracing"))]
        let (header, span) = (TaskWaker::new(id, shared.clone(), true), ());
        let task = Rc::new(Task::new(future, Arc::new(header), spawned_at, span));
        if let Some(name) = name {
            self.names.borrow_mut().insert(id, name);
        }
        entry.insert(task.clone());
        drop(tasks);
        self.ready.push_back(id);
        Counters::bump(&counters.tasks_spawned);
        JoinHandle::new(task)
    }

    /// The loop took task `id`'s wake from the remote queue: clears its remote flag (see
    /// `TaskWaker::take_remote_wake`) and says whether it must be queued (false once it finished).
    pub(crate) fn take_remote_wake(&self, id: u64) -> bool {
        let (key, _) = split_id(id);
        match self.tasks.borrow().get(key) {
            Some(t) if t.header().id == id => t.header().take_remote_wake(),
            _ => false,
        }
    }

    /// Queues a woken task (or the main future).
    #[inline]
    pub(crate) fn schedule(&self, id: u64) {
        if id == MAIN_ID {
            self.main_woken.set(true);
        } else {
            self.ready.push_back(id);
        }
    }

    /// Clears and returns whether the main future was woken.
    pub(crate) fn take_main_woken(&self) -> bool {
        self.main_woken.replace(false)
    }

    pub(crate) fn has_work(&self) -> bool {
        self.main_woken.get() || !self.ready.is_empty()
    }

    /// Whether a spawned task (not the main future) waits in the ready queue.
    pub(crate) fn has_ready_tasks(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Polls the tasks that were ready when the call began, and the tasks those polls wake, up to
    /// `POLLS_PER_TURN` polls in all (or the ready count, if larger). Returns how many it polled.
    /// Inline in the loop's turn, its caller.
    #[inline(always)]
    pub(crate) fn run_ready(&self, counters: &Counters) -> usize {
        // Everything ready now, plus what those polls wake, up to a bound: a task woken by another
        // task runs in the same turn (no I/O poll between the two), yet I/O is still polled at
        // least every `POLLS_PER_TURN` polls.
        let n = self.ready.len().max(POLLS_PER_TURN);
        let mut polled = 0;
        for _ in 0..n {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let (key, _) = split_id(id);
            let Some(task) = self.tasks.borrow().get(key).map(Rc::as_ptr) else {
                continue; // finished since it was woken
            };
            // A task leaves the slab only here (below, after its last use) and in `cancel_all`,
            // which runs when the loop closes, never while one of its tasks is polled (closing
            // takes the `EventLoop` by `&mut`, which `run_until_complete` holds). A spawn
            // during the poll may move the slab's entries, not the task.
            // SAFETY: so the slab's `Rc` keeps the task alive through this iteration.
            let task = unsafe { &*task };
            crate::coop::reset();
            self.current.set(id);
            // The id is checked by the task itself: a newer task in the slot is not polled.
            let ran = match &self.slow_poll {
                None => task.run(id),
                Some(watch) => self.run_watched(watch, task, id),
            };
            self.current.set(NO_TASK);
            let Some(finished) = ran else {
                continue; // finished since it was woken, and its slot reused
            };
            Counters::bump(&counters.task_polls);
            polled += 1;
            if finished {
                self.remove_finished(key, id);
            }
        }
        polled
    }

    /// `task.run(id)` timed for debug mode's slow-poll watch (out of line: debug mode is rare).
    #[cold]
    #[inline(never)]
    fn run_watched(&self, watch: &info::SlowPoll, task: &dyn Runnable, id: u64) -> Option<bool> {
        // Timed on the loop's clock: a paused clock makes every poll take no time.
        let started = crate::time::busy_now();
        let ran = task.run(id);
        if ran.is_some() {
            let took = crate::time::busy_now().saturating_sub(started);
            watch.check(|| self.info(task, id), took);
        }
        ran
    }

    /// Takes finished task `id` out of the slab. The slab's `Rc` is dropped after the borrow
    /// ends: it may be the last one, and the task's drop may run user code (a detached task's
    /// span, its header's last waker) that spawns.
    fn remove_finished(&self, key: usize, id: u64) {
        let mut tasks = self.tasks.borrow_mut();
        if matches!(tasks.get(key), Some(t) if t.header().id == id) {
            let task = tasks.remove(key);
            drop(tasks);
            self.forget_name(id);
            drop(task);
        }
    }

    /// Whether the main future was woken and waits for its poll.
    pub(crate) fn main_woken(&self) -> bool {
        self.main_woken.get()
    }

    /// Cancels every task (dropping its future) and forgets the ready queue.
    pub(crate) fn cancel_all(&self) {
        // Dropping a future may spawn or wake; repeat until nothing is left.
        loop {
            let tasks: Vec<_> = self.tasks.borrow_mut().drain().collect();
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                task.cancel();
            }
            self.names.borrow_mut().clear();
        }
        self.ready.clear();
        self.main_woken.set(false);
    }

    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Every live task, in slab order.
    pub(crate) fn tasks(&self) -> Vec<TaskInfo> {
        self.tasks
            .borrow()
            .iter()
            .map(|(_, task)| self.info(&**task, task.header().id))
            .collect()
    }

    /// The task being polled, if it is a spawned task.
    pub(crate) fn current_task(&self) -> Option<TaskInfo> {
        let id = self.current.get();
        if id == MAIN_ID || id == NO_TASK {
            return None;
        }
        let (key, _) = split_id(id);
        let task = match self.tasks.borrow().get(key) {
            Some(t) if t.header().id == id => t.clone(),
            _ => return None,
        };
        Some(self.info(&*task, id))
    }

    fn info(&self, task: &dyn Runnable, id: u64) -> TaskInfo {
        let name = if self.names.borrow().is_empty() {
            None
        } else {
            self.names.borrow().get(&id).cloned()
        };
        task.info(id, name)
    }

    fn forget_name(&self, id: u64) {
        if !self.names.borrow().is_empty() {
            self.names.borrow_mut().remove(&id);
        }
    }

    /// Marks the main future as being polled (or not).
    pub(crate) fn set_main_current(&self, polling: bool) {
        self.current.set(if polling { MAIN_ID } else { NO_TASK });
    }
}
