//! Timer benches on the uring backend, the epoll backend and tokio current_thread.
//!
//! - `timers_arm_cancel_100k`: 100,000 timeouts (60 s, around a future that never finishes) are
//!   polled once, which arms each, then dropped, which cancels each. None fires.
//! - `timers_fire_100k`: 100,000 tasks each sleep 1 ms; the iteration ends when all have woken.
//!
//! ```text
//! cargo bench -p ringloop-benches --bench timers
//! ```

mod support;

use std::future::{Future, pending};
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::{ALL, Rt, Runner};

const N: usize = 100_000;

/// Polls each future once with a waker that does nothing (which arms a timer), then drops them
/// all (which cancels them).
fn arm_then_drop<F: Future>(mut futures: Vec<Pin<Box<F>>>) {
    let mut cx = Context::from_waker(Waker::noop());
    for f in futures.iter_mut() {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    drop(futures);
}

fn arm_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_arm_cancel_100k");
    g.throughput(Throughput::Elements(N as u64));
    let far = Duration::from_secs(60);
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            let mut r = Runner::new(rt);
            b.iter_custom(|iters| {
                r.time(iters, async || match rt {
                    Rt::Tokio => arm_then_drop(
                        (0..N)
                            .map(|_| Box::pin(tokio::time::timeout(far, pending::<()>())))
                            .collect(),
                    ),
                    _ => arm_then_drop(
                        (0..N)
                            .map(|_| Box::pin(ringloop::time::timeout(far, pending::<()>())))
                            .collect(),
                    ),
                })
            })
        });
    }
    g.finish();
}

fn fire(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_fire_100k");
    g.throughput(Throughput::Elements(N as u64));
    let ms = Duration::from_millis(1);
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            let mut r = Runner::new(rt);
            b.iter_custom(|iters| {
                r.time(iters, async || match rt {
                    Rt::Tokio => {
                        let handles: Vec<_> = (0..N)
                            .map(|_| tokio::spawn(tokio::time::sleep(ms)))
                            .collect();
                        for h in handles {
                            h.await.unwrap();
                        }
                    }
                    _ => {
                        let handles: Vec<_> = (0..N)
                            .map(|_| ringloop::spawn(ringloop::time::sleep(ms)))
                            .collect();
                        for h in handles {
                            h.await.unwrap();
                        }
                    }
                })
            })
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
