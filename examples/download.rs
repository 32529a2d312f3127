//! The seed's download demo (asyncio's `wait` over coroutines that download files), done on
//! ringloop.
//!
//! ```text
//! cargo run --release --example download                     # built-in server, five files
//! cargo run --release --example download -- --out ./files    # choose the output directory
//! cargo run --release --example download -- --keep           # keep the temporary directory
//! cargo run --release --example download -- http://host:port/a.pdf http://host:port/b.pdf
//! RINGLOOP_BACKEND=epoll cargo run --release --example download
//! ```
//!
//! With no URLs it starts an HTTP/1.1 file server on 127.0.0.1 (an ephemeral port) on the same
//! loop, serving five generated files named as in the seed (two of them with
//! `Transfer-Encoding: chunked`, as dynamic servers send). Every file is downloaded by its own
//! task; `ringloop::wait` waits for them all. The client reads bodies framed by `Content-Length`,
//! by chunked transfer coding, or by the end of the connection; a malformed `Content-Length` or
//! chunk is an error, and every error names its URL. Each body is written with `ringloop::fs` and
//! checked against the checksum the server sent (`X-Checksum-CRC32`, when present). Without
//! `--out`, the files go into a new directory under the system temp dir that is removed at exit
//! (`--keep` keeps it). On a terminal each file gets a live progress bar; piped, the example
//! prints plain lines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ringloop::fs::File;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{ReturnWhen, spawn};

/// The seed's file names.
const NAMES: [&str; 5] = [
    "f1040.pdf",
    "f1040a.pdf",
    "f1040ez.pdf",
    "f1040es.pdf",
    "f1040sb.pdf",
];

const CHUNK: usize = 64 * 1024;

/// Deterministic content for the built-in server: a few MiB per file.
fn generate(index: usize) -> Vec<u8> {
    let len = (2 << 20) + index * (700 << 10) + 12_345 * index;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ index as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads an HTTP head (up to the blank line); returns it and any body bytes read past it.
async fn read_head(stream: &TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        let n = res?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the end of the HTTP head",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(end + 4);
            let text =
                String::from_utf8(head).map_err(|_| bad_data("the HTTP head is not UTF-8"))?;
            return Ok((text, rest));
        }
        if head.len() > 64 * 1024 {
            return Err(bad_data("the HTTP head is larger than 64 KiB"));
        }
    }
}

/// The built-in file server: GET /NAME for the five files, 404 otherwise.
async fn serve(listener: TcpListener, files: Rc<HashMap<String, (Vec<u8>, u32)>>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("server: accept failed: {e}");
                continue;
            }
        };
        let files = files.clone();
        spawn(async move {
            if let Err(e) = answer(&stream, &files).await {
                eprintln!("server: {e}");
            }
        });
    }
}

async fn answer(stream: &TcpStream, files: &HashMap<String, (Vec<u8>, u32)>) -> io::Result<()> {
    let (head, _) = read_head(stream).await?;
    let path = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    let Some((body, crc)) = files.get(path.trim_start_matches('/')) else {
        let (res, _) = stream
            .write_all("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return res;
    };
    // Files at an odd index go out chunked, as dynamic servers send them, in chunks of varying
    // size; the others with a Content-Length.
    let index = NAMES
        .iter()
        .position(|n| n == &path.trim_start_matches('/'));
    let chunked = index.is_some_and(|i| i % 2 == 1);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n{framing}\r\n\
         X-Checksum-CRC32: {crc:08x}\r\nConnection: close\r\n\r\n"
    );
    let (res, _) = stream.write_all(header).await;
    res?;
    if !chunked {
        for chunk in body.chunks(CHUNK) {
            let (res, _) = stream.write_all(chunk.to_vec()).await;
            res?;
        }
        return Ok(());
    }
    let mut rest = &body[..];
    let mut size = 1000;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        size = size * 7 % (CHUNK + 13) + 1;
        let mut out = format!("{:x};ext=1\r\n", chunk.len()).into_bytes();
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        let (res, _) = stream.write_all(out).await;
        res?;
    }
    let (res, _) = stream.write_all("0\r\nX-Trailer: done\r\n\r\n").await;
    res
}

/// How the body of a response ends (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs to the end of the connection.
    Eof,
}

/// Reads a response body off the stream, whatever its framing, one piece at a time.
struct Body<'a> {
    stream: &'a TcpStream,
    framing: Framing,
    /// Bytes read from the stream and not yet handed out or parsed, from `start` on.
    buf: Vec<u8>,
    start: usize,
    /// Body bytes still to come: of the whole body (`Length`) or of the current chunk (`Chunked`).
    left: u64,
    /// Chunked: a chunk's data ended and its CRLF is still to be read.
    chunk_crlf: bool,
    done: bool,
}

impl<'a> Body<'a> {
    fn new(stream: &'a TcpStream, framing: Framing, first: Vec<u8>) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Body {
            stream,
            framing,
            buf: first,
            start: 0,
            left,
            chunk_crlf: false,
            done: framing == Framing::Length(0),
        }
    }

    /// Reads more from the stream into `buf`; false at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let (res, b) = self.stream.read(Vec::with_capacity(CHUNK)).await;
        let n = res?;
        self.buf.extend_from_slice(&b[..n]);
        Ok(n > 0)
    }

    /// Takes up to `max` buffered bytes.
    fn take(&mut self, max: u64) -> Vec<u8> {
        let n = (self.buf.len() - self.start).min(usize::try_from(max).unwrap_or(usize::MAX));
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        out
    }

    /// The next line (without its CRLF), reading more as needed.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf[self.start..].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.start..self.start + i]);
                let line = line.into_owned();
                self.start += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.start > 4096 {
                return Err(bad_data(
                    "a chunk-size or trailer line is longer than 4 KiB",
                ));
            }
            if !self.fill().await? {
                return Err(eof("in the middle of a chunked body"));
            }
        }
    }

    /// The next piece of the body, or `None` at its end.
    async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        while !self.done {
            match self.framing {
                Framing::Length(_) | Framing::Eof => {
                    if self.start == self.buf.len() {
                        // Hand the read buffer out as it is: no copy on the common path.
                        let (res, b) = self.stream.read(Vec::with_capacity(CHUNK)).await;
                        if res? == 0 {
                            if self.framing != Framing::Eof {
                                return Err(eof(&format!("with {} body bytes missing", self.left)));
                            }
                            self.done = true;
                            return Ok(None);
                        }
                        self.buf = b;
                        self.start = 0;
                    }
                    let piece = if self.framing == Framing::Eof {
                        self.take(u64::MAX)
                    } else {
                        let piece = self.take(self.left);
                        self.left -= piece.len() as u64;
                        self.done = self.left == 0;
                        piece
                    };
                    return Ok(Some(piece));
                }
                Framing::Chunked if self.left > 0 => {
                    if self.start == self.buf.len() && !self.fill().await? {
                        return Err(eof("in the middle of a chunk"));
                    }
                    let piece = self.take(self.left);
                    self.left -= piece.len() as u64;
                    self.chunk_crlf = self.left == 0;
                    return Ok(Some(piece));
                }
                Framing::Chunked => {
                    if std::mem::take(&mut self.chunk_crlf) && !self.line().await?.is_empty() {
                        return Err(bad_data("a chunk's data is not followed by CRLF"));
                    }
                    let line = self.line().await?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    self.left = u64::from_str_radix(hex, 16)
                        .map_err(|_| bad_data(format!("bad chunk size line {line:?}")))?;
                    if self.left == 0 {
                        // The last chunk: skip the trailer fields up to the blank line.
                        while !self.line().await?.is_empty() {}
                        self.done = true;
                    }
                }
            }
        }
        Ok(None)
    }
}

fn eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the connection closed {what}"),
    )
}

/// The framing a response head announces.
fn framing(head: &str) -> io::Result<Framing> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                // Digits only: no sign, no spaces; and it must fit in a u64.
                let n = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        bad_data(format!(
                            "the Content-Length header {value:?} is not a length (digits \
                             only, at most {})",
                            u64::MAX
                        ))
                    })?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad_data(
                        "the response has two different Content-Length headers",
                    ));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                let codings: Vec<String> = value
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .collect();
                match codings.last().map(String::as_str) {
                    Some("chunked") => chunked = true,
                    Some("identity") if codings.len() == 1 => {}
                    _ => {
                        return Err(bad_data(format!(
                            "the Transfer-Encoding header {value:?} is not supported (only \
                             chunked)"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    // Transfer-Encoding overrides Content-Length.
    Ok(if chunked {
        Framing::Chunked
    } else {
        length.map_or(Framing::Eof, Framing::Length)
    })
}

/// `http://host[:port]/path` split into (host:port, path, file name).
fn parse_url(url: &str) -> io::Result<(String, String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "only http:// URLs are supported",
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no host"));
    }
    let host_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "index.html".to_owned());
    Ok((host_port, path.to_owned(), name))
}

/// Progress reporting: a bar per file on a terminal, plain lines otherwise.
#[derive(Clone)]
enum Progress {
    /// The bars are kept here too, so a finished file's bar stays on screen after its task ends.
    Bars(MultiProgress, Rc<RefCell<Vec<ProgressBar>>>),
    Plain,
}

impl Progress {
    fn bar(&self, name: &str) -> Option<ProgressBar> {
        let Progress::Bars(multi, keep) = self else {
            return None;
        };
        let bar = multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(name.to_owned());
        keep.borrow_mut().push(bar.clone());
        Some(bar)
    }

    fn line(&self, text: &str) {
        match self {
            Progress::Bars(multi, _) => {
                let _ = multi.println(text);
            }
            Progress::Plain => println!("{text}"),
        }
    }
}

/// Downloads one URL into `dir`; returns the seed's message. Every error names the URL.
async fn download_file(url: String, dir: PathBuf, progress: Progress) -> io::Result<String> {
    fetch(&url, &dir, &progress)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{url}: {e}")))
}

async fn fetch(url: &str, dir: &Path, progress: &Progress) -> io::Result<String> {
    let (host_port, path, name) = parse_url(url)?;
    let stream = TcpStream::connect(host_port.as_str()).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUser-Agent: ringloop-download\r\n\
         Connection: close\r\n\r\n"
    );
    let (res, _) = stream.write_all(request).await;
    res?;
    let (head, first) = read_head(&stream).await?;
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(bad_data(format!("the server answered {status:?}")));
    }
    let framing = framing(&head)?;
    let expected_crc = head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("x-checksum-crc32")
            .then(|| u32::from_str_radix(value.trim(), 16).ok())
            .flatten()
    });
    let bar = progress.bar(&name);
    if let (Some(bar), Framing::Length(len)) = (&bar, framing) {
        bar.set_length(len);
    }
    let target = dir.join(&name);
    let file = File::create(&target)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
    let mut crc = crc32fast::Hasher::new();
    let mut written = 0u64;
    let mut body = Body::new(&stream, framing, first);
    while let Some(piece) = body.next().await? {
        crc.update(&piece);
        let n = piece.len() as u64;
        let (res, _) = file.write_all_at(piece, written).await;
        res?;
        written += n;
        if let Some(bar) = &bar {
            if !matches!(framing, Framing::Length(_)) {
                bar.set_length(written); // no length known: the bar grows with the body
            }
            bar.set_position(written);
        }
    }
    file.sync_all().await?;
    file.close().await?;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let crc = crc.finalize();
    match expected_crc {
        Some(want) if want != crc => {
            return Err(bad_data(format!(
                "{name}: checksum {crc:08x}, the server said {want:08x}"
            )));
        }
        Some(_) => progress.line(&format!(
            "{name}: {written} bytes, crc32 {crc:08x} matches the server's"
        )),
        None => progress.line(&format!(
            "{name}: {written} bytes (the server sent no checksum)"
        )),
    }
    Ok(format!("Finish downloading {name}"))
}

struct Args {
    urls: Vec<String>,
    out: Option<PathBuf>,
    keep: bool,
}

const USAGE: &str = "usage: download [--out DIR | --keep] [http://URL ...]
  With no URLs, a built-in server on 127.0.0.1 serves five generated files (some with a
  Content-Length, some chunked) and five tasks download them concurrently.
  --out DIR  write the files into DIR (created if missing) and leave them there
  --keep     without --out the files go into a new directory under the system temp dir,
             which is removed at exit; --keep leaves it in place
  RINGLOOP_BACKEND=auto|uring|epoll picks the event loop's backend.";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        urls: Vec::new(),
        out: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => args.out = Some(it.next().ok_or("--out needs a directory")?.into()),
            "--keep" => args.keep = true,
            "-h" | "--help" => {
                // A closed pipe (`download --help | head -1`) is not an error worth a panic.
                let _ = writeln!(io::stdout(), "{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag:?}\n{USAGE}"));
            }
            url => args.urls.push(url.to_owned()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("download: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Without --out the files go into a temporary directory, removed when `_temp` is dropped at
    // the end of main unless --keep.
    let mut _temp = None;
    let dir = match &args.out {
        Some(d) => {
            if let Err(e) = std::fs::create_dir_all(d) {
                eprintln!("download: cannot create {}: {e}", d.display());
                return ExitCode::FAILURE;
            }
            d.clone()
        }
        None => match tempfile::Builder::new()
            .prefix("ringloop-download-")
            .tempdir()
        {
            Ok(t) if args.keep => t.keep(),
            Ok(t) => {
                let path = t.path().to_owned();
                _temp = Some(t);
                path
            }
            Err(e) => {
                eprintln!("download: cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let removed_at_exit = _temp.is_some();
    let mut event_loop = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("download: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let progress = if io::stdout().is_terminal() {
        Progress::Bars(MultiProgress::new(), Rc::new(RefCell::new(Vec::new())))
    } else {
        Progress::Plain
    };
    let backend = event_loop.backend();
    let failures = Rc::new(RefCell::new(0usize));
    let fails = failures.clone();
    let result = event_loop.run_until_complete(async move {
        let urls = if args.urls.is_empty() {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let files: HashMap<String, (Vec<u8>, u32)> = NAMES
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let body = generate(i);
                    let crc = crc32fast::hash(&body);
                    (name.to_string(), (body, crc))
                })
                .collect();
            spawn(serve(listener, Rc::new(files)));
            NAMES.iter().map(|n| format!("http://{addr}/{n}")).collect()
        } else {
            args.urls
        };
        progress.line(&format!(
            "downloading {} files into {}{} (backend: {backend})",
            urls.len(),
            dir.display(),
            if removed_at_exit {
                ", removed at exit (--keep keeps it)"
            } else {
                ""
            }
        ));
        let tasks: Vec<_> = urls
            .into_iter()
            .map(|url| spawn(download_file(url, dir.clone(), progress.clone())))
            .collect();
        let (completed, pending) = ringloop::wait(tasks, ReturnWhen::AllCompleted).await;
        assert!(pending.is_empty(), "AllCompleted leaves nothing pending");
        for task in completed {
            match task.await {
                Ok(Ok(msg)) => println!("{msg}"),
                Ok(Err(e)) => {
                    eprintln!("download: {e}");
                    *fails.borrow_mut() += 1;
                }
                Err(e) => {
                    eprintln!("download: a download task failed: {e}");
                    *fails.borrow_mut() += 1;
                }
            }
        }
        io::Result::Ok(())
    });
    event_loop.close();
    if let Err(e) = result {
        eprintln!("download: {e}");
        return ExitCode::FAILURE;
    }
    if *failures.borrow() > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
