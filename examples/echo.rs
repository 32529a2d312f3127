//! A TCP echo server. Serves until killed.
//!
//! ```text
//! cargo run --release --example echo                 # 127.0.0.1:7000
//! cargo run --release --example echo -- 7001         # a port on 127.0.0.1
//! cargo run --release --example echo -- 0.0.0.0:7000 # an address
//! RINGLOOP_BACKEND=epoll cargo run --release --example echo
//! ```
//!
//! With `--stats`, it prints the loop's counters to stderr every second (ops, completions,
//! syscalls, polls), to measure syscalls per request.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ringloop::net::{TcpListener, TcpStream};

const BUF_SIZE: usize = 16 * 1024;

fn parse_addr(arg: &str) -> Option<SocketAddr> {
    if let Ok(port) = arg.parse::<u16>() {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    arg.parse().ok()
}

async fn serve(stream: TcpStream) {
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stats = args.iter().any(|a| a == "--stats");
    let addr = match args.iter().rfind(|a| !a.starts_with("--")) {
        None => SocketAddr::from(([127, 0, 0, 1], 7000)),
        Some(a) => match parse_addr(a) {
            Some(addr) => addr,
            None => {
                eprintln!("echo: {a:?} is neither a port nor an address like 127.0.0.1:7000");
                return ExitCode::FAILURE;
            }
        },
    };
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
                    ringloop::spawn(serve(stream));
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
