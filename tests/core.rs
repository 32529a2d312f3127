//! The loop, executor, timers, wakes and backend selection, on both backends.

mod common;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{in_child, run_in_child};
use ringloop::time::{interval, sleep, timeout};
use ringloop::{Backend, EventLoop, ReturnWhen, gather, spawn, spawn_blocking, wait, yield_now};

/// Sets a flag when dropped, to see that a task's future was dropped.
struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

both_backends! {
    /// A task woken by another task runs in the same turn, without an I/O poll between; a main
    /// future that only ever yields must still let the loop look at I/O and timers.
    fn a_main_future_that_only_yields_still_lets_io_and_timers_run(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let timer = spawn(sleep(Duration::from_millis(5)));
            let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let b = ringloop::net::UnixStream::from_std(b).unwrap();
            let reader = spawn(async move { b.read(Vec::with_capacity(8)).await.0.unwrap() });
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                std::io::Write::write_all(&mut a, b"ping").unwrap();
                a
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while !(timer.is_finished() && reader.is_finished()) {
                assert!(Instant::now() < deadline, "timers or I/O starved by a yielding main");
                yield_now().await;
            }
            assert_eq!(reader.await.unwrap(), 4);
            drop(writer.join().unwrap());
        });
    }

    /// The ready queue is a ring that grows: a burst of woken tasks far beyond its first size
    /// still runs, first woken first.
    fn a_burst_of_spawned_tasks_runs_in_spawn_order(lp: &mut EventLoop) {
        let order = lp.run_until_complete(async {
            let order = Rc::new(RefCell::new(Vec::new()));
            let handles: Vec<_> = (0..1000u32)
                .map(|i| {
                    let order = order.clone();
                    spawn(async move { order.borrow_mut().push(i) })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
            Rc::try_unwrap(order).unwrap().into_inner()
        });
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }

    /// The first task a loop spawns (slab key 0, generation 0: id 0) is its own current task,
    /// and the main future is none, before and after it.
    fn the_first_task_of_a_loop_is_the_current_task_while_it_runs(lp: &mut EventLoop) {
        let (before, inside, after) = lp.run_until_complete(async {
            let before = ringloop::current_task().is_none();
            let inside = spawn(async { ringloop::current_task().is_some() }).await.unwrap();
            (before, inside, ringloop::current_task().is_none())
        });
        assert!(before && inside && after);
    }

    fn spawn_and_join(lp: &mut EventLoop) {
        let out = lp.run_until_complete(async {
            let handles: Vec<_> = (0..100u64).map(|i| spawn(async move { i * 2 })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(out, (0..100u64).map(|i| i * 2).sum::<u64>());
        assert_eq!(lp.stats().tasks_spawned, 100);
    }

    fn run_several_futures_in_turn(lp: &mut EventLoop) {
        assert_eq!(lp.run_until_complete(async { 1 }), 1);
        // A task spawned in the first run keeps going in the second.
        let counter = Rc::new(Cell::new(0));
        let c = counter.clone();
        lp.run_until_complete(async move {
            spawn(async move {
                for _ in 0..3 {
                    sleep(Duration::from_millis(1)).await;
                    c.set(c.get() + 1);
                }
            });
        });
        lp.run_until_complete(sleep(Duration::from_millis(50)));
        assert_eq!(counter.get(), 3);
    }

    fn abort_cancels_and_drops_the_future(lp: &mut EventLoop) {
        let dropped = Rc::new(Cell::new(false));
        let d = dropped.clone();
        lp.run_until_complete(async move {
            let h = spawn(async move {
                let _guard = DropFlag(d);
                sleep(Duration::from_secs(60)).await;
                7
            });
            yield_now().await;
            assert!(!h.is_finished());
            h.abort();
            let err = h.await.unwrap_err();
            assert!(err.is_cancelled());
            assert!(!err.is_panic());
        });
        assert!(dropped.get(), "the aborted task's future was dropped");
    }

    fn an_abort_on_drop_handle_aborts_its_task_when_dropped_and_detach_keeps_it(lp: &mut EventLoop) {
        let dropped = Rc::new(Cell::new(false));
        let d = dropped.clone();
        let detached_ran = Rc::new(Cell::new(false));
        let ran = detached_ran.clone();
        lp.run_until_complete(async move {
            // Awaited, it gives the output as the plain handle does.
            assert_eq!(spawn(async { 5 }).abort_on_drop().await.unwrap(), 5);
            let guard = spawn(async move {
                let _guard = DropFlag(d);
                sleep(Duration::from_secs(3600)).await;
            })
            .abort_on_drop();
            yield_now().await;
            assert!(!guard.is_finished());
            drop(guard);
            // The abort takes effect at the loop's next turn.
            yield_now().await;
            yield_now().await;
            // Detached, the task runs on after the handle is gone.
            let handle = spawn(async move {
                yield_now().await;
                ran.set(true);
            })
            .abort_on_drop()
            .detach();
            drop(handle);
            sleep(Duration::from_millis(5)).await;
        });
        assert!(dropped.get(), "the task of a dropped AbortOnDrop was aborted and its future dropped");
        assert!(detached_ran.get(), "a detached handle's task ran to its end");
    }

    fn a_panicking_task_gives_join_error_and_the_loop_goes_on(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let bystander = spawn(async {
                sleep(Duration::from_millis(5)).await;
                "still here"
            });
            let h = spawn(async {
                yield_now().await;
                panic!("boom in a task");
            });
            let err = h.await.unwrap_err();
            assert!(err.is_panic());
            assert!(err.to_string().contains("boom in a task"), "{err}");
            assert_eq!(bystander.await.unwrap(), "still here");
        });
        // The loop is still usable.
        assert_eq!(lp.run_until_complete(async { spawn(async { 3 }).await.unwrap() }), 3);
    }

    fn a_panicking_main_future_propagates_and_the_loop_stays_usable(lp: &mut EventLoop) {
        let r = catch_unwind(AssertUnwindSafe(|| {
            lp.run_until_complete(async { panic!("main went wrong") })
        }));
        assert!(panic_message(&*r.unwrap_err()).contains("main went wrong"));
        assert_eq!(lp.run_until_complete(async { 5 }), 5);
    }

    fn detached_tasks_keep_running(lp: &mut EventLoop) {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        lp.run_until_complete(async move {
            drop(spawn(async move {
                sleep(Duration::from_millis(10)).await;
                d.set(true);
            }));
            sleep(Duration::from_millis(40)).await;
        });
        assert!(done.get());
    }

    fn wait_first_and_all_completed(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let mk = |ms: u64| spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                ms
            });
            let (done, pending) = wait(vec![mk(200), mk(5), mk(300)], ReturnWhen::FirstCompleted).await;
            assert_eq!(done.len(), 1);
            assert_eq!(pending.len(), 2);
            assert!(done.iter().all(|h| h.is_finished()));
            assert!(pending.iter().all(|h| !h.is_finished()));
            for h in done {
                assert_eq!(h.await.unwrap(), 5);
            }
            let (done, pending) = wait(pending, ReturnWhen::AllCompleted).await;
            assert_eq!(pending.len(), 0);
            let mut outs = Vec::new();
            for h in done {
                outs.push(h.await.unwrap());
            }
            assert_eq!(outs, vec![200, 300]);
            let (d, p) = wait(Vec::<ringloop::JoinHandle<()>>::new(), ReturnWhen::AllCompleted).await;
            assert!(d.is_empty() && p.is_empty());
        });
    }

    fn gather_keeps_input_order(lp: &mut EventLoop) {
        let out = lp.run_until_complete(gather([30u64, 10, 20, 0].map(|ms| async move {
            sleep(Duration::from_millis(ms)).await;
            ms
        })));
        assert_eq!(out, vec![30, 10, 20, 0]);
    }

    fn timers_fire_in_deadline_order_never_early(lp: &mut EventLoop) {
        let order = Rc::new(RefCell::new(Vec::new()));
        let o = order.clone();
        lp.run_until_complete(async move {
            let start = Instant::now();
            let hs: Vec<_> = [50u64, 10, 30, 20, 40]
                .into_iter()
                .map(|ms| {
                    let o = o.clone();
                    spawn(async move {
                        sleep(Duration::from_millis(ms)).await;
                        assert!(start.elapsed() >= Duration::from_millis(ms), "timer fired early");
                        o.borrow_mut().push(ms);
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
        });
        assert_eq!(*order.borrow(), vec![10, 20, 30, 40, 50]);
    }

    fn timeouts_and_intervals(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let start = Instant::now();
            let r = timeout(Duration::from_millis(20), sleep(Duration::from_secs(30))).await;
            assert!(r.is_err());
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert!(start.elapsed() < Duration::from_secs(30));
            let e: std::io::Error = r.unwrap_err().into();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
            assert_eq!(timeout(Duration::from_secs(5), async { 9 }).await, Ok(9));

            let mut ticks = interval(Duration::from_millis(5));
            let mut last = ticks.tick().await;
            for _ in 0..5 {
                let t = ticks.tick().await;
                assert!(t >= last + Duration::from_millis(5));
                assert!(ringloop::time::Instant::now() >= t, "a tick came before its time");
                last = t;
            }
        });
    }

    fn a_sleeping_loop_counts_its_park_time(lp: &mut EventLoop) {
        // The loop has nothing to do but wait for the timer: its parks (timed from the clock
        // read that also decides the wait) cover most of the sleep, and never more than it took.
        let before = lp.stats().park_time;
        let start = std::time::Instant::now();
        lp.run_until_complete(sleep(Duration::from_millis(40)));
        let took = start.elapsed();
        let parked = lp.stats().park_time - before;
        assert!(took >= Duration::from_millis(40), "the sleep ended early");
        assert!(parked >= Duration::from_millis(20), "parked {parked:?} of {took:?}");
        assert!(parked <= took, "parked {parked:?} of {took:?}");
    }

    fn many_timers_armed_and_dropped(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            // Arm and cancel many timeouts that never fire, then check one still fires.
            for _ in 0..10_000 {
                assert_eq!(timeout(Duration::from_secs(60), async { 1 }).await, Ok(1));
            }
            let start = Instant::now();
            sleep(Duration::from_millis(2)).await;
            assert!(start.elapsed() >= Duration::from_millis(2));
        });
    }

    fn wakes_from_a_std_thread(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            // The loop has nothing else to do, so it blocks in the kernel; only the other
            // thread's wake (through the eventfd) can resume it.
            for round in 0..20u32 {
                let (tx, rx) = futures_channel::oneshot::channel();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    tx.send(round).unwrap();
                });
                assert_eq!(rx.await.unwrap(), round);
            }
        });
    }

    fn wakes_from_many_threads_through_a_channel(lp: &mut EventLoop) {
        let got = lp.run_until_complete(async {
            let (tx, mut rx) = futures_channel::mpsc::unbounded::<usize>();
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..500 {
                            tx.unbounded_send(t * 1000 + i).unwrap();
                            if i % 50 == 0 {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut got = Vec::new();
            std::future::poll_fn(|cx| {
                use futures_channel::mpsc::UnboundedReceiver;
                fn poll_next(
                    rx: &mut UnboundedReceiver<usize>,
                    cx: &mut std::task::Context<'_>,
                ) -> std::task::Poll<Option<usize>> {
                    use std::pin::Pin;
                    <UnboundedReceiver<usize> as futures_core::Stream>::poll_next(Pin::new(rx), cx)
                }
                loop {
                    match poll_next(&mut rx, cx) {
                        std::task::Poll::Ready(Some(v)) => got.push(v),
                        std::task::Poll::Ready(None) => return std::task::Poll::Ready(()),
                        std::task::Poll::Pending => return std::task::Poll::Pending,
                    }
                }
            })
            .await;
            for t in threads {
                t.join().unwrap();
            }
            got
        });
        assert_eq!(got.len(), 2000);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 2000);
    }

    fn spawn_blocking_runs_off_the_loop_and_reports_panics(lp: &mut EventLoop) {
        let loop_thread = std::thread::current().id();
        lp.run_until_complete(async move {
            let hs: Vec<_> = (0..16u64)
                .map(|i| spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    (i, std::thread::current().id())
                }))
                .collect();
            for (i, h) in hs.into_iter().enumerate() {
                let (v, tid) = h.await.unwrap();
                assert_eq!(v, i as u64);
                assert_ne!(tid, loop_thread);
            }
            let err = spawn_blocking(|| panic!("blocking boom")).await.unwrap_err();
            assert!(err.is_panic());
            assert!(err.to_string().contains("blocking boom"));
            // A blocking call does not stall the loop: while it waits, the loop runs a timer
            // and flips the counter the blocking call is waiting to see.
            let counter = Arc::new(AtomicUsize::new(0));
            let c = counter.clone();
            let slow = spawn_blocking(move || {
                let give_up = Instant::now() + Duration::from_secs(10);
                while c.load(Ordering::SeqCst) == 0 && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_millis(1));
                }
                c.load(Ordering::SeqCst)
            });
            sleep(Duration::from_millis(10)).await;
            counter.store(1, Ordering::SeqCst);
            assert_eq!(slow.await.unwrap(), 1, "the loop stalled while a blocking call ran");
        });
    }

    fn nested_run_panics_with_already_running(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let r = catch_unwind(AssertUnwindSafe(|| ringloop::run(async {})));
            let msg = panic_message(&*r.unwrap_err());
            assert!(msg.contains("already running"), "{msg}");
            // Inside a task the panic becomes a JoinError, and the loop goes on.
            let err = spawn(async {
                let mut other = EventLoop::builder().backend(Backend::Epoll).build().unwrap();
                other.run_until_complete(async {});
            })
            .await
            .unwrap_err();
            assert!(err.is_panic());
            assert!(err.to_string().contains("already running"), "{err}");
        });
    }

    fn spawn_outside_a_loop_panics_clearly(lp: &mut EventLoop) {
        let r = catch_unwind(|| drop(spawn(async {})));
        let msg = panic_message(&*r.unwrap_err());
        assert!(msg.contains("no event loop running"), "{msg}");
    }

    fn stats_count_the_backend_s_syscalls(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            for _ in 0..10 {
                sleep(Duration::from_millis(1)).await;
            }
        });
        let s = lp.stats();
        assert!(s.task_polls >= 10);
        match lp.backend() {
            Backend::Uring => {
                assert!(s.uring_enters > 0);
                assert_eq!(s.epoll_waits, 0);
            }
            Backend::Epoll => {
                assert!(s.epoll_waits > 0);
                assert_eq!(s.uring_enters, 0);
            }
        }
        assert_eq!(s.syscalls(), s.uring_enters + s.epoll_waits + s.epoll_ctls + s.io_syscalls);
    }

    fn a_loop_reports_its_backend(lp: &mut EventLoop) {
        // Forced backends never report a fallback.
        assert!(lp.fallback_reason().is_none());
        let dbg = format!("{lp:?}");
        assert!(dbg.contains(&format!("{:?}", lp.backend())), "{dbg}");
    }

    /// A wake of a finished task whose slab slot a newer task took (the same key, a newer
    /// generation) polls neither: the task checks the woken id itself before its poll.
    fn a_stale_wake_does_not_poll_the_task_in_a_reused_slot(lp: &mut EventLoop) {
        let stale: Rc<RefCell<Option<std::task::Waker>>> = Rc::default();
        let s = stale.clone();
        let polls = Rc::new(Cell::new(0u32));
        let p = polls.clone();
        let before = lp.stats().task_polls;
        lp.run_until_complete(async move {
            let first = spawn(std::future::poll_fn(move |cx| {
                *s.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Ready(())
            }));
            first.await.unwrap();
            // The first task is gone: the second takes its slot.
            let second = spawn(std::future::poll_fn(move |_| {
                p.set(p.get() + 1);
                std::task::Poll::<()>::Pending
            }));
            for _ in 0..10 {
                if polls.get() > 0 {
                    break;
                }
                yield_now().await;
            }
            assert_eq!(polls.get(), 1, "the second task's first poll");
            stale.borrow_mut().take().expect("the first task's waker").wake();
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(polls.get(), 1, "a stale wake polled the task in the reused slot");
            second.abort();
        });
        // Polls counted: the first task once, the second once, the main future's; never the
        // stale id.
        let counted = lp.stats().task_polls - before;
        assert!(counted >= 3, "{counted} polls counted");
    }
}

#[test]
fn backend_names_parse_and_display() {
    for (s, b) in [
        ("uring", Backend::Uring),
        ("io_uring", Backend::Uring),
        ("proactor", Backend::Uring),
        ("URING", Backend::Uring),
        ("epoll", Backend::Epoll),
        ("selector", Backend::Epoll),
        (" Epoll ", Backend::Epoll),
    ] {
        assert_eq!(s.parse::<Backend>().unwrap(), b, "{s}");
    }
    assert_eq!(Backend::Uring.to_string(), "uring");
    assert_eq!(Backend::Epoll.to_string(), "epoll");
    let err = "kqueue".parse::<Backend>().unwrap_err().to_string();
    for name in ["kqueue", "auto", "uring", "epoll"] {
        assert!(err.contains(name), "{err}");
    }
}

/// The environment variable picks the backend (child process: the environment is per process).
#[test]
fn env_var_picks_the_backend() {
    if in_child() {
        let want = std::env::var("WANT").unwrap();
        let lp = EventLoop::new().unwrap();
        assert_eq!(lp.backend().to_string(), want);
        assert!(lp.fallback_reason().is_none());
        return;
    }
    for (value, want) in [
        ("uring", "uring"),
        ("proactor", "uring"),
        ("epoll", "epoll"),
        ("selector", "epoll"),
        ("auto", "uring"),
        ("", "uring"),
    ] {
        run_in_child(
            "env_var_picks_the_backend",
            &[("RINGLOOP_BACKEND", value), ("WANT", want)],
        );
    }
}

/// A bad value is an error naming the accepted values; `run` panics with it; the builder's
/// explicit backend still wins over the bad variable.
#[test]
fn a_bad_env_value_is_an_error_naming_the_accepted_values() {
    if in_child() {
        let err = EventLoop::new().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        for word in ["RINGLOOP_BACKEND", "bogus", "auto", "uring", "epoll"] {
            assert!(msg.contains(word), "{msg}");
        }
        let r = catch_unwind(|| ringloop::run(async {}));
        assert!(panic_message(&*r.unwrap_err()).contains("accepted values"));
        let lp = EventLoop::builder()
            .backend(Backend::Epoll)
            .build()
            .unwrap();
        assert_eq!(lp.backend(), Backend::Epoll);
        return;
    }
    run_in_child(
        "a_bad_env_value_is_an_error_naming_the_accepted_values",
        &[("RINGLOOP_BACKEND", "bogus")],
    );
}

/// With io_uring denied, `auto` falls back to epoll and says why; a forced `uring` fails with the
/// kernel's reason.
#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_denied() {
    if in_child() {
        common::deny_io_uring_setup();
        let mut lp = EventLoop::new().unwrap();
        assert_eq!(lp.backend(), Backend::Epoll);
        let why = lp.fallback_reason().expect("a fallback reason").to_owned();
        assert!(why.contains("EPERM"), "{why}");
        assert_eq!(
            lp.run_until_complete(async { spawn(async { 1 }).await.unwrap() }),
            1
        );
        let err = EventLoop::builder()
            .backend(Backend::Uring)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("EPERM"), "{err}");
        println!("fallback reason: {why}\nforced uring: {err}");
        return;
    }
    let out = run_in_child("auto_falls_back_to_epoll_when_io_uring_is_denied", &[]);
    assert!(out.contains("fallback reason"), "{out}");
}

/// On these machines io_uring works, so `auto` (child process: no RINGLOOP_BACKEND) must pick it.
#[test]
fn auto_picks_uring_where_the_kernel_allows_it() {
    if in_child() {
        let lp = EventLoop::new().unwrap();
        assert_eq!(
            lp.backend(),
            Backend::Uring,
            "fallback: {:?}",
            lp.fallback_reason()
        );
        assert!(lp.fallback_reason().is_none());
        return;
    }
    run_in_child("auto_picks_uring_where_the_kernel_allows_it", &[]);
}

#[test]
fn zero_entries_is_an_error() {
    let err = EventLoop::builder().entries(0).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
