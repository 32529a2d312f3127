//! Peer faults and shutdown faults, both backends.

mod common;

use std::future::{Future, poll_fn};
use std::io::Write;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{in_child, open_fds, run_in_child, test_path};
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::time::{sleep, timeout};
use ringloop::{EventLoop, spawn};

both_backends! {
    fn a_slow_peer_dribbling_under_short_timeouts_loses_nothing(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let dribbler = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_nodelay(true).unwrap();
                for i in 0..200u8 {
                    c.write_all(&[i]).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            let (s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut timeouts = 0;
            while got.len() < 200 {
                match timeout(Duration::from_micros(500), s.read(Vec::with_capacity(16))).await {
                    Ok((res, buf)) => {
                        assert!(res.unwrap() > 0, "unexpected EOF");
                        got.extend_from_slice(&buf);
                    }
                    Err(_) => timeouts += 1,
                }
            }
            dribbler.join().unwrap();
            assert_eq!(got, (0..200u8).collect::<Vec<_>>());
            assert!(timeouts > 0, "the reads never timed out: the peer was not slow enough");
            // A whole-message timeout that expires leaves the stream usable for the rest.
            let (res, _) = s.read(Vec::with_capacity(1)).await;
            assert_eq!(res.unwrap(), 0);
        });
    }

    fn a_connect_that_never_answers_times_out_cleanly(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "a_connect_that_never_answers_times_out_cleanly"), &[]);
            return;
        }
        // A listener that never accepts, with its accept queue filled: further SYNs are dropped,
        // so a connect gets no answer at all.
        let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        let before = open_fds();
        lp.run_until_complete(async move {
            let mut unanswered = 0;
            for _ in 0..8 {
                let start = Instant::now();
                match timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => fillers.push(s), // the queue still had room
                    Ok(Err(e)) => panic!("connect failed instead of hanging: {e}"),
                    Err(_) => {
                        assert!(start.elapsed() >= Duration::from_millis(300));
                        unanswered += 1;
                    }
                }
            }
            assert!(unanswered >= 5, "only {unanswered} connects went unanswered");
            drop(fillers);
            sleep(Duration::from_millis(20)).await;
        });
        assert_eq!(open_fds(), before, "timed-out connects leaked their sockets");
    }

    fn closing_a_loop_with_a_thousand_ops_in_flight(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "closing_a_loop_with_a_thousand_ops_in_flight"), &[]);
            return;
        }
        let before = open_fds();
        let mut inner = EventLoop::builder().backend(lp.backend()).build().unwrap();
        inner.run_until_complete(async {
            for _ in 0..500 {
                let (a, b) = UnixStream::pair().unwrap();
                spawn(async move {
                    let (res, _) = a.read(Vec::with_capacity(4096)).await;
                    res
                });
                spawn(async move {
                    let (res, _) = b.read(Vec::with_capacity(4096)).await;
                    res
                });
            }
            for _ in 0..100 {
                spawn(sleep(Duration::from_secs(3600)));
            }
            sleep(Duration::from_millis(20)).await;
        });
        let stats = inner.stats();
        assert!(stats.ops_submitted >= 1000, "{stats:?}");
        let start = Instant::now();
        inner.close();
        assert!(start.elapsed() < Duration::from_secs(10), "closing took {:?}", start.elapsed());
        assert_eq!(open_fds(), before, "closing the loop leaked fds");
    }

    fn a_task_panicking_while_holding_io_then_closing(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "a_task_panicking_while_holding_io_then_closing"), &[]);
            return;
        }
        let before = open_fds();
        let mut inner = EventLoop::builder().backend(lp.backend()).build().unwrap();
        let (peer_a, peer_b) = std::os::unix::net::UnixStream::pair().unwrap();
        inner.run_until_complete(async move {
            let a = UnixStream::from_std(peer_a).unwrap();
            let h = spawn(async move {
                let mut read = Box::pin(a.read(Vec::with_capacity(64)));
                let _ = poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx).is_ready())).await;
                panic!("a task panics with a read in flight");
            });
            let err = h.await.unwrap_err();
            assert!(err.is_panic());
            // Another task holding I/O is still in flight when the loop closes.
            let b = UnixStream::from_std(peer_b).unwrap();
            spawn(async move {
                let (res, _) = b.read(Vec::with_capacity(64)).await;
                res
            });
            sleep(Duration::from_millis(10)).await;
        });
        inner.close();
        assert_eq!(open_fds(), before, "fds leaked");
    }
}

/// A memory limit at ring setup: the child moves itself into a fresh memory cgroup (v1) with
/// 256 KiB of headroom, then asks for a ring far bigger than that. Ring memory is charged to the
/// memory cgroup (RLIMIT_MEMLOCK before Linux 5.12), so io_uring_setup fails with ENOMEM, and the
/// error must say what to raise.
#[test]
fn a_memory_limit_at_ring_setup_gives_an_error_that_says_what_to_do() {
    const CGROUP_ROOT: &str = "/sys/fs/cgroup/memory";
    if in_child() {
        let cg = std::env::var("CGROUP_DIR").unwrap();
        std::fs::write(format!("{cg}/cgroup.procs"), std::process::id().to_string()).unwrap();
        let usage: u64 = std::fs::read_to_string(format!("{cg}/memory.usage_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(
            format!("{cg}/memory.limit_in_bytes"),
            (usage + (256 << 10)).to_string(),
        )
        .unwrap();
        let err = EventLoop::builder()
            .backend(ringloop::Backend::Uring)
            .entries(32768)
            .build()
            .unwrap_err();
        println!("ring setup under the limit: {err}");
        assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory, "{err}");
        let msg = err.to_string();
        for hint in [
            "ENOMEM",
            "ulimit -l",
            "memory cgroup",
            "entries",
            "RINGLOOP_BACKEND=epoll",
        ] {
            assert!(
                msg.contains(hint),
                "the message does not mention {hint}: {msg}"
            );
        }
        // A small ring still fits, and epoll is unaffected.
        assert!(
            EventLoop::builder()
                .backend(ringloop::Backend::Epoll)
                .build()
                .is_ok()
        );
        return;
    }
    assert!(
        std::path::Path::new(CGROUP_ROOT)
            .join("memory.limit_in_bytes")
            .exists(),
        "this test needs the cgroup v1 memory controller at {CGROUP_ROOT}"
    );
    let cg = format!("{CGROUP_ROOT}/ringloop-test-{}", std::process::id());
    std::fs::create_dir(&cg).unwrap();
    let result = std::panic::catch_unwind(|| {
        run_in_child(
            "a_memory_limit_at_ring_setup_gives_an_error_that_says_what_to_do",
            &[("CGROUP_DIR", &cg)],
        )
    });
    // The child has exited, so the group is empty and can go.
    let _ = std::fs::remove_dir(&cg);
    let out = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(out.contains("ring setup under the limit"), "{out}");
}
