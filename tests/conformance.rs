//! Behaviours users rely on that broke quietly, each test named after what broke, on both
//! backends:
//!
//! - readiness: `AsyncFd` after a transient error or urgent data waits again once drained (it
//!   was ready at once forever on epoll), and a task looping on ready-at-once waits lets the
//!   others run (the cooperative budget);
//! - timers: an elapsed sleep is ready at its next poll, as tokio's, and a `sleep(0)` loop
//!   still lets tasks, timers and I/O run;
//! - UDP: a datagram longer than the buffer is reported, not cut silently;
//! - `PollIo::poll_shutdown`: a failure is reported again, and a dropped write still in the
//!   kernel goes before the end of stream;
//! - `compat::axum::serve`: accept errors are sorted (a hopeless one ends the server; a full fd
//!   table backs off, is counted, and the server recovers).

mod common;

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ringloop::io::AsyncFd;
use ringloop::time::{sleep, sleep_until, timeout};
use ringloop::{spawn, yield_now};

/// Polls `fut` once and says what it returned.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// What a readiness loop saw: polls made, calls that failed with the expected error, bytes
/// read, and whether the last wait waited (timed out) rather than returned at once.
#[derive(Debug, Default)]
struct Spin {
    polls: u32,
    errors: u32,
    bytes: Vec<u8>,
    waited: bool,
}

/// Waits for `fd` to be readable and reads until `WouldBlock`, over and over, until a wait
/// lasts 200 ms (the fd is drained and waiting) or 10,000 waits have gone by (a spin).
async fn read_until_waiting<T: std::os::fd::AsFd>(
    fd: &AsyncFd<T>,
    mut read: impl FnMut(&T, &mut [u8]) -> io::Result<usize>,
    expected_error: io::ErrorKind,
) -> Spin {
    let mut spin = Spin::default();
    while spin.polls < 10_000 {
        spin.polls += 1;
        let Ok(guard) = timeout(Duration::from_millis(200), fd.readable()).await else {
            spin.waited = true;
            break;
        };
        let mut guard = guard.expect("readable");
        let mut buf = [0u8; 64];
        match guard.try_io(|fd| read(fd.get_ref(), &mut buf)) {
            Ok(Ok(n)) => spin.bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == expected_error => spin.errors += 1,
            Ok(Err(e)) => panic!("unexpected error: {e}"),
            Err(_would_block) => {}
        }
    }
    spin
}

mod readiness {
    use super::*;

    both_backends! {
        /// On epoll, `EPOLLERR` was taken for a hang-up: once a connected UDP socket got the
        /// ICMP error of a closed port, `clear_ready` did nothing and `readable()` was ready at
        /// once forever (millions of polls a second, and with no budget the loop starved). The
        /// error is transient: a call reports it, and once a call says `WouldBlock` the socket
        /// waits again. uring was right already.
        fn an_async_fd_after_an_icmp_error_waits_again_once_drained(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let dead = closed.local_addr().unwrap();
                drop(closed);
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.connect(dead).unwrap();
                sock.set_nonblocking(true).unwrap();
                let fd = AsyncFd::new(sock).unwrap();
                fd.get_ref().send(b"ping").unwrap();
                let spin = read_until_waiting(
                    &fd,
                    |s, buf| s.recv(buf),
                    io::ErrorKind::ConnectionRefused,
                )
                .await;
                assert!(
                    spin.waited,
                    "readable() stayed ready after the error was read and the socket drained \
                     ({} polls)",
                    spin.polls
                );
                assert_eq!(spin.errors, 1, "the ICMP error is reported once: {spin:?}");
                let polls = spin.polls;
                assert!(polls <= 10 || common::faults_on(), "{polls} polls for one error");
            });
        }

        /// With `IP_RECVERR` the ICMP error also waits on the socket's error queue, which only
        /// `recvmsg(MSG_ERRQUEUE)` drains, so `poll(2)` keeps saying `POLLERR`: a plain reader
        /// that saw `WouldBlock` must still wait again (as on uring), not spin.
        fn an_async_fd_with_an_unread_error_queue_waits_again_once_drained(lp: &mut EventLoop) {
            use std::os::fd::AsRawFd;
            lp.run_until_complete(async {
                let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let dead = closed.local_addr().unwrap();
                drop(closed);
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let on: libc::c_int = 1;
                // SAFETY: `on` is a live c_int of the size given.
                let r = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::IPPROTO_IP,
                        libc::IP_RECVERR,
                        (&on as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0, "IP_RECVERR: {}", io::Error::last_os_error());
                sock.connect(dead).unwrap();
                sock.set_nonblocking(true).unwrap();
                let fd = AsyncFd::new(sock).unwrap();
                fd.get_ref().send(b"ping").unwrap();
                let spin = read_until_waiting(
                    &fd,
                    |s, buf| s.recv(buf),
                    io::ErrorKind::ConnectionRefused,
                )
                .await;
                assert!(
                    spin.waited,
                    "readable() stayed ready after the socket said WouldBlock ({} polls)",
                    spin.polls
                );
                let polls = spin.polls;
                assert!(polls <= 10 || common::faults_on(), "{polls} polls for one error");
            });
        }

        /// The same for urgent data: `EPOLLPRI` set a flag for good, so after the urgent byte
        /// `clear_ready` never cleared the read direction and the socket spun the same way.
        fn an_async_fd_after_urgent_data_waits_again_once_drained(lp: &mut EventLoop) {
            use std::os::fd::AsRawFd;
            lp.run_until_complete(async {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                peer.set_nodelay(true).unwrap();
                let (ours, _) = listener.accept().unwrap();
                ours.set_nonblocking(true).unwrap();
                let fd = AsyncFd::new(ours).unwrap();
                (&peer).write_all(b"ab").unwrap();
                // SAFETY: sends one byte from a live buffer.
                let n = unsafe {
                    libc::send(peer.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB)
                };
                assert_eq!(n, 1, "send(MSG_OOB): {}", io::Error::last_os_error());
                (&peer).write_all(b"cd").unwrap();
                let spin = read_until_waiting(
                    &fd,
                    |mut s, buf| s.read(buf),
                    io::ErrorKind::Other,
                )
                .await;
                assert!(
                    spin.waited,
                    "readable() stayed ready after urgent data was read past and the socket \
                     drained ({} polls)",
                    spin.polls
                );
                assert_eq!(spin.bytes, b"abcd", "the urgent byte is out of band");
                let polls = spin.polls;
                assert!(polls <= 20 || common::faults_on(), "{polls} polls for four bytes");
                drop(peer);
            });
        }

        /// A readiness wait that was ready at once spent no cooperative budget: a task looping
        /// on `readable()` of a descriptor it never drains never returned `Pending`, and no
        /// other task ran. It spends budget now, as every op does, and yields when it is spent.
        fn a_task_looping_on_ready_waits_lets_other_tasks_run(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                // SAFETY: eventfd takes no pointers; the result is checked by `owned`.
                let raw = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                assert!(raw >= 0, "eventfd: {}", io::Error::last_os_error());
                // SAFETY: `raw` is a new descriptor nobody else owns.
                let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                let fd = AsyncFd::new(file).unwrap();
                // Readable (the counter is 1) and writable, for good: nobody reads it. The first
                // waits arm the readiness (they may return `Pending` once).
                let _ready = fd.readable().await.unwrap();
                let _ready = fd.writable().await.unwrap();
                for write in [false, true] {
                    let ran = Rc::new(Cell::new(false));
                    let r = ran.clone();
                    spawn(async move { r.set(true) });
                    let mut turns = 0;
                    while !ran.get() && turns < 100_000 {
                        if write {
                            let _ready = fd.writable().await.unwrap();
                        } else {
                            let _ready = fd.readable().await.unwrap();
                        }
                        turns += 1;
                    }
                    assert!(
                        ran.get(),
                        "a task looping on ready-at-once waits starved the loop (writable: {write})"
                    );
                }
            });
        }
    }
}

mod timers {
    use super::*;

    both_backends! {
        /// An elapsed `Sleep` always yielded once, so a sleep reset to the past was not ready
        /// at its next poll (tokio's `reset_past_sleep_before_fire` shape). It is ready at once
        /// now while the task has budget, as tokio's is.
        fn a_sleep_reset_to_the_past_is_ready_at_its_next_poll(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let mut s = sleep(Duration::from_secs(10));
                assert!(poll_once(&mut s).await.is_pending());
                s.reset(Instant::now() - Duration::from_millis(10));
                assert!(
                    poll_once(&mut s).await.is_ready(),
                    "a sleep reset to the past was not ready at its next poll"
                );
                // And after it fired once, reset to the past again.
                s.reset(Instant::now());
                assert!(poll_once(&mut s).await.is_ready(), "reset after firing");
                // Elapsed at the first poll: ready at once too.
                let mut zero = sleep(Duration::ZERO);
                assert!(poll_once(&mut zero).await.is_ready(), "sleep(0) at its first poll");
                let mut past = sleep_until(Instant::now() - Duration::from_millis(1));
                assert!(poll_once(&mut past).await.is_ready(), "a past deadline");
                // tokio: a zero timeout around a pending future has elapsed at its first poll.
                let mut zero_timeout = timeout(Duration::ZERO, std::future::pending::<()>());
                assert!(
                    matches!(poll_once(&mut zero_timeout).await, Poll::Ready(Err(_))),
                    "timeout(0, pending()) at its first poll"
                );
            });
        }

        /// With elapsed sleeps ready at once, a task looping on `sleep(Duration::ZERO)` must
        /// still let ready tasks, due timers and I/O run: the budget makes it yield.
        fn a_sleep_zero_loop_lets_tasks_timers_and_io_run(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let done = Rc::new(Cell::new(0u32));
                let d = done.clone();
                spawn(async move { d.set(d.get() + 1) });
                let d = done.clone();
                spawn(async move {
                    sleep(Duration::from_millis(5)).await;
                    d.set(d.get() + 1);
                });
                let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                let a = ringloop::net::UnixStream::from_std(a).unwrap();
                let d = done.clone();
                spawn(async move {
                    let (res, _) = a.read(Vec::with_capacity(8)).await;
                    assert_eq!(res.unwrap(), 1);
                    d.set(d.get() + 1);
                });
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    (&b).write_all(b"x").unwrap();
                    b
                });
                let deadline = Instant::now() + Duration::from_secs(10);
                while done.get() < 3 && Instant::now() < deadline {
                    sleep(Duration::ZERO).await;
                }
                assert_eq!(done.get(), 3, "a sleep(0) loop starved tasks, timers or I/O");
                let _b = writer.join().unwrap();
            });
        }
    }
}

mod udp {
    use super::*;
    use ringloop::net::{TruncatedDatagram, UdpSocket};

    both_backends! {
        /// An error is no hang-up, but it still wakes: a receive already waiting when the ICMP
        /// error of a closed port arrives reports it, and the socket then waits as before.
        fn a_waiting_recv_sees_the_icmp_error_of_a_closed_port(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let dead = closed.local_addr().unwrap();
                drop(closed);
                let sock = Rc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                sock.connect(dead).unwrap();
                let s = sock.clone();
                let waiting = spawn(async move { s.recv(Vec::with_capacity(16)).await.0 });
                // The receive waits (armed) before the error comes.
                sleep(Duration::from_millis(10)).await;
                let (res, _) = sock.send(b"ping".to_vec()).await;
                res.unwrap();
                let res = timeout(Duration::from_secs(5), waiting)
                    .await
                    .expect("a waiting receive missed the ICMP error")
                    .unwrap();
                let err = res.expect_err("the port is closed");
                assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
                // Reported once: the next receive waits.
                let next = timeout(Duration::from_millis(100), sock.recv(Vec::with_capacity(16)));
                assert!(next.await.is_err(), "a second receive did not wait");
            });
        }

        /// `recv_from` (and `recv`) cut a datagram longer than the buffer silently: 100 bytes
        /// into 16 were `Ok(16)`. The truncation is reported now, with the sender and the
        /// datagram's length; the buffer keeps its first bytes.
        fn a_truncated_datagram_is_reported_not_cut_silently(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let a = UdpSocket::bind("127.0.0.1:0").unwrap();
                let b = UdpSocket::bind("127.0.0.1:0").unwrap();
                let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
                let long = common::pattern(0, 100);
                let (res, _) = a.send_to(long.clone(), b_addr).await;
                res.unwrap();
                let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
                let err = res.expect_err("a 100-byte datagram into 16 bytes");
                assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                let cut = TruncatedDatagram::of(&err).expect("the error carries the truncation");
                assert_eq!(
                    (cut.received(), cut.datagram_len(), cut.from()),
                    (16, 100, Some(a_addr))
                );
                assert_eq!(buf, long[..16]);
                assert!(err.to_string().contains("100 bytes"), "{err}");
                // What fits exactly, and an empty datagram, are no truncation.
                for len in [16, 0] {
                    let (res, _) = a.send_to(common::pattern(1, len), b_addr).await;
                    res.unwrap();
                    let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
                    assert_eq!(res.unwrap(), (len, a_addr));
                    assert_eq!(buf, common::pattern(1, len));
                }
                // The same for `recv` on a connected socket.
                b.connect(a_addr).unwrap();
                let (res, _) = a.send_to(long.clone(), b_addr).await;
                res.unwrap();
                let (res, buf) = b.recv(Vec::with_capacity(16)).await;
                let err = res.expect_err("a 100-byte datagram into 16 bytes");
                let cut = TruncatedDatagram::of(&err).expect("the error carries the truncation");
                assert_eq!((cut.received(), cut.datagram_len(), cut.from()), (16, 100, None));
                assert_eq!(buf, long[..16]);
                // The next datagram is whole.
                let (res, _) = a.send_to(b"next".to_vec(), b_addr).await;
                res.unwrap();
                let (res, buf) = b.recv(Vec::with_capacity(16)).await;
                assert_eq!(res.unwrap(), 4);
                assert_eq!(buf, b"next");
            });
        }
    }
}

mod shutdown {
    use super::*;
    use ringloop::compat::PollIo;
    use ringloop::net::UnixStream;

    both_backends! {
        /// `PollIo::poll_shutdown` marked the write side shut before the syscall: a shutdown
        /// that failed reported success at the next call. (A seccomp filter in a child process
        /// makes `shutdown(2)` fail.)
        fn a_failed_shutdown_is_reported_again_not_taken_for_done(lp: &mut EventLoop) {
            if !common::in_child() {
                let name = format!(
                    "shutdown::{}::a_failed_shutdown_is_reported_again_not_taken_for_done",
                    lp.backend()
                );
                common::run_in_child(&name, &[]);
                return;
            }
            common::deny_syscall(libc::SYS_shutdown, libc::EIO);
            lp.run_until_complete(async {
                let (a, _b) = UnixStream::pair().unwrap();
                let mut io = PollIo::new(a);
                for call in 0..2 {
                    let res = poll_fn(|cx| io.poll_shutdown(cx)).await;
                    let err = res.expect_err("shutdown(2) fails under the filter");
                    assert_eq!(err.raw_os_error(), Some(libc::EIO), "call {call}: {err}");
                }
            });
        }

        /// `poll_shutdown` did not wait for an owned-buffer write that was dropped while the
        /// kernel still had it (as `poll_write` does): on uring the end of stream went first
        /// and the write then failed with `EPIPE`, so the peer got nothing of bytes that were
        /// handed to the kernel before the shutdown.
        fn a_shutdown_waits_for_a_dropped_write_still_in_the_kernel(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let (a, b) = UnixStream::pair().unwrap();
                // Another op in flight, so the write below goes to the ring, not inline.
                let (c, d) = UnixStream::pair().unwrap();
                let reader = spawn(async move {
                    let (res, _) = c.read(Vec::with_capacity(8)).await;
                    res.unwrap()
                });
                yield_now().await;
                let mut io = PollIo::new(a);
                let data = common::pattern(0, 1000);
                {
                    let mut write = Box::pin(io.get_ref().write(data.clone()));
                    if let Poll::Ready((res, _)) = poll_once(&mut write).await {
                        assert_eq!(res.unwrap(), data.len()); // epoll: written at once
                    }
                } // dropped; on uring its SQE is queued, not even submitted yet
                poll_fn(|cx| io.poll_shutdown(cx)).await.unwrap();
                let mut got = Vec::new();
                loop {
                    let read = b.read(Vec::with_capacity(4096));
                    let (res, buf) = timeout(Duration::from_secs(5), read)
                        .await
                        .expect("the peer waited for the end of stream");
                    if res.unwrap() == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf);
                }
                assert_eq!(got.len(), data.len(), "the dropped write's bytes did not arrive");
                assert_eq!(got, data);
                let (res, _) = d.write(b"x".to_vec()).await;
                res.unwrap();
                assert_eq!(reader.await.unwrap(), 1);
            });
        }
    }
}

#[cfg(feature = "axum")]
mod accept {
    use super::*;
    use ringloop::compat::axum::serve;
    use ringloop::net::TcpListener;

    /// The open fds of this process.
    fn open_fds() -> u64 {
        std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
    }

    both_backends! {
        /// `compat::axum::serve` retried every failed accept but `ECONNABORTED` every 50 ms,
        /// silently and forever: on a socket that is not listening (`EINVAL`) it never ended
        /// and never said why. An error that retrying cannot cure ends it now, with the error.
        fn serve_ends_with_an_accept_error_that_retrying_cannot_cure(lp: &mut EventLoop) {
            use socket2::{Domain, Socket, Type};
            use std::future::IntoFuture;
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
            let not_listening: std::net::TcpListener = socket.into();
            lp.run_until_complete(async move {
                let listener = TcpListener::from_std(not_listening).unwrap();
                let server = serve(listener, axum::Router::new()).into_future();
                let res = timeout(Duration::from_secs(10), server)
                    .await
                    .expect("serve retried a hopeless accept for 10 s");
                let err = res.expect_err("serve on a socket that is not listening");
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
                assert!(err.to_string().contains("accept"), "{err}");
            });
        }

        /// With the fd table full (`EMFILE`), serve backs off and accepts again once fds are
        /// free, and each pause shows in `Stats::accept_backoffs` instead of happening
        /// silently. (`RLIMIT_NOFILE` is lowered in a child process.)
        fn serve_backs_off_on_a_full_fd_table_says_so_and_recovers(lp: &mut EventLoop) {
            use std::future::IntoFuture;
            use std::os::fd::{FromRawFd, OwnedFd};
            if !common::in_child() {
                let name = format!(
                    "accept::{}::serve_backs_off_on_a_full_fd_table_says_so_and_recovers",
                    lp.backend()
                );
                common::run_in_child(&name, &[]);
                return;
            }
            lp.run_until_complete(async {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
                // The client's socket is made before the table fills (connect needs no new fd).
                use socket2::{Domain, Socket, Type};
                let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                // Fill the fd table: a limit a little above what is open, then duplicates. (Before
                // the server starts: io_uring takes the limit when an accept is submitted.)
                let limit = open_fds() + 16;
                let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                // SAFETY: `rl` is a valid rlimit for the duration of the call.
                assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
                let mut fillers = Vec::new();
                loop {
                    // SAFETY: dup takes no pointers; a negative result is checked.
                    let fd = unsafe { libc::dup(0) };
                    if fd < 0 {
                        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EMFILE));
                        break;
                    }
                    // SAFETY: `fd` is a new descriptor nobody else owns.
                    fillers.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                let (stop, stopped) = futures_channel::oneshot::channel::<()>();
                let server = spawn(
                    serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .into_future(),
                );
                let request = std::thread::spawn(move || {
                    client.connect(&addr.into()).unwrap();
                    let mut stream: std::net::TcpStream = client.into();
                    stream
                        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer).unwrap();
                    answer
                });
                let deadline = Instant::now() + Duration::from_secs(10);
                while ringloop::current_stats().unwrap().accept_backoffs == 0 {
                    assert!(Instant::now() < deadline, "no accept backoff was counted in 10 s");
                    sleep(Duration::from_millis(5)).await;
                }
                drop(fillers);
                let answer = timeout(
                    Duration::from_secs(10),
                    ringloop::spawn_blocking(move || request.join().unwrap()),
                )
                .await
                .expect("the server did not accept again once fds were free")
                .unwrap();
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                assert!(answer.ends_with("ok"), "{answer}");
                stop.send(()).unwrap();
                timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
            });
        }
    }
}
