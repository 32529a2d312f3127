//! A load generator for any TCP echo server.
//!
//! Opens `--conns` connections; each keeps `--inflight` messages of `--size` bytes in flight and
//! sends a new one whenever a full echo comes back, for `--duration` seconds (or until
//! `--requests` round trips). With `--rate`, messages go out at that total rate instead of as fast
//! as the server answers. Prints round trips per second and p50/p99/max latency.
//!
//! With `--pid`, it also reads the server's CPU time (user + system) from `/proc/PID/stat` before
//! and after the run and prints the server's CPU time per message, and its resident memory.
//! With `--idle`, it opens the connections, sends nothing, and prints how much the server's
//! resident memory grew per connection.
//!
//! ```text
//! taskset -c 0 cargo run --release --example echo -- 7000 &
//! taskset -c 1 cargo run --release --example loadgen -- 127.0.0.1:7000 \
//!     --conns 64 --size 64 --inflight 4 --duration 10 --pid $(pgrep -f 'examples/echo')
//! ... --rate 100000                       # fixed 100,000 messages/s
//! ... --conns 10000 --idle --pid PID      # idle memory per connection
//! ```
//!
//! Latency is measured from the moment a message is written to the moment its whole echo has
//! been read, so at a fixed rate a slow server shows up as lost rate, not as hidden latency only.
//! Works against `examples/echo.rs` on either backend, against `examples/tokio_echo.rs`, and
//! against any other echo server; the generator itself runs on whichever backend
//! `RINGLOOP_BACKEND` picks.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringloop::net::TcpStream;

struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    inflight: usize,
    duration: Duration,
    requests: Option<u64>,
    rate: Option<f64>,
    pid: Option<u32>,
    idle: bool,
    warmup: Duration,
}

const USAGE: &str = "\
usage: loadgen [ADDR] [--conns N] [--size BYTES] [--inflight N] [--duration SECS]
               [--requests N] [--rate MSGS_PER_SEC] [--pid SERVER_PID] [--warmup SECS] [--idle]
defaults: 127.0.0.1:7000, 64 connections, 64-byte messages, 1 in flight per connection,
          10 seconds, no rate limit (as fast as the server answers), 1 second of warm-up";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        conns: 64,
        size: 64,
        inflight: 1,
        duration: Duration::from_secs(10),
        requests: None,
        rate: None,
        pid: None,
        idle: false,
        warmup: Duration::from_secs(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| format!("{name} {v:?}: {e}"))
        }
        match a.as_str() {
            "--conns" => args.conns = num("--conns", value("--conns")?)?,
            "--size" => args.size = num("--size", value("--size")?)?,
            "--inflight" => args.inflight = num("--inflight", value("--inflight")?)?,
            "--requests" => args.requests = Some(num("--requests", value("--requests")?)?),
            "--pid" => args.pid = Some(num("--pid", value("--pid")?)?),
            "--idle" => args.idle = true,
            "--rate" => {
                let r: f64 = num("--rate", value("--rate")?)?;
                if !(r.is_finite() && r > 0.0) {
                    return Err(format!("--rate must be a positive number, not {r}"));
                }
                args.rate = Some(r);
            }
            "--duration" | "--warmup" => {
                let s: f64 = num(&a, value(&a)?)?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("{a} must be a number of seconds, not {s}"));
                }
                let d = Duration::from_secs_f64(s);
                if a == "--duration" {
                    args.duration = d;
                } else {
                    args.warmup = d;
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
            other => {
                args.addr = other
                    .parse()
                    .map_err(|_| format!("{other:?} is not an address like 127.0.0.1:7000"))?
            }
        }
    }
    if args.conns == 0 || args.size == 0 || args.inflight == 0 {
        return Err("--conns, --size and --inflight must be at least 1".into());
    }
    Ok(args)
}

/// CPU time a process has used, user and system, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Result<(Duration, Duration), String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name (field 2) may hold spaces; the fields we want follow its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path} has no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {} is not a number", i + 3))
    };
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    let time = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Ok((time(ticks(11)?), time(ticks(12)?)))
}

/// Resident memory of a process in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

/// Raises the soft open-file limit to the hard one, so thousands of connections fit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What all connections share while the load runs.
struct Shared {
    /// Round trips still allowed, when `--requests` caps them.
    budget: Cell<u64>,
    /// Latencies measured after the warm-up.
    latencies: RefCell<Vec<Duration>>,
    /// When measuring starts (after the warm-up) and stops.
    measure_from: Instant,
    stop_at: Instant,
}

async fn connect_all(args: &Args) -> std::io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let s = TcpStream::connect(args.addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "connection {} of {} to {}: {e}",
                    i + 1,
                    args.conns,
                    args.addr
                ),
            )
        })?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    Ok(streams)
}

/// One connection's load: keeps up to `inflight` messages out, paced to `per_conn_rate` if set.
async fn drive(
    s: TcpStream,
    size: usize,
    inflight: usize,
    per_conn_rate: Option<f64>,
    shared: Rc<Shared>,
) -> std::io::Result<()> {
    let mut msg = vec![b'x'; size];
    let mut buf = Vec::with_capacity((size * inflight).max(16 * 1024));
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(inflight);
    let mut received = 0usize; // bytes of the oldest outstanding message already read
    let mut sent = 0u64;
    let start = Instant::now();
    loop {
        let now = Instant::now();
        let running = now < shared.stop_at && shared.budget.get() > 0;
        if !running && sent_at.is_empty() {
            return Ok(());
        }
        // Send as many as the window (and the pace) allows.
        while running && sent_at.len() < inflight && shared.budget.get() > 0 {
            if let Some(rate) = per_conn_rate {
                let due = start + Duration::from_secs_f64(sent as f64 / rate);
                if due > Instant::now() {
                    if sent_at.is_empty() {
                        ringloop::time::sleep_until(due).await;
                    } else {
                        break;
                    }
                }
            }
            shared.budget.set(shared.budget.get() - 1);
            let (res, m) = s.write_all(msg).await;
            msg = m;
            res?;
            sent_at.push_back(Instant::now());
            sent += 1;
        }
        if sent_at.is_empty() {
            continue;
        }
        let (res, b) = s.read(buf).await;
        buf = b;
        let mut n = match res? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            n => n,
        };
        let now = Instant::now();
        while n > 0 {
            let take = n.min(size - received);
            received += take;
            n -= take;
            if received == size {
                received = 0;
                let Some(t0) = sent_at.pop_front() else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the server sent more bytes than it was sent",
                    ));
                };
                if t0 >= shared.measure_from && now < shared.stop_at {
                    shared.latencies.borrow_mut().push(now - t0);
                }
            }
        }
    }
}

struct Report {
    latencies: Vec<Duration>,
    window: Duration,
    /// Server CPU time in the window: user, system.
    cpu: Option<(Duration, Duration)>,
    rss_kib: Option<u64>,
}

fn run_load(args: &Args) -> Result<Report, String> {
    ringloop::run(async {
        let streams = connect_all(args).await.map_err(|e| e.to_string())?;
        let per_conn_rate = args.rate.map(|r| r / args.conns as f64);
        let start = Instant::now();
        let shared = Rc::new(Shared {
            budget: Cell::new(args.requests.unwrap_or(u64::MAX)),
            latencies: RefCell::new(Vec::new()),
            measure_from: start + args.warmup,
            stop_at: start + args.warmup + args.duration,
        });
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| {
                ringloop::spawn(drive(
                    s,
                    args.size,
                    args.inflight,
                    per_conn_rate,
                    shared.clone(),
                ))
            })
            .collect();
        // Read the server's CPU time at the window's edges, from a task of its own.
        let (cpu, rss_kib) = match args.pid {
            Some(pid) => {
                ringloop::time::sleep_until(shared.measure_from).await;
                let cpu0 = cpu_time(pid)?;
                ringloop::time::sleep_until(shared.stop_at).await;
                let cpu1 = cpu_time(pid)?;
                let cpu = (cpu1.0.saturating_sub(cpu0.0), cpu1.1.saturating_sub(cpu0.1));
                (Some(cpu), Some(rss_kib(pid)?))
            }
            None => (None, None),
        };
        for t in tasks {
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        let end = Instant::now().min(shared.stop_at);
        let mut latencies = shared.latencies.take();
        latencies.sort_unstable();
        Ok(Report {
            latencies,
            window: end.saturating_duration_since(shared.measure_from),
            cpu,
            rss_kib,
        })
    })
}

fn run_idle(args: &Args) -> Result<(), String> {
    let pid = args
        .pid
        .ok_or("--idle needs --pid SERVER_PID, to read the server's memory")?;
    let before = rss_kib(pid)?;
    ringloop::run(async {
        let streams = connect_all(args).await.map_err(|e| e.to_string())?;
        // Let the server accept and settle every connection before reading its memory.
        ringloop::time::sleep(Duration::from_secs(2).max(args.warmup)).await;
        let after = rss_kib(pid)?;
        let per_conn = (after as f64 - before as f64) * 1024.0 / args.conns as f64;
        println!(
            "{} idle connections: server RSS {before} KiB before, {after} KiB with them open: \
             {per_conn:.0} bytes per connection",
            streams.len()
        );
        Ok(())
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    raise_fd_limit();
    if args.idle {
        return match run_idle(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let report = match run_load(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let n = report.latencies.len();
    let secs = report.window.as_secs_f64().max(1e-9);
    println!(
        "{n} round trips of {} B over {} connections ({} in flight each) in {secs:.2} s: \
         {:.0} round trips/s; latency p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        args.size,
        args.conns,
        args.inflight,
        n as f64 / secs,
        percentile(&report.latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&report.latencies, 0.99).as_secs_f64() * 1e6,
        report
            .latencies
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6,
    );
    if let (Some((user, sys)), Some(rss)) = (report.cpu, report.rss_kib) {
        let per_msg = |d: Duration| {
            if n > 0 {
                d.as_secs_f64() * 1e9 / n as f64
            } else {
                f64::NAN
            }
        };
        let cpu = user + sys;
        println!(
            "server: {:.3} s CPU ({:.0}% of a core), {:.0} ns CPU per message \
             ({:.0} user + {:.0} system), RSS {rss} KiB",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / secs * 100.0,
            per_msg(cpu),
            per_msg(user),
            per_msg(sys),
        );
    }
    if n == 0 {
        eprintln!("loadgen: no round trip completed inside the measuring window");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
