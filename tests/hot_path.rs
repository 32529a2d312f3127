//! The message path's shortcuts under attack: a poll that takes no count of its task (tasks
//! aborting, dropping their own handles, panicking, spawning from destructors while the ready
//! ring grows), the send tried at once straight from the buffer (narrow slices, slow readers,
//! peers that stop reading and vanish, the budget), and the pooled receive's delivery against
//! hostile peers on every receive path, every byte checked.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

use common::{Rng, pattern};
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::time::{sleep, timeout};
use ringloop::{EventLoop, JoinHandle, spawn, yield_now};

fn tcp_pair_std() -> (TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (TcpStream::from_std(s).unwrap(), c)
}

struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("destructor panics");
        }
    }
}

struct SpawnOnDrop(Rc<Cell<u32>>);
impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        let c = self.0.clone();
        // A destructor that spawns and wakes while the executor removes the finished task.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spawn(async move {
                c.set(c.get() + 1);
            })
            .detach_or_drop();
        }));
    }
}

trait DetachOrDrop {
    fn detach_or_drop(self);
}
impl<T> DetachOrDrop for JoinHandle<T> {
    fn detach_or_drop(self) {
        drop(self)
    }
}

both_backends! {
    /// A task aborts itself through its own handle, and drops its own handle, mid-poll.
    fn task_aborts_and_drops_its_own_handle(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            for round in 0..200u32 {
                let slot: Rc<RefCell<Option<JoinHandle<u32>>>> = Rc::default();
                let s2 = slot.clone();
                let h = spawn(async move {
                    yield_now().await;
                    let me = s2.borrow_mut().take().unwrap();
                    if round % 2 == 0 {
                        me.abort();
                        drop(me); // the last handle, dropped mid-poll
                        yield_now().await;
                        unreachable!("aborted");
                    }
                    drop(me);
                    // Spawn lots while being polled: the slab reallocates under this poll.
                    let mut hs = Vec::new();
                    for i in 0..(if round % 7 == 1 { 10_000 } else { 50 }) {
                        hs.push(spawn(async move { i }));
                    }
                    let mut sum = 0u32;
                    for h in hs {
                        sum = sum.wrapping_add(h.await.unwrap());
                    }
                    sum
                });
                *slot.borrow_mut() = Some(h);
                for _ in 0..5 {
                    yield_now().await;
                }
            }
            // Let every leftover task finish.
            sleep(Duration::from_millis(50)).await;
        });
    }

    /// Task A aborts task B (queued behind it in the same turn), B aborts A, and a task panics
    /// in its poll and in a destructor while others are woken many times.
    fn cross_aborts_panics_and_many_wakes(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let handles: Rc<RefCell<Vec<JoinHandle<()>>>> = Rc::default();
            let n = 300;
            for i in 0..n {
                let hs = handles.clone();
                handles.borrow_mut().push(spawn(async move {
                    for step in 0..20u32 {
                        yield_now().await;
                        let len = hs.borrow().len();
                        let target = (i * 7 + step as usize * 13) % len;
                        if step % 5 == 4 {
                            hs.borrow()[target].abort();
                        }
                        if i % 37 == 3 && step == 6 {
                            let _p = PanicOnDrop;
                            panic!("poll panics");
                        }
                        if i % 41 == 5 && step == 3 {
                            let _d = PanicOnDrop; // dropped on normal return of the block
                            return;
                        }
                    }
                }));
            }
            // Wake one task many times from another.
            let w: Rc<RefCell<Option<std::task::Waker>>> = Rc::default();
            let w2 = w.clone();
            let polls = Rc::new(Cell::new(0u32));
            let p2 = polls.clone();
            let sleeper = spawn(std::future::poll_fn(move |cx| {
                p2.set(p2.get() + 1);
                *w2.borrow_mut() = Some(cx.waker().clone());
                if p2.get() > 50 { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
            }));
            for _ in 0..100 {
                for _ in 0..1000 {
                    if let Some(w) = w.borrow().as_ref() {
                        w.wake_by_ref();
                    }
                }
                yield_now().await;
            }
            sleeper.await.unwrap();
            let hs = std::mem::take(&mut *handles.borrow_mut());
            let mut cancelled = 0;
            let mut panicked = 0;
            for h in hs {
                match h.await {
                    Ok(()) => {}
                    Err(e) if e.is_cancelled() => cancelled += 1,
                    Err(e) if e.is_panic() => panicked += 1,
                    Err(_) => {}
                }
            }
            assert!(cancelled > 0 && panicked > 0, "{cancelled} {panicked}");
        });
    }

    /// A finished task's destructor spawns (in `remove_finished`), 100k times, with the ready
    /// ring growing while `run_ready` iterates.
    fn destructors_spawn_while_ring_grows(lp: &mut EventLoop) {
        let count = Rc::new(Cell::new(0u32));
        let c = count.clone();
        lp.run_until_complete(async move {
            for _ in 0..20 {
                let mut hs = Vec::new();
                for _ in 0..5000 {
                    let g = SpawnOnDrop(c.clone());
                    hs.push(spawn(async move {
                        let _g = g;
                        yield_now().await;
                    }));
                }
                // Drop the handles: the tasks are detached, their output dropped at once.
                drop(hs);
                yield_now().await;
            }
            while c.get() < 100_000 {
                sleep(Duration::from_millis(1)).await;
            }
        });
        assert_eq!(count.get(), 100_000);
    }

    /// A slice narrower than its buffer: only its range is sent.
    fn write_all_of_a_narrow_slice(lp: &mut EventLoop) {
        use ringloop::buf::IoBuf;
        let (s, mut c) = tcp_pair_std();
        lp.run_until_complete(async move {
            let buf: Vec<u8> = (0..100u8).collect();
            let sl = buf.slice(10..20);
            let (r, sl) = s.write_all(sl).await;
            r.unwrap();
            let buf = sl.into_inner();
            // A slice whose end runs past the initialised bytes: only the initialised part.
            let mut v = Vec::with_capacity(64);
            v.extend_from_slice(b"abcdef");
            let (r, _) = s.write_all(v.slice(2..60)).await;
            r.unwrap();
            let (r, _) = s.write_all(buf.slice(95..)).await;
            r.unwrap();
            drop(s);
        });
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        let mut want: Vec<u8> = (10..20u8).collect();
        want.extend_from_slice(b"cdef");
        want.extend(95..100u8);
        assert_eq!(got, want);
    }

    /// 64 MiB in random sizes to a peer that reads slowly in small bites, every byte checked,
    /// over TCP and a unix socket.
    fn big_writes_to_a_slow_reader_arrive_intact(lp: &mut EventLoop) {
        let total = 64 << 20;
        let (s, c) = tcp_pair_std();
        let (ua, ub) = std::os::unix::net::UnixStream::pair().unwrap();
        let ua = UnixStream::from_std(ua).unwrap();
        let check = |mut r: Box<dyn Read + Send>| std::thread::spawn(move || {
            let mut rng = Rng(7);
            let mut off = 0;
            let mut buf = vec![0u8; 300_000];
            while off < total {
                let want = 1 + rng.below(buf.len() as u64) as usize;
                let n = r.read(&mut buf[..want]).unwrap();
                assert!(n > 0, "early eof at {off}");
                assert_eq!(&buf[..n], &pattern(off, n)[..], "at {off}");
                off += n;
                if rng.below(50) == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        });
        let t1 = check(Box::new(c));
        let t2 = check(Box::new(ub));
        lp.run_until_complete(async move {
            let ua = Rc::new(ua);
            let s = Rc::new(s);
            let mut hs = Vec::new();
            for which in 0..2 {
                let s = s.clone();
                let ua = ua.clone();
                hs.push(spawn(async move {
                    let mut rng = Rng(3 + which);
                    let mut off = 0;
                    while off < total {
                        let len = (1 + rng.below(3 << 20) as usize).min(total - off);
                        let r = if which == 0 {
                            s.write_all(pattern(off, len)).await.0
                        } else {
                            ua.write_all(pattern(off, len)).await.0
                        };
                        r.unwrap();
                        off += len;
                    }
                }));
            }
            // Another task must keep running meanwhile.
            let ticks = Rc::new(Cell::new(0u32));
            let t = ticks.clone();
            let ticker = spawn(async move {
                loop {
                    sleep(Duration::from_millis(1)).await;
                    t.set(t.get() + 1);
                }
            });
            for h in hs {
                h.await.unwrap();
            }
            ticker.abort();
            assert!(ticks.get() > 5, "ticker ran {} times", ticks.get());
        });
        t1.join().unwrap();
        t2.join().unwrap();
    }

    /// A peer that stops reading (the socket buffer fills, the writer waits), then resets: the
    /// write fails, it does not hang; and a peer that closes makes the next write fail.
    fn peer_stops_reading_then_vanishes(lp: &mut EventLoop) {
        let (s, c) = tcp_pair_std();
        let (s2, c2) = tcp_pair_std();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
            drop(c);
            drop(c2);
        });
        lp.run_until_complete(async move {
            let a = spawn(async move {
                let r = timeout(Duration::from_secs(10), s.write_all(vec![7u8; 64 << 20])).await;
                let (r, _) = r.expect("write_all hung after the peer reset");
                let e = r.expect_err("the peer reset");
                assert!(matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe), "{e:?}");
            });
            let b = spawn(async move {
                sleep(Duration::from_millis(500)).await;
                let mut last = Ok(());
                for _ in 0..50 {
                    let (r, _) = timeout(Duration::from_secs(5), s2.write_all(vec![1u8; 100_000])).await.expect("hang");
                    last = r;
                    if last.is_err() { break; }
                    sleep(Duration::from_millis(5)).await;
                }
                let e = last.expect_err("writes to a closed peer fail");
                assert!(matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe), "{e:?}");
            });
            a.await.unwrap();
            b.await.unwrap();
        });
        killer.join().unwrap();
    }

    /// A task that always writes (a socket the peer drains at once) must not starve others.
    fn busy_writer_lets_others_run(lp: &mut EventLoop) {
        let (s, mut c) = tcp_pair_std();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut n = 0usize;
            loop {
                match c.read(&mut buf) { Ok(0) | Err(_) => break, Ok(k) => n += k }
            }
            let _ = st;
            n
        });
        let sent = lp.run_until_complete(async move {
            let other = Rc::new(Cell::new(0u32));
            let o = other.clone();
            spawn(async move { loop { o.set(o.get() + 1); yield_now().await; } }).detach_or_drop();
            let mut writes = 0usize;
            let mut seen_at = None;
            for i in 0..20_000usize {
                s.write_all(b"x" as &'static [u8]).await.0.unwrap();
                writes += 1;
                if seen_at.is_none() && other.get() > 0 { seen_at = Some(i); }
            }
            let at = seen_at.expect("the other task never ran");
            assert!(at <= 256, "the other task waited {at} writes");
            writes
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(drain.join().unwrap(), sent);
    }

    /// Remote wakes, spawn_blocking and timers still get through while a task keeps the loop
    /// busy with at-once writes.
    fn remote_wakes_and_timers_with_a_busy_writer(lp: &mut EventLoop) {
        let (s, mut c) = tcp_pair_std();
        let drain = std::thread::spawn(move || { let mut v = Vec::new(); let _ = c.read_to_end(&mut v); v.len() });
        let handle = lp.handle();
        let n = lp.run_until_complete(async move {
            let done = Rc::new(Cell::new(false));
            let d = done.clone();
            let w = spawn(async move {
                let mut n = 0;
                while !d.get() { s.write_all(vec![1u8; 1000]).await.0.unwrap(); n += 1000; }
                n
            });
            let t0 = std::time::Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(t0.elapsed() < Duration::from_secs(2));
            let v = ringloop::spawn_blocking(|| 41 + 1).await.unwrap();
            assert_eq!(v, 42);
            let (tx, rx) = std::sync::mpsc::channel();
            let h2 = handle.clone();
            std::thread::spawn(move || {
                let r = h2.spawn(async { 5 });
                tx.send(r).unwrap();
            });
            let r = rx.recv().unwrap();
            assert_eq!(r.await.unwrap(), 5);
            done.set(true);
            w.await.unwrap()
        });
        assert_eq!(drain.join().unwrap(), n);
    }
}

/// Each peer's bytes sent and checked so far, and its stage: printed if the run seems stuck.
type Progress = Rc<RefCell<Vec<(usize, usize, &'static str)>>>;

fn pooled_loop(backend: ringloop::Backend, disable: &str) -> EventLoop {
    EventLoop::builder()
        .backend(backend)
        .disable_fast_paths(disable)
        .recv_pool(8, 64)
        .build()
        .unwrap()
}

/// 24 hostile peers (threads) against a pool of 8 buffers of 64 bytes: bursts of tiny writes,
/// big writes, pauses, some reset mid-stream, readers that hold buffers (exhausting the pool),
/// stall (the queue bound), or drop their stream with buffers queued. Every byte of every
/// clean stream is checked; the pool must be empty at the end.
fn hostile_pooled(backend: ringloop::Backend, disable: &str) {
    let mut lp = pooled_loop(backend, disable);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    const N: usize = 24;
    const TOTAL: usize = 300_000;
    let peers = std::thread::spawn(move || {
        let mut ts = Vec::new();
        for i in 0..N {
            ts.push(std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_nodelay(true).unwrap();
                c.write_all(&[i as u8]).unwrap();
                let mut rng = Rng(100 + i as u64);
                let mut off = 0;
                let reset_at = if i % 6 == 5 { Some(TOTAL / 3) } else { None };
                while off < TOTAL {
                    let len = match rng.below(4) {
                        0 => 1,
                        1 => 1 + rng.below(7) as usize,
                        2 => 1 + rng.below(200) as usize,
                        _ => 1 + rng.below(20_000) as usize,
                    }
                    .min(TOTAL - off);
                    if c.write_all(&pattern(off, len)).is_err() {
                        return; // the reader dropped its stream
                    }
                    off += len;
                    if rng.below(300) == 0 {
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    if reset_at.is_some_and(|r| off >= r) {
                        socket2::SockRef::from(&c)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        return;
                    }
                }
            }));
        }
        for t in ts {
            let _ = t.join();
        }
    });
    lp.run_until_complete(async move {
        let l = TcpListener::from_std(l).unwrap();
        let mut hs = Vec::new();
        let progress: Progress = Rc::new(RefCell::new(vec![(0, 0, "new"); N]));
        let pr = progress.clone();
        spawn(async move {
            sleep(Duration::from_secs(20)).await;
            eprintln!("STUCK? progress: {:?}", pr.borrow());
            eprintln!("stats: {:?}", ringloop::current_stats());
        })
        .detach_or_drop();
        for k in 0..N {
            // uring skips a connection reset before it is accepted (ECONNABORTED): not all come.
            let Ok(r) = timeout(Duration::from_secs(2), l.accept()).await else {
                break;
            };
            let (s, _) = r.unwrap();
            let progress = progress.clone();
            hs.push(spawn(async move {
                let first = s.recv_pooled().await.unwrap();
                let i = first[0] as usize;
                let set =
                    |got: usize, what: &'static str| progress.borrow_mut()[k] = (i, got, what);
                let mut rest = first[1..].to_vec();
                drop(first);
                let mut rng = Rng(999 + i as u64);
                let mut got = 0usize;
                // rest of first buffer
                assert_eq!(&rest[..], &pattern(0, rest.len())[..], "stream {i} at 0");
                got += rest.len();
                rest.clear();
                loop {
                    if i % 6 == 2 && got > TOTAL / 2 {
                        // Drop the stream with its receive armed and buffers queued.
                        sleep(Duration::from_millis(20)).await;
                        return (i, None);
                    }
                    set(got, "recv");
                    let r = s.recv_pooled().await;
                    set(got, "got");
                    let buf = match r {
                        Ok(b) => b,
                        Err(e) => {
                            assert_eq!(i % 6, 5, "stream {i}: {e:?} at {got}");
                            return (i, Some(got));
                        }
                    };
                    if buf.is_empty() {
                        break;
                    }
                    assert_eq!(
                        &buf[..],
                        &pattern(got, buf.len())[..],
                        "stream {i} at {got}"
                    );
                    got += buf.len();
                    match rng.below(10) {
                        0 => {
                            // hold for a while elsewhere: the pool runs dry, waiters wake later
                            spawn(async move {
                                sleep(Duration::from_millis(3)).await;
                                drop(buf)
                            })
                            .detach_or_drop();
                        }
                        1 => sleep(Duration::from_millis(2)).await, // stall: the queue fills
                        _ => {}
                    }
                }
                if i % 6 != 5 {
                    assert_eq!(got, TOTAL, "stream {i}");
                }
                set(got, "done");
                (i, Some(got))
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        sleep(Duration::from_millis(50)).await;
        let in_use = ringloop::current_stats().unwrap().pool_buffers_in_use;
        assert_eq!(in_use, 0, "buffers still in use");
    });
    peers.join().unwrap();
    lp.close();
}

#[test]
fn hostile_pooled_uring_multishot() {
    hostile_pooled(ringloop::Backend::Uring, "")
}
#[test]
fn hostile_pooled_uring_whole() {
    hostile_pooled(ringloop::Backend::Uring, "buf-inc")
}
#[test]
fn hostile_pooled_uring_no_bundle() {
    hostile_pooled(ringloop::Backend::Uring, "bundle")
}
#[test]
fn hostile_pooled_uring_oneshot() {
    hostile_pooled(ringloop::Backend::Uring, "multishot-recv")
}
#[test]
fn hostile_pooled_uring_free_list() {
    hostile_pooled(ringloop::Backend::Uring, "buf-ring")
}
#[test]
fn hostile_pooled_epoll() {
    hostile_pooled(ringloop::Backend::Epoll, "")
}
