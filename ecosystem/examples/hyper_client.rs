//! An HTTP client on ringloop with hyper's `client::conn`: HTTP/1.1, or HTTP/2 with `--http2`
//! (cleartext, prior knowledge).
//!
//! ```text
//! cargo run -p ringloop-ecosystem --example hyper_client -- http://127.0.0.1:8080/
//! cargo run -p ringloop-ecosystem --example hyper_client -- --http2 http://127.0.0.1:8080/bytes/1000
//! ```
//!
//! Prints the status line, the headers and the body's length (`--body` prints the body too).

use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use ringloop::compat::PollIo;
use ringloop::compat::hyper::{LocalExec, Timer};
use ringloop::net::TcpStream;

const USAGE: &str = "usage: hyper_client [--http2] [--body] http://HOST[:PORT]/PATH";

struct Args {
    uri: Uri,
    http2: bool,
    body: bool,
}

fn parse_args() -> Result<Args, String> {
    let (mut uri, mut http2, mut body) = (None, false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--http2" => http2 = true,
            "--body" => body = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}\n{USAGE}")),
            a => {
                let parsed: Uri = a.parse().map_err(|e| format!("{a:?} is not a URL: {e}"))?;
                if parsed.scheme_str() != Some("http") {
                    return Err(format!("{a:?}: only http:// URLs are supported"));
                }
                if parsed.host().is_none() {
                    return Err(format!("{a:?}: no host"));
                }
                uri = Some(parsed);
            }
        }
    }
    let uri = uri.ok_or_else(|| format!("no URL given\n{USAGE}"))?;
    Ok(Args { uri, http2, body })
}

async fn fetch(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let host = args.uri.host().expect("checked in parse_args");
    let port = args.uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await?;
    let io = PollIo::new(stream);
    let path = args.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = args.uri.authority().expect("a URL with a host").as_str();
    let res = if args.http2 {
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(LocalExec)
            .timer(Timer)
            .handshake(io)
            .await?;
        ringloop::spawn(conn);
        // HTTP/2 takes the full URI (scheme and authority become pseudo-headers).
        let req = Request::get(args.uri.clone()).body(Empty::<Bytes>::new())?;
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        ringloop::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, authority)
            .body(Empty::<Bytes>::new())?;
        sender.send_request(req).await?
    };
    println!("{:?} {}", res.version(), res.status());
    for (name, value) in res.headers() {
        println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    let body = res.into_body().collect().await?.to_bytes();
    println!("body: {} bytes", body.len());
    if args.body {
        println!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hyper_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("hyper_client: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = lp.backend();
    match lp.run_until_complete(fetch(&args)) {
        Ok(()) => {
            eprintln!("(backend: {backend})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hyper_client: {}: {e}", args.uri);
            ExitCode::FAILURE
        }
    }
}
