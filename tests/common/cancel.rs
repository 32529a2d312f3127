//! Cancellation at every await: a harness that drops a public future after each possible number
//! of polls, with the loop running between polls, and checks what is left behind.
//!
//! - [`drop_at_every_poll`] makes a future with its factory, polls it `k` times and drops it,
//!   for `k = 0, 1, 2, ...` until one completes within its `k` polls; it returns that output.
//!   Between two polls the loop runs (at least one turn, then until the future's waker is woken
//!   or [`WAKE_WAIT`] passed), so I/O progresses and completions race the drop.
//! - [`run_checked`] runs a test body on a fresh loop, then closes the loop and checks that
//!   `close()` is prompt, that no task, pool buffer or fd is left. Fd counts are process-wide:
//!   run it in a child test process ([`in_child_on`]).
//! - [`check_attempts`] checks a byte stream written by attempts that may have been dropped
//!   part way: each attempt's bytes, if any, come whole or as a prefix, in order, never twice.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use ringloop::{Backend, Builder, EventLoop};

/// Makes a `uring::NAME` and an `epoll::NAME` test from each `fn NAME(backend: Backend)`, each
/// run alone in a child test process ([`in_child_on`]) so fd counts are exact.
#[macro_export]
macro_rules! in_child_per_backend {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(
                #[test]
                fn $name() {
                    $crate::common::cancel::in_child_on(
                        ringloop::Backend::Uring,
                        stringify!($name),
                        super::$name,
                    );
                }
            )*
        }
        mod epoll {
            $(
                #[test]
                fn $name() {
                    $crate::common::cancel::in_child_on(
                        ringloop::Backend::Epoll,
                        stringify!($name),
                        super::$name,
                    );
                }
            )*
        }
    };
}

/// The most polls a sweep gives one future before the test fails (a future that never
/// completes is a test bug).
pub const MAX_POLLS: usize = 2_000;

/// How long the harness waits for the future's waker between two polls before it polls anyway.
pub const WAKE_WAIT: Duration = Duration::from_millis(50);

/// The longest a sweep may take before the test fails (a future that never completes, or a
/// wake lost after a drop, would otherwise make the sweep try every `k` up to [`MAX_POLLS`]).
pub const SWEEP_BOUND: Duration = Duration::from_secs(20);

/// Bound on `close()`: generous, it is there to turn a hang into a failure.
pub const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// The waker the swept future sees: records a wake and passes it to the waiting task.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(w) = self.outer.lock().unwrap().take() {
            w.wake();
        }
    }
}

/// Lets the loop run between two polls: one turn at least, then until `flag` is woken or
/// [`WAKE_WAIT`] has passed.
async fn let_the_loop_run(flag: &Flag) {
    ringloop::yield_now().await;
    let woken = poll_fn(|cx| {
        *flag.outer.lock().unwrap() = Some(cx.waker().clone());
        if flag.woken.swap(false, Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    let _ = ringloop::time::timeout(WAKE_WAIT, woken).await;
}

/// What a sweep ended with.
#[derive(Debug)]
pub struct Sweep<T> {
    /// The output of the first future that completed within its polls.
    pub output: T,
    /// How many polls that future took.
    pub polls: usize,
    /// How many futures were dropped before it (one per `k` tried).
    pub dropped: usize,
}

/// For `k = 0, 1, 2, ...`: makes a future with `make`, polls it up to `k` times (the loop runs
/// between polls) and drops it if it has not completed; returns the output of the first one that
/// completes. Each dropped future must leave its object as if it had never been made, or as the
/// future documents (a prefix of a write sent, a received message kept for the next call).
///
/// # Panics
///
/// If no future completes within [`MAX_POLLS`] polls or [`SWEEP_BOUND`].
pub async fn drop_at_every_poll<T>(mut make: impl AsyncFnMut() -> T) -> Sweep<T> {
    let start = Instant::now();
    for k in 0..MAX_POLLS {
        assert!(
            start.elapsed() < SWEEP_BOUND,
            "no future completed within {SWEEP_BOUND:?} (the last was dropped after {} polls): \
             a wake lost after a drop, or a future that cannot complete",
            k.saturating_sub(1)
        );
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut fut = pin!(make());
        for i in 0..k {
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(output) = fut.as_mut().poll(&mut cx) {
                return Sweep {
                    output,
                    polls: i + 1,
                    dropped: k,
                };
            }
            let_the_loop_run(&flag).await;
        }
        // Dropped here, after `k` polls.
    }
    panic!("no future completed within {MAX_POLLS} polls");
}

/// Runs `body` on a fresh loop of `backend` (built from `builder`), then checks what a
/// cancellation could leak: no task is left, no receive-pool buffer is held, `close()` returns
/// within [`CLOSE_BOUND`], and the process has as many fds open as before the loop was built.
///
/// Fd counts are process-wide: call it from a child test process ([`in_child_on`]).
pub fn run_checked<F: Future>(backend: Backend, builder: Builder, body: F) -> F::Output {
    let fds_before = super::open_fds();
    let mut lp = builder
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("the {backend} backend is required here but failed: {e}"));
    let out = lp.run_until_complete(body);
    // Tasks the body spawned and aborted are dropped at the loop's next turn.
    lp.run_until_complete(async {
        for _ in 0..3 {
            ringloop::yield_now().await;
        }
    });
    let tasks = lp.tasks();
    assert!(tasks.is_empty(), "tasks left after the test: {tasks:?}");
    let stats = lp.stats();
    assert_eq!(
        stats.pool_buffers_in_use, 0,
        "receive-pool buffers still held after every future was dropped"
    );
    close_within(lp, CLOSE_BOUND);
    // A blocking-pool job of a dropped fs future may still hold an fd for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fds_after = super::open_fds();
        if fds_after == fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fds leaked: {fds_before} open before the loop, {fds_after} after close ({})",
            fd_list()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    out
}

/// Closes `lp`, failing the test (and ending the process, since a hung `close` cannot be
/// interrupted) if it takes longer than `bound`.
pub fn close_within(lp: EventLoop, bound: Duration) {
    let done = Arc::new(AtomicBool::new(false));
    let watch = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(bound * 2);
        if !watch.load(Ordering::SeqCst) {
            eprintln!("EventLoop::close() hung for {:?}", bound * 2);
            std::process::exit(101);
        }
    });
    let start = Instant::now();
    lp.close();
    done.store(true, Ordering::SeqCst);
    assert!(
        start.elapsed() < bound,
        "EventLoop::close() took {:?}",
        start.elapsed()
    );
}

/// What this process has open, for a leak message.
fn fd_list() -> String {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        out.push(format!(
            "{}->{}",
            e.file_name().to_string_lossy(),
            target.display()
        ));
    }
    out.join(" ")
}

/// Runs `test` in a child test process (the test `BACKEND::name`), or runs it here if this is
/// that child.
pub fn in_child_on(backend: Backend, name: &str, test: impl FnOnce(Backend)) {
    if super::in_child() {
        test(backend);
    } else {
        super::run_in_child(&super::test_path(backend, name), &[]);
    }
}

/// `super::run_in_child` for a test that may be `#[ignore]`d: the child runs it even then (the
/// parent runs only when asked to, with `--ignored` or `--include-ignored`).
pub fn run_ignored_in_child(name: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--test-threads=1",
            "--nocapture",
            "--include-ignored",
        ])
        .env(super::CHILD_ENV, "1")
        .env_remove("RINGLOOP_BACKEND")
        .output()
        .expect("spawning the child test process");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child test {name} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child test {name} ran no test:\n{text}"
    );
}

/// One attempt to write bytes, as the peer's check sees it: every byte of it is `value`, it
/// offered `len` bytes, and `completed` is the count it returned if it completed (`None` if it
/// was dropped, when any prefix, possibly empty, may have gone).
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub value: u8,
    pub len: usize,
    pub completed: Option<usize>,
}

/// The byte every byte of attempt number `n` carries: consecutive attempts differ, and 0 is
/// never used.
pub fn attempt_value(n: usize) -> u8 {
    (n % 251) as u8 + 1
}

/// Checks that `received` is the attempts' bytes in order: each attempt's bytes form one run
/// (a dropped attempt's may be missing or a prefix; a completed one's are exactly its count),
/// and nothing else is there.
pub fn check_attempts(received: &[u8], attempts: &[Attempt]) {
    let mut pos = 0;
    for (i, a) in attempts.iter().enumerate() {
        let run = received[pos..]
            .iter()
            .take_while(|&&b| b == a.value)
            .count();
        // A run of this value that belongs to a later attempt cannot start here: the attempts
        // in between would have to be empty, and consecutive values differ, so a run found here
        // is this attempt's when the next attempt's value is not the same (it never is).
        match a.completed {
            Some(n) => assert_eq!(
                run, n,
                "attempt {i} ({a:?}) completed with {n} bytes but {run} of its bytes are at \
                 offset {pos}"
            ),
            None => assert!(
                run <= a.len,
                "attempt {i} ({a:?}) was dropped but {run} bytes of it are at offset {pos}"
            ),
        }
        pos += run;
    }
    assert_eq!(
        pos,
        received.len(),
        "bytes at offset {pos} belong to no attempt (out of order or duplicated): {:?}",
        &received[pos..(pos + 16).min(received.len())]
    );
}
