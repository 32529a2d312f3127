//! What an HTTP/2 connection owes its peer, for the two bounds no socket call sees:
//!
//! - a response hyper cannot send because the peer keeps its flow-control window shut (it
//!   waits for window, not for the socket, so the stalled-send timer on writes never runs);
//! - a connection left idle with no open stream (HTTP/1.1's idle keep-alive is bounded by the
//!   request-head timeout, h2's has no bound in hyper).
//!
//! Each HTTP/2 request holds a [`Stream`] from the moment hyper hands it to the router until
//! its response body is dropped (sent, reset or abandoned). The response body ([`WatchedBody`])
//! tells whose turn it is: while hyper has a chunk of it to send (or has not yet asked for the
//! first) the response is *owed*, and the time it became owed is kept; when hyper asks for the
//! next chunk the response made progress. A body that is slow to produce its data is not owed:
//! that is the handler's business, bounded by the drain deadline.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker, ready};

use ::axum::body::{Body, Bytes};
use ::hyper::body::{Frame, SizeHint};
use ::hyper::{Response, Version};
use slab::Slab;

use crate::time::Instant;

/// The most of a body's data handed to hyper at once on HTTP/2: each chunk hyper asks for is
/// progress, so a large body sent slowly but steadily never looks stalled. h2's default frame
/// size; `Bytes::split_to` copies nothing.
const CHUNK: usize = 16 * 1024;

/// One connection's HTTP/2 streams: how many are open, since when each owed response has been
/// waiting for hyper to send it, and the connection task's waker (woken when the first response
/// becomes owed and when the last stream closes, so it arms its timers).
#[derive(Debug)]
pub(super) struct Streams {
    open: Cell<usize>,
    idle_since: Cell<Instant>,
    owed: RefCell<Slab<Instant>>,
    waker: RefCell<Option<Waker>>,
}

impl Streams {
    pub(super) fn new() -> Rc<Streams> {
        Rc::new(Streams {
            open: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            owed: RefCell::new(Slab::new()),
            waker: RefCell::new(None),
        })
    }

    /// Keeps the connection task's waker.
    pub(super) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(&self) {
        let waker = self.waker.borrow().clone();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Since when no stream has been open, or `None` while one is.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        (self.open.get() == 0).then(|| self.idle_since.get())
    }

    /// Counts the idle time from now (after the connection was asked to shut down).
    pub(super) fn restart_idle(&self) {
        self.idle_since.set(Instant::now());
    }

    /// Since when the longest-owed response has waited for hyper to send it, or `None` if none
    /// is owed.
    pub(super) fn owed_since(&self) -> Option<Instant> {
        self.owed.borrow().iter().map(|(_, &t)| t).min()
    }
}

/// One open HTTP/2 stream of a connection, from the request to the end of its response body.
#[derive(Debug)]
pub(super) struct Stream {
    streams: Rc<Streams>,
    /// The key in `owed` while the response is owed.
    owed: Option<usize>,
}

impl Stream {
    fn open(streams: &Rc<Streams>) -> Stream {
        streams.open.set(streams.open.get() + 1);
        Stream {
            streams: Rc::clone(streams),
            owed: None,
        }
    }

    /// hyper has data of this response to send (or the response to start).
    fn owe(&mut self) {
        if self.owed.is_none() {
            let (key, first) = {
                let mut owed = self.streams.owed.borrow_mut();
                let first = owed.is_empty();
                (owed.insert(Instant::now()), first)
            };
            self.owed = Some(key);
            if first {
                self.streams.wake();
            }
        }
    }

    /// hyper asked for more, or is done with the response.
    fn paid(&mut self) {
        if let Some(key) = self.owed.take() {
            self.streams.owed.borrow_mut().try_remove(key);
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.paid();
        let open = self.streams.open.get() - 1;
        self.streams.open.set(open);
        if open == 0 {
            self.streams.restart_idle();
            self.streams.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's future for one request: an HTTP/2 request's [`Stream`] passes to its
    /// response body.
    pub(super) struct Watched<F> {
        #[pin]
        inner: F,
        stream: Option<Stream>,
    }
}

impl<F> Watched<F> {
    /// Watches `inner`, the router's answer to a request of `version`.
    pub(super) fn new(inner: F, version: Version, streams: &Rc<Streams>) -> Watched<F> {
        Watched {
            inner,
            stream: (version == Version::HTTP_2).then(|| Stream::open(streams)),
        }
    }
}

impl<F, E> Future for Watched<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<WatchedBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let mut stream = this.stream.take();
        Poll::Ready(res.map(|response| {
            if let Some(s) = &mut stream {
                // The handler answered: from now on hyper owes the peer this response.
                s.owe();
            }
            response.map(|inner| WatchedBody {
                inner,
                rest: None,
                stream,
            })
        }))
    }
}

/// A response body that tells its [`Stream`] whose turn it is; HTTP/1.1's is passed through.
#[derive(Debug)]
pub(super) struct WatchedBody {
    inner: Body,
    /// What is left of a data frame larger than [`CHUNK`].
    rest: Option<Bytes>,
    stream: Option<Stream>,
}

impl ::hyper::body::Body for WatchedBody {
    type Data = Bytes;
    type Error = ::axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ::axum::Error>>> {
        let this = self.get_mut();
        let Some(stream) = &mut this.stream else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        // hyper asks for more: what it had is sent (or buffered within the window).
        stream.paid();
        if let Some(rest) = &mut this.rest {
            let chunk = rest.split_to(rest.len().min(CHUNK));
            if rest.is_empty() {
                this.rest = None;
            }
            stream.owe();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        if data.len() > CHUNK {
                            this.rest = Some(data.split_off(CHUNK));
                        }
                        Frame::data(data)
                    }
                    Err(trailers) => trailers,
                };
                stream.owe();
                Poll::Ready(Some(Ok(frame)))
            }
            end => Poll::Ready(end),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(rest) = &self.rest {
            let more = rest.len() as u64;
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(more));
            }
            hint.set_lower(hint.lower().saturating_add(more));
        }
        hint
    }
}
