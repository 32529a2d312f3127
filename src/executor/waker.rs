//! Task wakers. A waker is `Send + Sync`: on the loop's own thread it pushes the task straight onto
//! the local ready queue; from any other thread it goes through the loop's remote queue and, if the
//! loop is asleep, its eventfd.
//!
//! Two flags keep a task from being queued twice, one per path (model-checked in `loom_model`
//! below):
//! - `queued`: the task sits in the loop's local ready queue. Only the loop's thread touches it,
//!   so plain (relaxed) loads and stores do: the hot path, a task woken by another task or by
//!   I/O on its own loop, takes no locked instruction.
//! - `remote`: an id of the task sits in the remote queue. A waker on another thread swaps it to
//!   true (and queues the id if it was false); the loop swaps it back to false when it takes the
//!   id, and only then polls. Both sides are read-modify-writes on one flag, so they are totally
//!   ordered: a waker that finds `true` comes before the loop's swap, which acquires what the
//!   waker published, and the poll that follows sees it. **A wake from another thread is never
//!   lost.** (A single flag cleared by a plain store before each poll could lose one: store
//!   buffering let the waker's swap read a stale `true` while the poll read stale data.)

use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Wake, Waker};

use crate::driver::Shared;
use crate::sync::{AtomicBool, Ordering};

/// The id reserved for the future given to `run_until_complete`.
pub(crate) const MAIN_ID: u64 = u64::MAX;

/// What a task's waker points at.
#[derive(Debug)]
pub(crate) struct TaskWaker {
    /// Slab key in the low 32 bits, generation in the high 32, or [`MAIN_ID`].
    pub(crate) id: u64,
    /// Set while the task sits in the loop's local ready queue. The loop's thread alone uses it.
    queued: AtomicBool,
    /// Set while an id of the task sits in the loop's remote queue (see the module docs).
    remote: AtomicBool,
    pub(crate) shared: Arc<Shared>,
    /// The id of the task's `tracing` span (cargo feature `tracing`), for its waker events.
    #[cfg(feature = "tracing")]
    span: Option<u64>,
}

impl TaskWaker {
    pub(crate) fn new(id: u64, shared: Arc<Shared>, queued: bool) -> Self {
        TaskWaker {
            id,
            queued: AtomicBool::new(queued),
            remote: AtomicBool::new(false),
            shared,
            #[cfg(feature = "tracing")]
            span: None,
        }
    }

    /// Records the task's `tracing` span id (cargo feature `tracing`).
    #[cfg(feature = "tracing")]
    pub(crate) fn traced(mut self, span: Option<u64>) -> Self {
        self.span = span;
        self
    }

    /// The task's `tracing` span id, if it has one (a subscriber wanted it).
    #[cfg(feature = "tracing")]
    pub(crate) fn span_id(&self) -> Option<u64> {
        self.span
    }

    /// Called on the loop's thread right before the task is polled: a wake from now on queues
    /// it again.
    #[inline]
    pub(crate) fn clear_scheduled(&self) {
        self.queued.store(false, Ordering::Relaxed);
    }

    /// On the loop's thread: marks the task queued; false if it already was.
    fn queue_locally(&self) -> bool {
        if self.queued.load(Ordering::Relaxed) {
            return false;
        }
        self.queued.store(true, Ordering::Relaxed);
        true
    }

    /// On the loop's thread, which took this task's id from the remote queue: clears `remote`
    /// (a read-modify-write that acquires what the waker published) and says whether the task
    /// must be queued (it is not already).
    pub(crate) fn take_remote_wake(&self) -> bool {
        self.remote.swap(false, Ordering::AcqRel);
        self.queue_locally()
    }
}

impl TaskWaker {
    /// Queues the task: straight onto the local ready queue on its loop's thread, else through
    /// the remote queue.
    #[inline]
    fn wake_task(&self) {
        if crate::executor::context::schedule_local(&self.shared, self.id, || self.queue_locally())
        {
            return;
        }
        if !self.remote.swap(true, Ordering::AcqRel) {
            self.shared.push_remote(self.id);
        }
    }
}

impl Wake for TaskWaker {
    #[inline]
    fn wake(self: Arc<Self>) {
        self.wake_task();
    }

    #[inline]
    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_task();
    }
}

/// A task's waker, built by hand rather than through `Wake` so that a task can be polled with
/// a waker that borrows its `Arc<TaskWaker>` ([`borrowed`]) instead of keeping a `Waker` of its
/// own (16 bytes a task) or cloning one per poll. Clones are ordinary owned wakers.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_by_ref_raw, drop_raw);

/// # Safety (all four)
///
/// `data` is `Arc::as_ptr` of a live `Arc<TaskWaker>`: owned by the waker (`wake_raw`,
/// `drop_raw`, and what `clone_raw` returns), or borrowed for the waker's lifetime.
unsafe fn clone_raw(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a live `Arc<TaskWaker>`'s pointer; the new waker owns the count added.
    unsafe { Arc::increment_strong_count(data.cast::<TaskWaker>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake_raw(data: *const ()) {
    // SAFETY: this waker owns one count of the `Arc`, given back here.
    let waker = unsafe { Arc::from_raw(data.cast::<TaskWaker>()) };
    waker.wake_task();
}

unsafe fn wake_by_ref_raw(data: *const ()) {
    // SAFETY: the `Arc` is alive while any waker of it is.
    unsafe { &*data.cast::<TaskWaker>() }.wake_task();
}

unsafe fn drop_raw(data: *const ()) {
    // SAFETY: this waker owns one count of the `Arc`, given back here.
    drop(unsafe { Arc::from_raw(data.cast::<TaskWaker>()) });
}

/// A waker that borrows `header`, to poll its task with: no count is taken, so it must not
/// be dropped as an owned one (`ManuallyDrop`) and must not outlive `header`. Its clones
/// are owned wakers.
pub(crate) fn borrowed(header: &Arc<TaskWaker>) -> std::mem::ManuallyDrop<Waker> {
    let data = Arc::as_ptr(header).cast::<()>();
    // SAFETY: the caller keeps `header` alive while it uses the waker, and `ManuallyDrop`
    // keeps `drop_raw` from giving back a count this waker never took.
    std::mem::ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) })
}

#[cfg(all(test, ringloop_loom))]
mod loom_model {
    use super::*;

    /// Takes the remote queue as the loop does: each id's flag is cleared, and the ids whose
    /// task must be queued are returned.
    fn drain(shared: &Shared, waker: &TaskWaker) -> Vec<u64> {
        let (mut ids, mut jobs) = (Vec::new(), Vec::new());
        shared.take_remote(&mut ids, &mut jobs);
        ids.retain(|&id| id == waker.id && waker.take_remote_wake());
        ids
    }

    /// The loop polls a queued task (the poll reads what the waker publishes) while another
    /// thread publishes and wakes it. Either the poll saw the data or the task is queued again.
    #[test]
    fn loom_a_remote_wake_racing_a_poll_is_never_lost() {
        loom::model(|| {
            let shared = Arc::new(Shared::new().unwrap());
            let waker = Arc::new(TaskWaker::new(7, shared.clone(), true));
            let data = Arc::new(AtomicBool::new(false));
            let (w, d) = (waker.clone(), data.clone());
            let remote = crate::sync::thread::spawn(move || {
                d.store(true, Ordering::Release);
                w.wake_by_ref();
            });
            // `Task::run`: clear the flag, then poll.
            waker.clear_scheduled();
            let seen = data.load(Ordering::Acquire);
            remote.join().unwrap();
            let again = drain(&shared, &waker);
            assert!(
                seen || again == [7],
                "the poll missed the data and the task was not queued again"
            );
        });
    }

    /// The same with an earlier remote wake still in the remote queue: the second waker may
    /// find `remote` set and queue nothing, so the loop's taking of the first id must make the
    /// poll that follows see the second waker's data. Fails with `take_remote_wake` clearing
    /// the flag with a plain store (store buffering).
    #[test]
    fn loom_a_remote_wake_behind_a_pending_one_is_never_lost() {
        loom::model(|| {
            let shared = Arc::new(Shared::new().unwrap());
            let waker = Arc::new(TaskWaker::new(7, shared.clone(), false));
            // An earlier wake from another thread, not taken yet.
            waker.wake_by_ref();
            let data = Arc::new(AtomicBool::new(false));
            let (w, d) = (waker.clone(), data.clone());
            let remote = crate::sync::thread::spawn(move || {
                d.store(true, Ordering::Release);
                w.wake_by_ref();
            });
            // The loop takes the first wake, then polls.
            let first = drain(&shared, &waker);
            let seen = if first == [7] {
                waker.clear_scheduled();
                data.load(Ordering::Acquire)
            } else {
                false
            };
            remote.join().unwrap();
            let again = drain(&shared, &waker);
            assert!(
                seen || again == [7],
                "the poll missed the data and the task was not queued again"
            );
        });
    }
}
