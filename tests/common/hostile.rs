//! Hostile peers for any server-shaped API: each takes the server's address and misbehaves in
//! one way a public server meets. They run on std sockets (and a thread where they must keep
//! acting), never on a ringloop loop, so they work against a server on any loop or thread and
//! cannot be starved by the server they attack. A constructor only connects and writes a few
//! bytes, which loopback completes without the server's help, so it may be called from a loop
//! thread; [`get`] waits for the server and must run on another thread (`spawn_blocking`).
//!
//! Include it with `#[path = "common/hostile.rs"] mod hostile;`.
//!
//! The checks that go with them: [`Peer::closed_within`] (the server gave up on the peer), and
//! [`get`] (a well-behaved client is still served).

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A misbehaving connection. Dropping it closes the socket (with a FIN) and stops its thread.
pub struct Peer {
    /// What the peer does, for assertion messages.
    pub what: &'static str,
    sock: TcpStream,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    h2: Option<Arc<H2Seen>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("what", &self.what).finish()
    }
}

impl Peer {
    fn new(what: &'static str, sock: TcpStream) -> Peer {
        Peer {
            what,
            sock,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            h2: None,
        }
    }

    /// Whether the server closed the connection (a FIN or a reset reached this socket) within
    /// `within`. Reads nothing, so a peer that stopped reading still has not read.
    pub fn closed_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            // SAFETY: `pfd` is one live pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
            if n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Whether the server closed the connection within `within`, reading (and dropping) what it
    /// sent meanwhile: for a peer that stopped reading, whose server closed with a FIN queued
    /// behind the data (a reset shows at once, without reading).
    pub fn closed_after_reading_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut s = &self.sock;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s.set_read_timeout(Some(left)).unwrap();
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// Asserts the server closed this peer's connection within `within`.
    pub fn assert_closed_within(&self, within: Duration) {
        assert!(
            self.closed_within(within),
            "the server still holds the connection of a peer that {} after {within:?}",
            self.what
        );
    }

    /// What an HTTP/2 peer saw from the server (see [`h2_ignoring_pings`]).
    pub fn h2(&self) -> &H2Seen {
        self.h2.as_deref().expect("not an HTTP/2 peer")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sock.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("a hostile peer cannot connect to {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s
}

/// Connects and sends nothing, ever: a peer that vanished before its first byte (or a port
/// scanner). Only a timeout before the protocol is known frees the server of it.
pub fn silent(addr: SocketAddr) -> Peer {
    Peer::new("connected and sent nothing", connect(addr))
}

/// Sends `bytes` and then nothing, never reading: half a request, half a preface.
pub fn sends_then_stalls(addr: SocketAddr, bytes: &[u8], what: &'static str) -> Peer {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    Peer::new(what, s)
}

/// Half an HTTP/1.1 request head, then nothing.
pub fn half_request(addr: SocketAddr) -> Peer {
    sends_then_stalls(
        addr,
        b"GET / HTTP/1.1\r\nHost: hostile\r\n",
        "sent half a request head",
    )
}

/// Half the HTTP/2 preface, then nothing.
pub fn half_h2_preface(addr: SocketAddr) -> Peer {
    sends_then_stalls(addr, &H2_PREFACE[..12], "sent half the h2 preface")
}

/// A whole request, then silence: it never reads the answer nor sends again, as a peer that
/// vanished without a FIN (loopback's kernel still acknowledges, the application is gone).
pub fn vanishes_after(addr: SocketAddr, request: &[u8]) -> Peer {
    sends_then_stalls(addr, request, "sent a request and vanished")
}

/// Sends `request` one byte every `every` from a thread (a slowloris).
pub fn dribbles(addr: SocketAddr, request: &[u8], every: Duration) -> Peer {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let mut peer = Peer::new("dribbled a request one byte at a time", s);
    let stop = peer.stop.clone();
    let request = request.to_vec();
    peer.thread = Some(std::thread::spawn(move || {
        for b in request {
            if stop.load(Ordering::Relaxed) || w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    }));
    peer
}

/// Sends `request` (for a large response) with a small receive buffer and never reads: the
/// server's send stalls once the window and the buffers are full.
pub fn stops_reading(addr: SocketAddr, request: &[u8]) -> Peer {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.set_nodelay(true).unwrap();
    s.write_all(request).unwrap();
    Peer::new("stopped reading with a full window", s)
}

/// Sends `partial` and then resets the connection (`SO_LINGER` 0: an RST, no FIN).
pub fn resets_mid_request(addr: SocketAddr, partial: &[u8]) {
    let mut s = connect(addr);
    s.write_all(partial).unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// What an HTTP/2 peer saw: frames by type, and whether the server closed.
#[derive(Debug, Default)]
pub struct H2Seen {
    /// PING frames from the server (keep-alive and shutdown pings).
    pub pings: AtomicUsize,
    /// GOAWAY frames.
    pub goaways: AtomicUsize,
    /// HEADERS frames (responses).
    pub headers: AtomicUsize,
    /// DATA frames.
    pub data: AtomicUsize,
}

impl H2Seen {
    /// PINGs seen so far.
    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::Relaxed)
    }

    /// GOAWAYs seen so far.
    pub fn goaways(&self) -> usize {
        self.goaways.load(Ordering::Relaxed)
    }

    /// Response HEADERS seen so far.
    pub fn headers(&self) -> usize {
        self.headers.load(Ordering::Relaxed)
    }
}

/// An h2c (prior knowledge) peer that answers the server's SETTINGS but never a PING: to the
/// server it vanished (keep-alive pings go unanswered; graceful shutdown's ping too). With
/// `path`, it first opens stream 1 with a GET of it.
pub fn h2_ignoring_pings(addr: SocketAddr, path: Option<&str>) -> Peer {
    h2_peer(
        addr,
        H2Peer {
            what: "spoke h2c and never answered a PING",
            paths: path.into_iter().collect(),
            ..H2Peer::default()
        },
    )
}

/// An h2c peer that answers every PING (keep-alive and shutdown pings) and never opens a
/// stream after GETting `path` (if any): a live peer that holds an idle connection.
pub fn h2_idle(addr: SocketAddr, path: Option<&str>) -> Peer {
    h2_peer(
        addr,
        H2Peer {
            what: "held an idle h2c connection, answering PINGs",
            paths: path.into_iter().collect(),
            answer_pings: true,
            ..H2Peer::default()
        },
    )
}

/// An h2c peer like [`h2_idle`] that answers keep-alive PINGs but not the one that follows a
/// GOAWAY (h2's shutdown ping, told by its payload): it holds a gracefully closed connection.
pub fn h2_idle_ignoring_goaway(addr: SocketAddr) -> Peer {
    h2_peer(
        addr,
        H2Peer {
            what: "held an idle h2c connection, answering PINGs but the shutdown one",
            answer_pings: true,
            ignore_shutdown_ping: true,
            ..H2Peer::default()
        },
    )
}

/// The payload of the PING the h2 crate sends with a graceful GOAWAY.
const H2_SHUTDOWN_PING: [u8; 8] = [0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54];

/// An h2c peer that shuts every stream's flow-control window (`SETTINGS_INITIAL_WINDOW_SIZE`
/// 0), opens `streams` streams GETting `path` (a large response) and answers every PING: the
/// server's socket writes never stall, its responses never get sent, and they pile up.
pub fn h2_zero_window(addr: SocketAddr, path: &str, streams: usize) -> Peer {
    h2_peer(
        addr,
        H2Peer {
            what: "shut its h2 flow-control window and answered PINGs",
            paths: vec![path; streams],
            answer_pings: true,
            initial_window: Some(0),
            ..H2Peer::default()
        },
    )
}

/// How an HTTP/2 peer of [`h2_peer`] behaves.
#[derive(Default)]
struct H2Peer<'a> {
    what: &'static str,
    /// A stream GETting each (ids 1, 3, 5…), sent with the preface.
    paths: Vec<&'a str>,
    /// Whether it acknowledges the server's PINGs.
    answer_pings: bool,
    /// `SETTINGS_INITIAL_WINDOW_SIZE` in its SETTINGS.
    initial_window: Option<u32>,
    /// Whether it leaves h2's shutdown PING unanswered (when it answers PINGs).
    ignore_shutdown_ping: bool,
}

/// An h2c peer: the preface, its SETTINGS, a GET per path, then a thread that reads frames,
/// counts them in [`H2Seen`], acknowledges the server's SETTINGS (and PINGs if it answers them).
fn h2_peer(addr: SocketAddr, how: H2Peer<'_>) -> Peer {
    let mut s = connect(addr);
    let mut out = H2_PREFACE.to_vec();
    let mut settings = Vec::new();
    if let Some(window) = how.initial_window {
        settings.extend_from_slice(&4u16.to_be_bytes()); // SETTINGS_INITIAL_WINDOW_SIZE
        settings.extend_from_slice(&window.to_be_bytes());
    }
    out.extend_from_slice(&frame(4, 0, 0, &settings));
    for (i, path) in how.paths.iter().enumerate() {
        // HPACK: :method GET (2), :scheme http (6), :path literal without indexing (name 4),
        // :authority literal without indexing (name 1).
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 7]);
        block.extend_from_slice(b"hostile");
        // HEADERS, END_STREAM | END_HEADERS
        out.extend_from_slice(&frame(1, 0x5, 1 + 2 * i as u32, &block));
    }
    s.write_all(&out).unwrap();
    let mut r = s.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut peer = Peer::new(how.what, s);
    let seen = Arc::new(H2Seen::default());
    peer.h2 = Some(seen.clone());
    let stop = peer.stop.clone();
    let answer_pings = how.answer_pings;
    let ignore_shutdown_ping = how.ignore_shutdown_ping;
    peer.thread = Some(std::thread::spawn(move || {
        let mut w = r.try_clone().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        while !stop.load(Ordering::Relaxed) {
            match r.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(_) => return,
            }
            while buf.len() >= 9 {
                let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let reply = match kind {
                    0 => {
                        seen.data.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    1 => {
                        seen.headers.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    // The server's SETTINGS: acknowledged, as a live peer does.
                    4 if flags & 1 == 0 => Some(frame(4, 1, 0, &[])),
                    6 if flags & 1 == 0 => {
                        seen.pings.fetch_add(1, Ordering::Relaxed);
                        let payload = &buf[9..9 + len];
                        let shutdown = payload == H2_SHUTDOWN_PING;
                        (answer_pings && !(shutdown && ignore_shutdown_ping))
                            .then(|| frame(6, 1, 0, payload))
                    }
                    7 => {
                        seen.goaways.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    _ => None,
                };
                if let Some(reply) = reply
                    && w.write_all(&reply).is_err()
                {
                    return;
                }
                buf.drain(..9 + len);
            }
        }
    }));
    peer
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A well-behaved HTTP/1.1 client: GETs `path` on a new connection (`Connection: close`) and
/// returns the status and the body. Blocking, with a 10 s bound: run it off the server's loop.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no response head in {} bytes", reply.len())))?;
    let status = std::str::from_utf8(&reply[..head_end])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("a response without a status"))?;
    Ok((status, reply[head_end + 4..].to_vec()))
}

/// An HTTP/1.1 request head for `path` (keep-alive).
pub fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: hostile\r\n\r\n").into_bytes()
}
