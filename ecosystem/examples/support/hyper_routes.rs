//! The routes of the hyper examples, shared by `hyper_server` (ringloop) and
//! `tokio_hyper_server` (the same service on tokio, the reference in BENCHMARKS.md).
//!
//! `/` answers `Hello, world!`; `POST /echo` streams the request body back as it arrives;
//! `/bytes/N` sends N bytes of a known pattern (byte i is `i % 251`); anything else is a 404.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

type ResBody = BoxBody<Bytes, hyper::Error>;

/// Largest `/bytes/N` served.
const MAX_BYTES: u64 = 1 << 30;
/// `/bytes/N` goes out in frames of this size.
const FRAME: usize = 64 * 1024;

fn full(body: impl Into<Bytes>) -> ResBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `len` bytes of the pattern, produced frame by frame (nothing held in memory beyond
/// one frame).
struct Pattern {
    sent: u64,
    len: u64,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.sent == self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.sent).min(FRAME as u64);
        let start = self.sent;
        let chunk: Vec<u8> = (start..start + n).map(|i| (i % 251) as u8).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.len - self.sent)
    }
}

pub async fn route(req: Request<Incoming>) -> Result<Response<ResBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let res = match (req.method(), path.as_str()) {
        (&Method::GET, "/") => Response::new(full("Hello, world!\n")),
        // The request body streams straight back, frame by frame.
        (&Method::POST, "/echo") => Response::new(req.into_body().boxed()),
        (&Method::GET, p) if p.starts_with("/bytes/") => {
            match p["/bytes/".len()..].parse::<u64>() {
                Ok(len) if len <= MAX_BYTES => Response::new(Pattern { sent: 0, len }.boxed()),
                _ => Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body(full(format!("/bytes/N takes N from 0 to {MAX_BYTES}\n")))
                    .expect("a valid response"),
            }
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(full("not found: try /, POST /echo or /bytes/N\n"))
            .expect("a valid response"),
    };
    Ok(res)
}
