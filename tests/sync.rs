//! `ringloop::sync`, asyncio's primitives for the tasks of one loop, on both backends: their
//! semantics, first-come-first-served order, and waiters dropped at every point (a seeded
//! random storm per primitive whose counts must balance, and the woken-then-dropped case by
//! hand for each).

mod common;

#[path = "sync/storms.rs"]
mod storms;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Poll;

use common::Rng;
use ringloop::sync::{
    Barrier, BoundedSemaphore, Condition, Event, LifoQueue, Lock, PriorityQueue, Queue, Semaphore,
};
use ringloop::time::timeout;
use ringloop::{spawn, yield_now};
use storms::{
    LIMIT, Wait, condition_storm, maybe_drop, permit_storm, queue_quitters_storm, queue_storm,
    relay, until,
};

/// Polls a pinned future once from inside an async block (as `futures::poll!`).
macro_rules! poll {
    ($fut:expr) => {{
        let mut fut = $fut;
        std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await
    }};
}

both_backends! {
    fn queue_orders(lp: &mut EventLoop) {
        let fifo = Queue::new(0);
        let lifo = LifoQueue::new(0);
        let prio = PriorityQueue::new(0);
        for n in [3, 1, 2] {
            fifo.put_nowait(n).unwrap();
            lifo.put_nowait(n).unwrap();
            prio.put_nowait(n).unwrap();
        }
        let drain = |get: &dyn Fn() -> Option<i32>| std::iter::from_fn(get).collect::<Vec<_>>();
        assert_eq!(drain(&|| fifo.get_nowait().ok()), [3, 1, 2]);
        assert_eq!(drain(&|| lifo.get_nowait().ok()), [2, 1, 3]);
        assert_eq!(drain(&|| prio.get_nowait().ok()), [1, 2, 3]);
        // The same through the futures.
        lp.run_until_complete(async {
            for n in [3, 1, 2] {
                prio.put(n).await;
            }
            assert_eq!([prio.get().await, prio.get().await, prio.get().await], [1, 2, 3]);
        });
    }

    fn queue_bounded_counts(lp: &mut EventLoop) {
        let q = Queue::new(2);
        assert_eq!(q.maxsize(), 2);
        assert!(q.empty() && !q.full());
        q.put_nowait("a").unwrap();
        q.put_nowait("b").unwrap();
        assert_eq!((q.qsize(), q.full()), (2, true));
        assert_eq!(q.put_nowait("c").unwrap_err().into_inner(), "c");
        assert_eq!(q.get_nowait(), Ok("a"));
        assert!(q.task_done().is_ok());
        assert!(!q.full());
        let unbounded = Queue::new(0);
        for i in 0..10_000 {
            unbounded.put_nowait(i).unwrap();
        }
        assert!(!unbounded.full());
        lp.run_until_complete(async {
            assert_eq!(q.get().await, "b");
            q.task_done().unwrap();
            // Every item put was marked done: one more is an error, and changes nothing.
            assert!(q.task_done().is_err());
            q.join().await;
        });
    }

    fn queue_waiters_served_in_order(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let q = Rc::new(Queue::new(1));
            let order = Rc::new(RefCell::new(Vec::new()));
            // Three getters wait, in this order.
            let getters: Vec<_> = (0..3)
                .map(|i| {
                    let (q, order) = (q.clone(), order.clone());
                    spawn(async move {
                        let item = q.get().await;
                        order.borrow_mut().push((i, item));
                    })
                })
                .collect();
            yield_now().await;
            // An item put while they wait is theirs: get_nowait cannot take it first.
            q.put_nowait(10).unwrap();
            assert_eq!(q.get_nowait(), Err(ringloop::sync::QueueEmpty));
            assert_eq!(q.qsize(), 0);
            q.put(11).await;
            q.put(12).await;
            for g in getters {
                g.await.unwrap();
            }
            assert_eq!(*order.borrow(), [(0, 10), (1, 11), (2, 12)]);

            // Putters waiting for a slot are served in order too.
            q.put_nowait(0).unwrap();
            let putters: Vec<_> = (1..4)
                .map(|i| {
                    let q = q.clone();
                    spawn(async move { q.put(i).await })
                })
                .collect();
            yield_now().await;
            assert!(q.full());
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(q.get().await);
            }
            for p in putters {
                p.await.unwrap();
            }
            assert_eq!(got, [0, 1, 2, 3]);
        });
    }

    fn queue_join_waits_for_every_task_done(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let q = Rc::new(Queue::new(0));
            let joined = Rc::new(Cell::new(false));
            for i in 0..3 {
                q.put(i).await;
            }
            let joiner = {
                let (q, joined) = (q.clone(), joined.clone());
                spawn(async move {
                    q.join().await;
                    joined.set(true);
                })
            };
            for _ in 0..3 {
                q.get().await;
                yield_now().await;
                assert!(!joined.get(), "join returned before every task_done");
                q.task_done().unwrap();
            }
            joiner.await.unwrap();
            assert!(joined.get());
        });
    }

    fn queue_woken_waiter_dropped_passes_its_item_on(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let q = Queue::new(1);
            let mut g1 = Box::pin(q.get());
            let mut g2 = Box::pin(q.get());
            assert!(poll!(g1.as_mut()).is_pending());
            assert!(poll!(g2.as_mut()).is_pending());
            q.put_nowait(7).unwrap(); // promised to g1
            drop(g1);
            assert_eq!(poll!(g2.as_mut()), Poll::Ready(7), "g1's item went nowhere");

            // The same for a slot freed for a waiting putter.
            q.put_nowait(1).unwrap();
            let mut p1 = Box::pin(q.put(2));
            let mut p2 = Box::pin(q.put(3));
            assert!(poll!(p1.as_mut()).is_pending());
            assert!(poll!(p2.as_mut()).is_pending());
            assert_eq!(q.get_nowait(), Ok(1)); // a slot for p1
            drop(p1);
            assert!(poll!(p2.as_mut()).is_ready(), "p1's slot went nowhere");
            assert_eq!(q.get_nowait(), Ok(3));
        });
    }

    fn queue_random_drops_balance(lp: &mut EventLoop) {
        for seed in [1, 7, 42, 1234] {
            lp.run_until_complete(queue_storm(seed));
        }
        for seed in 1..40 {
            lp.run_until_complete(queue_quitters_storm(seed));
        }
    }

    fn event_set_clear_wait(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let ev = Rc::new(Event::new());
            assert!(!ev.is_set());
            let woken = Rc::new(Cell::new(0));
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let (ev, woken) = (ev.clone(), woken.clone());
                    spawn(async move {
                        ev.wait().await;
                        woken.set(woken.get() + 1);
                    })
                })
                .collect();
            yield_now().await;
            assert_eq!(woken.get(), 0);
            // Woken by set, a waiter returns even if the flag is cleared before it runs.
            ev.set();
            ev.clear();
            for w in waiters {
                w.await.unwrap();
            }
            assert_eq!(woken.get(), 3);
            // Cleared: a new wait waits again.
            let mut w = Box::pin(ev.wait());
            assert!(poll!(w.as_mut()).is_pending());
            ev.set();
            assert!(poll!(w.as_mut()).is_ready());
            ev.wait().await; // set: at once
        });
    }

    fn event_random_drops_balance(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let ev = Rc::new(Event::new());
            let rng = Rc::new(RefCell::new(Rng(99)));
            let (finished, completed) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
            for _ in 0..100 {
                let (ev, rng, finished, completed) =
                    (ev.clone(), rng.clone(), finished.clone(), completed.clone());
                spawn(async move {
                    if maybe_drop(&rng, ev.wait()).await.is_some() {
                        completed.set(completed.get() + 1);
                    }
                    finished.set(finished.get() + 1);
                });
            }
            for _ in 0..3 {
                yield_now().await;
            }
            ev.set();
            until("event waiters", || finished.get() == 100).await;
            assert!(completed.get() > 0);
        });
    }

    fn lock_is_fifo_and_cannot_be_overtaken(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let lock = Rc::new(Lock::new());
            let order = Rc::new(RefCell::new(Vec::new()));
            let guard = lock.lock().await;
            let tasks: Vec<_> = (0..4)
                .map(|i| {
                    let (lock, order) = (lock.clone(), order.clone());
                    spawn(async move {
                        let _g = lock.lock().await;
                        order.borrow_mut().push(i);
                        yield_now().await;
                    })
                })
                .collect();
            yield_now().await;
            drop(guard);
            // Handed to the first waiter, which has not run yet: still locked.
            assert!(lock.locked());
            assert!(lock.try_lock().is_none());
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(*order.borrow(), [0, 1, 2, 3]);
            assert!(!lock.locked());
            assert!(lock.try_lock().is_some());
        });
    }

    fn woken_lock_and_permit_waiters_dropped_pass_them_on(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let lock = Lock::new();
            let guard = lock.try_lock().unwrap();
            let mut w1 = Box::pin(lock.lock());
            let mut w2 = Box::pin(lock.lock());
            assert!(poll!(w1.as_mut()).is_pending());
            assert!(poll!(w2.as_mut()).is_pending());
            drop(guard); // handed to w1
            drop(w1);
            assert!(poll!(w2.as_mut()).is_ready(), "w1's lock went nowhere");

            let sem = Semaphore::new(1);
            let permit = sem.acquire().await;
            let mut a1 = Box::pin(sem.acquire());
            let mut a2 = Box::pin(sem.acquire());
            assert!(poll!(a1.as_mut()).is_pending());
            assert!(poll!(a2.as_mut()).is_pending());
            drop(permit); // handed to a1
            assert_eq!(sem.available_permits(), 0);
            drop(a1);
            assert!(poll!(a2.as_mut()).is_ready(), "a1's permit went nowhere");
        });
        // A waiter dropped before it was woken takes nothing.
        let sem = Semaphore::new(0);
        lp.run_until_complete(async {
            let mut a = Box::pin(sem.acquire());
            assert!(poll!(a.as_mut()).is_pending());
        });
        sem.release();
        assert_eq!(sem.available_permits(), 1);
    }

    fn semaphore_release_forget_and_bound(lp: &mut EventLoop) {
        let sem = Semaphore::new(2);
        let held = sem.try_acquire().unwrap();
        sem.try_acquire().unwrap().forget();
        // A try that finds no permit takes none and adds none.
        assert!(sem.try_acquire().is_none());
        assert_eq!(sem.available_permits(), 0);
        drop(held);
        assert_eq!(sem.available_permits(), 1);
        sem.release();
        sem.release(); // a plain semaphore grows, as asyncio's
        assert_eq!(sem.available_permits(), 3);

        let bounded = BoundedSemaphore::new(2);
        let err = bounded.release().unwrap_err();
        assert!(err.to_string().contains("released too many times"), "{err}");
        assert_eq!(bounded.available_permits(), 2);
        let p = bounded.try_acquire().unwrap();
        assert!(bounded.release().is_ok()); // counts p's permit back already...
        drop(p); // ...so dropping p adds nothing
        assert_eq!(bounded.available_permits(), 2);
        lp.run_until_complete(async {
            let a = bounded.acquire().await;
            let b = bounded.acquire().await;
            assert!(bounded.try_acquire().is_none());
            drop((a, b));
        });
        assert_eq!(bounded.available_permits(), 2);
    }

    fn condition_notify_wakes_n_in_order(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let cond = Rc::new(Condition::new());
            let order = Rc::new(RefCell::new(Vec::new()));
            let waiters: Vec<_> = (0..4)
                .map(|i| {
                    let (cond, order) = (cond.clone(), order.clone());
                    spawn(async move {
                        let guard = cond.lock().await;
                        let _guard = cond.wait(guard).await;
                        order.borrow_mut().push(i);
                    })
                })
                .collect();
            for _ in 0..3 {
                yield_now().await;
            }
            assert!(!cond.locked(), "wait left the lock held");
            cond.notify(2);
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(*order.borrow(), [0, 1]);
            cond.notify_all();
            for w in waiters {
                w.await.unwrap();
            }
            assert_eq!(*order.borrow(), [0, 1, 2, 3]);
        });
    }

    fn condition_woken_waiter_dropped_passes_notification_on(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let cond = Condition::new();
            let g1 = cond.lock().await;
            let mut w1 = Box::pin(cond.wait(g1));
            assert!(poll!(w1.as_mut()).is_pending());
            let g2 = cond.lock().await;
            let mut w2 = Box::pin(cond.wait(g2));
            assert!(poll!(w2.as_mut()).is_pending());
            cond.notify(1); // w1's
            drop(w1);
            assert!(poll!(w2.as_mut()).is_ready(), "w1's notification went nowhere");
        });
        // Dropped while it takes the lock back: the notification moves on, the lock is free.
        lp.run_until_complete(async {
            let cond = Condition::new();
            let g1 = cond.lock().await;
            let mut w1 = Box::pin(cond.wait(g1));
            assert!(poll!(w1.as_mut()).is_pending());
            let g2 = cond.lock().await;
            let mut w2 = Box::pin(cond.wait(g2));
            assert!(poll!(w2.as_mut()).is_pending());
            let held = cond.lock().await;
            cond.notify(1);
            assert!(poll!(w1.as_mut()).is_pending()); // notified, waits for the lock
            drop(w1);
            drop(held);
            assert!(poll!(w2.as_mut()).is_ready(), "w1's notification went nowhere");
        });
    }

    fn barrier_indices_distinct_per_round(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let barrier = Rc::new(Barrier::new(3));
            assert_eq!(barrier.parties(), 3);
            let seen = Rc::new(RefCell::new(Vec::new()));
            let tasks: Vec<_> = (0..3)
                .map(|_| {
                    let (barrier, seen) = (barrier.clone(), seen.clone());
                    spawn(async move {
                        for round in 0..5 {
                            let index = barrier.wait().await;
                            seen.borrow_mut().push((round, index));
                        }
                    })
                })
                .collect();
            for t in tasks {
                timeout(LIMIT, t).await.expect("a barrier round hung").unwrap();
            }
            for round in 0..5 {
                let mut indices: Vec<_> = seen
                    .borrow()
                    .iter()
                    .filter(|(r, _)| *r == round)
                    .map(|(_, i)| *i)
                    .collect();
                indices.sort();
                assert_eq!(indices, [0, 1, 2], "round {round}");
            }
            // A waiter dropped before the round completes leaves it.
            let b = Barrier::new(2);
            let mut w = Box::pin(b.wait());
            assert!(poll!(w.as_mut()).is_pending());
            assert_eq!(b.n_waiting(), 1);
            drop(w);
            assert_eq!(b.n_waiting(), 0);
            let mut w1 = Box::pin(b.wait());
            assert!(poll!(w1.as_mut()).is_pending());
            assert_eq!(b.wait().await, 1);
            assert_eq!(poll!(w1.as_mut()), Poll::Ready(0));
        });
    }

    fn semaphores_and_lock_random_drops_balance(lp: &mut EventLoop) {
        for seed in [3, 11, 2024] {
            lp.run_until_complete(permit_storm(seed, 3, Semaphore::new(3)));
            lp.run_until_complete(permit_storm(seed, 2, BoundedSemaphore::new(2)));
            lp.run_until_complete(permit_storm(seed, 1, Lock::new()));
        }
    }

    fn woken_waiters_dropped_at_random_pass_on(lp: &mut EventLoop) {
        for seed in 1..25 {
            let q = Rc::new(Queue::new(0));
            let q2 = q.clone();
            let get: Wait = Rc::new(move || {
                let q = q2.clone();
                Box::pin(async move {
                    q.get().await;
                })
            });
            lp.run_until_complete(relay(seed, get, || q.put_nowait(0).unwrap()));

            let q = Rc::new(Queue::new(1));
            q.put_nowait(0).unwrap();
            let q2 = q.clone();
            let put: Wait = Rc::new(move || {
                let q = q2.clone();
                Box::pin(async move { q.put(0).await })
            });
            lp.run_until_complete(relay(seed, put, || assert!(q.get_nowait().is_ok())));

            let sem = Rc::new(Semaphore::new(0));
            let s2 = sem.clone();
            let acquire: Wait = Rc::new(move || {
                let sem = s2.clone();
                Box::pin(async move { sem.acquire().await.forget() })
            });
            lp.run_until_complete(relay(seed, acquire, || sem.release()));

            let cond = Rc::new(Condition::new());
            let count = Rc::new(Cell::new(0));
            let (c2, n2) = (cond.clone(), count.clone());
            let take: Wait = Rc::new(move || {
                let (cond, count) = (c2.clone(), n2.clone());
                Box::pin(async move {
                    let guard = cond.lock().await;
                    let _guard = cond.wait_for(guard, || count.get() > 0).await;
                    count.set(count.get() - 1);
                })
            });
            lp.run_until_complete(relay(seed, take, || {
                count.set(count.get() + 1);
                cond.notify(1);
            }));
        }
    }

    fn condition_random_drops_balance(lp: &mut EventLoop) {
        for seed in [5, 77, 31337] {
            lp.run_until_complete(condition_storm(seed));
        }
    }
}

/// A release past `usize::MAX` free permits panics with a message, never wraps to zero (which,
/// in a release build, would lose every permit silently).
#[test]
fn a_semaphore_release_past_usize_max_panics_clearly() {
    let sem = ringloop::sync::Semaphore::new(usize::MAX);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sem.release()))
        .expect_err("the release past usize::MAX went through");
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("usize::MAX"), "{msg}");
    assert_eq!(sem.available_permits(), usize::MAX);
}
