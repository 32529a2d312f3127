//! The seed's download demo (asyncio's `wait` over coroutines that download files), done on
//! ringloop.
//!
//! ```text
//! cargo run --release --example download                     # built-in server, five files
//! cargo run --release --example download -- --out ./files    # choose the output directory
//! cargo run --release --example download -- http://host:port/a.pdf http://host:port/b.pdf
//! RINGLOOP_BACKEND=epoll cargo run --release --example download
//! ```
//!
//! With no URLs it starts an HTTP/1.1 file server on 127.0.0.1 (an ephemeral port) on the same
//! loop, serving five generated files named as in the seed. Every file is downloaded by its own
//! task; `ringloop::wait` waits for them all. Each body is written with `ringloop::fs` and checked
//! against the checksum the server sent (`X-Checksum-CRC32`, when present). On a terminal each
//! file gets a live progress bar; piped, the example prints plain lines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IsTerminal};
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
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: {}\r\n\
         X-Checksum-CRC32: {crc:08x}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (res, _) = stream.write_all(header).await;
    res?;
    for chunk in body.chunks(CHUNK) {
        let (res, _) = stream.write_all(chunk.to_vec()).await;
        res?;
    }
    Ok(())
}

/// `http://host[:port]/path` split into (host:port, path, file name).
fn parse_url(url: &str) -> io::Result<(String, String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url:?}: only http:// URLs are supported"),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url:?}: no host"),
        ));
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

/// Downloads one URL into `dir`; returns the seed's message.
async fn download_file(url: String, dir: PathBuf, progress: Progress) -> io::Result<String> {
    let (host_port, path, name) = parse_url(&url)?;
    let stream = TcpStream::connect(host_port.as_str())
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{url}: {e}")))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUser-Agent: ringloop-download\r\n\
         Connection: close\r\n\r\n"
    );
    let (res, _) = stream.write_all(request).await;
    res?;
    let (head, first) = read_head(&stream).await?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(bad_data(format!("{url}: the server answered {status:?}")));
    }
    let mut length = None;
    let mut expected_crc = None;
    for line in lines {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<u64>().ok(),
            "x-checksum-crc32" => expected_crc = u32::from_str_radix(value, 16).ok(),
            "transfer-encoding" if !value.eq_ignore_ascii_case("identity") => {
                return Err(bad_data(format!(
                    "{url}: {value} transfer encoding is not supported"
                )));
            }
            _ => {}
        }
    }
    let bar = progress.bar(&name);
    if let (Some(bar), Some(len)) = (&bar, length) {
        bar.set_length(len);
    }
    let target = dir.join(&name);
    let file = File::create(&target)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
    let mut crc = crc32fast::Hasher::new();
    let mut written = 0u64;
    let mut body = first;
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        if !body.is_empty() {
            crc.update(&body);
            let n = body.len() as u64;
            let (res, b) = file.write_all_at(body, written).await;
            res?;
            body = b;
            written += n;
            if let Some(bar) = &bar {
                bar.set_position(written);
            }
        }
        if length.is_some_and(|l| written >= l) {
            break;
        }
        let (res, b) = stream.read(buf).await;
        buf = b;
        if res? == 0 {
            break;
        }
        // Swap so the read buffer and the write buffer alternate without copying. A read fills
        // up to the buffer's capacity, so make sure the next one has room (a zero-capacity read
        // returns 0, which would look like end of stream).
        std::mem::swap(&mut body, &mut buf);
        buf.clear();
        buf.reserve(CHUNK);
    }
    file.sync_all().await?;
    file.close().await?;
    if let Some(bar) = &bar {
        bar.finish();
    }
    if let Some(len) = length
        && written != len
    {
        return Err(bad_data(format!("{name}: got {written} of {len} bytes")));
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
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        urls: Vec::new(),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => args.out = Some(it.next().ok_or("--out needs a directory")?.into()),
            "-h" | "--help" => {
                return Err("usage: download [--out DIR] [http://URL ...]\n\
                            with no URLs, a built-in server serves five generated files"
                    .into());
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
            Ok(t) => t.keep(),
            Err(e) => {
                eprintln!("download: cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
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
            "downloading {} files into {} (backend: {backend})",
            urls.len(),
            dir.display()
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
