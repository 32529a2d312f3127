//! TCP on both backends: echo, large transfers, errors, and cancellation safety.

mod common;

use std::future::{Future, poll_fn};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::{in_child, open_fds, pattern, run_in_child, test_path};
use ringloop::buf::IoBuf;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::time::{sleep, timeout};
use ringloop::{spawn, yield_now};

/// Polls `fut` exactly once (starting its op), returning it for later.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Echoes everything on `stream` until EOF.
async fn echo(stream: TcpStream) {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}

/// Reads exactly `len` bytes.
async fn read_exact(stream: &TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut buf = Vec::with_capacity(64 * 1024);
    while out.len() < len {
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(out)
}

/// Client `c` sends `rounds` messages (of `len(c, round)` bytes) and checks each echo.
async fn echo_rounds(s: &TcpStream, c: usize, rounds: usize, len: impl Fn(usize, usize) -> usize) {
    for round in 0..rounds {
        let msg = pattern(c * 1000 + round, len(c, round));
        let (res, _) = s.write_all(msg.clone()).await;
        res.unwrap();
        assert_eq!(
            read_exact(s, msg.len()).await.unwrap(),
            msg,
            "client {c} round {round}"
        );
    }
}

fn free_port_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

both_backends! {
    fn echo_with_many_connections(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spawn(async move {
                for _ in 0..200 {
                    let (s, _) = listener.accept().await.unwrap();
                    s.set_nodelay(true).unwrap();
                    assert!(s.nodelay().unwrap());
                    spawn(echo(s));
                }
            });
            let clients: Vec<_> = (0..200usize)
                .map(|c| spawn(async move {
                    let s = TcpStream::connect(addr).await.unwrap();
                    assert_eq!(s.peer_addr().unwrap(), addr);
                    echo_rounds(&s, c, 10, |c, round| 1 + (c * 37 + round * 101) % 3000).await;
                }))
                .collect();
            for c in clients {
                c.await.unwrap();
            }
            server.await.unwrap();
        });
    }

    fn sixty_four_mib_transfer_is_byte_exact(lp: &mut EventLoop) {
        const TOTAL: usize = 64 << 20;
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let receiver = spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                let mut got = 0usize;
                let mut buf = Vec::with_capacity(100_000);
                loop {
                    let (res, b) = s.read(buf).await;
                    buf = b;
                    let n = res.unwrap();
                    if n == 0 {
                        break;
                    }
                    assert_eq!(buf.len(), n);
                    assert_eq!(buf, pattern(got, n), "mismatch at byte {got}");
                    got += n;
                }
                got
            });
            let s = TcpStream::connect(addr).await.unwrap();
            let mut sent = 0;
            while sent < TOTAL {
                let n = (TOTAL - sent).min(1 << 20);
                let (res, _) = s.write_all(pattern(sent, n)).await;
                res.unwrap();
                sent += n;
            }
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(receiver.await.unwrap(), TOTAL);
        });
    }

    fn one_task_reads_while_another_writes_the_same_stream(lp: &mut EventLoop) {
        // 8 MiB through an echo peer: far more than the socket buffers hold, so unless the read
        // and the write are in flight at the same time, both ends stall with full windows.
        const TOTAL: usize = 8 << 20;
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move {
                let (peer, _) = listener.accept().await.unwrap();
                let mut buf = Vec::with_capacity(64 << 10);
                loop {
                    let (res, b) = peer.read(buf).await;
                    match res {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                    let (res, b) = peer.write_all(b).await;
                    if res.is_err() {
                        return;
                    }
                    buf = b;
                }
            });
            let stream = std::rc::Rc::new(TcpStream::connect(addr).await.unwrap());
            let writer = {
                let stream = stream.clone();
                spawn(async move {
                    let mut sent = 0;
                    while sent < TOTAL {
                        let chunk = pattern(sent, (TOTAL - sent).min(64 << 10));
                        let len = chunk.len();
                        let (res, _) = stream.write_all(chunk).await;
                        res.unwrap();
                        sent += len;
                    }
                })
            };
            let reader = spawn(async move {
                let mut got = 0;
                let mut buf = Vec::with_capacity(64 << 10);
                while got < TOTAL {
                    let (res, b) = stream.read(buf).await;
                    let n = res.unwrap();
                    assert!(n > 0, "eof after {got} bytes");
                    assert_eq!(&b[..], &pattern(got, n)[..], "bytes at {got} differ");
                    got += n;
                    buf = b;
                }
            });
            timeout(Duration::from_secs(60), async {
                writer.await.unwrap();
                reader.await.unwrap();
            })
            .await
            .expect("the reader and the writer stalled each other");
        });
    }

    fn byte_literals_and_shared_slices_are_written_as_they_are(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = spawn(async move {
                let (peer, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                loop {
                    let (res, b) = peer.read(Vec::with_capacity(64)).await;
                    if res.unwrap() == 0 {
                        return got;
                    }
                    got.extend_from_slice(&b);
                }
            });
            let stream = TcpStream::connect(addr).await.unwrap();
            let (res, _) = stream.write_all(b"hi\n").await;
            res.unwrap();
            let rc: std::rc::Rc<[u8]> = std::rc::Rc::from(&b"rc "[..]);
            let (res, rc) = stream.write_all(rc).await;
            res.unwrap();
            assert_eq!(&rc[..], b"rc ", "the Rc came back whole");
            let arc: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"arc"[..]);
            let (res, _) = stream.write_all(arc.slice(1..)).await;
            res.unwrap();
            drop(stream);
            assert_eq!(reader.await.unwrap(), b"hi\nrc rc");
        });
    }

    fn connect_refused_is_an_error(lp: &mut EventLoop) {
        let addr = free_port_addr(); // bound and closed again: nothing listens there
        lp.run_until_complete(async move {
            let err = TcpStream::connect(addr).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            let err = TcpStream::connect(("127.0.0.1", addr.port())).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        });
    }

    fn connect_by_host_name(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let accept = spawn(async move { listener.accept().await.map(|_| ()) });
            let s = TcpStream::connect(format!("localhost:{port}")).await;
            // localhost may resolve to ::1 first; the IPv4 address is tried next.
            s.unwrap();
            accept.await.unwrap().unwrap();
            let err = TcpStream::connect("no-such-host.invalid:80").await.unwrap_err();
            assert_ne!(err.kind(), io::ErrorKind::ConnectionRefused);
        });
    }

    fn peer_close_gives_eof_then_write_errors(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"bye").unwrap();
                // Dropped: FIN after the bytes.
            });
            let (s, _) = listener.accept().await.unwrap();
            client.join().unwrap();
            assert_eq!(read_exact(&s, 3).await.unwrap(), b"bye");
            let (res, _) = s.read(Vec::with_capacity(16)).await;
            assert_eq!(res.unwrap(), 0, "EOF after the peer closed");
            // Writing to a closed peer errors (RST comes back), never SIGPIPE.
            let mut failed = None;
            for _ in 0..100 {
                let (res, _) = s.write_all(vec![0u8; 4096]).await;
                if let Err(e) = res {
                    failed = Some(e);
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
            let e = failed.expect("writes to a closed peer must fail");
            assert!(
                matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
                "{e}"
            );
        });
    }

    fn a_read_dropped_after_its_completion_loses_no_bytes(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            for round in 0..50u8 {
                peer.write_all(&[round; 10]).unwrap();
                // Start a read, let the loop run a few turns (its completion arrives), then drop
                // the future without polling it again.
                // (On epoll the first poll usually completes at once: those bytes are the
                // caller's and count too.)
                let mut got = Vec::new();
                let mut read = Box::pin(s.read(Vec::with_capacity(4)));
                if let Poll::Ready((res, buf)) = poll_once(&mut read).await {
                    assert_eq!(res.unwrap(), buf.len());
                    got.extend_from_slice(&buf);
                }
                for _ in 0..3 {
                    yield_now().await;
                }
                sleep(Duration::from_millis(1)).await;
                drop(read);
                // Every byte of the round must still be readable, in order.
                let rest = timeout(Duration::from_secs(5), read_exact(&s, 10 - got.len()))
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: bytes of a dropped read were lost"));
                got.extend(rest.unwrap());
                assert_eq!(got, vec![round; 10], "round {round}");
            }
        });
    }

    fn reads_under_timeouts_see_every_byte(lp: &mut EventLoop) {
        const TOTAL: usize = 200_000;
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_nodelay(true).unwrap();
                let data = pattern(0, TOTAL);
                let mut off = 0;
                let mut step = 1usize;
                while off < TOTAL {
                    let n = (TOTAL - off).min(step % 1500 + 1);
                    c.write_all(&data[off..off + n]).unwrap();
                    off += n;
                    step = step.wrapping_mul(7).wrapping_add(13);
                    if step.is_multiple_of(5) {
                        std::thread::sleep(Duration::from_micros(step as u64 % 400));
                    }
                }
            });
            let (s, _) = listener.accept().await.unwrap();
            let mut got = Vec::with_capacity(TOTAL);
            let mut timeouts = 0;
            let mut buf = Vec::with_capacity(1000);
            while got.len() < TOTAL {
                match timeout(Duration::from_micros(150), s.read(std::mem::take(&mut buf))).await {
                    Ok((res, b)) => {
                        let n = res.unwrap();
                        assert!(n > 0, "unexpected EOF after {} bytes", got.len());
                        got.extend_from_slice(&b[..n]);
                        buf = b;
                    }
                    Err(_) => {
                        timeouts += 1;
                        buf = Vec::with_capacity(1000);
                    }
                }
            }
            writer.join().unwrap();
            assert_eq!(got.len(), TOTAL);
            assert!(got == pattern(0, TOTAL), "bytes were lost or reordered");
            eprintln!("reads timed out {timeouts} times without losing a byte");
        });
    }

    fn cancelled_accepts_leak_no_fd(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "cancelled_accepts_leak_no_fd"), &[]);
            return;
        }
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let before = open_fds();
            for _ in 0..500 {
                // A connection waits in the backlog, so the accept completes in the kernel...
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                let mut accept = Box::pin(listener.accept());
                let _ = poll_once(&mut accept).await;
                yield_now().await;
                sleep(Duration::from_millis(1)).await;
                // ...but its future is dropped without seeing the result.
                drop(accept);
                // With a multishot accept (uring) the connection waits on the listener for the
                // next accept, which takes it; otherwise it was closed with the dropped op.
                if let Ok(res) = timeout(Duration::from_millis(5), listener.accept()).await {
                    drop(res.unwrap());
                }
                // The accepted fd was closed: the client reads EOF (or a reset).
                client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut b = [0u8; 1];
                match client.read(&mut b) {
                    Ok(0) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                    other => panic!("the accepted connection must be closed, got {other:?}"),
                }
            }
            // Accepts cancelled while still waiting in the kernel.
            for _ in 0..500 {
                assert!(timeout(Duration::from_micros(50), listener.accept()).await.is_err());
            }
            sleep(Duration::from_millis(20)).await;
            assert_eq!(open_fds(), before, "fds leaked by cancelled accepts");
        });
    }

    fn closing_a_loop_with_ops_in_flight(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "closing_a_loop_with_ops_in_flight"), &[]);
            return;
        }
        let before = open_fds();
        let backend = lp.backend();
        let mut inner = common::new_loop(backend);
        let peers = inner.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peers = Vec::new();
            for _ in 0..20 {
                peers.push(std::net::TcpStream::connect(addr).unwrap());
                let (s, _) = listener.accept().await.unwrap();
                // A read that will never complete, and a big write that fills the socket.
                spawn(async move {
                    let (res, _) = s.read(Vec::with_capacity(1 << 16)).await;
                    let _ = res;
                });
            }
            let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
            spawn(async move { l2.accept().await.map(|_| ()) });
            spawn(async { sleep(Duration::from_secs(3600)).await });
            sleep(Duration::from_millis(10)).await;
            peers
        });
        // The tasks above still have ops in flight; closing cancels them and waits for the
        // kernel before freeing their buffers.
        inner.close();
        drop(peers);
        assert_eq!(open_fds(), before, "closing the loop leaked fds");
    }

    fn a_four_entry_ring_completes_thousands_of_concurrent_ops(lp: &mut EventLoop) {
        // A 4-entry ring (16 CQEs) with 1,000 connections echoing at once (about 2,000 reads in
        // flight): pushes find the SQ full and completions overflow the CQ; every op must still
        // complete.
        let mut tiny = ringloop::EventLoop::builder()
            .backend(lp.backend())
            .entries(4)
            .build()
            .unwrap();
        tiny.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move {
                loop {
                    let (s, _) = listener.accept().await.unwrap();
                    spawn(echo(s));
                }
            });
            let clients: Vec<_> = (0..1000usize)
                .map(|c| spawn(async move {
                    let s = TcpStream::connect(addr).await.unwrap();
                    echo_rounds(&s, c, 3, |c, _| 100 + c % 700).await;
                }))
                .collect();
            for c in clients {
                c.await.unwrap();
            }
        });
        tiny.close();
    }
}
