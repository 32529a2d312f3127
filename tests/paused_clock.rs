//! The paused clock (`ringloop::time::{pause, resume, advance}`, `Builder::start_paused`): timers,
//! intervals, I/O and debug mode's slow-poll timing on it, on both backends.

mod common;

use std::cell::RefCell;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use ringloop::net::TcpStream;
use ringloop::time::{self, Instant, interval, sleep, sleep_until, timeout};
use ringloop::{EventLoop, spawn, spawn_blocking};

const HOUR: Duration = Duration::from_secs(3600);

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A loop on `lp`'s backend whose clock starts paused.
fn paused_loop(lp: &EventLoop) -> EventLoop {
    EventLoop::builder()
        .backend(lp.backend())
        .start_paused(true)
        .build()
        .expect("a paused loop")
}

both_backends! {
    /// A one-hour timeout on a paused clock resolves at once: the loop jumps to the deadline
    /// when nothing else can run. The loop's clock shows the hour; real time shows almost none.
    fn a_one_hour_timeout_resolves_without_waiting(lp: &mut EventLoop) {
        let real = std::time::Instant::now();
        let mut paused = paused_loop(lp);
        paused.run_until_complete(async {
            let start = Instant::now();
            let res = timeout(HOUR, std::future::pending::<()>()).await;
            assert!(res.is_err(), "the pending future cannot finish first");
            assert_eq!(start.elapsed(), HOUR, "the clock jumped exactly to the deadline");
        });
        // And `pause()` in a running loop does the same.
        lp.run_until_complete(async {
            time::pause();
            let start = Instant::now();
            assert!(timeout(HOUR, sleep(2 * HOUR)).await.is_err());
            assert_eq!(start.elapsed(), HOUR);
        });
        assert!(
            real.elapsed() < Duration::from_secs(30),
            "two one-hour timeouts took {:?} of real time",
            real.elapsed()
        );
    }

    /// Sleeps of many lengths (some through `sleep_until` of a std `Instant`) wake exactly at
    /// their deadlines on the paused clock, in deadline order, ties in arming order.
    fn sleeps_wake_at_their_deadlines_in_order(lp: &mut EventLoop) {
        let mut paused = paused_loop(lp);
        paused.run_until_complete(async {
            let start = Instant::now();
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
            let mut tasks = Vec::new();
            for i in 0..200u64 {
                let after = Duration::from_millis(rng.below(5_000));
                let log = log.clone();
                tasks.push(spawn(async move {
                    if i % 2 == 0 {
                        sleep(after).await;
                    } else {
                        sleep_until((start + after).into_std()).await;
                    }
                    log.borrow_mut().push((Instant::now() - start, after, i));
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let log = log.borrow();
            assert_eq!(log.len(), 200);
            for (woke, after, i) in log.iter() {
                assert_eq!(woke, after, "sleep {i} woke at {woke:?} instead of {after:?}");
            }
            assert!(
                log.windows(2).all(|w| (w[0].1, w[0].2) <= (w[1].1, w[1].2)),
                "sleeps woke out of deadline order: {log:?}"
            );
        });
    }

    /// Three intervals of coprime periods over thousands of ticks: each tick comes at exactly
    /// its scheduled time (none skipped: the clock jumps to each deadline in turn), and the
    /// ticks of all three stay in time order.
    fn interval_ticks_stay_ordered(lp: &mut EventLoop) {
        let mut paused = paused_loop(lp);
        paused.run_until_complete(async {
            let start = Instant::now();
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for period_ms in [7u64, 11, 13] {
                let log = log.clone();
                tasks.push(spawn(async move {
                    let period = Duration::from_millis(period_ms);
                    let mut ticks = interval(period);
                    for k in 0..1000u32 {
                        let at = ticks.tick().await;
                        assert_eq!(at, start + period * k, "tick {k} of the {period_ms} ms interval");
                        assert_eq!(Instant::now(), at, "a tick came late on a paused clock");
                        log.borrow_mut().push(at);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let log = log.borrow();
            assert_eq!(log.len(), 3000);
            assert!(log.windows(2).all(|w| w[0] <= w[1]), "ticks out of time order");
        });
    }

    /// An interval that fell 3.5 periods behind skips the missed ticks the same way whether the
    /// loop was stalled for real (a blocking sleep on a running clock) or the paused clock was
    /// advanced past them: the late tick reports its scheduled time, the next comes one period
    /// after the late one.
    fn missed_ticks_are_skipped_as_on_a_running_clock(lp: &mut EventLoop) {
        let period = Duration::from_millis(20);
        let stall = period * 7 / 2;
        // On a running clock: the loop is blocked for 3.5 periods.
        let running = lp.run_until_complete(async move {
            let mut ticks = interval(period);
            let t0 = ticks.tick().await;
            std::thread::sleep(stall);
            let late = ticks.tick().await;
            let after = ticks.tick().await;
            let next = ticks.tick().await;
            (late - t0, after - t0, next - after)
        });
        // On a paused clock: the clock is advanced by 3.5 periods while the ticker waits.
        let mut paused = paused_loop(lp);
        let frozen = paused.run_until_complete(async move {
            let mut ticks = interval(period);
            let t0 = ticks.tick().await;
            time::advance(stall).await;
            let late = ticks.tick().await;
            let after = ticks.tick().await;
            let next = ticks.tick().await;
            (late - t0, after - t0, next - after)
        });
        assert_eq!(frozen, (period, stall + period, period));
        assert_eq!(running.0, frozen.0, "the late tick reports its scheduled time");
        assert!(running.1 >= frozen.1, "running: the next tick is a period after the late one");
        assert!(running.1 < period * 30, "running: {:?}", running.1);
        assert_eq!(running.2, frozen.2, "then ticks go on one period apart");
    }

    /// A timer and a socket read race correctly on a paused clock: data written at +1 s beats a
    /// 5 s timeout (read at +1 s); data written at +10 s loses to it (timeout at +5 s) and is read
    /// whole afterwards at +10 s; data already there beats a timer due later, and the clock does
    /// not move for it.
    fn a_timer_and_a_socket_read_race_correctly(lp: &mut EventLoop) {
        let mut paused = paused_loop(lp);
        paused.run_until_complete(async {
            let (ours, theirs) = common::tcp_pair().await;
            let theirs = Rc::new(theirs);
            let start = Instant::now();

            let writer = theirs.clone();
            spawn(async move {
                sleep(Duration::from_secs(1)).await;
                writer.write_all(b"early".to_vec()).await.0.unwrap();
            });
            let (n, buf) = timeout(Duration::from_secs(5), ours.read(Vec::with_capacity(64)))
                .await
                .expect("the data came at +1 s, before the 5 s timeout");
            assert_eq!((n.unwrap(), &buf[..]), (5, &b"early"[..]));
            assert_eq!(start.elapsed(), Duration::from_secs(1));

            let writer = theirs.clone();
            spawn(async move {
                sleep(Duration::from_secs(9)).await;
                writer.write_all(b"late".to_vec()).await.0.unwrap();
            });
            let res = timeout(Duration::from_secs(4), ours.read(Vec::with_capacity(64))).await;
            assert!(res.is_err(), "the timeout at +5 s came before the data at +10 s");
            assert_eq!(start.elapsed(), Duration::from_secs(5));
            let (n, buf) = ours.read(Vec::with_capacity(64)).await;
            assert_eq!((n.unwrap(), &buf[..]), (4, &b"late"[..]));
            assert_eq!(start.elapsed(), Duration::from_secs(10));

            let far = spawn(sleep(HOUR));
            theirs.write_all(b"now".to_vec()).await.0.unwrap();
            let (n, buf) = timeout(Duration::from_secs(1), ours.read(Vec::with_capacity(64)))
                .await
                .expect("data already there beats the timeout");
            assert_eq!((n.unwrap(), &buf[..]), (3, &b"now"[..]));
            assert_eq!(start.elapsed(), Duration::from_secs(10), "the clock moved for nothing");
            far.abort();
        });
    }

    /// I/O keeps working while paused: with no timer armed the loop waits for the socket as
    /// usual (here, data a thread writes after 20 ms of real time), and the clock stands still.
    fn io_from_another_thread_arrives_while_paused(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            time::pause();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let peer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                std::thread::sleep(Duration::from_millis(20));
                s.write_all(b"hello").unwrap();
            });
            let ours = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            let (n, buf) = ours.read(Vec::with_capacity(16)).await;
            assert_eq!((n.unwrap(), &buf[..]), (5, &b"hello"[..]));
            assert_eq!(Instant::now(), start, "the paused clock moved");
            peer.join().unwrap();
        });
    }

    /// A `spawn_blocking` closure and a file op in flight hold the paused clock: a timeout around
    /// them does not fire just because the loop had nothing else to do.
    fn blocking_work_and_file_ops_hold_the_paused_clock(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
        let mut paused = paused_loop(lp);
        paused.run_until_complete(async move {
            let start = Instant::now();
            let slow = spawn_blocking(|| std::thread::sleep(Duration::from_millis(50)));
            timeout(Duration::from_secs(1), slow)
                .await
                .expect("the clock jumped past a running spawn_blocking closure")
                .unwrap();
            let data = timeout(Duration::from_secs(1), ringloop::fs::read(&path))
                .await
                .expect("the clock jumped past a file read")
                .unwrap();
            assert_eq!(data.len(), 64 * 1024);
            assert_eq!(Instant::now(), start);
            // Once they are done, the clock jumps again.
            sleep(HOUR).await;
            assert_eq!(start.elapsed(), HOUR);
        });
    }

    /// `advance` moves the paused clock and lets the timers now due run before it returns;
    /// `resume` lets the clock go on from where it stood; `advance` on a running clock panics
    /// saying what to do.
    fn advance_and_resume(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            time::pause();
            time::pause(); // pausing twice is harmless
            let start = Instant::now();
            let fired = Rc::new(RefCell::new(Vec::new()));
            for secs in [3u64, 1, 2, 9] {
                let fired = fired.clone();
                spawn(async move {
                    sleep(Duration::from_secs(secs)).await;
                    fired.borrow_mut().push(secs);
                });
            }
            ringloop::yield_now().await; // let them arm their timers
            time::advance(Duration::from_secs(5)).await;
            assert_eq!(*fired.borrow(), [1, 2, 3], "the timers due within 5 s, in order");
            assert_eq!(start.elapsed(), Duration::from_secs(5));

            time::resume();
            time::resume(); // resuming twice is harmless
            let real = std::time::Instant::now();
            sleep(Duration::from_millis(5)).await;
            assert!(real.elapsed() >= Duration::from_millis(5), "a running clock waits");
            let shown = start.elapsed();
            assert!(shown >= Duration::from_secs(5) + Duration::from_millis(5));
            assert!(shown < Duration::from_secs(60), "the clock caught up: {shown:?}");
        });
        let err = catch_unwind(AssertUnwindSafe(|| {
            lp.run_until_complete(time::advance(Duration::from_secs(1)))
        }))
        .expect_err("advance on a running clock");
        let msg = panic_message(&*err);
        assert!(msg.contains("needs a paused clock") && msg.contains("pause()"), "{msg}");
    }

    /// `advance` dropped after any number of polls (0: never polled, 1: the clock moved and the
    /// yield is pending) leaves a clock and a loop that work: the move is made or not, whole.
    fn advance_is_cancel_safe(lp: &mut EventLoop) {
        let mut paused = paused_loop(lp);
        paused.run_until_complete(async {
            for polls in 0..3u32 {
                let start = Instant::now();
                let mut fut = Box::pin(time::advance(Duration::from_secs(5)));
                let mut done = false;
                for _ in 0..polls {
                    done = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx)))
                        .await
                        .is_ready();
                }
                drop(fut);
                let moved = if polls == 0 { Duration::ZERO } else { Duration::from_secs(5) };
                assert_eq!(start.elapsed(), moved, "after {polls} poll(s), done: {done}");
                sleep(Duration::from_secs(1)).await;
                assert_eq!(start.elapsed(), moved + Duration::from_secs(1));
            }
        });
    }

    /// Debug mode times polls on the loop's clock: on a paused clock a poll that blocks the
    /// thread for real takes no time, and `advance` inside a poll is not a slow poll either; once
    /// resumed, a slow poll is reported again.
    fn slow_poll_timing_follows_the_paused_clock(lp: &mut EventLoop) {
        let slow = Rc::new(RefCell::new(Vec::new()));
        let seen = slow.clone();
        let mut paused = EventLoop::builder()
            .backend(lp.backend())
            .start_paused(true)
            .debug(true)
            .slow_poll_threshold(Duration::from_millis(20))
            .on_slow_poll(move |task, _| seen.borrow_mut().push(task.name().map(String::from)))
            .build()
            .unwrap();
        paused.run_until_complete(async {
            ringloop::spawn_named("blocks-while-paused", async {
                std::thread::sleep(Duration::from_millis(30))
            })
            .await
            .unwrap();
            ringloop::spawn_named("advances", async { time::advance(HOUR).await })
                .await
                .unwrap();
            time::resume();
            ringloop::spawn_named("blocks-after-resume", async {
                std::thread::sleep(Duration::from_millis(30))
            })
            .await
            .unwrap();
        });
        assert_eq!(*slow.borrow(), [Some("blocks-after-resume".to_owned())]);
    }
}

/// `pause`, `resume` and `advance` outside a loop panic with a message saying where to call them.
#[test]
fn pause_outside_a_loop_panics_with_a_clear_message() {
    let calls: [(&str, fn()); 3] = [
        ("pause", time::pause),
        ("resume", time::resume),
        ("advance", || {
            let mut fut = std::pin::pin!(time::advance(Duration::from_secs(1)));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = fut.as_mut().poll(&mut cx);
        }),
    ];
    for (name, call) in calls {
        let err = catch_unwind(call).expect_err(name);
        let msg = panic_message(&*err);
        assert!(
            msg.contains(&format!("ringloop::time::{name}()"))
                && msg.contains("outside a running ringloop event loop")
                && msg.contains("start_paused"),
            "{name}: {msg}"
        );
    }
}

/// `Instant` outside a loop is the system's clock, converts to and from std's without changing
/// its value, and does the usual arithmetic.
#[test]
fn instant_arithmetic_and_conversions() {
    let std_now = std::time::Instant::now();
    let a = Instant::from_std(std_now);
    assert_eq!(a.into_std(), std_now);
    assert_eq!(Instant::from(std_now), a);
    assert_eq!(std::time::Instant::from(a), std_now);
    let b = a + Duration::from_secs(2);
    assert_eq!(b - a, Duration::from_secs(2));
    assert_eq!(a - b, Duration::ZERO, "saturates, as std's does");
    assert_eq!(b.duration_since(a), Duration::from_secs(2));
    assert_eq!(a.checked_duration_since(b), None);
    assert_eq!(b - Duration::from_secs(2), a);
    let mut c = a;
    c += Duration::from_secs(1);
    c -= Duration::from_millis(500);
    assert_eq!(c, a + Duration::from_millis(500));
    assert!(a < c && c < b);
    assert!(Instant::now() >= a);
    assert_eq!(format!("{a:?}"), format!("{std_now:?}"));
}
