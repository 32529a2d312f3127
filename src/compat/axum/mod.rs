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
//!   are refused), idle keep-alive connections close, requests in flight finish (a connection
//!   accepted just before the signal gets its first request answered), and the future returns
//!   once the last connection is gone, or at the drain deadline, when the connections still
//!   open are closed.
//! - Waits on a peer are bounded ([`ServeConfig`], with defaults a public server can live
//!   with): a connection must show its protocol and send each request head in time, must read
//!   what it is sent (over HTTP/2, must open its flow-control window for it), an HTTP/2 peer
//!   must answer keep-alive pings, and an HTTP/2 connection with no open stream is shut down
//!   after an idle timeout; a cap on connections
//!   keeps the rest in the listen backlog. A request body that stalls is the handler's to
//!   bound (hyper has no body timeout; tower-http's `RequestBodyTimeoutLayer` or `TimeoutLayer`,
//!   with `tokio-compat`), and graceful shutdown's drain deadline bounds everything.
//! - An error on one connection (a client that went away, a malformed request) ends that
//!   connection only, and so does a handler that panics. A failed `accept` for want of fds or memory (`EMFILE`: the fd table is
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
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use ringloop::compat::axum::ServeConfig;
//! use ringloop::net::TcpListener;
//!
//! ringloop::run(async {
//!     let app = Router::new().route("/", get(|| async { "Hello, world!" }));
//!     let listener = TcpListener::bind("127.0.0.1:3000").unwrap();
//!     ringloop::compat::axum::serve(listener, app)
//!         // Optional: the defaults suit a public server.
//!         .config(ServeConfig::new().drain_timeout(Duration::from_secs(10)))
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
//! [`PollIo`](crate::compat::PollIo), hyper's timers and the bounds on the loop's timers.
//! Middleware that calls `tokio::time` or `tokio::spawn` (tower-http's `TimeoutLayer`, for one)
//! needs the `tokio-compat` feature, which gives every loop a tokio context to find.

use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use ::axum::Router;
use hyper_util::server::conn::auto;

use self::conn::{ConnService, ConnSettings, Connections, ServerExec, serve_one};
use self::watch::Streams;
use super::hyper::Timer;
use crate::net::{AcceptAction, TcpListener, on_accept_error};

mod config;
mod conn;
mod server_io;
mod watch;

pub use self::config::ServeConfig;

/// Serves `router` on `listener`: HTTP/1.1 and h2c, one task per connection, with the bounds of
/// [`ServeConfig::default`] (change them with [`Serve::config`]). Await the returned [`Serve`]
/// (it runs until the loop closes), or first give it a shutdown signal with
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown).
///
/// # Panics
///
/// Awaiting it panics if no ringloop event loop runs on the calling thread (it spawns a task per
/// connection).
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        config: ServeConfig::default(),
    }
}

/// The future of [`serve`], before it is awaited: await it to serve until the loop closes.
#[must_use = "a Serve does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// The address the listener is bound to (the port the kernel chose for `:0`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves with these bounds instead of [`ServeConfig::default`]'s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use ringloop::compat::axum::{ServeConfig, serve};
    ///
    /// ringloop::run(async {
    ///     let listener = ringloop::net::TcpListener::bind("127.0.0.1:3000").unwrap();
    ///     let config = ServeConfig::new()
    ///         .drain_timeout(Duration::from_secs(5))
    ///         .max_connections(10_000);
    ///     serve(listener, axum::Router::new()).config(config).await.unwrap();
    /// });
    /// ```
    pub fn config(mut self, config: ServeConfig) -> Serve {
        self.config = config;
        self
    }

    /// Stops when `signal` completes: the listener closes at once, idle connections close,
    /// requests in flight finish (HTTP/2 clients get a GOAWAY), and the returned future completes
    /// once every connection has ended, or once [`ServeConfig::drain_timeout`] has passed: the
    /// connections still open then are closed.
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
        Box::pin(run(self, std::future::pending()))
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

    /// Serves with these bounds instead of [`ServeConfig::default`]'s (as [`Serve::config`]).
    pub fn config(mut self, config: ServeConfig) -> Self {
        self.serve.config = config;
        self
    }
}

impl<F> IntoFuture for WithGracefulShutdown<F>
where
    F: Future<Output = ()> + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve, self.signal))
    }
}

/// How long to wait after an `accept` that failed for want of a resource (fds, memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The accept loop, then the drain.
async fn run(serve: Serve, signal: impl Future<Output = ()>) -> io::Result<()> {
    let Serve {
        listener,
        router,
        config,
    } = serve;
    let conns = Connections::new();
    let mut builder = auto::Builder::new(ServerExec {
        conns: Rc::clone(&conns),
    });
    builder
        .http1()
        .timer(Timer)
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(Timer)
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout);
    let settings = Rc::new(ConnSettings {
        builder,
        protocol_timeout: config.protocol_timeout,
        write_timeout: config.write_timeout,
        http2_idle_timeout: config.http2_idle_timeout,
    });
    let mut signal = pin!(signal);
    let mut failed = None;
    loop {
        if let Some(max) = config.max_connections {
            // At the cap, the next connections wait in the listen backlog.
            let slot = poll_fn(|cx| conns.poll_below(max, cx));
            if let Either::Right(()) = first(slot, signal.as_mut()).await {
                break;
            }
        }
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
                    streams: Streams::new(),
                };
                // Counted now, not at the task's first poll: a signal that fires before the
                // task runs still waits for it.
                let entry = conns.enter(true);
                crate::spawn(serve_one(Rc::clone(&settings), stream, service, entry));
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
    let drained = poll_fn(|cx| conns.poll_all_closed(cx));
    match config.drain_timeout {
        Some(limit) => {
            if let Either::Right(()) = first(drained, crate::time::sleep(limit)).await {
                // What is still open is closed now: every task ends at its next poll.
                conns.abort();
                poll_fn(|cx| conns.poll_all_closed(cx)).await;
            }
        }
        None => drained.await,
    }
    failed.map_or(Ok(()), Err)
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
