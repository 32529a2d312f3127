//! Datagrams that a dropped receive took from the kernel (uring: the receive completed before its
//! cancel), kept on the socket's fd for the next receive: a dropped `UdpSocket::recv` or
//! `recv_from` loses nothing, as a dropped stream read loses no byte.
//!
//! Each datagram stays whole (its bytes are never merged with the next one's), with its full
//! length (so a truncation still shows) and its sender. Errors the kernel reported to a dropped
//! receive (an ICMP port unreachable, say) are kept in the same order.

use std::collections::VecDeque;
use std::io;

use socket2::SockAddr;

use super::SharedFd;
use crate::buf::IoBufMut;

/// One datagram a dropped receive took.
#[derive(Debug)]
pub(crate) struct StashedDatagram {
    /// Its bytes, as many as the dropped receive's buffer held.
    bytes: Vec<u8>,
    /// Its full length as sent (`MSG_TRUNC`): more than `bytes` if it was truncated.
    len: usize,
    /// Who sent it: `None` when a plain `recv` took it on an unconnected socket.
    from: Option<SockAddr>,
}

impl StashedDatagram {
    pub(crate) fn new(bytes: Vec<u8>, len: usize, from: Option<SockAddr>) -> Self {
        StashedDatagram { bytes, len, from }
    }

    /// Copies the datagram into `buf` (from its start up to its capacity) and sets its length.
    /// Returns the datagram's full length and the bytes now in `buf`: fewer than the length
    /// when the datagram is truncated (here or in the dropped receive's buffer).
    pub(crate) fn copy_into<B: IoBufMut>(&self, buf: &mut B) -> (usize, usize) {
        let n = self.bytes.len().min(buf.bytes_total());
        // SAFETY: the buffer is writable for `bytes_total >= n` bytes; `bytes` holds at least
        // `n` and is the datagram's own allocation, which never overlaps the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.bytes.as_ptr(), buf.stable_mut_ptr(), n);
            // SAFETY: the first `n <= bytes_total` bytes were just written.
            buf.set_init(n);
        }
        (self.len, n)
    }

    /// Who sent it, if known.
    pub(crate) fn from(&self) -> Option<&SockAddr> {
        self.from.as_ref()
    }
}

/// The datagrams (or errors) dropped receives left on one fd, oldest first.
pub(super) type Datagrams = VecDeque<io::Result<StashedDatagram>>;

impl SharedFd {
    /// Keeps what a dropped datagram receive completed with, for the next receive. The cancel's
    /// own `ECANCELED` (the receive never ran) is nothing the socket received.
    pub(crate) fn stash_datagram(&self, res: io::Result<StashedDatagram>) {
        if matches!(&res, Err(e) if e.raw_os_error() == Some(libc::ECANCELED)) {
            return;
        }
        self.rare().datagrams.push_back(res);
        self.inner.has_stash.set(true);
    }

    /// The oldest datagram (or error) a dropped receive left, if any.
    pub(crate) fn take_datagram(&self) -> Option<io::Result<StashedDatagram>> {
        if !self.inner.has_stash.get() {
            return None;
        }
        let mut rare = self.rare();
        let first = rare.datagrams.pop_front();
        let more = !rare.datagrams.is_empty() || !rare.stash.is_empty() || rare.error.is_some();
        self.inner.has_stash.set(more);
        first
    }
}
