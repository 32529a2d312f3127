//! Direct descriptors (uring: accepted connections also in the ring's file table, their ops
//! naming the slot; opt-in with `Builder::direct_descriptors` or `RINGLOOP_DIRECT_FDS`), on both
//! backends: every stream method on an accepted stream, closing (the peer must see the end of
//! stream, so the slot was released), a full table (plain fds for the rest, slots reused after
//! closes), the default (off), the switches (`RINGLOOP_DIRECT_FDS`, `RINGLOOP_DISABLE=direct-fd`),
//! and a stream used by another loop of the thread (whose table does not have it).

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{in_child, pattern, run_in_child};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::time::timeout;
use ringloop::{Backend, EventLoop};

/// Reads until `len` bytes came (or the end of stream), with a bound so that a connection the
/// table keeps open fails the test rather than hangs it.
async fn read_n(s: &TcpStream, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let read = timeout(
            Duration::from_secs(5),
            s.read(Vec::with_capacity(64 * 1024)),
        );
        let (res, buf) = read.await.expect("the bytes came in time");
        match res.unwrap() {
            0 => break,
            _ => out.extend_from_slice(&buf),
        }
    }
    out
}

/// Asserts that the peer of `s` closed: the next read is the end of stream, in time.
async fn assert_eof(s: &TcpStream) {
    let read = timeout(Duration::from_secs(5), s.read(Vec::with_capacity(16)));
    let (res, _) = read.await.expect("the peer's close came in time");
    assert_eq!(res.unwrap(), 0, "the end of stream, not bytes");
}

/// A connected pair: the accepted stream and the client.
async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let client = ringloop::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, peer) = listener.accept().await.unwrap();
    let client = client.await.unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    (server, client)
}

/// Direct descriptors the loop handed out so far (0 on epoll).
fn direct() -> u64 {
    ringloop::current_stats().unwrap().direct_descriptors
}

fn loop_with(backend: Backend, builder: ringloop::Builder) -> EventLoop {
    builder
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("the {backend} backend is required here but failed: {e}"))
}

/// A loop with direct descriptors on (64 slots).
fn direct_loop(backend: Backend) -> EventLoop {
    loop_with(backend, EventLoop::builder().direct_descriptors(64))
}

/// A `uring::NAME` and an `epoll::NAME` test for each `fn NAME(backend: Backend)`.
macro_rules! on_both {
    ($($name:ident),*) => {
        mod uring {
            $(#[test] fn $name() { super::$name(ringloop::Backend::Uring) })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name(ringloop::Backend::Epoll) })*
        }
    };
}

on_both!(
    every_stream_method_works_on_an_accepted_stream,
    dropping_an_accepted_stream_closes_the_connection,
    a_full_table_leaves_plain_fds,
    off_by_default,
    a_direct_stream_used_by_another_loop
);

fn every_stream_method_works_on_an_accepted_stream(backend: Backend) {
    let mut lp = direct_loop(backend);
    {
        lp.run_until_complete(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let (server, client) = pair(&listener).await;
            let want = u64::from(backend == Backend::Uring);
            assert_eq!(
                direct(),
                want,
                "an accepted stream is a direct descriptor on uring"
            );

            // Options, addresses and the fd.
            server.set_nodelay(true).unwrap();
            assert!(server.nodelay().unwrap());
            assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
            assert_eq!(server.local_addr().unwrap(), client.peer_addr().unwrap());
            // SAFETY: the fd is open (held by `server`); F_GETFL reads its flags.
            let flags = unsafe { libc::fcntl(server.as_raw_fd(), libc::F_GETFL) };
            assert!(flags & libc::O_NONBLOCK != 0, "a real fd, nonblocking");

            // read, write, write_all, readv, writev.
            server.write_all(pattern(1, 70_000)).await.0.unwrap();
            assert_eq!(read_n(&client, 70_000).await, pattern(1, 70_000));
            client.write_all(pattern(2, 3000)).await.0.unwrap();
            assert_eq!(read_n(&server, 3000).await, pattern(2, 3000));
            let (n, _) = server.write(b"abc").await;
            assert_eq!(n.unwrap(), 3);
            assert_eq!(read_n(&client, 3).await, b"abc");
            let (n, _) = server.writev(vec![b"de".to_vec(), b"fgh".to_vec()]).await;
            assert_eq!(n.unwrap(), 5);
            assert_eq!(read_n(&client, 5).await, b"defgh");
            client.write_all(b"ijklm").await.0.unwrap();
            let mut got = Vec::new();
            while got.len() < 5 {
                let (n, bufs) = server
                    .readv(vec![Vec::with_capacity(2), Vec::with_capacity(8)])
                    .await;
                assert!(n.unwrap() > 0);
                bufs.iter().for_each(|b| got.extend_from_slice(b));
            }
            assert_eq!(got, b"ijklm");

            // Pooled receives (a multishot receive on the slot, on uring).
            client.write_all(pattern(3, 5000)).await.0.unwrap();
            let mut got = Vec::new();
            while got.len() < 5000 {
                got.extend_from_slice(&server.recv_pooled().await.unwrap());
            }
            assert_eq!(got, pattern(3, 5000));
            client.write_all(pattern(4, 100)).await.0.unwrap();
            let mut bufs = Vec::new();
            let mut n = 0;
            while n < 100 {
                n += server.recv_pooled_many(&mut bufs).await.unwrap();
            }
            let got: Vec<u8> = bufs.iter().flat_map(|b| b.to_vec()).collect();
            assert_eq!(got, pattern(4, 100));

            // send_file.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, pattern(5, 200_000)).unwrap();
            let file = ringloop::fs::File::open(&path).await.unwrap();
            assert_eq!(
                server.send_file(&file, 1000, 150_000).await.unwrap(),
                150_000
            );
            assert_eq!(
                read_n(&client, 150_000).await,
                pattern(5, 200_000)[1000..151_000]
            );

            // into_std: the slot is released, the std stream carries on, and closing it
            // closes the connection.
            let mut std_stream = server.into_std().unwrap();
            std_stream.write_all(b"std").unwrap();
            client.write_all(b"back").await.0.unwrap();
            let mut b = [0u8; 4];
            std_stream.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"back");
            drop(std_stream);
            assert_eq!(read_n(&client, 3).await, b"std");
            assert_eof(&client).await;

            // shutdown: the client reads the end of stream, and can still send.
            let (server, client) = pair(&listener).await;
            server.shutdown(Shutdown::Write).unwrap();
            assert_eof(&client).await;
            client.write_all(b"after").await.0.unwrap();
            assert_eq!(read_n(&server, 5).await, b"after");
        });
    }
    lp.close();
}

fn dropping_an_accepted_stream_closes_the_connection(backend: Backend) {
    let mut lp = direct_loop(backend);
    {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            // Dropped with nothing in flight.
            let (server, client) = pair(&listener).await;
            server.write_all(b"bye").await.0.unwrap();
            drop(server);
            assert_eq!(read_n(&client, 3).await, b"bye");
            assert_eof(&client).await;
            // Dropped with a multishot receive armed (uring) on it.
            let (server, client) = pair(&listener).await;
            client.write_all(b"x").await.0.unwrap();
            assert_eq!(&server.recv_pooled().await.unwrap()[..], b"x");
            let pending = timeout(Duration::from_millis(20), server.recv_pooled()).await;
            assert!(pending.is_err(), "nothing more was sent");
            drop(server);
            assert_eof(&client).await;
            // At once: a blocking client on the loop thread (which does not come back to the
            // ring meanwhile) sees the close.
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            drop(server);
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            assert_eq!(
                client.read(&mut [0u8; 8]).unwrap(),
                0,
                "the end of stream, at once"
            );
        });
    }
    lp.close();
}

/// Without the builder's word or `RINGLOOP_DIRECT_FDS`, connections are plain fds.
fn off_by_default(backend: Backend) {
    if !in_child() {
        // In a child, where `RINGLOOP_DIRECT_FDS` (which CI may set) is removed.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{backend}::off_by_default"),
                "--exact",
                "--nocapture",
            ])
            .env(common::CHILD_ENV, "1")
            .env_remove("RINGLOOP_DIRECT_FDS")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (server, client) = pair(&listener).await;
        server.write_all(b"plain").await.0.unwrap();
        assert_eq!(read_n(&client, 5).await, b"plain");
        assert_eq!(direct(), 0);
    });
    lp.close();
}

/// A table of two slots: the third and fourth connections stay plain fds, every connection
/// works, and closed connections give their slots back.
fn a_full_table_leaves_plain_fds(backend: Backend) {
    let mut lp = loop_with(backend, EventLoop::builder().direct_descriptors(2));
    let uring = backend == Backend::Uring;
    lp.run_until_complete(async move {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut pairs = Vec::new();
        for _ in 0..4 {
            pairs.push(pair(&listener).await);
        }
        let stats = ringloop::current_stats().unwrap();
        assert_eq!(stats.direct_descriptors, if uring { 2 } else { 0 });
        assert_eq!(stats.direct_table_full, if uring { 2 } else { 0 });
        for (i, (server, client)) in pairs.iter().enumerate() {
            client.write_all(pattern(i, 1000)).await.0.unwrap();
            let got = read_n(server, 1000).await;
            server.write_all(got).await.0.unwrap();
            assert_eq!(read_n(client, 1000).await, pattern(i, 1000));
        }
        // Close the two direct ones: their peers see the end, and the slots come back.
        for (server, client) in pairs.drain(..2) {
            drop(server);
            assert_eof(&client).await;
        }
        for i in 0..2 {
            let (server, client) = pair(&listener).await;
            server.write_all(pattern(i, 10)).await.0.unwrap();
            assert_eq!(read_n(&client, 10).await, pattern(i, 10));
        }
        let stats = ringloop::current_stats().unwrap();
        assert_eq!(stats.direct_descriptors, if uring { 4 } else { 0 });
        assert_eq!(stats.direct_table_full, if uring { 2 } else { 0 });
    });
    lp.close();
}

/// With the fast path off (the builder's list, or `RINGLOOP_DISABLE=direct-fd` in a child),
/// connections are plain fds and work as before.
fn switched_off_connections_are_plain_fds(backend: Backend, by_env: bool) {
    let builder = EventLoop::builder().direct_descriptors(64);
    let builder = if by_env {
        builder
    } else {
        builder.disable_fast_paths("direct-fd")
    };
    let mut lp = loop_with(backend, builder);
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (server, client) = pair(&listener).await;
        client.write_all(pattern(7, 20_000)).await.0.unwrap();
        let got = read_n(&server, 20_000).await;
        server.write_all(got).await.0.unwrap();
        assert_eq!(read_n(&client, 20_000).await, pattern(7, 20_000));
        assert_eq!(direct(), 0);
        drop(server);
        assert_eof(&client).await;
    });
    lp.close();
}

/// A stream accepted by one uring loop and used by another on the same thread: the slot is in
/// the first loop's table only, so the second names the fd; closing it in the first closes the
/// connection.
fn a_direct_stream_used_by_another_loop(backend: Backend) {
    let mut a = direct_loop(backend);
    let mut b = direct_loop(backend);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (server, client) = a.run_until_complete(async {
        let pair = pair(&listener).await;
        let want = u64::from(backend == Backend::Uring);
        assert_eq!(direct(), want);
        pair
    });
    let (server, client) = b.run_until_complete(async move {
        client.write_all(pattern(8, 3000)).await.0.unwrap();
        let got = read_n(&server, 3000).await;
        server.write_all(got).await.0.unwrap();
        assert_eq!(read_n(&client, 3000).await, pattern(8, 3000));
        client.write_all(b"pooled").await.0.unwrap();
        assert_eq!(&server.recv_pooled().await.unwrap()[..], b"pooled");
        (server, client)
    });
    // The stream's registration is with `a`: its slot's close goes with `a`'s next ring trip.
    b.run_until_complete(async move { drop(server) });
    a.run_until_complete(ringloop::time::sleep(Duration::from_millis(1)));
    b.run_until_complete(async move { assert_eof(&client).await });
    a.close();
    b.close();
}

#[test]
fn uring_switched_off_by_the_builder() {
    switched_off_connections_are_plain_fds(Backend::Uring, false);
}

#[test]
fn epoll_switched_off_by_the_builder() {
    switched_off_connections_are_plain_fds(Backend::Epoll, false);
}

#[test]
fn uring_switched_off_by_ringloop_disable() {
    if in_child() {
        switched_off_connections_are_plain_fds(Backend::Uring, true);
    } else {
        run_in_child(
            "uring_switched_off_by_ringloop_disable",
            &[("RINGLOOP_DISABLE", "direct-fd")],
        );
    }
}

/// `RINGLOOP_DIRECT_FDS` turns direct descriptors on for loops whose builder did not say.
#[test]
fn uring_turned_on_by_ringloop_direct_fds() {
    if in_child() {
        let mut lp = common::new_loop(Backend::Uring);
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let (server, client) = pair(&listener).await;
            assert_eq!(direct(), 1);
            server.write_all(b"on").await.0.unwrap();
            assert_eq!(read_n(&client, 2).await, b"on");
        });
        lp.close();
    } else {
        run_in_child(
            "uring_turned_on_by_ringloop_direct_fds",
            &[("RINGLOOP_DIRECT_FDS", "16")],
        );
    }
}

/// A `RINGLOOP_DIRECT_FDS` that is not a number is an error that says what it takes.
#[test]
fn a_bad_ringloop_direct_fds_is_an_error() {
    if in_child() {
        let err = EventLoop::builder().build().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("RINGLOOP_DIRECT_FDS"), "{err}");
        // The builder's word wins over the environment.
        drop(EventLoop::builder().direct_descriptors(8).build().unwrap());
    } else {
        run_in_child(
            "a_bad_ringloop_direct_fds_is_an_error",
            &[("RINGLOOP_DIRECT_FDS", "lots")],
        );
    }
}
