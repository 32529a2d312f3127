//! `ringloop::compat::axum::serve` on both backends: routes and extractors over HTTP/1.1 and h2c,
//! the peer's address as `ConnectInfo`, graceful shutdown (in-flight requests finish, new
//! connections are refused, idle keep-alive connections close), and a broken connection that
//! leaves the server serving.

mod common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
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
}
