//! Differential testing: random programs (timers, timeouts, spawns, TCP and Unix transfers with
//! reads dropped mid-op, file writes at random offsets, error cases) run on both backends; the
//! observable results must be the same on both, and match a model.
//!
//! (There is no pipe type in ringloop; Unix stream pairs stand in for pipes.)

mod common;

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use ringloop::fs::{File, OpenOptions};
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::time::{sleep, timeout};
use ringloop::{Backend, spawn, yield_now};

#[derive(Debug, Clone)]
struct Transfer {
    unix: bool,
    chunks: Vec<usize>,
    read_sizes: Vec<usize>,
    /// For each read, whether to start it and drop it before it completes.
    drops: Vec<bool>,
}

#[derive(Debug, Clone)]
struct Program {
    /// Timer tasks: each sleeps `3 ms * slot` (distinct slots, so the order is defined).
    timer_slots: Vec<u8>,
    /// Timeouts: (limit in ms, sleep in ms), far enough apart that the outcome is defined.
    timeouts: Vec<(u64, u64)>,
    transfers: Vec<Transfer>,
    /// File writes: (offset, length, byte).
    file_writes: Vec<(u16, u16, u8)>,
}

#[derive(Debug, PartialEq, Eq)]
struct Observed {
    timer_order: Vec<u8>,
    timeout_results: Vec<bool>,
    received: Vec<Vec<u8>>,
    file: Vec<u8>,
    errors: Vec<io::ErrorKind>,
}

fn transfer() -> impl Strategy<Value = Transfer> {
    (
        any::<bool>(),
        prop::collection::vec(1usize..20_000, 1..8),
        prop::collection::vec(1usize..9_000, 1..8),
        prop::collection::vec(any::<bool>(), 1..8),
    )
        .prop_map(|(unix, chunks, read_sizes, drops)| Transfer {
            unix,
            chunks,
            read_sizes,
            drops,
        })
}

fn program() -> impl Strategy<Value = Program> {
    (
        prop::collection::btree_set(0u8..12, 0..6).prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        prop::collection::vec(
            prop_oneof![Just((20u64, 0u64)), Just((5, 60)), Just((40, 5))],
            0..4,
        ),
        prop::collection::vec(transfer(), 0..3),
        prop::collection::vec((0u16..8000, 1u16..3000, any::<u8>()), 0..8),
    )
        .prop_map(|(mut timer_slots, timeouts, transfers, file_writes)| {
            // Shuffle the spawn order deterministically so it differs from the firing order.
            timer_slots.reverse();
            Program {
                timer_slots,
                timeouts,
                transfers,
                file_writes,
            }
        })
}

fn pattern_for(t: usize, len: usize, offset: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i.wrapping_mul(7) ^ (t * 31)) as u8)
        .collect()
}

/// What the program must produce, computed without any loop.
fn model(p: &Program) -> Observed {
    let mut timer_order = p.timer_slots.clone();
    timer_order.sort_unstable();
    let mut file = Vec::new();
    for &(off, len, byte) in &p.file_writes {
        let end = off as usize + len as usize;
        if file.len() < end {
            file.resize(end, 0);
        }
        file[off as usize..end].fill(byte);
    }
    Observed {
        timer_order,
        timeout_results: p.timeouts.iter().map(|&(limit, dur)| dur < limit).collect(),
        received: p
            .transfers
            .iter()
            .enumerate()
            .map(|(t, tr)| pattern_for(t, tr.chunks.iter().sum(), 0))
            .collect(),
        file,
        errors: vec![
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::NotFound,
            io::ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists,
        ],
    }
}

/// A connected pair for a transfer: (writer side, reader side).
async fn pair(unix: bool) -> (Box<dyn AnyStream>, Box<dyn AnyStream>) {
    if unix {
        let (a, b) = UnixStream::pair().unwrap();
        (Box::new(a), Box::new(b))
    } else {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (Box::new(c), Box::new(s))
    }
}

type ReadFuture<'a> = std::pin::Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)> + 'a>>;
type WriteFuture<'a> = std::pin::Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)> + 'a>>;

/// The stream operations the programs use, over both stream types.
trait AnyStream {
    fn read<'a>(&'a self, buf: Vec<u8>) -> ReadFuture<'a>;
    /// `recv_pooled`, its bytes copied out (the buffer goes back to the pool).
    fn read_pooled<'a>(&'a self) -> ReadFuture<'a>;
    fn write_all<'a>(&'a self, buf: Vec<u8>) -> WriteFuture<'a>;
    fn shutdown_write(&self);
}

macro_rules! any_stream {
    ($t:ty) => {
        impl AnyStream for $t {
            fn read<'a>(&'a self, buf: Vec<u8>) -> ReadFuture<'a> {
                Box::pin(<$t>::read(self, buf))
            }
            fn read_pooled<'a>(&'a self) -> ReadFuture<'a> {
                Box::pin(async move {
                    match <$t>::recv_pooled(self).await {
                        Ok(buf) => (Ok(buf.len()), buf.to_vec()),
                        Err(e) => (Err(e), Vec::new()),
                    }
                })
            }
            fn write_all<'a>(&'a self, buf: Vec<u8>) -> WriteFuture<'a> {
                Box::pin(<$t>::write_all(self, buf))
            }
            fn shutdown_write(&self) {
                <$t>::shutdown(self, std::net::Shutdown::Write).unwrap();
            }
        }
    };
}
any_stream!(TcpStream);
any_stream!(UnixStream);

async fn run_transfer(t: usize, tr: Transfer) -> Vec<u8> {
    let (w, r) = pair(tr.unix).await;
    let chunks = tr.chunks.clone();
    let writer = spawn(async move {
        let mut off = 0;
        for len in chunks {
            let (res, _) = w.write_all(pattern_for(t, len, off)).await;
            res.unwrap();
            off += len;
            yield_now().await;
        }
        w.shutdown_write();
    });
    let mut got = Vec::new();
    let mut dropped_last = false;
    for i in 0.. {
        let size = tr.read_sizes[i % tr.read_sizes.len()];
        // A dropped read is always followed by an awaited one: on uring a read is never ready at
        // its first poll, so a reader that drops every read would never see end of stream.
        let drop_this = tr.drops[i % tr.drops.len()] && !dropped_last;
        dropped_last = drop_this;
        // Every third read size makes a pooled receive instead, mixed with the owned reads.
        let read = |size: usize| {
            if size.is_multiple_of(3) {
                r.read_pooled()
            } else {
                r.read(Vec::with_capacity(size))
            }
        };
        if drop_this {
            // Start a read and drop it after one loop turn; what it completed with counts.
            let mut read = read(size);
            let first = poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
            let done = match first {
                Poll::Ready(v) => Some(v),
                Poll::Pending => {
                    yield_now().await;
                    None
                }
            };
            drop(read);
            if let Some((res, buf)) = done {
                if res.unwrap() == 0 {
                    break;
                }
                got.extend_from_slice(&buf);
            }
            continue;
        }
        let (res, buf) = read(size).await;
        if res.unwrap() == 0 {
            break;
        }
        got.extend_from_slice(&buf);
    }
    writer.await.unwrap();
    got
}

async fn run_program(p: Program, dir: std::path::PathBuf) -> Observed {
    let order = Rc::new(RefCell::new(Vec::new()));
    let timers: Vec<_> = p
        .timer_slots
        .iter()
        .map(|&slot| {
            let order = order.clone();
            spawn(async move {
                sleep(Duration::from_millis(3 * slot as u64)).await;
                order.borrow_mut().push(slot);
            })
        })
        .collect();
    let timeout_tasks: Vec<_> = p
        .timeouts
        .iter()
        .map(|&(limit, dur)| {
            spawn(async move {
                timeout(
                    Duration::from_millis(limit),
                    sleep(Duration::from_millis(dur)),
                )
                .await
                .is_ok()
            })
        })
        .collect();
    let transfers: Vec<_> = p
        .transfers
        .iter()
        .cloned()
        .enumerate()
        .map(|(t, tr)| spawn(run_transfer(t, tr)))
        .collect();
    let path = dir.join("file");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(&path)
        .await
        .unwrap();
    for &(off, len, byte) in &p.file_writes {
        let (res, _) = f.write_all_at(vec![byte; len as usize], off as u64).await;
        res.unwrap();
    }
    let len = f.len().await.unwrap();
    let (res, file) = f.read_exact_at(Vec::with_capacity(len as usize), 0).await;
    res.unwrap();
    f.close().await.unwrap();

    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let errors = vec![
        TcpStream::connect(closed_port).await.unwrap_err().kind(),
        File::open(dir.join("missing")).await.unwrap_err().kind(),
        ringloop::fs::remove_file(dir.join("missing"))
            .await
            .unwrap_err()
            .kind(),
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .unwrap_err()
            .kind(),
    ];

    for t in timers {
        t.await.unwrap();
    }
    let mut timeout_results = Vec::new();
    for t in timeout_tasks {
        timeout_results.push(t.await.unwrap());
    }
    let mut received = Vec::new();
    for t in transfers {
        received.push(t.await.unwrap());
    }
    let timer_order = order.borrow().clone();
    Observed {
        timer_order,
        timeout_results,
        received,
        file,
        errors,
    }
}

/// Where two observations differ, briefly (byte vectors can be long).
fn difference(a: &Observed, b: &Observed) -> String {
    let mut out = Vec::new();
    if a.timer_order != b.timer_order {
        out.push(format!(
            "timer order {:?} vs {:?}",
            a.timer_order, b.timer_order
        ));
    }
    if a.timeout_results != b.timeout_results {
        out.push(format!(
            "timeouts {:?} vs {:?}",
            a.timeout_results, b.timeout_results
        ));
    }
    for (i, (x, y)) in a.received.iter().zip(&b.received).enumerate() {
        if x != y {
            let at = x
                .iter()
                .zip(y)
                .position(|(p, q)| p != q)
                .unwrap_or(x.len().min(y.len()));
            out.push(format!(
                "transfer {i}: {} vs {} bytes, first difference at {at}",
                x.len(),
                y.len()
            ));
        }
    }
    if a.file != b.file {
        out.push(format!("file: {} vs {} bytes", a.file.len(), b.file.len()));
    }
    if a.errors != b.errors {
        out.push(format!("errors {:?} vs {:?}", a.errors, b.errors));
    }
    out.join("; ")
}

fn observe(backend: Backend, p: &Program) -> Observed {
    if std::env::var_os("DIFF_TRACE").is_some() {
        eprintln!("TRACE {backend} {p:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lp = common::new_loop(backend);
    let out = lp.run_until_complete(run_program(p.clone(), dir.path().to_owned()));
    lp.close();
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("RINGLOOP_DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(32),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn both_backends_agree_with_each_other_and_the_model(p in program()) {
        let want = model(&p);
        let uring = observe(Backend::Uring, &p);
        let epoll = observe(Backend::Epoll, &p);
        prop_assert!(uring == epoll, "uring and epoll disagree: {}", difference(&uring, &epoll));
        prop_assert!(uring == want, "the backends disagree with the model: {}", difference(&uring, &want));
    }
}
