//! Watching ringloop's tasks in tokio-console: a small echo server with named tasks, its
//! `tracing` data served by `console-subscriber`.
//!
//! ```text
//! RUSTFLAGS="--cfg console_without_tokio_unstable" cargo run -p ringloop-ecosystem --example console --features tracing
//! cargo install --locked tokio-console && tokio-console          # in another terminal
//! ```
//!
//! The cargo feature `tracing` makes ringloop emit a span per task (named by `spawn_named`,
//! entered around each poll) and an event per waker clone, drop and wake. tokio-console then
//! lists the tasks with their names, where they were spawned, polls, busy and idle time, and
//! wakes.
//!
//! The cfg flag: console-subscriber refuses to start unless tokio was built with
//! `--cfg tokio_unstable` (which instruments tokio's own tasks) or the build says
//! `--cfg console_without_tokio_unstable` (there are no tokio tasks to show here apart from the
//! console server's own). Either works; the second rebuilds less. A separate
//! `CARGO_TARGET_DIR` keeps the flag from invalidating the usual build.
//!
//! Tasks: `acceptor` (the listener), one `conn-N` per connection, `client-N` (two clients
//! that send a line every 100 ms), and `ticker` (an interval). `--secs N` stops after N seconds
//! (default: runs until killed). `--addr` sets the console server's address (default
//! 127.0.0.1:6669, the one tokio-console connects to).

use std::net::SocketAddr;
use std::time::Duration;

use ringloop::net::{TcpListener, TcpStream};

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let mut n = 0;
    loop {
        let (stream, _) = listener.accept().await?;
        n += 1;
        ringloop::spawn_named(format!("conn-{n}"), async move {
            loop {
                let (res, buf) = stream.read(Vec::with_capacity(4096)).await;
                if res? == 0 {
                    return std::io::Result::Ok(());
                }
                let (res, _) = stream.write_all(buf).await;
                res?;
            }
        });
    }
}

async fn client(addr: SocketAddr) -> std::io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let mut tick = ringloop::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let (res, _) = stream.write_all(b"hello console\n".to_vec()).await;
        res?;
        let (res, _) = stream.read(Vec::with_capacity(64)).await;
        res?;
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let console_addr: SocketAddr = arg(&args, "--addr")
        .unwrap_or("127.0.0.1:6669")
        .parse()
        .map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--addr: {e}"))
        })?;
    let secs: Option<u64> = match arg(&args, "--secs") {
        Some(s) => Some(s.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--secs: {e}"))
        })?),
        None => None,
    };
    // The console server runs on a thread and tokio runtime of its own.
    console_subscriber::ConsoleLayer::builder()
        .server_addr(console_addr)
        .init();
    ringloop::run(async move {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        println!("echo server on {addr}; tokio-console: tokio-console http://{console_addr}");
        ringloop::spawn_named("acceptor", serve(listener));
        for i in 1..=2 {
            ringloop::spawn_named(format!("client-{i}"), client(addr));
        }
        ringloop::spawn_named("ticker", async {
            let mut tick = ringloop::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
            }
        });
        match secs {
            Some(s) => ringloop::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
        std::io::Result::Ok(())
    })
}
