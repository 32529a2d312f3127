//! The server's accounting: every connection task and every HTTP/2 stream task holds an
//! [`Entry`] from the moment it is spawned, and its `Drop` (not the line after an `.await`)
//! gives it back, so a handler that panics or a task dropped unpolled when the loop closes
//! cannot leave graceful shutdown waiting for it.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
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

use super::server_io::{Detect, ServerIo, reset_on_close};
use super::watch::{Streams, Watched, WatchedBody};
use crate::net::TcpStream;
use crate::time::{Instant, Sleep};

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// The shutdown signal fired: connections finish what they have and close.
    Draining,
    /// The drain deadline passed: every task ends at its next poll.
    Aborted,
}

/// The server's live tasks (connections and HTTP/2 streams): the waker of each, so it can be
/// told the phase changed, and who waits for the last one to end or for a connection slot.
pub(super) struct Connections {
    entries: RefCell<Slab<Option<Waker>>>,
    connections: Cell<usize>,
    phase: Cell<Phase>,
    drained: RefCell<Option<Waker>>,
    slot_free: RefCell<Option<Waker>>,
}

impl Connections {
    pub(super) fn new() -> Rc<Connections> {
        Rc::new(Connections {
            entries: RefCell::new(Slab::new()),
            connections: Cell::new(0),
            phase: Cell::new(Phase::Serving),
            drained: RefCell::new(None),
            slot_free: RefCell::new(None),
        })
    }

    /// An entry for a task about to be spawned; `connection` counts it against the cap.
    pub(super) fn enter(self: &Rc<Self>, connection: bool) -> Entry {
        let key = self.entries.borrow_mut().insert(None);
        if connection {
            self.connections.set(self.connections.get() + 1);
        }
        Entry {
            conns: Rc::clone(self),
            key,
            connection,
        }
    }

    /// Ready while fewer than `max` connections are open.
    pub(super) fn poll_below(&self, max: usize, cx: &mut Context<'_>) -> Poll<()> {
        if self.connections.get() < max {
            return Poll::Ready(());
        }
        *self.slot_free.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Marks the server as draining and wakes every task so it sees it.
    pub(super) fn shut_down(&self) {
        self.set_phase(Phase::Draining);
    }

    /// The drain deadline passed: wakes every task so it ends.
    pub(super) fn abort(&self) {
        self.set_phase(Phase::Aborted);
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
        let wakers: Vec<Waker> = self
            .entries
            .borrow()
            .iter()
            .filter_map(|(_, w)| w.clone())
            .collect();
        // The borrow is over: a wake that drops a finished task's last reference drops its entry.
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(super) fn poll_all_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.entries.borrow().is_empty() {
            return Poll::Ready(());
        }
        *self.drained.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A task's place in [`Connections`], given back when it drops: when the task ends, panics, or
/// is dropped unpolled with the loop.
pub(super) struct Entry {
    conns: Rc<Connections>,
    key: usize,
    connection: bool,
}

impl Entry {
    /// Keeps the task's waker for the next phase change; returns the phase.
    fn register(&self, waker: &Waker) -> Phase {
        let mut entries = self.conns.entries.borrow_mut();
        let slot = &mut entries[self.key];
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        self.conns.phase.get()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let conns = &self.conns;
        let (waker, empty) = {
            let mut entries = conns.entries.borrow_mut();
            let waker = entries.try_remove(self.key).flatten();
            (waker, entries.is_empty())
        };
        drop(waker);
        let mut wake = Vec::new();
        if self.connection {
            conns.connections.set(conns.connections.get() - 1);
            wake.extend(conns.slot_free.borrow_mut().take());
        }
        if empty {
            wake.extend(conns.drained.borrow_mut().take());
        }
        // Contained: these are the wakers of whatever polls the `serve` future, which may be a
        // foreign executor's; one whose `wake` panics must not leave the other unwoken (a
        // stale cap waiter before the drain's waiter would hang graceful shutdown).
        wake.into_iter().for_each(crate::blocking::wake_contained);
    }
}

/// hyper's executor for a server's HTTP/2 streams: a task on the loop, like
/// [`LocalExec`](crate::compat::hyper::LocalExec), that holds an [`Entry`], so graceful shutdown
/// waits for the streams in flight and the drain deadline ends them.
#[derive(Clone)]
pub(super) struct ServerExec {
    pub(super) conns: Rc<Connections>,
}

impl<F> ::hyper::rt::Executor<F> for ServerExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        let entry = self.conns.enter(false);
        crate::spawn(async move {
            let mut fut = pin!(fut);
            poll_fn(|cx| {
                if entry.register(cx.waker()) == Phase::Aborted {
                    return Poll::Ready(());
                }
                fut.as_mut().poll(cx).map(drop)
            })
            .await;
        });
    }
}

/// One connection's settings, from the server's config.
pub(super) struct ConnSettings {
    pub(super) builder: auto::Builder<ServerExec>,
    pub(super) protocol_timeout: Option<Duration>,
    pub(super) write_timeout: Option<Duration>,
    pub(super) http2_idle_timeout: Option<Duration>,
}

/// Drives one connection until it ends, asking it to shut down gracefully when the server does
/// or when an h2c connection has had no open stream for `http2_idle_timeout`, and dropping it
/// when a bound passes: no protocol within `protocol_timeout`, an HTTP/2 response that made no
/// progress for `write_timeout`, still idle `http2_idle_timeout` after the idle GOAWAY, or the
/// drain deadline.
pub(super) async fn serve_one(
    settings: Rc<ConnSettings>,
    stream: TcpStream,
    service: ConnService,
    entry: Entry,
) {
    let detect = Rc::new(Detect::default());
    let streams = Rc::clone(&service.streams);
    let fd = stream.as_raw_fd();
    let io = ServerIo::new(stream, Rc::clone(&detect), settings.write_timeout);
    let mut conn = pin!(settings.builder.serve_connection(io, service));
    let mut unknown_for = settings.protocol_timeout.map(crate::time::sleep);
    let mut graceful = false;
    let mut idle_timer: Option<Sleep> = None;
    let mut stall_timer: Option<Sleep> = None;
    let reset = || {
        // SAFETY: `conn` owns the stream, and with it the fd, until `serve_one` returns.
        let stream = unsafe { BorrowedFd::borrow_raw(fd) };
        // What the peer has not read is dropped with a reset.
        let _ = reset_on_close(&stream);
    };
    poll_fn(|cx| {
        loop {
            let phase = entry.register(cx.waker());
            if phase == Phase::Aborted {
                reset(); // the drain deadline passed
                return Poll::Ready(());
            }
            let draining = phase == Phase::Draining;
            if draining && !graceful && detect.known() {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
            if conn.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if detect.known() {
                unknown_for = None;
                if draining && !graceful {
                    continue; // known during this poll: shut down gracefully, poll again
                }
                if !detect.h2() {
                    return Poll::Pending;
                }
                streams.register(cx.waker());
                if let Some(limit) = settings.write_timeout
                    && fired(
                        &mut stall_timer,
                        streams.owed_since().map(|t| t + limit),
                        cx,
                    )
                {
                    // A response the peer has not let through (its flow-control window stays
                    // shut) for the stalled-send timeout.
                    reset();
                    return Poll::Ready(());
                }
                if let Some(limit) = settings.http2_idle_timeout
                    && fired(&mut idle_timer, streams.idle_since().map(|t| t + limit), cx)
                {
                    if graceful {
                        // Still idle long after the GOAWAY: the peer does not let it end.
                        reset();
                        return Poll::Ready(());
                    }
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                    streams.restart_idle();
                    continue;
                }
                return Poll::Pending;
            }
            // The protocol is still unknown and the socket is drained: a connection accepted
            // just before the signal had its chance to show a request; one that sent nothing
            // (or half an h2 preface) closes.
            if draining {
                return Poll::Ready(());
            }
            if let Some(timer) = &mut unknown_for
                && Pin::new(timer).poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
    })
    .await;
}

/// Whether `deadline` has passed, on `timer`, which is armed for it (and wakes the task then)
/// or dropped when there is no deadline. A deadline that moves later (a response made progress)
/// leaves the timer where it is: it fires early and is armed again then, so progress costs no
/// timer update.
fn fired(timer: &mut Option<Sleep>, deadline: Option<Instant>, cx: &mut Context<'_>) -> bool {
    let Some(deadline) = deadline else {
        *timer = None;
        return false;
    };
    let timer = timer.get_or_insert_with(|| crate::time::sleep_until(deadline));
    if deadline < timer.deadline() {
        timer.reset(deadline);
    }
    if Pin::new(&mut *timer).poll(cx).is_pending() {
        return false;
    }
    if Instant::now() >= deadline {
        return true;
    }
    // Early: the deadline moved on since the timer was armed.
    timer.reset(deadline);
    Pin::new(timer).poll(cx).is_ready()
}

/// The router as one connection's hyper service: each request gets the peer's address as
/// `ConnectInfo<SocketAddr>`.
#[derive(Clone)]
pub(super) struct ConnService {
    pub(super) router: Router,
    pub(super) peer: SocketAddr,
    /// The connection's HTTP/2 streams, for its bounds on stalled responses and idleness.
    pub(super) streams: Rc<Streams>,
}

impl ::hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<WatchedBody>;
    type Error = std::convert::Infallible;
    type Future = Watched<<Router as tower_service::Service<Request<Incoming>>>::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // A Router is always ready (`poll_ready` returns `Ready(Ok)`), so `call` needs no
        // `poll_ready` first; a clone shares the routes.
        let version = req.version();
        Watched::new(self.router.clone().call(req), version, &self.streams)
    }
}
