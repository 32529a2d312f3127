//! Stress on one loop, both backends: 10,000 concurrent TCP connections each echoing and
//! verified, 1,000,000 timers, 100,000 tasks.
//!
//! `RINGLOOP_STRESS_SCALE` (a percentage, default 100) scales every count down for slow machines.

mod common;

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{CHILD_ENV, in_child, pattern, test_path};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::time::{sleep, timeout};
use ringloop::{spawn, yield_now};

fn scaled(n: usize) -> usize {
    let pct: usize = std::env::var("RINGLOOP_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    (n * pct / 100).max(1)
}

/// Raises the soft fd limit to the hard one (20,000 on these machines).
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
    }
    r.rlim_cur
}

async fn echo(s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        if res? == 0 {
            return Ok(());
        }
        let (res, b) = s.write_all(buf).await;
        res?;
        buf = b;
    }
}

/// The client side, in a child process: `conns` connections at once, each echoing three
/// messages and checking them byte for byte.
async fn clients(addr: String, conns: usize) {
    let done = Rc::new(Cell::new(0usize));
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let addr = addr.clone();
            let done = done.clone();
            spawn(async move {
                let s = TcpStream::connect(addr.as_str()).await.unwrap();
                for round in 0..3 {
                    let msg = pattern(c * 7 + round, 1 + (c * 131 + round * 17) % 2000);
                    let (res, _) = s.write_all(msg.clone()).await;
                    res.unwrap();
                    let mut got = Vec::with_capacity(msg.len());
                    let mut buf = Vec::with_capacity(2048);
                    while got.len() < msg.len() {
                        let (res, b) = s.read(buf).await;
                        buf = b;
                        let n = res.unwrap();
                        assert!(n > 0, "connection {c} closed early");
                        got.extend_from_slice(&buf[..n]);
                    }
                    assert!(got == msg, "connection {c} round {round}: wrong echo");
                }
                done.set(done.get() + 1);
                s
            })
        })
        .collect();
    // Keep every connection open until all have finished, so all are concurrent.
    let mut open = Vec::with_capacity(conns);
    for t in tasks {
        open.push(t.await.unwrap());
    }
    assert_eq!(done.get(), conns);
    println!("clients: {conns} connections echoed and verified");
}

both_backends! {
    fn ten_thousand_concurrent_connections_echo(lp: &mut EventLoop) {
        let conns = scaled(10_000);
        if in_child() {
            raise_nofile();
            let addr = std::env::var("STRESS_ADDR").unwrap();
            lp.run_until_complete(clients(addr, conns));
            return;
        }
        let limit = raise_nofile();
        assert!(limit as usize > conns + 100, "RLIMIT_NOFILE hard limit {limit} is too low");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args([&test_path(lp.backend(), "ten_thousand_concurrent_connections_echo"), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("STRESS_ADDR", addr.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let accepted = Rc::new(Cell::new(0usize));
        let count = accepted.clone();
        let out = lp.run_until_complete(async move {
            let server = spawn(async move {
                loop {
                    let (s, _) = listener.accept().await.unwrap();
                    count.set(count.get() + 1);
                    spawn(async move { echo(s).await.unwrap() });
                }
            });
            let out = ringloop::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
            server.abort();
            out
        });
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the client process failed:\n{text}");
        assert!(text.contains("echoed and verified"), "{text}");
        assert_eq!(accepted.get(), conns);
        eprintln!("{conns} connections on {} in {:?}", lp.backend(), start.elapsed());
    }

    fn a_million_timers(lp: &mut EventLoop) {
        let tasks = scaled(1000);
        let per_task = 1000;
        let fired = lp.run_until_complete(async move {
            let fired = Rc::new(Cell::new(0usize));
            let hs: Vec<_> = (0..tasks)
                .map(|t| {
                    let fired = fired.clone();
                    spawn(async move {
                        for i in 0..per_task {
                            // Deadlines spread over 0..3 ms; each must not fire early.
                            let d = Duration::from_micros(((t * 7 + i * 13) % 3000) as u64);
                            let start = Instant::now();
                            sleep(d).await;
                            assert!(start.elapsed() >= d, "a timer fired early");
                            fired.set(fired.get() + 1);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
            // And a million timeouts armed and cancelled without firing.
            for _ in 0..tasks * per_task {
                assert_eq!(timeout(Duration::from_secs(60), async { 1 }).await, Ok(1));
            }
            fired.get()
        });
        assert_eq!(fired, tasks * per_task);
    }

    fn a_hundred_thousand_tasks(lp: &mut EventLoop) {
        let n = scaled(100_000);
        let sum = lp.run_until_complete(async move {
            let hs: Vec<_> = (0..n as u64)
                .map(|i| spawn(async move {
                    yield_now().await;
                    i
                }))
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..n as u64).sum::<u64>());
        assert!(lp.stats().tasks_spawned >= n as u64);
    }
}
