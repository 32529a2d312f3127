//! The storms of tests/sync.rs: futures of `ringloop::sync` dropped at random points by a
//! seeded generator, with counts that must balance and rounds that hang (until `LIMIT` fails
//! them) if a dropped waiter loses what it had been woken for.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use ringloop::sync::{BoundedSemaphore, Condition, Lock, Queue, Semaphore};
use ringloop::time::timeout;
use ringloop::{spawn, yield_now};

use crate::common::Rng;

/// Generous: a storm takes milliseconds; a lost wake-up hangs it until this fails the test.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Runs `inner` until it has been polled `polls` times, then drops it (before polling it that
/// time: after a wake-up it may not have seen yet). With `spurious`, each `Pending` asks to be
/// polled again at once, so the drop may also come while the waiter is still waiting. `None`
/// if dropped.
pub struct DropAt<F> {
    inner: Option<Pin<Box<F>>>,
    polls: u32,
    spurious: bool,
}

impl<F: Future> Future for DropAt<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if self.polls == 0 {
            self.inner = None;
            return Poll::Ready(None);
        }
        self.polls -= 1;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                if self.spurious {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }
}

/// `fut`, dropped after a random number of polls (0 to 3), or left to finish.
pub fn maybe_drop<F: Future>(rng: &RefCell<Rng>, fut: F) -> DropAt<F> {
    let mut rng = rng.borrow_mut();
    let polls = match rng.below(4) {
        0 => u32::MAX,
        _ => rng.below(4) as u32,
    };
    DropAt {
        inner: Some(Box::pin(fut)),
        polls,
        spurious: rng.below(2) == 0,
    }
}

/// Yields a random number of times (0 to 2).
async fn dawdle(rng: &RefCell<Rng>) {
    let n = rng.borrow_mut().below(3);
    for _ in 0..n {
        yield_now().await;
    }
}

/// Waits (yielding) until `done()`, at most `LIMIT`.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    timeout(LIMIT, async {
        while !done() {
            yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: a wake-up was lost (still waiting after {LIMIT:?})"));
}

/// Producers and consumers of a bounded queue, every put and get dropped at random: each item
/// put is got exactly once, and nobody waits forever while an item or a slot is free.
pub async fn queue_storm(seed: u64) {
    const PRODUCERS: u64 = 4;
    const ITEMS: u64 = 200;
    let q = Rc::new(Queue::new(3));
    let rng = Rc::new(RefCell::new(Rng(seed)));
    let got = Rc::new(RefCell::new(Vec::new()));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (q, rng) = (q.clone(), rng.clone());
        producers.push(spawn(async move {
            for i in 0..ITEMS {
                let item = p * ITEMS + i;
                while maybe_drop(&rng, q.put(item)).await.is_none() {}
                dawdle(&rng).await;
            }
        }));
    }
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let (q, rng, got) = (q.clone(), rng.clone(), got.clone());
            spawn(async move {
                loop {
                    if let Some(item) = maybe_drop(&rng, q.get()).await {
                        got.borrow_mut().push(item);
                        q.task_done().unwrap();
                    }
                    dawdle(&rng).await;
                }
            })
        })
        .collect();
    for p in producers {
        timeout(LIMIT, p).await.expect("a producer hung").unwrap();
    }
    let total = (PRODUCERS * ITEMS) as usize;
    until("queue consumers", || got.borrow().len() == total).await;
    timeout(LIMIT, q.join()).await.expect("join hung");
    for c in consumers {
        c.abort();
    }
    let got: BTreeSet<u64> = got.borrow().iter().copied().collect();
    assert_eq!(got.len(), total, "an item was got twice");
    assert_eq!(got, (0..PRODUCERS * ITEMS).collect(), "an item was lost");
    assert!(q.empty() && q.get_nowait().is_err());
}

/// `fut`, dropped at random as by `maybe_drop`, but rarely enough that a task that quits at its
/// first drop makes a few calls first.
fn rarely<F: Future>(rng: &RefCell<Rng>, fut: F) -> DropAt<F> {
    let mut d = maybe_drop(rng, fut);
    if rng.borrow_mut().below(6) != 0 {
        d.polls = u32::MAX;
    }
    d
}

/// A wait on a primitive, made anew for each call.
pub type Wait = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// One thing at a time: many tasks `wait`, each quitting at its first dropped wait (so none
/// comes back to take what another lost), and each round `release` frees exactly one thing and
/// waits until a waiter has it. A waiter woken for it and dropped before it ran must pass it on:
/// if it does not, nothing else ever wakes the others, and the round hangs.
pub async fn relay(seed: u64, wait: Wait, release: impl Fn()) {
    const WAITERS: usize = 30;
    let rng = Rc::new(RefCell::new(Rng(seed)));
    let (served, waiting) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(WAITERS)));
    for _ in 0..WAITERS {
        let (wait, rng, served, waiting) =
            (wait.clone(), rng.clone(), served.clone(), waiting.clone());
        spawn(async move {
            while rarely(&rng, wait()).await.is_some() {
                served.set(served.get() + 1);
            }
            waiting.set(waiting.get() - 1);
        });
    }
    yield_now().await;
    for round in 1..=40 {
        if waiting.get() == 0 {
            break;
        }
        release();
        until("a relay round", || {
            served.get() == round || waiting.get() == 0
        })
        .await;
    }
}

/// Producers and consumers of a bounded queue that quit at their first dropped put or get,
/// so no later call can make up for a wake-up a dropped waiter lost: once the producers are
/// done, every item put must reach a consumer still waiting (or the loop, once every consumer
/// quit), and no producer may wait while the consumers wait too.
pub async fn queue_quitters_storm(seed: u64) {
    let q = Rc::new(Queue::new(2));
    let rng = Rc::new(RefCell::new(Rng(seed)));
    let put = Rc::new(RefCell::new(Vec::new()));
    let got = Rc::new(RefCell::new(Vec::new()));
    let (producing, consuming) = (Rc::new(Cell::new(4)), Rc::new(Cell::new(6)));
    for p in 0..producing.get() {
        let (q, rng, put, producing) = (q.clone(), rng.clone(), put.clone(), producing.clone());
        spawn(async move {
            for i in 0..50 {
                let item = p * 1000 + i;
                if rarely(&rng, q.put(item)).await.is_none() {
                    break;
                }
                put.borrow_mut().push(item);
                dawdle(&rng).await;
            }
            producing.set(producing.get() - 1);
        });
    }
    for _ in 0..consuming.get() {
        let (q, rng, got, consuming) = (q.clone(), rng.clone(), got.clone(), consuming.clone());
        spawn(async move {
            while let Some(item) = rarely(&rng, q.get()).await {
                got.borrow_mut().push(item);
                dawdle(&rng).await;
            }
            consuming.set(consuming.get() - 1);
        });
    }
    until("quitting producers and consumers", || {
        if consuming.get() == 0 {
            while let Ok(item) = q.get_nowait() {
                got.borrow_mut().push(item);
            }
        }
        producing.get() == 0 && got.borrow().len() == put.borrow().len()
    })
    .await;
    let mut put = put.borrow().clone();
    let mut got = got.borrow().clone();
    put.sort();
    got.sort();
    assert_eq!(got, put, "items lost or doubled");
}

/// Anything held (a permit, a guard).
pub trait Held {}
impl<T> Held for T {}

/// What `permit_storm` needs of a semaphore or a lock.
pub trait Permits: 'static {
    async fn take(&self) -> Box<dyn Held + '_>;
    fn try_take(&self) -> Option<Box<dyn Held + '_>>;
    fn free(&self) -> usize;
}

impl Permits for Semaphore {
    async fn take(&self) -> Box<dyn Held + '_> {
        Box::new(self.acquire().await)
    }
    fn try_take(&self) -> Option<Box<dyn Held + '_>> {
        self.try_acquire().map(|p| Box::new(p) as Box<dyn Held>)
    }
    fn free(&self) -> usize {
        self.available_permits()
    }
}

impl Permits for BoundedSemaphore {
    async fn take(&self) -> Box<dyn Held + '_> {
        Box::new(self.acquire().await)
    }
    fn try_take(&self) -> Option<Box<dyn Held + '_>> {
        self.try_acquire().map(|p| Box::new(p) as Box<dyn Held>)
    }
    fn free(&self) -> usize {
        self.available_permits()
    }
}

impl Permits for Lock {
    async fn take(&self) -> Box<dyn Held + '_> {
        Box::new(self.lock().await)
    }
    fn try_take(&self) -> Option<Box<dyn Held + '_>> {
        self.try_lock().map(|g| Box::new(g) as Box<dyn Held>)
    }
    fn free(&self) -> usize {
        usize::from(!self.locked())
    }
}

/// Tasks take permits of `p` (which has `n`), every acquire dropped at random and some tried
/// without waiting: never more than `n` holders at a time, and no permit lost (every task gets
/// its rounds, and all `n` are free at the end).
pub async fn permit_storm<P: Permits>(seed: u64, n: usize, p: P) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 60;
    let p = Rc::new(p);
    let rng = Rc::new(RefCell::new(Rng(seed)));
    let holders = Rc::new(Cell::new(0));
    let finished = Rc::new(Cell::new(0));
    for _ in 0..TASKS {
        let (p, rng, holders, finished) =
            (p.clone(), rng.clone(), holders.clone(), finished.clone());
        spawn(async move {
            let mut rounds = 0;
            while rounds < ROUNDS {
                let held = if rng.borrow_mut().below(4) == 0 {
                    p.try_take()
                } else {
                    maybe_drop(&rng, p.take()).await
                };
                if let Some(held) = held {
                    holders.set(holders.get() + 1);
                    assert!(
                        holders.get() <= n,
                        "{} holders of {n} permits",
                        holders.get()
                    );
                    dawdle(&rng).await;
                    holders.set(holders.get() - 1);
                    drop(held);
                    rounds += 1;
                }
                dawdle(&rng).await;
            }
            finished.set(finished.get() + 1);
        });
    }
    until("permit holders", || finished.get() == TASKS).await;
    assert_eq!(p.free(), n, "a permit was lost");
}

/// Producers add to a count under a condition's lock and `notify(1)`; consumers `wait_for` a
/// positive count and take one, their `lock` and `wait_for` dropped at random. A notification
/// lost with a dropped waiter would leave items while every consumer waits.
pub async fn condition_storm(seed: u64) {
    const ITEMS: usize = 300;
    let cond = Rc::new(Condition::new());
    let rng = Rc::new(RefCell::new(Rng(seed)));
    let count = Rc::new(Cell::new(0usize));
    let consumed = Rc::new(Cell::new(0usize));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (cond, rng, count, consumed) =
                (cond.clone(), rng.clone(), count.clone(), consumed.clone());
            spawn(async move {
                loop {
                    dawdle(&rng).await;
                    let Some(guard) = maybe_drop(&rng, cond.lock()).await else {
                        continue;
                    };
                    let ready = cond.wait_for(guard, || count.get() > 0);
                    let Some(_guard) = maybe_drop(&rng, ready).await else {
                        continue;
                    };
                    count.set(count.get() - 1);
                    consumed.set(consumed.get() + 1);
                }
            })
        })
        .collect();
    for _ in 0..ITEMS {
        let guard = timeout(LIMIT, cond.lock())
            .await
            .expect("the lock was lost");
        count.set(count.get() + 1);
        cond.notify(1);
        drop(guard);
        dawdle(&rng).await;
    }
    until("condition consumers", || consumed.get() == ITEMS).await;
    for c in consumers {
        c.abort();
    }
    assert_eq!(count.get(), 0);
}
