//! Panics in user code at every hook, both backends: a task body, a task output's `Drop`, a
//! future's `Drop` when its loop closes, a `spawn_blocking` job, a waker of a foreign executor
//! woken by the loop, by another thread or by a pool buffer given back, a handler served by
//! hyper over `PollIo`. After each, the loop goes on, `close()` is prompt, `LoopPool::join`
//! returns, and nothing leaks (tasks, fds: each test runs in a child process,
//! `common::cancel::run_checked`).
//!
//! `compat::axum::serve`'s handler panics, and a foreign waker of its future, are tested in
//! axum.rs.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::cancel::{close_within, run_checked};
use ringloop::compat::PollIo;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::time::{sleep, timeout};
use ringloop::{Backend, EventLoop, LoopPool, Shutdown};

in_child_per_backend! {
    task_body, task_output_drop, future_drop_at_close, spawn_blocking_job,
    foreign_waker_of_a_remote_join, foreign_waker_of_an_io_future, foreign_waker_of_a_timer,
    foreign_waker_of_a_shutdown, foreign_waker_of_a_join_handle,
    foreign_waker_of_a_pooled_receive, hyper_handler,
    pool_join_returns, slow_poll_hook, remote_closures, main_future,
}

/// Panics when dropped.
struct PanicOnDrop(&'static str);
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// A foreign executor's waker whose `wake` panics; counts its wakes.
#[derive(Default)]
struct PanicWaker(AtomicUsize);
impl Wake for PanicWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a foreign waker panics");
    }
}

/// The loop still runs tasks and I/O: a task echoes bytes over a fresh TCP pair.
async fn loop_still_works() {
    let (a, b) = common::tcp_pair().await;
    let t = ringloop::spawn(async move {
        let (res, buf) = b.read(Vec::with_capacity(16)).await;
        res.unwrap();
        b.write_all(buf).await.0.unwrap();
    });
    a.write_all(b"still here".to_vec()).await.0.unwrap();
    let got = common::read_n(&a, 10).await;
    assert_eq!(got, b"still here");
    timeout(Duration::from_secs(10), t).await.unwrap().unwrap();
}

/// A task that panics while it holds a stream with a read in flight: its handle says so, the
/// stream is closed (the peer reads the end), and the loop goes on.
fn task_body(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let (a, b) = common::tcp_pair().await;
        let t = ringloop::spawn(async move {
            let mut read = Box::pin(a.read(Vec::with_capacity(8)));
            std::future::poll_fn(|cx| {
                assert!(read.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            sleep(Duration::from_millis(5)).await;
            panic!("the task body panics");
        });
        let err = t.await.unwrap_err();
        assert!(err.is_panic(), "{err}");
        let (res, _) = timeout(Duration::from_secs(10), b.read(Vec::with_capacity(8)))
            .await
            .expect("the panicked task's stream is still open");
        assert_eq!(res.unwrap(), 0);
        loop_still_works().await;
    });
}

/// A task whose output's `Drop` panics: awaited and dropped by the awaiting code, detached
/// before it finished (the loop drops the output), and detached after (the handle's drop does).
fn task_output_drop(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        // Detached while running: the loop drops the output when it comes.
        drop(ringloop::spawn(async {
            sleep(Duration::from_millis(2)).await;
            PanicOnDrop("an output nobody awaits")
        }));
        // Finished, then its handle dropped.
        let h = ringloop::spawn(async { PanicOnDrop("an output whose handle is dropped") });
        ringloop::yield_now().await;
        ringloop::yield_now().await;
        assert!(h.is_finished());
        drop(h);
        sleep(Duration::from_millis(10)).await;
        loop_still_works().await;
    });
}

/// Tasks whose futures panic when dropped: aborted, and still pending when the loop closes.
fn future_drop_at_close(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let aborted = ringloop::spawn(async {
            let _p = PanicOnDrop("a future's drop at abort");
            std::future::pending::<()>().await;
        });
        ringloop::yield_now().await;
        aborted.abort();
        let err = aborted.await.unwrap_err();
        assert!(
            err.is_panic(),
            "the drop's panic is the task's error: {err}"
        );
        loop_still_works().await;
    });
    // Left pending at close: `close()` drops them, containing the panics.
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        for _ in 0..3 {
            ringloop::spawn(async {
                let _p = PanicOnDrop("a future's drop at close");
                let (a, _b) = common::tcp_pair().await;
                let _ = a.read(Vec::with_capacity(8)).await;
            });
        }
        sleep(Duration::from_millis(5)).await;
    });
    close_within(lp, Duration::from_secs(10));
}

/// A `spawn_blocking` job that panics: its handle says so, and the pool still runs jobs.
fn spawn_blocking_job(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                ringloop::spawn_blocking(move || {
                    if i % 2 == 0 {
                        panic!("blocking job {i} panics");
                    }
                    i
                })
            })
            .collect();
        let mut ok = 0;
        for (i, j) in jobs.into_iter().enumerate() {
            match j.await {
                Ok(v) => {
                    assert_eq!(v, i);
                    ok += 1;
                }
                Err(e) => assert!(e.is_panic() && i % 2 == 0, "job {i}: {e}"),
            }
        }
        assert_eq!(ok, 4);
        for i in 0..64 {
            assert_eq!(
                ringloop::spawn_blocking(move || i * 2).await.unwrap(),
                i * 2
            );
        }
        // A job whose output's drop panics, output not awaited.
        drop(ringloop::spawn_blocking(|| {
            PanicOnDrop("a blocking job's output")
        }));
        sleep(Duration::from_millis(20)).await;
        loop_still_works().await;
    });
}

/// A `RemoteJoinHandle` polled on another thread by a foreign executor whose waker panics: the
/// loop thread wakes it when the task finishes. The loop goes on and the handle gets the output.
fn foreign_waker_of_a_remote_join(backend: Backend) {
    let mut lp = common::new_loop(backend);
    let handle = lp.handle();
    let mut remote = handle.spawn_with(|| async {
        sleep(Duration::from_millis(20)).await;
        7
    });
    let waker = Arc::new(PanicWaker::default());
    let w = waker.clone();
    let foreign = std::thread::spawn(move || {
        let waker = Waker::from(w.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut remote).poll(&mut cx).is_pending());
        // Poll again once woken (the wake panicked on the loop thread, but it came).
        while w.0.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        match Pin::new(&mut remote).poll(&mut cx) {
            Poll::Ready(v) => v.unwrap(),
            Poll::Pending => panic!("woken, but the remote task had no output"),
        }
    });
    let fds = common::open_fds();
    lp.run_until_complete(async {
        sleep(Duration::from_millis(100)).await;
        loop_still_works().await;
    });
    assert_eq!(foreign.join().unwrap(), 7);
    assert!(lp.tasks().is_empty(), "{:?}", lp.tasks());
    assert_eq!(common::open_fds(), fds);
    close_within(lp, Duration::from_secs(10));
}

/// A ringloop I/O future polled, inside a loop task, by a foreign executor whose waker panics:
/// the loop's completion (uring) or readiness (epoll) wakes it. The loop goes on, other tasks
/// are woken, and the future completes when polled again.
fn foreign_waker_of_an_io_future(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let (a, b) = common::tcp_pair().await;
        let (c, d) = common::tcp_pair().await;
        // Another task waits on I/O that becomes ready in the same turn.
        let other = ringloop::spawn(async move { d.read(Vec::with_capacity(8)).await.0.unwrap() });
        ringloop::yield_now().await;
        let waker = Arc::new(PanicWaker::default());
        let foreign = Waker::from(waker.clone());
        let mut read = pin!(a.read(Vec::with_capacity(16)));
        assert!(
            read.as_mut()
                .poll(&mut Context::from_waker(&foreign))
                .is_pending()
        );
        b.write_all(b"hello".to_vec()).await.0.unwrap();
        c.write_all(b"other".to_vec()).await.0.unwrap();
        let n = timeout(Duration::from_secs(10), other)
            .await
            .expect("a task woken in the turn of a panicking waker was never woken")
            .unwrap();
        assert_eq!(n, 5);
        let (res, buf) = std::future::poll_fn(|cx| read.as_mut().poll(cx)).await;
        assert_eq!((res.unwrap(), &buf[..]), (5, &b"hello"[..]));
        loop_still_works().await;
    });
}

/// A `sleep` polled by a foreign executor whose waker panics: the loop's timers fire it, and
/// the other timers of that turn still fire.
fn foreign_waker_of_a_timer(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let waker = Arc::new(PanicWaker::default());
        let foreign = Waker::from(waker.clone());
        let mut s = pin!(sleep(Duration::from_millis(5)));
        assert!(
            s.as_mut()
                .poll(&mut Context::from_waker(&foreign))
                .is_pending()
        );
        let others: Vec<_> = (0..3)
            .map(|_| ringloop::spawn(sleep(Duration::from_millis(5))))
            .collect();
        for o in others {
            timeout(Duration::from_secs(10), o)
                .await
                .expect("a timer of the panicking waker's turn never fired")
                .unwrap();
        }
        std::future::poll_fn(|cx| s.as_mut().poll(cx)).await;
        loop_still_works().await;
    });
}

/// A task's `JoinHandle` polled by a foreign executor whose waker panics: the loop wakes it as
/// the task finishes. The other tasks of that turn still run and the handle has the output.
fn foreign_waker_of_a_join_handle(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let waker = Arc::new(PanicWaker::default());
        let foreign = Waker::from(waker.clone());
        let mut h = ringloop::spawn(async {
            ringloop::yield_now().await;
            5
        });
        assert!(
            Pin::new(&mut h)
                .poll(&mut Context::from_waker(&foreign))
                .is_pending()
        );
        let others: Vec<_> = (0..3)
            .map(|i| {
                ringloop::spawn(async move {
                    ringloop::yield_now().await;
                    i
                })
            })
            .collect();
        for (i, o) in others.into_iter().enumerate() {
            assert_eq!(o.await.unwrap(), i);
        }
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(h.await.unwrap(), 5);
        loop_still_works().await;
    });
}

/// A `recv_pooled` polled by a foreign executor whose waker panics, waiting for a buffer of an
/// exhausted receive pool (registered first), and a task waiting the same way: giving a buffer
/// back wakes both, and the code that gave it back (here the test's task) goes on.
fn foreign_waker_of_a_pooled_receive(backend: Backend) {
    run_checked(backend, EventLoop::builder().recv_pool(2, 64), async {
        let (a, b) = common::tcp_pair().await;
        let (c, d) = common::tcp_pair().await;
        let (e, f) = common::tcp_pair().await;
        // Hold both buffers of the pool: each message fills one (on an incremental ring, small
        // messages would share a buffer).
        let mut held = Vec::new();
        for byte in [1u8, 2] {
            a.write_all(vec![byte; 64]).await.0.unwrap();
            let mut got = Vec::new();
            while got
                .iter()
                .map(|b: &ringloop::buf::PooledBuf| b.len())
                .sum::<usize>()
                < 64
            {
                got.push(b.recv_pooled().await.unwrap());
            }
            held.extend(got);
        }
        assert_eq!(ringloop::current_stats().unwrap().pool_buffers_in_use, 2);
        let waker = Arc::new(PanicWaker::default());
        let foreign = Waker::from(waker.clone());
        let mut recv = pin!(d.recv_pooled());
        assert!(
            recv.as_mut()
                .poll(&mut Context::from_waker(&foreign))
                .is_pending()
        );
        let other = ringloop::spawn(async move { f.recv_pooled().await.unwrap().to_vec() });
        ringloop::yield_now().await;
        c.write_all(b"foreign".to_vec()).await.0.unwrap();
        e.write_all(b"other".to_vec()).await.0.unwrap();
        // Gives a buffer back: wakes the foreign waker, which panics, then the task.
        held.pop();
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        let got = timeout(Duration::from_secs(10), other)
            .await
            .expect("a task waiting for a pool buffer was not woken after a panicking waker")
            .unwrap();
        assert_eq!(got, b"other");
        held.clear();
        let buf = std::future::poll_fn(|cx| recv.as_mut().poll(cx)).await;
        assert_eq!(&buf.unwrap()[..], b"foreign");
        loop_still_works().await;
    });
}

/// `Shutdown::triggered` awaited by a pool's loops and by a foreign executor whose waker panics
/// (registered first): `trigger` still wakes every loop, and `LoopPool::join` returns.
fn foreign_waker_of_a_shutdown(backend: Backend) {
    let shutdown = Shutdown::new();
    let waker = Arc::new(PanicWaker::default());
    let foreign = Waker::from(waker.clone());
    let mut trig = Box::pin(shutdown.triggered());
    assert!(
        trig.as_mut()
            .poll(&mut Context::from_waker(&foreign))
            .is_pending()
    );
    let s = shutdown.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .start(move |_cx| {
            let s = s.clone();
            let st = st.clone();
            async move {
                st.fetch_add(1, Ordering::SeqCst);
                s.triggered().await;
            }
        })
        .unwrap();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20)); // both loops are parked in `triggered`
    let trigger = std::panic::catch_unwind(|| shutdown.trigger());
    assert_eq!(waker.0.load(Ordering::SeqCst), 1);
    join_within(pool, Duration::from_secs(10));
    // Contained, as every panic of a foreign waker the loop calls (the panic hook reported it).
    assert!(
        trigger.is_ok(),
        "the foreign waker's panic escaped `trigger`"
    );
}

/// `pool.join()`, failing the test (ending the process) if it does not return within `bound`.
fn join_within<T: Send + 'static>(
    pool: LoopPool<T>,
    bound: Duration,
) -> Vec<Result<T, ringloop::JoinError>> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(bound);
        if !watch.load(Ordering::SeqCst) {
            eprintln!("LoopPool::join hung for {bound:?}");
            std::process::exit(101);
        }
    });
    let out = pool.join();
    done.store(true, Ordering::SeqCst);
    out
}

/// hyper's HTTP/1.1 server over `PollIo`: a handler that panics takes its connection down (the
/// client reads the end), and the other connections are served.
fn hyper_handler(backend: Backend) {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};

    async fn handler(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        if req.uri().path() == "/panic" {
            panic!("the handler panics");
        }
        Ok(Response::new(Full::new(Bytes::from_static(b"fine"))))
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
        let s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.into_bytes()).await.0.unwrap();
        let mut got = Vec::new();
        loop {
            let (res, buf) = s.read(Vec::with_capacity(4096)).await;
            match res {
                Ok(0) | Err(_) => return got,
                Ok(_) => got.extend_from_slice(&buf),
            }
        }
    }

    run_checked(backend, EventLoop::builder(), async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let panicked = Rc::new(Cell::new(0));
        let p = panicked.clone();
        let server = ringloop::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let conn = ringloop::spawn(async move {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(PollIo::new(stream), hyper::service::service_fn(handler))
                        .await
                });
                let p = p.clone();
                ringloop::spawn(async move {
                    if conn.await.is_err_and(|e| e.is_panic()) {
                        p.set(p.get() + 1);
                    }
                });
            }
        });
        for i in 0..6 {
            if i % 2 == 0 {
                let got = timeout(Duration::from_secs(10), get(addr, "/panic"))
                    .await
                    .expect("a connection whose handler panicked stayed open");
                assert!(
                    got.is_empty(),
                    "a response from a panicking handler: {got:?}"
                );
            } else {
                let got = get(addr, "/").await;
                assert!(got.ends_with(b"fine"), "{}", String::from_utf8_lossy(&got));
            }
        }
        // Each connection task's end is seen by its watcher task at the loop's next turns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while panicked.get() < 3 && std::time::Instant::now() < deadline {
            sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(panicked.get(), 3);
        server.abort();
        let _ = server.await;
    });
}

/// Debug mode's `on_slow_poll` hook panics at every slow poll (of tasks and of the main
/// future): the task's output is still delivered and the task leaves the loop's list.
fn slow_poll_hook(backend: Backend) {
    let builder = EventLoop::builder()
        .debug(true)
        .slow_poll_threshold(Duration::from_millis(1))
        .on_slow_poll(|task, _| panic!("the slow-poll hook panics for {task}"));
    run_checked(backend, builder, async {
        let t = ringloop::spawn(async {
            std::thread::sleep(Duration::from_millis(5));
            3
        });
        assert_eq!(t.await.unwrap(), 3);
        std::thread::sleep(Duration::from_millis(5)); // a slow poll of the main future
        loop_still_works().await;
    });
}

/// Closures sent to a loop from another thread panic: `LoopHandle::call_soon`'s, and the
/// `make` of `spawn_with` (its handle reports a cancellation). The loop goes on.
fn remote_closures(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let handle = ringloop::current_handle().unwrap();
        let h = handle.clone();
        let remote = std::thread::spawn(move || {
            h.call_soon(|| panic!("a call_soon closure panics"));
            h.spawn_with(|| -> std::future::Ready<u8> { panic!("a spawn_with make panics") })
        })
        .join()
        .unwrap();
        let err = timeout(Duration::from_secs(10), remote)
            .await
            .expect("the handle of a spawn_with whose make panicked never finished")
            .unwrap_err();
        assert!(err.is_cancelled() || err.is_panic(), "{err}");
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        handle.call_soon(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        sleep(Duration::from_millis(5)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        loop_still_works().await;
    });
}

/// The main future panics with I/O in flight and a task waiting: the panic reaches the caller of
/// `run_until_complete`, and the loop stays usable, closes promptly and leaks nothing.
fn main_future(backend: Backend) {
    let fds = common::open_fds();
    let mut lp = common::new_loop(backend);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lp.run_until_complete(async {
            let (a, b) = common::tcp_pair().await;
            ringloop::spawn(async move { b.read(Vec::with_capacity(8)).await.0 });
            let mut read = Box::pin(a.read(Vec::with_capacity(8)));
            std::future::poll_fn(|cx| {
                assert!(read.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            panic!("the main future panics");
        })
    }));
    assert!(caught.is_err());
    lp.run_until_complete(loop_still_works());
    close_within(lp, Duration::from_secs(10));
    assert_eq!(common::open_fds(), fds, "fds leaked");
}

/// A pool whose loops meet every hook's panic (task body, output drop, blocking job) returns
/// from `join` with each loop's output; a loop whose own future panics ends the pool.
fn pool_join_returns(backend: Backend) {
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .start(|cx| async move {
            let t = ringloop::spawn(async { panic!("a task on a pool loop") });
            assert!(t.await.unwrap_err().is_panic());
            drop(ringloop::spawn(async {
                PanicOnDrop("a pool task's output")
            }));
            let b = ringloop::spawn_blocking(|| panic!("a blocking job on a pool loop"));
            assert!(b.await.unwrap_err().is_panic());
            cx.index()
        })
        .unwrap();
    let out = join_within(pool, Duration::from_secs(10));
    let idx: Vec<usize> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(idx, [0, 1]);

    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .start(|cx| async move {
            if cx.index() == 0 {
                sleep(Duration::from_millis(5)).await;
                panic!("loop 0's own future");
            }
            cx.shutdown().triggered().await;
        })
        .unwrap();
    let out = join_within(pool, Duration::from_secs(10));
    assert!(out[0].as_ref().is_err_and(|e| e.is_panic()));
    assert!(out[1].is_ok());
}
