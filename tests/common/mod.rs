//! Helpers shared by the integration tests.
//!
//! `both_backends!` turns each test body into two tests, `uring::NAME` and `epoll::NAME`, in one
//! test binary. The uring variant fails (never skips) when io_uring cannot run, so CI notices.
//!
//! Tests that count fds or change process-wide state (seccomp, env vars) re-run themselves in a
//! child process with `run_in_child`, so parallel tests in this process cannot disturb them.

#![allow(dead_code)]

pub mod probe;

use std::process::Command;

pub mod cancel;

use ringloop::{Backend, EventLoop};

/// Set in a child process started by `run_in_child`.
pub const CHILD_ENV: &str = "RINGLOOP_TEST_CHILD";

/// A loop on exactly this backend; panics with the reason if it cannot be built.
pub fn new_loop(backend: Backend) -> EventLoop {
    EventLoop::builder()
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("the {backend} backend is required here but failed: {e}"))
}

/// Makes a `uring::NAME` and an `epoll::NAME` test from each `fn NAME(lp: &mut EventLoop) {..}`.
#[macro_export]
macro_rules! both_backends {
    ($($(#[$meta:meta])* fn $name:ident($lp:ident : &mut EventLoop) $body:block)*) => {
        $(
            $(#[$meta])*
            #[allow(unused_mut, unused_variables)]
            fn $name($lp: &mut ringloop::EventLoop) $body
        )*
        mod uring {
            $(
                #[test]
                fn $name() {
                    let mut lp = $crate::common::new_loop(ringloop::Backend::Uring);
                    super::$name(&mut lp);
                    lp.close();
                }
            )*
        }
        mod epoll {
            $(
                #[test]
                fn $name() {
                    let mut lp = $crate::common::new_loop(ringloop::Backend::Epoll);
                    super::$name(&mut lp);
                    lp.close();
                }
            )*
        }
    };
}

/// Whether this run injects faults (`RINGLOOP_FAULTS`, in a build with the `fault-injection`
/// feature): tests that measure the fast paths' exact cost (syscall or op counts, a write that
/// goes whole) do not hold then, by design, and skip those checks.
pub fn faults_on() -> bool {
    cfg!(feature = "fault-injection") && std::env::var_os("RINGLOOP_FAULTS").is_some()
}

/// True inside a child started by `run_in_child`.
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Sends `sig` (a name for kill(1), like "USR1") to this process.
pub fn raise(sig: &str) {
    let pid = std::process::id().to_string();
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// True in the child process `run_in_child` started (run the test's body there); in the parent,
/// runs the test named `name` in a child and returns false.
pub fn in_child_or_run(name: &str) -> bool {
    if in_child() {
        return true;
    }
    run_in_child(name, &[]);
    false
}

/// Re-runs the test `name` (its path without the crate, e.g. `uring::no_fd_leak`) alone in a
/// child process with `envs` set, and returns its combined output. Panics if the child fails.
pub fn run_in_child(name: &str, envs: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env_remove("RINGLOOP_BACKEND");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawning the child test process");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child test {name} failed:\n{text}");
    // The child's fault-injection totals, for the fault suite's summary (`ci/faults.sh`).
    for line in text
        .lines()
        .filter(|l| l.starts_with("ringloop: faults injected"))
    {
        eprintln!("{line}");
    }
    assert!(
        text.contains("1 passed"),
        "child test {name} ran no test (wrong name?):\n{text}"
    );
    text
}

/// The test path of a test function made by `both_backends!`: `uring::NAME` or `epoll::NAME`.
pub fn test_path(backend: Backend, name: &str) -> String {
    format!("{backend}::{name}")
}

/// How many fds this process has open. With `tokio-compat`, the process-wide tokio runtime is
/// started first: its fds (epoll, eventfd) stay open for the process's life, and would otherwise
/// appear between two counts.
pub fn open_fds() -> usize {
    #[cfg(feature = "tokio-compat")]
    let _ = ringloop::compat::tokio_handle();
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .count()
}

/// A deterministic xorshift generator (seed it with a non-zero value).
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A deterministic byte pattern, so a transfer can be checked byte for byte.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

/// Runs `reads` (4,096 reads that always find data at once, so they never return `Pending` by
/// themselves) next to another task, and checks the other task got to run within the first 256
/// reads: the cooperative budget must make a busy reader yield.
#[allow(dead_code)] // not every test binary has a busy-reader test
pub async fn busy_reader_lets_others_run<F, Fut>(mut read: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let other_ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = other_ran.clone();
    ringloop::spawn(async move { flag.set(true) });
    let mut seen_at = None;
    for i in 0..4096u64 {
        read(i).await;
        if seen_at.is_none() && other_ran.get() {
            seen_at = Some(i);
        }
    }
    let at = seen_at.expect("the other task never ran while the reader was busy");
    assert!(at <= 256, "the other task waited {at} reads");
}

/// Installs a seccomp filter that makes io_uring_setup fail with EPERM, as Docker's default
/// profile does, on this thread.
pub fn deny_io_uring_setup() {
    deny_syscall(libc::SYS_io_uring_setup, libc::EPERM);
}

/// Installs a seccomp filter that makes the syscall `nr` fail with `errno` on this thread (and
/// the threads and processes it starts from now on).
pub fn deny_syscall(nr: libc::c_long, errno: i32) {
    let filter = [
        // A = syscall number
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == io_uring_setup: next, else skip one
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: nr as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | errno as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: plain prctl calls; `prog` points at a live filter for the duration of the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog),
            0
        );
    }
}

/// A connected TCP pair (client, server) on the running loop.
pub async fn tcp_pair() -> (ringloop::net::TcpStream, ringloop::net::TcpStream) {
    let listener = ringloop::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = ringloop::spawn(async move { listener.accept().await.unwrap().0 });
    let client = ringloop::net::TcpStream::connect(addr).await.unwrap();
    (client, accept.await.unwrap())
}

/// Whether the running kernel is at least `major.minor` (from `uname -r`).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (next(), next()) >= (major, minor)
}

/// Reads from `s` until exactly `n` bytes came (panics at an early end of stream or an error).
pub async fn read_n(s: &ringloop::net::TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(256 * 1024);
    while got.len() < n {
        let (res, b) = s.read(buf).await;
        let k = res.unwrap();
        assert!(k > 0, "end of stream after {} of {n} bytes", got.len());
        got.extend_from_slice(&b[..k]);
        buf = b;
    }
    assert_eq!(got.len(), n, "more bytes than sent");
    got
}
