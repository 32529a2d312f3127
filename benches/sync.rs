//! `ringloop::sync` against its `tokio::sync` counterpart, both on the same ringloop loop (uring
//! backend): tokio's primitives are runtime-agnostic, so the loop, the tasks and the wakers are
//! the same and only the primitive differs. Each group has a `ringloop` and a `tokio_sync` entry
//! (not `tokio`, which `benches/chart.py` reads as tokio's runtime);
//! one iteration is one operation (an item through the queue, a lock taken and released, a
//! round trip, a barrier round).
//!
//! - `sync_queue_stream`: a producer task puts, the loop's main task gets (unbounded `Queue` /
//!   `mpsc::unbounded_channel`).
//! - `sync_queue_bounded`: the same through 16 slots (`Queue::new(16)` / `mpsc::channel(16)`):
//!   the producer waits for room.
//! - `sync_queue_nowait`: `put_nowait` then `get_nowait` in one task (`try_send` / `try_recv`);
//!   also `PriorityQueue` and `LifoQueue`, which tokio has no counterpart for.
//! - `sync_event_pingpong`: two tasks wake each other with two `Event`s (set, wait, clear) /
//!   two `Notify`s; one iteration is a round trip.
//! - `sync_lock_uncontended`, `sync_semaphore_uncontended`: take and give back, nobody waits
//!   (`Lock` / `Mutex<()>`, `Semaphore` and `BoundedSemaphore` / `Semaphore`).
//! - `sync_lock_contended`, `sync_semaphore_contended`: four tasks take the lock (a semaphore of
//!   two), yield while holding it, and give it back: every take is a hand-off to a waiter.
//! - `sync_condition_pingpong`: two tasks pass a turn with a `Condition` (`wait_for` the turn,
//!   flip it, `notify_all`) / a `Mutex<usize>` and a `Notify`.
//! - `sync_barrier`: four tasks meet at a `Barrier` / `tokio::sync::Barrier`; one iteration is
//!   a round.
//!
//! ```text
//! cargo bench --bench sync
//! ```

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ringloop::sync::{
    Barrier, BoundedSemaphore, Condition, Event, LifoQueue, Lock, PriorityQueue, Queue, Semaphore,
};
use ringloop::{Backend, EventLoop, spawn, yield_now};

/// Times `body(iters)` on `lp`: what criterion's `iter_custom` wants.
fn time<F: Future<Output = ()>>(
    lp: &mut EventLoop,
    iters: u64,
    body: impl FnOnce(u64) -> F,
) -> Duration {
    lp.run_until_complete(async move {
        let start = Instant::now();
        body(iters).await;
        start.elapsed()
    })
}

/// One group with the two entries.
fn pair<R, RF, T, TF>(c: &mut Criterion, name: &str, ringloop: R, tokio: T)
where
    R: Fn(u64) -> RF,
    RF: Future<Output = ()>,
    T: Fn(u64) -> TF,
    TF: Future<Output = ()>,
{
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    let mut lp = support::ringloop(Backend::Uring);
    g.bench_function("ringloop", |b| {
        b.iter_custom(|iters| time(&mut lp, iters, &ringloop))
    });
    g.bench_function("tokio_sync", |b| {
        b.iter_custom(|iters| time(&mut lp, iters, &tokio))
    });
    g.finish();
    lp.close();
}

fn queue_stream(c: &mut Criterion) {
    pair(
        c,
        "sync_queue_stream",
        |iters| async move {
            let q = Rc::new(Queue::new(0));
            let q2 = q.clone();
            let producer = spawn(async move {
                for i in 0..iters {
                    q2.put(i).await;
                    if i % 64 == 63 {
                        yield_now().await;
                    }
                }
            });
            for _ in 0..iters {
                std::hint::black_box(q.get().await);
            }
            producer.await.unwrap();
        },
        |iters| async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let producer = spawn(async move {
                for i in 0..iters {
                    tx.send(i).unwrap();
                    if i % 64 == 63 {
                        yield_now().await;
                    }
                }
            });
            for _ in 0..iters {
                std::hint::black_box(rx.recv().await.unwrap());
            }
            producer.await.unwrap();
        },
    );
}

fn queue_bounded(c: &mut Criterion) {
    pair(
        c,
        "sync_queue_bounded",
        |iters| async move {
            let q = Rc::new(Queue::new(16));
            let q2 = q.clone();
            let producer = spawn(async move {
                for i in 0..iters {
                    q2.put(i).await;
                }
            });
            for _ in 0..iters {
                std::hint::black_box(q.get().await);
            }
            producer.await.unwrap();
        },
        |iters| async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let producer = spawn(async move {
                for i in 0..iters {
                    tx.send(i).await.unwrap();
                }
            });
            for _ in 0..iters {
                std::hint::black_box(rx.recv().await.unwrap());
            }
            producer.await.unwrap();
        },
    );
}

fn queue_nowait(c: &mut Criterion) {
    pair(
        c,
        "sync_queue_nowait",
        |iters| async move {
            let q = Queue::new(0);
            for i in 0..iters {
                q.put_nowait(i).unwrap();
                std::hint::black_box(q.get_nowait().unwrap());
            }
        },
        |iters| async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for i in 0..iters {
                tx.send(i).unwrap();
                std::hint::black_box(rx.try_recv().unwrap());
            }
        },
    );
    // No tokio counterpart: the ordered queues against the plain one, above.
    let mut g = c.benchmark_group("sync_queue_nowait_ordered");
    g.throughput(Throughput::Elements(1));
    let mut lp = support::ringloop(Backend::Uring);
    g.bench_function("priority", |b| {
        b.iter_custom(|iters| {
            time(&mut lp, iters, |iters| async move {
                let q = PriorityQueue::new(0);
                for i in 0..iters {
                    q.put_nowait(i).unwrap();
                    std::hint::black_box(q.get_nowait().unwrap());
                }
            })
        })
    });
    g.bench_function("lifo", |b| {
        b.iter_custom(|iters| {
            time(&mut lp, iters, |iters| async move {
                let q = LifoQueue::new(0);
                for i in 0..iters {
                    q.put_nowait(i).unwrap();
                    std::hint::black_box(q.get_nowait().unwrap());
                }
            })
        })
    });
    g.finish();
    lp.close();
}

fn event_pingpong(c: &mut Criterion) {
    pair(
        c,
        "sync_event_pingpong",
        |iters| async move {
            let (ping, pong) = (Rc::new(Event::new()), Rc::new(Event::new()));
            let (ping2, pong2) = (ping.clone(), pong.clone());
            let echo = spawn(async move {
                for _ in 0..iters {
                    ping2.wait().await;
                    ping2.clear();
                    pong2.set();
                }
            });
            for _ in 0..iters {
                ping.set();
                pong.wait().await;
                pong.clear();
            }
            echo.await.unwrap();
        },
        |iters| async move {
            let ping = Rc::new(tokio::sync::Notify::new());
            let pong = Rc::new(tokio::sync::Notify::new());
            let (ping2, pong2) = (ping.clone(), pong.clone());
            let echo = spawn(async move {
                for _ in 0..iters {
                    ping2.notified().await;
                    pong2.notify_one();
                }
            });
            for _ in 0..iters {
                ping.notify_one();
                pong.notified().await;
            }
            echo.await.unwrap();
        },
    );
}

fn lock_uncontended(c: &mut Criterion) {
    pair(
        c,
        "sync_lock_uncontended",
        |iters| async move {
            let lock = Lock::new();
            for _ in 0..iters {
                drop(std::hint::black_box(lock.lock().await));
            }
        },
        |iters| async move {
            let lock = tokio::sync::Mutex::new(());
            for _ in 0..iters {
                drop(std::hint::black_box(lock.lock().await));
            }
        },
    );
}

fn semaphore_uncontended(c: &mut Criterion) {
    pair(
        c,
        "sync_semaphore_uncontended",
        |iters| async move {
            let sem = Semaphore::new(4);
            for _ in 0..iters {
                drop(std::hint::black_box(sem.acquire().await));
            }
        },
        |iters| async move {
            let sem = tokio::sync::Semaphore::new(4);
            for _ in 0..iters {
                drop(std::hint::black_box(sem.acquire().await.unwrap()));
            }
        },
    );
    pair(
        c,
        "sync_bounded_semaphore_uncontended",
        |iters| async move {
            let sem = BoundedSemaphore::new(4);
            for _ in 0..iters {
                drop(std::hint::black_box(sem.acquire().await));
            }
        },
        |iters| async move {
            let sem = tokio::sync::Semaphore::new(4);
            for _ in 0..iters {
                drop(std::hint::black_box(sem.acquire().await.unwrap()));
            }
        },
    );
}

const TASKS: u64 = 4;

fn lock_contended(c: &mut Criterion) {
    pair(
        c,
        "sync_lock_contended",
        |iters| async move {
            let lock = Rc::new(Lock::new());
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let lock = lock.clone();
                    spawn(async move {
                        for _ in 0..iters.div_ceil(TASKS) {
                            let _g = lock.lock().await;
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        },
        |iters| async move {
            let lock = Rc::new(tokio::sync::Mutex::new(()));
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let lock = lock.clone();
                    spawn(async move {
                        for _ in 0..iters.div_ceil(TASKS) {
                            let _g = lock.lock().await;
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        },
    );
}

fn semaphore_contended(c: &mut Criterion) {
    pair(
        c,
        "sync_semaphore_contended",
        |iters| async move {
            let sem = Rc::new(Semaphore::new(2));
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let sem = sem.clone();
                    spawn(async move {
                        for _ in 0..iters.div_ceil(TASKS) {
                            let _p = sem.acquire().await;
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        },
        |iters| async move {
            let sem = Rc::new(tokio::sync::Semaphore::new(2));
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let sem = sem.clone();
                    spawn(async move {
                        for _ in 0..iters.div_ceil(TASKS) {
                            let _p = sem.acquire().await.unwrap();
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        },
    );
}

fn condition_pingpong(c: &mut Criterion) {
    pair(
        c,
        "sync_condition_pingpong",
        |iters| async move {
            let cond = Rc::new(Condition::new());
            let turn = Rc::new(Cell::new(0u8));
            let player = |me: u8, cond: Rc<Condition>, turn: Rc<Cell<u8>>| async move {
                for _ in 0..iters {
                    let guard = cond.lock().await;
                    let _guard = cond.wait_for(guard, || turn.get() == me).await;
                    turn.set(1 - me);
                    cond.notify_all();
                }
            };
            let other = spawn(player(1, cond.clone(), turn.clone()));
            player(0, cond, turn).await;
            other.await.unwrap();
        },
        |iters| async move {
            let turn = Rc::new(tokio::sync::Mutex::new(0u8));
            let notify = Rc::new(tokio::sync::Notify::new());
            let player = |me: u8,
                          turn: Rc<tokio::sync::Mutex<u8>>,
                          notify: Rc<tokio::sync::Notify>| async move {
                for _ in 0..iters {
                    loop {
                        let mut t = turn.lock().await;
                        if *t == me {
                            *t = 1 - me;
                            break;
                        }
                        drop(t);
                        notify.notified().await;
                    }
                    notify.notify_one();
                }
            };
            let other = spawn(player(1, turn.clone(), notify.clone()));
            player(0, turn, notify).await;
            other.await.unwrap();
        },
    );
}

fn barrier(c: &mut Criterion) {
    pair(
        c,
        "sync_barrier",
        |iters| async move {
            let b = Rc::new(Barrier::new(TASKS as usize));
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let b = b.clone();
                    spawn(async move {
                        for _ in 0..iters {
                            std::hint::black_box(b.wait().await);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        },
        |iters| async move {
            let b = Rc::new(tokio::sync::Barrier::new(TASKS as usize));
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let b = b.clone();
                    spawn(async move {
                        for _ in 0..iters {
                            std::hint::black_box(b.wait().await.is_leader());
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        },
    );
}

criterion::criterion_group! {
    name = benches;
    config = support::criterion();
    targets = queue_stream, queue_bounded, queue_nowait, event_pingpong, lock_uncontended,
        semaphore_uncontended, lock_contended, semaphore_contended, condition_pingpong, barrier
}
criterion::criterion_main!(benches);
