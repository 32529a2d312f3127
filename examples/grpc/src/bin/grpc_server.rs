//! The `echo.Echo` gRPC service on ringloop: `grpc_server [ADDR]` (default 127.0.0.1:50051).
//! Stops gracefully on SIGINT or SIGTERM. RINGLOOP_BACKEND=auto|uring|epoll picks the backend.
//!
//! ```text
//! cargo run --release -p ringloop-grpc --bin grpc_server
//! cargo run --release -p ringloop-grpc --bin grpc_client
//! ```

use std::process::ExitCode;

use ringloop::net::TcpListener;
use ringloop_grpc::{EchoService, router};

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:50051".to_owned();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: grpc_server [ADDR]   (default 127.0.0.1:50051)");
                return ExitCode::SUCCESS;
            }
            a => addr = a.to_owned(),
        }
    }
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("grpc_server: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = lp.backend();
    lp.run_until_complete(async move {
        let listener = match TcpListener::bind(addr.as_str()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("grpc_server: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut term = match ringloop::signal::signal(ringloop::signal::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("grpc_server: cannot listen for SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        let interrupted = ringloop::signal::ctrl_c();
        let stop = async move {
            futures::future::select(Box::pin(term.wait()), Box::pin(interrupted)).await;
        };
        let server = ringloop::compat::axum::serve(listener, router(EchoService::default()))
            .with_graceful_shutdown(stop);
        match server.local_addr() {
            Ok(a) => eprintln!("listening on {a} (backend: {backend})"),
            Err(e) => eprintln!("grpc_server: {e}"),
        }
        match server.await {
            Ok(()) => {
                eprintln!("grpc_server: stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("grpc_server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
