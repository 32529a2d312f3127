//! `spawn` and `spawn_named`: a task on the loop running on this thread.

use std::future::Future;
use std::rc::Rc;

use super::JoinHandle;
use super::context::current;

/// Spawns a task on the loop running on this thread and returns its [`JoinHandle`]. The future
/// need not be `Send`. Dropping the handle detaches the task; it keeps running (use
/// [`JoinHandle::abort_on_drop`] to cancel it with its handle instead).
///
/// # Scheduling
///
/// Tasks run in turn; a task runs until it awaits something that is not ready. On the epoll
/// backend an op whose data is already there completes inside the poll that started it, up to a
/// cooperative budget of 128 per poll, after which the task yields; on io_uring most ops complete
/// through the ring, one per task per turn. The order in which tasks interleave therefore
/// differs between the backends: after handing work to another task (a queue, a channel), call
/// [`yield_now`](crate::yield_now) if that task should run before this one reads on.
///
/// # Panics
///
/// Panics if no event loop is running on this thread.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let a = ringloop::spawn(async { 1 });
///     let b = ringloop::spawn(async { 2 });
///     assert_eq!(a.await.unwrap() + b.await.unwrap(), 3);
/// });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    spawn_inner(future, std::panic::Location::caller(), None)
}

/// Spawns a task with a name, which introspection ([`current_task`](crate::current_task),
/// [`EventLoop::tasks`](crate::EventLoop::tasks)) and
/// debug mode's slow-poll warnings show; otherwise as [`spawn`].
///
/// # Panics
///
/// Panics if no event loop is running on this thread.
///
/// # Examples
///
/// ```
/// ringloop::run(async {
///     let t = ringloop::spawn_named("worker-1", async { ringloop::current_task().unwrap() });
///     assert_eq!(t.await.unwrap().name(), Some("worker-1"));
/// });
/// ```
#[track_caller]
pub fn spawn_named<F>(name: impl Into<String>, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let name: String = name.into();
    spawn_inner(future, std::panic::Location::caller(), Some(Rc::from(name)))
}

fn spawn_inner<F>(
    future: F,
    spawned_at: &'static std::panic::Location<'static>,
    name: Option<Rc<str>>,
) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match current() {
        Some(inner) => inner.spawn(future, spawned_at, name),
        None => panic!(
            "ringloop::spawn was called with no event loop running on this thread: call it from a \
             future run by EventLoop::run_until_complete or ringloop::run, or use EventLoop::spawn"
        ),
    }
}
