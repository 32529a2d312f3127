//! Wakes from other threads: the eventfd poll (or read) the ring keeps armed, and `MSG_RING` messages
//! this loop sends to wake another sleeping uring loop.

use super::*;

impl UringDriver {
    /// Keeps a wait on the wake eventfd in flight so other threads can wake a blocked loop.
    ///
    /// With the `wake-poll` fast path it is one multishot `POLL_ADD`, armed once: every eventfd
    /// write wakes the poll, which posts a CQE and stays armed. The counter is never read on this
    /// backend (it would take 2^64 wakes to fill), so a wake costs the kernel no read and the loop
    /// no re-arm. It is armed again only if the kernel ends it (a CQE without `F_MORE`, e.g. on
    /// CQ overflow); the counter is then non-zero, so the new poll fires at once: one spurious
    /// turn. Otherwise it is an eventfd read, re-armed at the park after each wake.
    pub(super) fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_armed || self.closing {
            return Ok(());
        }
        let entry = if self.wake_poll {
            opcode::PollAdd::new(Fd(self.wake_fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(WAKE_TAG)
        } else {
            let buf: *mut u64 = &mut *self.wake_buf;
            opcode::Read::new(Fd(self.wake_fd), buf.cast(), 8)
                .build()
                .user_data(WAKE_TAG)
        };
        // SAFETY: a poll names no memory. A read's `wake_buf` is boxed in the driver, which
        // waits for every CQE (this one included) before it is dropped. The eventfd is owned by
        // `Shared`, which outlives the driver.
        unsafe { self.push(&entry)? };
        self.wake_armed = true;
        Ok(())
    }

    /// Wakes the sleeping uring loop `target` with a `MSG_RING` from this ring, submitted now:
    /// the wake must reach its target whatever this loop does next (its main future may have
    /// returned, or the task may block its thread), so it cannot wait for this loop's next ring
    /// trip. One syscall, as an eventfd write would be, and the target is spared re-arming its
    /// eventfd read. False if `target` takes no messages or the message could not be submitted
    /// at once: the caller writes its eventfd instead (a message that goes later as well only
    /// makes a spurious wake).
    pub(in crate::driver) fn send_wake_message(&mut self, target: &Arc<Shared>) -> bool {
        let Some(fd) = target.msg_fd() else {
            return false;
        };
        if self.closing {
            return false;
        }
        let raw = fd.as_raw_fd();
        let key = self.msgs.insert((target.clone(), fd));
        let entry = opcode::MsgRingData::new(Fd(raw), 0, MSG_WAKE_TAG, None)
            .build()
            .user_data(MSG_SENT_BIT | key as u64);
        // SAFETY: MSG_RING carries no pointers; the target's ring fd stays open while `msgs`
        // holds its `Arc<OwnedFd>`, until this SQE's CQE.
        if unsafe { self.push(&entry) }.is_err() {
            self.msgs.remove(key);
            return false;
        }
        Counters::bump(&self.counters.wake_messages);
        // SAFETY: no argument; every queued SQE's memory is kept until its CQE (see `push`).
        let submitted = unsafe { self.sys_enter(0, 0, std::ptr::null(), 0) };
        // The kernel takes SQEs in order: with none left queued, the message went.
        submitted.is_ok() && self.sq_empty()
    }
}
