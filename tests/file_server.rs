//! examples/file_server.rs against hostile peers, on both backends: its core
//! (examples/support/file_serve.rs) runs in-process on a loop thread watched by a
//! `LoopThreadProbe`, and plain blocking sockets play the clients.
//!
//! - A FIFO and a device in the served tree are refused (404) without the loop thread blocking
//!   (it used to wait in `open` for a FIFO's writer, for good), and other clients are served.
//! - A client that sends half a request line (or nothing, or a byte at a time) gets a 408 and is
//!   closed after the head timeout; one that idles on a kept-alive connection is closed after
//!   the idle timeout.
//! - A client that stops reading a body is dropped after the send timeout.
//! - Past the connection cap, a client gets a 503; a slot that frees serves the next.
//! - A file read from a cold page cache: the loop thread starts no disk read.
//! - A name served, then replaced (by a FIFO, another file, a symlink) or removed: the answer is
//!   the new entry's, though the loop keeps the first check's answer for a plain name.

mod common;

#[allow(dead_code)]
#[path = "../examples/support/file_serve.rs"]
mod file_serve;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::probe::{LoopThreadProbe, ProbeReport, write_cold_file};
use file_serve::Limits;
use ringloop::Backend;

/// A server on its own loop thread, stopped (and its probe report taken) by `stop`.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<ProbeReport>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(backend: Backend, limits: Limits, fill: impl FnOnce(&std::path::Path)) -> Server {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
        fill(dir.path());
        let root: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut lp = common::new_loop(backend);
            let report = lp.run_until_complete(async move {
                let probe = LoopThreadProbe::start();
                let stopped = async move {
                    while !flag.load(Ordering::Acquire) {
                        ringloop::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                let listener = ringloop::net::TcpListener::from_std(listener).unwrap();
                file_serve::serve(listener, Arc::new(root), limits, stopped)
                    .await
                    .unwrap();
                probe.report()
            });
            lp.close();
            report
        });
        Server {
            addr,
            stop,
            thread,
            _dir: dir,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// One request on a new connection; the whole answer (the server closes).
    fn get(&self, path: &str) -> String {
        let mut s = self.connect();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("GET {path}: no answer within 10 s ({e})"));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Stops the server; the probe's report on its loop thread.
    fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .expect("the server's loop thread panicked")
    }
}

/// Reads until the server closes (or resets) the connection; what came, and how long it took.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server kept the connection open past 10 s ({e}; {} bytes came)",
                out.len()
            ),
        }
    }
    (out, start.elapsed())
}

fn short_limits() -> Limits {
    Limits {
        head_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        max_conns: 100,
    }
}

fn fifo_and_device(backend: Backend) {
    let server = Server::start(backend, Limits::default(), |dir| {
        let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
        let zero = std::ffi::CString::new(dir.join("zero").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; the device numbers of /dev/zero.
        let made =
            unsafe { libc::mknod(zero.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
        assert_eq!(made, 0, "mknod /dev/zero's twin (needs CAP_MKNOD)");
    });
    let answer = server.get("/fifo");
    assert!(answer.starts_with("HTTP/1.1 404"), "GET /fifo: {answer}");
    let answer = server.get("/zero");
    assert!(answer.starts_with("HTTP/1.1 404"), "GET /zero: {answer}");
    let answer = server.get("/hello.txt");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello\n"),
        "{answer}"
    );
    let report = server.stop();
    eprintln!("{report:?}");
    assert!(
        report.blocked_outside_park < Duration::from_millis(100),
        "the loop thread slept outside its park: {report:?}"
    );
    assert_eq!(
        report.disk_read_bytes, 0,
        "the loop thread read from the disk: {report:?}"
    );
}

fn half_request_and_idle_client(backend: Backend) {
    let server = Server::start(backend, short_limits(), |_| {});
    // Half a request line, then nothing: 408, then closed, after the head timeout.
    let mut half = server.connect();
    half.write_all(b"GET /hello.txt HT").unwrap();
    // Nothing at all since connecting: the same.
    let mut silent = server.connect();
    // A kept-alive connection that goes idle after one request.
    let mut idle = server.connect();
    idle.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // One byte every 200 ms: the head timeout counts from the first byte, not the last.
    let mut trickle = server.connect();
    let mut dripping = trickle.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        for &b in b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
            .iter()
            .cycle()
            .take(100)
        {
            if dripping.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // Meanwhile other clients are served.
    assert!(server.get("/hello.txt").ends_with("hello\n"));
    let (out, took) = read_until_closed(&mut half);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "half a request: {out}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let (out, _) = read_until_closed(&mut silent);
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"));
    let (out, took) = read_until_closed(&mut trickle);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "one byte at a time: {out}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    drip.join().unwrap();
    let (out, _) = read_until_closed(&mut idle);
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("hello\n"),
        "idle: {out}"
    );
    server.stop();
}

fn client_that_stops_reading(backend: Backend) {
    const BIG: usize = 64 << 20;
    let server = Server::start(backend, short_limits(), |dir| {
        std::fs::write(dir.join("big"), vec![b'x'; BIG]).unwrap();
    });
    let mut s = server.connect();
    // Nothing read: the socket buffers fill, and the server's send stalls.
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (out, _) = read_until_closed(&mut s);
    assert!(
        out.len() < BIG,
        "the whole body went to a client that stopped reading for 4 s ({} bytes)",
        out.len()
    );
    // The server goes on serving.
    assert!(server.get("/hello.txt").ends_with("hello\n"));
    server.stop();
}

fn connection_cap(backend: Backend) {
    let limits = Limits {
        max_conns: 2,
        head_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let server = Server::start(backend, limits, |_| {});
    let mut first = server.connect();
    let mut second = server.connect();
    // Both are served (and so counted) once they got an answer.
    for s in [&mut first, &mut second] {
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let answer = server.get("/hello.txt");
    assert!(answer.starts_with("HTTP/1.1 503"), "past the cap: {answer}");
    drop(first);
    // The slot frees once the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = server.get("/hello.txt");
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was never reused: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(second);
    server.stop();
}

/// A name served once (its check then kept for the loop) and then replaced, by a FIFO, by
/// another file, by a symlink: each answer is the new entry's (404 for the FIFO, without the loop
/// blocking; the new bytes; the symlink's target), never the old file's.
fn replaced_after_serving(backend: Backend) {
    let server = Server::start(backend, Limits::default(), |dir| {
        std::fs::write(dir.join("f"), b"one\n").unwrap();
        std::fs::write(dir.join("target"), b"target\n").unwrap();
    });
    let dir = server._dir.path().to_owned();
    for _ in 0..2 {
        let answer = server.get("/f");
        assert!(answer.ends_with("\r\n\r\none\n"), "GET /f: {answer}");
    }
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    std::fs::rename(dir.join("fifo"), dir.join("f")).unwrap();
    let answer = server.get("/f");
    assert!(
        answer.starts_with("HTTP/1.1 404"),
        "GET /f, now a FIFO: {answer}"
    );
    std::fs::write(dir.join("new"), b"two\n").unwrap();
    std::fs::rename(dir.join("new"), dir.join("f")).unwrap();
    for _ in 0..2 {
        let answer = server.get("/f");
        assert!(
            answer.ends_with("\r\n\r\ntwo\n"),
            "GET /f, a new file: {answer}"
        );
    }
    std::fs::remove_file(dir.join("f")).unwrap();
    std::os::unix::fs::symlink("target", dir.join("f")).unwrap();
    for _ in 0..2 {
        let answer = server.get("/f");
        assert!(
            answer.ends_with("\r\n\r\ntarget\n"),
            "GET /f, a symlink: {answer}"
        );
    }
    std::fs::remove_file(dir.join("f")).unwrap();
    let answer = server.get("/f");
    assert!(
        answer.starts_with("HTTP/1.1 404"),
        "GET /f, removed: {answer}"
    );
    let report = server.stop();
    assert!(
        report.blocked_outside_park < Duration::from_millis(100),
        "{report:?}"
    );
}

fn cold_file(backend: Backend) {
    const COLD: usize = 16 << 20;
    let server = Server::start(backend, Limits::default(), |dir| {
        assert!(
            write_cold_file(&dir.join("cold"), COLD),
            "the file stayed cached"
        );
    });
    let answer = {
        let mut s = server.connect();
        s.write_all(b"GET /cold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_until_closed(&mut s).0
    };
    let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(
        answer[body_at..] == common::pattern(0, COLD)[..],
        "the body came out different"
    );
    let report = server.stop();
    eprintln!("{report:?}");
    assert_eq!(
        report.disk_read_bytes, 0,
        "the loop thread read from the disk: {report:?}"
    );
    assert!(
        report.blocked_outside_park < Duration::from_millis(100),
        "{report:?}"
    );
}

macro_rules! on_both {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod uring {
            $(#[test]
            fn $name() {
                super::$body(ringloop::Backend::Uring);
            })*
        }
        mod epoll {
            $(#[test]
            fn $name() {
                super::$body(ringloop::Backend::Epoll);
            })*
        }
    };
}

on_both!(
    a_fifo_or_a_device_in_the_tree_is_refused_without_blocking_the_loop => fifo_and_device,
    half_a_request_and_an_idle_client_are_closed_after_their_timeouts => half_request_and_idle_client,
    a_client_that_stops_reading_a_body_is_dropped => client_that_stops_reading,
    connections_past_the_cap_get_503 => connection_cap,
    a_file_from_a_cold_page_cache_is_served_without_disk_reads_on_the_loop => cold_file,
    a_served_name_replaced_by_a_fifo_a_file_or_a_symlink_answers_for_the_new_entry => replaced_after_serving,
);
