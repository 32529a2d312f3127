//! Direct descriptors: accepted connections also sit in the ring's file table, and their ring ops
//! name the slot (`IOSQE_FIXED_FILE`) instead of the fd, which saves the kernel an fd lookup and
//! a file reference count per op.
//!
//! - The table is sparse and registered on first use (`IORING_REGISTER_FILES2` with
//!   `IORING_RSRC_REGISTER_SPARSE`, Linux 5.19), as large as `Builder::direct_descriptors` says
//!   but no larger than the process's `RLIMIT_NOFILE` (the kernel's own cap). A kernel that
//!   refuses it leaves every connection a plain fd: that refusal is the probe.
//! - A connection keeps its real fd too: the uring hot path tries receives and sends inline
//!   (a syscall needs an fd), and `peer_addr`, socket options, `send_file`'s splices, `shutdown`
//!   and `into_std` use it. So an accept stays one op and the slot is filled with
//!   `IORING_REGISTER_FILES_UPDATE`, one synchronous register call per connection, at a slot this
//!   module picks. (The kernel's `IORING_FILE_INDEX_ALLOC` would put the socket in the table
//!   with no fd at all; getting one back needs `IORING_OP_FIXED_FD_INSTALL`, Linux 6.8, which
//!   the io-uring crate in use has no opcode for, and a second op per connection.)
//! - A full table is no error: the connection stays a plain fd (`Stats::direct_table_full`).
//! - Releasing a slot (the stream closed, or left the loop by `into_std`) empties it at once with
//!   another `IORING_REGISTER_FILES_UPDATE`: the table holds a reference to the socket, so until
//!   then the connection stays open, and a caller that drops a stream expects the peer to see
//!   the close even if the loop thread does not come back to the ring soon. (Only if that call
//!   fails, or the driver is busy when the stream drops, is the slot closed by an
//!   `IORING_OP_CLOSE` with the next ring trip.) An emptied slot is handed out again only once
//!   the SQ is empty, so no SQE queued before the release (a multishot receive armed in the same
//!   turn) can reach the next connection given the slot.

use super::*;
use io_uring::types::Fixed;

/// Bit set in the user_data of a slot's `IORING_OP_CLOSE` (the rest is the slot).
pub(super) const DIRECT_CLOSE_BIT: u64 = 1 << 61;

/// The kernel's largest file table (`IORING_MAX_FIXED_FILES`, Linux 5.19+).
const MAX_SLOTS: u32 = 1 << 20;

/// The ring's file table, as far as this loop filled it.
#[derive(Debug, Default)]
pub(super) struct DirectTable {
    /// Slots asked for (`Builder::direct_descriptors`); 0: direct descriptors are off.
    wanted: u32,
    /// Slots the registered table has: `None` until the first connection asks, 0 if the kernel
    /// refused the table.
    size: Option<u32>,
    /// Slots below `next` were handed out at least once.
    next: u32,
    /// Slots whose close completed, free to hand out again.
    free: Vec<u32>,
    /// Slots emptied while SQEs naming them may still wait in the SQ (see the module docs).
    released: Vec<u32>,
}

/// What `register_direct` did with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direct {
    /// The connection is in the table at this slot.
    Slot(u32),
    /// Every slot is taken: the connection stays a plain fd.
    Full,
    /// No table (off, refused by the kernel, or the loop is closing): a plain fd.
    Off,
}

impl DirectTable {
    pub(super) fn new(wanted: u32) -> Self {
        DirectTable {
            wanted,
            ..DirectTable::default()
        }
    }
}

/// The process's soft `RLIMIT_NOFILE`: the kernel refuses a larger file table.
fn nofile_limit() -> u32 {
    // SAFETY: an all-zero rlimit is valid; getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    u32::try_from(lim.rlim_cur).unwrap_or(u32::MAX)
}

impl UringDriver {
    /// Puts the open socket `fd` in the ring's file table (see the module docs).
    pub(in crate::driver) fn register_direct(&mut self, fd: RawFd) -> Direct {
        if self.closing {
            return Direct::Off;
        }
        let size = match self.direct.size {
            Some(size) => size,
            None => {
                let want = self.direct.wanted.min(nofile_limit()).min(MAX_SLOTS);
                let size = if want > 0 && self.ring.submitter().register_files_sparse(want).is_ok()
                {
                    want
                } else {
                    0
                };
                self.direct.size = Some(size);
                size
            }
        };
        if size == 0 {
            return Direct::Off;
        }
        if !self.direct.released.is_empty() && self.sq_empty() {
            self.direct.free.append(&mut self.direct.released);
        }
        let slot = match self.direct.free.pop() {
            Some(slot) => slot,
            None if self.direct.next < size => {
                self.direct.next += 1;
                self.direct.next - 1
            }
            None if !self.direct.released.is_empty() => {
                // Every other slot is taken: hand the queued SQEs to the kernel, so the emptied
                // ones may be reused.
                if self.submit_queued().is_err() || !self.sq_empty() {
                    return Direct::Full;
                }
                self.direct.free.append(&mut self.direct.released);
                self.direct.free.pop().unwrap_or_default()
            }
            None => return Direct::Full,
        };
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Direct::Slot(slot),
            Err(_) => {
                self.direct.free.push(slot);
                Direct::Off
            }
        }
    }

    /// Empties the slot of a connection that closed or left the loop (see the module docs).
    pub(in crate::driver) fn release_direct(&mut self, slot: u32) {
        if self
            .ring
            .submitter()
            .register_files_update(slot, &[-1])
            .is_ok()
        {
            self.direct.released.push(slot);
            return;
        }
        self.close_direct(slot);
    }

    /// Queues the close of a slot; the slot is free again once the close completes. If the SQ
    /// cannot take it (the ring failed) the slot and its socket stay until the ring goes.
    pub(in crate::driver) fn close_direct(&mut self, slot: u32) {
        let close = opcode::Close::new(Fixed(slot))
            .build()
            .user_data(DIRECT_CLOSE_BIT | u64::from(slot));
        // SAFETY: a close carries no pointers.
        let _ = unsafe { self.push(&close) };
    }

    /// A slot's close completed (whatever it says, the slot is empty now).
    pub(super) fn direct_closed(&mut self, slot: u32) {
        self.direct.free.push(slot);
    }
}
