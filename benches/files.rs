//! File benches: 4 KiB random reads and 1 MiB sequential reads from a 256 MiB file in the page
//! cache, on the uring backend (ring ops), the epoll backend (the blocking pool), tokio (reads on
//! its blocking pool through `spawn_blocking`, which is what `tokio::fs` does), and std's `pread`
//! in a plain loop on the bench thread: the floor, with no event loop at all.
//!
//! The file is written once to a temporary directory under `target/` and read once before
//! measuring, so every read is served from the page cache.
//!
//! ```text
//! cargo bench -p ringloop-benches --bench files
//! ```

mod support;

use std::cell::Cell;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::{ALL, Rng};

const FILE_SIZE: u64 = 256 * 1024 * 1024;
const SMALL: usize = 4096;
const LARGE: usize = 1024 * 1024;

fn make_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("bench-256MiB");
    let block = vec![0xa5u8; LARGE];
    let mut f = std::fs::File::create(&path).expect("create the bench file");
    for _ in 0..FILE_SIZE / LARGE as u64 {
        std::io::Write::write_all(&mut f, &block).expect("write the bench file");
    }
    drop(f);
    // Read it once, so it is all in the page cache.
    let f = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; LARGE];
    for i in 0..FILE_SIZE / LARGE as u64 {
        f.read_exact_at(&mut buf, i * LARGE as u64).unwrap();
    }
    path
}

fn random_offset(rng: &mut Rng) -> u64 {
    (rng.next() % (FILE_SIZE / SMALL as u64)) * SMALL as u64
}

/// `iters` random 4 KiB reads, `in_flight` at a time, on ringloop.
fn ringloop_random(
    lp: &mut ringloop::EventLoop,
    file: &Rc<ringloop::fs::File>,
    iters: u64,
    in_flight: usize,
) -> Duration {
    lp.run_until_complete(async {
        let left = Rc::new(Cell::new(iters));
        let start = Instant::now();
        let workers: Vec<_> = (0..in_flight)
            .map(|w| {
                let (file, left) = (file.clone(), left.clone());
                ringloop::spawn(async move {
                    let mut rng = Rng(0x9e37_79b9 + w as u64);
                    let mut buf = Vec::with_capacity(SMALL);
                    while left.get() > 0 {
                        left.set(left.get() - 1);
                        let (res, b) = file.read_at(buf, random_offset(&mut rng)).await;
                        buf = b;
                        assert_eq!(res.unwrap(), SMALL);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        start.elapsed()
    })
}

/// The same on tokio: each read is a `pread` on tokio's blocking pool.
fn tokio_random(
    rt: &tokio::runtime::Runtime,
    file: &Arc<std::fs::File>,
    iters: u64,
    in_flight: usize,
) -> Duration {
    rt.block_on(async {
        let left = Arc::new(std::sync::atomic::AtomicU64::new(iters));
        let start = Instant::now();
        let workers: Vec<_> = (0..in_flight)
            .map(|w| {
                let (file, left) = (file.clone(), left.clone());
                tokio::spawn(async move {
                    use std::sync::atomic::Ordering::Relaxed;
                    let mut rng = Rng(0x9e37_79b9 + w as u64);
                    let mut buf = vec![0u8; SMALL];
                    while left
                        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        let off = random_offset(&mut rng);
                        let f = file.clone();
                        let (res, b) = tokio::task::spawn_blocking(move || {
                            let r = f.read_at(&mut buf, off);
                            (r, buf)
                        })
                        .await
                        .unwrap();
                        buf = b;
                        assert_eq!(res.unwrap(), SMALL);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        start.elapsed()
    })
}

fn random_reads(c: &mut Criterion, path: &Path) {
    for in_flight in [1usize, 32] {
        let mut g = c.benchmark_group(format!("file_random_4KiB_{in_flight}inflight"));
        g.throughput(Throughput::Elements(1));
        for rt in ALL {
            g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
                match rt.backend() {
                    Some(backend) => {
                        let mut lp = support::ringloop(backend);
                        let file = Rc::new(
                            lp.run_until_complete(ringloop::fs::File::open(path))
                                .unwrap(),
                        );
                        b.iter_custom(|iters| ringloop_random(&mut lp, &file, iters, in_flight));
                    }
                    None => {
                        let rt = support::tokio();
                        let file = Arc::new(std::fs::File::open(path).unwrap());
                        b.iter_custom(|iters| tokio_random(&rt, &file, iters, in_flight));
                    }
                }
            });
        }
        // The floor: pread in a loop, one at a time, no event loop.
        g.bench_function(BenchmarkId::from_parameter("std_pread"), |b| {
            let file = std::fs::File::open(path).unwrap();
            let mut rng = Rng(0x9e37_79b9);
            let mut buf = vec![0u8; SMALL];
            b.iter(|| {
                assert_eq!(
                    file.read_at(&mut buf, random_offset(&mut rng)).unwrap(),
                    SMALL
                );
            })
        });
        g.finish();
    }
}

fn sequential_reads(c: &mut Criterion, path: &Path) {
    let mut g = c.benchmark_group("file_sequential_1MiB");
    g.throughput(Throughput::Bytes(LARGE as u64));
    let blocks = FILE_SIZE / LARGE as u64;
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            match rt.backend() {
                Some(backend) => {
                    let mut lp = support::ringloop(backend);
                    let file = lp
                        .run_until_complete(ringloop::fs::File::open(path))
                        .unwrap();
                    let mut buf = Some(Vec::with_capacity(LARGE));
                    let mut next = 0u64;
                    b.iter_custom(|iters| {
                        lp.run_until_complete(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let off = (next % blocks) * LARGE as u64;
                                next += 1;
                                let (res, b) = file.read_at(buf.take().unwrap(), off).await;
                                buf = Some(b);
                                assert_eq!(res.unwrap(), LARGE);
                            }
                            start.elapsed()
                        })
                    });
                }
                None => {
                    let rt = support::tokio();
                    let file = Arc::new(std::fs::File::open(path).unwrap());
                    let mut buf = Some(vec![0u8; LARGE]);
                    let mut next = 0u64;
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let off = (next % blocks) * LARGE as u64;
                                next += 1;
                                let (f, mut b) = (file.clone(), buf.take().unwrap());
                                let (res, b) = tokio::task::spawn_blocking(move || {
                                    let r = f.read_at(&mut b, off);
                                    (r, b)
                                })
                                .await
                                .unwrap();
                                buf = Some(b);
                                assert_eq!(res.unwrap(), LARGE);
                            }
                            start.elapsed()
                        })
                    });
                }
            }
        });
    }
    g.bench_function(BenchmarkId::from_parameter("std_pread"), |b| {
        let file = std::fs::File::open(path).unwrap();
        let mut buf = vec![0u8; LARGE];
        let mut next = 0u64;
        b.iter(|| {
            let off = (next % blocks) * LARGE as u64;
            next += 1;
            assert_eq!(file.read_at(&mut buf, off).unwrap(), LARGE);
        })
    });
    g.finish();
}

fn files(c: &mut Criterion) {
    // Under target/, not /tmp: /tmp may be a small tmpfs.
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory under target/");
    let path = make_file(dir.path());
    random_reads(c, &path);
    sequential_reads(c, &path);
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = files
}
criterion_main!(benches);
