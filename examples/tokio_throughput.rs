//! The `tcp` case of `examples/throughput.rs` on tokio's current_thread runtime: the reference
//! the throughput figures compare ringloop against.
//!
//! ```text
//! cargo run --release --example tokio_throughput -- [--mib 1024] [--chunk-kib 64] [--conns 1] [--pin]
//! ```
//!
//! A sender on its own thread and runtime streams `--mib` MiB over loopback in `--chunk-kib`
//! chunks (`write_all`), split over `--conns` connections at once; the receiver reads each into a
//! buffer of the chunk's size. Prints MiB/s and CPU per GiB. `--pin` puts the receiver on CPU 0
//! and the sender on CPU 1.

use std::process::ExitCode;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/measure.rs"]
mod measure;
use measure::{cpu_seconds, flag, pin_to_cpu};

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_throughput: {e}");
            ExitCode::FAILURE
        }
    }
}
