//! A static file server on ringloop's own API: HTTP/1.1 keep-alive (pipelined requests too),
//! GET and HEAD, `Content-Length` and `Last-Modified`, bodies sent with `send_file` (no copy
//! through user space), one loop per thread with `--threads N`.
//!
//! ```text
//! cargo run --release --example file_server -- DIR [ADDR] [--threads N] [--head-timeout SECS]
//!     [--idle-timeout SECS] [--send-timeout SECS] [--max-conns N]      (ADDR: 127.0.0.1:8080)
//! curl http://127.0.0.1:8080/some/file
//! ```
//!
//! Paths are confined to DIR: the kernel resolves each one beneath the served directory
//! (`openat2` with `RESOLVE_BENEATH`), so `..`, absolute symlinks and symlinks that lead out are
//! refused (404), as are NUL bytes and malformed escapes (400), paths over 1024 bytes (414) and
//! anything not a regular file (404: a FIFO or a device is not opened but in a race, see
//! examples/support/file_serve.rs). Other methods get 405, malformed requests 400 (and the
//! connection closes). Stops on SIGINT or SIGTERM.
//!
//! Bounds for the public, per loop: a request head must arrive within `--head-timeout` (10 s)
//! of its first byte or of the connection's start (else 408 and close), a kept-alive connection
//! may idle `--idle-timeout` (60 s), a client must take each write of a response (up to 1 MiB
//! of a body) within `--send-timeout` (30 s), and at most `--max-conns` (10,000) connections are
//! served at once (the next get 503 and are closed).

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ringloop::LoopPool;

#[path = "support/file_serve.rs"]
mod file_serve;
#[path = "support/pool_main.rs"]
mod pool_main;
use file_serve::Limits;
use ringloop::net::TcpListener;

fn usage() -> ExitCode {
    eprintln!(
        "usage: file_server DIR [ADDR] [--threads N] [--head-timeout SECS] [--idle-timeout SECS] \
         [--send-timeout SECS] [--max-conns N]   (ADDR defaults to 127.0.0.1:8080; timeouts \
         10, 60 and 30 s, 10000 connections per loop)"
    );
    ExitCode::FAILURE
}

/// A positive number of seconds (fractions allowed).
fn secs(arg: Option<String>) -> Option<Duration> {
    let s: f64 = arg?.parse().ok()?;
    (s > 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s))
}

fn main() -> ExitCode {
    let mut dir = None;
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut threads = 1usize;
    let mut limits = Limits::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => return usage(),
            },
            "--max-conns" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => limits.max_conns = n,
                _ => return usage(),
            },
            "--head-timeout" | "--idle-timeout" | "--send-timeout" => {
                let Some(t) = secs(args.next()) else {
                    return usage();
                };
                match arg.as_str() {
                    "--head-timeout" => limits.head_timeout = t,
                    "--idle-timeout" => limits.idle_timeout = t,
                    _ => limits.send_timeout = t,
                }
            }
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => return usage(),
            a if dir.is_none() => dir = Some(a.to_owned()),
            a => addr = a.to_owned(),
        }
    }
    let Some(dir) = dir else { return usage() };
    let root = match std::fs::File::open(&dir) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => OwnedFd::from(f),
        Ok(_) => {
            eprintln!("file_server: {dir} is not a directory");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("file_server: cannot open {dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (local, listeners) = match pool_main::bind_shared(&addr, threads) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("file_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = std::sync::Mutex::new(listeners);
    let roots: io::Result<Vec<OwnedFd>> = (0..threads).map(|_| root.try_clone()).collect();
    let roots = match roots {
        Ok(r) => std::sync::Mutex::new(r.into_iter().map(Some).collect::<Vec<_>>()),
        Err(e) => {
            eprintln!("file_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pool = LoopPool::builder()
        .threads(threads)
        .thread_name("files")
        .shutdown_on_signals(true)
        .start(move |cx| {
            let i = cx.index();
            let std_listener = listeners.lock().unwrap_or_else(|e| e.into_inner())[i].take();
            let root = roots.lock().unwrap_or_else(|e| e.into_inner())[i].take();
            async move {
                let (Some(l), Some(root)) = (std_listener, root) else {
                    return Err(io::Error::other("one listener and root per loop"));
                };
                let stop = cx.shutdown();
                file_serve::serve(
                    TcpListener::from_std(l)?,
                    Arc::new(root),
                    limits,
                    async move {
                        stop.triggered().await;
                    },
                )
                .await
            }
        });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            eprintln!("file_server: cannot start {threads} loops: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = std::env::var("RINGLOOP_BACKEND").unwrap_or_else(|_| "auto".into());
    eprintln!(
        "listening on {local} ({threads} loops, backend: {backend}; serving {})",
        std::path::Path::new(&dir).as_os_str().to_string_lossy()
    );
    pool_main::join("file_server", pool)
}
