//! The `axum_app` example's `Router` served by `axum::serve` on tokio: the reference the axum
//! figures in BENCHMARKS.md compare ringloop with.
//!
//! ```text
//! cargo run --release -p ringloop-ecosystem --example tokio_axum_app -- [ADDR] [--threads N]
//! ```
//!
//! Without `--threads`, tokio's current_thread runtime (one thread, as one ringloop loop); with
//! `--threads N`, the multi-thread runtime with N workers (as an `axum_pool` of N loops).
//! `--no-timeout` leaves out tower-http's `TimeoutLayer`, as `axum_app` does without the
//! `tokio-compat` feature.

use std::process::ExitCode;
use std::time::Duration;

#[path = "support/axum_routes.rs"]
mod routes;
#[path = "support/tokio_axum_main.rs"]
mod tokio_axum_main;

fn sleeper(d: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(tokio::time::sleep(d))
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:3000".to_owned();
    let mut threads = None;
    let mut timeout = Some(Duration::from_secs(10));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => match args.next().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => threads = Some(n),
                _ => {
                    eprintln!("usage: tokio_axum_app [ADDR] [--threads N] [--no-timeout]");
                    return ExitCode::FAILURE;
                }
            },
            "--no-timeout" => timeout = None,
            a => addr = a.to_owned(),
        }
    }
    tokio_axum_main::serve(
        "tokio_axum_app",
        &addr,
        threads,
        routes::app(sleeper, timeout),
    )
}
