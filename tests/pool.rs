//! Pools of loops, handles that reach a loop from any thread, and the shutdown signal, on both
//! backends.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ringloop::net::TcpListener;
use ringloop::{Backend, LoopPool, Shutdown};

/// The name of the thread running this code.
fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Waits for `stop` while polling `fut`: `Some` if `fut` finished first.
async fn until<F: std::future::Future>(stop: &Shutdown, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut stop = std::pin::pin!(stop.triggered());
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        stop.as_mut().poll(cx).map(|()| None)
    })
    .await
}

fn pool_outputs_in_loop_order(backend: Backend) {
    for n in [1, 2, 4] {
        let pool = LoopPool::builder()
            .threads(n)
            .backend(backend)
            .thread_name("pooltest")
            .start(|cx| async move { (cx.index(), cx.len(), thread_name()) })
            .unwrap();
        assert_eq!(pool.len(), n);
        let outs: Vec<_> = pool.join().into_iter().map(|r| r.unwrap()).collect();
        for (i, (index, len, name)) in outs.into_iter().enumerate() {
            assert_eq!((index, len), (i, n));
            assert_eq!(name, format!("pooltest-{i}"));
        }
    }
}

fn spawn_onto_a_loop_runs_on_its_thread(backend: Backend) {
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .thread_name("spawntest")
        .start(|cx| async move {
            if cx.index() == 0 {
                // Loop 0 sends work to loop 1 and awaits it.
                let there = cx.handle(1).spawn(async { thread_name() }).await.unwrap();
                // A !Send future, made on loop 1.
                let counted = cx
                    .handle(1)
                    .spawn_with(|| {
                        let rc = Rc::new(Cell::new(0));
                        async move {
                            for _ in 0..3 {
                                rc.set(rc.get() + 1);
                                ringloop::yield_now().await;
                            }
                            (rc.get(), thread_name())
                        }
                    })
                    .await
                    .unwrap();
                cx.shutdown().trigger();
                vec![there, counted.1, counted.0.to_string()]
            } else {
                cx.shutdown().triggered().await;
                vec![]
            }
        })
        .unwrap();
    let outs = pool.join();
    let first = outs.into_iter().next().unwrap().unwrap();
    assert_eq!(first, ["spawntest-1", "spawntest-1", "3"]);
}

fn a_panicking_loop_gives_is_panic_and_the_others_return(backend: Backend) {
    let pool = LoopPool::builder()
        .threads(3)
        .backend(backend)
        .start(|cx| async move {
            if cx.index() == 1 {
                panic!("loop 1 fails");
            }
            cx.shutdown().triggered().await;
            cx.index()
        })
        .unwrap();
    let outs = pool.join();
    assert_eq!(*outs[0].as_ref().unwrap(), 0);
    assert!(outs[1].as_ref().unwrap_err().is_panic());
    assert_eq!(*outs[2].as_ref().unwrap(), 2);
}

fn shutdown_from_outside_completes_every_loop(backend: Backend) {
    let pool = LoopPool::builder()
        .threads(4)
        .backend(backend)
        .start(|cx| async move {
            cx.shutdown().triggered().await;
            true
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    pool.shutdown();
    assert!(pool.shutdown_signal().is_triggered());
    assert!(pool.join().into_iter().all(|r| r.unwrap()));
}

fn a_shared_port_accepts_and_echoes_1000_connections(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bound = Arc::new(AtomicUsize::new(0));
    let b = bound.clone();
    let pool = LoopPool::builder()
        .threads(2)
        .backend(backend)
        .start(move |cx| {
            let bound = b.clone();
            async move {
                let listener = TcpListener::builder()
                    .reuse_port(true)
                    .bind(("127.0.0.1", port))
                    .unwrap();
                bound.fetch_add(1, Ordering::SeqCst);
                let stop = cx.shutdown();
                let served = Rc::new(Cell::new(0usize));
                while let Some(res) = until(&stop, listener.accept()).await {
                    let (s, _) = res.unwrap();
                    let served = served.clone();
                    ringloop::spawn(async move {
                        let (res, buf) = s.read(Vec::with_capacity(64)).await;
                        if res.unwrap_or(0) > 0 {
                            let (res, _) = s.write_all(buf).await;
                            res.unwrap();
                        }
                        served.set(served.get() + 1);
                    });
                }
                served.get()
            }
        })
        .unwrap();
    // Both loops listen before any client connects.
    while bound.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Clients on plain threads, 250 connections each.
    let clients: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..250 {
                    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let msg = format!("client {t} connection {i}");
                    c.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0u8; msg.len()];
                    c.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    pool.shutdown();
    let served: usize = pool.join().into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(served, 1000);
}

fn a_handle_to_a_closed_loop_cancels(backend: Backend) {
    let mut lp = common::new_loop(backend);
    let handle = lp.handle();
    lp.run_until_complete(async {});
    // Sent before close, never run: cancelled by the close.
    let queued = handle.spawn(async { 1 });
    lp.close();
    assert!(handle.is_closed());
    let after = handle.spawn(async { 2 });
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = SetOnDrop(dropped.clone());
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    handle.call_soon(move || {
        let _g = guard;
        r.store(true, Ordering::SeqCst);
    });
    assert!(dropped.load(Ordering::SeqCst) && !ran.load(Ordering::SeqCst));
    let mut other = common::new_loop(backend);
    for h in [queued, after] {
        assert!(h.is_finished());
        assert!(other.run_until_complete(h).unwrap_err().is_cancelled());
    }
}

fn remote_handles_abort_and_report_panics(backend: Backend) {
    let mut lp = common::new_loop(backend);
    let handle = lp.handle();
    let (slow, boom, calls) = std::thread::spawn(move || {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        handle.call_soon(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let slow = handle.spawn_with(|| async {
            ringloop::time::sleep(Duration::from_secs(3600)).await;
        });
        let boom = handle.spawn(async { panic!("remote task panics") });
        (slow, boom, calls)
    })
    .join()
    .unwrap();
    lp.run_until_complete(async {
        assert!(boom.await.unwrap_err().is_panic());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Aborted from another thread while it sleeps on the loop.
        let slow = Arc::new(slow);
        let s = slow.clone();
        std::thread::spawn(move || s.abort()).join().unwrap();
        let slow = Arc::into_inner(slow).unwrap();
        assert!(slow.await.unwrap_err().is_cancelled());
    });
    lp.close();
}

/// 200 round trips from loop 0 to loop 1 and back; returns how many wakes went as `MSG_RING`.
fn wake_messages_in_round_trips() -> u64 {
    let pool = LoopPool::builder()
        .threads(2)
        .backend(Backend::Uring)
        .start(|cx| async move {
            if cx.index() == 1 {
                cx.shutdown().triggered().await;
                return ringloop::current_stats().unwrap().wake_messages;
            }
            for i in 0..200u32 {
                assert_eq!(cx.handle(1).spawn(async move { i }).await.unwrap(), i);
            }
            cx.shutdown().trigger();
            ringloop::current_stats().unwrap().wake_messages
        })
        .unwrap();
    pool.join().into_iter().map(|r| r.unwrap()).sum()
}

/// On uring, a loop wakes another sleeping uring loop through its own ring (`MSG_RING`) by
/// default, and through the eventfd with `RINGLOOP_CROSS_WAKE=eventfd`; work crosses either way.
#[test]
fn uring_loops_wake_each_other_with_msg_ring_or_the_eventfd() {
    if common::in_child() {
        assert_eq!(
            wake_messages_in_round_trips(),
            0,
            "RINGLOOP_CROSS_WAKE=eventfd sent messages"
        );
        return;
    }
    assert!(
        wake_messages_in_round_trips() > 0,
        "no wake went through MSG_RING"
    );
    common::run_in_child(
        "uring_loops_wake_each_other_with_msg_ring_or_the_eventfd",
        &[("RINGLOOP_CROSS_WAKE", "eventfd")],
    );
}

macro_rules! both {
    ($($name:ident),*) => {
        mod uring { $( #[test] fn $name() { super::$name(ringloop::Backend::Uring) } )* }
        mod epoll { $( #[test] fn $name() { super::$name(ringloop::Backend::Epoll) } )* }
    };
}

both!(
    pool_outputs_in_loop_order,
    spawn_onto_a_loop_runs_on_its_thread,
    a_panicking_loop_gives_is_panic_and_the_others_return,
    shutdown_from_outside_completes_every_loop,
    a_shared_port_accepts_and_echoes_1000_connections,
    a_handle_to_a_closed_loop_cancels,
    remote_handles_abort_and_report_panics
);

/// Threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// A forced uring that seccomp denies makes `start` fail, and leaves no thread behind.
#[test]
fn a_pool_that_cannot_build_its_loops_fails_and_leaves_no_thread() {
    if !common::in_child() {
        common::run_in_child(
            "a_pool_that_cannot_build_its_loops_fails_and_leaves_no_thread",
            &[],
        );
        return;
    }
    common::deny_io_uring_setup();
    let before = thread_count();
    let err = LoopPool::builder()
        .threads(3)
        .backend(Backend::Uring)
        .start(|_| async {})
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert_eq!(thread_count(), before, "a loop thread was left running");
    let zero = LoopPool::builder()
        .threads(0)
        .start(|_| async {})
        .unwrap_err();
    assert_eq!(zero.kind(), std::io::ErrorKind::InvalidInput);
}
