//! The core of examples/file_server.rs, kept apart so tests/file_server.rs runs it in-process:
//! HTTP/1.1 keep-alive (pipelined requests too), GET and HEAD, `Content-Length` and
//! `Last-Modified`, bodies sent with `send_file` (the headers held to leave with the body's first
//! bytes), and the bounds a public server needs.
//!
//! - Paths are confined to the served directory: the kernel resolves each one beneath it
//!   (`openat2` with `RESOLVE_BENEATH`), so `..`, absolute symlinks and symlinks that lead out
//!   are refused (404), as are NUL bytes and malformed escapes (400) and paths over 1024 bytes
//!   (414).
//! - Only regular files are served. The path is first opened with `O_PATH`, which opens nothing
//!   (a FIFO would block `open` until a writer comes, and a device's driver would run), and its
//!   type checked; a regular file is then opened for reading with `O_NONBLOCK` and checked to be
//!   the same file. Anything else is 404. A plain name (no `/`) that passed keeps its answer on
//!   the loop while the directory's change time stays the same (no entry of it added, removed
//!   or renamed since): it is then opened for reading at once, without following a symlink or
//!   crossing a mount, and still checked to be that regular file (`CHECKED`). A FIFO or device
//!   put in its place in the same tick of the directory's clock as an earlier change, on a
//!   file system whose change times are coarse, could be opened (without blocking) before the
//!   404: the same kind of race as one between the two opens.
//! - The loop thread never waits for the disk: each path is resolved inline only from the
//!   kernel's caches (`RESOLVE_CACHED`), else on the blocking pool.
//! - Bounds ([`Limits`]): a request head must arrive within `head_timeout` of its first byte
//!   (or of the connection's start), a kept-alive connection may idle `idle_timeout` between
//!   requests, each write of a response (up to 1 MiB of a body) must be taken by the client
//!   within `send_timeout`, and at most `max_conns` connections are served at once (the next
//!   ones get a 503 and are closed).

use std::cell::Cell;
use std::ffi::CString;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ringloop::net::{TcpListener, TcpStream};

/// The longest request path taken (after decoding).
pub const MAX_PATH: usize = 1024;
/// The most bytes of request head kept while waiting for its end.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most bytes of a body one `send_file` call (and so one `send_timeout`) covers.
const SEND_CHUNK: u64 = 1 << 20;

/// The bounds of a server facing the public.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's start, or a request's first byte, to the end of its head.
    pub head_timeout: Duration,
    /// Between a response and the next request's first byte on a kept-alive connection.
    pub idle_timeout: Duration,
    /// For the client to take each write of a response (a stalled reader is dropped).
    pub send_timeout: Duration,
    /// Connections served at once, per loop.
    pub max_conns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_conns: 10_000,
        }
    }
}

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

/// `openat2` beneath `root`, with `flags` and `resolve` (more `RESOLVE_*` flags); `cached`: only
/// from the kernel's caches (`RESOLVE_CACHED`, which fails with `EAGAIN` where the lookup would
/// wait for the disk).
fn openat2(
    root: &OwnedFd,
    path: &CString,
    (flags, resolve): (i32, u64),
    cached: bool,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // openat2 refuses O_PATH with any flag but a few (O_NOCTTY among the refused).
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC
    } else {
        libc::O_CLOEXEC | libc::O_NOCTTY
    };
    how.flags = (flags | extra) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | resolve;
    if cached {
        how.resolve |= libc::RESOLVE_CACHED;
    }
    // SAFETY: a valid dirfd, a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 just returned this fd; it is owned once, here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `openat2` without waiting for the disk on the loop thread: from the caches inline, else on
/// the blocking pool.
async fn open_off_loop(
    root: &Arc<OwnedFd>,
    path: &CString,
    how: (i32, u64),
) -> io::Result<OwnedFd> {
    match openat2(root, path, how, true) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            let (root, path) = (root.clone(), path.clone());
            ringloop::spawn_blocking(move || openat2(&root, &path, how, false))
                .await
                .map_err(|e| io::Error::other(e.to_string()))?
        }
        res => res,
    }
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain integers; fstat fills it for an open fd (O_PATH ones too).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a live stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// A name directly in the served directory that the regular-file check passed: the file it led
/// to, and the directory's identity and change time, taken before the check.
#[derive(Clone, Copy, PartialEq)]
struct Checked {
    dir: DirStamp,
    file: (u64, u64),
}

/// A directory's device, inode and change time (`st_ctime`, seconds and nanoseconds).
type DirStamp = (u64, u64, i64, i64);

fn dir_stamp(st: &libc::stat) -> DirStamp {
    (st.st_dev, st.st_ino, st.st_ctime, st.st_ctime_nsec)
}

thread_local! {
    /// Per loop thread: names in the served directory whose check passed. While the directory's
    /// change time stays the same, none of its entries was added, removed or renamed (each
    /// sets it), so the name still leads to the same regular file, and it is opened for reading
    /// at once: one `fstat` of the directory instead of an `O_PATH` open, its `fstat` and its
    /// `close`. Only plain names (no `/`), opened without following a symlink or crossing a
    /// mount; anything else, or a changed directory, takes the full check.
    static CHECKED: std::cell::RefCell<std::collections::HashMap<Vec<u8>, Checked>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The most names `CHECKED` keeps (it forgets them all past that).
const CHECKED_MAX: usize = 4096;

/// The file to send: back to blocking mode, with its size and time from `st`.
fn file_target(fd: OwnedFd, st: &libc::stat) -> Target {
    // SAFETY: F_SETFL on an fd we own: back to blocking mode, which a regular file's reads
    // (on the ring or the pool) expect.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, 0) };
    // The size and time from the fstat just made (a `metadata()` would be one more syscall).
    Target::File {
        len: u64::try_from(st.st_size).unwrap_or(0),
        modified: mtime(st),
        file: ringloop::fs::File::from_std(std::fs::File::from(fd)),
    }
}

/// Opens `path` (the request's, without its query) beneath the directory `root`, refusing what
/// would leave it and anything but a regular file, without blocking the loop thread.
async fn open_beneath(root: &Arc<OwnedFd>, path: &str) -> Target {
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
    let Ok(c_path) = CString::new(rel.clone()) else {
        return Target::Error(400, "Bad Request");
    };
    const NOT_FOUND: Target = Target::Error(404, "Not Found");
    const READ: i32 = libc::O_RDONLY | libc::O_NONBLOCK;
    // A plain name checked before, in a directory unchanged since: opened at once (`CHECKED`).
    let stamp = match rel.contains(&b'/') {
        false => fstat(root).ok().map(|st| dir_stamp(&st)),
        true => None,
    };
    let known = stamp.and_then(|now| {
        CHECKED
            .with(|c| c.borrow().get(&rel).copied())
            .filter(|k| k.dir == now)
    });
    if let Some(known) = known {
        let plain = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
        if let Ok(fd) = open_off_loop(root, &c_path, (READ, plain)).await
            && let Ok(st) = fstat(&fd)
            && is_regular(&st)
            && (st.st_dev, st.st_ino) == known.file
        {
            return file_target(fd, &st);
        }
        // Something else there after all: the full check says what.
    }
    // ENOENT, EXDEV (it would leave the root), ELOOP, EACCES...: not found, to the client.
    // O_PATH: a FIFO's open would wait for a writer, a device's would run its driver.
    let Ok(located) = open_off_loop(root, &c_path, (libc::O_PATH, 0)).await else {
        return NOT_FOUND;
    };
    let Ok(seen) = fstat(&located) else {
        return NOT_FOUND;
    };
    if !is_regular(&seen) {
        return NOT_FOUND;
    }
    // O_NONBLOCK: should the path now name a FIFO, its open does not wait.
    let Ok(fd) = open_off_loop(root, &c_path, (READ, 0)).await else {
        return NOT_FOUND;
    };
    let st = match fstat(&fd) {
        Ok(st) if is_regular(&st) && (st.st_dev, st.st_ino) == (seen.st_dev, seen.st_ino) => st,
        _ => return NOT_FOUND, // replaced between the two opens
    };
    if let Some(dir) = stamp {
        // The stamp predates the check: a change since shows as a different one next time.
        CHECKED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= CHECKED_MAX {
                c.clear();
            }
            let file = (st.st_dev, st.st_ino);
            c.insert(rel, Checked { dir, file });
        });
    }
    file_target(fd, &st)
}

/// A stat's modification time (the epoch for one before it, which `Last-Modified` cannot say).
fn mtime(st: &libc::stat) -> SystemTime {
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec)
        .unwrap_or(0)
        .min(999_999_999);
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

/// A timeout as an `io::Error`.
fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

/// Serves one connection until the client closes it, sends a bad request, stalls past a bound,
/// or an error.
async fn serve_conn(stream: TcpStream, root: Arc<OwnedFd>, limits: Limits) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut spare = Vec::with_capacity(8192);
    // The head in progress must be complete by then: from the connection's start for the first
    // request, else from the request's first byte.
    let mut head_deadline = Some(Instant::now() + limits.head_timeout);
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
                        open_beneath(&root, req.path.unwrap_or("")).await
                    };
                    let fatal = has_body;
                    respond(&stream, target, head, close || fatal, limits).await?;
                    if close || fatal {
                        return Ok(());
                    }
                    used
                }
                Ok(httparse::Status::Partial) if pending.len() < MAX_HEAD => break,
                _ => {
                    respond(
                        &stream,
                        Target::Error(400, "Bad Request"),
                        false,
                        true,
                        limits,
                    )
                    .await?;
                    return Ok(());
                }
            };
            pending.drain(..used);
            head_deadline = None;
        }
        let wait = match head_deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None if pending.is_empty() => limits.idle_timeout,
            None => {
                // The rest of a pipelined request came with the last one.
                let deadline = Instant::now() + limits.head_timeout;
                head_deadline = Some(deadline);
                limits.head_timeout
            }
        };
        let Ok((res, buf)) = ringloop::time::timeout(wait, stream.read(spare)).await else {
            if head_deadline.is_some() {
                // A client that sent part of a request, or nothing since it connected (the
                // answer's write is bounded by `send_timeout`, the linger by a second).
                let late = Target::Error(408, "Request Timeout");
                if respond(&stream, late, false, true, limits).await.is_ok() {
                    linger(&stream).await;
                }
            }
            return Err(timed_out("the client sent no (complete) request in time"));
        };
        let n = res?;
        if n == 0 {
            return Ok(()); // the client closed
        }
        if pending.is_empty() && head_deadline.is_none() {
            head_deadline = Some(Instant::now() + limits.head_timeout);
        }
        pending.extend_from_slice(&buf[..n]);
        spare = buf;
    }
}

/// `write_all` that the client must take within `send_timeout`.
async fn write_bounded(stream: &TcpStream, bytes: Vec<u8>, limits: Limits) -> io::Result<()> {
    match ringloop::time::timeout(limits.send_timeout, stream.write_all(bytes)).await {
        Ok((res, _)) => res,
        Err(_) => Err(timed_out("the client stopped reading the response")),
    }
}

async fn respond(
    stream: &TcpStream,
    target: Target,
    head_only: bool,
    close: bool,
    limits: Limits,
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
            write_bounded(stream, out.into_bytes(), limits).await
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
            if head_only || len == 0 {
                return write_bounded(stream, head.into_bytes(), limits).await;
            }
            // The headers go with the body's first chunk: one segment for a small file.
            let mut head = Some(head);
            let mut sent = 0;
            while sent < len {
                let chunk = (len - sent).min(SEND_CHUNK);
                let send = async {
                    match head.take() {
                        Some(h) => {
                            stream
                                .send_file_with_head(h.as_bytes(), &file, sent, chunk)
                                .await
                        }
                        None => stream.send_file(&file, sent, chunk).await,
                    }
                };
                let n = ringloop::time::timeout(limits.send_timeout, send)
                    .await
                    .map_err(|_| timed_out("the client stopped reading the body"))??;
                sent += n;
                if n < chunk {
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

/// Ends a connection whose request was not read: the write side shut, then what the client
/// sends is read and dropped until it closes too, for a second at most. Closed with unread
/// bytes, the socket would answer with a reset, which can reach the client before the answer
/// it has not read yet, and destroy it.
async fn linger(stream: &TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let drain = async {
        let mut buf = Vec::with_capacity(4096);
        loop {
            match stream.read(buf).await {
                (Ok(n), b) if n > 0 => buf = b,
                _ => return,
            }
        }
    };
    let _ = ringloop::time::timeout(Duration::from_secs(1), drain).await;
}

/// Counts a connection while it lives (a guard: a panic or a dropped task undoes it too).
struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Accepts and serves connections on `listener` until `stop` completes. Connections still open
/// then are dropped with the loop.
pub async fn serve(
    listener: TcpListener,
    root: Arc<OwnedFd>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let live = Rc::new(Cell::new(0usize));
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Responses end with a push (a body's last `send_file`, or a whole error
                    // answer): without NODELAY the end of one that is not a whole segment
                    // could wait for the client's delayed ACK of what went before.
                    let _ = stream.set_nodelay(true);
                    if live.get() >= limits.max_conns {
                        // Full: say so (a fresh socket takes a short answer at once) and close.
                        ringloop::spawn(async move {
                            let busy = Target::Error(503, "Service Unavailable");
                            if respond(&stream, busy, false, true, limits).await.is_ok() {
                                linger(&stream).await;
                            }
                        });
                        continue;
                    }
                    live.set(live.get() + 1);
                    let slot = Slot(live.clone());
                    let root = root.clone();
                    ringloop::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = serve_conn(stream, root, limits).await
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
    let mut stop = std::pin::pin!(stop);
    std::future::poll_fn(|cx| {
        if accept_loop.as_mut().poll(cx).is_ready() || stop.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    Ok(())
}
