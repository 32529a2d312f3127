//! Copies a file through `ringloop::fs`: to another file, or to stdout.
//!
//! ```text
//! cargo run --example cat -- SRC DST
//! cargo run --example cat -- SRC        # to stdout
//! RINGLOOP_BACKEND=epoll cargo run --example cat -- SRC DST
//! ```

use std::io::Write;
use std::process::ExitCode;

use ringloop::fs::File;

const CHUNK: usize = 256 * 1024;

async fn copy(src: &str, dst: Option<&str>) -> std::io::Result<u64> {
    let input = File::open(src).await?;
    let output = match dst {
        Some(path) => Some(File::create(path).await?),
        None => None,
    };
    let mut stdout = std::io::stdout().lock();
    let mut pos = 0u64;
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        let (res, b) = input.read_at(buf, pos).await;
        let n = res?;
        if n == 0 {
            break;
        }
        buf = match &output {
            Some(out) => {
                let (res, b) = out.write_all_at(b, pos).await;
                res?;
                b
            }
            None => {
                stdout.write_all(&b)?;
                b
            }
        };
        pos += n as u64;
    }
    if let Some(out) = output {
        out.sync_all().await?;
        out.close().await?;
    }
    stdout.flush()?;
    input.close().await?;
    Ok(pos)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, dst) = match args.as_slice() {
        [src] => (src.as_str(), None),
        [src, dst] => (src.as_str(), Some(dst.as_str())),
        _ => {
            eprintln!("usage: cat SRC [DST]   (copies SRC to DST, or to stdout)");
            return ExitCode::FAILURE;
        }
    };
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("cat: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = lp.backend();
    match lp.run_until_complete(copy(src, dst)) {
        Ok(n) => {
            if dst.is_some() {
                eprintln!("cat: copied {n} bytes from {src} (backend: {backend})");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cat: {src}: {e}");
            ExitCode::FAILURE
        }
    }
}
