//! Timer benches on the uring backend, the epoll backend and tokio current_thread.
//!
//! - `timers_arm_cancel_100k`: 100,000 timeouts (60 s, around a future that never finishes) are
//!   polled once, which arms each, then dropped, which cancels each. None fires.
//! - `timers_fire_100k`: 100,000 tasks each sleep 1 ms; the iteration ends when all have woken.
//!
//! ```text
//! cargo bench --bench timers
//! ```

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::ALL;

const N: usize = 100_000;

/// Polls each future once with a waker that does nothing (which arms a timer), then drops them
/// all (which cancels them).
fn arm_then_drop<F: Future>(futures: Vec<Pin<Box<F>>>) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut futures = futures;
    for f in futures.iter_mut() {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    drop(futures);
}

fn arm_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_arm_cancel_100k");
    g.throughput(Throughput::Elements(N as u64));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            match rt.backend() {
                Some(backend) => {
                    let mut lp = support::ringloop(backend);
                    b.iter_custom(|iters| {
                        lp.run_until_complete(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let v: Vec<_> = (0..N)
                                    .map(|_| {
                                        Box::pin(ringloop::time::timeout(
                                            Duration::from_secs(60),
                                            std::future::pending::<()>(),
                                        ))
                                    })
                                    .collect();
                                arm_then_drop(v);
                            }
                            start.elapsed()
                        })
                    });
                }
                None => {
                    let rt = support::tokio();
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let v: Vec<_> = (0..N)
                                    .map(|_| {
                                        Box::pin(tokio::time::timeout(
                                            Duration::from_secs(60),
                                            std::future::pending::<()>(),
                                        ))
                                    })
                                    .collect();
                                arm_then_drop(v);
                            }
                            start.elapsed()
                        })
                    });
                }
            }
        });
    }
    g.finish();
}

fn fire(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_fire_100k");
    g.throughput(Throughput::Elements(N as u64));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            match rt.backend() {
                Some(backend) => {
                    let mut lp = support::ringloop(backend);
                    b.iter_custom(|iters| {
                        lp.run_until_complete(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let handles: Vec<_> = (0..N)
                                    .map(|_| {
                                        ringloop::spawn(ringloop::time::sleep(
                                            Duration::from_millis(1),
                                        ))
                                    })
                                    .collect();
                                for h in handles {
                                    h.await.unwrap();
                                }
                            }
                            start.elapsed()
                        })
                    });
                }
                None => {
                    let rt = support::tokio();
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let handles: Vec<_> = (0..N)
                                    .map(|_| {
                                        tokio::spawn(tokio::time::sleep(Duration::from_millis(1)))
                                    })
                                    .collect();
                                for h in handles {
                                    h.await.unwrap();
                                }
                            }
                            start.elapsed()
                        })
                    });
                }
            }
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = arm_cancel, fire
}
criterion_main!(benches);
