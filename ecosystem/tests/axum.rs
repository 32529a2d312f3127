//! `ringloop::compat::axum::serve` on both backends: routes and extractors over HTTP/1.1 and h2c,
//! the peer's address as `ConnectInfo`, graceful shutdown (in-flight requests finish, new
//! connections are refused, idle keep-alive connections close), a broken connection that
//! leaves the server serving, and a foreign executor's panicking waker that leaves the drain
//! working.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::Cell;
use std::future::{IntoFuture, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use ringloop::compat::PollIo;
use ringloop::compat::hyper::LocalExec;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::spawn;
use ringloop::time::{sleep, timeout};

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, world!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { axum::Json(serde_json::json!({ "id": id })) }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/panic",
            get(|| async {
                panic!("a handler panics");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                hyper::rt::Timer::sleep(&ringloop::compat::hyper::Timer, Duration::from_millis(ms))
                    .await;
                format!("slept {ms} ms")
            }),
        )
}

/// A hyper client connection (HTTP/1.1, or h2c with prior knowledge) to `addr`.
enum Client {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Client {
    async fn connect(addr: SocketAddr, h2: bool) -> (Client, SocketAddr) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        let io = PollIo::new(stream);
        let client = if h2 {
            let (send, conn) = hyper::client::conn::http2::Builder::new(LocalExec)
                .handshake(io)
                .await
                .unwrap();
            spawn(async move { drop(conn.await) });
            Client::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            spawn(async move { drop(conn.await) });
            Client::H1(send)
        };
        (client, local)
    }

    /// GETs `path`: the status and the body.
    async fn get(&mut self, path: &str) -> hyper::Result<(u16, String)> {
        let req = Request::get(format!("http://localhost{path}"))
            .body(Empty::new())
            .unwrap();
        let res = match self {
            Client::H1(s) => s.send_request(req).await?,
            Client::H2(s) => s.send_request(req).await?,
        };
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8(body.to_vec()).unwrap()))
    }
}

/// A foreign executor's waker whose `wake` panics; counts its wakes.
#[derive(Default)]
struct PanicWaker(AtomicUsize);
impl Wake for PanicWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a foreign waker panics");
    }
}

/// A one-shot shutdown signal: the future completes once `fire` was called.
fn signal() -> (Rc<Cell<bool>>, impl Future<Output = ()> + 'static) {
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let fut = async move {
        while !f.get() {
            sleep(Duration::from_millis(2)).await;
        }
    };
    (fired, fut)
}

both_backends! {
    /// Routes, path extractors and JSON over HTTP/1.1 and h2c on one port; each handler sees the
    /// peer's address of its own connection.
    fn routes_and_connect_info_over_http1_and_h2c(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move { ringloop::compat::axum::serve(listener, app()).await.unwrap() });
            for h2 in [false, true] {
                let (mut client, local) = Client::connect(addr, h2).await;
                for _ in 0..3 {
                    assert_eq!(client.get("/").await.unwrap(), (200, "Hello, world!".into()));
                }
                assert_eq!(client.get("/users/42").await.unwrap(), (200, r#"{"id":42}"#.into()));
                assert_eq!(client.get("/peer").await.unwrap(), (200, local.to_string()));
                assert_eq!(client.get("/users/x").await.unwrap().0, 400);
                assert_eq!(client.get("/nowhere").await.unwrap().0, 404);
            }
        });
    }

    /// Many h2c streams at once on one connection: each is a task, all answered.
    fn many_concurrent_h2c_streams(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move { ringloop::compat::axum::serve(listener, app()).await.unwrap() });
            let (client, _) = Client::connect(addr, true).await;
            let Client::H2(send) = client else { unreachable!() };
            let mut group = ringloop::JoinSet::new();
            for i in 0..100u64 {
                let mut c = Client::H2(send.clone());
                group.spawn(async move { c.get(&format!("/users/{i}")).await.unwrap() });
            }
            let mut n = 0;
            while let Some(res) = group.join_next().await {
                let (status, body) = res.unwrap();
                assert_eq!(status, 200);
                assert!(body.starts_with(r#"{"id":"#), "{body}");
                n += 1;
            }
            assert_eq!(n, 100);
        });
    }

    /// Large bodies arrive whole and in order over h2c and HTTP/1.1, with their length: the
    /// server hands h2 a large body in chunks (each one progress for the stalled-send bound).
    fn large_bodies_arrive_whole_over_http1_and_h2c(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            const LEN: usize = (1 << 20) + 7;
            let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
            let served = body.clone();
            let app = Router::new().route("/big", get(move || async move { served }));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move { ringloop::compat::axum::serve(listener, app).await.unwrap() });
            for h2 in [false, true] {
                let (client, _) = Client::connect(addr, h2).await;
                let req = Request::get("http://localhost/big").body(Empty::new()).unwrap();
                let res = match client {
                    Client::H1(mut s) => s.send_request(req).await.unwrap(),
                    Client::H2(mut s) => s.send_request(req).await.unwrap(),
                };
                let len = res.headers().get("content-length").map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(len.as_deref(), Some(LEN.to_string().as_str()), "h2: {h2}");
                let got = res.into_body().collect().await.unwrap().to_bytes();
                assert!(got[..] == body[..], "h2: {h2}: {} bytes, not the body sent", got.len());
            }
        });
    }

    /// The shutdown signal closes the listener at once, lets the request in flight finish on
    /// its keep-alive connection, closes an idle connection, and then `serve` returns.
    fn graceful_shutdown_finishes_requests_in_flight(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let server = spawn(async move {
                ringloop::compat::axum::serve(listener, app()).with_graceful_shutdown(stop).await
            });
            // Idle keep-alive connections, kept open by the client, must not hold the server up.
            let mut idle = Vec::new();
            for h2 in [false, true] {
                let (mut client, _) = Client::connect(addr, h2).await;
                assert_eq!(client.get("/").await.unwrap().0, 200);
                idle.push(client);
            }
            let (mut busy1, _) = Client::connect(addr, false).await;
            let (mut busy2, _) = Client::connect(addr, true).await;
            let slow1 = spawn(async move { busy1.get("/slow/300").await });
            let slow2 = spawn(async move { busy2.get("/slow/300").await });
            sleep(Duration::from_millis(100)).await;
            fire.set(true);
            sleep(Duration::from_millis(50)).await;
            // The listener is closed: a new connection is refused.
            let refused = TcpStream::connect(addr).await;
            assert!(refused.is_err(), "a connection was accepted after the shutdown signal");
            assert_eq!(slow1.await.unwrap().unwrap(), (200, "slept 300 ms".into()));
            assert_eq!(slow2.await.unwrap().unwrap(), (200, "slept 300 ms".into()));
            let done = timeout(Duration::from_secs(5), server).await;
            done.expect("serve did not return after the connections ended").unwrap().unwrap();
            // The server closed the idle connections: their next request fails.
            for mut client in idle {
                assert!(client.get("/").await.is_err(), "an idle connection outlived the server");
            }
        });
    }

    /// Garbage on one connection and a client that vanishes mid-request end those connections
    /// only.
    fn a_broken_connection_leaves_the_server_serving(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(async move { ringloop::compat::axum::serve(listener, app()).await.unwrap() });
            let junk = TcpStream::connect(addr).await.unwrap();
            let (res, _) = junk.write_all(&b"\x00\x01 this is not HTTP\r\n\r\n"[..]).await;
            res.unwrap();
            let (res, buf) = junk.read(Vec::with_capacity(1024)).await;
            let reply = String::from_utf8_lossy(&buf[..res.unwrap()]).into_owned();
            assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 400"), "{reply}");
            let gone = TcpStream::connect(addr).await.unwrap();
            let (res, _) = gone.write_all(&b"GET /slow/100 HTTP/1.1\r\nhost: x\r\n\r\n"[..]).await;
            res.unwrap();
            drop(gone);
            let (mut client, _) = Client::connect(addr, false).await;
            assert_eq!(client.get("/").await.unwrap(), (200, "Hello, world!".into()));
        });
    }

    /// A handler that panics, on HTTP/1.1 (where it runs inside the connection's task) and on
    /// h2c (a stream's task): the connection's accounting is undone by its guard, so graceful
    /// shutdown still completes.
    fn a_handler_panic_does_not_hang_graceful_shutdown(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let server = spawn(async move {
                ringloop::compat::axum::serve(listener, app()).with_graceful_shutdown(stop).await
            });
            for h2 in [false, true] {
                let (mut client, _) = Client::connect(addr, h2).await;
                assert!(client.get("/panic").await.is_err(), "a panicking handler answered");
            }
            let (mut client, _) = Client::connect(addr, false).await;
            assert_eq!(client.get("/").await.unwrap().0, 200, "the server stopped serving");
            drop(client);
            fire.set(true);
            let done = timeout(Duration::from_secs(10), server).await;
            done.expect("graceful shutdown hangs after a handler panic").unwrap().unwrap();
        });
    }

    /// `serve` polled, at its connection cap and as its shutdown signal fires, by a foreign
    /// executor whose waker panics, then awaited as usual: when the last connection ends, the
    /// cap's stale waiter (the panicking waker) is woken first, and the drain's waiter must
    /// still be woken, so `serve` returns.
    fn a_panicking_foreign_waker_of_serve_does_not_hang_its_drain(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let config = ringloop::compat::axum::ServeConfig::new()
                .max_connections(1)
                .drain_timeout(None)
                .protocol_timeout(None);
            let mut served = ringloop::compat::axum::serve(listener, app())
                .config(config)
                .with_graceful_shutdown(stop)
                .into_future();
            // One connection that sends nothing fills the cap; its protocol stays unknown, so
            // the drain waits for it to end.
            let client = TcpStream::connect(addr).await.unwrap();
            let base = ringloop::current_stats().unwrap().tasks_spawned;
            timeout(
                Duration::from_secs(10),
                poll_fn(|cx| {
                    assert!(served.as_mut().poll(cx).is_pending());
                    if ringloop::current_stats().unwrap().tasks_spawned > base {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }),
            )
            .await
            .expect("the connection was never accepted");
            fire.set(true);
            sleep(Duration::from_millis(20)).await; // the signal's own sleep is over
            // The foreign poll: the cap's waiter and then the drain's are the panicking waker.
            let waker = Arc::new(PanicWaker::default());
            let foreign = Waker::from(waker.clone());
            assert!(
                served
                    .as_mut()
                    .poll(&mut Context::from_waker(&foreign))
                    .is_pending()
            );
            // Awaited as usual from here: the drain's waiter is this task's.
            poll_fn(|cx| {
                assert!(served.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            drop(client);
            // The bound is polled first: `serve` is polled only when it was woken.
            let mut limit = pin!(sleep(Duration::from_secs(10)));
            poll_fn(|cx| {
                if limit.as_mut().poll(cx).is_ready() {
                    panic!("serve never returned: a panicking waker kept its drain from being woken");
                }
                served.as_mut().poll(cx)
            })
            .await
            .unwrap();
            assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        });
    }

    /// The shutdown signal fires in the very poll that accepted a connection, before the
    /// connection's task ever ran, while its whole request waits in the socket: `serve` waits
    /// for that connection (the loop is closed as soon as it returns, as a pool's is), and the
    /// client gets its answer.
    fn a_request_accepted_as_the_signal_fires_is_answered(lp: &mut EventLoop) {
        let mut server_loop = common::new_loop(lp.backend());
        let (written_tx, written_rx) = std::sync::mpsc::channel();
        let client = server_loop.run_until_complete(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
                written_tx.send(()).unwrap();
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).map(|_| reply)
            });
            ringloop::spawn_blocking(move || written_rx.recv().unwrap()).await.unwrap();
            // Fires once the server spawned its connection task: right after the accept.
            let base = ringloop::current_stats().unwrap().tasks_spawned;
            let stop = poll_fn(move |cx| {
                if ringloop::current_stats().unwrap().tasks_spawned > base {
                    return Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            });
            let served = ringloop::compat::axum::serve(listener, app()).with_graceful_shutdown(stop);
            timeout(Duration::from_secs(10), served.into_future()).await.expect("serve did not return").unwrap();
            client
        });
        server_loop.close();
        let reply = client.join().unwrap().expect("the client's connection failed");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "no answer: {reply:?}");
        assert!(reply.ends_with("Hello, world!"), "{reply:?}");
    }
}

/// `axum_pool`'s shape: a `LoopPool` of servers, one of whose HTTP/1.1 handlers panicked;
/// the pool's shutdown still completes and `join` returns.
#[test]
fn pool_join_returns_after_an_http1_handler_panic() {
    for backend in [ringloop::Backend::Uring, ringloop::Backend::Epoll] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = ringloop::LoopPool::builder()
            .threads(2)
            .backend(backend)
            .start(move |cx| async move {
                let listener = TcpListener::builder()
                    .reuse_port(true)
                    .bind(("127.0.0.1", port))
                    .unwrap();
                ringloop::compat::axum::serve(listener, app())
                    .with_graceful_shutdown(cx.shutdown().triggered())
                    .await
            })
            .unwrap();
        let mut panicked = 0;
        for _ in 0..500 {
            // Several connections, so each loop's server very likely meets a panic.
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s.write_all(b"GET /panic HTTP/1.1\r\nhost: x\r\n\r\n")
                        .unwrap();
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    panicked += 1;
                    if panicked == 8 {
                        break;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        assert_eq!(panicked, 8, "the pool never accepted");
        pool.shutdown();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(pool.join()));
        let results = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{backend}: LoopPool::join hangs after a handler panic"));
        for r in results {
            r.unwrap().unwrap();
        }
    }
}
