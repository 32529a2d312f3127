//! Hostile peers (`tests/common/hostile.rs`) against every server-shaped API, on both backends:
//! `compat::axum::serve`, hyper served over `compat::PollIo`, and a `LoopPool` of servers shut
//! down. Each case checks that other connections keep being served, that every bound frees the
//! server of its peer, that graceful shutdown finishes within its drain deadline, and that no
//! fd, task or pool buffer is left. Each runs in a child process of its own, so its fd count
//! is not disturbed by the tests running next to it.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/hostile.rs"]
mod hostile;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, IntoFuture, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use common::{in_child, open_fds, run_in_child, test_path};
use hostile::Peer;
use ringloop::compat::PollIo;
use ringloop::compat::axum::{ServeConfig, serve};
use ringloop::compat::hyper::{LocalExec, Timer};
use ringloop::net::TcpListener;
use ringloop::time::{sleep, timeout};
use ringloop::{EventLoop, LoopPool, spawn, spawn_blocking};

const BIG: usize = 8 << 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, world!" }))
        .route("/big", get(|| async { vec![b'x'; BIG] }))
        .route(
            "/slow/{ms}",
            get(|Path(n): Path<u64>| async move {
                hyper::rt::Timer::sleep(&Timer, ms(n)).await;
                "slept"
            }),
        )
}

/// Every bound short, so each hostile peer is dropped quickly.
fn short_bounds() -> ServeConfig {
    ServeConfig::new()
        .protocol_timeout(ms(300))
        .header_read_timeout(ms(300))
        .http2_keep_alive_interval(ms(200))
        .http2_keep_alive_timeout(ms(200))
        .write_timeout(ms(300))
        .drain_timeout(ms(1000))
}

/// A one-shot shutdown signal: the future completes once `fire` was called.
fn signal() -> (Rc<Cell<bool>>, impl Future<Output = ()> + 'static) {
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let fut = async move {
        while !f.get() {
            sleep(ms(2)).await;
        }
    };
    (fired, fut)
}

/// True in the parent: the test `name` then ran in a child process of its own (and passed).
fn ran_in_child(lp: &EventLoop, name: &str) -> bool {
    if in_child() {
        return false;
    }
    run_in_child(&test_path(lp.backend(), name), &[]);
    true
}

/// A well-behaved client, off the loop: `/` answers 200 and its body.
async fn served(addr: SocketAddr) {
    let (status, body) = spawn_blocking(move || hostile::get(addr, "/"))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a well-behaved client was not served: {e}"));
    assert_eq!((status, &body[..]), (200, &b"Hello, world!"[..]));
}

/// Waits, off the loop, until the server has closed every peer's connection (or `within`
/// passed); returns the peers and what the ones still open do.
async fn closed(peers: Vec<Peer>, within: Duration) -> (Vec<Peer>, Vec<&'static str>) {
    spawn_blocking(move || {
        let open = peers
            .iter()
            .filter(|p| !p.closed_within(within))
            .map(|p| p.what)
            .collect();
        (peers, open)
    })
    .await
    .unwrap()
}

/// After the case: the loop lets the last closes settle, then nothing may be left of the
/// server: no task, no pool buffer, no fd.
fn assert_nothing_left(lp: &mut EventLoop, fds_before: usize) {
    lp.run_until_complete(sleep(ms(50)));
    let tasks = lp.tasks();
    assert!(tasks.is_empty(), "tasks left: {tasks:?}");
    assert_eq!(lp.stats().pool_buffers_in_use, 0, "pool buffers left");
    assert_eq!(open_fds(), fds_before, "fds left");
}

both_backends! {
    /// Each kind of hostile peer at once: a well-behaved client is served meanwhile, each peer
    /// is dropped by its bound (protocol timeout, request-head timeout, h2 keep-alive,
    /// stalled-send timeout), and graceful shutdown then returns at once.
    fn axum_serve_drops_each_hostile_peer_by_its_bound(lp: &mut EventLoop) {
        if ran_in_child(lp, "axum_serve_drops_each_hostile_peer_by_its_bound") {
            return;
        }
        let before = open_fds();
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let server = spawn(
                serve(listener, app()).config(short_bounds()).with_graceful_shutdown(stop).into_future(),
            );
            let peers = vec![
                hostile::silent(addr),
                hostile::half_h2_preface(addr),
                hostile::half_request(addr),
                hostile::dribbles(addr, &hostile::request("/"), ms(100)),
                hostile::vanishes_after(addr, &hostile::request("/")),
                hostile::stops_reading(addr, &hostile::request("/big")),
                hostile::h2_ignoring_pings(addr, None),
            ];
            hostile::resets_mid_request(addr, b"GET / HTTP/1.1\r\nHo");
            for _ in 0..3 {
                served(addr).await;
            }
            let (peers, open) = closed(peers, Duration::from_secs(5)).await;
            assert!(open.is_empty(), "the server still holds peers that {open:?}");
            let h2 = peers.last().unwrap().h2();
            assert!(h2.pings() >= 1, "the h2c peer was never pinged");
            served(addr).await;
            fire.set(true);
            let done = timeout(Duration::from_secs(5), server).await;
            done.expect("serve did not return after the shutdown signal").unwrap().unwrap();
            drop(peers);
        });
        assert_nothing_left(lp, before);
    }

    /// Peers that hold graceful shutdown open (an h2c peer that never acks the shutdown ping,
    /// one with a request in flight that never ends, a peer that stopped reading, half a
    /// request head, a slow dribble, an HTTP/1.1 request in flight) with every other bound at
    /// its long default: the drain deadline closes them and `serve` returns.
    fn axum_graceful_shutdown_is_bounded_by_the_drain_deadline(lp: &mut EventLoop) {
        if ran_in_child(lp, "axum_graceful_shutdown_is_bounded_by_the_drain_deadline") {
            return;
        }
        let before = open_fds();
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let config = ServeConfig::new().drain_timeout(ms(500));
            let server =
                spawn(serve(listener, app()).config(config).with_graceful_shutdown(stop).into_future());
            let peers = vec![
                hostile::h2_ignoring_pings(addr, None),
                hostile::h2_ignoring_pings(addr, Some("/slow/600000")),
                hostile::stops_reading(addr, &hostile::request("/big")),
                hostile::half_request(addr),
                hostile::dribbles(addr, &hostile::request("/"), ms(200)),
                hostile::vanishes_after(addr, &hostile::request("/slow/600000")),
                hostile::silent(addr),
            ];
            served(addr).await;
            sleep(ms(200)).await; // every peer is accepted and has sent what it sends
            fire.set(true);
            let done = timeout(Duration::from_secs(10), server).await;
            done.expect("graceful shutdown outlived its drain deadline").unwrap().unwrap();
            let (peers, open) = closed(peers, Duration::from_secs(2)).await;
            assert!(open.is_empty(), "peers still connected after serve returned: {open:?}");
            for p in &peers[..2] {
                assert!(p.h2().goaways() >= 1, "an h2c peer got no GOAWAY");
            }
            drop(peers);
        });
        assert_nothing_left(lp, before);
    }

    /// With a connection cap, peers that hold every slot keep a new client waiting in the
    /// backlog, not refused; it is served as soon as one of them goes.
    fn axum_connection_cap_keeps_the_rest_waiting(lp: &mut EventLoop) {
        if ran_in_child(lp, "axum_connection_cap_keeps_the_rest_waiting") {
            return;
        }
        let before = open_fds();
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let config = ServeConfig::new().max_connections(2);
            let server =
                spawn(serve(listener, app()).config(config).with_graceful_shutdown(stop).into_future());
            let mut peers = vec![hostile::silent(addr), hostile::silent(addr)];
            sleep(ms(100)).await;
            let waiting = spawn_blocking(move || hostile::get(addr, "/"));
            sleep(ms(300)).await;
            assert!(!waiting.is_finished(), "a connection over the cap was served (or refused)");
            drop(peers.pop());
            let (status, body) = timeout(Duration::from_secs(10), waiting)
                .await
                .expect("the waiting client was not served when a slot freed")
                .unwrap()
                .unwrap();
            assert_eq!((status, &body[..]), (200, &b"Hello, world!"[..]));
            fire.set(true);
            let done = timeout(Duration::from_secs(5), server).await;
            done.expect("serve did not return").unwrap().unwrap();
            drop(peers);
        });
        assert_nothing_left(lp, before);
    }

    /// An h2c peer that shuts its flow-control window (`SETTINGS_INITIAL_WINDOW_SIZE` 0), opens
    /// streams for large responses and answers every PING: no socket write stalls, yet no
    /// response makes progress. The stalled-send timeout closes it (the responses it held are
    /// freed), and others are served meanwhile.
    fn axum_h2_peer_with_a_shut_window_is_closed_by_the_write_timeout(lp: &mut EventLoop) {
        if ran_in_child(lp, "axum_h2_peer_with_a_shut_window_is_closed_by_the_write_timeout") {
            return;
        }
        let before = open_fds();
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let config = ServeConfig::new()
                .write_timeout(ms(600))
                .http2_keep_alive_interval(ms(100))
                .http2_keep_alive_timeout(ms(200))
                .drain_timeout(ms(1000));
            let server =
                spawn(serve(listener, app()).config(config).with_graceful_shutdown(stop).into_future());
            // A handler slower than the bound is not a stalled send: its peer is answered.
            let slow = hostile::h2_idle(addr, Some("/slow/1500"));
            let peers = vec![hostile::h2_zero_window(addr, "/big", 20)];
            served(addr).await;
            let (peers, open) = closed(peers, Duration::from_secs(5)).await;
            assert!(open.is_empty(), "the server still holds a peer that {open:?}");
            let h2 = peers[0].h2();
            assert!(h2.headers() >= 1, "no response was started: nothing was owed to the peer");
            assert!(h2.pings() >= 1, "the peer was never pinged (so never seen to be alive)");
            served(addr).await;
            let slow = spawn_blocking(move || {
                let t = std::time::Instant::now();
                while slow.h2().headers() == 0 && t.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(ms(10));
                }
                slow
            })
            .await
            .unwrap();
            assert!(slow.h2().headers() >= 1, "a slow handler's response never came");
            assert!(!slow.closed_within(ms(0)), "a slow handler's connection was closed");
            drop(slow);
            fire.set(true);
            let done = timeout(Duration::from_secs(5), server).await;
            done.expect("serve did not return after the shutdown signal").unwrap().unwrap();
            drop(peers);
        });
        assert_nothing_left(lp, before);
    }

    /// h2c peers that hold idle connections and answer PINGs (keep-alive only finds dead
    /// peers), one after a served request, one that does not answer the PING after the GOAWAY,
    /// fill a connection cap: the h2 idle timeout shuts them down with a GOAWAY (the last is
    /// closed when still idle as long again), and a new client is served.
    fn axum_idle_h2_peers_are_shut_down_and_free_their_slots(lp: &mut EventLoop) {
        if ran_in_child(lp, "axum_idle_h2_peers_are_shut_down_and_free_their_slots") {
            return;
        }
        let before = open_fds();
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (fire, stop) = signal();
            let config = ServeConfig::new()
                .max_connections(3)
                .http2_idle_timeout(ms(300));
            let server =
                spawn(serve(listener, app()).config(config).with_graceful_shutdown(stop).into_future());
            let peers = vec![
                hostile::h2_idle(addr, None),
                hostile::h2_idle(addr, Some("/")),
                hostile::h2_idle_ignoring_goaway(addr),
            ];
            sleep(ms(100)).await;
            let waiting = spawn_blocking(move || hostile::get(addr, "/"));
            let (status, body) = timeout(Duration::from_secs(5), waiting)
                .await
                .expect("idle h2c peers kept a new client out for good")
                .unwrap()
                .unwrap();
            assert_eq!((status, &body[..]), (200, &b"Hello, world!"[..]));
            let (peers, open) = closed(peers, Duration::from_secs(5)).await;
            assert!(open.is_empty(), "the server still holds peers that {open:?}");
            assert!(peers[1].h2().headers() >= 1, "the idle peer's request was not answered");
            for p in &peers {
                assert!(p.h2().goaways() >= 1, "an idle h2c peer was closed without a GOAWAY");
            }
            fire.set(true);
            let done = timeout(Duration::from_secs(5), server).await;
            done.expect("serve did not return after the shutdown signal").unwrap().unwrap();
            drop(peers);
        });
        assert_nothing_left(lp, before);
    }

    /// hyper over `PollIo` with hyper's own bounds on ringloop's `Timer` (request-head timeout,
    /// h2 keep-alive) and the user's drain deadline: hostile peers are dropped, others are
    /// served, a stalled send ends at shutdown, and nothing is left.
    fn hyper_over_pollio_drops_hostile_peers(lp: &mut EventLoop) {
        if ran_in_child(lp, "hyper_over_pollio_drops_hostile_peers") {
            return;
        }
        let before = open_fds();
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Rc::new(Cell::new(false));
            let server = spawn(hyper_server(listener, stop.clone()));
            let stalled = hostile::stops_reading(addr, &hostile::request("/big"));
            let peers = vec![
                hostile::half_request(addr),
                hostile::dribbles(addr, &hostile::request("/"), ms(100)),
                hostile::vanishes_after(addr, &hostile::request("/")),
                hostile::h2_ignoring_pings(addr, None),
                hostile::h2_ignoring_pings(addr, Some("/")),
            ];
            hostile::resets_mid_request(addr, b"GET / HTTP/1.1\r\nHo");
            for _ in 0..3 {
                served(addr).await;
            }
            let (peers, open) = closed(peers, Duration::from_secs(5)).await;
            assert!(open.is_empty(), "the server still holds peers that {open:?}");
            assert!(peers[4].h2().headers() >= 1, "the h2c peer's request was not answered");
            // The stalled send ends with the server's shutdown, at its drain deadline.
            stop.set(true);
            timeout(Duration::from_secs(5), server).await.expect("the hyper server did not end").unwrap();
            // hyper closes with a FIN behind the unread data: read it to see the FIN.
            let stalled = spawn_blocking(move || {
                assert!(stalled.closed_after_reading_within(Duration::from_secs(5)), "the stalled send outlived the server");
                stalled
            }).await.unwrap();
            drop((peers, stalled));
        });
        assert_nothing_left(lp, before);
    }

    /// A pool of servers (one per loop, `SO_REUSEPORT`) with hostile peers on them: the pool's
    /// shutdown and `join` finish within the drain deadline, and every fd of the servers and
    /// loops is closed.
    fn pool_shutdown_with_hostile_peers_is_bounded(lp: &mut EventLoop) {
        if ran_in_child(lp, "pool_shutdown_with_hostile_peers_is_bounded") {
            return;
        }
        let backend = lp.backend();
        let before = open_fds();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let pool = LoopPool::builder()
            .threads(2)
            .backend(backend)
            .start(move |cx| async move {
                let listener =
                    TcpListener::builder().reuse_port(true).bind(("127.0.0.1", port)).unwrap();
                let config = ServeConfig::new().drain_timeout(ms(500));
                serve(listener, app())
                    .config(config)
                    .with_graceful_shutdown(cx.shutdown().triggered())
                    .await
            })
            .unwrap();
        // Both loops bind at their start: wait until a client is served.
        let mut tries = 0;
        while hostile::get(addr, "/").is_err() {
            tries += 1;
            assert!(tries < 500, "the pool never served");
            std::thread::sleep(ms(10));
        }
        let mut peers = Vec::new();
        for _ in 0..2 {
            peers.push(hostile::h2_ignoring_pings(addr, Some("/slow/600000")));
            peers.push(hostile::stops_reading(addr, &hostile::request("/big")));
            peers.push(hostile::vanishes_after(addr, &hostile::request("/slow/600000")));
            peers.push(hostile::half_request(addr));
            peers.push(hostile::silent(addr));
        }
        for _ in 0..4 {
            assert_eq!(hostile::get(addr, "/").unwrap().0, 200);
        }
        std::thread::sleep(ms(200));
        pool.shutdown();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(pool.join()));
        let results = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("LoopPool::join outlived the servers' drain deadline");
        for r in results {
            r.expect("a loop's future failed").expect("a server failed");
        }
        for p in &peers {
            p.assert_closed_within(Duration::from_secs(2));
        }
        drop(peers);
        assert_eq!(open_fds(), before, "fds left after the pool joined");
    }
}

/// The user's own server: hyper-util's auto builder over `PollIo`, with hyper's bounds on
/// ringloop's `Timer`, and a graceful shutdown of its own with a drain deadline (hyper has no
/// stalled-send timeout: that is what ends a peer that stopped reading). Returns when `stop`
/// is set and every connection has ended.
async fn hyper_server(listener: TcpListener, stop: Rc<Cell<bool>>) {
    let mut conns = Vec::new();
    loop {
        let accepted = match first(listener.accept(), flag(stop.clone())).await {
            Some(r) => r,
            None => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let stop = stop.clone();
        conns.push(spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
            builder.http1().timer(Timer).header_read_timeout(ms(300));
            builder
                .http2()
                .timer(Timer)
                .keep_alive_interval(ms(200))
                .keep_alive_timeout(ms(200));
            let service = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/big" {
                        Bytes::from(vec![b'x'; BIG])
                    } else {
                        Bytes::from_static(b"Hello, world!")
                    };
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(body)))
                },
            );
            let mut conn = pin!(builder.serve_connection(PollIo::new(stream), service));
            if first(conn.as_mut(), flag(stop)).await.is_none() {
                conn.as_mut().graceful_shutdown();
                let _ = timeout(ms(500), conn).await;
            }
        }));
    }
    drop(listener);
    for c in conns {
        c.await.unwrap();
    }
}

/// Completes once `flag` is set.
async fn flag(flag: Rc<Cell<bool>>) {
    while !flag.get() {
        sleep(ms(2)).await;
    }
}

/// `Some` of `a`'s output if it completes first, `None` if `b` does.
async fn first<A: Future, B: Future>(a: A, b: B) -> Option<A::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        b.as_mut().poll(cx).map(|_| None)
    })
    .await
}
