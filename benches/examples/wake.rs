//! Waking a sleeping loop from another thread, measured: the round trips behind
//! `tasks_wake_from_thread` and `spawn_blocking`, on the uring backend, the epoll backend and
//! tokio's current_thread runtime, in interleaved rounds so the three share the machine's mood.
//!
//! ```text
//! cargo run --release -p ringloop-benches --example wake -- [thread|blocking|both] [--rounds R] [--trips N]
//! ```
//!
//! - `thread`: a plain thread raises a flag and wakes the task waiting on it, then waits (on a
//!   std channel) for the task's answer. One trip wakes the sleeping loop once.
//! - `blocking`: a task awaits `spawn_blocking(|| ())` in a loop. One trip hands a closure to the
//!   pool and wakes the sleeping loop with its output.
//!
//! `--pin same` runs the loop and the helper thread on CPU 0 (each wake is a context switch, so
//! this measures the software path), `--pin split` on CPUs 0 and 1.
//!
//! Each round runs N trips on every runtime in turn and prints µs per trip and CPU µs per trip
//! (all threads of the process). The summary gives the median over rounds of each round's ratio
//! (uring over epoll, uring over tokio, in trips per second: above 1 is uring faster).

#[path = "../../examples/support/flag.rs"]
mod flag;
#[path = "../../examples/support/measure.rs"]
#[allow(dead_code)] // the wake example uses the CPU clock and pinning only
mod measure;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use flag::Flag;
use ringloop::{Backend, EventLoop};

#[derive(Clone, Copy, PartialEq)]
enum Rt {
    Uring,
    Epoll,
    Tokio,
}

const ALL: [Rt; 3] = [Rt::Uring, Rt::Epoll, Rt::Tokio];

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Uring => "uring",
            Rt::Epoll => "epoll",
            Rt::Tokio => "tokio",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Thread,
    Blocking,
}

/// Runs `trips` round trips of `case` on `rt`; returns (wall µs, CPU µs) per trip.
fn measure(rt: Rt, case: Case, trips: u64) -> Result<(f64, f64), String> {
    let cpu0 = measure::cpu_seconds();
    let start = Instant::now();
    match rt {
        Rt::Tokio => {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio: {e}"))?;
            tokio.block_on(async move {
                match case {
                    Case::Thread => thread_trips(trips).await,
                    Case::Blocking => {
                        for _ in 0..trips {
                            tokio::task::spawn_blocking(pin_helper).await.unwrap();
                        }
                    }
                }
            });
        }
        Rt::Uring | Rt::Epoll => {
            let backend = if rt == Rt::Uring {
                Backend::Uring
            } else {
                Backend::Epoll
            };
            let mut lp = EventLoop::builder()
                .backend(backend)
                .build()
                .map_err(|e| format!("cannot build a {} loop: {e}", rt.name()))?;
            lp.run_until_complete(async move {
                match case {
                    Case::Thread => thread_trips(trips).await,
                    Case::Blocking => {
                        for _ in 0..trips {
                            ringloop::spawn_blocking(pin_helper).await.unwrap();
                        }
                    }
                }
            });
        }
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / trips as f64;
    let cpu = (measure::cpu_seconds() - cpu0) * 1e6 / trips as f64;
    Ok((wall, cpu))
}

/// The `thread` case: a plain thread wakes the task, the task answers on a std channel.
async fn thread_trips(trips: u64) {
    let ping = Arc::new(Flag::default());
    let (answer_tx, answer_rx) = std::sync::mpsc::channel::<()>();
    let thread_ping = ping.clone();
    let waker = std::thread::spawn(move || {
        pin_helper();
        for _ in 0..trips {
            thread_ping.set();
            answer_rx.recv().unwrap();
        }
    });
    for _ in 0..trips {
        ping.wait().await;
        answer_tx.send(()).unwrap();
    }
    waker.join().unwrap();
}

/// Where the helper thread (the waker thread, or the blocking pool's thread) runs: `--pin same`
/// puts it on the loop's CPU (the wake is a context switch: the software path alone), `--pin
/// split` on the other CPU (the wake crosses CPUs, as in a server), none leaves it to the
/// scheduler.
static HELPER_CPU: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

fn pin_helper() {
    thread_local! {
        static PINNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    // Once per thread: the pool's threads run many closures.
    let cpu = HELPER_CPU.load(Ordering::Relaxed);
    if cpu != usize::MAX && !PINNED.replace(true) {
        measure::pin_to_cpu(cpu);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = run() {
        eprintln!("wake: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases = match args.first().map(String::as_str) {
        None | Some("both") => vec![Case::Thread, Case::Blocking],
        Some("thread") => vec![Case::Thread],
        Some("blocking") => vec![Case::Blocking],
        Some(a) if a.starts_with("--") => vec![Case::Thread, Case::Blocking],
        Some(other) => {
            return Err(format!(
                "unknown case {other:?}: use thread, blocking or both"
            ));
        }
    };
    let rounds = measure::flag(&args, "--rounds", 7)?.max(1);
    let trips = measure::flag(&args, "--trips", 20_000)?.max(1);
    let only = match args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1))
    {
        None => None,
        Some(Some(o)) if ALL.iter().any(|rt| rt.name() == o) => Some(o.as_str()),
        Some(o) => return Err(format!("--only {o:?}: use uring, epoll or tokio")),
    };
    match args
        .iter()
        .position(|a| a == "--pin")
        .map(|i| args.get(i + 1))
    {
        None => {}
        Some(Some(p)) if p == "same" || p == "split" => {
            measure::pin_to_cpu(0);
            HELPER_CPU.store(if p == "same" { 0 } else { 1 }, Ordering::Relaxed);
        }
        Some(p) => return Err(format!("--pin {p:?}: use same or split")),
    }
    for case in cases {
        let label = if case == Case::Thread {
            "thread"
        } else {
            "blocking"
        };
        println!("{label}: {rounds} rounds of {trips} trips (µs per trip, wall / CPU)");
        let (mut vs_epoll, mut vs_tokio) = (Vec::new(), Vec::new());
        let mut walls: [Vec<f64>; 3] = Default::default();
        let mut cpus: [Vec<f64>; 3] = Default::default();
        for round in 0..rounds {
            let mut line = format!("  round {round}:");
            let mut wall = [0.0; 3];
            for (i, rt) in ALL.into_iter().enumerate() {
                if only.is_some_and(|o| o != rt.name()) {
                    continue;
                }
                let (w, c) = measure(rt, case, trips)?;
                wall[i] = w;
                walls[i].push(w);
                cpus[i].push(c);
                line += &format!("  {} {w:6.2} / {c:6.2}", rt.name());
            }
            println!("{line}");
            if only.is_some() {
                continue;
            }
            vs_epoll.push(wall[1] / wall[0]);
            vs_tokio.push(wall[2] / wall[0]);
        }
        let mut line = String::from("  median:");
        for (i, rt) in ALL.into_iter().enumerate() {
            if !walls[i].is_empty() {
                let (w, c) = (median(&mut walls[i]), median(&mut cpus[i]));
                line += &format!(" {} {w:.2} / {c:.2}", rt.name());
            }
        }
        println!("{line}");
        if only.is_none() {
            println!(
                "  median of per-round ratios (trips/s): uring/epoll {:.3}x, uring/tokio {:.3}x",
                median(&mut vs_epoll),
                median(&mut vs_tokio)
            );
        }
    }
    Ok(())
}
