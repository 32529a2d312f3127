//! The `main` of the tokio reference servers (`tokio_axum_app`, and `tokio_grpc_server` in
//! `examples/grpc`): `axum::serve` on tokio's current_thread runtime, or on the multi-thread one
//! with `threads` workers, until Ctrl-C.

use std::process::ExitCode;

/// Serves `app` on `addr`; `name` prefixes every message.
pub fn serve(name: &str, addr: &str, threads: Option<usize>, app: axum::Router) -> ExitCode {
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
            eprintln!("{name}: cannot build a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Ok(a) = listener.local_addr() {
            let kind = threads.map_or("current_thread".to_owned(), |n| format!("{n} workers"));
            eprintln!("listening on {a} (tokio {kind})");
        }
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
