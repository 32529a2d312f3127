//! The same TCP echo server as `examples/echo.rs`, on tokio's current_thread runtime: the
//! reference the benchmarks compare ringloop against. Serves until killed.
//!
//! ```text
//! cargo run --release -p ringloop-benches --example tokio_echo -- 7001
//! ```
//!
//! It reads into the spare capacity of a 16 KiB buffer and writes back what it read, with
//! `TCP_NODELAY`, as `examples/echo.rs --owned` does.
//!
//! With `--shared-buf` it serves as tokio suggests for many idle connections, the fair reference
//! for `examples/echo.rs`'s pooled receives: `readable().await`, then `try_read` into one 16 KiB
//! buffer shared by the thread, then `try_write` straight from it (only bytes the socket would
//! not take at once are copied into a buffer of the connection's own, for `write_all`).
//!
//! ```text
//! cargo run --release -p ringloop-benches --example tokio_echo -- --shared-buf 7001
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUF_SIZE: usize = 16 * 1024;

async fn serve(mut stream: TcpStream) {
    // Capacity, not zeroed bytes: `read_buf` reads into the spare capacity, so an idle
    // connection's buffer is never touched, as in examples/echo.rs.
    let mut buf = Vec::with_capacity(BUF_SIZE);
    loop {
        buf.clear();
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if stream.write_all(&buf).await.is_err() {
            return;
        }
    }
}

thread_local! {
    /// `--shared-buf`: the one read buffer of the thread.
    static SHARED: RefCell<Vec<u8>> = RefCell::new(vec![0; BUF_SIZE]);
}

/// Reads into the thread's shared buffer and writes from it; a connection keeps bytes of its own
/// only while the socket would not take them at once.
async fn serve_shared(mut stream: TcpStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        // Neither borrow of the shared buffer lives across an await.
        let rest = SHARED.with_borrow_mut(|buf| -> std::io::Result<Option<Vec<u8>>> {
            let n = match stream.try_read(buf) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            let sent = match stream.try_write(&buf[..n]) {
                Ok(sent) => sent,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            Ok((sent < n).then(|| buf[sent..n].to_vec()))
        });
        match rest {
            Ok(None) => {}
            Ok(Some(rest)) => {
                if stream.write_all(&rest).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shared = args.iter().any(|a| a == "--shared-buf");
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with("--") && a.as_str() != "--shared-buf")
    {
        eprintln!("tokio_echo: unknown option {bad}; the only option is --shared-buf");
        return ExitCode::FAILURE;
    }
    let arg = args
        .iter()
        .rfind(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "7000".into());
    let addr: SocketAddr = match arg.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => match arg.parse() {
            Ok(a) => a,
            Err(_) => {
                eprintln!("tokio_echo: {arg:?} is neither a port nor an address");
                return ExitCode::FAILURE;
            }
        },
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio_echo: cannot build a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("tokio_echo: listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    if shared {
                        tokio::spawn(serve_shared(stream));
                    } else {
                        tokio::spawn(serve(stream));
                    }
                }
                Err(e) => {
                    eprintln!("tokio_echo: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
    if let Err(e) = result {
        eprintln!("tokio_echo: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
