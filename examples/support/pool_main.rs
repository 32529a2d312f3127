//! The parts of a thread-per-core server's `main` that `axum_pool` and `file_server` share: one
//! listener per loop on a shared port, and waiting for the pool.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use ringloop::LoopPool;
use ringloop::net::TcpListener;

/// Binds `n` listeners on `addr` with `SO_REUSEPORT` (the first picks the port when it is 0; the
/// others share it), as std listeners so that each can move to its loop's thread. The error says
/// which bind failed.
pub fn bind_shared(
    addr: &str,
    n: usize,
) -> io::Result<(SocketAddr, Vec<Option<std::net::TcpListener>>)> {
    let context =
        |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let first = TcpListener::builder()
        .reuse_port(true)
        .bind(addr)
        .map_err(context(format!("cannot listen on {addr}")))?;
    let local = first.local_addr()?;
    let mut listeners = vec![Some(first.into_std()?)];
    for _ in 1..n {
        let l = TcpListener::builder()
            .reuse_port(true)
            .bind(local)
            .map_err(context(format!("cannot listen on {local} again")))?;
        listeners.push(Some(l.into_std()?));
    }
    Ok((local, listeners))
}

/// Waits for every loop of `pool`, printing each loop's error or panic; then `NAME: stopped`.
pub fn join(name: &str, pool: LoopPool<io::Result<()>>) -> ExitCode {
    let mut failed = false;
    for (i, res) in pool.join().into_iter().enumerate() {
        let err = match res {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        eprintln!("{name}: loop {i}: {err}");
        failed = true;
    }
    eprintln!("{name}: stopped");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
