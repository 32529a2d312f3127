//! Zero-copy sends (`Builder::zero_copy_threshold`) on both backends: writes at or above the
//! threshold go zero-copy on uring and hand their buffer back only after the kernel's
//! notification; smaller writes and every epoll write stay plain sends. The bytes arrive in order
//! either way, a dropped zero-copy write leaves the stream usable, and the loop closes cleanly
//! with a notification still to come.

mod common;

use std::time::Duration;

use ringloop::{Backend, EventLoop};

use common::{pattern, read_n, tcp_pair};

const THRESHOLD: usize = 16 * 1024;

fn zc_loop(backend: Backend, threshold: Option<usize>) -> EventLoop {
    EventLoop::builder()
        .backend(backend)
        .zero_copy_threshold(threshold)
        .build()
        .unwrap_or_else(|e| panic!("the {backend} backend is required here but failed: {e}"))
}

fn stats() -> ringloop::Stats {
    ringloop::current_stats().expect("inside a loop")
}

/// Writes of 1 KiB to 1 MiB, large and small mixed, with `write_all` and `write`: each large
/// write on uring counts a zero-copy send, and when it returns its notification has come.
fn mixed_writes(backend: Backend) {
    let mut lp = zc_loop(backend, Some(THRESHOLD));
    lp.run_until_complete(async move {
        let (tx, rx) = tcp_pair().await;
        let sizes = [
            1024usize,
            1 << 20,
            4096,
            64 * 1024,
            THRESHOLD,
            THRESHOLD - 1,
            300_000,
        ];
        let total: usize = sizes.iter().sum::<usize>() * 4;
        let reader = ringloop::spawn(async move { read_n(&rx, total).await });
        let mut expected = Vec::with_capacity(total);
        let mut large = 0u64;
        for round in 0..4 {
            for (i, &len) in sizes.iter().enumerate() {
                let data = pattern(expected.len(), len);
                expected.extend_from_slice(&data);
                let before = stats();
                let back = if (round + i) % 2 == 0 {
                    let (res, back) = tx.write_all(data).await;
                    res.unwrap();
                    back
                } else {
                    // `write` may send less than given: finish with `write_all` of the rest.
                    let (res, back) = tx.write(data).await;
                    let n = res.unwrap();
                    if n < len {
                        let rest = back[n..].to_vec();
                        tx.write_all(rest).await.0.unwrap();
                    }
                    back
                };
                assert_eq!(back.len(), len, "the buffer came back whole");
                let after = stats();
                assert_eq!(
                    after.zero_copy_notifications, after.zero_copy_sends,
                    "a write returned before the kernel's notification for its buffer"
                );
                if backend == Backend::Uring && len >= THRESHOLD {
                    large += 1;
                    assert!(
                        after.zero_copy_sends > before.zero_copy_sends,
                        "a {len}-byte write at or above the threshold was not zero-copy"
                    );
                } else {
                    assert_eq!(
                        after.zero_copy_sends, before.zero_copy_sends,
                        "a {len}-byte write went zero-copy on {backend}"
                    );
                }
            }
        }
        let got = reader.await.unwrap();
        assert!(got == expected, "the bytes arrived changed or out of order");
        let end = stats();
        if backend == Backend::Uring {
            assert!(end.zero_copy_sends >= large, "{end:?}");
        } else {
            assert_eq!(end.zero_copy_sends, 0);
        }
    });
    lp.close();
}

/// A zero-copy write dropped while the kernel holds it (the peer reads nothing, so the socket
/// buffer is full): the stream still works, every byte the kernel took arrives before the next
/// write's, and closing the loop waits for the notifications rather than freeing the buffer
/// under the kernel.
fn dropped_write(backend: Backend) {
    let mut lp = zc_loop(backend, Some(THRESHOLD));
    lp.run_until_complete(async move {
        let (tx, rx) = tcp_pair().await;
        let big = vec![0xa5u8; 32 << 20];
        let dropped = ringloop::time::timeout(Duration::from_millis(50), tx.write_all(big)).await;
        assert!(dropped.is_err(), "32 MiB fit into an unread socket");
        // The stream takes the next write after whatever the dropped one sent.
        let marker = b"after the dropped write".to_vec();
        let writer = ringloop::spawn(async move {
            tx.write_all(marker).await.0.unwrap();
            tx
        });
        let mut got = Vec::new();
        let mut buf = Vec::with_capacity(1 << 20);
        while !got.ends_with(b"after the dropped write") {
            let (res, b) = rx.read(buf).await;
            let n = res.unwrap();
            assert!(n > 0, "end of stream before the marker");
            got.extend_from_slice(&b[..n]);
            buf = b;
        }
        let sent = got.len() - b"after the dropped write".len();
        assert!(
            got[..sent].iter().all(|&b| b == 0xa5),
            "bytes of the dropped write were changed"
        );
        let _tx = writer.await.unwrap();
        if backend == Backend::Uring {
            assert!(stats().zero_copy_sends > 0, "no zero-copy send was made");
        }
    });
    // Closing waits for every completion, notifications included.
    lp.close();
}

/// `zero_copy_threshold(None)` and `RINGLOOP_DISABLE=send-zc`-style builders make plain sends.
fn switched_off(backend: Backend) {
    for mut lp in [
        zc_loop(backend, None),
        EventLoop::builder()
            .backend(backend)
            .zero_copy_threshold(Some(1))
            .disable_fast_paths("send-zc")
            .build()
            .unwrap(),
    ] {
        lp.run_until_complete(async {
            let (tx, rx) = tcp_pair().await;
            let data = pattern(0, 1 << 20);
            let reader = ringloop::spawn(async move { read_n(&rx, 1 << 20).await });
            tx.write_all(data.clone()).await.0.unwrap();
            assert!(reader.await.unwrap() == data);
            assert_eq!(stats().zero_copy_sends, 0);
        });
        lp.close();
    }
}

/// With a threshold set, large writes on a Unix stream (AF_UNIX has no zero-copy) go as plain
/// sends; they used to fail with EOPNOTSUPP, every one of them.
fn unix_stream_writes_with_a_threshold(backend: Backend) {
    let mut lp = zc_loop(backend, Some(THRESHOLD));
    lp.run_until_complete(async move {
        let (tx, rx) = ringloop::net::UnixStream::pair().unwrap();
        let data = pattern(0, 1 << 20);
        let reader = ringloop::spawn(async move {
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(1 << 16);
            while got.len() < 2 << 20 {
                let (res, b) = rx.read(buf).await;
                let n = res.unwrap();
                assert!(n > 0, "end of stream after {} bytes", got.len());
                got.extend_from_slice(&b[..n]);
                buf = b;
            }
            got
        });
        tx.write_all(data.clone()).await.0.unwrap();
        let (res, _) = tx.write(data.clone()).await;
        let n = res.unwrap();
        tx.write_all(data[n..].to_vec()).await.0.unwrap();
        let got = reader.await.unwrap();
        assert!(got[..1 << 20] == data[..] && got[1 << 20..] == data[..]);
        assert_eq!(stats().zero_copy_sends, 0);
    });
    lp.close();
}

/// A socket the loop takes for TCP but whose kernel refuses zero-copy (here a Unix socket handed
/// over as a `std::net::TcpStream`): the send that the kernel refused with EOPNOTSUPP goes again
/// as a plain send.
fn refused_zero_copy_falls_back_to_a_plain_send(backend: Backend) {
    let mut lp = zc_loop(backend, Some(THRESHOLD));
    lp.run_until_complete(async move {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = std::net::TcpStream::from(std::os::fd::OwnedFd::from(a));
        let tx = ringloop::net::TcpStream::from_std(a).unwrap();
        let rx = ringloop::net::UnixStream::from_std(b).unwrap();
        let data = pattern(3, 1 << 20);
        let reader = ringloop::spawn(async move {
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(1 << 16);
            while got.len() < 1 << 20 {
                let (res, b) = rx.read(buf).await;
                let n = res.unwrap();
                assert!(n > 0, "end of stream after {} bytes", got.len());
                got.extend_from_slice(&b[..n]);
                buf = b;
            }
            got
        });
        tx.write_all(data.clone()).await.0.unwrap();
        assert!(reader.await.unwrap() == data);
    });
    lp.close();
}

/// A zero-copy write to a peer that stopped reading (its window full), dropped: the kernel holds
/// the write's pages until the peer takes the bytes, which it never does. Closing the loop must
/// still end (it used to wait for the notification for good: a deadlock, the peer being in this
/// very loop).
fn close_with_a_peer_that_stopped_reading(backend: Backend) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lp = zc_loop(backend, Some(THRESHOLD));
        let kept = lp.run_until_complete(async move {
            let (tx, rx) = tcp_pair().await;
            let big = vec![0x5au8; 32 << 20];
            let write = ringloop::time::timeout(Duration::from_millis(200), tx.write_all(big));
            assert!(write.await.is_err(), "32 MiB fit into an unread socket");
            (tx, rx)
        });
        lp.close();
        drop(kept);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("closing the loop waited for a peer that stopped reading");
}

/// The same dropped write, then the stream dropped while the loop runs: the connection is reset,
/// so the kernel lets go of the pages (the notification comes) and the peer learns it, rather
/// than the socket staying open with megabytes queued.
fn dropped_stream_with_a_pinned_zero_copy_write(backend: Backend) {
    let mut lp = zc_loop(backend, Some(THRESHOLD));
    lp.run_until_complete(async move {
        let (tx, rx) = tcp_pair().await;
        let big = vec![0x5au8; 32 << 20];
        let write = ringloop::time::timeout(Duration::from_millis(200), tx.write_all(big));
        assert!(write.await.is_err(), "32 MiB fit into an unread socket");
        drop(tx);
        // Wait (bounded) for the notification of every zero-copy send.
        for _ in 0..500 {
            let s = stats();
            if s.zero_copy_notifications == s.zero_copy_sends {
                break;
            }
            ringloop::time::sleep(Duration::from_millis(10)).await;
        }
        let s = stats();
        assert_eq!(
            s.zero_copy_notifications, s.zero_copy_sends,
            "the dropped stream's zero-copy pages are still held"
        );
        // The peer sees the end: what was queued before the reset may come first, then a reset
        // (or an end of stream), within a bound.
        let end = ringloop::time::timeout(Duration::from_secs(10), async {
            let mut buf = Vec::with_capacity(1 << 20);
            loop {
                let (res, b) = rx.read(buf).await;
                match res {
                    Ok(0) | Err(_) => return,
                    Ok(_) => buf = b,
                }
            }
        });
        end.await
            .expect("the peer never saw the dropped stream end");
    });
    lp.close();
}

macro_rules! on_both {
    ($($name:ident),*) => {
        mod uring {
            $(#[test]
            fn $name() {
                super::$name(ringloop::Backend::Uring);
            })*
        }
        mod epoll {
            $(#[test]
            fn $name() {
                super::$name(ringloop::Backend::Epoll);
            })*
        }
    };
}

on_both!(
    mixed_writes,
    dropped_write,
    switched_off,
    unix_stream_writes_with_a_threshold,
    refused_zero_copy_falls_back_to_a_plain_send,
    close_with_a_peer_that_stopped_reading,
    dropped_stream_with_a_pinned_zero_copy_write
);
