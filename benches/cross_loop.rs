//! Cross-loop benches: work sent from one loop to a loop on another thread, on the uring
//! backend, the epoll backend, and two tokio current_thread runtimes (`Handle::spawn`).
//!
//! - `cross_loop_spawn_round_trip`: the bench thread's loop spawns an empty task onto the far
//!   loop with `LoopHandle::spawn` and awaits its `RemoteJoinHandle`; one iteration is one round
//!   trip (a remote spawn, a remote wake back).
//! - `cross_loop_relay`: the near loop spawns onto the far loop a task that spawns back onto the
//!   near loop and awaits it: four hand-offs between threads per iteration.
//!
//! ```text
//! cargo bench -p ringloop-benches --bench cross_loop
//! ```

mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringloop::{LoopHandle, LoopPool};
use support::{ALL, Rt, Runner};

type Unit = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A handle to a loop (or runtime) that any thread may spawn onto.
#[derive(Clone)]
enum Spawner {
    Ringloop(LoopHandle),
    Tokio(tokio::runtime::Handle),
}

impl Spawner {
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> Unit {
        match self {
            Spawner::Ringloop(h) => {
                let j = h.spawn(fut);
                Box::pin(async move { j.await.unwrap() })
            }
            Spawner::Tokio(h) => {
                let j = h.spawn(fut);
                Box::pin(async move { j.await.unwrap() })
            }
        }
    }
}

/// The far side: a loop (or runtime) on its own thread, idle until work arrives.
enum Far {
    Ringloop(LoopPool<()>),
    Tokio(
        tokio::runtime::Handle,
        std::thread::JoinHandle<()>,
        ringloop::Shutdown,
    ),
}

impl Far {
    fn new(rt: Rt) -> Far {
        match rt.backend() {
            Some(backend) => Far::Ringloop(
                LoopPool::builder()
                    .threads(1)
                    .backend(backend)
                    .thread_name("far")
                    .start(|cx| async move { cx.shutdown().triggered().await })
                    .expect("cannot start the far loop"),
            ),
            None => {
                let stop = ringloop::Shutdown::new();
                let (tx, rx) = std::sync::mpsc::channel();
                let s = stop.clone();
                let thread = std::thread::spawn(move || {
                    let rt = support::tokio();
                    tx.send(rt.handle().clone()).unwrap();
                    rt.block_on(s.triggered());
                });
                Far::Tokio(rx.recv().unwrap(), thread, stop)
            }
        }
    }

    fn spawner(&self) -> Spawner {
        match self {
            Far::Ringloop(pool) => Spawner::Ringloop(pool.handle(0)),
            Far::Tokio(h, ..) => Spawner::Tokio(h.clone()),
        }
    }

    fn stop(self) {
        match self {
            Far::Ringloop(pool) => {
                pool.shutdown();
                for r in pool.join() {
                    r.unwrap();
                }
            }
            Far::Tokio(_, thread, stop) => {
                stop.trigger();
                thread.join().unwrap();
            }
        }
    }
}

fn near_spawner(r: &mut Runner) -> Spawner {
    match r {
        Runner::Ringloop(lp) => Spawner::Ringloop(lp.handle()),
        Runner::Tokio(rt) => Spawner::Tokio(rt.handle().clone()),
    }
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_loop_spawn_round_trip");
    g.throughput(Throughput::Elements(1));
    for rt in ALL {
        let far = Far::new(rt);
        let spawner = far.spawner();
        let mut near = Runner::new(rt);
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            b.iter_custom(|iters| near.time(iters, async || spawner.spawn(async {}).await))
        });
        drop(near);
        far.stop();
    }
    g.finish();
}

fn relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_loop_relay");
    g.throughput(Throughput::Elements(1));
    for rt in ALL {
        let far = Far::new(rt);
        let to_far = far.spawner();
        let mut near = Runner::new(rt);
        let to_near = near_spawner(&mut near);
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            b.iter_custom(|iters| {
                near.time(iters, async || {
                    let back = to_near.clone();
                    to_far
                        .spawn(async move { back.spawn(async {}).await })
                        .await
                })
            })
        });
        drop(near);
        far.stop();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion().measurement_time(Duration::from_secs(3));
    targets = round_trip, relay
}
criterion_main!(benches);
