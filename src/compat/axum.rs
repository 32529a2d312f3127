//! axum on ringloop (feature `axum`): [`serve`] runs an [`axum::Router`] on a ringloop
//! [`TcpListener`], shaped like `axum::serve`.
//!
//! - HTTP/1.1 and HTTP/2 cleartext (prior knowledge, as gRPC clients and `curl
//!   --http2-prior-knowledge` speak it) on one port: hyper-util's auto builder tells them apart
//!   by the connection preface.
//! - Each connection is a task on the loop that accepted it; HTTP/2 streams are tasks too. The
//!   router's handlers need not be `Send` for ringloop's sake (axum itself asks for `Send`
//!   handlers).
//! - Handlers get the peer's address as [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo).
//! - [`Serve::with_graceful_shutdown`]: when the signal fires the listener closes (new connections
//!   are refused), idle keep-alive connections close, requests in flight finish, and the future
//!   returns once the last connection is gone.
//! - An error on one connection (a client that went away, a malformed request) ends that
//!   connection only. A failed `accept` for want of fds or memory (`EMFILE`: the fd table is
//!   full) waits 50 ms and accepts again, counted in
//!   [`Stats::accept_backoffs`](crate::Stats::accept_backoffs); an `accept` error that retrying
//!   cannot cure (the socket is not listening) ends the server with that error, after the open
//!   connections shut down gracefully.
//!
//! For a thread-per-core server, run one `serve` per loop of a [`LoopPool`](crate::LoopPool), each
//! on its own listener bound with [`reuse_port`](crate::net::ListenerBuilder::reuse_port) (see
//! `examples/axum_pool.rs`).
//!
//! # Examples
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use ringloop::net::TcpListener;
//!
//! ringloop::run(async {
//!     let app = Router::new().route("/", get(|| async { "Hello, world!" }));
//!     let listener = TcpListener::bind("127.0.0.1:3000").unwrap();
//!     ringloop::compat::axum::serve(listener, app)
//!         .with_graceful_shutdown(async {
//!             let _ = ringloop::signal::ctrl_c().await;
//!         })
//!         .await
//!         .unwrap();
//! });
//! ```
//!
//! # What runs where
//!
//! Everything above runs on the ring (or epoll): accept, reads and writes through
//! [`PollIo`], hyper's timers on the loop's timers. Middleware that calls `tokio::time` or
//! `tokio::spawn` (tower-http's `TimeoutLayer`, for one) needs the `tokio-compat` feature, which
//! gives every loop a tokio context to find.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::axum::Router;
use ::axum::extract::ConnectInfo;
use ::hyper::body::Incoming;
use ::hyper::{Request, Response};
use hyper_util::server::conn::auto;
use slab::Slab;
use tower_service::Service as _;

use super::PollIo;
use super::hyper::{LocalExec, Timer};
use crate::net::{AcceptAction, TcpListener, TcpStream, on_accept_error};

/// Serves `router` on `listener`: HTTP/1.1 and h2c, one task per connection. Await the returned
/// [`Serve`] (it runs until the loop closes), or first give it a shutdown signal with
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown).
///
/// # Panics
///
/// Awaiting it panics if no ringloop event loop runs on the calling thread (it spawns a task per
/// connection).
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve { listener, router }
}

/// The future of [`serve`], before it is awaited: await it to serve until the loop closes.
#[must_use = "a Serve does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// The address the listener is bound to (the port the kernel chose for `:0`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Stops when `signal` completes: the listener closes at once, idle connections close,
    /// requests in flight finish (HTTP/2 clients get a GOAWAY), and the returned future completes
    /// once every connection has ended.
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<F>
    where
        F: Future<Output = ()> + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.listener, self.router, std::future::pending()))
    }
}

/// [`Serve`] with a shutdown signal; await it to serve until the signal and the connections it
/// lets finish are done.
#[must_use = "a WithGracefulShutdown does nothing until it is awaited"]
pub struct WithGracefulShutdown<F> {
    serve: Serve,
    signal: F,
}

impl<F> fmt::Debug for WithGracefulShutdown<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<F> WithGracefulShutdown<F> {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.serve.local_addr()
    }
}

impl<F> IntoFuture for WithGracefulShutdown<F>
where
    F: Future<Output = ()> + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve.listener, self.serve.router, self.signal))
    }
}

/// How long to wait after an `accept` that failed for want of a resource (fds, memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The accept loop, then the drain.
async fn run(
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let conns = Rc::new(Connections::default());
    let mut builder = auto::Builder::new(LocalExec);
    builder.http1().timer(Timer);
    builder.http2().timer(Timer);
    let builder = Rc::new(builder);
    let mut signal = pin!(signal);
    let mut failed = None;
    loop {
        let accepted = match first(listener.accept(), signal.as_mut()).await {
            Either::Left(res) => res,
            Either::Right(()) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let service = ConnService {
                    router: router.clone(),
                    peer,
                };
                crate::spawn(serve_one(
                    Rc::clone(&builder),
                    PollIo::pooled(stream),
                    service,
                    Rc::clone(&conns),
                ));
            }
            // The rule for failed accepts: `net::accept`'s docs.
            Err(e) => match on_accept_error(&e) {
                AcceptAction::Next => {}
                AcceptAction::BackOff => {
                    let backoff = crate::time::sleep(ACCEPT_BACKOFF);
                    if let Either::Right(()) = first(backoff, signal.as_mut()).await {
                        break;
                    }
                }
                AcceptAction::Fail => {
                    failed = Some(io::Error::new(
                        e.kind(),
                        format!(
                            "compat::axum::serve stopped: accept on the listener failed with \
                             \"{e}\", which retrying cannot cure (is the socket listening?); \
                             the open connections were shut down gracefully"
                        ),
                    ));
                    break;
                }
            },
        }
    }
    drop(listener);
    conns.shut_down();
    poll_fn(|cx| conns.poll_all_closed(cx)).await;
    failed.map_or(Ok(()), Err)
}

/// Drives one connection until it ends, asking it to shut down gracefully when the server does.
async fn serve_one(
    builder: Rc<auto::Builder<LocalExec>>,
    io: PollIo<TcpStream>,
    service: ConnService,
    conns: Rc<Connections>,
) {
    let mut conn = pin!(builder.serve_connection(io, service));
    let key = conns.add();
    let mut shutting = false;
    let _res = poll_fn(|cx| {
        if !shutting && conns.register(key, cx.waker()) {
            shutting = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    conns.remove(key);
}

/// The server's open connections: the waker of each (to tell it to shut down), whether the
/// server is shutting down, and who waits for the last one to end.
#[derive(Default)]
struct Connections {
    wakers: RefCell<Slab<Option<Waker>>>,
    shutting: Cell<bool>,
    drained: RefCell<Option<Waker>>,
}

impl Connections {
    fn add(&self) -> usize {
        self.wakers.borrow_mut().insert(None)
    }

    /// Keeps the connection's waker; true once the server is shutting down.
    fn register(&self, key: usize, waker: &Waker) -> bool {
        if self.shutting.get() {
            return true;
        }
        let mut wakers = self.wakers.borrow_mut();
        let slot = &mut wakers[key];
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        false
    }

    fn remove(&self, key: usize) {
        let mut wakers = self.wakers.borrow_mut();
        wakers.remove(key);
        if wakers.is_empty()
            && let Some(w) = self.drained.borrow_mut().take()
        {
            w.wake();
        }
    }

    /// Marks the server as shutting down and wakes every connection so it sees it.
    fn shut_down(&self) {
        self.shutting.set(true);
        let wakers: Vec<Waker> = self
            .wakers
            .borrow_mut()
            .iter_mut()
            .filter_map(|(_, w)| w.take())
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    fn poll_all_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.wakers.borrow().is_empty() {
            return Poll::Ready(());
        }
        *self.drained.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The router as one connection's hyper service: each request gets the peer's address as
/// `ConnectInfo<SocketAddr>`.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
}

impl ::hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<::axum::body::Body>;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<Request<Incoming>>>::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // A Router is always ready (`poll_ready` returns `Ready(Ok)`), so `call` needs no
        // `poll_ready` first; a clone shares the routes.
        self.router.clone().call(req)
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Whichever of two futures completes first (the first one is polled first); the other is dropped.
async fn first<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        b.as_mut().poll(cx).map(Either::Right)
    })
    .await
}
