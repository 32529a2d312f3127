//! The same gRPC router on tokio (`axum::serve`, the same hyper HTTP/2 stack), the reference the
//! gRPC figures in BENCHMARKS.md compare ringloop with: `tokio_grpc_server [ADDR] [--threads N]`
//! (current_thread without `--threads`).

use std::process::ExitCode;
use std::time::Duration;

use ringloop_grpc::{EchoService, router};

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
    let rt = match threads {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio_grpc_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tokio_grpc_server: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Ok(a) = listener.local_addr() {
            eprintln!("listening on {a} (tokio)");
        }
        let app = router(EchoService::with_sleeper(sleeper));
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tokio_grpc_server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
