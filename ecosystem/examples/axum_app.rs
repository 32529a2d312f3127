//! An axum app on ringloop: HTTP/1.1 and h2c on one port, graceful shutdown on SIGINT/SIGTERM.
//!
//! ```text
//! cargo run --release -p ringloop-ecosystem --example axum_app [-- ADDR]      (default 127.0.0.1:3000)
//! curl http://127.0.0.1:3000/
//! curl http://127.0.0.1:3000/users/7
//! curl --http2-prior-knowledge 'http://127.0.0.1:3000/search?q=ring&limit=3'
//! curl -H 'content-type: application/json' -d '{"name":"ada"}' http://127.0.0.1:3000/users
//! ```
//!
//! The routes and middleware are in `examples/support/axum_routes.rs` (the same `Router` the
//! `axum_pool` and `tokio_axum_app` examples serve). With `--features axum,tokio-compat`,
//! tower-http's `TimeoutLayer` (which calls `tokio::time`) is added too, answering 408 after 10 s.
//!
//! No WebSocket route: axum's `ws` extractor hands the upgraded connection to `tokio::spawn`, and
//! hyper's upgrades need a `Send` connection, while a ringloop stream belongs to the loop that
//! opened it. The `websocket` example serves WebSockets on ringloop without axum.

use std::process::ExitCode;
use std::time::Duration;

#[path = "support/axum_main.rs"]
mod axum_main;
#[path = "support/axum_routes.rs"]
mod routes;

/// `/slow` sleeps on the loop's timers through hyper's `Send` sleep.
fn sleeper(d: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(hyper::rt::Timer::sleep(&ringloop::compat::hyper::Timer, d))
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:3000".to_owned();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!(
                    "usage: axum_app [ADDR]   (default 127.0.0.1:3000)\n\
                     RINGLOOP_BACKEND=auto|uring|epoll picks the backend; SIGINT or SIGTERM \
                     stops it gracefully"
                );
                return ExitCode::SUCCESS;
            }
            a => addr = a.to_owned(),
        }
    }
    let timeout = cfg!(feature = "tokio-compat").then_some(Duration::from_secs(10));
    axum_main::serve("axum_app", &addr, routes::app(sleeper, timeout))
}
