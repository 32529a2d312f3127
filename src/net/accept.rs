//! What a server's accept loop does with a failed `accept`: the rule `compat::axum::serve`
//! follows, in one place.
//!
//! - Errors of one pending connection (the peer reset it before it was accepted; a network
//!   error Linux passes on from the new socket, see accept(2)): that connection is gone, accept
//!   the next one at once.
//! - Want of a resource (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): wait a little (50 ms in
//!   `serve`) for connections to close, then accept again; connections wait in the listen
//!   backlog meanwhile. Each pause is counted in [`Stats::accept_backoffs`](crate::Stats::accept_backoffs), so an
//!   operator sees a server that runs at its fd limit.
//! - Anything else (`EINVAL`: the socket is not listening; `EBADF`, `ENOTSOCK`; the loop is
//!   closing) will not get better by retrying: the loop stops and reports it.

use std::io;

/// What to do after a failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptAction {
    /// One pending connection failed: accept the next at once.
    Next,
    /// Out of fds or memory: wait a little, then accept again.
    BackOff,
    /// The listener cannot accept any more: stop and report the error.
    Fail,
}

/// Sorts a failed `accept`'s error (see the module docs). A `BackOff` is counted in the running
/// loop's [`Stats::accept_backoffs`](crate::Stats::accept_backoffs).
pub(crate) fn on_accept_error(err: &io::Error) -> AcceptAction {
    let action = classify(err);
    if action == AcceptAction::BackOff
        && let Some(driver) = crate::driver::current()
    {
        crate::stats::Counters::bump(&driver.counters().accept_backoffs);
    }
    action
}

fn classify(err: &io::Error) -> AcceptAction {
    if err.kind() == io::ErrorKind::ConnectionAborted {
        return AcceptAction::Next;
    }
    match err.raw_os_error() {
        // accept(2): "Linux accept() passes already-pending network errors on the new socket as
        // an error code from accept()... treat them like EAGAIN by retrying"; EPERM: a firewall
        // rule refused this connection; ECONNRESET, EINTR, EAGAIN: nothing for this one.
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::ENETDOWN
            | libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::EPERM
            | libc::EINTR
            | libc::EAGAIN,
        ) => AcceptAction::Next,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptAction::BackOff,
        _ => AcceptAction::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_sorted() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&os(libc::ECONNABORTED)), AcceptAction::Next);
        assert_eq!(classify(&os(libc::EPROTO)), AcceptAction::Next);
        assert_eq!(classify(&os(libc::EMFILE)), AcceptAction::BackOff);
        assert_eq!(classify(&os(libc::ENFILE)), AcceptAction::BackOff);
        assert_eq!(classify(&os(libc::ENOMEM)), AcceptAction::BackOff);
        assert_eq!(classify(&os(libc::EINVAL)), AcceptAction::Fail);
        assert_eq!(classify(&os(libc::EBADF)), AcceptAction::Fail);
        assert_eq!(
            classify(&io::Error::other("loop closed")),
            AcceptAction::Fail
        );
    }
}
