//! Task introspection and debug mode: [`TaskInfo`], what the loop knows about each task, and the
//! slow-poll watch that names a task whose single poll blocked the loop.

use std::fmt;
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

/// What the loop knows about one task (asyncio's `Task` as `current_task` and `all_tasks` show
/// it): from [`current_task`](crate::current_task), [`EventLoop::tasks`](crate::EventLoop::tasks)
/// and the debug mode's slow-poll reports.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let task = ringloop::spawn_named("greeter", async {
///         let me = ringloop::current_task().unwrap();
///         assert_eq!(me.name(), Some("greeter"));
///         assert!(me.spawned_at().file().ends_with(".rs"));
///     });
///     task.await.unwrap();
/// });
/// ```
#[derive(Clone)]
pub struct TaskInfo {
    id: u64,
    name: Option<Rc<str>>,
    spawned_at: &'static Location<'static>,
    polls: u64,
}

impl TaskInfo {
    pub(crate) fn new(
        id: u64,
        name: Option<Rc<str>>,
        spawned_at: &'static Location<'static>,
        polls: u64,
    ) -> TaskInfo {
        TaskInfo {
            id,
            name,
            spawned_at,
            polls,
        }
    }

    /// The task's id, unique among the loop's live tasks (`u64::MAX` is the main future, the one
    /// `run_until_complete` runs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name given with [`spawn_named`](crate::spawn_named), if any (`"main"` for the main
    /// future).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where the task was spawned (for the main future: where `run_until_complete` was called).
    pub fn spawned_at(&self) -> &'static Location<'static> {
        self.spawned_at
    }

    /// How many times the task was polled so far.
    pub fn polls(&self) -> u64 {
        self.polls
    }
}

impl fmt::Debug for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskInfo")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("spawned_at", &format_args!("{}", self.spawned_at))
            .field("polls", &self.polls)
            .finish()
    }
}

/// `task "name" (spawned at src/main.rs:10:5)`, or `task spawned at ...` without a name.
impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "task {name:?} (spawned at {})", self.spawned_at),
            None => write!(f, "task spawned at {}", self.spawned_at),
        }
    }
}

/// The function a loop in debug mode calls for a slow poll.
pub(crate) type SlowPollHook = Rc<dyn Fn(&TaskInfo, Duration)>;

/// Debug mode's slow-poll watch.
#[derive(Clone)]
pub(crate) struct SlowPoll {
    pub(crate) threshold: Duration,
    /// `None`: print a warning on stderr.
    pub(crate) hook: Option<SlowPollHook>,
}

impl SlowPoll {
    /// A poll of `task` took `took`: report it if that is at least the threshold.
    pub(crate) fn check(&self, task: impl FnOnce() -> TaskInfo, took: Duration) {
        if took < self.threshold {
            return;
        }
        let task = task();
        match &self.hook {
            // The user's hook runs between two polls, with a finished task not yet taken off
            // the loop's list: its panic is contained (the panic hook reports it), as a panic
            // in a task's destructor is, or it would unwind through the loop's bookkeeping.
            Some(hook) => {
                let run = std::panic::AssertUnwindSafe(|| hook(&task, took));
                if let Err(payload) = std::panic::catch_unwind(run) {
                    crate::blocking::drop_contained(payload);
                }
            }
            None => eprintln!(
                "ringloop: {task} blocked the loop for {:.1} ms in one poll (debug mode warns \
                 from {:.1} ms; move blocking work to ringloop::spawn_blocking)",
                took.as_secs_f64() * 1e3,
                self.threshold.as_secs_f64() * 1e3
            ),
        }
    }
}
