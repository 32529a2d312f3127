//! [`ServeConfig`]: the bounds of a server on what its peers may make it wait for.

use std::time::Duration;

/// The bounds of a [`serve`](super::serve)d server: how long it waits for each thing a peer
/// owes it, how many connections it holds, and how long graceful shutdown may take. Every wait
/// on a peer has a bound by default; `None` (where a setter takes an `Option`) waits for ever.
///
/// | setting | default | what a peer that overruns it gets |
/// |---|---|---|
/// | [`drain_timeout`](Self::drain_timeout) | 30 s | closed when graceful shutdown has taken that long |
/// | [`protocol_timeout`](Self::protocol_timeout) | 10 s | closed if its first bytes do not tell HTTP/1.1 from h2c by then |
/// | [`header_read_timeout`](Self::header_read_timeout) | 30 s | closed if an HTTP/1.1 request head (or the next one on a keep-alive connection) is not complete by then |
/// | [`http2_keep_alive_interval`](Self::http2_keep_alive_interval) | 20 s | pinged when an h2c connection was silent that long… |
/// | [`http2_keep_alive_timeout`](Self::http2_keep_alive_timeout) | 20 s | …and closed if the ping is not answered within this |
/// | [`http2_idle_timeout`](Self::http2_idle_timeout) | 30 s | an h2c connection with no open stream for that long is shut down (GOAWAY), and closed if still idle as long again |
/// | [`write_timeout`](Self::write_timeout) | 60 s | closed if it reads nothing of what it is sent for that long (over HTTP/2, also if it keeps its flow-control window shut) |
/// | [`max_connections`](Self::max_connections) | none | over the cap, new connections wait in the listen backlog |
///
/// There is no connection cap by default: the process's fd limit is one (an `accept` that fails
/// with `EMFILE` waits for connections to close), and a cap of ringloop's would throttle
/// servers whose limit is raised. Set one for a public server that shares its fds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ringloop::compat::axum::ServeConfig;
///
/// let config = ServeConfig::new()
///     .drain_timeout(Duration::from_secs(5))
///     .http2_keep_alive_interval(Duration::from_secs(30))
///     .max_connections(50_000);
/// assert_eq!(config.get_drain_timeout(), Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub(super) drain_timeout: Option<Duration>,
    pub(super) protocol_timeout: Option<Duration>,
    pub(super) header_read_timeout: Option<Duration>,
    pub(super) http2_keep_alive_interval: Option<Duration>,
    pub(super) http2_keep_alive_timeout: Duration,
    pub(super) http2_idle_timeout: Option<Duration>,
    pub(super) write_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            drain_timeout: Some(Duration::from_secs(30)),
            protocol_timeout: Some(Duration::from_secs(10)),
            header_read_timeout: Some(Duration::from_secs(30)),
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_idle_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(60)),
            max_connections: None,
        }
    }
}

impl ServeConfig {
    /// The defaults (see the table above).
    pub fn new() -> ServeConfig {
        ServeConfig::default()
    }

    /// How long graceful shutdown waits for the connections to finish after the signal; then
    /// the connections still open are closed (requests in flight fail) and the server returns.
    /// An HTTP/2 peer that never acknowledges the shutdown ping is closed then too.
    pub fn drain_timeout(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.drain_timeout = limit.into();
        self
    }

    /// How long a new connection may take to send the bytes that tell its protocol (HTTP/1.1 or
    /// the h2c preface, read by hyper-util's version detection). At shutdown, a connection whose
    /// protocol is unknown and that has nothing more to read is closed at once.
    pub fn protocol_timeout(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.protocol_timeout = limit.into();
        self
    }

    /// How long an HTTP/1.1 request head may take to arrive whole (hyper's
    /// `header_read_timeout`): it counts from the connection's first request, and on a
    /// keep-alive connection from the end of the previous response, so it also closes idle
    /// keep-alive connections.
    pub fn header_read_timeout(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.header_read_timeout = limit.into();
        self
    }

    /// How long an h2c connection may stay silent before the server pings it (hyper's
    /// `keep_alive_interval`); a peer that vanished without closing is found this way.
    pub fn http2_keep_alive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.http2_keep_alive_interval = interval.into();
        self
    }

    /// How long an h2c peer has to answer a keep-alive ping before its connection is closed.
    pub fn http2_keep_alive_timeout(mut self, limit: Duration) -> Self {
        self.http2_keep_alive_timeout = limit;
        self
    }

    /// How long an h2c connection may stay with no open stream (no request in flight, no
    /// response being sent) before it is shut down gracefully: a GOAWAY, then the connection
    /// closes once the peer acknowledges it; a peer still idle as long again after the GOAWAY
    /// is closed. Keep-alive pings only find peers that vanished, and an idle peer that answers
    /// them would otherwise hold its connection (and a slot under
    /// [`max_connections`](Self::max_connections)) for ever. The default, 30 s, is what
    /// [`header_read_timeout`](Self::header_read_timeout) gives an idle HTTP/1.1 keep-alive
    /// connection.
    pub fn http2_idle_timeout(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.http2_idle_timeout = limit.into();
        self
    }

    /// How long a send may make no progress before the connection is closed (with a reset).
    /// Over HTTP/1.1: a write waits for the peer to read (it stopped reading and its window and
    /// the socket's buffer are full). Over HTTP/2, also: a response the handler has returned
    /// waits for the peer to open its flow-control window (hyper has data to send and does not
    /// get to write it), even while the peer answers pings. A handler that is slow to answer,
    /// or a body slow to produce its data, is not a stalled send.
    pub fn write_timeout(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = limit.into();
        self
    }

    /// At most this many connections open at once; more wait in the listen backlog (the kernel
    /// drops or refuses what overflows it). A cap of 0 is taken as 1.
    pub fn max_connections(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_connections = max.into().map(|m| m.max(1));
        self
    }

    /// The drain deadline set.
    pub fn get_drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }

    /// The protocol timeout set.
    pub fn get_protocol_timeout(&self) -> Option<Duration> {
        self.protocol_timeout
    }

    /// The HTTP/1.1 request head timeout set.
    pub fn get_header_read_timeout(&self) -> Option<Duration> {
        self.header_read_timeout
    }

    /// The h2c keep-alive interval set.
    pub fn get_http2_keep_alive_interval(&self) -> Option<Duration> {
        self.http2_keep_alive_interval
    }

    /// The h2c keep-alive ping timeout set.
    pub fn get_http2_keep_alive_timeout(&self) -> Duration {
        self.http2_keep_alive_timeout
    }

    /// The h2c idle timeout set.
    pub fn get_http2_idle_timeout(&self) -> Option<Duration> {
        self.http2_idle_timeout
    }

    /// The stalled-send timeout set.
    pub fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The connection cap set.
    pub fn get_max_connections(&self) -> Option<usize> {
        self.max_connections
    }
}
