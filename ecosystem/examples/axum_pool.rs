//! The axum app thread-per-core: one ringloop loop per thread, each serving the same `Router` on
//! its own listener (`SO_REUSEPORT` spreads the connections), all stopping gracefully on SIGINT or
//! SIGTERM.
//!
//! ```text
//! cargo run --release -p ringloop-ecosystem --example axum_pool -- [ADDR] [--threads N]
//! ```
//!
//! ADDR defaults to 127.0.0.1:3000, N to the number of CPUs. Routes: as `axum_app`.

use std::process::ExitCode;
use std::time::Duration;

use ringloop::LoopPool;
use ringloop::net::TcpListener;

#[path = "../../examples/support/pool_main.rs"]
mod pool_main;
#[path = "support/axum_routes.rs"]
mod routes;

fn sleeper(d: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(hyper::rt::Timer::sleep(&ringloop::compat::hyper::Timer, d))
}

fn usage() -> ExitCode {
    eprintln!("usage: axum_pool [ADDR] [--threads N]   (default 127.0.0.1:3000, N = CPUs)");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:3000".to_owned();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => return usage(),
            },
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => return usage(),
            a => addr = a.to_owned(),
        }
    }
    let (local, listeners) = match pool_main::bind_shared(&addr, threads) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("axum_pool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = std::sync::Mutex::new(listeners);
    let timeout = cfg!(feature = "tokio-compat").then_some(Duration::from_secs(10));
    let app = routes::app(sleeper, timeout);
    let pool = LoopPool::builder()
        .threads(threads)
        .thread_name("axum")
        .shutdown_on_signals(true)
        .start(move |cx| {
            let std_listener = listeners.lock().unwrap_or_else(|e| e.into_inner())[cx.index()]
                .take()
                .expect("one listener per loop");
            let app = app.clone();
            async move {
                let listener = TcpListener::from_std(std_listener)?;
                let stop = cx.shutdown().triggered();
                ringloop::compat::axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
        });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            eprintln!("axum_pool: cannot start {threads} loops: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {local} ({threads} loops; Ctrl-C or SIGTERM stops)");
    pool_main::join("axum_pool", pool)
}
