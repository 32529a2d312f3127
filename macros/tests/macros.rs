//! `#[ringloop::main]` and `#[ringloop::test]` at run time: which backends a test runs on, on
//! fresh loops, with a paused clock, returning `Result`, and what a failure says.

use std::cell::RefCell;
use std::panic::catch_unwind;
use std::time::Duration;

use ringloop::Backend;
use ringloop::time::{self, Instant};

thread_local! {
    /// The backends the probe tests below ran on, on this thread.
    static RAN_ON: RefCell<Vec<Backend>> = const { RefCell::new(Vec::new()) };
}

fn ran_on() -> Vec<Backend> {
    RAN_ON.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// The backends a test runs on by default here: both, unless `RINGLOOP_BACKEND` narrows them.
fn default_backends() -> Vec<Backend> {
    match std::env::var("RINGLOOP_BACKEND").as_deref() {
        Ok("uring") => vec![Backend::Uring],
        Ok("epoll") => vec![Backend::Epoll],
        _ => vec![Backend::Uring, Backend::Epoll],
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[ringloop::test]
async fn records_its_backend() {
    let stats = ringloop::current_stats().expect("inside a loop");
    assert_eq!(
        stats.tasks_spawned, 0,
        "each backend's run gets a fresh loop"
    );
    // Left running: a fresh loop for the next backend must not see it.
    ringloop::spawn(std::future::pending::<()>());
    RAN_ON.with(|r| r.borrow_mut().push(ringloop::current_backend().unwrap()));
}

#[ringloop::test(backend = "epoll")]
async fn records_its_backend_on_epoll() {
    RAN_ON.with(|r| r.borrow_mut().push(ringloop::current_backend().unwrap()));
}

#[ringloop::test(backend = "uring")]
async fn records_its_backend_on_uring() {
    RAN_ON.with(|r| r.borrow_mut().push(ringloop::current_backend().unwrap()));
}

/// By default the body runs on every backend, in turn, each on a fresh loop; `backend = ".."`
/// pins one.
#[test]
fn a_test_runs_on_every_backend_unless_pinned() {
    ran_on();
    records_its_backend();
    assert_eq!(ran_on(), default_backends());
    records_its_backend_on_epoll();
    assert_eq!(ran_on(), [Backend::Epoll]);
    records_its_backend_on_uring();
    assert_eq!(ran_on(), [Backend::Uring]);
}

/// `start_paused = true`: a one-hour timeout resolves at once, on each backend.
#[ringloop::test(start_paused = true)]
async fn start_paused_runs_on_a_paused_clock() {
    let real = std::time::Instant::now();
    let start = Instant::now();
    let res = time::timeout(Duration::from_secs(3600), std::future::pending::<()>()).await;
    assert!(res.is_err());
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
    assert!(real.elapsed() < Duration::from_secs(30));
}

/// Without `start_paused` the clock runs.
#[ringloop::test]
async fn the_clock_runs_by_default() {
    let start = Instant::now();
    time::sleep(Duration::from_millis(2)).await;
    assert!(start.elapsed() >= Duration::from_millis(2));
    assert!(start.elapsed() < Duration::from_secs(30));
}

/// A body returning `Result` can use `?` and `return`.
#[ringloop::test]
async fn a_test_may_return_a_result() -> std::io::Result<()> {
    let (a, b) = ringloop::net::UnixStream::pair()?;
    let (res, _) = a.write_all(b"ping".to_vec()).await;
    res?;
    let (n, buf) = b.read(Vec::with_capacity(8)).await;
    if n? != 4 {
        return Err(std::io::Error::other("short read"));
    }
    assert_eq!(buf, b"ping");
    Ok(())
}

/// A panic names the backend it happened on, and `expected` still matches the message.
#[ringloop::test(backend = "epoll")]
#[should_panic(expected = "failed on the epoll backend: boom")]
async fn a_panic_names_the_backend() {
    panic!("boom");
}

/// An `Err` fails the test, naming the backend and the error.
#[ringloop::test(backend = "epoll")]
#[should_panic(expected = "failed on the epoll backend: the test returned Err(\"nope\")")]
async fn an_err_fails_the_test() -> Result<(), String> {
    Err("nope".to_owned())
}

thread_local! {
    /// Set by the test that calls `fails_on_epoll_only`; run by libtest on its own, it passes.
    static FAIL_ON_EPOLL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[ringloop::test]
async fn fails_on_epoll_only() {
    if FAIL_ON_EPOLL.get() && ringloop::current_backend() == Some(Backend::Epoll) {
        panic!("only here");
    }
}

/// A test failing on one backend says which, and that it passed on the other; the other
/// backend still ran after the failure.
#[test]
fn a_failure_on_one_backend_says_which_and_that_the_other_passed() {
    if default_backends().len() < 2 {
        return; // RINGLOOP_BACKEND narrows the run to one backend
    }
    FAIL_ON_EPOLL.set(true);
    let err = catch_unwind(fails_on_epoll_only).expect_err("it fails on epoll");
    let msg = panic_message(&*err);
    assert!(
        msg.contains("fails_on_epoll_only failed on the epoll backend: only here")
            && msg.contains("(it passed on the uring backend)"),
        "{msg}"
    );
}

#[ringloop::test]
async fn needs_both_backends() {}

/// Where io_uring cannot run (here a seccomp filter on this thread refuses `io_uring_setup`, as
/// Docker's default profile does), a test that runs on every backend FAILS on uring, saying
/// why and how to run on epoll only; it never passes silently. The epoll run still happens.
#[test]
fn without_io_uring_the_uring_run_fails_and_says_what_to_do() {
    if default_backends().len() < 2 {
        return;
    }
    // The filter stays on this thread, which libtest gives to this test alone.
    let t = std::thread::spawn(|| {
        deny_io_uring_setup();
        catch_unwind(needs_both_backends)
    });
    let err = t.join().unwrap().expect_err("the uring run must fail");
    let msg = panic_message(&*err);
    assert!(
        msg.contains("needs_both_backends failed on the uring backend: cannot build a loop")
            && msg.contains("RINGLOOP_BACKEND=epoll")
            && msg.contains("backend = \"epoll\"")
            && msg.contains("(it passed on the epoll backend)"),
        "{msg}"
    );
}

#[ringloop::main(backend = "epoll")]
async fn pinned_main() -> Result<Backend, String> {
    let backend = ringloop::current_backend().ok_or("no loop")?;
    if backend != Backend::Epoll {
        return Err(format!("ran on {backend}"));
    }
    Ok(backend)
}

#[ringloop::main]
async fn plain_main() -> u32 {
    ringloop::spawn(async { 41 }).await.unwrap() + 1
}

/// `#[ringloop::main]` runs the body on a loop (the pinned backend when given) and returns what
/// it returns; the loop is closed afterwards.
#[test]
fn main_runs_the_body_on_a_loop() {
    assert_eq!(pinned_main(), Ok(Backend::Epoll));
    assert_eq!(plain_main(), 42);
    assert_eq!(ringloop::current_backend(), None, "the loop is gone");
}

/// A seccomp filter on this thread that makes `io_uring_setup` fail with `EPERM`.
fn deny_io_uring_setup() {
    let filter = [
        // A = syscall number; if A == io_uring_setup return EPERM, else allow.
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
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

/// The README's example: a read that nothing answers loses to a one-hour timeout on the paused
/// clock, at once, on each backend.
#[ringloop::test(start_paused = true)]
async fn gives_up_after_an_hour() -> std::io::Result<()> {
    let (ours, _theirs) = ringloop::net::UnixStream::pair()?;
    let read = ours.read(Vec::with_capacity(16));
    let res = ringloop::time::timeout(std::time::Duration::from_secs(3600), read).await;
    assert!(res.is_err()); // in milliseconds of real time: the paused clock jumped
    Ok(())
}

thread_local! {
    /// Cleared by the test that checks `#[should_panic]` on one backend only.
    static PANIC_EVERYWHERE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Run by libtest on its own, it panics on every backend, as `#[should_panic]` wants.
#[ringloop::test]
#[should_panic(expected = "boom")]
async fn should_panic_wants_a_panic_on_every_backend() {
    if PANIC_EVERYWHERE.get() || ringloop::current_backend() == Some(Backend::Epoll) {
        panic!("boom");
    }
}

/// A `#[should_panic]` test that panics on one backend only returns normally, so libtest fails
/// it ("did not panic as expected") rather than counting the one panic as the expected one.
#[test]
fn should_panic_fails_when_one_backend_does_not_panic() {
    if default_backends().len() < 2 {
        return; // RINGLOOP_BACKEND narrows the run to one backend
    }
    PANIC_EVERYWHERE.set(false);
    let run = std::panic::catch_unwind(should_panic_wants_a_panic_on_every_backend);
    PANIC_EVERYWHERE.set(true);
    assert!(
        run.is_ok(),
        "a #[should_panic] test that passed on uring still panicked, so libtest counted it as passed"
    );
}
