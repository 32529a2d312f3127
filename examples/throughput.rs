//! Throughput of two I/O paths on the loop's backend.
//!
//! ```text
//! cargo run --release --example throughput -- tcp [--mib 1024] [--chunk-kib 64] [--conns 1] [--pooled] [--zc BYTES]
//! cargo run --release --example throughput -- randread [--file-mib 256] [--reads 200000] [--in-flight 32]
//! RINGLOOP_BACKEND=epoll cargo run --release --example throughput -- tcp
//! ```
//!
//! `tcp`: a sender on its own thread and loop streams `--mib` MiB over loopback to a receiver;
//! prints MiB/s. `--conns N` splits it over N connections at once; `--pooled` receives with
//! `recv_pooled_many` (the loop's pool, bundles on Linux 6.10+) instead of a `chunk`-sized
//! buffer per connection. `--zc BYTES` makes the sender's writes of at least BYTES zero-copy sends
//! (`Builder::zero_copy_threshold`, uring only); `examples/tokio_throughput.rs` is the same
//! transfer on tokio. `randread`: makes a file, reads it once so it sits in the page cache, then
//! `--in-flight` tasks read random 4 KiB blocks; prints reads/s and MiB/s.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use ringloop::fs::File;
use ringloop::net::{TcpListener, TcpStream};

fn flag(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a number"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

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
    let per_conn = total / conns;
    let total = per_conn * conns;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut lp = ringloop::EventLoop::builder()
            .zero_copy_threshold(zc)
            .build()?;
        lp.run_until_complete(async move {
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let s = TcpStream::connect(addr).await?;
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
                    std::io::Result::Ok(())
                }));
            }
            for t in tasks {
                t.await.map_err(std::io::Error::from)??;
            }
            Ok(())
        })
    });
    let mut lp = new_loop()?;
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
                .map(|s| ringloop::spawn(receive(s, chunk, pooled)))
                .collect();
            let mut got = 0u64;
            for t in tasks {
                got += t.await.map_err(std::io::Error::from)??;
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

/// Reads a stream to its end, into a buffer of `chunk` bytes or (`pooled`) pool buffers, and
/// returns the byte count.
async fn receive(s: TcpStream, chunk: usize, pooled: bool) -> std::io::Result<u64> {
    let mut got = 0u64;
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
        match res? {
            0 => return Ok(got),
            n => got += n as u64,
        }
    }
}

fn randread(args: &[String]) -> Result<(), String> {
    let size = flag(args, "--file-mib", 256)? << 20;
    let reads = flag(args, "--reads", 200_000)?;
    let in_flight = flag(args, "--in-flight", 32)?.max(1);
    let blocks = size / 4096;
    if blocks == 0 {
        return Err("--file-mib must be at least 1".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("data");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7) as u8).collect();
        for _ in 0..(size >> 20) {
            f.write_all(&block).map_err(|e| e.to_string())?;
        }
        f.sync_all().map_err(|e| e.to_string())?;
        // Read it once so every block is in the page cache.
        std::io::copy(
            &mut std::fs::File::open(&path).map_err(|e| e.to_string())?,
            &mut std::io::sink(),
        )
        .map_err(|e| e.to_string())?;
    }
    let mut lp = new_loop()?;
    let backend = lp.backend();
    let secs = lp
        .run_until_complete(async move {
            let file = Rc::new(File::open(&path).await?);
            let left = Rc::new(Cell::new(reads));
            let start = Instant::now();
            let tasks: Vec<_> = (0..in_flight)
                .map(|t| {
                    let (file, left) = (file.clone(), left.clone());
                    ringloop::spawn(async move {
                        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (t + 1);
                        let mut buf = Vec::with_capacity(4096);
                        while left.get() > 0 {
                            left.set(left.get() - 1);
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            let (res, b) = file.read_at(buf, (state % blocks) * 4096).await;
                            if res? != 4096 {
                                return Err(std::io::Error::other("short read"));
                            }
                            buf = b;
                        }
                        std::io::Result::Ok(())
                    })
                })
                .collect();
            for t in tasks {
                t.await.map_err(std::io::Error::from)??;
            }
            std::io::Result::Ok(start.elapsed().as_secs_f64())
        })
        .map_err(|e| e.to_string())?;
    println!(
        "randread on {backend}: {reads} reads of 4 KiB, {in_flight} in flight, {} MiB file: \
         {:.0} reads/s = {:.0} MiB/s",
        size >> 20,
        reads as f64 / secs,
        reads as f64 * 4096.0 / (1 << 20) as f64 / secs
    );
    Ok(())
}

/// User and system CPU time of the whole process so far (sender and receiver threads).
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tcp") => tcp(&args),
        Some("randread") => randread(&args),
        _ => Err(
            "usage: throughput tcp [--mib N] [--chunk-kib N] [--zc BYTES] | \
                  randread [--file-mib N] [--reads N] [--in-flight N]"
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
