//! The same TCP echo server as `examples/echo.rs`, on tokio's current_thread runtime: the
//! reference the benchmarks compare ringloop against. Serves until killed.
//!
//! ```text
//! cargo run --release --example tokio_echo -- 7001
//! ```
//!
//! It reads into the spare capacity of a 16 KiB buffer and writes back what it read, with
//! `TCP_NODELAY`, exactly as `examples/echo.rs` does.

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

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "7000".into());
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
                    tokio::spawn(serve(stream));
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
