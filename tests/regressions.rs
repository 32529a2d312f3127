//! Regression tests, each named after what broke.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use ringloop::net::TcpListener;
use ringloop::time::{sleep, timeout};
use ringloop::{Backend, spawn, yield_now};

/// Panics when dropped; the panic a destructor of user code may raise.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop was dropped");
    }
}

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A future that never finishes and panics when dropped, polled or not.
fn pending_that_panics_on_drop() -> impl Future<Output = ()> {
    let guard = PanicOnDrop;
    async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }
}

/// A future that finishes at its first poll (or panics in it, if `panic_in_poll`) and panics
/// again when dropped afterwards.
struct FinishThenPanicOnDrop {
    panic_in_poll: bool,
}

impl Future for FinishThenPanicOnDrop {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
        if self.panic_in_poll {
            panic!("the poll panicked");
        }
        Poll::Ready(7)
    }
}

impl Drop for FinishThenPanicOnDrop {
    fn drop(&mut self) {
        panic!("FinishThenPanicOnDrop was dropped");
    }
}

both_backends! {
    /// On epoll a short read marks the socket not ready until its next edge, to skip the read
    /// that would only say EAGAIN. When the data and the peer's FIN came in one edge, the read
    /// after the short one waited for an edge that never comes, and the EOF was never seen (the
    /// epoll cancellation storm hung). A closed peer now keeps the socket readable.
    fn eof_that_came_with_the_last_data_is_seen_after_a_short_read(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            // A read that waits, so the socket is registered and armed; its result is short.
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                peer.write_all(b"hello").unwrap();
                peer
            });
            let (res, _) = s.read(Vec::with_capacity(4096)).await;
            assert_eq!(res.unwrap(), 5);
            // Data and FIN both arrive before the loop next looks at epoll: one edge for both.
            let mut peer = writer.join().unwrap();
            peer.write_all(b"world").unwrap();
            drop(peer);
            std::thread::sleep(Duration::from_millis(20));
            let (res, buf) = s.read(Vec::with_capacity(4096)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(buf, b"world");
            let (res, _) = timeout(Duration::from_secs(5), s.read(Vec::with_capacity(4096)))
                .await
                .expect("the EOF that came with the last data was never seen");
            assert_eq!(res.unwrap(), 0);
        });
    }

    /// On epoll an op whose data is already there completes inside the poll that started it, so a
    /// task reading from a peer that is always ahead never returned `Pending` and starved every
    /// other task (seen as a 1.3 s p99 on the echo server under strace). The cooperative budget
    /// makes it yield.
    fn a_task_whose_reads_are_always_ready_does_not_starve_others(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            // 64 KiB wait in the socket: each 16-byte read finds data at once.
            peer.write_all(&vec![7u8; 64 * 1024]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));

            let s = &s;
            common::busy_reader_lets_others_run(|_| async move {
                let (res, _) = s.read(Vec::with_capacity(16)).await;
                assert_eq!(res.unwrap(), 16);
            })
            .await;
        });
    }

    /// On uring a read dropped by a timeout can lose its cancel race and still take bytes, which
    /// the next read returns first. A read issued before that orphan's completion came in could
    /// take later bytes meanwhile, so the stream came out reordered (about one run in 15 of
    /// tcp.rs's timeout test). Reads now wait for dropped reads on the stream to settle.
    fn a_new_read_cannot_overtake_a_dropped_read_still_in_the_kernel(lp: &mut EventLoop) {
        const TOTAL: usize = 50_000;
        for run in 0..10 {
            lp.run_until_complete(async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let writer = std::thread::spawn(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    c.set_nodelay(true).unwrap();
                    let data = common::pattern(run, TOTAL);
                    for (i, chunk) in data.chunks(97).enumerate() {
                        c.write_all(chunk).unwrap();
                        if i % 3 == 0 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                });
                let (s, _) = listener.accept().await.unwrap();
                let mut got = Vec::with_capacity(TOTAL);
                while got.len() < TOTAL {
                    if let Ok((res, b)) =
                        timeout(Duration::from_micros(40), s.read(Vec::with_capacity(300))).await
                    {
                        let n = res.unwrap();
                        assert!(n > 0, "unexpected EOF");
                        got.extend_from_slice(&b[..n]);
                    }
                }
                writer.join().unwrap();
                assert!(got == common::pattern(run, TOTAL), "run {run}: the stream was reordered");
            });
        }
    }



    /// Aborting a task whose future panicked in its destructor let the panic escape
    /// `run_until_complete`. The panic is now contained: the handle gives `is_panic()`, the loop
    /// and the other tasks go on.
    fn a_panic_while_an_aborted_task_is_dropped_stays_in_its_join_handle(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let other = spawn(async {
                sleep(Duration::from_millis(5)).await;
                "other"
            });
            // Aborted after its first poll...
            let polled = spawn(pending_that_panics_on_drop());
            yield_now().await;
            polled.abort();
            let err = polled.await.unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert!(err.to_string().contains("PanicOnDrop"), "{err}");
            // ...and before it.
            let unpolled = spawn(pending_that_panics_on_drop());
            unpolled.abort();
            assert!(unpolled.await.unwrap_err().is_panic());
            assert_eq!(other.await.unwrap(), "other");
        });
        // The loop is still usable.
        assert_eq!(lp.run_until_complete(async { spawn(async { 1 }).await.unwrap() }), 1);
    }

    /// Closing a loop with a pending task whose future panics when dropped let the panic escape
    /// `close()`, and the tasks after it were never dropped. `close()` now returns normally and
    /// drops every task's future.
    fn closing_a_loop_survives_a_task_whose_drop_panics(lp: &mut EventLoop) {
        let mut own = common::new_loop(lp.backend());
        let before = Rc::new(Cell::new(false));
        let after = Rc::new(Cell::new(false));
        let (b, a) = (DropFlag(before.clone()), DropFlag(after.clone()));
        own.run_until_complete(async move {
            spawn(async move {
                let _flag = b;
                std::future::pending::<()>().await;
            });
            spawn(pending_that_panics_on_drop());
            spawn(async move {
                let _flag = a;
                sleep(Duration::from_secs(3600)).await;
            });
            yield_now().await;
        });
        own.close();
        assert!(before.get(), "the task spawned before the panicking one was not dropped");
        assert!(after.get(), "the task spawned after the panicking one was not dropped");
    }

    /// A task's output that panics when dropped because nobody awaited it (its handle was dropped
    /// before or after it finished) took the loop down. It is now dropped with the panic contained.
    fn an_unawaited_output_that_panics_when_dropped_does_not_take_the_loop_down(
        lp: &mut EventLoop
    ) {
        let n = lp.run_until_complete(async {
            // Detached before it finishes: the output is dropped when it is produced.
            drop(spawn(async { PanicOnDrop }));
            // Finished, then its handle dropped without taking the output.
            let kept = spawn(async { PanicOnDrop });
            while !kept.is_finished() {
                yield_now().await;
            }
            drop(kept);
            // The loop goes on.
            spawn(async { 5 }).await.unwrap()
        });
        assert_eq!(n, 5);
    }

    /// A future that returned `Ready` and then panicked in its destructor, or that panicked in
    /// `poll` and again in its destructor, let the second panic escape the loop.
    fn a_panic_in_the_destructor_of_a_finished_or_panicked_future_is_contained(
        lp: &mut EventLoop
    ) {
        lp.run_until_complete(async {
            let err = spawn(FinishThenPanicOnDrop { panic_in_poll: false }).await.unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            let twice = spawn(FinishThenPanicOnDrop { panic_in_poll: true });
            assert!(twice.await.unwrap_err().is_panic());
        });
    }

    /// A task that yielded was polled again up to about 64 times before the loop fired due
    /// timers. After `yield_now` returns, every timer due before the yield has fired and the task
    /// it woke has run; so for the main future and for a spawned task.
    fn yield_now_returns_after_due_timers_have_fired(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            for yielder_is_main in [true, false] {
                let fired = Rc::new(Cell::new(false));
                let f = fired.clone();
                let sleeper = spawn(async move {
                    sleep(Duration::from_millis(1)).await;
                    f.set(true);
                });
                yield_now().await; // the sleeper arms its timer
                std::thread::sleep(Duration::from_millis(10)); // the timer is now due
                let check = async move {
                    yield_now().await;
                    assert!(fired.get(), "a due timer had not fired when yield_now returned");
                };
                if yielder_is_main {
                    check.await;
                } else {
                    spawn(check).await.unwrap();
                }
                sleeper.await.unwrap();
            }
        });
    }

    /// A task woken from another thread waited until the loop next looked at its remote queue,
    /// which a yielding task put off for up to about 64 polls.
    fn yield_now_returns_after_tasks_woken_from_other_threads_have_run(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            for yielder_is_main in [true, false] {
                let ran = Rc::new(Cell::new(false));
                let r = ran.clone();
                let (tx, rx) = futures_channel::oneshot::channel::<()>();
                let waiter = spawn(async move {
                    rx.await.unwrap();
                    r.set(true);
                });
                yield_now().await; // the waiter waits on the channel
                std::thread::spawn(move || tx.send(()).unwrap()).join().unwrap();
                let check = async move {
                    yield_now().await;
                    assert!(ran.get(), "a task woken from another thread had not run");
                };
                if yielder_is_main {
                    check.await;
                } else {
                    spawn(check).await.unwrap();
                }
                waiter.await.unwrap();
            }
        });
    }

    /// A yielding task put off the loop's look at I/O for up to about 64 polls, and the backends
    /// differed: a queued connection was accepted at once on epoll and after about 60 yields on
    /// uring. After `yield_now` returns, I/O that had completed has been seen on both.
    fn yield_now_returns_after_completed_io_has_been_seen(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            for yielder_is_main in [true, false] {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let accepted = Rc::new(Cell::new(false));
                let a = accepted.clone();
                let server = spawn(async move {
                    let conn = listener.accept().await.unwrap();
                    a.set(true);
                    conn
                });
                // The accept is armed (and, on uring, submitted) before the peer connects.
                yield_now().await;
                yield_now().await;
                let _peer = std::net::TcpStream::connect(addr).unwrap();
                let check = async move {
                    yield_now().await;
                    assert!(accepted.get(), "a queued connection was not accepted by the yield");
                };
                if yielder_is_main {
                    check.await;
                } else {
                    spawn(check).await.unwrap();
                }
                server.await.unwrap();
            }
        });
    }
}

/// A wake for a sleeping uring loop, sent from another uring loop, was only queued on the
/// sender's ring as a `MSG_RING`, to go with the sender's next ring trip. A sender whose main
/// future had returned (its loop alive but idle) never made that trip, and the target's
/// `sleeping` flag was already cleared, so no later wake wrote its eventfd either: the job sat
/// unrun until the sender was dropped. A wake now reaches its target with no further action of
/// the sender, on every pairing of backends.
#[test]
fn a_wake_sent_from_an_idle_loop_reaches_a_sleeping_loop_on_every_backend_pairing() {
    use std::sync::mpsc;
    for sender in [Backend::Uring, Backend::Epoll] {
        for target in [Backend::Uring, Backend::Epoll] {
            let stop = ringloop::Shutdown::new();
            let (handle_tx, handle_rx) = mpsc::channel();
            let waiting = stop.clone();
            let target_thread = std::thread::spawn(move || {
                let mut lp = common::new_loop(target);
                handle_tx.send(lp.handle()).unwrap();
                lp.run_until_complete(waiting.triggered());
                lp.close();
            });
            let handle = handle_rx.recv().unwrap();
            // Let the target reach its sleep.
            std::thread::sleep(Duration::from_millis(50));
            let (ran_tx, ran_rx) = mpsc::channel();
            let mut lp = common::new_loop(sender);
            lp.run_until_complete(async move {
                handle.call_soon(move || ran_tx.send(()).unwrap());
            });
            // The sender's loop stays alive and idle from here on.
            let ran = ran_rx.recv_timeout(Duration::from_secs(10));
            // Closing the sender first flushes anything it still holds, so the target can stop.
            lp.close();
            stop.trigger();
            target_thread.join().unwrap();
            assert!(
                ran.is_ok(),
                "a job sent from an idle {sender} loop to a sleeping {target} loop never ran"
            );
        }
    }
}

/// io_uring instances open in this process (fds that name one).
fn open_rings() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("io_uring"))
        .count()
}

/// A uring loop keeps a dup of its ring's fd so other loops can message it. The dup lived as long
/// as any waker or `LoopHandle` of the loop, so a closed loop's ring stayed allocated in the
/// kernel (memory, and locked pages on older kernels) while a handle lived. Closing the loop
/// closes it now.
#[test]
fn a_closed_loops_ring_is_released_while_its_handle_lives() {
    if !common::in_child() {
        common::run_in_child(
            "a_closed_loops_ring_is_released_while_its_handle_lives",
            &[],
        );
        return;
    }
    let before = open_rings();
    let lp = common::new_loop(Backend::Uring);
    let handle = lp.handle();
    let waker_holder = lp.handle();
    assert!(open_rings() > before, "the loop opened no ring");
    lp.close();
    assert_eq!(
        open_rings(),
        before,
        "a closed loop's ring fd is still open while a handle lives"
    );
    assert!(handle.is_closed());
    drop((handle, waker_holder));
}

/// Sends `data` on `fd` with an `SCM_RIGHTS` message carrying a copy of stdin.
fn send_with_rights(fd: std::os::fd::RawFd, data: &[u8]) {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one fd, aligned as a cmsghdr must be.
    let mut control = [0u64; 4];
    // SAFETY: the message points at live, correctly sized buffers for the duration of sendmsg;
    // the CMSG macros stay inside `control`.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        libc::CMSG_DATA(cmsg).cast::<i32>().write_unaligned(0);
        assert_eq!(libc::sendmsg(fd, &msg, 0), data.len() as isize);
    }
}

/// Short reads that do not mean "drained".
mod short_reads {
    use super::*;
    use ringloop::compat::PollIo;
    use ringloop::net::UnixStream;

    /// One read of up to 64 bytes, owned or poll-based.
    async fn read_some(io: &mut PollIo<UnixStream>, poll_based: bool) -> Vec<u8> {
        if poll_based {
            let mut buf = [0u8; 64];
            let n = std::future::poll_fn(|cx| io.poll_read(cx, &mut buf))
                .await
                .unwrap();
            buf[..n].to_vec()
        } else {
            let (res, buf) = io.get_ref().read(Vec::with_capacity(64)).await;
            res.unwrap();
            buf
        }
    }

    both_backends! {
        /// On epoll a short read was taken to mean "drained", and the fd then waited for a new edge
        /// without trying the syscall. Linux returns short reads with data still queued: a Unix
        /// stream read stops after a segment that carried `SCM_RIGHTS`. The reader hung until the
        /// peer sent more. Now only `EAGAIN` (or a transport where a short read proves it) marks a
        /// Unix stream drained; owned reads and poll-based reads alike.
        fn a_unix_read_cut_short_by_scm_rights_does_not_hide_the_rest(lp: &mut EventLoop) {
            use std::os::fd::AsRawFd;
            lp.run_until_complete(async {
                for poll_based in [false, true] {
                    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                    let ours = ringloop::net::UnixStream::from_std(ours).unwrap();
                    let mut ours = ringloop::compat::PollIo::new(ours);
                    // A first read that waits, so the socket is registered and armed.
                    let peer = theirs.as_raw_fd();
                    let writer = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        send_with_rights(peer, b"first");
                        (&theirs).write_all(b"second").unwrap();
                        theirs
                    });
                    let first = read_some(&mut ours, poll_based).await;
                    let _theirs = writer.join().unwrap();
                    assert_eq!(first, b"first", "the read did not stop after the SCM_RIGHTS segment");
                    let second = timeout(Duration::from_secs(5), read_some(&mut ours, poll_based))
                        .await
                        .unwrap_or_else(|_| {
                            panic!("bytes queued behind an SCM_RIGHTS segment were never read \
                                    (poll-based: {poll_based})")
                        });
                    assert_eq!(second, b"second");
                }
            });
        }

        /// The same for TCP: a read stops at the urgent mark with data still queued. A short TCP read
        /// proves the socket empty only until the peer sends urgent data, which epoll reports.
        fn a_tcp_read_cut_short_at_the_urgent_mark_does_not_hide_the_rest(lp: &mut EventLoop) {
            use std::os::fd::AsRawFd;
            lp.run_until_complete(async {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let peer = std::net::TcpStream::connect(addr).unwrap();
                peer.set_nodelay(true).unwrap();
                let (s, _) = listener.accept().await.unwrap();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    (&peer).write_all(b"ab").unwrap();
                    // SAFETY: sends one byte from a live buffer.
                    let n = unsafe { libc::send(peer.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
                    assert_eq!(n, 1);
                    (&peer).write_all(b"cd").unwrap();
                    peer
                });
                // The first read waits (the socket is armed), and the writer's bytes all arrive
                // before the loop looks again.
                let (res, first) = s.read(Vec::with_capacity(1)).await;
                assert_eq!(res.unwrap(), 1);
                let _peer = writer.join().unwrap();
                std::thread::sleep(Duration::from_millis(20));
                let mut got = first;
                while got.len() < 4 {
                    let (res, buf) = timeout(Duration::from_secs(5), s.read(Vec::with_capacity(64)))
                        .await
                        .unwrap_or_else(|_| panic!("bytes after the urgent mark were never read: {got:?}"));
                    assert!(res.unwrap() > 0);
                    got.extend_from_slice(&buf);
                }
                assert_eq!(got, b"abcd", "the urgent byte is not inline: the rest arrives in order");
            });
        }
    }
}

/// Issue "trust, part two": timers.
mod timers {
    use super::*;
    use ringloop::time::{interval, sleep_until};
    use std::time::Instant;

    both_backends! {
        /// An elapsed `Sleep` returned `Ready` at its first poll and spent no budget, so a task
        /// looping on `sleep(Duration::ZERO)` (asyncio's "yield to the loop") or on
        /// `sleep_until` of a past instant never let another task run: the loop stalled. An
        /// elapsed sleep now spends cooperative budget, and yields once it is spent.
        fn an_elapsed_sleep_lets_other_tasks_run(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                for past in [false, true] {
                    let ran = Rc::new(Cell::new(false));
                    let r = ran.clone();
                    spawn(async move { r.set(true) });
                    let mut turns = 0;
                    while !ran.get() && turns < 100_000 {
                        if past {
                            sleep_until(Instant::now() - Duration::from_millis(1)).await;
                        } else {
                            sleep(Duration::ZERO).await;
                        }
                        turns += 1;
                    }
                    assert!(ran.get(), "a task looping on an elapsed sleep starved the loop");
                    // One task poll's budget (128) at most, with room to spare.
                    assert!(turns <= 1_000, "the other task ran only after {turns} elapsed sleeps");
                }
            });
        }

        /// `interval(Duration::MAX)` panicked computing its next tick (`tick + period`
        /// overflowed `Instant`), and `reset` did the same. Both clamp to a far future now.
        fn an_interval_with_a_huge_period_does_not_panic(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let mut ticks = interval(Duration::MAX);
                ticks.tick().await;
                let second = timeout(Duration::from_millis(5), ticks.tick()).await;
                assert!(second.is_err(), "the second tick of a huge period came at once");
                ticks.reset();
                assert!(timeout(Duration::from_millis(5), ticks.tick()).await.is_err());
            });
        }
    }
}

/// Issue "trust, part two": the driver.
mod driver {
    use super::*;
    use ringloop::net::TcpStream;
    use std::future::poll_fn;
    use std::time::Instant;

    /// A connected pair (ours, theirs) over loopback.
    async fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        (s, peer)
    }

    /// Starts `fut` (one poll, which must leave it pending: its op is in flight) and returns it.
    async fn started<F: Future>(fut: F) -> Pin<Box<F>> {
        let mut fut = Box::pin(fut);
        poll_fn(|cx| {
            assert!(
                fut.as_mut().poll(cx).is_pending(),
                "the op completed at once"
            );
            Poll::Ready(())
        })
        .await;
        fut
    }

    /// Starts `fut` and drops it: an op left in flight, its future gone.
    async fn start_and_drop<F: Future>(fut: F) {
        drop(started(fut).await);
    }

    both_backends! {
        /// Completions of dropped ops reaped outside the loop's park (here by `into_std` of
        /// another stream, which cancels its multishot receive and reaps at once) were released
        /// only after the next park, which could block with nothing else due: a read waiting
        /// for that orphan to settle then waited for an unrelated completion.
        fn an_orphan_reaped_outside_park_does_not_leave_a_read_waiting(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let (a, mut a_peer) = pair().await;
                let (b, mut b_peer) = pair().await;
                // b's pooled receive stays armed (a multishot on uring).
                b_peer.write_all(b"b").unwrap();
                assert_eq!(&b.recv_pooled().await.unwrap()[..], b"b");
                // A read on a, dropped in flight: an orphan whose cancel is queued.
                start_and_drop(a.read(Vec::with_capacity(64))).await;
                // into_std submits the queue and reaps, the orphan's completion among them.
                let _b = b.into_std().unwrap();
                a_peer.write_all(b"after").unwrap();
                let start = Instant::now();
                let (res, buf) = timeout(Duration::from_secs(5), a.read(Vec::with_capacity(64)))
                    .await
                    .expect("the read never completed");
                assert_eq!(&buf[..res.unwrap()], b"after");
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "the read waited {:?} for an orphan reaped outside park",
                    start.elapsed()
                );
            });
        }

        /// `readv` whose first buffer is empty returned `Ok(0)` while bytes a dropped read had
        /// received were waiting and a later buffer had room. They fill the first buffer with
        /// room now, as the kernel would.
        fn readv_with_an_empty_first_buffer_takes_what_a_dropped_read_left(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let (s, mut peer) = pair().await;
                let read = started(s.read(Vec::with_capacity(64))).await;
                peer.write_all(b"left").unwrap();
                std::thread::sleep(Duration::from_millis(50));
                // On uring the dropped read may already hold the bytes: they are stashed.
                drop(read);
                let (res, bufs) = timeout(
                    Duration::from_secs(5),
                    s.readv(vec![Vec::with_capacity(0), Vec::with_capacity(64)]),
                )
                .await
                .expect("readv never completed");
                assert_eq!(res.unwrap(), 4, "readv took nothing though bytes were waiting");
                assert_eq!(bufs[1], b"left");
            });
        }

        /// A dropped read whose completion was `ECONNRESET` lost the error: only bytes were kept
        /// for the next read, which then said `Ok(0)`, a clean end of stream. The error is kept
        /// and the next read returns it.
        fn a_reset_seen_by_a_dropped_read_reaches_the_next_read(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let (s, peer) = pair().await;
                let read = started(s.read(Vec::with_capacity(64))).await;
                // The peer resets the connection (linger 0) while the read is in flight, and the
                // read's future is dropped before the loop looks at its completion.
                socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
                drop(peer);
                std::thread::sleep(Duration::from_millis(50));
                drop(read);
                let (res, _) = timeout(Duration::from_secs(5), s.read(Vec::with_capacity(64)))
                    .await
                    .expect("the read after the reset never completed");
                let err = res.expect_err("a reset connection read as a clean end of stream");
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
            });
        }
    }
}

/// Issue "trust, part two": the blocking pool.
mod blocking_pool {
    use super::*;

    /// A value that panics when dropped on a pool thread.
    struct PanicsWhenDropped;

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("a blocking job's output panicked in its destructor");
        }
    }

    both_backends! {
        /// The blocking pool ran jobs without `catch_unwind`: an output nobody awaits any more
        /// (its handle aborted) is dropped on the pool thread, and if its destructor panicked
        /// the thread died without leaving the pool's count. After 512 such deaths every
        /// `spawn_blocking` (and every file op on epoll) queued forever.
        fn panicking_blocking_jobs_do_not_use_up_the_pool(lp: &mut EventLoop) {
            if !common::in_child() {
                let name = format!(
                    "blocking_pool::{}::panicking_blocking_jobs_do_not_use_up_the_pool",
                    lp.backend()
                );
                common::run_in_child(&name, &[]);
                return;
            }
            lp.run_until_complete(async {
                for _ in 0..600 {
                    let (tx, rx) = std::sync::mpsc::channel::<()>();
                    let job = ringloop::spawn_blocking(move || {
                        // Finishes only once its handle has been aborted and dropped.
                        let _ = rx.recv();
                        PanicsWhenDropped
                    });
                    job.abort();
                    drop(job);
                    yield_now().await;
                    drop(tx);
                }
                let last = timeout(Duration::from_secs(30), ringloop::spawn_blocking(|| 7)).await;
                assert_eq!(
                    last.expect("spawn_blocking queued forever after panicking jobs").unwrap(),
                    7
                );
            });
        }
    }
}
