//! Cancellation at every await, both backends: every I/O future of the public API is dropped
//! after each possible number of polls (`common::cancel::drop_at_every_poll`, the loop running
//! between polls), then the object must still work (bytes in order, nothing lost or doubled on a
//! stream), `close()` must be prompt and nothing may leak (tasks, pool buffers, fds: each test
//! runs in a child process and counts them, `common::cancel::run_checked`).
//!
//! This file: stream reads (plain, vectored, pooled), writes (plain, vectored, `write_all`,
//! zero-copy), `send_file` and `send_file_with_head`. Listeners, connects, UDP and `AsyncFd` are in
//! `cancel_sockets.rs`; the fs, process, signal and time futures in `cancel_more.rs`.

mod common;
#[path = "common/duplex.rs"]
mod duplex;

use std::io;
use std::time::Duration;

use common::cancel::{Attempt, attempt_value, check_attempts, drop_at_every_poll, run_checked};
use common::pattern;
use duplex::{Duplex, unix_pair};
use ringloop::fs::File;
use ringloop::net::TcpStream;
use ringloop::time::{sleep, timeout};
use ringloop::{Backend, EventLoop};

#[derive(Clone, Copy, Debug)]
enum ReadKind {
    Read,
    Readv,
    Pooled,
    PooledMany,
}

async fn read_once<S: Duplex>(s: &S, kind: ReadKind) -> io::Result<Vec<u8>> {
    match kind {
        ReadKind::Read => {
            let (res, buf) = s.read(Vec::with_capacity(97)).await;
            res.map(|_| buf)
        }
        ReadKind::Readv => {
            let (res, bufs) = s
                .readv(vec![Vec::with_capacity(13), Vec::with_capacity(50)])
                .await;
            res.map(|_| bufs.concat())
        }
        ReadKind::Pooled => Ok(s.recv_pooled().await?.to_vec()),
        ReadKind::PooledMany => {
            let mut out = Vec::new();
            s.recv_pooled_many(&mut out).await?;
            Ok(out.iter().flat_map(|b| b.iter().copied()).collect())
        }
    }
}

/// A writer task sends a pattern in small chunks with pauses; the reader drops its reads at
/// every poll. Every byte must come once, in order, and the end of stream after them.
async fn reads_lose_nothing<S: Duplex>(reader: S, writer: S, kind: ReadKind) {
    const CHUNK: usize = 700;
    const CHUNKS: usize = 40;
    let w = ringloop::spawn(async move {
        for i in 0..CHUNKS {
            writer.write_all(pattern(i * CHUNK, CHUNK)).await.0.unwrap();
            sleep(Duration::from_millis(1)).await;
        }
        // `writer` is dropped here: the reader sees the end of stream.
    });
    let mut got = Vec::new();
    loop {
        let sweep = drop_at_every_poll(async || read_once(&reader, kind).await).await;
        let bytes = sweep.output.unwrap();
        if bytes.is_empty() {
            break;
        }
        got.extend_from_slice(&bytes);
    }
    w.await.unwrap();
    let want = pattern(0, CHUNK * CHUNKS);
    assert_eq!(got.len(), want.len(), "{kind:?}: bytes lost or doubled");
    let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "{kind:?}: bytes out of order");
}

#[derive(Clone, Copy, Debug)]
enum WriteKind {
    Write,
    Writev,
    WriteAll,
}

async fn write_once<S: Duplex>(s: &S, kind: WriteKind, value: u8, len: usize) -> usize {
    match kind {
        WriteKind::Write => s.write(vec![value; len]).await.0.unwrap(),
        WriteKind::Writev => {
            let half = len / 2;
            let bufs = vec![vec![value; half], vec![value; len - half]];
            s.writev(bufs).await.0.unwrap()
        }
        WriteKind::WriteAll => {
            s.write_all(vec![value; len]).await.0.unwrap();
            len
        }
    }
}

/// A slow reader task; returns everything it read until the end of stream.
fn slow_reader<S: Duplex>(reader: S) -> ringloop::JoinHandle<Vec<u8>> {
    ringloop::spawn(async move {
        let mut got = Vec::new();
        let mut buf = Vec::with_capacity(16 * 1024);
        loop {
            let (res, b) = reader.read(buf).await;
            if res.unwrap() == 0 {
                return got;
            }
            got.extend_from_slice(&b);
            buf = b;
            sleep(Duration::from_micros(300)).await;
        }
    })
}

/// Writes of `len` bytes dropped at every poll against a slow reader: each attempt's bytes come
/// whole or as a prefix, in order, never twice.
async fn writes_stay_in_order<S: Duplex>(writer: S, reader: S, kind: WriteKind, len: usize) {
    let r = slow_reader(reader);
    let mut attempts: Vec<Attempt> = Vec::new();
    for _ in 0..12 {
        let sweep = drop_at_every_poll(async || {
            let n = attempts.len();
            let value = attempt_value(n);
            attempts.push(Attempt {
                value,
                len,
                completed: None,
            });
            (n, write_once(&writer, kind, value, len).await)
        })
        .await;
        let (n, wrote) = sweep.output;
        attempts[n].completed = Some(wrote);
    }
    // The stream still works: a last write goes whole.
    let value = attempt_value(attempts.len());
    writer.write_all(vec![value; 1000]).await.0.unwrap();
    attempts.push(Attempt {
        value,
        len: 1000,
        completed: Some(1000),
    });
    drop(writer);
    let got = timeout(Duration::from_secs(20), r)
        .await
        .expect("the reader never saw the end of stream")
        .unwrap();
    check_attempts(&got, &attempts);
}

/// `send_file` of 32 KiB regions dropped at every poll: the regions' bytes in order. `head`:
/// by `send_file_with_head`, each region after a head of its own value (held with `MSG_MORE`
/// until the region's bytes follow), so a dropped one may leave part of a head.
async fn send_file_stays_in_order<S: Duplex>(writer: S, reader: S, head: bool) {
    const REGION: usize = 32 * 1024;
    const HEAD: usize = 300;
    const REGIONS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regions");
    let content: Vec<u8> = (0..REGIONS)
        .flat_map(|r| vec![attempt_value(r); REGION])
        .collect();
    std::fs::write(&path, content).unwrap();
    let file = File::open(&path).await.unwrap();
    let r = slow_reader(reader);
    let mut attempts: Vec<Attempt> = Vec::new();
    for _ in 0..8 {
        let sweep = drop_at_every_poll(async || {
            let n = attempts.len();
            assert!(n < REGIONS, "more attempts than regions: raise REGIONS");
            let head_len = if head { HEAD } else { 0 };
            attempts.push(Attempt {
                value: attempt_value(n),
                len: head_len + REGION,
                completed: None,
            });
            let (off, len) = ((n * REGION) as u64, REGION as u64);
            let sent = if head {
                let bytes = vec![attempt_value(n); HEAD];
                writer.send_file_with_head(&bytes, &file, off, len).await
            } else {
                writer.send_file(&file, off, len).await
            };
            (n, head_len + sent.unwrap() as usize)
        })
        .await;
        let (n, sent) = sweep.output;
        attempts[n].completed = Some(sent);
    }
    drop(writer);
    let got = timeout(Duration::from_secs(20), r)
        .await
        .expect("the reader never saw the end of stream")
        .unwrap();
    check_attempts(&got, &attempts);
}

in_child_per_backend! {
    tcp_reads, unix_reads, pooled_receives, tcp_writes, unix_writes, zero_copy_writes, send_file,
}

/// A zero-copy write dropped while its peer has stopped reading (the peer lives on in this
/// process): `close()` must still be prompt, and the socket must not stay open after the peer
/// goes. Zero-copy is uring's; on epoll it is a plain dropped write.
fn zero_copy_write_dropped_to_a_stalled_peer(backend: Backend) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    // Counted without the peer, which is dropped before the count is compared.
    let fds = common::open_fds() - 1;
    let mut lp = EventLoop::builder()
        .backend(backend)
        .zero_copy_threshold(Some(16 * 1024))
        .build()
        .unwrap();
    lp.run_until_complete(async {
        let s = TcpStream::from_std(listener.accept().unwrap().0).unwrap();
        let mut write = std::pin::pin!(s.write_all(vec![1u8; 32 << 20]));
        for _ in 0..5 {
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx)));
            assert!(
                polled.await.is_pending(),
                "32 MiB went to a peer that reads nothing"
            );
            sleep(Duration::from_millis(10)).await;
        }
    });
    common::cancel::close_within(lp, common::cancel::CLOSE_BOUND);
    drop(peer);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while common::open_fds() != fds {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream of a dropped zero-copy write is still open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A test of a defect the suite found outside its files (issue 29 item 11b, fixed since), alone
/// in a child process.
mod defects {
    fn run(backend: ringloop::Backend, name: &str, test: fn(ringloop::Backend)) {
        if crate::common::in_child() {
            test(backend);
        } else {
            crate::common::cancel::run_ignored_in_child(&format!("defects::{name}"));
        }
    }

    #[test]
    fn uring_zero_copy_write_dropped_to_a_stalled_peer() {
        run(
            ringloop::Backend::Uring,
            "uring_zero_copy_write_dropped_to_a_stalled_peer",
            super::zero_copy_write_dropped_to_a_stalled_peer,
        );
    }

    #[test]
    fn epoll_zero_copy_write_dropped_to_a_stalled_peer() {
        run(
            ringloop::Backend::Epoll,
            "epoll_zero_copy_write_dropped_to_a_stalled_peer",
            super::zero_copy_write_dropped_to_a_stalled_peer,
        );
    }
}

fn tcp_reads(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        for kind in [ReadKind::Read, ReadKind::Readv] {
            let (a, b) = common::tcp_pair().await;
            reads_lose_nothing(a, b, kind).await;
        }
    });
}

fn unix_reads(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        for kind in [ReadKind::Read, ReadKind::Readv] {
            let (a, b) = unix_pair().await;
            reads_lose_nothing(a, b, kind).await;
        }
    });
}

fn pooled_receives(backend: Backend) {
    run_checked(backend, EventLoop::builder().recv_pool(64, 512), async {
        for kind in [ReadKind::Pooled, ReadKind::PooledMany, ReadKind::Read] {
            let (a, b) = common::tcp_pair().await;
            reads_lose_nothing(a, b, kind).await;
            let (a, b) = unix_pair().await;
            reads_lose_nothing(a, b, kind).await;
        }
    });
}

fn tcp_writes(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        for kind in [WriteKind::Write, WriteKind::Writev, WriteKind::WriteAll] {
            let (a, b) = common::tcp_pair().await;
            writes_stay_in_order(a, b, kind, 256 * 1024).await;
        }
    });
}

fn unix_writes(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        for kind in [WriteKind::Write, WriteKind::Writev, WriteKind::WriteAll] {
            let (a, b) = unix_pair().await;
            writes_stay_in_order(a, b, kind, 256 * 1024).await;
        }
    });
}

/// Writes above the zero-copy threshold (`IORING_OP_SEND_ZC` on uring, TCP only); a Unix stream
/// with the same loop must fall back to plain sends.
fn zero_copy_writes(backend: Backend) {
    let builder = EventLoop::builder().zero_copy_threshold(Some(16 * 1024));
    run_checked(backend, builder, async {
        for kind in [WriteKind::Write, WriteKind::WriteAll] {
            let (a, b) = common::tcp_pair().await;
            writes_stay_in_order(a, b, kind, 256 * 1024).await;
        }
        let stats = ringloop::current_stats().unwrap();
        eprintln!(
            "zero-copy sends: {}, notifications: {}",
            stats.zero_copy_sends, stats.zero_copy_notifications
        );
        if backend == Backend::Uring && common::kernel_at_least(6, 0) {
            assert!(stats.zero_copy_sends > 0, "no write went zero-copy");
        }
    });
}

fn send_file(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        for head in [false, true] {
            let (a, b) = common::tcp_pair().await;
            send_file_stays_in_order(a, b, head).await;
            let (a, b) = unix_pair().await;
            send_file_stays_in_order(a, b, head).await;
        }
    });
}
