//! A load generator for any TCP echo server: N connections each send a message, wait for its echo,
//! and repeat, until the total number of round trips is reached. Prints round trips per second and
//! p50/p99 latency.
//!
//! ```text
//! cargo run --release --example loadgen -- 127.0.0.1:7000 --conns 64 --size 64 --requests 10000
//! ```
//!
//! Works against `examples/echo.rs` on either backend and against any other echo server; runs on
//! whichever backend `RINGLOOP_BACKEND` picks.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringloop::net::TcpStream;

struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    requests: u64,
}

fn usage() -> &'static str {
    "usage: loadgen [ADDR] [--conns N] [--size BYTES] [--requests N]\n\
     defaults: 127.0.0.1:7000, 64 connections, 64-byte messages, 10000 round trips"
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        conns: 64,
        size: 64,
        requests: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--conns" => {
                args.conns = value("--conns")?
                    .parse()
                    .map_err(|e| format!("--conns: {e}"))?
            }
            "--size" => {
                args.size = value("--size")?
                    .parse()
                    .map_err(|e| format!("--size: {e}"))?
            }
            "--requests" => {
                args.requests = value("--requests")?
                    .parse()
                    .map_err(|e| format!("--requests: {e}"))?
            }
            "-h" | "--help" => return Err(usage().to_owned()),
            other => {
                args.addr = other.parse().map_err(|_| {
                    format!(
                        "{other:?} is not an address like 127.0.0.1:7000\n{}",
                        usage()
                    )
                })?
            }
        }
    }
    if args.conns == 0 || args.size == 0 {
        return Err(format!(
            "--conns and --size must be at least 1\n{}",
            usage()
        ));
    }
    Ok(args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = ringloop::run(async move {
        let mut streams = Vec::with_capacity(args.conns);
        for _ in 0..args.conns {
            let s = TcpStream::connect(args.addr).await?;
            s.set_nodelay(true)?;
            streams.push(s);
        }
        let remaining = Rc::new(Cell::new(args.requests));
        let latencies = Rc::new(RefCell::new(Vec::with_capacity(args.requests as usize)));
        let start = Instant::now();
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| {
                let remaining = remaining.clone();
                let latencies = latencies.clone();
                let size = args.size;
                ringloop::spawn(async move {
                    let mut msg = vec![b'x'; size];
                    let mut buf = Vec::with_capacity(size.max(4096));
                    while remaining.get() > 0 {
                        remaining.set(remaining.get() - 1);
                        let t0 = Instant::now();
                        let (res, m) = s.write_all(msg).await;
                        msg = m;
                        res?;
                        let mut got = 0;
                        while got < size {
                            let (res, b) = s.read(buf).await;
                            buf = b;
                            match res? {
                                0 => {
                                    return Err(std::io::Error::new(
                                        std::io::ErrorKind::UnexpectedEof,
                                        "the server closed the connection",
                                    ));
                                }
                                n => got += n,
                            }
                        }
                        latencies.borrow_mut().push(t0.elapsed());
                    }
                    std::io::Result::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let elapsed = start.elapsed();
        let mut lat = latencies.take();
        lat.sort_unstable();
        std::io::Result::Ok((lat, elapsed))
    });
    match result {
        Ok((lat, elapsed)) => {
            let n = lat.len();
            println!(
                "{n} round trips of {} B over {} connections in {:.3} s: {:.0} round trips/s, \
                 p50 {:?}, p99 {:?}",
                args.size,
                args.conns,
                elapsed.as_secs_f64(),
                n as f64 / elapsed.as_secs_f64(),
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
