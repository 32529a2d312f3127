//! hyper 1.x on ringloop: HTTP/1.1 and HTTP/2 cleartext (prior knowledge) on one port.
//!
//! ```text
//! cargo run --release -p ringloop-ecosystem --example hyper_server [-- ADDR]
//! curl http://127.0.0.1:8080/
//! curl --http2-prior-knowledge http://127.0.0.1:8080/bytes/100
//! curl --data-binary @file http://127.0.0.1:8080/echo
//! ```
//!
//! Routes: `/` answers `Hello, world!`; `POST /echo` streams the request body back as it arrives;
//! `/bytes/N` sends N bytes of a known pattern (byte i is `i % 251`); anything else is a 404.
//! hyper-util's auto builder tells HTTP/1.1 from HTTP/2 by the connection preface. Each
//! connection is a task on the loop; HTTP/2 streams are tasks too ([`LocalExec`]); hyper's
//! timers (header-read timeout, keep-alive) run on the loop's timers ([`Timer`]).

use std::process::ExitCode;

use ringloop::compat::PollIo;
use ringloop::compat::hyper::{LocalExec, Timer};
use ringloop::net::TcpListener;

#[path = "support/hyper_routes.rs"]
mod routes;
use routes::route;

async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: say so, wait a little, go on.
                eprintln!("hyper_server: accept failed: {e}");
                ringloop::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        ringloop::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
            builder.http1().timer(Timer);
            builder.http2().timer(Timer).max_concurrent_streams(256);
            let conn =
                builder.serve_connection(PollIo::new(stream), hyper::service::service_fn(route));
            if let Err(e) = conn.await {
                // A client that went away mid-request or spoke something else than HTTP.
                if std::env::var_os("HYPER_SERVER_VERBOSE").is_some() {
                    eprintln!("hyper_server: connection: {e}");
                }
            }
        });
    }
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:8080".to_owned();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!(
                    "usage: hyper_server [ADDR]   (default 127.0.0.1:8080)\n\
                     routes: /  POST /echo  /bytes/N\n\
                     RINGLOOP_BACKEND=auto|uring|epoll picks the backend; HYPER_SERVER_VERBOSE=1 \
                     logs connection errors"
                );
                return ExitCode::SUCCESS;
            }
            a => addr = a.to_owned(),
        }
    }
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("hyper_server: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = lp.backend();
    lp.run_until_complete(async move {
        let listener = match TcpListener::bind(addr.as_str()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hyper_server: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(a) => eprintln!("listening on {a} (backend: {backend})"),
            Err(e) => eprintln!("hyper_server: {e}"),
        }
        // Stops on SIGINT (Ctrl-C) or SIGTERM: the loop closes and the process exits normally.
        let mut term = match ringloop::signal::signal(ringloop::signal::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hyper_server: cannot listen for SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        let interrupted = ringloop::signal::ctrl_c();
        let stop = futures::future::select(Box::pin(term.wait()), Box::pin(interrupted));
        futures::future::select(Box::pin(serve(listener)), stop).await;
        eprintln!("hyper_server: stopped by a signal");
        ExitCode::SUCCESS
    })
}
