//! Task wakers. A waker is `Send + Sync`: on the loop's own thread it pushes the task straight onto
//! the local ready queue; from any other thread it goes through the loop's remote queue and, if the
//! loop is asleep, its eventfd.

use std::sync::Arc;
use std::task::Wake;

use crate::driver::Shared;
use crate::sync::{AtomicBool, Ordering};

/// The id reserved for the future given to `run_until_complete`.
pub(crate) const MAIN_ID: u64 = u64::MAX;

/// What a task's waker points at.
#[derive(Debug)]
pub(crate) struct TaskWaker {
    /// Slab key in the low 32 bits, generation in the high 32, or [`MAIN_ID`].
    pub(crate) id: u64,
    /// Set while the task sits in a ready queue, so repeated wakes queue it once.
    scheduled: AtomicBool,
    pub(crate) shared: Arc<Shared>,
}

impl TaskWaker {
    pub(crate) fn new(id: u64, shared: Arc<Shared>, scheduled: bool) -> Self {
        TaskWaker {
            id,
            scheduled: AtomicBool::new(scheduled),
            shared,
        }
    }

    /// Called right before the task is polled: a wake from now on queues it again.
    ///
    /// A read-modify-write, not a store: a remote waker publishes its data and then swaps the
    /// flag to true. With a plain store here, the loop's store and its reads in the poll could
    /// be ordered against the waker's write and swap as in the store-buffering pattern: the
    /// swap reads the old `true` (so the waker queues nothing) while the poll reads the data
    /// from before the waker wrote it (so the task goes back to sleep), and the wake is lost.
    /// Both sides' RMWs on one flag are totally ordered: either the waker's swap comes after
    /// ours and reads `false` (it queues the task), or ours comes after and acquires what the
    /// waker released (the poll sees its data).
    pub(crate) fn clear_scheduled(&self) {
        self.scheduled.swap(false, Ordering::AcqRel);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if !crate::context::schedule_local(&self.shared, self.id) {
            self.shared.push_remote(self.id);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;

    /// The loop clears the flag of a queued task and polls it (the poll reads what the waker
    /// publishes); another thread publishes and wakes. Either the poll saw the data or the task
    /// was queued again. Fails with `clear_scheduled` as a plain store (store buffering).
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
            let (mut ids, mut jobs) = (Vec::new(), Vec::new());
            shared.take_remote(&mut ids, &mut jobs);
            assert!(
                seen || ids == [7],
                "the poll missed the data and the task was not queued again"
            );
        });
    }
}
