//! The `echo.Echo` gRPC service on ringloop: `grpc_server [ADDR]` (default 127.0.0.1:50051).
//! Stops gracefully on SIGINT or SIGTERM. RINGLOOP_BACKEND=auto|uring|epoll picks the backend.
//!
//! ```text
//! cargo run --release -p ringloop-grpc --bin grpc_server
//! cargo run --release -p ringloop-grpc --bin grpc_client
//! ```

use std::process::ExitCode;

use ringloop_grpc::{EchoService, router};

#[path = "../../../../ecosystem/examples/support/axum_main.rs"]
mod axum_main;

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
    axum_main::serve("grpc_server", &addr, router(EchoService::default()))
}
