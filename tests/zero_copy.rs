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

on_both!(mixed_writes, dropped_write, switched_off);
