//! UDP, Unix sockets, vectored I/O, half-close, resets and std conversions, on both backends.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::pattern;
use ringloop::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use ringloop::spawn;
use ringloop::time::timeout;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A connected TCP pair: (ringloop side, std peer).
async fn tcp_pair_with_std_peer() -> (TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (s, _) = listener.accept().await.unwrap();
    (s, peer)
}

both_backends! {
    fn udp_round_trips(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            for i in 0..50usize {
                let msg = pattern(i, 1 + i * 17);
                let (res, _) = a.send_to(msg.clone(), b_addr).await;
                assert_eq!(res.unwrap(), msg.len());
                let (res, buf) = b.recv_from(Vec::with_capacity(2048)).await;
                let (n, from) = res.unwrap();
                assert_eq!((n, from), (msg.len(), a_addr));
                assert_eq!(buf, msg);
            }
            // Connected sockets: send/recv.
            a.connect(b_addr).unwrap();
            b.connect(a_addr).unwrap();
            assert_eq!(a.peer_addr().unwrap(), b_addr);
            let (res, _) = b.send(b"pong".to_vec()).await;
            res.unwrap();
            let (res, buf) = a.recv(Vec::with_capacity(16)).await;
            assert_eq!(&buf[..res.unwrap()], b"pong");
            // A datagram longer than the buffer is truncated, not split, and says so.
            let (res, _) = a.send(vec![1u8; 100]).await;
            res.unwrap();
            let (res, buf) = b.recv(Vec::with_capacity(10)).await;
            let err = res.unwrap_err();
            let cut = ringloop::net::TruncatedDatagram::of(&err).expect("a truncation error");
            assert_eq!((cut.received(), cut.datagram_len(), buf.len()), (10, 100, 10));
            // send_to by host name.
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (res, _) = c.send_to(b"x".to_vec(), ("localhost", b_addr.port())).await;
            let _ = res; // localhost may be ::1 first, which an IPv4 socket cannot reach
        });
    }

    fn udp_recv_is_cancel_safe_to_drop(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..100 {
                assert!(timeout(Duration::from_micros(100), a.recv(vec![0u8; 0])).await.is_err());
            }
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (res, _) = b.send_to(b"after".to_vec(), a.local_addr().unwrap()).await;
            res.unwrap();
            let (res, buf) = a.recv_from(Vec::with_capacity(16)).await;
            assert_eq!(&buf[..res.unwrap().0], b"after");
        });
    }

    fn unix_listener_and_stream_round_trip(lp: &mut EventLoop) {
        let dir = temp_dir();
        let path = dir.path().join("echo.sock");
        lp.run_until_complete(async move {
            let listener = UnixListener::bind(&path).unwrap();
            assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.as_path()));
            let server = spawn(async move {
                let (s, _addr) = listener.accept().await.unwrap();
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (res, b) = s.read(buf).await;
                    buf = b;
                    if res.unwrap() == 0 {
                        break;
                    }
                    let (res, b) = s.write_all(buf).await;
                    res.unwrap();
                    buf = b;
                }
            });
            let c = UnixStream::connect(&path).await.unwrap();
            let data = pattern(3, 200_000);
            let writer = {
                let data = data.clone();
                async move {
                    let (res, _) = c.write_all(data).await;
                    res.unwrap();
                    c.shutdown(Shutdown::Write).unwrap();
                    c
                }
            };
            let c = writer.await;
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(8192);
            loop {
                let (res, b) = c.read(buf).await;
                buf = b;
                let n = res.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == data);
            server.await.unwrap();
            let err = UnixStream::connect(dir.path().join("missing.sock")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        });
    }

    fn unix_pair_and_vectored_io(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (a, b) = UnixStream::pair().unwrap();
            let bufs = vec![b"hello ".to_vec(), b"vectored ".to_vec(), b"world".to_vec()];
            let (res, bufs) = a.writev(bufs).await;
            assert_eq!(res.unwrap(), 20);
            assert_eq!(bufs.len(), 3);
            let (res, parts) = b.readv(vec![Vec::with_capacity(5), Vec::with_capacity(4), Vec::with_capacity(64)]).await;
            assert_eq!(res.unwrap(), 20);
            assert_eq!(parts[0], b"hello");
            assert_eq!(parts[1], b" vec");
            assert_eq!(parts[2], b"tored world");
        });
    }

    fn tcp_vectored_and_slices(lp: &mut EventLoop) {
        use ringloop::buf::IoBuf;
        lp.run_until_complete(async {
            let (s, mut peer) = tcp_pair_with_std_peer().await;
            let whole = b"0123456789".to_vec();
            let (res, slice) = s.write(whole.slice(2..5)).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(slice.into_inner(), b"0123456789");
            let (res, _) = s.writev(vec![&b"ab"[..], &b"cd"[..]]).await;
            assert_eq!(res.unwrap(), 4);
            let mut got = [0u8; 7];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"234abcd");
            // Reading into a slice fills its range and keeps the bytes before it.
            peer.write_all(b"XYZ").unwrap();
            let mut buf = Vec::with_capacity(16);
            buf.extend_from_slice(b"kept");
            let (res, slice) = s.read(buf.slice(4..)).await;
            let n = res.unwrap();
            let buf = slice.into_inner();
            assert_eq!(&buf[..4 + n], &b"keptXYZ"[..4 + n]);
        });
    }

    fn half_close_keeps_the_other_direction(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (s, mut peer) = tcp_pair_with_std_peer().await;
            peer.shutdown(Shutdown::Write).unwrap();
            let (res, _) = s.read(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 0, "EOF from the peer's write shutdown");
            let (res, _) = s.write_all(b"still open".to_vec()).await;
            res.unwrap();
            let mut got = [0u8; 10];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"still open");
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        });
    }

    fn a_peer_reset_mid_read_and_mid_write_is_an_error(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            // Mid-read: the peer resets (SO_LINGER 0) while our read waits.
            let (s, peer) = tcp_pair_with_std_peer().await;
            let reader = spawn(async move {
                let (res, _) = s.read(Vec::with_capacity(64)).await;
                res
            });
            ringloop::time::sleep(Duration::from_millis(10)).await;
            socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
            drop(peer);
            let err = reader.await.unwrap().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");

            // Mid-write: a large write is under way when the peer resets.
            let (s, peer) = tcp_pair_with_std_peer().await;
            let writer = spawn(async move {
                let (res, _) = s.write_all(vec![7u8; 64 << 20]).await;
                res
            });
            ringloop::time::sleep(Duration::from_millis(20)).await;
            socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
            drop(peer);
            let err = writer.await.unwrap().unwrap_err();
            assert!(
                matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
                "{err}"
            );
        });
    }

    fn std_conversions_round_trip(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = std_listener.local_addr().unwrap();
            let listener = TcpListener::from_std(std_listener).unwrap();
            let client = TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap()).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let (res, _) = client.write_all(b"one".to_vec()).await;
            res.unwrap();
            let (res, buf) = server.read(Vec::with_capacity(8)).await;
            assert_eq!(&buf[..res.unwrap()], b"one");
            // Back to std: blocking mode again, still connected.
            let mut std_server = server.into_std().unwrap();
            let mut std_client = client.into_std().unwrap();
            std_client.write_all(b"two").unwrap();
            let mut got = [0u8; 3];
            std_server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"two");
            assert!(listener.into_std().is_ok());
            let u = UdpSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
            assert!(u.into_std().is_ok());
            let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
            assert!(UnixStream::from_std(a).unwrap().into_std().is_ok());
        });
    }

    fn reuse_port_lets_two_listeners_share_a_port(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let a = TcpListener::builder().reuse_port(true).backlog(64).bind("127.0.0.1:0").unwrap();
            let port = a.local_addr().unwrap().port();
            let b = TcpListener::builder().reuse_port(true).bind(("127.0.0.1", port)).unwrap();
            assert_eq!(b.local_addr().unwrap().port(), port);
            let err = TcpListener::bind(("127.0.0.1", port)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            // One accepting task per listener (as with one loop per thread); between them they
            // take every connection.
            let counts = std::rc::Rc::new([std::cell::Cell::new(0usize), std::cell::Cell::new(0)]);
            let acceptors: Vec<_> = [a, b]
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let counts = counts.clone();
                    spawn(async move {
                        loop {
                            let (s, _) = l.accept().await.unwrap();
                            counts[i].set(counts[i].get() + 1);
                            drop(s);
                        }
                    })
                })
                .collect();
            let mut clients = Vec::new();
            for _ in 0..40 {
                clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
            }
            let total = || counts[0].get() + counts[1].get();
            timeout(Duration::from_secs(10), async {
                while total() < 40 {
                    ringloop::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("every connection is accepted by one of the listeners");
            for h in acceptors {
                h.abort();
            }
            let accepted = [counts[0].get(), counts[1].get()];
            assert_eq!(accepted[0] + accepted[1], 40);
        });
    }

    fn a_dropped_in_flight_write_keeps_the_stream_in_order(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (s, mut peer) = tcp_pair_with_std_peer().await;
            // The peer does not read yet, so a large write cannot finish and is dropped by the
            // timeout while in flight.
            let big = vec![b'a'; 32 << 20];
            let r = timeout(Duration::from_millis(50), s.write_all(big)).await;
            assert!(r.is_err(), "the write should still be in flight");
            // A later write must arrive whole, after whatever part of the dropped one went out.
            let tail = pattern(1, 100_000);
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).unwrap();
                got
            });
            let (res, _) = s.write_all(tail.clone()).await;
            res.unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let got = reader.join().unwrap();
            let prefix = got.len() - tail.len();
            assert!(got[..prefix].iter().all(|&b| b == b'a'), "the dropped write's bytes come first");
            assert!(got[prefix..] == tail[..], "the later write arrives whole and in order");
        });
    }
}

/// On uring, an op that would make the ring trip alone (nothing else queued, in flight or ready)
/// tries its nonblocking syscall first. A send and a read of data already there then cost one
/// syscall each and no `io_uring_enter`; the bytes are the same either way.
#[test]
fn uring_lone_ops_complete_inline_without_entering_the_ring() {
    if common::faults_on() {
        return; // counts syscalls: injected faults add some by design
    }
    let mut lp = common::new_loop(ringloop::Backend::Uring);
    lp.run_until_complete(async {
        let (a, b) = ringloop::net::UnixStream::pair().unwrap();
        let before = ringloop::current_stats().unwrap();
        let mut out = Vec::with_capacity(8);
        let mut buf = Vec::with_capacity(8);
        for i in 0..1000u32 {
            out.clear();
            out.extend_from_slice(&i.to_le_bytes());
            let (res, o) = a.write_all(out).await;
            res.unwrap();
            out = o;
            let (res, b2) = b.read(buf).await;
            buf = b2;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, i.to_le_bytes());
            // An 8-byte buffer got 4: the read was short, so the next read would go to the ring
            // (with POLL_FIRST). Reading into exactly 4 bytes keeps the inline path.
            buf = Vec::with_capacity(4);
        }
        let after = ringloop::current_stats().unwrap();
        let enters = after.uring_enters - before.uring_enters;
        let direct = after.io_syscalls - before.io_syscalls;
        // Every 128 ops in one poll the cooperative budget sends one op through the ring.
        assert!(
            direct >= 1900,
            "only {direct} inline syscalls for 2,000 lone ops"
        );
        assert!(
            enters < 100,
            "{enters} io_uring_enter calls for 2,000 lone ops"
        );
    });
    lp.close();
}
