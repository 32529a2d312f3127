//! Throughput of two I/O paths on the loop's backend.
//!
//! ```text
//! cargo run --release --example throughput -- tcp [--mib 1024] [--chunk-kib 64] [--conns 1]
//!     [--pooled] [--pin] [--zc BYTES] [--sender uring|epoll] [--stats] [--pool-kib N] [--acks]
//! cargo run --release --example throughput -- randread [--file PATH | --file-mib 256 [--dir .]]
//!     [--qd 32] [--bs 4096] [--direct] [--fixed] [--secs 10] [--reads N]
//! cargo run --release --example throughput -- meta [--files 10000] [--tasks 16] [--dir .]
//! RINGLOOP_BACKEND=epoll cargo run --release --example throughput -- tcp
//! ```
//!
//! `tcp`: a sender on its own thread and loop streams `--mib` MiB over loopback to a receiver;
//! prints MiB/s. `--conns N` splits it over N connections at once; `--pooled` receives with
//! `recv_pooled_many` (the loop's pool, bundles on Linux 6.10+) instead of a `chunk`-sized
//! buffer per connection; `--pin` puts the receiver on CPU 0 and the sender on CPU 1. `--zc BYTES`
//! makes the sender's writes of at least BYTES zero-copy sends
//! (`Builder::zero_copy_threshold`, uring only); `examples/tokio_throughput.rs` is the same
//! transfer on tokio. `--sender` runs the sender on another backend than the receiver's; `--stats`
//! prints each loop's counters per MiB, with its thread's sleeps (voluntary context switches) and
//! CPU time; `--pool-kib N` gives the receiver's pool N KiB buffers (4 MiB in all) instead of the
//! default 1024 x 4 KiB; `--acks` gives the transfer the shape of the `stream_64KiB` bench: both
//! sides `TCP_NODELAY`, the receiver sends one byte back per chunk received and each sender reads
//! them all after its last write (not with `--pooled`). `randread`: `--qd` tasks read random
//! `--bs` blocks of a file (`--file`, or a new one of `--file-mib` MiB under `--dir`) for `--secs` seconds: from the
//! page cache (the file is read once first), or with `--direct` through `O_DIRECT` into aligned
//! buffers; `--fixed` reads into buffers registered with the ring (`FixedBufs`). Prints reads/s
//! and an `IOPS=` line for scripts (`benches/scripts/fio_compare.sh`). `meta`: creates, stats,
//! renames and removes `--files` files with `--tasks` tasks at once; prints files/s.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use ringloop::fs::File;
use ringloop::net::{TcpListener, TcpStream};

#[path = "support/measure.rs"]
mod measure;
use measure::{
    cpu_seconds, flag, pin_to_cpu, report_meta, report_randread, text_flag, warm_page_cache,
    xorshift,
};

fn new_loop() -> Result<ringloop::EventLoop, String> {
    ringloop::EventLoop::new().map_err(|e| format!("cannot build an event loop: {e}"))
}

/// `--zc BYTES`, if given.
fn zero_copy(args: &[String]) -> Result<Option<usize>, String> {
    if !args.iter().any(|a| a == "--zc") {
        return Ok(None);
    }
    Ok(Some(flag(args, "--zc", 0)? as usize))
}

fn tcp(args: &[String]) -> Result<(), String> {
    let total = flag(args, "--mib", 1024)? << 20;
    let chunk = (flag(args, "--chunk-kib", 64)? << 10) as usize;
    let conns = flag(args, "--conns", 1)?;
    if chunk == 0 || conns == 0 {
        return Err("--chunk-kib and --conns must be at least 1".into());
    }
    let pooled = args.iter().any(|a| a == "--pooled");
    let zc = zero_copy(args)?;
    let pin = args.iter().any(|a| a == "--pin");
    let show_stats = args.iter().any(|a| a == "--stats");
    let acks = args.iter().any(|a| a == "--acks");
    if acks && pooled {
        return Err("--acks does not go with --pooled".into());
    }
    let sender_backend: Option<ringloop::Backend> = match args.iter().position(|a| a == "--sender")
    {
        None => None,
        Some(i) => Some(
            args.get(i + 1)
                .ok_or("--sender needs a backend: uring or epoll")?
                .parse()
                .map_err(|e| format!("--sender: {e}"))?,
        ),
    };
    let per_conn = total / conns;
    let total = per_conn * conns;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        if pin {
            pin_to_cpu(1);
        }
        let mut builder = ringloop::EventLoop::builder().zero_copy_threshold(zc);
        if let Some(b) = sender_backend {
            builder = builder.backend(b);
        }
        let mut lp = builder.build()?;
        lp.run_until_complete(async move {
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let s = TcpStream::connect(addr).await?;
                if acks {
                    s.set_nodelay(true)?;
                }
                tasks.push(ringloop::spawn(async move {
                    let mut buf = vec![0x5a; chunk];
                    let mut sent = 0u64;
                    while sent < per_conn {
                        let n = chunk.min((per_conn - sent) as usize);
                        buf.truncate(n);
                        let (res, b) = s.write_all(buf).await;
                        res?;
                        buf = b;
                        sent += n as u64;
                    }
                    if acks {
                        // One byte per chunk, sent back by the receiver (`--acks`).
                        let want = per_conn.div_ceil(chunk as u64);
                        let mut got = 0u64;
                        let mut ack = Vec::with_capacity(4096);
                        while got < want {
                            let (res, b) = s.read(ack).await;
                            ack = b;
                            match res? {
                                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                                n => got += n as u64,
                            }
                        }
                    }
                    std::io::Result::Ok(())
                }));
            }
            for t in tasks {
                t.await.map_err(std::io::Error::from)??;
            }
            if show_stats {
                print_stats("sender", total);
            }
            Ok(())
        })
    });
    if pin {
        pin_to_cpu(0);
    }
    // `--pool-kib N`: the receiver's pool buffers (count scaled to keep the pool at 4 MiB).
    let mut lp = match flag(args, "--pool-kib", 0)? {
        0 => new_loop()?,
        kib => {
            let size = u32::try_from(kib << 10).map_err(|_| "--pool-kib is too large")?;
            let count = (4096 / kib).clamp(1, 32768).next_power_of_two() as u16;
            ringloop::EventLoop::builder()
                .recv_pool(count, size)
                .build()
                .map_err(|e| format!("cannot build an event loop: {e}"))?
        }
    };
    let backend = lp.backend();
    let (got, secs) = lp
        .run_until_complete(async move {
            let mut streams = Vec::new();
            for _ in 0..conns {
                streams.push(listener.accept().await?.0);
            }
            let start = Instant::now();
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|s| ringloop::spawn(receive(s, chunk, pooled, acks)))
                .collect();
            let mut got = 0u64;
            for t in tasks {
                got += t.await.map_err(std::io::Error::from)??;
            }
            if show_stats {
                print_stats("receiver", total);
            }
            std::io::Result::Ok((got, start.elapsed().as_secs_f64()))
        })
        .map_err(|e| e.to_string())?;
    sender
        .join()
        .map_err(|_| "the sender panicked".to_string())?
        .map_err(|e| format!("sender: {e}"))?;
    if got != total {
        return Err(format!("received {got} of {total} bytes"));
    }
    let mut how = String::new();
    if let Some(min) = zc {
        how += &format!(", zero-copy from {min} B");
    }
    if conns > 1 {
        how += &format!(", {conns} connections");
    }
    if pooled {
        how += ", pooled receives";
    }
    println!(
        "tcp on {backend}{how}: {} MiB in {chunk} B chunks in {secs:.3} s = {:.0} MiB/s, \
         {:.3} s CPU per GiB",
        total >> 20,
        (total as f64 / (1 << 20) as f64) / secs,
        cpu_seconds() / (total as f64 / (1u64 << 30) as f64)
    );
    Ok(())
}

/// `--stats`: the current loop's counters per MiB moved.
fn print_stats(side: &str, bytes: u64) {
    let Some(s) = ringloop::current_stats() else {
        return;
    };
    let mib = bytes as f64 / (1 << 20) as f64;
    let per = |n: u64| n as f64 / mib;
    // The thread's voluntary context switches: each is a sleep (a wait in the kernel).
    let sleeps = std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    let cpu_us = ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3;
    eprintln!(
        "{side} per MiB: {:.1} ops, {:.1} completions, {:.1} enters, {:.1} epoll waits, \
         {:.1} syscalls, {:.1} task polls, {:.1} sleeps, {:.0} µs CPU",
        per(s.ops_submitted),
        per(s.completions),
        per(s.uring_enters),
        per(s.epoll_waits),
        per(s.io_syscalls),
        per(s.task_polls),
        per(sleeps),
        cpu_us / mib
    );
}

/// Reads a stream to its end, into a buffer of `chunk` bytes or (`pooled`) pool buffers, and
/// returns the byte count.
async fn receive(s: TcpStream, chunk: usize, pooled: bool, acks: bool) -> std::io::Result<u64> {
    let mut got = 0u64;
    if acks {
        s.set_nodelay(true)?;
    }
    if pooled {
        let mut bufs = Vec::new();
        loop {
            match s.recv_pooled_many(&mut bufs).await? {
                0 => return Ok(got),
                n => got += n as u64,
            }
            bufs.clear();
        }
    }
    let mut buf = Vec::with_capacity(chunk);
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        let n = match res? {
            0 => return Ok(got),
            n => n as u64,
        };
        if acks {
            // One byte per `chunk` received, as the bench sink does.
            let due = (got + n) / chunk as u64 - got / chunk as u64;
            if due > 0 {
                s.write_all(vec![1u8; due as usize]).await.0?;
            }
        }
        got += n;
    }
}

/// The file `randread` and `meta` work on: `--file PATH` as it is, or a new file of
/// `--file-mib` MiB in a temporary directory under `--dir` (default: the current directory, so
/// it is on a disk: `O_DIRECT` needs a real filesystem). Returns the path, its size and the
/// directory to keep alive.
fn bench_file(
    args: &[String],
) -> Result<(std::path::PathBuf, u64, Option<tempfile::TempDir>), String> {
    if let Some(i) = args.iter().position(|a| a == "--file") {
        let path = std::path::PathBuf::from(args.get(i + 1).ok_or("--file needs a path")?);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("--file {path:?}: {e}"))?
            .len();
        return Ok((path, size, None));
    }
    let size = flag(args, "--file-mib", 256)? << 20;
    let dir = tempfile::tempdir_in(text_flag(args, "--dir").unwrap_or("."))
        .map_err(|e| format!("a temporary directory: {e}"))?;
    let path = dir.path().join("data");
    use std::io::Write;
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7) as u8).collect();
    for _ in 0..(size >> 20) {
        f.write_all(&block).map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())?;
    Ok((path, size, Some(dir)))
}

/// A buffer for one reader: from the registered set (`--fixed`), aligned (`--direct`), or a Vec.
enum ReadBuf {
    Fixed(ringloop::fs::FixedBuf),
    Aligned(ringloop::buf::AlignedBuf),
    Plain(Vec<u8>),
}

async fn read_block(
    file: &File,
    buf: ReadBuf,
    pos: u64,
    bs: usize,
) -> (std::io::Result<usize>, ReadBuf) {
    use ringloop::buf::IoBuf;
    match buf {
        ReadBuf::Fixed(b) => {
            let (r, s) = file.read_at(b.slice(..bs), pos).await;
            (r, ReadBuf::Fixed(s.into_inner()))
        }
        ReadBuf::Aligned(b) => {
            let (r, b) = file.read_at(b, pos).await;
            (r, ReadBuf::Aligned(b))
        }
        ReadBuf::Plain(b) => {
            let (r, b) = file.read_at(b, pos).await;
            (r, ReadBuf::Plain(b))
        }
    }
}

/// `randread`: `--qd` tasks (`--in-flight` is the same) read random `--bs` blocks (4096) of the
/// file for `--secs` seconds (or `--reads` reads in all, whichever ends first). `--direct` opens
/// it with `O_DIRECT` (no page cache; buffers aligned); without it the file is read once first so
/// every block is cached. `--fixed` reads into buffers registered with the ring (`FixedBufs`).
fn randread(args: &[String]) -> Result<(), String> {
    let (path, size, _dir) = bench_file(args)?;
    let reads = flag(args, "--reads", u64::MAX)?;
    let secs = flag(args, "--secs", if reads == u64::MAX { 10 } else { 3600 })?;
    let qd = flag(args, "--qd", flag(args, "--in-flight", 32)?)?.max(1);
    let bs = flag(args, "--bs", 4096)? as usize;
    let direct = args.iter().any(|a| a == "--direct");
    let fixed = args.iter().any(|a| a == "--fixed");
    let blocks = size / bs as u64;
    if blocks == 0 || bs == 0 {
        return Err("the file must hold at least one --bs block".into());
    }
    if !direct {
        warm_page_cache(&path)?;
    }
    let mut lp = new_loop()?;
    let backend = lp.backend();
    let (done, elapsed, used_fixed) = lp
        .run_until_complete(async move {
            let mut options = File::options();
            options.read(true);
            if direct {
                options.custom_flags(libc::O_DIRECT);
            }
            let file = Rc::new(options.open(&path).await?);
            let set = if fixed {
                Some(ringloop::fs::FixedBufs::register(qd as usize, bs)?)
            } else {
                None
            };
            let left = Rc::new(Cell::new(reads));
            let start = Instant::now();
            let deadline = start + std::time::Duration::from_secs(secs);
            let tasks: Vec<_> = (0..qd)
                .map(|t| {
                    let (file, left) = (file.clone(), left.clone());
                    let mut buf = match &set {
                        Some(set) => ReadBuf::Fixed(set.try_take().expect("one buffer per task")),
                        None if direct => {
                            ReadBuf::Aligned(file.aligned_buf(bs).expect("an aligned buffer"))
                        }
                        None => ReadBuf::Plain(Vec::with_capacity(bs)),
                    };
                    ringloop::spawn(async move {
                        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (t + 1);
                        let mut done = 0u64;
                        while left.get() > 0 && Instant::now() < deadline {
                            left.set(left.get() - 1);
                            let pos = (xorshift(&mut state) % blocks) * bs as u64;
                            let (res, b) = read_block(&file, buf, pos, bs).await;
                            if res? != bs {
                                return Err(std::io::Error::other("short read"));
                            }
                            buf = b;
                            done += 1;
                        }
                        std::io::Result::Ok(done)
                    })
                })
                .collect();
            let mut done = 0;
            for t in tasks {
                done += t.await.map_err(std::io::Error::from)??;
            }
            let stats = ringloop::current_stats().expect("inside the loop");
            std::io::Result::Ok((done, start.elapsed().as_secs_f64(), stats.fixed_buffer_ops))
        })
        .map_err(|e| e.to_string())?;
    let mode = match (direct, fixed) {
        (true, true) => "O_DIRECT, fixed buffers",
        (true, false) => "O_DIRECT",
        (false, true) => "page cache, fixed buffers",
        (false, false) => "page cache",
    };
    report_randread(
        &backend.to_string(),
        mode,
        done,
        bs as u64,
        qd,
        size,
        elapsed,
        &format!(" ({used_fixed} fixed-buffer ops)"),
    );
    Ok(())
}

/// `meta`: `--files` files (10,000) in a new directory under `--dir`, by `--tasks` tasks (16) at
/// once; each file is created (open with O_CREAT, close), stat'ed, renamed and removed. On uring
/// each step is a ring op; on epoll each runs on the blocking pool.
fn meta(args: &[String]) -> Result<(), String> {
    let files = flag(args, "--files", 10_000)?;
    let tasks = flag(args, "--tasks", 16)?.max(1);
    let dir = tempfile::tempdir_in(text_flag(args, "--dir").unwrap_or("."))
        .map_err(|e| format!("a temporary directory: {e}"))?;
    let root = dir.path().to_owned();
    let mut lp = new_loop()?;
    let backend = lp.backend();
    let secs = lp
        .run_until_complete(async move {
            let next = Rc::new(Cell::new(0u64));
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let (next, root) = (next.clone(), root.clone());
                    ringloop::spawn(async move {
                        loop {
                            let i = next.get();
                            if i >= files {
                                return std::io::Result::Ok(());
                            }
                            next.set(i + 1);
                            let a = root.join(format!("f{i}"));
                            let b = root.join(format!("g{i}"));
                            File::create(&a).await?.close().await?;
                            let meta = ringloop::fs::metadata(&a).await?;
                            if !meta.is_file() {
                                return Err(std::io::Error::other("not a file"));
                            }
                            ringloop::fs::rename(&a, &b).await?;
                            ringloop::fs::remove_file(&b).await?;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.map_err(std::io::Error::from)??;
            }
            std::io::Result::Ok(start.elapsed().as_secs_f64())
        })
        .map_err(|e| e.to_string())?;
    report_meta(&backend.to_string(), files, tasks, secs);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tcp") => tcp(&args),
        Some("randread") => randread(&args),
        Some("meta") => meta(&args),
        _ => Err(
            "usage: throughput tcp [--mib N] [--chunk-kib N] [--zc BYTES] | \
                  randread [--file PATH | --file-mib N] [--qd N] [--bs N] [--direct] [--fixed] \
                  [--secs N] [--reads N] | meta [--files N] [--tasks N] [--dir DIR]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput: {e}");
            ExitCode::FAILURE
        }
    }
}
