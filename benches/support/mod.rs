//! What every bench shares: the three runtimes under comparison, criterion's settings, and a
//! small waker-based flag that works the same on all of them.
//!
//! Each scenario runs on ringloop's uring backend, ringloop's epoll backend, and tokio's
//! current_thread runtime, in that order, inside one criterion group, so the three land in the
//! same report and the same run.

#![allow(dead_code)] // each bench binary uses part of this module

use std::time::{Duration, Instant};

use criterion::Criterion;
use ringloop::{Backend, EventLoop};

/// A runtime under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rt {
    Uring,
    Epoll,
    Tokio,
}

pub const ALL: [Rt; 3] = [Rt::Uring, Rt::Epoll, Rt::Tokio];

impl Rt {
    /// The bench id criterion files the result under (and the chart reads).
    pub fn id(self) -> &'static str {
        match self {
            Rt::Uring => "uring",
            Rt::Epoll => "epoll",
            Rt::Tokio => "tokio",
        }
    }

    /// ringloop's backend, or `None` for tokio.
    pub fn backend(self) -> Option<Backend> {
        match self {
            Rt::Uring => Some(Backend::Uring),
            Rt::Epoll => Some(Backend::Epoll),
            Rt::Tokio => None,
        }
    }
}

/// A ringloop event loop on `backend`. A backend that cannot run fails the bench (a uring result
/// must never silently be an epoll one).
pub fn ringloop(backend: Backend) -> EventLoop {
    let lp = EventLoop::builder()
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("cannot build a ringloop loop on {backend}: {e}"));
    assert_eq!(lp.backend(), backend);
    lp
}

/// tokio's current_thread runtime with I/O and timers: what users would pick instead.
pub fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
}

/// A runtime under test, ready to run futures on the bench thread.
pub enum Runner {
    Ringloop(EventLoop),
    Tokio(tokio::runtime::Runtime),
}

impl Runner {
    pub fn new(rt: Rt) -> Runner {
        match rt.backend() {
            Some(b) => Runner::Ringloop(ringloop(b)),
            None => Runner::Tokio(tokio()),
        }
    }

    /// Runs `f` to completion on this runtime.
    pub fn run<T>(&mut self, f: impl Future<Output = T>) -> T {
        match self {
            Runner::Ringloop(lp) => lp.run_until_complete(f),
            Runner::Tokio(rt) => rt.block_on(f),
        }
    }

    /// Runs `body` `iters` times in a row inside this runtime and returns how long that took:
    /// what criterion's `iter_custom` wants.
    pub fn time(&mut self, iters: u64, mut body: impl AsyncFnMut()) -> Duration {
        self.run(async move {
            let start = Instant::now();
            for _ in 0..iters {
                body().await;
            }
            start.elapsed()
        })
    }
}

/// Criterion settings that keep the whole `cargo bench` run within about 15 minutes on 2 cores.
/// `RINGLOOP_BENCH_QUICK=1` shortens every bench further (for a smoke run).
pub fn criterion() -> Criterion {
    let quick = std::env::var_os("RINGLOOP_BENCH_QUICK").is_some();
    let (warm, measure, samples) = if quick {
        (Duration::from_millis(100), Duration::from_millis(300), 10)
    } else {
        (Duration::from_secs(1), Duration::from_secs(4), 20)
    };
    Criterion::default()
        .warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples)
        .configure_from_args()
}

/// A one-bit signal between two tasks (or a thread and a task), shared with the examples.
#[path = "../../examples/support/flag.rs"]
mod flag;
#[allow(unused_imports)] // only the wake benches use it
pub use flag::Flag;

/// A small deterministic generator for random offsets (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `pin_to_cpu`: the streaming benches put the server on one core and the client on the other,
/// since an unpinned pair of threads flips between two speeds by where the scheduler happens to
/// put them (BENCHMARKS.md, streaming).
#[path = "../../examples/support/measure.rs"]
mod measure;
#[allow(unused_imports)] // only the streaming bench pins
pub use measure::pin_to_cpu;

/// Lets the calling thread run on every CPU again.
pub fn unpin() {
    // SAFETY: as in `pin_to_cpu`, with every CPU the machine has set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for cpu in 0..cpus {
        // SAFETY: as in `pin_to_cpu`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: as in `pin_to_cpu`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}
