//! Poll-based I/O (`ringloop::compat::PollIo`) with the crates that speak it: futures-io,
//! tokio-io (tokio-util's codecs) and hyper (HTTP/1 and HTTP/2, server and client), on both
//! backends.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::Cell;
use std::future::poll_fn;
use std::io::{IoSlice, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use proptest::prelude::*;
use ringloop::compat::PollIo;
use ringloop::compat::hyper::{LocalExec, Timer};
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::spawn;
use ringloop::time::{sleep, timeout};

use common::tcp_pair;

/// The echo service: `POST /echo` returns the body; anything else says hello.
async fn service(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.uri().path() == "/echo" {
        let body = req.into_body().collect().await?.to_bytes();
        return Ok(Response::new(Full::new(body)));
    }
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, world!",
    ))))
}

/// Serves HTTP (1.1 and h2c, auto-detected) on `listener` until the task is dropped; counts the
/// connections that ended in an error.
fn start_server(listener: TcpListener, errors: Rc<Cell<usize>>) -> ringloop::JoinHandle<()> {
    spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let errors = errors.clone();
            spawn(async move {
                let mut builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
                builder.http1().timer(Timer);
                builder.http2().timer(Timer);
                let conn = builder
                    .serve_connection(PollIo::new(stream), hyper::service::service_fn(service));
                if conn.await.is_err() {
                    errors.set(errors.get() + 1);
                }
            });
        }
    })
}

fn post(i: usize) -> (Request<Full<Bytes>>, Vec<u8>) {
    let body: Vec<u8> = format!("request {i} ").repeat(i % 50 + 1).into_bytes();
    let req = Request::post("/echo")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    (req, body)
}

async fn body_of(res: Response<Incoming>) -> Vec<u8> {
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

const REQUESTS: usize = 1000;

both_backends! {
    /// 16 MiB through `futures::io::copy` between two `PollIo` streams, byte for byte.
    fn futures_io_copy_of_16_mib(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            const LEN: usize = 16 << 20;
            let (src_w, src_r) = tcp_pair().await;
            let (dst_w, dst_r) = tcp_pair().await;
            let data = common::pattern(3, LEN);
            let expected = data.clone();
            let writer = spawn(async move {
                let mut w = PollIo::new(src_w);
                w.write_all(&data).await.unwrap();
                w.close().await.unwrap();
                w.close().await.unwrap(); // idempotent
            });
            let copier = spawn(async move {
                let (mut r, mut w) = (PollIo::new(src_r), PollIo::new(dst_w));
                let n = futures::io::copy(&mut r, &mut w).await.unwrap();
                w.close().await.unwrap();
                n
            });
            let mut got = Vec::with_capacity(LEN);
            PollIo::new(dst_r).read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(copier.await.unwrap(), LEN as u64);
            assert!(got == expected, "the copy came out different");
        });
    }

    /// `BufReader::read_line` over a `PollIo`, with lines split across writes.
    fn futures_io_read_line(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (a, b) = UnixStream::pair().unwrap();
            spawn(async move {
                let mut w = PollIo::new(a);
                for part in ["first li", "ne\nsecond", " line\nthird\n"] {
                    w.write_all(part.as_bytes()).await.unwrap();
                    sleep(Duration::from_millis(2)).await;
                }
            });
            let mut r = BufReader::new(PollIo::new(b));
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                lines.push(line);
            }
            assert_eq!(lines, ["first line\n", "second line\n", "third\n"]);
        });
    }

    /// A vectored write sends every slice, in order, in one call.
    fn futures_io_vectored_writes(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (a, b) = tcp_pair().await;
            let mut w = PollIo::new(a);
            let parts: [&[u8]; 4] = [b"one ", b"", b"two ", b"three"];
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let n = w.write_vectored(&slices).await.unwrap();
            if common::faults_on() {
                // An injected short write may cut it: send the rest.
                let all = b"one two three";
                w.write_all(&all[n..]).await.unwrap();
            } else {
                assert_eq!(n, 13, "a small vectored write goes whole");
            }
            w.close().await.unwrap();
            let mut got = Vec::new();
            PollIo::new(b).read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"one two three");
        });
    }

    /// Bytes a dropped owned-buffer read left on the stream come out of the `PollIo` first.
    fn poll_reads_return_what_a_dropped_owned_read_left_first(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (a, b) = tcp_pair().await;
            // An owned read in flight (on uring, in the ring)...
            let mut read = Box::pin(b.read(Vec::with_capacity(64)));
            assert!(futures::poll!(read.as_mut()).is_pending());
            // ...receives bytes, and is dropped without being polled again: on uring its bytes
            // go to the stream's stash; on epoll they stay in the socket.
            let (res, _) = a.write_all(&b"first "[..]).await;
            res.unwrap();
            sleep(Duration::from_millis(20)).await;
            drop(read);
            let (res, _) = a.write_all(&b"second"[..]).await;
            res.unwrap();
            drop(a);
            let mut got = Vec::new();
            PollIo::new(b).read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"first second", "bytes were lost or reordered");
        });
    }

    /// tokio-util's `Framed` with `LinesCodec` over a `PollIo` (tokio's traits).
    fn tokio_io_framed_lines(lp: &mut EventLoop) {
        use tokio_util::codec::{Framed, LinesCodec};
        lp.run_until_complete(async {
            let (a, b) = tcp_pair().await;
            let echo = spawn(async move {
                let mut framed = Framed::new(PollIo::new(b), LinesCodec::new());
                while let Some(line) = framed.next().await {
                    framed.send(format!("echo: {}", line.unwrap())).await.unwrap();
                }
            });
            let mut framed = Framed::new(PollIo::new(a), LinesCodec::new());
            for i in 0..100 {
                framed.send(format!("line {i}")).await.unwrap();
                assert_eq!(framed.next().await.unwrap().unwrap(), format!("echo: line {i}"));
            }
            drop(framed);
            echo.await.unwrap();
        });
    }

    /// A ringloop hyper server and a ringloop hyper client: 1,000 requests over HTTP/1.1, then
    /// 1,000 over HTTP/2, bodies checked.
    fn hyper_http1_and_http2_round_trips(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let errors = Rc::new(Cell::new(0));
            let server = start_server(listener, errors.clone());

            let io = PollIo::new(TcpStream::connect(addr).await.unwrap());
            let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            spawn(conn);
            for i in 0..REQUESTS {
                let (req, body) = post(i);
                let res = h1.send_request(req).await.unwrap();
                assert_eq!(body_of(res).await, body, "HTTP/1.1 request {i}");
            }

            let io = PollIo::new(TcpStream::connect(addr).await.unwrap());
            let (h2, conn) = hyper::client::conn::http2::Builder::new(LocalExec)
                .timer(Timer)
                .handshake(io)
                .await
                .unwrap();
            spawn(conn);
            // 10 streams at a time on the one connection.
            for batch in 0..REQUESTS / 10 {
                let responses = ringloop::gather((0..10).map(|j| {
                    let mut h2 = h2.clone();
                    async move {
                        let (req, body) = post(batch * 10 + j);
                        let res = h2.send_request(req).await.unwrap();
                        (body_of(res).await, body)
                    }
                }))
                .await;
                for (got, want) in responses {
                    assert_eq!(got, want, "HTTP/2 batch {batch}");
                }
            }
            assert_eq!(errors.get(), 0);
            server.abort();
        });
    }

    /// A client that disconnects mid-body, or sends garbage instead of HTTP, gets an error for
    /// its own connection; the server goes on serving the others.
    fn hyper_server_survives_bad_clients(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let errors = Rc::new(Cell::new(0));
            let server = start_server(listener, errors.clone());
            // Raw clients on threads, so their blocking I/O does not stall the loop.
            let bad = std::thread::spawn(move || {
                let mut mid_body = std::net::TcpStream::connect(addr).unwrap();
                mid_body
                    .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123")
                    .unwrap();
                drop(mid_body);
                let mut garbage = std::net::TcpStream::connect(addr).unwrap();
                garbage.write_all(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n").unwrap();
                let mut answer = Vec::new();
                let _ = garbage.read_to_end(&mut answer);
                answer
            });
            while !bad.is_finished() {
                sleep(Duration::from_millis(2)).await;
            }
            let answer = bad.join().unwrap();
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
                "garbage got {:?}",
                String::from_utf8_lossy(&answer)
            );
            // Both bad connections end in an error on the server...
            for _ in 0..500 {
                if errors.get() >= 2 {
                    break;
                }
                sleep(Duration::from_millis(2)).await;
            }
            assert_eq!(errors.get(), 2, "each bad client's connection ends in an error");
            // ...and it still serves.
            let io = PollIo::new(TcpStream::connect(addr).await.unwrap());
            let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            spawn(conn);
            let (req, body) = post(7);
            assert_eq!(body_of(h1.send_request(req).await.unwrap()).await, body);
            server.abort();
        });
    }
}

/// One step of the abandonment property test.
#[derive(Debug, Clone)]
enum Step {
    /// A `PollIo` read of up to `len` bytes, abandoned if not done within `micros`.
    PollRead { len: usize, micros: u64 },
    /// An owned-buffer read of up to `len` bytes, dropped if not done within `micros`.
    OwnedRead { len: usize, micros: u64 },
    /// An owned-buffer read polled once, then dropped `micros` later without another poll (on
    /// uring its completion may have come meanwhile: its bytes go to the stream's stash).
    OwnedReadDroppedUnseen { len: usize, micros: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..5000, 0u64..300).prop_map(|(len, micros)| Step::PollRead { len, micros }),
        (1usize..5000, 0u64..300).prop_map(|(len, micros)| Step::OwnedRead { len, micros }),
        (1usize..5000, 0u64..300)
            .prop_map(|(len, micros)| Step::OwnedReadDroppedUnseen { len, micros }),
    ]
}

/// Writes `data` through a `PollIo` in `poll_write` calls of up to `chunk` bytes, each abandoned
/// if not done within `micros`; an abandoned call must have written nothing.
async fn abandoning_writer(io: &mut PollIo<TcpStream>, data: &[u8], chunk: usize, micros: u64) {
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + chunk).min(data.len());
        let write = poll_fn(|cx| io.poll_write(cx, &data[pos..end]));
        if let Ok(res) = timeout(Duration::from_micros(micros), write).await {
            pos += res.unwrap();
        }
    }
    poll_fn(|cx| io.poll_shutdown(cx)).await.unwrap();
}

fn abandonment_case(backend: ringloop::Backend, steps: &[Step], chunk: usize, wmicros: u64) {
    const LEN: usize = 48 << 10;
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let (a, b) = tcp_pair().await;
        // A small receive buffer, so the writer often finds the socket full and waits.
        socket2::SockRef::from(&b)
            .set_recv_buffer_size(4096)
            .unwrap();
        let data = common::pattern(9, LEN);
        let expected = data.clone();
        let writer = spawn(async move {
            let mut io = PollIo::new(a);
            abandoning_writer(&mut io, &data, chunk, wmicros).await;
        });
        let mut got = Vec::with_capacity(LEN);
        let mut io = PollIo::new(b);
        // Until every byte came; the end of stream is checked after (a read dropped unseen may
        // have met it, and the kernel reports it again to the next read).
        'outer: while got.len() < LEN {
            for step in steps {
                match *step {
                    Step::PollRead { len, micros } => {
                        let mut buf = vec![0u8; len];
                        let read = poll_fn(|cx| io.poll_read(cx, &mut buf));
                        if let Ok(res) = timeout(Duration::from_micros(micros), read).await {
                            let n = res.unwrap();
                            if n == 0 {
                                break 'outer;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                    }
                    Step::OwnedRead { len, micros } => {
                        let read = io.get_ref().read(Vec::with_capacity(len));
                        if let Ok((res, buf)) = timeout(Duration::from_micros(micros), read).await {
                            if res.unwrap() == 0 {
                                break 'outer;
                            }
                            got.extend_from_slice(&buf);
                        }
                    }
                    Step::OwnedReadDroppedUnseen { len, micros } => {
                        let mut read = Box::pin(io.get_ref().read(Vec::with_capacity(len)));
                        if let std::task::Poll::Ready((res, buf)) = futures::poll!(read.as_mut()) {
                            if res.unwrap() == 0 {
                                break 'outer;
                            }
                            got.extend_from_slice(&buf);
                            continue;
                        }
                        sleep(Duration::from_micros(micros)).await;
                    }
                }
            }
        }
        writer.await.unwrap();
        let mut rest = [0u8; 16];
        let n = poll_fn(|cx| io.poll_read(cx, &mut rest)).await.unwrap();
        got.extend_from_slice(&rest[..n]);
        assert_eq!(got.len(), expected.len(), "bytes lost or duplicated");
        assert!(got == expected, "bytes reordered");
    });
    lp.close();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random reads through `PollIo` abandoned at random points and resumed, mixed with
    /// owned-buffer reads (also dropped at random) on the same stream, while the writer abandons
    /// `poll_write` calls at random too: the bytes received equal the bytes sent, in order, on
    /// both backends.
    #[test]
    fn abandoned_polls_lose_and_duplicate_nothing(
        steps in proptest::collection::vec(step(), 1..12),
        chunk in 1usize..20_000,
        wmicros in 0u64..200,
    ) {
        abandonment_case(ringloop::Backend::Uring, &steps, chunk, wmicros);
        abandonment_case(ringloop::Backend::Epoll, &steps, chunk, wmicros);
    }
}

/// `PollIo::pooled`: reads from the loop's receive pool.
mod pooled_reads {
    use super::*;

    /// Reads everything from `r` in reads of varying sizes (1 byte to 64 KiB), `stop` bytes at most.
    async fn read_varied(r: &mut PollIo<TcpStream>, stop: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut i = 0usize;
        while got.len() < stop {
            let want = [1, 7, 100, 4096, 5000, 65536][i % 6].min(stop - got.len());
            i += 1;
            let n = poll_fn(|cx| r.poll_read(cx, &mut buf[..want]))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    both_backends! {
        /// `PollIo::pooled`: 8 MiB read in pieces of every size, in order, byte for byte; then the
        /// stream taken back with `into_inner` reads the rest with the owned API, nothing lost.
        fn pooled_poll_reads_keep_order_and_lose_nothing(lp: &mut EventLoop) {
            let lp_backend = lp.backend();
            lp.run_until_complete(async move {
                const LEN: usize = 8 << 20;
                const REST: usize = 1 << 20;
                let (w, r) = tcp_pair().await;
                let data = common::pattern(5, LEN + REST);
                let expected = data.clone();
                let writer = spawn(async move {
                    for chunk in data.chunks(300_000) {
                        let (res, _) = w.write_all(chunk.to_vec()).await;
                        res.unwrap();
                    }
                });
                let mut r = PollIo::pooled(r);
                let before = ringloop::current_stats();
                let mut got = read_varied(&mut r, LEN).await;
                let after = ringloop::current_stats();
                assert_eq!(got.len(), LEN);
                if lp_backend == ringloop::Backend::Uring && !common::faults_on() {
                    // The reads came from the pool: one 4 KiB buffer at most per 4 KiB.
                    let (before, after) = (before.unwrap(), after.unwrap());
                    let filled = after.pool_buffers_received - before.pool_buffers_received;
                    assert!(filled >= (LEN / 4096) as u64, "{filled} pool buffers: {after:?}");
                }
                let r = r.into_inner();
                writer.await.unwrap();
                let mut buf = Vec::with_capacity(64 * 1024);
                while got.len() < LEN + REST {
                    let (res, b) = r.read(buf).await;
                    let n = res.unwrap();
                    assert!(n > 0, "end of stream after {} bytes", got.len());
                    got.extend_from_slice(&b[..n]);
                    buf = b;
                }
                assert!(got == expected, "the bytes came out different");
            });
        }

        /// With a receive pool of 2 buffers shared by 6 streams the pool runs dry: pooled reads fall
        /// back to plain `recv` then, and every stream still gets its bytes in order.
        fn pooled_poll_reads_survive_an_exhausted_pool(lp: &mut EventLoop) {
            let backend = lp.backend();
            let mut lp = ringloop::EventLoop::builder()
                .backend(backend)
                .recv_pool(2, 4096)
                .build()
                .unwrap();
            lp.run_until_complete(async {
                const LEN: usize = 1 << 20;
                let mut readers = ringloop::JoinSet::new();
                for s in 0..6 {
                    let (w, r) = tcp_pair().await;
                    let data = common::pattern(s * 1000, LEN);
                    spawn(async move {
                        let (res, _) = w.write_all(data).await;
                        res.unwrap();
                    });
                    readers.spawn(async move {
                        let mut r = PollIo::pooled(r);
                        let got = read_varied(&mut r, LEN).await;
                        assert!(got == common::pattern(s * 1000, LEN), "stream {s} came out different");
                    });
                }
                while let Some(res) = readers.join_next().await {
                    res.unwrap();
                }
            });
            lp.close();
        }

        /// hyper's HTTP/1.1 server on `PollIo::pooled` (as `compat::axum::serve` runs it): 200
        /// echoes of bodies up to 1 MiB, each intact.
        fn hyper_on_pooled_poll_reads(lp: &mut EventLoop) {
            lp.run_until_complete(async {
                let (client, server) = tcp_pair().await;
                spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(Timer)
                        .serve_connection(PollIo::pooled(server), hyper::service::service_fn(service));
                    conn.await.unwrap();
                });
                let (mut h1, conn) =
                    hyper::client::conn::http1::handshake(PollIo::new(client)).await.unwrap();
                spawn(async move { drop(conn.await) });
                for i in 0..200usize {
                    let body = common::pattern(i, (i * 5243) % (1 << 20));
                    let req = Request::post("/echo")
                        .header("host", "localhost")
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    let got = body_of(h1.send_request(req).await.unwrap()).await;
                    assert!(got == body, "echo {i} came back different");
                }
            });
        }
    }
}
