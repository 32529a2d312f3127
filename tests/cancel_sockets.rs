//! Cancellation at every await, both backends, sockets: `accept` and `connect` (TCP and Unix),
//! UDP `recv` and `send`, `AsyncFd` readiness waits, each dropped after every possible number of
//! polls (`common::cancel::drop_at_every_poll`); then the object still works, `close()` is prompt
//! and nothing leaked (`common::cancel::run_checked`, in a child process). Stream reads and
//! writes are in `cancel.rs`.

mod common;
#[path = "common/duplex.rs"]
mod duplex;

use std::future::Future;
use std::io::{self, Read, Write};
use std::time::Duration;

use common::cancel::{drop_at_every_poll, run_checked};
use common::pattern;
use duplex::Duplex;
use ringloop::io::AsyncFd;
use ringloop::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use ringloop::time::{sleep, timeout};
use ringloop::{Backend, EventLoop};

/// Accepts dropped at every poll while clients connect; the listener must then still accept.
async fn accepts_leave_a_working_listener<L, S, C>(
    listener: L,
    accept: impl AsyncFn(&L) -> io::Result<S>,
    connect: impl Fn() -> C + 'static,
) where
    S: Duplex,
    C: Future<Output = io::Result<S>> + 'static,
{
    let connect = std::rc::Rc::new(connect);
    let c = connect.clone();
    let clients = ringloop::spawn(async move {
        let mut kept = Vec::new();
        for _ in 0..20 {
            kept.push(c().await.unwrap());
            sleep(Duration::from_millis(2)).await;
        }
        kept
    });
    for _ in 0..8 {
        let sweep = drop_at_every_poll(async || accept(&listener).await).await;
        sweep.output.unwrap();
    }
    let clients = clients.await.unwrap();
    // Take what is queued, then a fresh client must be accepted and carry bytes.
    while let Ok(res) = timeout(Duration::from_millis(200), accept(&listener)).await {
        res.unwrap();
    }
    let client = connect().await.unwrap();
    let server = timeout(Duration::from_secs(10), accept(&listener))
        .await
        .expect("the listener accepts no more connections after dropped accepts")
        .unwrap();
    client.write_all(b"ping".to_vec()).await.0.unwrap();
    let (res, buf) = server.read(Vec::with_capacity(4)).await;
    assert_eq!((res.unwrap(), &buf[..]), (4, &b"ping"[..]));
    drop(clients);
}

in_child_per_backend! {
    tcp_accept, unix_accept, tcp_connect, unix_connect, udp_recv, udp_recv_loses_no_datagram,
    udp_dropped_receive_keeps_truncation_sender_and_order, udp_send, async_fd_waits,
}

fn tcp_accept(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        accepts_leave_a_working_listener(
            listener,
            async |l: &TcpListener| l.accept().await.map(|(s, _)| s),
            move || TcpStream::connect(addr),
        )
        .await;
    });
}

fn unix_accept(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    run_checked(backend, EventLoop::builder(), async {
        let listener = UnixListener::bind(&path).unwrap();
        let p = path.clone();
        accepts_leave_a_working_listener(
            listener,
            async |l: &UnixListener| l.accept().await.map(|(s, _)| s),
            move || UnixStream::connect(p.clone()),
        )
        .await;
    });
}

/// Connects dropped at every poll; each completed one must carry bytes to an echo server.
async fn connects_work<S: Duplex>(connect: impl AsyncFn() -> io::Result<S>) {
    for _ in 0..8 {
        let s = drop_at_every_poll(async || connect().await)
            .await
            .output
            .unwrap();
        s.write_all(b"ping".to_vec()).await.0.unwrap();
        let (res, buf) = s.read(Vec::with_capacity(4)).await;
        assert_eq!((res.unwrap(), &buf[..]), (4, &b"ping"[..]));
    }
}

/// An echo server on `accept`, until aborted; each connection's task ends at its end of stream.
fn echo_server<S: Duplex>(
    accept: impl AsyncFn() -> io::Result<S> + 'static,
) -> ringloop::JoinHandle<()> {
    ringloop::spawn(async move {
        loop {
            let s = accept().await.unwrap();
            ringloop::spawn(async move {
                loop {
                    let (res, buf) = s.read(Vec::with_capacity(64)).await;
                    match res {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if s.write_all(buf).await.0.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

fn tcp_connect(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let listener = std::rc::Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = listener.local_addr().unwrap();
        let l = listener.clone();
        let server = echo_server(async move || l.accept().await.map(|(s, _)| s));
        connects_work(async || TcpStream::connect(addr).await).await;
        server.abort();
        let _ = server.await;
    });
}

fn unix_connect(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    run_checked(backend, EventLoop::builder(), async {
        let listener = std::rc::Rc::new(UnixListener::bind(&path).unwrap());
        let l = listener.clone();
        let server = echo_server(async move || l.accept().await.map(|(s, _)| s));
        connects_work(async || UnixStream::connect(&path).await).await;
        server.abort();
        let _ = server.await;
    });
}

/// A datagram of 64 bytes carrying its sequence number and a pattern after it.
fn datagram(seq: u64) -> Vec<u8> {
    let mut d = seq.to_be_bytes().to_vec();
    d.extend(pattern(seq as usize, 56));
    d
}

/// The sequence number of an intact datagram (panics on a damaged one).
fn seq_of(d: &[u8]) -> u64 {
    assert_eq!(d.len(), 64, "a datagram of {} bytes", d.len());
    let seq = u64::from_be_bytes(d[..8].try_into().unwrap());
    assert_eq!(
        &d[8..],
        &pattern(seq as usize, 56)[..],
        "datagram {seq} is damaged"
    );
    seq
}

async fn udp_pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

/// Receives (`recv` and `recv_from`) dropped at every poll while datagrams arrive: every datagram received is intact and
/// in order, and the socket still receives. Returns the sequence numbers that never came.
async fn udp_recv_sweep() -> Vec<u64> {
    const LAST: u64 = 60;
    let (a, b) = udp_pair().await;
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let stopped = stop.clone();
    let sender = ringloop::spawn(async move {
        for seq in 0..LAST {
            b.send(datagram(seq)).await.0.unwrap();
            sleep(Duration::from_millis(1)).await;
        }
        // The end marker, again and again: a dropped receive may have taken one.
        while !stopped.get() {
            b.send(datagram(u64::MAX >> 8)).await.0.unwrap();
            sleep(Duration::from_millis(5)).await;
        }
    });
    let mut seen = Vec::new();
    let mut tries = 0u32;
    loop {
        // `recv` and `recv_from` in turn.
        let sweep = drop_at_every_poll(async || {
            tries += 1;
            if tries.is_multiple_of(2) {
                let (res, buf) = a.recv_from(Vec::with_capacity(128)).await;
                res.map(|_| buf)
            } else {
                let (res, buf) = a.recv(Vec::with_capacity(128)).await;
                res.map(|_| buf)
            }
        })
        .await;
        let seq = seq_of(&sweep.output.unwrap());
        if seq == u64::MAX >> 8 {
            break;
        }
        assert!(seen.last() < Some(&seq), "datagram {seq} after {seen:?}");
        seen.push(seq);
    }
    stop.set(true);
    sender.await.unwrap();
    (0..LAST).filter(|s| !seen.contains(s)).collect()
}

fn udp_recv(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        udp_recv_sweep().await;
    });
}

/// A dropped `UdpSocket::recv` must not lose a datagram the kernel already delivered to it
/// (tokio's `recv` is cancel-safe; so are ringloop's stream reads).
fn udp_recv_loses_no_datagram(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let lost = udp_recv_sweep().await;
        assert_eq!(
            lost,
            Vec::<u64>::new(),
            "datagrams lost by dropped receives"
        );
    });
}

/// Starts `receive` (polls it once: its receive goes to the kernel), sends `datagrams` from
/// `from`, lets the loop reap (on uring the receive completes with the first one), then drops it.
async fn drop_after_delivery<F: Future>(receive: F, from: &UdpSocket, datagrams: &[Vec<u8>]) {
    let mut receive = std::pin::pin!(receive);
    std::future::poll_fn(|cx| {
        assert!(
            receive.as_mut().poll(cx).is_pending(),
            "a receive completed with nothing sent"
        );
        std::task::Poll::Ready(())
    })
    .await;
    for d in datagrams {
        from.send(d.clone()).await.0.unwrap();
    }
    sleep(Duration::from_millis(50)).await;
}

/// `f`'s output, within a bound (a datagram lost by a dropped receive would never come).
async fn next<F: Future>(f: F) -> F::Output {
    timeout(Duration::from_secs(10), f)
        .await
        .expect("the datagram a dropped receive took never came")
}

/// A datagram that a dropped receive took keeps its truncation, its sender and its place:
/// `recv` and `recv_from` each dropped after the kernel delivered to it, then the next receive
/// (of the other kind) returns what it took, then what came after.
fn udp_dropped_receive_keeps_truncation_sender_and_order(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let (a, b) = udp_pair().await;
        let b_addr = b.local_addr().unwrap();
        let truncation = |res: io::Result<usize>| {
            let err = res.unwrap_err();
            *ringloop::net::TruncatedDatagram::of(&err).expect("a truncation")
        };

        // A dropped `recv` into 16 bytes; `recv_from` into 16 gets it cut, with its sender.
        let long = pattern(1, 100);
        drop_after_delivery(
            a.recv(Vec::with_capacity(16)),
            &b,
            std::slice::from_ref(&long),
        )
        .await;
        let (res, buf) = next(a.recv_from(Vec::with_capacity(16))).await;
        let cut = truncation(res.map(|(n, _)| n));
        assert_eq!(
            (cut.received(), cut.datagram_len(), cut.from()),
            (16, 100, Some(b_addr))
        );
        assert_eq!(buf, long[..16]);

        // A dropped `recv_from`; `recv` into 16 gets it cut.
        let long = pattern(2, 100);
        drop_after_delivery(
            a.recv_from(Vec::with_capacity(128)),
            &b,
            std::slice::from_ref(&long),
        )
        .await;
        let (res, buf) = next(a.recv(Vec::with_capacity(16))).await;
        let cut = truncation(res);
        assert_eq!(
            (cut.received(), cut.datagram_len(), cut.from()),
            (16, 100, None)
        );
        assert_eq!(buf, long[..16]);

        // Two sent, the first taken by a dropped receive: they come out in order, whole.
        let (d3, d4) = (datagram(3), datagram(4));
        drop_after_delivery(a.recv(Vec::with_capacity(128)), &b, &[d3, d4]).await;
        let (res, buf) = next(a.recv_from(Vec::with_capacity(128))).await;
        assert_eq!(res.unwrap(), (64, b_addr));
        assert_eq!(seq_of(&buf), 3);
        let (res, buf) = next(a.recv(Vec::with_capacity(128))).await;
        assert_eq!(res.unwrap(), 64);
        assert_eq!(seq_of(&buf), 4);
    });
}

/// Sends (`send` and `send_to`) dropped at every poll: what arrives is intact and in order, and every send that
/// completed arrived.
fn udp_send(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let (a, b) = udp_pair().await;
        let b_addr = b.local_addr().unwrap();
        let receiver = ringloop::spawn(async move {
            let mut seqs = Vec::new();
            loop {
                let (res, buf) = b.recv(Vec::with_capacity(128)).await;
                res.unwrap();
                let seq = seq_of(&buf);
                if seq == u64::MAX >> 8 {
                    return seqs;
                }
                seqs.push(seq);
            }
        });
        let mut attempts = 0u64;
        let mut completed = Vec::new();
        for _ in 0..30 {
            let sweep = drop_at_every_poll(async || {
                attempts += 1;
                let seq = attempts;
                // `send` and `send_to` in turn.
                if seq.is_multiple_of(2) {
                    (seq, a.send_to(datagram(seq), b_addr).await.0)
                } else {
                    (seq, a.send(datagram(seq)).await.0)
                }
            })
            .await;
            let (seq, res) = sweep.output;
            assert_eq!(res.unwrap(), 64);
            completed.push(seq);
        }
        a.send(datagram(u64::MAX >> 8)).await.0.unwrap();
        let seqs = timeout(Duration::from_secs(10), receiver)
            .await
            .expect("the last datagram never came")
            .unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
        for seq in completed {
            assert!(
                seqs.contains(&seq),
                "completed send {seq} never arrived: {seqs:?}"
            );
        }
    });
}

/// `AsyncFd::readable` and `writable` dropped at every poll on a socket pair: the waits still
/// work, and the bytes read through the guards come in order.
fn async_fd_waits(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let a = AsyncFd::new(a).unwrap();
        let writer = ringloop::spawn(async move {
            for i in 0..40u8 {
                (&b).write_all(&[i]).unwrap();
                sleep(Duration::from_millis(1)).await;
            }
            // `b` is dropped here: `a` reads the end of stream.
        });
        let mut got = Vec::new();
        'outer: loop {
            let mut guard = drop_at_every_poll(async || a.readable().await)
                .await
                .output
                .unwrap();
            loop {
                let mut buf = [0u8; 64];
                match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
                    Ok(Ok(0)) => break 'outer,
                    Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Ok(Err(e)) => panic!("read through the guard: {e}"),
                    Err(_would_block) => break,
                }
            }
        }
        writer.await.unwrap();
        assert_eq!(got, (0..40u8).collect::<Vec<_>>());
        eprintln!("readable: done");

        // Writable waits dropped at every poll, on a socket whose buffer a slow reader drains.
        let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        c.set_nonblocking(true).unwrap();
        d.set_nonblocking(true).unwrap();
        let c = AsyncFd::new(c).unwrap();
        let chunk = vec![7u8; 4096];
        while c.get_ref().write(&chunk).is_ok() {}
        let reader = ringloop::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut total = 0;
            loop {
                match (&d).read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
                sleep(Duration::from_millis(1)).await;
            }
        });
        for _ in 0..5 {
            let mut guard = drop_at_every_poll(async || c.writable().await)
                .await
                .output
                .unwrap();
            // Until it would block (which clears the readiness).
            while let Ok(res) = guard.try_io(|fd| fd.get_ref().write(&chunk)) {
                assert_eq!(res.unwrap(), 4096);
            }
        }
        drop(c);
        timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap();
    });
}
