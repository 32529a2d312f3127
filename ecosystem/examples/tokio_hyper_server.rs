//! The `hyper_server` example's service on tokio's current_thread runtime (hyper-util's
//! `TokioIo`), the reference the hyper figures in BENCHMARKS.md compare ringloop with.
//!
//! ```text
//! cargo run --release -p ringloop-ecosystem --example tokio_hyper_server [-- ADDR]
//! ```

use std::process::ExitCode;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

#[path = "support/hyper_routes.rs"]
mod routes;
use routes::route;

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio_hyper_server: cannot build a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tokio_hyper_server: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Ok(a) = listener.local_addr() {
            eprintln!("listening on {a} (tokio current_thread)");
        }
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("tokio_hyper_server: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(256);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(route))
                    .await;
            });
        }
    })
}
