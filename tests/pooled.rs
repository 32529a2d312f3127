//! Pooled receives (`recv_pooled`) and multishot accept, on every path a loop can take: uring with
//! a multishot receive on a buffer ring, uring with one-shot buffer-select receives, uring with a
//! free-list pool (readiness, then `recv`), and epoll; the multishot path with bundled receives
//! (several buffers per completion, Linux 6.10+) and without. The fallbacks are forced through the
//! builder's switch, so the code for older kernels runs here too.

mod common;

use common::Rng;

use std::future::{Future, poll_fn};
use std::io::{Read, Write};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::time::{sleep, timeout};
use ringloop::{Backend, EventLoop, spawn, yield_now};

/// Builds a loop for one path; `pool` overrides the receive pool.
fn path_loop(backend: Backend, disable: &str, pool: Option<(u16, u32)>) -> EventLoop {
    let mut b = EventLoop::builder()
        .backend(backend)
        .disable_fast_paths(disable);
    if let Some((count, size)) = pool {
        b = b.recv_pool(count, size);
    }
    b.build()
        .unwrap_or_else(|e| panic!("the {backend} backend is required here but failed: {e}"))
}

/// Makes one test per path from each `fn NAME(mk: &dyn Fn(Option<(u16, u32)>) -> EventLoop)`.
macro_rules! every_path {
    ($($(#[$meta:meta])* fn $name:ident($mk:ident) $body:block)*) => {
        $(
            $(#[$meta])*
            fn $name($mk: &dyn Fn(Option<(u16, u32)>) -> EventLoop) $body
        )*
        mod uring_multishot {
            $( #[test] fn $name() {
                super::$name(&|p| super::path_loop(ringloop::Backend::Uring, "", p))
            } )*
        }
        mod uring_whole_buffers {
            $( #[test] fn $name() {
                super::$name(&|p| super::path_loop(ringloop::Backend::Uring, "buf-inc", p))
            } )*
        }
        mod uring_multishot_no_bundle {
            $( #[test] fn $name() {
                super::$name(&|p| super::path_loop(ringloop::Backend::Uring, "bundle", p))
            } )*
        }
        mod uring_oneshot_select {
            $( #[test] fn $name() {
                super::$name(&|p| super::path_loop(ringloop::Backend::Uring, "multishot-recv", p))
            } )*
        }
        mod uring_free_list {
            $( #[test] fn $name() {
                super::$name(&|p| super::path_loop(ringloop::Backend::Uring, "buf-ring", p))
            } )*
        }
        mod epoll {
            $( #[test] fn $name() {
                super::$name(&|p| super::path_loop(ringloop::Backend::Epoll, "", p))
            } )*
        }
    };
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    common::pattern(offset, len)
}

use common::tcp_pair;

/// Sends `total` pattern bytes in random chunks with pauses, then shuts the write side.
fn send_pattern(w: impl Into<Rc<TcpStream>>, total: usize, seed: u64) -> ringloop::JoinHandle<()> {
    let w: Rc<TcpStream> = w.into();
    spawn(async move {
        let mut rng = Rng(seed);
        let mut off = 0;
        while off < total {
            let len = (1 + rng.below(20_000) as usize).min(total - off);
            w.write_all(pattern(off, len)).await.0.unwrap();
            off += len;
            if rng.below(4) == 0 {
                sleep(Duration::from_millis(1)).await;
            }
        }
        w.shutdown(std::net::Shutdown::Write).unwrap();
    })
}

every_path! {
    fn end_of_stream_is_an_empty_buffer(mk) {
        mk(None).run_until_complete(async {
            let (client, server) = tcp_pair().await;
            client.write_all(b"last words" as &'static [u8]).await.0.unwrap();
            drop(client);
            let mut got = Vec::new();
            loop {
                let buf = server.recv_pooled().await.unwrap();
                if buf.is_empty() {
                    break;
                }
                assert!(buf.is_pooled());
                got.extend_from_slice(&buf);
            }
            assert_eq!(got, b"last words");
            // End of stream stays end of stream.
            assert!(server.recv_pooled().await.unwrap().is_empty());
        });
    }

    fn sixteen_mib_arrive_in_order_and_echo_back_without_a_copy(mk) {
        let mut lp = mk(None);
        lp.run_until_complete(async {
            const TOTAL: usize = 16 << 20;
            let (client, server) = tcp_pair().await;
            let client = Rc::new(client);
            let sender = send_pattern(client.clone(), TOTAL, 7);
            // The server echoes what it receives, writing each pooled buffer straight back.
            let echo = spawn(async move {
                loop {
                    let buf = server.recv_pooled().await.unwrap();
                    if buf.is_empty() {
                        return;
                    }
                    server.write_all(buf).await.0.unwrap();
                }
            });
            let mut at = 0;
            while at < TOTAL {
                let (res, buf) = client.read(Vec::with_capacity(64 * 1024)).await;
                let n = res.unwrap();
                assert!(n > 0, "the echo ended at {at} of {TOTAL}");
                assert_eq!(buf, pattern(at, n), "bytes {at}..{} differ", at + n);
                at += n;
            }
            sender.await.unwrap();
            echo.await.unwrap();
        });
        assert_eq!(lp.stats().pool_buffers_in_use, 0, "every buffer came back");
    }

    /// `recv_pooled_many` on the echo side, its calls dropped at random points (a timeout, or
    /// polled once and dropped), each buffer written straight back; the client checks 16 MiB
    /// come back in order. The client reads pooled too, so every byte the kernel writes lands in
    /// the pool's mapping (valgrind knows nothing of io_uring's writes into other memory). On the
    /// multishot path with Linux 6.10+ bundles must have happened.
    fn bundled_receives_echo_sixteen_mib_through_random_drops(mk) {
        let mut lp = mk(None);
        lp.run_until_complete(async {
            const TOTAL: usize = 16 << 20;
            let (client, server) = tcp_pair().await;
            let client = Rc::new(client);
            let sender = send_pattern(client.clone(), TOTAL, 11);
            let echo = spawn(async move {
                let mut rng = Rng(0x5eed);
                let mut bufs = Vec::new();
                let mut calls = 0u64;
                loop {
                    let got = match rng.below(8) {
                        0 => {
                            let mut fut = pin!(server.recv_pooled_many(&mut bufs));
                            match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                                Poll::Ready(res) => Some(res.unwrap()),
                                Poll::Pending => None,
                            }
                        }
                        1 => {
                            let limit = Duration::from_micros(rng.below(200));
                            timeout(limit, server.recv_pooled_many(&mut bufs))
                                .await
                                .ok()
                                .map(Result::unwrap)
                        }
                        _ => Some(server.recv_pooled_many(&mut bufs).await.unwrap()),
                    };
                    match got {
                        None => {
                            assert!(bufs.is_empty(), "a dropped call handed buffers over");
                            yield_now().await;
                        }
                        Some(0) => return calls,
                        Some(n) => {
                            calls += 1;
                            assert_eq!(bufs.iter().map(|b| b.len()).sum::<usize>(), n);
                            for buf in bufs.drain(..) {
                                assert!(!buf.is_empty(), "an empty buffer in the middle");
                                server.write_all(buf).await.0.unwrap();
                            }
                        }
                    }
                }
            });
            let mut at = 0;
            while at < TOTAL {
                let buf = client.recv_pooled().await.unwrap();
                assert!(!buf.is_empty(), "the echo ended at {at} of {TOTAL}");
                assert!(buf[..] == pattern(at, buf.len())[..], "bytes from {at} differ");
                at += buf.len();
            }
            sender.await.unwrap();
            assert!(echo.await.unwrap() > 0);
        });
        assert_eq!(lp.stats().pool_buffers_in_use, 0, "every buffer came back");
    }

    fn unix_streams_receive_pooled_too(mk) {
        mk(None).run_until_complete(async {
            let (a, b) = UnixStream::pair().unwrap();
            a.write_all(b"over a unix socket" as &'static [u8]).await.0.unwrap();
            drop(a);
            let buf = b.recv_pooled().await.unwrap();
            assert_eq!(&buf[..], b"over a unix socket");
            assert!(b.recv_pooled().await.unwrap().is_empty());
        });
    }

    /// Pooled receives dropped by timeouts at random points, mixed with owned reads (some also
    /// dropped): every byte arrives once, in order.
    fn random_drops_and_mixed_reads_lose_nothing(mk) {
        mk(Some((64, 1024))).run_until_complete(async {
            const TOTAL: usize = 2 << 20;
            for seed in 1..=3u64 {
                let (client, server) = tcp_pair().await;
                let sender = send_pattern(client, TOTAL, seed);
                let mut rng = Rng(seed * 7919);
                let mut got = 0;
                loop {
                    let limit = Duration::from_micros(rng.below(300));
                    let n = match rng.below(4) {
                        0 => match timeout(limit, server.read(Vec::with_capacity(
                            1 + rng.below(3000) as usize,
                        )))
                        .await
                        {
                            Ok((res, buf)) => {
                                assert_eq!(buf, pattern(got, buf.len()), "owned read at {got}");
                                Some(res.unwrap())
                            }
                            Err(_) => None,
                        },
                        1 => {
                            // Started, polled once, dropped unseen.
                            let mut fut = pin!(server.recv_pooled());
                            match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                                Poll::Ready(res) => {
                                    let buf = res.unwrap();
                                    assert_eq!(&buf[..], &pattern(got, buf.len())[..]);
                                    Some(buf.len())
                                }
                                Poll::Pending => None,
                            }
                        }
                        _ => match timeout(limit, server.recv_pooled()).await {
                            Ok(res) => {
                                let buf = res.unwrap();
                                assert_eq!(&buf[..], &pattern(got, buf.len())[..], "at {got}");
                                Some(buf.len())
                            }
                            Err(_) => None,
                        },
                    };
                    match n {
                        Some(0) => break,
                        Some(n) => got += n,
                        None => yield_now().await,
                    }
                }
                assert_eq!(got, TOTAL, "seed {seed}");
                sender.await.unwrap();
            }
        });
    }

    /// 16 readers share 8 buffers and each holds its buffer a while: all finish, and they had to
    /// wait for buffers on the way.
    fn twice_as_many_readers_as_buffers_all_finish(mk) {
        let mut lp = mk(Some((8, 512)));
        lp.run_until_complete(async {
            const EACH: usize = 64 * 1024;
            let mut tasks = Vec::new();
            for i in 0..16u64 {
                let (client, server) = tcp_pair().await;
                let sender = send_pattern(client, EACH, i + 1);
                tasks.push(spawn(async move {
                    let mut got = 0;
                    loop {
                        let buf = server.recv_pooled().await.unwrap();
                        if buf.is_empty() {
                            break;
                        }
                        assert_eq!(&buf[..], &pattern(got, buf.len())[..]);
                        got += buf.len();
                        sleep(Duration::from_micros(200)).await; // hold it
                    }
                    sender.await.unwrap();
                    got
                }));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap(), EACH);
            }
        });
        let stats = lp.stats();
        assert!(stats.pool_empty_waits > 0, "the pool never ran dry: {stats:?}");
        assert_eq!(stats.pool_buffers_in_use, 0);
    }

    /// A stream nobody reads while its peer sends a lot holds a bounded part of the pool; the
    /// bytes all arrive, in order, once it reads. (The bound is 16 deliveries plus what the
    /// kernel delivers in the batch during which the receive is stopped, up to about 64.)
    fn an_unread_stream_holds_a_bounded_part_of_the_pool(mk) {
        let mut lp = mk(Some((1024, 1024)));
        lp.run_until_complete(async {
            const TOTAL: usize = 1 << 20;
            let (client, server) = tcp_pair().await;
            // Arm the receive, then stop reading.
            client.write_all(b"x" as &'static [u8]).await.0.unwrap();
            assert_eq!(&server.recv_pooled().await.unwrap()[..], b"x");
            let sender = spawn(async move {
                client.write_all(pattern(0, TOTAL)).await.0.unwrap();
                drop(client);
            });
            sleep(Duration::from_millis(100)).await;
            let held = ringloop::current_stats().unwrap().pool_buffers_in_use;
            assert!(held <= 96, "an unread stream holds {held} of 1024 buffers");
            let mut got = 0;
            loop {
                let buf = server.recv_pooled().await.unwrap();
                if buf.is_empty() {
                    break;
                }
                assert_eq!(&buf[..], &pattern(got, buf.len())[..], "at {got}");
                got += buf.len();
            }
            assert_eq!(got, TOTAL);
            sender.await.unwrap();
        });
    }

    /// A buffer outlives its stream and its loop, and its bytes stay readable.
    fn a_buffer_outlives_its_stream_and_its_loop(mk) {
        let mut lp = mk(None);
        let buf = lp.run_until_complete(async {
            let (client, server) = tcp_pair().await;
            client.write_all(b"still here" as &'static [u8]).await.0.unwrap();
            server.recv_pooled().await.unwrap()
        });
        assert_eq!(lp.stats().pool_buffers_in_use, 1);
        lp.close();
        assert_eq!(&buf[..], b"still here");
        drop(buf);
    }

    /// Dropping a stream whose receive is armed closes it: the peer sees end of stream.
    fn a_stream_dropped_with_its_receive_armed_closes(mk) {
        mk(None).run_until_complete(async {
            let (client, server) = tcp_pair().await;
            let _ = timeout(Duration::from_millis(20), server.recv_pooled()).await;
            drop(server);
            let (res, _) = timeout(Duration::from_secs(5), client.read(Vec::with_capacity(16)))
                .await
                .expect("the dropped stream was never closed");
            assert_eq!(res.unwrap(), 0);
        });
    }

    /// `into_std` on a stream whose receive is armed, and on a listener whose accept is armed,
    /// works: the op is cancelled first, and later bytes and connections go to the std socket.
    fn into_std_after_pooled_receives_and_accepts(mk) {
        mk(None).run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            client.write_all(b"pooled").unwrap();
            assert_eq!(&server.recv_pooled().await.unwrap()[..], b"pooled");
            let mut server = server.into_std().unwrap();
            client.write_all(b"std").unwrap();
            let mut got = [0u8; 3];
            server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"std");
            let listener = listener.into_std().unwrap();
            let _second = std::net::TcpStream::connect(addr).unwrap();
            listener.accept().unwrap();
        });
    }

    fn stats_count_buffers_in_use(mk) {
        mk(None).run_until_complete(async {
            let (client, server) = tcp_pair().await;
            let mut held = Vec::new();
            for i in 0..3u8 {
                client.write_all(vec![i; 10]).await.0.unwrap();
                held.push(server.recv_pooled().await.unwrap());
            }
            // On an incremental ring (Linux 6.12+) the three parts follow one another in one
            // buffer; elsewhere each took a buffer of its own. The count is of buffers.
            let buffers = 1 + held
                .windows(2)
                .filter(|w| w[0].as_ptr().wrapping_add(10) != w[1].as_ptr())
                .count() as u64;
            assert_eq!(ringloop::current_stats().unwrap().pool_buffers_in_use, buffers);
            held.clear();
            assert_eq!(ringloop::current_stats().unwrap().pool_buffers_in_use, 0);
        });
    }
}

/// Which path ran is visible: the free-list path makes `recv` syscalls itself, the ring paths
/// none, and only the multishot path re-arms.
#[test]
fn each_path_is_the_one_asked_for() {
    if common::faults_on() {
        return; // counts ops per path: injected faults add some by design
    }
    let run = |lp: &mut EventLoop| {
        lp.run_until_complete(async {
            let (client, server) = tcp_pair().await;
            let before = ringloop::current_stats().unwrap();
            for i in 0..20u8 {
                client.write_all(vec![i; 100]).await.0.unwrap();
                let buf = server.recv_pooled().await.unwrap();
                assert_eq!(&buf[..], &[i; 100][..]);
            }
            let after = ringloop::current_stats().unwrap();
            (
                after.io_syscalls - before.io_syscalls,
                after.ops_submitted - before.ops_submitted,
            )
        })
    };
    let (sys_multi, ops_multi) = run(&mut path_loop(Backend::Uring, "", None));
    let (sys_one, ops_one) = run(&mut path_loop(Backend::Uring, "multishot-recv", None));
    let (sys_list, _) = run(&mut path_loop(Backend::Uring, "buf-ring", None));
    // 20 sends inline at most; one armed receive on the multishot path, one per read on the
    // one-shot path; receives by the loop on the free-list path.
    assert!(
        ops_multi < ops_one,
        "multishot {ops_multi} ops, one-shot {ops_one}"
    );
    assert!(ops_one >= 20, "one-shot select: {ops_one} ops for 20 reads");
    assert!(
        sys_list >= sys_multi + 20,
        "free list {sys_list} syscalls, ring {sys_multi}"
    );
    assert!(
        sys_one <= sys_multi + 2,
        "one-shot {sys_one}, multishot {sys_multi}"
    );
}

/// Bundles happen where they should and nowhere else: a stream with a few MiB waiting gets
/// several buffers per completion on the multishot path (Linux 6.10+), and `recv_pooled_many`
/// hands a whole bundle over in one call; with `bundle` switched off, or on epoll, never.
#[test]
fn bundled_receives_fill_several_buffers_per_completion() {
    let run = |lp: &mut EventLoop| {
        lp.run_until_complete(async {
            const TOTAL: usize = 4 << 20;
            let (client, server) = tcp_pair().await;
            // Arm the receive, then let a few MiB pile up before reading.
            client.write_all(vec![1u8; 10]).await.0.unwrap();
            assert_eq!(server.recv_pooled().await.unwrap().len(), 10);
            let sender = send_pattern(client, TOTAL, 3);
            sleep(Duration::from_millis(20)).await;
            let before = ringloop::current_stats().unwrap();
            let (mut bufs, mut at, mut most) = (Vec::new(), 0, 0);
            loop {
                let n = server.recv_pooled_many(&mut bufs).await.unwrap();
                if n == 0 {
                    break;
                }
                most = most.max(bufs.len());
                for b in bufs.drain(..) {
                    assert!(b[..] == pattern(at, b.len())[..], "bytes from {at} differ");
                    at += b.len();
                }
            }
            assert_eq!(at, TOTAL);
            sender.await.unwrap();
            let after = ringloop::current_stats().unwrap();
            (after.recv_bundles - before.recv_bundles, most)
        })
    };
    let (bundles, most) = run(&mut path_loop(Backend::Uring, "", None));
    if common::kernel_at_least(6, 10) && !common::faults_on() {
        assert!(bundles > 0, "no bundled receive on Linux 6.10+");
        assert!(
            most > 1,
            "recv_pooled_many never handed over more than one buffer"
        );
    }
    let (off, _) = run(&mut path_loop(Backend::Uring, "bundle", None));
    assert_eq!(off, 0, "a bundle with bundles switched off");
    let (epoll, _) = run(&mut path_loop(Backend::Epoll, "", None));
    assert_eq!(epoll, 0, "a bundle on epoll");
}

#[test]
fn a_bad_pool_setting_or_fast_path_name_is_an_error_from_build() {
    let e = EventLoop::builder()
        .recv_pool(1000, 4096)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = EventLoop::builder().recv_pool(1024, 0).build().unwrap_err();
    assert!(e.to_string().contains("size"), "{e}");
    let e = EventLoop::builder()
        .disable_fast_paths("multishot-recv,warp-drive")
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("warp-drive") && e.to_string().contains("buf-ring"),
        "{e}"
    );
}

/// Closing a loop while streams have receives armed (and buffers queued) leaks no fd; run in a
/// child so other tests' fds do not disturb the count.
#[test]
fn closing_a_loop_with_receives_armed_leaks_no_fd() {
    if !common::in_child() {
        let out = common::run_in_child("closing_a_loop_with_receives_armed_leaks_no_fd", &[]);
        assert!(out.contains("fds ok"), "{out}");
        return;
    }
    for (backend, disable) in [
        (Backend::Uring, ""),
        (Backend::Uring, "multishot-recv"),
        (Backend::Uring, "buf-ring"),
        (Backend::Epoll, ""),
    ] {
        let before = common::open_fds();
        let mut peers = Vec::new();
        let mut lp = path_loop(backend, disable, None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        lp.run_until_complete(async {
            for i in 0..50 {
                let mut peer = std::net::TcpStream::connect(addr).unwrap();
                let (s, _) = listener.accept().unwrap();
                let s = TcpStream::from_std(s).unwrap();
                if i % 2 == 0 {
                    peer.write_all(b"queued").unwrap();
                }
                peers.push(peer);
                spawn(async move {
                    let _first = s.recv_pooled().await;
                    // Wait forever with the receive armed (and, for half, a buffer queued).
                    let _ = s.recv_pooled().await;
                    std::future::pending::<()>().await;
                });
            }
            sleep(Duration::from_millis(50)).await;
        });
        lp.close();
        drop(listener);
        for mut p in peers {
            // Every server side was closed: the peer reads end of stream.
            p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 16];
            assert_eq!(p.read(&mut b).unwrap(), 0, "{backend} {disable:?}");
        }
        assert_eq!(
            common::open_fds(),
            before,
            "{backend} {disable:?} leaked fds"
        );
    }
    println!("fds ok");
}

/// A loop for the accept paths: uring with multishot accept, uring with one accept op each, epoll.
fn accept_paths() -> [(&'static str, Backend, &'static str); 3] {
    [
        ("uring multishot", Backend::Uring, ""),
        ("uring one-shot", Backend::Uring, "multishot-accept"),
        ("epoll", Backend::Epoll, ""),
    ]
}

/// 10,000 connections through one listener, each served (one byte read, then closed); at most 64
/// are open at a time, so the fd limit is no concern. Every accept path.
#[test]
fn ten_thousand_connections_are_accepted() {
    const N: usize = 10_000;
    for (label, backend, disable) in accept_paths() {
        let mut lp = path_loop(backend, disable, None);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = std::thread::spawn(move || {
            let mut open = std::collections::VecDeque::new();
            for i in 0..N {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(&[i as u8]).unwrap();
                open.push_back(c);
                if open.len() == 64 {
                    // The server read the byte and closed: end of stream.
                    let mut c = open.pop_front().unwrap();
                    assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0);
                }
            }
            for mut c in open {
                assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0);
            }
        });
        let stats = lp.run_until_complete(async {
            for _ in 0..N {
                let (s, peer) = listener.accept().await.unwrap();
                assert!(peer.ip().is_loopback());
                spawn(async move {
                    let buf = s.recv_pooled().await.unwrap();
                    assert_eq!(buf.len(), 1);
                });
            }
            sleep(Duration::from_millis(10)).await;
            ringloop::current_stats().unwrap()
        });
        clients.join().unwrap();
        // One receive op per connection; one accept op each too, unless the accept stays armed.
        let ops = stats.ops_submitted;
        // Injected faults resubmit ops by design: the counts hold only without them.
        match if common::faults_on() { "" } else { label } {
            "uring multishot" => assert!(ops < (N + N / 10) as u64, "{label}: {ops} ops"),
            "uring one-shot" => assert!(ops >= (2 * N - N / 10) as u64, "{label}: {ops} ops"),
            _ => {}
        }
        lp.close();
    }
}

/// A listener dropped while connections wait in its queue closes them (the peers see the end)
/// and leaks no fd. Runs in a child so other tests' fds do not disturb the count.
#[test]
fn a_listener_dropped_with_connections_queued_leaks_no_fd() {
    if !common::in_child() {
        let out = common::run_in_child(
            "a_listener_dropped_with_connections_queued_leaks_no_fd",
            &[],
        );
        assert!(out.contains("fds ok"), "{out}");
        return;
    }
    for (label, backend, disable) in accept_paths() {
        let before = common::open_fds();
        let mut lp = path_loop(backend, disable, None);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        lp.run_until_complete(async {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            let (first, _) = listener.accept().await.unwrap();
            for _ in 0..20 {
                clients.push(std::net::TcpStream::connect(addr).unwrap());
            }
            // Let the armed multishot accept queue them.
            sleep(Duration::from_millis(50)).await;
            drop(first);
            drop(listener);
            sleep(Duration::from_millis(50)).await;
        });
        for c in &mut clients {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 1];
            match c.read(&mut b) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("{label}: a queued connection was not closed: {other:?}"),
            }
        }
        drop(clients);
        lp.close();
        assert_eq!(common::open_fds(), before, "{label} leaked fds");
    }
    println!("fds ok");
}

/// The fallbacks of the ring-level fast paths run too: the ring's fd not registered (every enter
/// passes the fd) and the ring set up without SUBMIT_ALL and NO_SQARRAY. An echo exchange and a
/// pooled transfer must work the same way.
#[test]
fn the_ring_works_without_its_registered_fd_and_setup_flags() {
    for disable in [
        "registered-ring",
        "setup-flags",
        "registered-ring,setup-flags",
    ] {
        let mut lp = path_loop(Backend::Uring, disable, None);
        let stats = lp.run_until_complete(async {
            let (client, server) = tcp_pair().await;
            let echo = spawn(async move {
                loop {
                    let buf = server.recv_pooled().await.unwrap();
                    if buf.is_empty() {
                        return;
                    }
                    server.write_all(buf).await.0.unwrap();
                }
            });
            for i in 0..200usize {
                let msg = pattern(i * 100, 100);
                client.write_all(msg.clone()).await.0.unwrap();
                let mut got = Vec::new();
                while got.len() < msg.len() {
                    let (res, buf) = client.read(Vec::with_capacity(4096)).await;
                    assert!(res.unwrap() > 0);
                    got.extend_from_slice(&buf);
                }
                assert_eq!(got, msg, "{disable}");
            }
            drop(client);
            echo.await.unwrap();
            ringloop::current_stats().unwrap()
        });
        assert!(stats.uring_enters > 0, "{disable}: no enter at all?");
    }
}
