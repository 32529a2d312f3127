//! `SharedFd`: an fd shared by a socket and its in-flight ops, closed when the last holder goes.
//! It also carries the fd's epoll registration and the bytes of stream reads (and the datagrams
//! of datagram receives, `datagram`) that completed after their future was dropped.

mod datagram;

use std::cell::{Cell, RefCell, RefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, Waker};

use super::DriverCell;
use super::op::Interest;
use super::small::{SmallQueue, WakerList};
use crate::buf::PooledBuf;
pub(crate) use datagram::StashedDatagram;

/// What a multishot op (uring) delivered to one fd and nobody has taken yet, and whether the op is
/// still armed.
pub(crate) struct MultiQueue<T> {
    pub(crate) items: SmallQueue<io::Result<T>>,
    /// The op's slot in its loop's driver, until its last completion.
    armed: Option<Weak<DriverCell>>,
    /// The armed op's slot (an op slab key: far below 2^32, as every slot holds memory).
    armed_key: u32,
    /// How many times an op was armed for this fd (saturating). Kept with `armed_key` in
    /// one word: this queue is part of every armed connection's memory.
    pub(crate) arms: u32,
    wakers: WakerList,
}

impl<T> std::fmt::Debug for MultiQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiQueue")
            .field("queued", &self.items.len())
            .field("armed", &self.armed.is_some())
            .finish()
    }
}

impl<T> Default for MultiQueue<T> {
    fn default() -> Self {
        MultiQueue {
            items: SmallQueue::default(),
            armed: None,
            armed_key: 0,
            arms: 0,
            wakers: WakerList::default(),
        }
    }
}

impl<T> MultiQueue<T> {
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// An op was armed in slot `key` of `driver`.
    pub(crate) fn armed(&mut self, key: usize, driver: &Rc<DriverCell>) {
        debug_assert!(u32::try_from(key).is_ok(), "op slot {key} past 2^32");
        self.armed = Some(Rc::downgrade(driver));
        self.armed_key = key as u32;
        self.arms = self.arms.saturating_add(1);
    }

    /// One completion of the armed op: queues `item` (if the completion carried one), notes the
    /// op's end (`!more`) and wakes the readers. Returns whether the op may stay armed: the queue
    /// is below `bound`.
    #[inline]
    pub(crate) fn deliver(
        &mut self,
        item: Option<io::Result<T>>,
        more: bool,
        bound: usize,
    ) -> bool {
        if let Some(item) = item {
            self.push(item);
        }
        self.delivered(more, bound)
    }

    /// Queues one item of a completion; [`delivered`](Self::delivered) follows once all are in.
    #[inline]
    pub(crate) fn push(&mut self, item: io::Result<T>) {
        self.items.push_back(item);
    }

    /// A completion's items are queued ([`push`](Self::push)): notes the op's end (`!more`) and
    /// wakes the readers. Returns whether the op may stay armed: the queue is below `bound`.
    #[inline(always)]
    pub(crate) fn delivered(&mut self, more: bool, bound: usize) -> bool {
        if !more {
            self.armed = None;
        }
        self.wakers.wake_all();
        self.items.len_below(bound)
    }

    /// The next delivery; `Pending` (the waker kept) while the op is armed and nothing came yet;
    /// `None` when nothing is queued and no op is armed: the caller arms one.
    #[inline]
    pub(crate) fn poll_next(&mut self, cx: &Context<'_>) -> Option<Poll<io::Result<T>>> {
        if let Some(item) = self.items.pop_front() {
            return Some(Poll::Ready(item));
        }
        if self.is_armed() {
            self.wait(cx.waker());
            return Some(Poll::Pending);
        }
        None
    }

    /// Wakes `waker` at the next delivery or when the op ends.
    #[inline]
    pub(crate) fn wait(&mut self, waker: &Waker) {
        self.wakers.add(waker);
    }

    /// The driver and slot of the armed op, if its loop is still there.
    fn armed_at(&self) -> Option<(Rc<DriverCell>, usize)> {
        let driver = self.armed.as_ref()?;
        Some((driver.upgrade()?, self.armed_key as usize))
    }

    /// Cancels the armed op, handing it `keep` to close after its last completion.
    fn stop(&mut self, keep: Option<OwnedFd>) {
        match self.armed_at() {
            Some((driver, key)) => driver.stop_multishot(key, keep),
            // The loop is gone: its shutdown waited for every completion.
            None => drop(keep),
        }
    }
}

/// `FdInner::direct` of an fd with no slot in a ring's file table.
const NO_SLOT: u32 = u32::MAX;

/// A reference-counted fd. Ops hold a clone while the kernel may use the fd, so closing a socket
/// with an op in flight never closes (or reuses) the fd under the kernel.
#[derive(Clone, Debug)]
pub(crate) struct SharedFd {
    inner: Rc<FdInner>,
}

struct FdInner {
    /// `None` only after `into_owned` took it.
    fd: Option<OwnedFd>,
    /// The epoll registration: the driver it is registered with and its token.
    /// (A `Cell`, taken and put back to look: a `RefCell`'s borrow flag would be 8 more bytes
    /// in every fd's state.)
    registration: Cell<Option<(Rc<DriverCell>, u64)>>,
    /// What only some fds need (see `Rare`), allocated on first use.
    rare: RefCell<Option<Box<Rare>>>,
    /// Whether `rare.stash` holds bytes, `rare.error` an error or `rare.datagrams` a datagram
    /// (checked before every read).
    has_stash: Cell<bool>,
    /// Dropped ops still in the kernel, per direction (read, write); a new op in that direction
    /// waits for them so the byte stream keeps its order.
    orphans: [Cell<u32>; 2],
    /// The last stream read came back short: the socket most likely had no more data then, so
    /// the next read most likely waits (uring asks the kernel to poll first instead of trying
    /// the receive, which is safe: a poll armed on a readable fd completes at once).
    read_drained: Cell<bool>,
    /// A short read proves this fd empty (TCP, pipes; see `Stream::tcp`), so epoll may skip the
    /// next read until a new edge. False where Linux returns short reads with data still queued
    /// (Unix streams): there only `EAGAIN` proves emptiness.
    short_read_proves_empty: Cell<bool>,
    /// A nonblocking read on this fd once found nothing: reads here usually wait (a
    /// request-response peer), so on uring they go straight to the ring from then on instead of
    /// being tried inline first.
    read_waits: Cell<bool>,
    /// The last stream read filled a large buffer: more is most likely queued, so on uring the
    /// next read is tried inline even when other ops share the ring trip.
    read_full: Cell<bool>,
    /// The fd is a duplicate of one its user keeps (`io::AsyncFd`): closing it does not take the
    /// open file out of epoll, so its registration is removed explicitly.
    duplicate: Cell<bool>,
    /// A TCP socket: the kernel can send from it zero-copy (`SO_ZEROCOPY`), which AF_UNIX cannot.
    zero_copy_ok: Cell<bool>,
    /// The fd's slot in the ring's file table of the loop in `registration` (uring direct
    /// descriptors), or `NO_SLOT`.
    direct: Cell<u32>,
    /// Pooled receives delivered by a multishot (or buffer-select) receive (uring).
    recv_queue: RefCell<Option<Box<MultiQueue<PooledBuf>>>>,
    /// Connections a multishot accept delivered (uring).
    accept_queue: RefCell<Option<Box<MultiQueue<OwnedFd>>>>,
}

impl std::fmt::Debug for FdInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdInner")
            .field("fd", &self.fd)
            .field("has_stash", &self.has_stash.get())
            .field("orphans", &[self.orphans[0].get(), self.orphans[1].get()])
            .finish_non_exhaustive()
    }
}

/// The part of an fd's state that only fds with a dropped op in flight need: kept apart so that
/// every other connection does not pay for it.
#[derive(Debug, Default)]
struct Rare {
    /// Bytes a cancelled read received; the next read returns them first.
    stash: Vec<u8>,
    /// The error a cancelled read completed with (a reset, say), returned by the next read once
    /// the stashed bytes before it are taken.
    error: Option<io::Error>,
    /// Datagrams (or errors) cancelled datagram receives took, oldest first; the next receives
    /// return them first.
    datagrams: datagram::Datagrams,
    /// Woken when a direction's last orphan completes.
    settle_wakers: WakerList,
    /// What a multishot poll delivered, per direction (read, write): `io::AsyncFd` on uring.
    polls: [MultiQueue<u32>; 2],
    /// Zero-copy sends on this fd whose notification has not come: the kernel still holds their
    /// pages (see `Stream`'s drop).
    zero_copy_in_flight: u32,
}

/// A `SharedFd` that does not keep the fd open: what a multishot op's sink holds, so a socket
/// dropped by its owner is noticed (and its op cancelled) rather than kept alive by the op.
pub(crate) struct WeakFd(Weak<FdInner>);

impl WeakFd {
    pub(crate) fn upgrade(&self) -> Option<SharedFd> {
        self.0.upgrade().map(|inner| SharedFd { inner })
    }
}

impl SharedFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        SharedFd {
            inner: Rc::new(FdInner {
                fd: Some(fd),
                registration: Cell::new(None),
                rare: RefCell::new(None),
                has_stash: Cell::new(false),
                orphans: [Cell::new(0), Cell::new(0)],
                read_drained: Cell::new(false),
                short_read_proves_empty: Cell::new(false),
                read_waits: Cell::new(false),
                read_full: Cell::new(false),
                duplicate: Cell::new(false),
                zero_copy_ok: Cell::new(false),
                direct: Cell::new(NO_SLOT),
                recv_queue: RefCell::new(None),
                accept_queue: RefCell::new(None),
            }),
        }
    }

    /// A `SharedFd` for a duplicate of `fd`, which its user keeps open (`io::AsyncFd`).
    pub(crate) fn duplicate(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let fd = SharedFd::new(fd.try_clone_to_owned()?);
        fd.inner.duplicate.set(true);
        Ok(fd)
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }

    /// Takes the fd back out (for `into_std`), leaving epoll if it was registered.
    ///
    /// # Errors
    ///
    /// If an op dropped earlier is still in the kernel, or bytes a dropped read received are still
    /// unread (they would be lost).
    pub(crate) fn into_owned(self) -> io::Result<OwnedFd> {
        // A multishot receive or accept still armed is cancelled and waited for first.
        for armed in [self.armed_recv(), self.armed_accept()]
            .into_iter()
            .flatten()
        {
            armed.0.stop_multishot_now(armed.1)?;
        }
        if self.armed_recv().is_some() || self.armed_accept().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "a multishot receive or accept on this socket is being cancelled; try into_std \
                 again after the next await",
            ));
        }
        if self.has_stash() || self.has_queued() {
            return Err(io::Error::other(
                "the socket holds bytes (or connections) received but not taken yet; read (or \
                 accept) them before into_std",
            ));
        }
        let mut inner = Rc::try_unwrap(self.inner).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "an operation on this socket is still in flight; try into_std again later",
            )
        })?;
        let fd = inner.fd.take().expect("the fd is present until into_owned");
        if let Some((driver, token)) = inner.registration.get_mut().take() {
            driver.deregister(fd.as_raw_fd(), token, true);
        }
        Ok(fd)
    }

    /// The epoll token of this fd with `driver`, if registered there.
    pub(crate) fn registration(&self, driver: &Rc<DriverCell>) -> Option<u64> {
        self.look_at_registration(|reg| match reg {
            Some((d, token)) if Rc::ptr_eq(d, driver) => Some(*token),
            _ => None,
        })
    }

    /// `f` of the registration, which stays in place (a `Cell`: taken, looked at, put back).
    fn look_at_registration<R>(&self, f: impl FnOnce(&Option<(Rc<DriverCell>, u64)>) -> R) -> R {
        let reg = self.inner.registration.take();
        let r = f(&reg);
        self.inner.registration.set(reg);
        r
    }

    /// Records a registration, returning the previous one (with another loop) to release.
    pub(crate) fn set_registration(
        &self,
        driver: Rc<DriverCell>,
        token: u64,
    ) -> Option<(Rc<DriverCell>, u64)> {
        // A slot in another loop's file table is released with that registration.
        self.inner.direct.set(NO_SLOT);
        self.inner.registration.replace(Some((driver, token)))
    }

    /// Whether the fd is registered with a loop (epoll, or a uring file table).
    pub(crate) fn has_registration(&self) -> bool {
        self.look_at_registration(Option::is_some)
    }

    /// Records the fd's slot in `driver`'s ring file table (a direct descriptor); the slot is
    /// released as a registration is: when the fd closes, leaves by `into_owned`, or moves to
    /// another loop.
    pub(crate) fn set_direct(&self, driver: Rc<DriverCell>, slot: u32) {
        self.inner.registration.set(Some((driver, u64::from(slot))));
        self.inner.direct.set(slot);
    }

    /// The fd's slot in the ring's file table, if it has one in the loop running now: a ring op
    /// on this fd names the slot instead of the fd (`op::sqe_fd!`). Another loop on this thread
    /// has another table, where the slot means nothing.
    pub(crate) fn direct_slot(&self) -> Option<u32> {
        let slot = self.inner.direct.get();
        if slot == NO_SLOT {
            return None;
        }
        self.look_at_registration(|reg| {
            matches!(reg, Some((driver, _)) if super::is_current(driver)).then_some(slot)
        })
    }

    /// Whether the last stream read on this fd came back short (see `read_drained`).
    pub(crate) fn read_drained(&self) -> bool {
        self.inner.read_drained.get()
    }

    pub(crate) fn set_read_drained(&self, drained: bool) {
        self.inner.read_drained.set(drained);
    }

    /// Marks this fd as a TCP socket, whose sends may go zero-copy.
    pub(crate) fn allow_zero_copy(&self) {
        self.inner.zero_copy_ok.set(true);
    }

    /// Whether sends on this fd may go zero-copy (a TCP socket).
    pub(crate) fn zero_copy_allowed(&self) -> bool {
        self.inner.zero_copy_ok.get()
    }

    /// A zero-copy send on this fd started (`up`) or its notification came (or it never
    /// started).
    pub(crate) fn count_zero_copy(&self, up: bool) {
        let mut rare = self.rare();
        rare.zero_copy_in_flight = if up {
            rare.zero_copy_in_flight + 1
        } else {
            rare.zero_copy_in_flight.saturating_sub(1)
        };
    }

    /// Zero-copy sends on this fd that the kernel still holds pages of.
    pub(crate) fn zero_copy_in_flight(&self) -> u32 {
        self.inner
            .rare
            .borrow()
            .as_ref()
            .map_or(0, |r| r.zero_copy_in_flight)
    }

    /// Aborts the connection (`connect(AF_UNSPEC)`, which for TCP is a reset): the kernel drops
    /// what is queued to send and so lets go of the pages of zero-copy sends a peer that stopped
    /// reading would otherwise pin for good. The fd stays open (its number is not reused while
    /// ops may still name it).
    pub(crate) fn abort_connection(&self) {
        // SAFETY: an all-zero sockaddr with family AF_UNSPEC is a valid argument of that size.
        let addr: libc::sockaddr = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open (held by `self`); `addr` is live for the call. A failure (not a
        // connected TCP socket any more) leaves nothing to release.
        unsafe {
            libc::connect(
                self.raw(),
                &addr,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
    }

    /// Marks this fd as one where a short read proves it empty (see `short_read_proves_empty`).
    pub(crate) fn trust_short_reads(&self) {
        self.inner.short_read_proves_empty.set(true);
    }

    /// Whether a short read of `n` bytes out of `len` proves this fd has nothing more to read
    /// right now: only where the transport guarantees it.
    pub(crate) fn short_read_drains(&self, n: usize, len: usize) -> bool {
        n > 0 && n < len && self.inner.short_read_proves_empty.get()
    }

    /// Whether a nonblocking read on this fd ever found nothing (see `read_waits`).
    pub(crate) fn read_waits(&self) -> bool {
        self.inner.read_waits.get()
    }

    pub(crate) fn set_read_waits(&self) {
        self.inner.read_waits.set(true);
    }

    /// Whether the last stream read on this fd filled a large buffer (see `read_full`).
    pub(crate) fn read_full(&self) -> bool {
        self.inner.read_full.get()
    }

    pub(crate) fn set_read_full(&self, full: bool) {
        self.inner.read_full.set(full);
    }

    /// Keeps bytes a dropped read received, for the next read.
    pub(crate) fn stash(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.rare().stash.extend_from_slice(bytes);
            self.inner.has_stash.set(true);
        }
    }

    /// Keeps the error a cancelled stream read completed with, for the next read. The cancel's
    /// own `ECANCELED` (the read never ran) is no error of the stream.
    pub(crate) fn stash_error(&self, err: io::Error) {
        if err.raw_os_error() == Some(libc::ECANCELED) {
            return;
        }
        let mut rare = self.rare();
        rare.error.get_or_insert(err);
        self.inner.has_stash.set(true);
    }

    /// Moves up to `cap` stashed bytes to `out` and returns how many; once the bytes are taken,
    /// the stashed error if any; `None` if nothing is stashed.
    ///
    /// # Safety
    ///
    /// `out` must be valid for writes of `cap` bytes.
    pub(crate) unsafe fn take_stash(&self, out: *mut u8, cap: usize) -> Option<io::Result<usize>> {
        if !self.inner.has_stash.get() {
            return None;
        }
        let mut rare = self.rare();
        if rare.stash.is_empty() {
            let err = rare.error.take();
            self.inner.has_stash.set(false);
            return err.map(Err);
        }
        let stash = &mut rare.stash;
        let n = stash.len().min(cap);
        // SAFETY: `stash` holds at least `n` bytes and the caller makes `out` writable for
        // `cap >= n` bytes; a Vec's storage never overlaps a caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(stash.as_ptr(), out, n) };
        stash.drain(..n);
        let more = !stash.is_empty() || rare.error.is_some();
        self.inner.has_stash.set(more);
        Some(Ok(n))
    }

    /// A dropped op in direction `dir` is still in the kernel.
    pub(crate) fn orphan_started(&self, dir: Interest) {
        let c = &self.inner.orphans[dir as usize];
        c.set(c.get() + 1);
    }

    /// A dropped op in direction `dir` completed; wakes ops waiting to go next.
    pub(crate) fn orphan_finished(&self, dir: Interest) {
        let c = &self.inner.orphans[dir as usize];
        c.set(c.get().saturating_sub(1));
        if c.get() == 0 {
            self.rare().settle_wakers.wake_all();
        }
    }

    /// Waits until no dropped op in direction `dir` is still in the kernel, so that the next op
    /// cannot overtake it (on uring two ops on one socket may run in either order).
    pub(crate) async fn settled(&self, dir: Interest) {
        poll_fn(|cx| self.poll_settled(dir, cx)).await
    }

    /// `settled` for a caller that polls. The common case (nothing dropped in flight) is one
    /// load inline in the caller.
    #[inline(always)]
    pub(crate) fn poll_settled(&self, dir: Interest, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.orphans[dir as usize].get() == 0 {
            Poll::Ready(())
        } else {
            self.wait_settled(cx)
        }
    }

    /// `poll_settled` while a dropped op of the direction is still in the kernel.
    #[cold]
    #[inline(never)]
    fn wait_settled(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.rare().settle_wakers.add(cx.waker());
        Poll::Pending
    }

    fn rare(&self) -> RefMut<'_, Rare> {
        RefMut::map(self.inner.rare.borrow_mut(), |r| {
            &mut **r.get_or_insert_with(Box::default)
        })
    }

    /// Whether a read (or write) in direction `dir` can go the plain way: no dropped op of
    /// that direction is still in the kernel, and (for reads) nothing is stashed.
    #[inline]
    pub(crate) fn plain(&self, dir: Interest) -> bool {
        self.inner.orphans[dir as usize].get() == 0
            && (dir == Interest::Write || !self.inner.has_stash.get())
    }

    #[inline]
    pub(crate) fn has_stash(&self) -> bool {
        self.inner.has_stash.get()
    }

    pub(crate) fn downgrade(&self) -> WeakFd {
        WeakFd(Rc::downgrade(&self.inner))
    }

    /// The fd's pooled-receive queue, made on first use.
    pub(crate) fn recv_queue(&self) -> RefMut<'_, MultiQueue<PooledBuf>> {
        RefMut::map(self.inner.recv_queue.borrow_mut(), |q| {
            &mut **q.get_or_insert_with(Box::default)
        })
    }

    /// The pooled-receive queue if a pooled receive ever ran on this fd.
    #[inline]
    pub(crate) fn recv_queue_if_any(&self) -> Option<RefMut<'_, MultiQueue<PooledBuf>>> {
        RefMut::filter_map(self.inner.recv_queue.borrow_mut(), |q| q.as_deref_mut()).ok()
    }

    /// The multishot poll queue of direction `dir` (uring `io::AsyncFd`), made on first use.
    pub(crate) fn poll_queue(&self, dir: Interest) -> RefMut<'_, MultiQueue<u32>> {
        RefMut::map(self.rare(), |r| &mut r.polls[dir as usize])
    }

    /// The read direction's poll queue (a `queue` for `op::arm_multishot`).
    pub(crate) fn poll_read_queue(&self) -> RefMut<'_, MultiQueue<u32>> {
        self.poll_queue(Interest::Read)
    }

    /// The write direction's poll queue (a `queue` for `op::arm_multishot`).
    pub(crate) fn poll_write_queue(&self) -> RefMut<'_, MultiQueue<u32>> {
        self.poll_queue(Interest::Write)
    }

    /// The fd's multishot-accept queue, made on first use.
    pub(crate) fn accept_queue(&self) -> RefMut<'_, MultiQueue<OwnedFd>> {
        RefMut::map(self.inner.accept_queue.borrow_mut(), |q| {
            &mut **q.get_or_insert_with(Box::default)
        })
    }

    /// Whether a multishot left bytes or connections nobody took yet.
    fn has_queued(&self) -> bool {
        let recv = self.inner.recv_queue.borrow();
        let accept = self.inner.accept_queue.borrow();
        recv.as_ref().is_some_and(|q| !q.items.is_empty())
            || accept.as_ref().is_some_and(|q| !q.items.is_empty())
    }

    /// The driver and slot of an armed multishot receive.
    fn armed_recv(&self) -> Option<(Rc<DriverCell>, usize)> {
        self.inner.recv_queue.borrow().as_ref()?.armed_at()
    }

    /// The driver and slot of an armed multishot accept.
    fn armed_accept(&self) -> Option<(Rc<DriverCell>, usize)> {
        self.inner.accept_queue.borrow().as_ref()?.armed_at()
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner
            .fd
            .as_ref()
            .expect("the fd is present until into_owned")
            .as_fd()
    }
}

impl Drop for FdInner {
    fn drop(&mut self) {
        if let Some((driver, token)) = self.registration.get_mut().take()
            && let Some(fd) = &self.fd
        {
            driver.deregister(fd.as_raw_fd(), token, self.duplicate.get());
        }
        // Multishot polls still armed are cancelled the same way. The first keeps the fd open
        // until its last completion; the other's SQE went to the kernel before that cancel did,
        // so it no longer needs the fd's number.
        if let Some(rare) = self.rare.get_mut().as_mut() {
            for q in rare.polls.iter_mut().filter(|q| q.is_armed()) {
                q.stop(self.fd.take());
            }
        }
        // A multishot still armed is cancelled; the driver keeps the fd open until its last
        // completion. Queued connections close and queued buffers go back to the pool with the
        // queues.
        if let Some(q) = self.recv_queue.get_mut().as_mut().filter(|q| q.is_armed()) {
            q.stop(self.fd.take());
        }
        if let Some(q) = self
            .accept_queue
            .get_mut()
            .as_mut()
            .filter(|q| q.is_armed())
        {
            q.stop(self.fd.take());
        }
        // `fd` closes itself after this, unless a driver took it.
    }
}
