//! The `main` of a one-loop axum server example (`axum_app`, and `grpc_server` in
//! `examples/grpc`): build the loop, bind, serve the router with `compat::axum::serve` until
//! SIGINT or SIGTERM, then finish the requests in flight.

use std::process::ExitCode;

use ringloop::net::TcpListener;

/// Serves `app` on `addr` on a new loop; `name` prefixes every message. Prints
/// `listening on ADDR (backend: B)` once bound (scripts wait for it).
pub fn serve(name: &'static str, addr: &str, app: axum::Router) -> ExitCode {
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("{name}: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = lp.backend();
    lp.run_until_complete(async move {
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut term = match ringloop::signal::signal(ringloop::signal::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: cannot listen for SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        let interrupted = ringloop::signal::ctrl_c();
        let stop = async move {
            futures::future::select(Box::pin(term.wait()), Box::pin(interrupted)).await;
            eprintln!("{name}: signal received, finishing the requests in flight");
        };
        let server = ringloop::compat::axum::serve(listener, app).with_graceful_shutdown(stop);
        match server.local_addr() {
            Ok(a) => eprintln!("listening on {a} (backend: {backend})"),
            Err(e) => eprintln!("{name}: {e}"),
        }
        match server.await {
            Ok(()) => {
                eprintln!("{name}: stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
