//! Pooled receives (`recv_pooled`): the kernel, or the loop just before a `recv`, picks a buffer
//! from the loop's receive pool only when data is there, so an idle connection holds none.
//!
//! - uring with a buffer ring: one multishot receive per stream stays armed (a one-shot receive
//!   with buffer select when multishot receives are off or missing). What it delivers waits in
//!   the stream's queue, bounded by [`QUEUE_BOUND`]: past it the receive is cancelled, and armed
//!   again once a reader finds the queue empty. When the pool runs dry the kernel ends the receive
//!   (`ENOBUFS`); the reader then waits for a buffer to come back before arming it again. On
//!   Linux 6.10+ the multishot receive is bundled (`IORING_RECVSEND_BUNDLE`): one completion may
//!   fill several buffers, consecutive entries of the ring from the one it names (see
//!   `Pool::take_bundle`), queued as one item each; `recv_pooled_many` takes them all at once.
//! - epoll, or a free-list pool on uring: wait for readiness, take a buffer, `recv` into it; on
//!   `EAGAIN` the buffer goes straight back.

use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use io_uring::{opcode, squeue};

use super::cvt;
use super::poll::ReadyWait;
use crate::buf::PooledBuf;
use crate::buf::pool::{POOL_GROUP, Pool};
use crate::driver::DriverCell;
use crate::driver::current as current_driver;
use crate::driver::fd::{MultiQueue, SharedFd, WeakFd};
use crate::driver::op::Interest;

/// The most deliveries a stream's queue holds before its multishot receive is stopped (a few more
/// may be on their way then). With the default 4 KiB buffers a stream nobody reads holds at most
/// about 64 KiB of the pool.
pub(crate) const QUEUE_BOUND: usize = 16;

/// Where a stream's multishot (or buffer-select) receive delivers: the stream's queue, one item
/// per pool buffer (a bundled receive fills several in one completion). `None` goes in for an
/// end that is not the reader's business (the pool ran dry, or the receive was cancelled): the
/// reader arms it again.
///
/// The common completion (bytes in buffers of the pool, the stream still there) is taken apart
/// straight into the queue, inline; the rest is `deliver_rare`.
fn deliver_recv(
    fd: &WeakFd,
    pool: Option<&Rc<Pool>>,
    res: io::Result<u32>,
    flags: u32,
    more: bool,
) -> bool {
    // Without the stream, the buffers are dropped: they go back to the pool.
    let Some(stream) = fd.upgrade() else {
        deliver_rare(None, pool, res, flags, more);
        return false;
    };
    let mut queue = stream.recv_queue();
    let queue = &mut *queue;
    if let Ok(n @ 1..) = res
        && let (Some(bid), Some(pool)) = (io_uring::cqueue::buffer_select(flags), pool)
    {
        // SAFETY: the kernel selected `bid` (and for a bundle the ring entries after it) from
        // the pool's group for this completion and is done with them.
        let taken = unsafe { pool.take_bundle(bid, n, flags, |buf| queue.push(Ok(buf))) };
        if let Err(e) = taken {
            queue.push(Err(e));
        }
        // The op's last completion (`!more`) tells the queue that it ended.
        return queue.delivered(more, QUEUE_BOUND);
    }
    deliver_rare(Some(queue), pool, res, flags, more)
}

/// `deliver_recv` for every completion but bytes in buffers of the pool delivered to a live
/// stream: the end of stream, errors, a dropped stream (`queue` is `None`: buffers go back).
#[inline(never)]
fn deliver_rare(
    mut queue: Option<&mut MultiQueue<PooledBuf>>,
    pool: Option<&Rc<Pool>>,
    res: io::Result<u32>,
    flags: u32,
    more: bool,
) -> bool {
    let mut push = |item: Option<io::Result<PooledBuf>>, more: bool| match &mut queue {
        Some(q) => q.deliver(item, more, QUEUE_BOUND),
        None => false,
    };
    match res {
        Ok(0) => {
            if let (Some(bid), Some(pool)) = (io_uring::cqueue::buffer_select(flags), pool) {
                // SAFETY: the kernel selected `bid` for this completion and put no byte in it;
                // the buffer goes straight back (or, on an incremental ring, stays in it).
                let _ = unsafe { pool.take_bundle(bid, 0, flags, drop) };
            }
            push(Some(Ok(PooledBuf::eof())), more)
        }
        Ok(n) => match (io_uring::cqueue::buffer_select(flags), pool) {
            (Some(bid), Some(pool)) => {
                // Without the stream (`deliver_recv` takes the rest): the buffers go back.
                let mut go_on = true;
                // SAFETY: as in `deliver_recv`.
                let taken = unsafe {
                    pool.take_bundle(bid, n, flags, |buf| go_on = push(Some(Ok(buf)), true))
                };
                match taken {
                    Ok(()) if more => go_on,
                    Ok(()) => push(None, false),
                    Err(e) => push(Some(Err(e)), more),
                }
            }
            _ => push(
                Some(Err(io::Error::other(
                    "the kernel completed a pooled receive without a buffer of the loop's pool",
                ))),
                more,
            ),
        },
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            if let Some(pool) = pool {
                pool.note_ring_empty();
            }
            push(None, more)
        }
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => push(None, more),
        Err(e) => push(Some(Err(e)), more),
    }
}

fn outside_loop() -> io::Error {
    io::Error::other(
        "recv_pooled was polled outside a running ringloop event loop: await it inside \
         EventLoop::run_until_complete or ringloop::run",
    )
}

enum RecvState {
    Start,
    /// uring with a buffer ring.
    Ring(Rc<DriverCell>, Rc<Pool>),
    /// epoll, or a free-list pool: readiness, then `recv`.
    List(Rc<DriverCell>, Rc<Pool>, ReadyWait),
}

/// The future of `recv_pooled`: a buffer of the loop's pool with what arrived. Bytes a cancelled
/// owned read left come first, in a heap buffer. Hand-written so that a connection's task, which
/// holds it while the connection is idle, stays small.
pub(crate) struct RecvPooled<'a> {
    fd: &'a SharedFd,
    /// Dropped by `RecvPooled`'s drop, which skips the common `Start` inline.
    state: ManuallyDrop<RecvState>,
}

impl<'a> RecvPooled<'a> {
    pub(crate) fn new(fd: &'a SharedFd) -> Self {
        RecvPooled {
            fd,
            state: ManuallyDrop::new(RecvState::Start),
        }
    }
}

impl Drop for RecvPooled<'_> {
    #[inline]
    fn drop(&mut self) {
        if !matches!(*self.state, RecvState::Start) {
            self.drop_state();
        }
    }
}

impl RecvPooled<'_> {
    /// The drop of a state that holds the driver and the pool (out of line, so that the drop
    /// of a `RecvPooled` that answered from its queue stays a compare in its caller).
    #[inline(never)]
    fn drop_state(&mut self) {
        // SAFETY: only `RecvPooled`'s drop calls this, once; `state` is not used after.
        unsafe { ManuallyDrop::drop(&mut self.state) };
    }
}

impl Future for RecvPooled<'_> {
    type Output = io::Result<PooledBuf>;

    /// The common case inline in the caller: a stream whose receive is armed, with nothing
    /// stashed and no dropped read in flight, answers from its queue. The rest is `poll_slow`.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if matches!(*this.state, RecvState::Start)
            && this.fd.plain(Interest::Read)
            && let Some(mut queue) = this.fd.recv_queue_if_any()
        {
            // `MultiQueue::poll_next`, written out: the item goes straight to the output.
            if let Some(item) = queue.items.pop_front() {
                return Poll::Ready(item);
            }
            if queue.is_armed() {
                queue.wait(cx.waker());
                return Poll::Pending;
            }
        }
        this.poll_slow(cx)
    }
}

impl RecvPooled<'_> {
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<PooledBuf>> {
        let this = self;
        let fd = this.fd;
        match &mut *this.state {
            RecvState::Start => {
                ready!(fd.poll_settled(Interest::Read, cx));
                if fd.has_stash() {
                    let mut bytes = Vec::with_capacity(64 * 1024);
                    // SAFETY: `bytes` has room for its capacity.
                    let n = match unsafe { fd.take_stash(bytes.as_mut_ptr(), bytes.capacity()) } {
                        Some(Err(e)) => return Poll::Ready(Err(e)),
                        Some(Ok(n)) => n,
                        None => 0,
                    };
                    // SAFETY: `take_stash` initialised the first `n` bytes.
                    unsafe { bytes.set_len(n) };
                    return Poll::Ready(Ok(PooledBuf::from_vec(bytes)));
                }
                // The stream's receive is armed already (or delivered): its queue answers, and
                // neither the driver nor the pool is needed. This is every call but a stream's
                // first on uring with a buffer ring. Elsewhere there is no queue, and none is
                // made here (it would cost every epoll connection its memory).
                if let Some(next) = fd.recv_queue_if_any().and_then(|mut q| q.poll_next(cx)) {
                    return next;
                }
                let driver = current_driver().ok_or_else(outside_loop)?;
                let pool = driver.recv_pool()?;
                *this.state = if pool.is_ring() {
                    RecvState::Ring(driver, pool)
                } else {
                    RecvState::List(driver, pool, ReadyWait::new(Interest::Read))
                };
                this.poll_slow(cx)
            }
            RecvState::Ring(driver, pool) => poll_from_ring(fd, driver, pool, cx),
            RecvState::List(driver, pool, wait) => poll_from_list(fd, driver, pool, wait, cx),
        }
    }
}

/// `recv_pooled_many`: waits for the next pooled receive like `recv_pooled`, then appends it and
/// every buffer already delivered behind it (the rest of a bundle, and later receives) to `out`.
/// Stops before an error or the end of stream, which the next call returns. 0 means end of
/// stream.
pub(crate) async fn recv_many(fd: &SharedFd, out: &mut Vec<PooledBuf>) -> io::Result<usize> {
    let first = RecvPooled::new(fd).await?;
    if first.is_empty() {
        return Ok(0);
    }
    let mut total = first.len();
    out.push(first);
    if let Some(mut queue) = fd.recv_queue_if_any() {
        while matches!(queue.items.front_mut(), Some(Ok(buf)) if !buf.is_empty()) {
            if let Some(Ok(buf)) = queue.items.pop_front() {
                total += buf.len();
                out.push(buf);
            }
        }
    }
    Ok(total)
}

/// uring with a buffer ring: takes the next delivery, arming the receive when none is armed.
fn poll_from_ring(
    fd: &SharedFd,
    driver: &Rc<DriverCell>,
    pool: &Rc<Pool>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<PooledBuf>> {
    if let Some(next) = fd.recv_queue().poll_next(cx) {
        return next;
    }
    if pool.exhausted() {
        // Arming now would only end in ENOBUFS: wait until a buffer comes back.
        pool.wait_for_buffer(cx.waker());
        return Poll::Pending;
    }
    arm_ring_recv(fd, driver, pool, cx)?;
    Poll::Pending
}

/// For `PollIo`'s pooled reads: arms the stream's multishot receive into the loop's buffer ring
/// (the waker waits on the stream's queue) and returns `Some(Ok)`, or `None` where that does not
/// apply (epoll, a free-list pool, no multishot receive, an exhausted pool, a loop whose pool
/// cannot be made): the caller reads with a plain `recv` then. Call it only when nothing is armed
/// on the stream, or bytes could be read out of order.
pub(crate) fn try_arm_ring_recv(
    fd: &SharedFd,
    driver: &Rc<DriverCell>,
    cx: &mut Context<'_>,
) -> Option<io::Result<()>> {
    if !driver.fast().multishot_recv {
        return None;
    }
    let pool = driver.recv_pool().ok()?;
    if !pool.is_ring() || pool.exhausted() {
        return None;
    }
    Some(arm_ring_recv(fd, driver, &pool, cx))
}

/// Arms the stream's receive into the buffer ring: multishot where the kernel has it.
fn arm_ring_recv(
    fd: &SharedFd,
    driver: &Rc<DriverCell>,
    pool: &Rc<Pool>,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    let fast = driver.fast();
    let multishot = fast.multishot_recv;
    let entry = if multishot && fast.bundle {
        sqe_fd!(fd, |t| opcode::RecvMultiBundle::new(t, POOL_GROUP).build())
    } else if multishot {
        sqe_fd!(fd, |t| opcode::RecvMulti::new(t, POOL_GROUP).build())
    } else {
        sqe_fd!(fd, |t| opcode::Recv::new(
            t,
            std::ptr::null_mut(),
            pool.size()
        )
        .buf_group(POOL_GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT))
    };
    // A one-shot receive is armed per call: only a multishot's new arm is a re-arm.
    super::arm_multishot(
        fd,
        driver,
        SharedFd::recv_queue,
        entry,
        (deliver_recv, libc::ENOBUFS),
        multishot,
        cx,
    )
}

/// The marker inside the error `poll_from_list` makes when the pool is exhausted.
#[derive(Debug)]
struct PoolEmpty;

impl std::fmt::Display for PoolEmpty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the loop's receive pool is empty")
    }
}

impl std::error::Error for PoolEmpty {}

/// epoll, or uring with a free-list pool: readiness, then `recv` into a buffer taken just before.
/// On `EAGAIN` the buffer goes straight back, so a waiting stream holds none.
fn poll_from_list(
    fd: &SharedFd,
    driver: &Rc<DriverCell>,
    pool: &Rc<Pool>,
    wait: &mut ReadyWait,
    cx: &mut Context<'_>,
) -> Poll<io::Result<PooledBuf>> {
    if pool.exhausted() {
        pool.wait_for_buffer(cx.waker());
        return Poll::Pending;
    }
    let mut taken: Option<PooledBuf> = None;
    let size = pool.size() as usize;
    let res = ready!(wait.poll_transfer(driver, fd, cx, size, |raw, max| {
        if taken.is_none() {
            taken = Some(
                pool.take_free()
                    .ok_or_else(|| io::Error::other(PoolEmpty))?,
            );
        }
        let (ptr, cap) = taken.as_mut().expect("taken just above").spare();
        // SAFETY: the buffer is writable for its whole capacity; the call does not keep the
        // pointer.
        let res = cvt(unsafe { libc::recv(raw, ptr.cast(), cap.min(max), libc::MSG_DONTWAIT) });
        if matches!(&res, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            taken = None;
        }
        res
    }));
    match res {
        Ok(0) => Poll::Ready(Ok(PooledBuf::eof())), // `taken` goes back to the pool
        Ok(n) => {
            let mut buf = taken.expect("a receive of n > 0 bytes filled a buffer");
            // SAFETY: `recv` initialised the first `n <= size` bytes of the buffer.
            unsafe { buf.set_received(n) };
            Poll::Ready(Ok(buf))
        }
        Err(e) if e.get_ref().is_some_and(|inner| inner.is::<PoolEmpty>()) => {
            pool.wait_for_buffer(cx.waker());
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(e)),
    }
}

/// For a read into the caller's memory: copies up to `cap` bytes a pooled receive delivered on
/// this fd into `out`, in order. `Ready(None)` when no pooled receive is in play (the caller reads
/// the usual way); `Pending` while one is armed and nothing has come yet.
///
/// # Safety
///
/// `out` must be valid for writes of `cap` bytes.
pub(crate) unsafe fn poll_queued_into(
    fd: &SharedFd,
    cx: &mut Context<'_>,
    out: *mut u8,
    cap: usize,
) -> Poll<Option<io::Result<usize>>> {
    let Some(mut queue) = fd.recv_queue_if_any() else {
        return Poll::Ready(None);
    };
    let armed = queue.is_armed();
    match queue.items.front_mut() {
        Some(Ok(buf)) => {
            let n = buf.len().min(cap);
            // SAFETY: `buf` holds `n` initialised bytes; the caller makes `out` writable for
            // `cap >= n` bytes, and a pool buffer never overlaps the caller's memory.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), out, n) };
            buf.advance(n);
            if buf.is_empty() {
                queue.items.pop_front(); // fully read (or end of stream)
            }
            Poll::Ready(Some(Ok(n)))
        }
        Some(Err(_)) => match queue.items.pop_front() {
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            _ => unreachable!("the front item was an error a moment ago"),
        },
        None if armed => {
            queue.wait(cx.waker());
            Poll::Pending
        }
        None => Poll::Ready(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;
    use std::os::fd::OwnedFd;

    /// `IORING_CQE_F_BUFFER` and `IORING_CQE_F_BUF_MORE`.
    const F_BUFFER: u32 = 1;
    const F_BUF_MORE: u32 = 1 << 4;

    /// A completion's flags naming buffer `bid` (`IORING_CQE_BUFFER_SHIFT` is 16).
    fn names(bid: u16, extra: u32) -> u32 {
        F_BUFFER | (u32::from(bid) << 16) | extra
    }

    fn stream() -> SharedFd {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        SharedFd::new(OwnedFd::from(a))
    }

    /// An incremental ring of 4 buffers of 16 bytes, and its counters.
    fn pool() -> (Rc<Pool>, Rc<Counters>) {
        let counters = Rc::new(Counters::default());
        let mut pool = Pool::with_ring(4, 16, counters.clone()).unwrap();
        pool.set_incremental();
        (Rc::new(pool), counters)
    }

    fn lens(fd: &SharedFd) -> Vec<Option<usize>> {
        let mut queue = fd.recv_queue();
        std::iter::from_fn(|| queue.items.pop_front())
            .map(|item| item.ok().map(|buf| buf.len()))
            .collect()
    }

    #[test]
    fn deliveries_to_a_live_stream_are_queued_in_order_up_to_the_bound() {
        let (pool, counters) = pool();
        let fd = stream();
        let weak = fd.downgrade();
        assert!(deliver_recv(
            &weak,
            Some(&pool),
            Ok(5),
            names(0, F_BUF_MORE),
            true
        ));
        assert!(deliver_recv(
            &weak,
            Some(&pool),
            Ok(3),
            names(0, F_BUF_MORE),
            true
        ));
        // Not a buffer of the ring: the reader gets the error, in its place.
        assert!(deliver_recv(&weak, Some(&pool), Ok(1), names(9, 0), true));
        // The end of stream, and the op's last completion.
        assert!(deliver_recv(&weak, Some(&pool), Ok(0), names(0, 0), false));
        assert_eq!(lens(&fd), [Some(5), Some(3), None, Some(0)]);
        assert_eq!(counters.pool_in_use.get(), 0, "every part was dropped");
        for i in 1..QUEUE_BOUND {
            assert!(
                deliver_recv(&weak, Some(&pool), Ok(1), names(0, F_BUF_MORE), true),
                "{i}"
            );
        }
        assert!(
            !deliver_recv(&weak, Some(&pool), Ok(1), names(0, F_BUF_MORE), true),
            "a full queue stops the receive"
        );
        assert_eq!(lens(&fd).len(), QUEUE_BOUND);
    }

    #[test]
    fn a_delivery_to_a_dropped_stream_goes_back_to_the_pool() {
        let (pool, counters) = pool();
        let fd = stream();
        let weak = fd.downgrade();
        drop(fd);
        // All 16 bytes of buffer 0: the kernel is past it, and nobody holds a part.
        assert!(!deliver_recv(&weak, Some(&pool), Ok(16), names(0, 0), true));
        assert_eq!(counters.pool_in_use.get(), 0);
        assert_eq!(counters.pool_received.get(), 1);
    }
}
