//! A static file server on ringloop's own API: HTTP/1.1 keep-alive (pipelined requests too),
//! GET and HEAD, `Content-Length` and `Last-Modified`, bodies sent with `send_file` (no copy
//! through user space), one loop per thread with `--threads N`.
//!
//! ```text
//! cargo run --release --example file_server -- DIR [ADDR] [--threads N]   (ADDR: 127.0.0.1:8080)
//! curl http://127.0.0.1:8080/some/file
//! ```
//!
//! Paths are confined to DIR: the kernel resolves each one beneath the served directory
//! (`openat2` with `RESOLVE_BENEATH`), so `..`, absolute symlinks and symlinks that lead out are
//! refused (404), as are NUL bytes and malformed escapes (400), paths over 1024 bytes (414) and
//! anything not a regular file (404). Other methods get 405, malformed requests 400 (and the
//! connection closes). Stops on SIGINT or SIGTERM.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use ringloop::LoopPool;

#[path = "support/pool_main.rs"]
mod pool_main;
use ringloop::net::{TcpListener, TcpStream};

/// The longest request path taken (after decoding).
const MAX_PATH: usize = 1024;
/// The most bytes of request head kept while waiting for its end.
const MAX_HEAD: usize = 16 * 1024;

/// What a request asked for, once checked.
enum Target {
    File {
        file: ringloop::fs::File,
        len: u64,
        modified: SystemTime,
    },
    Error(u16, &'static str),
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a NUL byte.
fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            i += 3;
            u8::from_str_radix(hex, 16).ok()?
        } else {
            i += 1;
            bytes[i - 1]
        };
        if b == 0 {
            return None;
        }
        out.push(b);
    }
    Some(out)
}

/// Opens `path` (the request's, without its query) beneath the directory `root`, refusing what
/// would leave it.
fn open_beneath(root: &OwnedFd, path: &str) -> Target {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path) else {
        return Target::Error(400, "Bad Request");
    };
    if decoded.len() > MAX_PATH {
        return Target::Error(414, "URI Too Long");
    }
    // Relative to the root: the leading slashes go ("/" itself names the root, a directory).
    let rel: Vec<u8> = decoded.iter().copied().skip_while(|&b| b == b'/').collect();
    let rel = if rel.is_empty() { b".".to_vec() } else { rel };
    let Ok(c_path) = CString::new(rel) else {
        return Target::Error(400, "Bad Request");
    };
    // SAFETY: open_how is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid dirfd, a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(root),
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        // ENOENT, EXDEV (it would leave the root), ELOOP, EACCES...: not found, to the client.
        return Target::Error(404, "Not Found");
    }
    // SAFETY: openat2 just returned this fd; it is owned once, here.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    match file.metadata() {
        Ok(m) if m.is_file() => Target::File {
            len: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            file: ringloop::fs::File::from_std(file),
        },
        _ => Target::Error(404, "Not Found"),
    }
}

/// Serves one connection until the client closes it, sends a bad request, or an error.
async fn serve_conn(stream: TcpStream, root: Rc<OwnedFd>) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut spare = Vec::with_capacity(8192);
    loop {
        // Answer every complete request already received (pipelining), in order.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let used = match req.parse(&pending) {
                Ok(httparse::Status::Complete(used)) => {
                    let close = req.version == Some(0)
                        || req.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case("connection")
                                && h.value.eq_ignore_ascii_case(b"close")
                        });
                    let has_body = req.headers.iter().any(|h| {
                        (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                            || h.name.eq_ignore_ascii_case("transfer-encoding")
                    });
                    let method = req.method.unwrap_or("");
                    let head = method == "HEAD";
                    let target = if has_body {
                        Target::Error(400, "Bad Request") // GET and HEAD carry no body here
                    } else if method != "GET" && !head {
                        Target::Error(405, "Method Not Allowed")
                    } else {
                        open_beneath(&root, req.path.unwrap_or(""))
                    };
                    let fatal = has_body;
                    respond(&stream, target, head, close || fatal).await?;
                    if close || fatal {
                        return Ok(());
                    }
                    used
                }
                Ok(httparse::Status::Partial) if pending.len() < MAX_HEAD => break,
                _ => {
                    respond(&stream, Target::Error(400, "Bad Request"), false, true).await?;
                    return Ok(());
                }
            };
            pending.drain(..used);
        }
        let (res, buf) = stream.read(spare).await;
        let n = res?;
        if n == 0 {
            return Ok(()); // the client closed
        }
        pending.extend_from_slice(&buf[..n]);
        spare = buf;
    }
}

async fn respond(
    stream: &TcpStream,
    target: Target,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let conn = if close { "close" } else { "keep-alive" };
    match target {
        Target::Error(code, reason) => {
            let body = format!("{code} {reason}\n");
            let mut out = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}Connection: {conn}\r\n\r\n",
                body.len(),
                if code == 405 {
                    "Allow: GET, HEAD\r\n"
                } else {
                    ""
                },
            );
            if !head_only {
                out.push_str(&body);
            }
            let (res, _) = stream.write_all(out.into_bytes()).await;
            res
        }
        Target::File {
            file,
            len,
            modified,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nLast-Modified: {}\r\nContent-Type: application/octet-stream\r\nConnection: {conn}\r\n\r\n",
                httpdate::fmt_http_date(modified)
            );
            let (res, _) = stream.write_all(head.into_bytes()).await;
            res?;
            if !head_only {
                let sent = stream.send_file(&file, 0, len).await?;
                if sent < len {
                    // The file shrank after the headers went: the client must not wait for more.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank",
                    ));
                }
            }
            Ok(())
        }
    }
}

async fn serve(
    listener: TcpListener,
    root: Rc<OwnedFd>,
    stop: ringloop::Shutdown,
) -> io::Result<()> {
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Headers and body go as separate sends: without NODELAY a small body would
                    // wait for the client's delayed ACK of the headers.
                    let _ = stream.set_nodelay(true);
                    let root = root.clone();
                    ringloop::spawn(async move {
                        if let Err(e) = serve_conn(stream, root).await
                            && std::env::var_os("FILE_SERVER_VERBOSE").is_some()
                        {
                            eprintln!("file_server: connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("file_server: accept failed: {e}");
                    ringloop::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    // Whichever ends first: the accept loop (never, in practice) or the stop signal.
    let mut accept_loop = std::pin::pin!(accept_loop);
    let mut stopped = std::pin::pin!(stop.triggered());
    std::future::poll_fn(|cx| {
        if accept_loop.as_mut().poll(cx).is_ready() || stopped.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    Ok(())
}

fn usage() -> ExitCode {
    eprintln!("usage: file_server DIR [ADDR] [--threads N]   (ADDR defaults to 127.0.0.1:8080)");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let mut dir = None;
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut threads = 1usize;
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
            a if dir.is_none() => dir = Some(a.to_owned()),
            a => addr = a.to_owned(),
        }
    }
    let Some(dir) = dir else { return usage() };
    let root = match std::fs::File::open(&dir) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => OwnedFd::from(f),
        Ok(_) => {
            eprintln!("file_server: {dir} is not a directory");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("file_server: cannot open {dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (local, listeners) = match pool_main::bind_shared(&addr, threads) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("file_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = std::sync::Mutex::new(listeners);
    let roots: io::Result<Vec<OwnedFd>> = (0..threads).map(|_| root.try_clone()).collect();
    let roots = match roots {
        Ok(r) => std::sync::Mutex::new(r.into_iter().map(Some).collect::<Vec<_>>()),
        Err(e) => {
            eprintln!("file_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pool = LoopPool::builder()
        .threads(threads)
        .thread_name("files")
        .shutdown_on_signals(true)
        .start(move |cx| {
            let i = cx.index();
            let std_listener = listeners.lock().unwrap_or_else(|e| e.into_inner())[i].take();
            let root = roots.lock().unwrap_or_else(|e| e.into_inner())[i].take();
            async move {
                let (Some(l), Some(root)) = (std_listener, root) else {
                    return Err(io::Error::other("one listener and root per loop"));
                };
                serve(TcpListener::from_std(l)?, Rc::new(root), cx.shutdown()).await
            }
        });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            eprintln!("file_server: cannot start {threads} loops: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = std::env::var("RINGLOOP_BACKEND").unwrap_or_else(|_| "auto".into());
    eprintln!(
        "listening on {local} ({threads} loops, backend: {backend}; serving {})",
        std::path::Path::new(&dir).as_os_str().to_string_lossy()
    );
    pool_main::join("file_server", pool)
}
