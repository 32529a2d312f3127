//! The same gRPC router on tokio (`axum::serve`, the same hyper HTTP/2 stack), the reference the
//! gRPC figures in BENCHMARKS.md compare ringloop with: `tokio_grpc_server [ADDR] [--threads N]`
//! (current_thread without `--threads`).

use std::process::ExitCode;
use std::time::Duration;

use ringloop_grpc::{EchoService, router};

#[path = "../../../../ecosystem/examples/support/tokio_axum_main.rs"]
mod tokio_axum_main;

fn sleeper(d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(tokio::time::sleep(d))
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:50051".to_owned();
    let mut threads = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().and_then(|n| n.parse::<usize>().ok()),
            a => addr = a.to_owned(),
        }
    }
    let app = router(EchoService::with_sleeper(sleeper));
    tokio_axum_main::serve("tokio_grpc_server", &addr, threads, app)
}
