//! The blocking pool behind `spawn_blocking` and the epoll backend's file ops: a thread pool for
//! work that would stall the loop. It grows on demand (up to
//! 512 threads) and a thread exits after 10 s without work.
//!
//! The hand-off (model-checked in `loom_model` below): `execute` queues the job under the lock
//! and wakes one idle thread if there are at least as many idle threads as queued jobs, else
//! starts a thread (or, at the cap, leaves the job to a busy thread, which looks at the queue
//! before it idles). So **every job runs exactly once, and no job waits while a thread sleeps
//! idle**. A job that panics is contained: its thread goes on, and the thread count stays true.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::Duration;

use crate::sync::{Condvar, Mutex, MutexGuard, thread};

const MAX_THREADS: usize = 512;
const KEEP_ALIVE: Duration = Duration::from_secs(10);

pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    idle: usize,
    threads: usize,
    /// Under the model checker only: threads exit once the queue is empty (loom's condition
    /// variable never times out, and a model must end with every thread done).
    #[cfg(ringloop_loom)]
    closing: bool,
}

struct Pool {
    state: Mutex<State>,
    cond: Condvar,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        }
    }
}

/// Runs `job` on a pool thread.
pub(crate) fn execute(job: Job) {
    pool().execute(job);
}

fn pool() -> &'static Arc<Pool> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Arc::new(Pool::default()))
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn execute(self: &Arc<Self>, job: Job) {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.queue.len() <= state.idle {
            drop(state);
            self.cond.notify_one();
            return;
        }
        if state.threads >= MAX_THREADS {
            return; // a busy thread takes it when it is done
        }
        state.threads += 1;
        drop(state);
        let pool = self.clone();
        let spawned = thread::Builder::new()
            .name("ringloop-blocking".into())
            .spawn(move || pool.work());
        if spawned.is_err() {
            let mut state = self.lock();
            state.threads -= 1;
            if state.threads == 0 {
                // No thread can be made and none exists: run the work here rather than never.
                let job = state.queue.pop_back();
                drop(state);
                if let Some(job) = job {
                    job();
                }
            }
        }
    }

    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // A panicking job must not end the thread: it would leave `threads` counting a
                // thread that is gone, and at the cap jobs would queue forever.
                if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
                    drop_contained(payload);
                }
                state = self.lock();
                continue;
            }
            #[cfg(ringloop_loom)]
            if state.closing {
                state.threads -= 1;
                return;
            }
            state.idle += 1;
            let (next, timeout) = self
                .cond
                .wait_timeout(state, KEEP_ALIVE)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// Wakes `waker`, containing a panic of its `wake` (the panic hook has reported it), as
/// `drop_contained` contains a destructor's.
///
/// The loop calls wakers it did not make: a ringloop future polled by another executor (a
/// combinator's, a foreign runtime's, a hand-written `Wake`) registers that executor's waker, and
/// the loop wakes it from its reap, its timers or a finished task. A panic there must not unwind
/// through the loop's bookkeeping half done (a completion recorded but the rest of the batch not
/// dispatched, timers taken from the store but not woken): every waker of the batch is woken.
pub(crate) fn wake_contained(waker: Waker) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || waker.wake())) {
        drop_contained(payload);
    }
}

/// Drops `value`, containing any panic its destructor raises (and the panic's own payload).
pub(crate) fn drop_contained<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        // A payload whose own destructor panics is leaked rather than allowed to unwind.
        if let Err(inner) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(inner);
        }
    }
}

#[cfg(all(test, ringloop_loom))]
mod loom_model {
    use super::*;
    use crate::sync::{AtomicU32, Ordering};

    /// Waits (yielding to the model) until `done` says so.
    fn spin_until(done: impl Fn() -> bool) {
        while !done() {
            thread::yield_now();
        }
    }

    /// Two jobs handed over one after the other, a thread possibly idle, busy or not started
    /// yet for the second: each job runs exactly once, and the pool ends with its count true.
    #[test]
    fn loom_every_job_runs_once_and_none_waits_beside_an_idle_thread() {
        loom::model(|| {
            let pool = Arc::new(Pool::default());
            let ran = Arc::new(AtomicU32::new(0));
            for _ in 0..2 {
                let ran = ran.clone();
                pool.execute(Box::new(move || {
                    ran.fetch_add(1, Ordering::AcqRel);
                }));
            }
            // A lost hand-off leaves a job queued forever: this spin never ends, and the model
            // fails on its branch limit.
            spin_until(|| ran.load(Ordering::Acquire) == 2);
            {
                let mut state = pool.lock();
                state.closing = true;
            }
            pool.cond.notify_all();
            spin_until(|| pool.lock().threads == 0);
            assert_eq!(ran.load(Ordering::Acquire), 2);
            assert!(pool.lock().queue.is_empty());
        });
    }

    /// A job that panics leaves its thread running and the count true: the next job runs on it.
    #[test]
    fn loom_a_panicking_job_does_not_lose_its_thread() {
        loom::model(|| {
            let pool = Arc::new(Pool::default());
            pool.execute(Box::new(|| panic!("a job panicked")));
            let ran = Arc::new(AtomicU32::new(0));
            let r = ran.clone();
            pool.execute(Box::new(move || {
                r.fetch_add(1, Ordering::AcqRel);
            }));
            spin_until(|| ran.load(Ordering::Acquire) == 1);
            pool.lock().closing = true;
            pool.cond.notify_all();
            spin_until(|| pool.lock().threads == 0);
        });
    }
}
