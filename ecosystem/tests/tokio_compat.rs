//! The `tokio-compat` feature on both backends: tokio's timers, sockets, `spawn` and
//! `spawn_blocking` called from ringloop tasks; reqwest (GET and a streamed POST) against an axum
//! app served by ringloop on the same loop; tower-http's `TimeoutLayer` in that app.
//!
//! Nested runtimes: every test runs its loop from a plain thread, from inside a current_thread
//! runtime's `block_on` (what `#[tokio::test]` does), from inside a task of a multi-thread
//! runtime with one worker and with four, and from a thread entered in a multi-thread runtime
//! (`Handle::enter`). A loop that reused a runtime its own thread must drive hung there; each run
//! has a deadline, so a hang fails the test instead of stalling the suite.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ringloop::net::TcpListener;
use ringloop::spawn;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, world!" }))
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .route(
            "/slow/{ms}",
            // tokio's own sleep, inside a handler that ringloop polls.
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "done"
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(200),
        ))
}

/// Serves `app()` on a ringloop listener on the running loop; its URL.
fn start_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    spawn(async move {
        ringloop::compat::axum::serve(listener, app())
            .await
            .unwrap()
    });
    url
}

/// Where a test's loop runs.
#[derive(Debug, Clone, Copy)]
enum Nest {
    /// A thread of its own, in no tokio context.
    Plain,
    /// Inside `block_on` of a current_thread runtime, as under `#[tokio::test]`.
    CurrentThread,
    /// Inside a task spawned on a multi-thread runtime with this many workers.
    WorkerTask(usize),
    /// On a thread that entered a one-worker multi-thread runtime (`Handle::enter`) and drives
    /// none of its work: the one case where the loop may use the caller's runtime.
    Entered,
}

/// How long one nested run may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(30);

/// Builds a loop on `backend` where `nest` says, runs `body` on it and closes it; fails if that
/// panics or has not finished within [`DEADLINE`].
fn run_nested(nest: Nest, backend: ringloop::Backend, body: fn(&mut ringloop::EventLoop)) {
    use tokio::runtime::Builder;
    let (done_tx, done) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let run = move || {
            let mut lp = common::new_loop(backend);
            body(&mut lp);
            lp.close();
        };
        match nest {
            Nest::Plain => run(),
            Nest::CurrentThread => {
                let rt = Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move { run() });
            }
            Nest::WorkerTask(workers) => {
                let rt = Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .unwrap();
                let task = rt.spawn(async move { run() });
                if let Err(e) = rt.block_on(task) {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
            Nest::Entered => {
                let rt = Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("caller-runtime")
                    .enable_all()
                    .build()
                    .unwrap();
                let _entered = rt.enter();
                run();
            }
        }
        let _ = done_tx.send(());
    });
    match done.recv_timeout(DEADLINE) {
        Ok(()) => thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Ok(()) => unreachable!("the run ended without saying so"),
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "{backend}: the loop run {nest:?} has not finished after {DEADLINE:?}: the tokio \
             context it entered is not being driven"
        ),
    }
}

/// Makes, from each `fn NAME(lp: &mut EventLoop) {..}`, a test `CONTEXT::BACKEND::NAME` for every
/// [`Nest`] and both backends.
macro_rules! nested_runtimes {
    ($($(#[$meta:meta])* fn $name:ident($lp:ident : &mut EventLoop) $body:block)*) => {
        $(
            $(#[$meta])*
            fn $name($lp: &mut ringloop::EventLoop) $body
        )*
        nested_runtimes!(@nest plain, crate::Nest::Plain; $($name)*);
        nested_runtimes!(@nest current_thread, crate::Nest::CurrentThread; $($name)*);
        nested_runtimes!(@nest one_worker_task, crate::Nest::WorkerTask(1); $($name)*);
        nested_runtimes!(@nest four_worker_task, crate::Nest::WorkerTask(4); $($name)*);
        nested_runtimes!(@nest entered, crate::Nest::Entered; $($name)*);
    };
    (@nest $ctx:ident, $nest:expr; $($name:ident)*) => {
        mod $ctx {
            mod uring {
                $( #[test] fn $name() {
                    super::super::run_nested($nest, ringloop::Backend::Uring, super::super::$name)
                } )*
            }
            mod epoll {
                $( #[test] fn $name() {
                    super::super::run_nested($nest, ringloop::Backend::Epoll, super::super::$name)
                } )*
            }
        }
    };
}

nested_runtimes! {
    /// `tokio::time::sleep` and `tokio::time::timeout` inside a ringloop task.
    fn tokio_timers_in_a_ringloop_task(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(start.elapsed() >= Duration::from_millis(30));
            let late = tokio::time::timeout(Duration::from_millis(10), std::future::pending::<()>());
            assert!(late.await.is_err());
            // And from a spawned task, with a ringloop sleep running beside it.
            let t = spawn(async { tokio::time::sleep(Duration::from_millis(5)).await; 7 });
            ringloop::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(t.await.unwrap(), 7);
        });
    }

    /// A `tokio::net::TcpStream` talking to a ringloop listener on the same loop.
    fn tokio_socket_to_a_ringloop_listener(lp: &mut EventLoop) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                let (res, buf) = s.read(Vec::with_capacity(64)).await;
                res.unwrap();
                let (res, _) = s.write_all(buf).await;
                res.unwrap();
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"through tokio's reactor").await.unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"through tokio's reactor");
        });
    }

    /// `tokio::spawn` runs on the tokio worker, `spawn_blocking` on tokio's blocking pool; both
    /// are awaited from a ringloop task.
    fn tokio_spawn_and_spawn_blocking(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let here = std::thread::current().id();
            let (there, n) = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                (std::thread::current().id(), 40)
            })
            .await
            .unwrap();
            assert_ne!(there, here, "tokio::spawn ran on the loop's thread");
            let m = tokio::task::spawn_blocking(|| 2).await.unwrap();
            assert_eq!(n + m, 42);
        });
    }

    /// reqwest against the ringloop-served axum app: a GET, a 4 MiB streamed POST echoed byte
    /// for byte, and tower-http's timeout answering 408 for a handler that sleeps too long.
    fn reqwest_against_a_ringloop_axum_server(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let url = start_server();
            let client = reqwest::Client::new();
            let res = client.get(format!("{url}/")).send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.text().await.unwrap(), "Hello, world!");

            let data = common::pattern(9, 4 << 20);
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
            let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
            let res = client.post(format!("{url}/echo")).body(body).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let got = res.bytes().await.unwrap();
            assert!(got == data, "the streamed POST came back different");

            let res = client.get(format!("{url}/slow/10")).send().await.unwrap();
            assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "done".into()));
            let res = client.get(format!("{url}/slow/2000")).send().await.unwrap();
            assert_eq!(res.status(), 408);
        });
    }
}

/// On a thread entered in a multi-thread runtime that its workers drive, the loop uses that
/// runtime, not ringloop's own: `tokio::spawn` runs on the caller's worker.
fn a_loop_on_an_entered_thread_uses_the_callers_runtime(lp: &mut ringloop::EventLoop) {
    let name = lp.run_until_complete(async {
        tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap()
    });
    assert_eq!(name.as_deref(), Some("caller-runtime"));
}

#[test]
fn uring_a_loop_on_an_entered_thread_uses_the_callers_runtime() {
    run_nested(
        Nest::Entered,
        ringloop::Backend::Uring,
        a_loop_on_an_entered_thread_uses_the_callers_runtime,
    );
}

#[test]
fn epoll_a_loop_on_an_entered_thread_uses_the_callers_runtime() {
    run_nested(
        Nest::Entered,
        ringloop::Backend::Epoll,
        a_loop_on_an_entered_thread_uses_the_callers_runtime,
    );
}

/// Without a loop running, the handle still reaches the same runtime.
#[test]
fn the_tokio_handle_runs_work_outside_a_loop() {
    let handle = ringloop::compat::tokio_handle().unwrap();
    let n = handle.block_on(async { tokio::spawn(async { 5 }).await.unwrap() });
    assert_eq!(n, 5);
}
