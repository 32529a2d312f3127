//! gRPC on ringloop: the `echo.Echo` service (see `proto/echo.proto`) served by
//! [`ringloop::compat::axum::serve`] and called by a tonic client over a ringloop connection.
//!
//! tonic's generated server is a tower service; only tonic's `transport` module needs tokio, and
//! it is not used here. HTTP/2 is hyper's, on ringloop's [`PollIo`]; every stream is a task on the
//! loop; timers (the handlers' sleeps, deadlines) are the loop's.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use ringloop::compat::PollIo;
use ringloop::compat::hyper::{LocalExec, Timer};
use tonic::{Request, Response, Status, Streaming};

/// The messages and the generated server and client.
pub mod pb {
    tonic::include_proto!("echo");
}

use pb::{EchoReply, EchoRequest, SleepRequest, StatsReply, StatsRequest, StreamRequest};

/// A sleep that is `Send`, as tonic's handler futures must be.
pub type Sleeper = fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// A sleep on the running ringloop loop's timers (through hyper's `Send` sleep).
pub fn sleep(d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(hyper::rt::Timer::sleep(&Timer, d))
}

/// The service: stateless but for its counters, and the sleep of the runtime that serves it.
#[derive(Debug, Clone)]
pub struct EchoService {
    counters: Arc<Counters>,
    sleeper: Sleeper,
}

impl Default for EchoService {
    /// The service on ringloop's timers.
    fn default() -> Self {
        EchoService::with_sleeper(sleep)
    }
}

impl EchoService {
    /// The service with another runtime's sleep (`tokio::time::sleep` for the tokio reference).
    pub fn with_sleeper(sleeper: Sleeper) -> Self {
        EchoService {
            counters: Arc::default(),
            sleeper,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    cancelled: AtomicU64,
}

/// Counts a `Sleep` handler dropped before it finished (a deadline or a cancel).
struct CancelGuard {
    counters: Arc<Counters>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// The most replies `ServerStream` sends for one request.
pub const MAX_STREAM: u32 = 100_000;

#[tonic::async_trait]
impl pb::echo_server::Echo for EchoService {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let message = req.into_inner().message;
        Ok(Response::new(EchoReply { message }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: Request<StreamRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let StreamRequest { message, count } = req.into_inner();
        if count > MAX_STREAM {
            return Err(Status::invalid_argument(format!(
                "count {count} is over the limit of {MAX_STREAM}"
            )));
        }
        let replies = futures::stream::iter(0..count).map(move |i| {
            Ok(EchoReply {
                message: format!("{message} {i}"),
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn client_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut stream = req.into_inner();
        let mut parts = Vec::new();
        while let Some(msg) = stream.next().await {
            parts.push(msg?.message);
        }
        Ok(Response::new(EchoReply {
            message: parts.join(","),
        }))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let replies = req
            .into_inner()
            .map(|msg| msg.map(|m| EchoReply { message: m.message }));
        Ok(Response::new(Box::pin(replies)))
    }

    async fn sleep(&self, req: Request<SleepRequest>) -> Result<Response<EchoReply>, Status> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let millis = req.into_inner().millis;
        let mut guard = CancelGuard {
            counters: self.counters.clone(),
            finished: false,
        };
        (self.sleeper)(Duration::from_millis(millis)).await;
        guard.finished = true;
        Ok(Response::new(EchoReply {
            message: format!("slept {millis} ms"),
        }))
    }

    async fn stats(&self, _req: Request<StatsRequest>) -> Result<Response<StatsReply>, Status> {
        Ok(Response::new(StatsReply {
            calls: self.counters.calls.load(Ordering::Relaxed),
            cancelled: self.counters.cancelled.load(Ordering::Relaxed),
        }))
    }
}

/// Enforces the client's deadline (the `grpc-timeout` header) on the server: when it passes, the
/// handler's future is dropped and the client gets `DEADLINE_EXCEEDED`. (A client that gives up
/// first resets the stream, and hyper drops the handler then.)
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    sleeper: Sleeper,
}

impl<S> Deadline<S> {
    /// Wraps a service; `sleeper` is the serving runtime's sleep.
    pub fn new(inner: S, sleeper: Sleeper) -> Self {
        Deadline { inner, sleeper }
    }
}

/// A `grpc-timeout` value: digits then one unit (H, M, S, m, u, n), as the gRPC HTTP/2 spec says.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let fut = self.inner.call(req);
        let sleep = self.sleeper;
        Box::pin(async move {
            let Some(after) = deadline else {
                return fut.await;
            };
            match futures::future::select(Box::pin(fut), sleep(after)).await {
                futures::future::Either::Left((res, _)) => res,
                futures::future::Either::Right(((), _)) => {
                    Ok(Status::deadline_exceeded("the client's deadline passed").into_http())
                }
            }
        })
    }
}

/// The service as an axum `Router`, ready for [`ringloop::compat::axum::serve`] (or, with a tokio
/// sleeper, `axum::serve` on tokio).
pub fn router(service: EchoService) -> axum::Router {
    let sleeper = service.sleeper;
    let grpc = Deadline::new(pb::echo_server::EchoServer::new(service), sleeper);
    axum::Router::new().route_service("/echo.Echo/{*method}", grpc)
}

/// A tonic client over one ringloop TCP connection (HTTP/2 with prior knowledge, as gRPC speaks).
pub type Client = pb::echo_client::EchoClient<Channel>;

/// The client's transport: hyper's HTTP/2 client connection on a ringloop stream, as a tower
/// service. Cloning it opens no new connection: requests are streams on the same one.
#[derive(Debug, Clone)]
pub struct Channel {
    send: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
}

impl tower::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.send.send_request(req))
    }
}

/// Connects to `addr` on the running loop and returns a client; the connection is a task on the
/// loop that ends when the last clone of the client is dropped.
pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Client> {
    let stream = ringloop::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(LocalExec)
        .timer(Timer)
        .handshake(PollIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    ringloop::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("grpc client connection: {e}");
        }
    });
    let origin: http::Uri = format!("http://{addr}")
        .parse()
        .map_err(std::io::Error::other)?;
    Ok(pb::echo_client::EchoClient::with_origin(
        Channel { send },
        origin,
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_grpc_timeout;
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "10", "10x", "-1m", "123456789m"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
