//! Cancellation storms, both backends: many random drops of in-flight reads (owned and
//! pooled), writes, accepts, connects and opens. Afterwards no fd is leaked, memory does not grow
//! from one storm to the next, and every connection still carries data correctly.
//!
//! `RINGLOOP_STORM_OPS` sets the drops per storm (default 100,000).

mod common;

use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use common::{Rng, in_child, open_fds, pattern, run_in_child, test_path};
use ringloop::fs::File;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::time::sleep;
use ringloop::{spawn, yield_now};

const PAIRS: usize = 64;
/// Pairs `0..EXACT` carry a known pattern, written whole by a writer task while the storms drop
/// reads on them: every byte must arrive, in order, none lost. On the other pairs the storms also
/// drop writes, so an unknown number of `w` bytes precede the final marker.
const EXACT: usize = 32;
/// Bytes each exact pair carries.
const EXACT_BYTES: usize = 2 << 20;
const PIECE: usize = 16 * 1024;

fn storm_ops() -> usize {
    std::env::var("RINGLOOP_STORM_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// The byte at position `i` of `common::pattern`.
fn pattern_byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

/// Checks bytes pair `p` received at stream position `at`.
fn check(p: usize, at: usize, bytes: &[u8]) {
    for (k, &c) in bytes.iter().enumerate() {
        let want = if p < EXACT {
            pattern_byte(at + k)
        } else {
            b'w'
        };
        assert_eq!(
            c,
            want,
            "pair {p}: byte {} is wrong (lost, reordered or foreign)",
            at + k
        );
    }
}

/// Starts `fut`, lets the loop turn 0-2 times, then drops it. Returns its output if it finished.
async fn start_and_drop<F: Future>(fut: F, rng: &mut Rng) -> Option<F::Output> {
    let mut fut = Box::pin(fut);
    let turns = rng.below(3);
    for turn in 0..=turns {
        if let Poll::Ready(v) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            return Some(v);
        }
        if turn < turns {
            yield_now().await;
        }
    }
    None
}

struct Setup {
    pairs: Vec<(Rc<TcpStream>, TcpStream)>,
    /// Bytes each pair's reader has seen so far.
    received: Vec<usize>,
    listener: TcpListener,
    file: std::path::PathBuf,
}

/// One storm: `ops` random starts-and-drops.
async fn storm(ops: usize, rng: &mut Rng, s: &mut Setup) {
    let addr = s.listener.local_addr().unwrap();
    for _ in 0..ops {
        match rng.below(5) {
            0 => {
                let p = rng.below(PAIRS as u64) as usize;
                let cap = 1 + rng.below(4096) as usize;
                if rng.below(2) == 0 {
                    // A pooled receive, mixed with the owned reads on the same streams.
                    let read = s.pairs[p].1.recv_pooled();
                    if let Some(res) = start_and_drop(read, rng).await {
                        let buf = res.unwrap();
                        check(p, s.received[p], &buf);
                        s.received[p] += buf.len();
                    }
                    continue;
                }
                let read = s.pairs[p].1.read(Vec::with_capacity(cap));
                if let Some((res, buf)) = start_and_drop(read, rng).await {
                    let n = res.unwrap();
                    check(p, s.received[p], &buf[..n]);
                    s.received[p] += n;
                }
            }
            1 => {
                let p = EXACT + rng.below((PAIRS - EXACT) as u64) as usize;
                let len = 1 + rng.below(8192) as usize;
                if let Some((res, _)) =
                    start_and_drop(s.pairs[p].0.write(vec![b'w'; len]), rng).await
                {
                    res.unwrap();
                }
            }
            2 => {
                if let Some(res) = start_and_drop(s.listener.accept(), rng).await {
                    drop(res.unwrap());
                }
            }
            3 => {
                if let Some(res) = start_and_drop(TcpStream::connect(addr), rng).await {
                    drop(res.unwrap());
                }
            }
            _ => {
                if let Some(res) = start_and_drop(File::open(&s.file), rng).await {
                    drop(res.unwrap());
                }
            }
        }
    }
    // Let cancelled ops' completions come in.
    sleep(Duration::from_millis(50)).await;
}

/// Reads each pair to its end while the exact pairs' writers finish and the other pairs get a
/// marker: exact pairs must complete their pattern; the others must show only `w` bytes and then
/// the marker, whole.
/// Reads every stream to its end and checks it; returns how many bytes were checked in all.
async fn verify(s: Setup, writers: Vec<ringloop::JoinHandle<()>>) -> usize {
    let mut checked = 0;
    let mut readers = Vec::new();
    let mut writer_sides = Vec::new();
    for (p, ((a, b), mut at)) in s.pairs.into_iter().zip(s.received).enumerate() {
        writer_sides.push(a);
        readers.push(spawn(async move {
            let mut tail = Vec::new();
            let mut buf = Vec::with_capacity(65536);
            loop {
                let (res, bb) = b.read(buf).await;
                buf = bb;
                let n = res.unwrap();
                if n == 0 {
                    return (at, tail);
                }
                if p < EXACT {
                    check(p, at, &buf[..n]);
                    at += n;
                } else {
                    tail.extend_from_slice(&buf[..n]);
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for (p, a) in writer_sides.iter().enumerate().skip(EXACT) {
        let (res, _) = a.write_all(pattern(p * 1000, 1000)).await;
        res.unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
    }
    for (p, reader) in readers.into_iter().enumerate() {
        let (at, tail) = reader.await.unwrap();
        if p < EXACT {
            assert_eq!(at, EXACT_BYTES, "pair {p}: bytes were lost");
            checked += at;
            continue;
        }
        let marker = pattern(p * 1000, 1000);
        assert!(
            tail.len() >= marker.len(),
            "pair {p}: the marker is missing"
        );
        let (storm_bytes, end) = tail.split_at(tail.len() - marker.len());
        assert!(
            end == &marker[..],
            "pair {p}: the marker arrived damaged or out of order"
        );
        check(p, at, storm_bytes);
        checked += at + tail.len();
    }
    checked
}

both_backends! {
    fn cancellation_storms_leak_nothing_and_lose_nothing(lp: &mut EventLoop) {
        if !in_child() {
            let name = test_path(lp.backend(), "cancellation_storms_leak_nothing_and_lose_nothing");
            let out = run_in_child(&name, &[]);
            assert!(out.contains("storms:"), "{out}");
            for line in out.lines().filter(|l| l.starts_with("storms:")) {
                eprintln!("{} {line}", lp.backend());
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let ops = storm_ops();
        let before_fds = open_fds();
        lp.run_until_complete(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut pairs = Vec::new();
            for _ in 0..PAIRS {
                let c = TcpStream::connect(addr).await.unwrap();
                let (server, _) = listener.accept().await.unwrap();
                pairs.push((Rc::new(c), server));
            }
            // The exact pairs' writers: the whole pattern, never dropped, then EOF.
            let writers: Vec<_> = pairs
                .iter()
                .take(EXACT)
                .map(|(a, _)| {
                    let a = a.clone();
                    spawn(async move {
                        let mut at = 0;
                        while at < EXACT_BYTES {
                            let (res, _) = a.write_all(pattern(at, PIECE)).await;
                            res.unwrap();
                            at += PIECE;
                        }
                        a.shutdown(std::net::Shutdown::Write).unwrap();
                    })
                })
                .collect();
            let mut setup = Setup { pairs, received: vec![0; PAIRS], listener, file };
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            storm(ops, &mut rng, &mut setup).await;
            let rss_first = rss_kib();
            storm(ops, &mut rng, &mut setup).await;
            let rss_second = rss_kib();
            println!(
                "storms: {ops} drops each; RSS after the first {rss_first} KiB, after the second \
                 {rss_second} KiB; storm reads returned {} bytes",
                setup.received.iter().sum::<usize>()
            );
            assert!(
                rss_second <= rss_first + 8 * 1024,
                "memory grew by {} KiB in a second storm",
                rss_second - rss_first
            );
            let checked = verify(setup, writers).await;
            println!("storms: {checked} bytes checked, in order, none lost or doubled");
            sleep(Duration::from_millis(20)).await;
        });
        assert_eq!(open_fds(), before_fds, "fds leaked by the storms");
    }
}
