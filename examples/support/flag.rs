//! A one-bit signal between two tasks, or a thread and a task: `set` raises it and wakes the
//! waiter; `wait` returns once it is raised, lowering it. The same code runs on every runtime, so
//! a wake benchmark (benches/tasks.rs, examples/wake.rs) measures the runtime's scheduling, not a
//! channel's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

/// A one-bit signal between two tasks (or a thread and a task): `set` raises it and wakes the
/// waiter; `wait` returns once it is raised, lowering it. The same code runs on every runtime, so
/// a wake benchmark measures the runtime's scheduling, not a channel's.
#[derive(Default)]
pub struct Flag {
    raised: AtomicBool,
    waiter: Mutex<Option<Waker>>,
}

impl Flag {
    pub fn set(&self) {
        self.raised.store(true, Ordering::Release);
        let waker = self.waiter.lock().unwrap().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.raised.swap(false, Ordering::Acquire) {
                return Poll::Ready(());
            }
            *self.waiter.lock().unwrap() = Some(cx.waker().clone());
            // A `set` between the check and storing the waker would be lost without this.
            if self.raised.swap(false, Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
