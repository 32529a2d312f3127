//! Signals on both backends: listeners on several loops, deliveries before `recv`, `ctrl_c`, a
//! pool that shuts down on SIGTERM (and dies at a second one), refused signals, handlers of others
//! that keep receiving, the default action once the last listener goes, and the echo example's
//! graceful exit (a `tokio::signal` listener made first: `ecosystem/tests/tokio_signal.rs`). Every test that sends a signal runs alone in a child process, so no other test
//! sees it.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{in_child_or_run, raise};
use ringloop::signal::{SignalKind, ctrl_c, signal};
use ringloop::{Backend, LoopPool};

fn usr1_wakes_listeners_on_two_loops(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let ready = Arc::new(AtomicUsize::new(0));
    let r = ready.clone();
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .start(move |_| {
            let r = r.clone();
            async move {
                let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
                r.fetch_add(1, Ordering::SeqCst);
                usr1.recv().await
            }
        })
        .unwrap();
    while ready.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    raise("USR1");
    for out in pool.join() {
        assert_eq!(out.unwrap(), Some(()));
    }
}

fn a_delivery_before_recv_is_seen(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let mut usr2 = signal(SignalKind::user_defined2()).unwrap();
        raise("USR2");
        std::thread::sleep(Duration::from_millis(20));
        let got = ringloop::time::timeout(Duration::from_secs(5), usr2.recv()).await;
        assert_eq!(got.expect("the delivery before recv was lost"), Some(()));
    });
}

fn ctrl_c_returns_on_sigint(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    // If ctrl_c did not catch it, SIGINT would kill this child and the parent test would fail.
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let sender = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            raise("INT");
        });
        ctrl_c().await.unwrap();
        sender.join().unwrap();
    });
}

/// `ctrl_c()` was an `async fn`: its listener was registered at the first poll, so a SIGINT
/// between the call and the first poll took its default action and killed the process. The
/// listener is registered by the call now.
fn ctrl_c_listens_from_the_call_not_the_first_poll(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let mut lp = common::new_loop(backend);
    let interrupted = ctrl_c();
    raise("INT");
    // `kill` has returned, so the signal was delivered to this process before the first poll.
    let res = lp.run_until_complete(ringloop::time::timeout(Duration::from_secs(5), interrupted));
    res.expect("the SIGINT before the first poll was not seen")
        .unwrap();
}

/// A listener that could not duplicate its eventfd (a full fd table) returned `Ready(None)` from
/// `poll_recv`, which a pool took for a delivery and shut down. An error is an error now:
/// `wait` says which, `recv` gives `None` that no caller in ringloop takes for a signal.
fn a_listener_that_cannot_wait_reports_the_error(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let mut lp = common::new_loop(backend);
    let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
    // Fill the fd table under a low limit.
    let limit = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: setrlimit reads a live rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
    let err = lp.run_until_complete(usr1.wait()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    assert_eq!(lp.run_until_complete(usr1.recv()), None);
    drop(held);
    // With room again the listener works.
    let sender = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(50));
        raise("USR1");
    });
    lp.run_until_complete(usr1.wait()).unwrap();
    sender.join().unwrap();
}

fn a_pool_shuts_down_on_sigterm(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .shutdown_on_signals(true)
        .start(|cx| async move {
            cx.shutdown().triggered().await;
            cx.index()
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    raise("TERM");
    let outs: Vec<usize> = pool.join().into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outs, [0, 1]);
}

/// Re-runs the test `name` alone in a child process, which must be ended by signal `sig`.
fn in_child_or_expect_death(name: &str, sig: i32) -> bool {
    if common::in_child() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(common::CHILD_ENV, "1")
        .env_remove("RINGLOOP_BACKEND")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(sig),
        "child test {name} was to die of signal {sig}, it ended with {}:\n{text}",
        out.status
    );
    false
}

/// `shutdown_on_signals` left its "the next signal kills" flag set when the pool ended without a
/// signal (loop 0's future returned first, and the task that cleared the flag was dropped): a
/// SIGTERM listener made afterwards got one delivery, and the next SIGTERM killed the process.
fn a_pool_that_ended_without_a_signal_leaves_no_second_signal_rule(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .shutdown_on_signals(true)
        .start(|cx| async move { cx.index() })
        .unwrap();
    assert_eq!(
        pool.join()
            .into_iter()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>(),
        [0, 1]
    );
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let mut term = signal(SignalKind::terminate()).unwrap();
        for n in 1..=3 {
            raise("TERM");
            let got = ringloop::time::timeout(Duration::from_secs(5), term.recv()).await;
            assert_eq!(
                got.unwrap_or_else(|_| panic!("SIGTERM {n} was not received")),
                Some(())
            );
        }
    });
}

/// A pool that shut down on a SIGTERM left "the next one kills" set after it was done: with a
/// listener alive throughout (so nothing reset it), the next SIGTERM ended the process.
fn a_pool_that_ended_on_a_signal_leaves_no_second_signal_rule(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let mut term = signal(SignalKind::terminate()).unwrap();
        let pool = LoopPool::builder()
            .threads(2)
            .backend(backend)
            .shutdown_on_signals(true)
            .start(|cx| async move { cx.shutdown().triggered().await })
            .unwrap();
        ringloop::time::sleep(Duration::from_millis(50)).await;
        raise("TERM");
        let got = ringloop::time::timeout(Duration::from_secs(5), term.recv()).await;
        assert_eq!(got.expect("the pool's SIGTERM was not seen"), Some(()));
        ringloop::spawn_blocking(move || {
            for out in pool.join() {
                out.unwrap();
            }
        })
        .await
        .unwrap();
        for n in 1..=2 {
            raise("TERM");
            let got = ringloop::time::timeout(Duration::from_secs(5), term.recv()).await;
            assert_eq!(
                got.unwrap_or_else(|_| panic!("SIGTERM {n} after the pool was not received")),
                Some(())
            );
        }
    });
}

/// The second SIGTERM to a pool that shuts down on signals takes the default action.
fn a_second_signal_kills_a_pool_that_shuts_down(backend: Backend, name: &str) {
    if !in_child_or_expect_death(name, libc::SIGTERM) {
        return;
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let s = stopping.clone();
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .shutdown_on_signals(true)
        .start(move |cx| {
            let s = s.clone();
            async move {
                cx.shutdown().triggered().await;
                s.store(true, Ordering::SeqCst);
                // A slow graceful shutdown.
                ringloop::time::sleep(Duration::from_secs(10)).await;
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    raise("TERM");
    while !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    raise("TERM");
    std::thread::sleep(Duration::from_secs(5));
    drop(pool);
    eprintln!("the second SIGTERM did not end the process");
}

static RAW_HANDLER_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn raw_handler(_: libc::c_int) {
    RAW_HANDLER_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// ringloop's handler replaced a handler installed before it with `sigaction`, which then never ran
/// again. It chains now: both see the signal.
fn a_raw_handler_installed_first_keeps_receiving(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    // SAFETY: an all-zero sigaction is valid; the handler only touches an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = raw_handler as *const () as libc::sighandler_t;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
        raise("USR1");
        let got = ringloop::time::timeout(Duration::from_secs(5), usr1.recv()).await;
        assert_eq!(got.expect("ringloop's listener got nothing"), Some(()));
    });
    assert_eq!(
        RAW_HANDLER_CALLS.load(Ordering::SeqCst),
        1,
        "the handler installed first was not called"
    );
}

/// Once the last listener of a signal nobody handled before is gone, the signal takes its
/// default action again (SIGUSR1 ends the process).
fn the_default_action_comes_back_after_the_last_listener(backend: Backend, name: &str) {
    if !in_child_or_expect_death(name, libc::SIGUSR1) {
        return;
    }
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
        raise("USR1");
        let got = ringloop::time::timeout(Duration::from_secs(5), usr1.recv()).await;
        assert_eq!(got.expect("the listener got nothing"), Some(()));
    });
    raise("USR1");
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("SIGUSR1 with no listener left did not end the process");
}

macro_rules! both {
    ($($name:ident),*) => {
        mod uring { $( #[test] fn $name() {
            super::$name(ringloop::Backend::Uring, concat!("uring::", stringify!($name)))
        } )* }
        mod epoll { $( #[test] fn $name() {
            super::$name(ringloop::Backend::Epoll, concat!("epoll::", stringify!($name)))
        } )* }
    };
}

both!(
    usr1_wakes_listeners_on_two_loops,
    a_delivery_before_recv_is_seen,
    ctrl_c_returns_on_sigint,
    ctrl_c_listens_from_the_call_not_the_first_poll,
    a_listener_that_cannot_wait_reports_the_error,
    a_pool_shuts_down_on_sigterm,
    a_pool_that_ended_without_a_signal_leaves_no_second_signal_rule,
    a_pool_that_ended_on_a_signal_leaves_no_second_signal_rule,
    a_second_signal_kills_a_pool_that_shuts_down,
    a_raw_handler_installed_first_keeps_receiving,
    the_default_action_comes_back_after_the_last_listener
);

#[test]
fn signals_that_cannot_or_must_not_be_caught_are_refused() {
    for (sig, name) in [
        (9, "SIGKILL"),
        (19, "SIGSTOP"),
        (11, "SIGSEGV"),
        (7, "SIGBUS"),
        (8, "SIGFPE"),
        (4, "SIGILL"),
    ] {
        let err = signal(SignalKind::from_raw(sig)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(name), "{err}");
    }
    for bad in [0, -1, 1000] {
        let err = signal(SignalKind::from_raw(bad)).unwrap_err();
        assert!(err.to_string().contains("not a signal number"), "{err}");
    }
}

/// `echo --threads 2` with open connections exits 0 soon after SIGTERM (it gives them 0.8 s), on both
/// backends.
#[test]
fn the_echo_example_stops_gracefully_on_sigterm() {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/signals-HASH -> target/debug/examples/echo
    let echo = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/echo");
    if !echo.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "echo"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for backend in ["uring", "epoll"] {
        let mut child = Command::new(&echo)
            .args(["127.0.0.1:0", "--threads", "2"])
            .env("RINGLOOP_BACKEND", backend)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("echo printed {line:?}"));
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            std::io::Write::write_all(&mut c, b"ping").unwrap();
            let mut back = [0u8; 4];
            std::io::Read::read_exact(&mut c, &mut back).unwrap();
            assert_eq!(&back, b"ping");
            open.push(c); // left open: the server must not wait for them forever
        }
        let start = Instant::now();
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = child.wait().unwrap();
        let took = start.elapsed();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        assert!(status.success(), "{backend}: echo exited with {status}");
        // The grace period is 0.8 s; the bound here is loose so a loaded machine cannot fail it.
        assert!(
            took < Duration::from_secs(3),
            "{backend}: echo took {took:?} to stop"
        );
        let served: usize = out
            .lines()
            .filter_map(|l| {
                l.strip_prefix("loop ")?
                    .split(' ')
                    .nth(2)?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        assert_eq!(served, 4, "{backend}: echo printed {out:?}");
    }
}
