//! The `tcp` case of `examples/throughput.rs` on tokio's current_thread runtime: the reference
//! the throughput figures compare ringloop against.
//!
//! ```text
//! cargo run --release -p ringloop-benches --example tokio_throughput -- [--mib 1024] [--chunk-kib 64] [--conns 1] [--pin]
//! cargo run --release -p ringloop-benches --example tokio_throughput -- randread --file PATH [--qd 32] [--bs 4096] [--direct] [--secs 10]
//! cargo run --release -p ringloop-benches --example tokio_throughput -- meta [--files 10000] [--tasks 16] [--dir .]
//! ```
//!
//! `randread` and `meta` are the cases of the same names in `examples/throughput.rs`, on tokio.
//!
//! A sender on its own thread and runtime streams `--mib` MiB over loopback in `--chunk-kib`
//! chunks (`write_all`), split over `--conns` connections at once; the receiver reads each into a
//! buffer of the chunk's size. Prints MiB/s and CPU per GiB. `--pin` puts the receiver on CPU 0
//! and the sender on CPU 1.

use std::process::ExitCode;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "../../examples/support/measure.rs"]
mod measure;
use measure::{
    cpu_seconds, flag, pin_to_cpu, report_meta, report_randread, text_flag, warm_page_cache,
    xorshift,
};

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn run(args: &[String]) -> Result<(), String> {
    let total = flag(args, "--mib", 1024)? << 20;
    let chunk = (flag(args, "--chunk-kib", 64)? << 10) as usize;
    let conns = flag(args, "--conns", 1)?;
    if chunk == 0 || conns == 0 {
        return Err("--chunk-kib and --conns must be at least 1".into());
    }
    let pin = args.iter().any(|a| a == "--pin");
    let per_conn = total / conns;
    let total = per_conn * conns;
    if pin {
        pin_to_cpu(0);
    }
    let rt = runtime().map_err(|e| e.to_string())?;
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        if pin {
            pin_to_cpu(1);
        }
        runtime()?.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let mut s = TcpStream::connect(addr).await?;
                tasks.push(tokio::spawn(async move {
                    let buf = vec![0x5a; chunk];
                    let mut sent = 0u64;
                    while sent < per_conn {
                        let n = chunk.min((per_conn - sent) as usize);
                        s.write_all(&buf[..n]).await?;
                        sent += n as u64;
                    }
                    std::io::Result::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok(())
        })
    });
    let (got, secs) = rt
        .block_on(async move {
            let mut streams = Vec::new();
            for _ in 0..conns {
                streams.push(listener.accept().await?.0);
            }
            let start = Instant::now();
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|mut s| {
                    tokio::spawn(async move {
                        let mut got = 0u64;
                        let mut buf = vec![0u8; chunk];
                        loop {
                            match s.read(&mut buf).await? {
                                0 => return std::io::Result::Ok(got),
                                n => got += n as u64,
                            }
                        }
                    })
                })
                .collect();
            let mut got = 0u64;
            for t in tasks {
                got += t.await??;
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
    let how = if conns > 1 {
        format!(", {conns} connections")
    } else {
        String::new()
    };
    println!(
        "tcp on tokio{how}: {} MiB in {chunk} B chunks in {secs:.3} s = {:.0} MiB/s, \
         {:.3} s CPU per GiB",
        total >> 20,
        (total as f64 / (1 << 20) as f64) / secs,
        cpu_seconds() / (total as f64 / (1u64 << 30) as f64)
    );
    Ok(())
}

/// The file `randread` reads: `--file PATH` (its size from the filesystem).
fn bench_file(args: &[String]) -> Result<(std::path::PathBuf, u64), String> {
    let path = std::path::PathBuf::from(
        text_flag(args, "--file")
            .ok_or("randread needs --file PATH (benches/scripts/fio_compare.sh makes one)")?,
    );
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("--file {path:?}: {e}"))?
        .len();
    Ok((path, size))
}

/// `randread`, as `throughput randread`: `--qd` tasks read random `--bs` blocks for `--secs`.
/// Buffered: each task has its own `tokio::fs::File` and seeks then reads (what tokio::fs users
/// write; each call is a trip to tokio's blocking pool). `--direct`: `O_DIRECT` needs aligned
/// buffers, which `tokio::fs::File`'s internal buffer is not, so each read is a `pread` into an
/// aligned buffer on tokio's blocking pool (`spawn_blocking`, what tokio::fs does inside).
fn randread(args: &[String]) -> Result<(), String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::sync::Arc;
    use tokio::io::AsyncSeekExt;
    let (path, size) = bench_file(args)?;
    let secs = flag(args, "--secs", 10)?;
    let qd = flag(args, "--qd", 32)?.max(1);
    let bs = flag(args, "--bs", 4096)? as usize;
    let direct = args.iter().any(|a| a == "--direct");
    let blocks = size / bs as u64;
    if blocks == 0 || bs == 0 {
        return Err("the file must hold at least one --bs block".into());
    }
    if !direct {
        warm_page_cache(&path)?;
    }
    let rt = runtime().map_err(|e| e.to_string())?;
    let (done, elapsed) = rt
        .block_on(async move {
            let start = Instant::now();
            let deadline = start + std::time::Duration::from_secs(secs);
            let std_file = Arc::new(
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(if direct { libc::O_DIRECT } else { 0 })
                    .open(&path)?,
            );
            let mut tasks = Vec::new();
            for t in 0..qd {
                let std_file = std_file.clone();
                let path = path.clone();
                tasks.push(tokio::spawn(async move {
                    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ (t + 1);
                    let mut done = 0u64;
                    let mut file = if direct {
                        None
                    } else {
                        Some(tokio::fs::File::open(&path).await?)
                    };
                    let mut aligned = Some(ringloop::buf::AlignedBuf::new(bs, 4096)?);
                    let mut plain = vec![0u8; bs];
                    while Instant::now() < deadline {
                        let pos = (xorshift(&mut state) % blocks) * bs as u64;
                        match &mut file {
                            Some(f) => {
                                f.seek(std::io::SeekFrom::Start(pos)).await?;
                                f.read_exact(&mut plain).await?;
                            }
                            None => {
                                let mut buf = aligned.take().expect("kept between reads");
                                let f = std_file.clone();
                                let (res, back) = tokio::task::spawn_blocking(move || {
                                    buf.set_len(bs);
                                    let res = f.read_at(&mut buf, pos);
                                    (res, buf)
                                })
                                .await?;
                                if res? != bs {
                                    return Err(std::io::Error::other("short read"));
                                }
                                aligned = Some(back);
                            }
                        }
                        done += 1;
                    }
                    std::io::Result::Ok(done)
                }));
            }
            let mut done = 0;
            for t in tasks {
                done += t.await??;
            }
            std::io::Result::Ok((done, start.elapsed().as_secs_f64()))
        })
        .map_err(|e| e.to_string())?;
    let mode = if direct {
        "O_DIRECT, spawn_blocking pread"
    } else {
        "page cache, tokio::fs"
    };
    report_randread("tokio", mode, done, bs as u64, qd, size, elapsed, "");
    Ok(())
}

/// `meta`, as `throughput meta` on tokio::fs: `--files` files, `--tasks` at once, each created,
/// stat'ed, renamed and removed.
fn meta(args: &[String]) -> Result<(), String> {
    let files = flag(args, "--files", 10_000)?;
    let tasks = flag(args, "--tasks", 16)?.max(1);
    let dir = tempfile::tempdir_in(text_flag(args, "--dir").unwrap_or("."))
        .map_err(|e| format!("a temporary directory: {e}"))?;
    let root = dir.path().to_owned();
    let rt = runtime().map_err(|e| e.to_string())?;
    let secs = rt
        .block_on(async move {
            let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let start = Instant::now();
            let mut handles = Vec::new();
            for _ in 0..tasks {
                let (next, root) = (next.clone(), root.clone());
                handles.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= files {
                            return std::io::Result::Ok(());
                        }
                        let a = root.join(format!("f{i}"));
                        let b = root.join(format!("g{i}"));
                        drop(tokio::fs::File::create(&a).await?);
                        if !tokio::fs::metadata(&a).await?.is_file() {
                            return Err(std::io::Error::other("not a file"));
                        }
                        tokio::fs::rename(&a, &b).await?;
                        tokio::fs::remove_file(&b).await?;
                    }
                }));
            }
            for h in handles {
                h.await??;
            }
            std::io::Result::Ok(start.elapsed().as_secs_f64())
        })
        .map_err(|e| e.to_string())?;
    report_meta("tokio", files, tasks, secs);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("randread") => randread(&args),
        Some("meta") => meta(&args),
        _ => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_throughput: {e}");
            ExitCode::FAILURE
        }
    }
}
