//! A TCP echo server. On one loop it serves until killed; with `--threads N`, N loops (a
//! `LoopPool`) share the port with `SO_REUSEPORT`, and on SIGINT or SIGTERM they stop accepting,
//! let open connections finish for up to 0.8 s, print how many connections each loop served,
//! and exit 0 (a second Ctrl-C kills at once).
//!
//! ```text
//! cargo run --release --example echo                 # 127.0.0.1:7000
//! cargo run --release --example echo -- 7001         # a port on 127.0.0.1
//! cargo run --release --example echo -- 0.0.0.0:7000 # an address
//! cargo run --release --example echo -- --threads 2  # two loops on one port
//! RINGLOOP_BACKEND=epoll cargo run --release --example echo
//! ```
//!
//! It serves with `recv_pooled`: a connection holds a buffer of the loop's receive pool only
//! while data it received is being written back, so an idle connection holds none (on io_uring
//! the kernel picks the buffer when data arrives, fed by one multishot receive per connection).
//! With `--owned` each connection reads into its own 16 KiB buffer instead.
//!
//! With `--stats`, it prints the loop's counters to stderr every second (ops, completions,
//! syscalls, polls), to measure syscalls per request. `RINGLOOP_DISABLE` switches io_uring fast
//! paths off one by one (see the README), to measure what each brings.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use ringloop::net::{TcpListener, TcpStream};
use ringloop::{LoopContext, LoopPool};

const BUF_SIZE: usize = 16 * 1024;

fn parse_addr(arg: &str) -> Option<SocketAddr> {
    if let Ok(port) = arg.parse::<u16>() {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    arg.parse().ok()
}

/// `--owned`: each connection reads into its own buffer rather than the loop's pool.
static OWNED: AtomicBool = AtomicBool::new(false);

/// Serves one connection as a task of its own; the two ways are two task types, so a pooled
/// connection's task is no larger than its own future needs.
fn spawn_serve(stream: TcpStream) -> ringloop::JoinHandle<()> {
    if OWNED.load(Ordering::Relaxed) {
        ringloop::spawn(serve_owned(stream))
    } else {
        ringloop::spawn(serve_pooled(stream))
    }
}

/// Receives into a pool buffer and writes that very buffer back.
async fn serve_pooled(stream: TcpStream) {
    loop {
        let buf = match stream.recv_pooled().await {
            Ok(buf) if !buf.is_empty() => buf,
            _ => return, // end of stream or an error
        };
        if stream.write_all(buf).await.0.is_err() {
            return;
        }
    }
}

async fn serve_owned(stream: TcpStream) {
    let mut buf = Vec::with_capacity(BUF_SIZE);
    loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}

/// `a` until `stop` completes: `Some(output)` if `a` finished first.
async fn until<A: Future>(a: A, stop: impl Future<Output = ()>) -> Option<A::Output> {
    let (mut a, mut stop) = (pin!(a), pin!(stop));
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        stop.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// One loop of the pool: accepts until shutdown, then gives open connections up to a second.
async fn pool_loop(cx: LoopContext, listener: std::net::TcpListener) -> usize {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: loop {}: {e}", cx.index());
            cx.shutdown().trigger();
            return 0;
        }
    };
    let served = Rc::new(Cell::new(0usize));
    let open = Rc::new(Cell::new(0usize));
    let shutdown = cx.shutdown();
    while let Some(res) = until(listener.accept(), shutdown.triggered()).await {
        match res {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                served.set(served.get() + 1);
                open.set(open.get() + 1);
                let open = open.clone();
                let served = spawn_serve(stream);
                ringloop::spawn(async move {
                    let _ = served.await;
                    open.set(open.get() - 1);
                });
            }
            Err(e) => {
                eprintln!("echo: loop {}: accept failed: {e}", cx.index());
                ringloop::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    // Grace period: open connections may finish for up to 0.8 s (the process exits within a
    // second of the signal); the rest are closed with
    // the loop.
    let drained = async {
        while open.get() > 0 {
            ringloop::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let _ = until(drained, ringloop::time::sleep(Duration::from_millis(800))).await;
    served.get()
}

fn run_pool(addr: SocketAddr, threads: usize) -> ExitCode {
    // The first listener picks the port (for port 0); the others share it.
    let first = match TcpListener::builder().reuse_port(true).bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = first.local_addr().unwrap_or(addr);
    let mut listeners = vec![first];
    for _ in 1..threads {
        match TcpListener::builder().reuse_port(true).bind(local) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("echo: cannot listen on {local} again: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut std_listeners = Vec::new();
    for l in listeners {
        match l.into_std() {
            Ok(l) => std_listeners.push(Some(l)),
            Err(e) => {
                eprintln!("echo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let listeners = std::sync::Mutex::new(std_listeners);
    let pool = LoopPool::builder()
        .threads(threads)
        .thread_name("echo")
        .shutdown_on_signals(true)
        .start(move |cx| {
            let listener = listeners.lock().unwrap_or_else(|e| e.into_inner())[cx.index()]
                .take()
                .expect("one listener per loop");
            pool_loop(cx, listener)
        });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            eprintln!("echo: cannot start {threads} loops: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("echo: listening on {local} ({threads} loops; Ctrl-C or SIGTERM stops)");
    let mut failed = false;
    for (i, res) in pool.join().into_iter().enumerate() {
        match res {
            Ok(n) => println!("loop {i} served {n} connections"),
            Err(e) => {
                eprintln!("echo: loop {i}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stats = args.iter().any(|a| a == "--stats");
    OWNED.store(args.iter().any(|a| a == "--owned"), Ordering::Relaxed);
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with("--") && !["--stats", "--owned", "--threads"].contains(&a.as_str()))
    {
        eprintln!("echo: unknown option {bad}; options: --threads N, --owned, --stats");
        return ExitCode::FAILURE;
    }
    let threads = match args.iter().position(|a| a == "--threads") {
        None => None,
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                eprintln!("echo: --threads takes a number of loops, at least 1");
                return ExitCode::FAILURE;
            }
        },
    };
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let is_thread_count = *i > 0 && args[i - 1] == "--threads";
            !a.starts_with("--") && !is_thread_count
        })
        .map(|(_, a)| a)
        .collect();
    let addr = match positional.last() {
        None => SocketAddr::from(([127, 0, 0, 1], 7000)),
        Some(a) => match parse_addr(a) {
            Some(addr) => addr,
            None => {
                eprintln!("echo: {a:?} is neither a port nor an address like 127.0.0.1:7000");
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(n) = threads {
        return run_pool(addr, n);
    }
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("echo: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("echo: listening on {local} (backend: {})", lp.backend());
    let result: std::io::Result<()> = lp.run_until_complete(async move {
        if stats {
            ringloop::spawn(async {
                let mut tick = ringloop::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    eprintln!("echo: {:?}", ringloop::current_stats());
                }
            });
        }
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_serve(stream);
                }
                Err(e) => {
                    // EMFILE and friends: say so, back off a little, keep serving.
                    eprintln!("echo: accept failed: {e}");
                    ringloop::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    if let Err(e) = result {
        eprintln!("echo: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
