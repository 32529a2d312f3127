//! Counters of what the loop did, for measuring syscalls and work per request.

pub use crate::faults::FaultCounts;
use std::cell::Cell;
use std::time::Duration;

/// A snapshot of a loop's counters, from [`EventLoop::stats`](crate::EventLoop::stats).
///
/// Every count starts at zero when the loop is built. Divide a difference of two snapshots by the
/// number of requests served in between to get the cost per request.
///
/// # Examples
///
/// ```
/// let mut lp = ringloop::EventLoop::new().unwrap();
/// lp.run_until_complete(async { ringloop::spawn(async {}).await.unwrap() });
/// let stats = lp.stats();
/// assert_eq!(stats.tasks_spawned, 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// I/O operations started (an SQE pushed on uring, a first attempt on epoll).
    pub ops_submitted: u64,
    /// Completions reaped (CQEs on uring, including internal ones; readiness events on epoll).
    pub completions: u64,
    /// `io_uring_enter` calls (submit and/or wait), uring backend.
    pub uring_enters: u64,
    /// `epoll_wait` calls, epoll backend.
    pub epoll_waits: u64,
    /// `epoll_ctl` calls, epoll backend.
    pub epoll_ctls: u64,
    /// Nonblocking I/O syscalls the loop made itself (`recv`, `send`, `accept4`, ...), including
    /// those that returned `EAGAIN`: every I/O op on epoll, and on uring the ops tried inline
    /// because they would have made a ring trip alone.
    pub io_syscalls: u64,
    /// Times a task or the main future was polled.
    pub task_polls: u64,
    /// Tasks spawned with [`spawn`](crate::spawn) (and [`spawn_blocking`](crate::spawn_blocking)).
    pub tasks_spawned: u64,
    /// Sleeping uring loops this loop woke with `IORING_OP_MSG_RING` through its own ring (no
    /// eventfd write), uring backend on Linux 6.1+.
    pub wake_messages: u64,
    /// Zero-copy sends whose result came (`IORING_OP_SEND_ZC`; see
    /// [`Builder::zero_copy_threshold`](crate::Builder::zero_copy_threshold)), uring backend.
    pub zero_copy_sends: u64,
    /// Notifications of zero-copy sends: the kernel let go of the buffer. A zero-copy write
    /// completes only after its notification, so once every write returned this equals
    /// `zero_copy_sends`.
    pub zero_copy_notifications: u64,
    /// Buffers of the loop's receive pool held right now: by users (a
    /// [`PooledBuf`](crate::buf::PooledBuf) not yet dropped) or waiting in a stream's queue. A
    /// gauge, not a count: it goes down as buffers come back. On an incremental ring (uring,
    /// Linux 6.12+) several receives' bytes may share one buffer, which counts once.
    pub pool_buffers_in_use: u64,
    /// Pool buffers that received data (each holds up to the pool's buffer size), on either
    /// backend; on an incremental ring (uring, Linux 6.12+), the parts of buffers that did (one
    /// per [`PooledBuf`](crate::buf::PooledBuf) handed out with bytes).
    pub pool_buffers_received: u64,
    /// Receive completions that filled more than one pool buffer (bundled receives, uring on
    /// Linux 6.10+).
    pub recv_bundles: u64,
    /// Times a stream's multishot receive was armed again after it ended (its queue was full, the
    /// pool ran dry, or the kernel ended it), uring backend.
    pub multishot_rearms: u64,
    /// Times a `recv_pooled` had to wait because every buffer of the pool was in use.
    pub pool_empty_waits: u64,
    /// File reads and writes submitted with a registered buffer of a
    /// [`FixedBufs`](crate::fs::FixedBufs) set (`IORING_OP_READ_FIXED` / `WRITE_FIXED`), uring
    /// backend.
    pub fixed_buffer_ops: u64,
    /// Times a server's accept loop ([`compat::axum::serve`](crate::compat)) paused because
    /// `accept` failed for want of a resource: `EMFILE` (this process's fd table is full: raise
    /// `RLIMIT_NOFILE`, or serve fewer connections), `ENFILE` (the system's), `ENOBUFS` or
    /// `ENOMEM`. The loop waits 50 ms and accepts again; connections wait in the listen backlog
    /// meanwhile. A count that keeps growing means the server runs at its fd limit.
    pub accept_backoffs: u64,
    /// Accepted TCP connections that got a slot in the ring's file table (direct descriptors,
    /// see [`Builder::direct_descriptors`](crate::Builder::direct_descriptors)), uring backend.
    pub direct_descriptors: u64,
    /// Accepted TCP connections that stayed plain fds because every slot of the ring's file
    /// table was taken, uring backend.
    pub direct_table_full: u64,
    /// Time the loop thread spent in its park: the `io_uring_enter` or `epoll_wait` of each loop
    /// turn, where it waits for I/O, a timer or a wake (and submits, on uring). The only place
    /// the loop thread is meant to wait: a test can subtract it from the thread's time off the
    /// CPU (`/proc/thread-self/schedstat`) to see whether anything else made the loop wait.
    /// Only parks that may sleep are timed; a busy loop's parks that only look (a zero
    /// timeout) are not, and cost no clock reads.
    pub park_time: Duration,
    /// Faults injected into this loop (cargo feature `fault-injection` with `RINGLOOP_FAULTS`
    /// set); all zero otherwise.
    pub faults_injected: FaultCounts,
}

impl Stats {
    /// Every syscall the loop thread made for I/O and waiting: `io_uring_enter`, `epoll_wait`,
    /// `epoll_ctl` and the I/O syscalls the loop made itself.
    pub fn syscalls(&self) -> u64 {
        self.uring_enters + self.epoll_waits + self.epoll_ctls + self.io_syscalls
    }
}

/// The live counters, shared by the executor and the driver of one loop.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) ops_submitted: Cell<u64>,
    pub(crate) completions: Cell<u64>,
    pub(crate) uring_enters: Cell<u64>,
    pub(crate) epoll_waits: Cell<u64>,
    pub(crate) epoll_ctls: Cell<u64>,
    pub(crate) io_syscalls: Cell<u64>,
    pub(crate) task_polls: Cell<u64>,
    pub(crate) tasks_spawned: Cell<u64>,
    pub(crate) wake_messages: Cell<u64>,
    pub(crate) zero_copy_sends: Cell<u64>,
    pub(crate) zero_copy_notifications: Cell<u64>,
    pub(crate) pool_in_use: Cell<u64>,
    pub(crate) pool_received: Cell<u64>,
    pub(crate) recv_bundles: Cell<u64>,
    pub(crate) multishot_rearms: Cell<u64>,
    pub(crate) pool_empty_waits: Cell<u64>,
    pub(crate) fixed_buffer_ops: Cell<u64>,
    pub(crate) accept_backoffs: Cell<u64>,
    pub(crate) direct_descriptors: Cell<u64>,
    pub(crate) direct_table_full: Cell<u64>,
    /// Nanoseconds spent in the driver's park.
    pub(crate) park_nanos: Cell<u64>,
    /// The fault injector (a build with `fault-injection`; nothing otherwise).
    pub(crate) faults: crate::faults::Faults,
}

impl Counters {
    #[inline]
    pub(crate) fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            ops_submitted: self.ops_submitted.get(),
            completions: self.completions.get(),
            uring_enters: self.uring_enters.get(),
            epoll_waits: self.epoll_waits.get(),
            epoll_ctls: self.epoll_ctls.get(),
            io_syscalls: self.io_syscalls.get(),
            task_polls: self.task_polls.get(),
            tasks_spawned: self.tasks_spawned.get(),
            wake_messages: self.wake_messages.get(),
            zero_copy_sends: self.zero_copy_sends.get(),
            zero_copy_notifications: self.zero_copy_notifications.get(),
            pool_buffers_in_use: self.pool_in_use.get(),
            pool_buffers_received: self.pool_received.get(),
            recv_bundles: self.recv_bundles.get(),
            multishot_rearms: self.multishot_rearms.get(),
            pool_empty_waits: self.pool_empty_waits.get(),
            fixed_buffer_ops: self.fixed_buffer_ops.get(),
            accept_backoffs: self.accept_backoffs.get(),
            direct_descriptors: self.direct_descriptors.get(),
            direct_table_full: self.direct_table_full.get(),
            park_time: Duration::from_nanos(self.park_nanos.get()),
            faults_injected: self.faults.counts(),
        }
    }
}
