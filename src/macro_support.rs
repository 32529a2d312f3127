//! What the code `#[ringloop::main]` and `#[ringloop::test]` generate calls (feature `macros`).
//! Not a public API: the macros' expansions are its only users, and it may change with them.

use std::fmt::{self, Debug, Write as _};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::backend::{Choice, choice_from_env};
use crate::{Backend, EventLoop};

/// `#[ringloop::main]`: builds a loop (on `backend`, else the usual choice), runs `main`'s body,
/// closes the loop.
#[track_caller]
pub fn run_main<F: Future>(backend: Option<Backend>, body: F) -> F::Output {
    let mut builder = EventLoop::builder();
    if let Some(b) = backend {
        builder = builder.backend(b);
    }
    let mut lp = builder.build().unwrap_or_else(|e| {
        let hint = match backend {
            Some(Backend::Uring) => {
                " (#[ringloop::main(backend = \"uring\")] insists on io_uring: remove the option \
                 to fall back to epoll where io_uring cannot run)"
            }
            _ => "",
        };
        panic!("#[ringloop::main]: cannot build the event loop: {e}{hint}")
    });
    let out = lp.run_until_complete(body);
    lp.close();
    out
}

/// What a `#[ringloop::test]` body may return: `()` or `Result<(), E: Debug>`.
#[diagnostic::on_unimplemented(
    message = "a #[ringloop::test] function returns `()` or `Result<(), E>` with `E: Debug`, not `{Self}`",
    label = "this is what the test body returns"
)]
pub trait TestResult {
    /// `Err` with what to report if the test failed.
    fn into_test_result(self) -> Result<(), String>;
}

impl TestResult for () {
    fn into_test_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> TestResult for Result<(), E> {
    fn into_test_result(self) -> Result<(), String> {
        self.map_err(|e| format!("the test returned Err({e:?})"))
    }
}

/// `#[ringloop::test]`: runs `body()` on each backend (or the pinned one), each on a fresh loop,
/// and panics, naming the backend, if any run failed. With `expect_panic` (the test carries
/// `#[should_panic]`), it panics only if every run failed, and returns normally, naming the
/// backends that passed, if any did: libtest then reports the test as failed.
pub fn run_test<F, Fut>(
    name: &str,
    pinned: Option<Backend>,
    start_paused: bool,
    expect_panic: bool,
    body: F,
) where
    F: Fn() -> Fut,
    Fut: Future,
    Fut::Output: TestResult,
{
    let backends = match pinned {
        Some(b) => vec![b],
        None => match choice_from_env() {
            Ok(Choice::Auto) => vec![Backend::Uring, Backend::Epoll],
            Ok(Choice::Forced(b)) => vec![b],
            Err(e) => panic!("{name}: {e}"),
        },
    };
    let mut failed = Vec::new();
    let mut passed = Vec::new();
    for &backend in &backends {
        // Captured with the test's output, shown when it fails: the panic message the hook prints
        // next belongs to this backend.
        eprintln!("ringloop::test: {name} on the {backend} backend");
        let run = catch_unwind(AssertUnwindSafe(|| {
            run_one(backend, pinned.is_some(), start_paused, &body)
        }));
        match run {
            Ok(Ok(())) => passed.push(backend),
            Ok(Err(why)) => failed.push((backend, why)),
            Err(payload) => failed.push((backend, panic_message(&*payload))),
        }
    }
    if failed.is_empty() {
        return;
    }
    if expect_panic && !passed.is_empty() {
        eprintln!(
            "ringloop::test: {name} is #[should_panic] but did not panic on the {}",
            Backends(&passed)
        );
        return;
    }
    let mut msg = String::new();
    for (i, (backend, why)) in failed.iter().enumerate() {
        if i > 0 {
            msg.push('\n');
        }
        let _ = write!(msg, "{name} failed on the {backend} backend: {why}");
    }
    if !passed.is_empty() {
        let _ = write!(msg, "\n(it passed on the {})", Backends(&passed));
    }
    panic!("{msg}");
}

fn run_one<F, Fut>(
    backend: Backend,
    pinned: bool,
    start_paused: bool,
    body: &F,
) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: Future,
    Fut::Output: TestResult,
{
    let mut lp = EventLoop::builder()
        .backend(backend)
        .start_paused(start_paused)
        .build()
        .map_err(|e| {
            let hint = match (backend, pinned) {
                (Backend::Uring, false) => {
                    "; a test runs on every backend and fails where one cannot run: to run it on \
                     epoll only, write #[ringloop::test(backend = \"epoll\")] or set \
                     RINGLOOP_BACKEND=epoll"
                }
                (Backend::Uring, true) => {
                    "; this test pins backend = \"uring\": it cannot pass where io_uring cannot run"
                }
                _ => "",
            };
            format!("cannot build a loop on the {backend} backend: {e}{hint}")
        })?;
    let out = lp.run_until_complete(body());
    lp.close();
    out.into_test_result()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "it panicked (with a payload that is not a string)".to_owned()
    }
}

struct Backends<'a>(&'a [Backend]);

impl fmt::Display for Backends<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{b} backend")?;
        }
        Ok(())
    }
}
