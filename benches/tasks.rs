//! Task benches on the uring backend, the epoll backend and tokio current_thread.
//!
//! - `tasks_spawn_join_100k`: spawn 100,000 tasks that return at once, then join them all.
//! - `tasks_wake_pingpong`: two tasks wake each other in turn; one iteration is one round trip
//!   (two wakes, two polls).
//! - `tasks_wake_from_thread`: a plain thread wakes a task on the loop and waits for the task to
//!   answer; one iteration is one round trip across threads (the loop sleeps between them, so
//!   this measures waking a sleeping loop).
//!
//! - `tasks_spawn_blocking`: a task awaits `spawn_blocking(|| ())`; one iteration is one round
//!   trip through the blocking pool (the loop sleeps until the pool's thread wakes it).
//!
//! Both wake benches use the same hand-written flag on every runtime, so they compare the
//! runtimes' scheduling and wake paths, not their channels.
//!
//! ```text
//! cargo bench -p ringloop-benches --bench tasks
//! ```

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::{ALL, Flag, Rt, Runner};

const N: u64 = 100_000;

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("tasks_spawn_join_100k");
    g.throughput(Throughput::Elements(N));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            let mut r = Runner::new(rt);
            b.iter_custom(|iters| {
                r.time(iters, async || {
                    let mut sum = 0;
                    match rt {
                        Rt::Tokio => {
                            let handles: Vec<_> =
                                (0..N).map(|i| tokio::spawn(async move { i })).collect();
                            for h in handles {
                                sum += h.await.unwrap();
                            }
                        }
                        _ => {
                            let handles: Vec<_> =
                                (0..N).map(|i| ringloop::spawn(async move { i })).collect();
                            for h in handles {
                                sum += h.await.unwrap();
                            }
                        }
                    }
                    assert_eq!(sum, N * (N - 1) / 2);
                })
            })
        });
    }
    g.finish();
}

/// Spawns `other` on the runtime, runs `main` to completion, then joins `other`.
fn run_pair(
    r: &mut Runner,
    other: impl Future<Output = ()> + Send + 'static,
    main: impl Future<Output = Duration>,
) -> Duration {
    let tokio = matches!(r, Runner::Tokio(_));
    r.run(async move {
        if tokio {
            let h = tokio::spawn(other);
            let d = main.await;
            h.await.unwrap();
            d
        } else {
            let h = ringloop::spawn(other);
            let d = main.await;
            h.await.unwrap();
            d
        }
    })
}

fn wake_pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("tasks_wake_pingpong");
    g.throughput(Throughput::Elements(1));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            let mut r = Runner::new(rt);
            b.iter_custom(|iters| {
                let ping = Arc::new(Flag::default());
                let pong = Arc::new(Flag::default());
                let (ping2, pong2) = (ping.clone(), pong.clone());
                let echo = async move {
                    for _ in 0..iters {
                        ping2.wait().await;
                        pong2.set();
                    }
                };
                let main = async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        ping.set();
                        pong.wait().await;
                    }
                    start.elapsed()
                };
                run_pair(&mut r, echo, main)
            })
        });
    }
    g.finish();
}

fn wake_from_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("tasks_wake_from_thread");
    g.throughput(Throughput::Elements(1));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            let mut r = Runner::new(rt);
            b.iter_custom(|iters| {
                let ping = Arc::new(Flag::default());
                let (answer_tx, answer_rx) = std::sync::mpsc::channel::<()>();
                let thread_ping = ping.clone();
                let start = Instant::now();
                let waker = std::thread::spawn(move || {
                    for _ in 0..iters {
                        thread_ping.set();
                        answer_rx.recv().unwrap();
                    }
                });
                r.run(async move {
                    for _ in 0..iters {
                        ping.wait().await;
                        answer_tx.send(()).unwrap();
                    }
                });
                waker.join().unwrap();
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn spawn_blocking(c: &mut Criterion) {
    let mut g = c.benchmark_group("tasks_spawn_blocking");
    g.throughput(Throughput::Elements(1));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            let mut r = Runner::new(rt);
            b.iter_custom(|iters| {
                r.time(iters, async || match rt {
                    Rt::Tokio => tokio::task::spawn_blocking(|| ()).await.unwrap(),
                    _ => ringloop::spawn_blocking(|| ()).await.unwrap(),
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = spawn_join, wake_pingpong, wake_from_thread, spawn_blocking
}
criterion_main!(benches);
