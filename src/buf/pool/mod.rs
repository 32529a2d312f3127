//! The loop's receive pool and [`PooledBuf`].
//!
//! One allocation of `count` buffers of `size` bytes per loop, made the first time a stream calls
//! `recv_pooled`. On io_uring (Linux 5.19+) the free buffers live in a provided buffer ring
//! registered with the kernel, which picks one only when data arrives; elsewhere (epoll, older
//! kernels, or with the buffer ring switched off) the loop keeps a free list and takes a buffer
//! just before each `recv`. Either way an idle connection holds no buffer. On Linux 6.12+ the
//! ring is incremental (`IOU_PBUF_RING_INC`): a receive takes only the bytes it got of the
//! buffer at the ring's head, so small receives of many connections share buffers, and a
//! [`PooledBuf`] is a part of a buffer (see `Incremental`).

mod pooled;

pub use pooled::PooledBuf;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::Waker;

use io_uring::types::BufRingEntry;

/// One entry of a provided buffer ring as the kernel lays it out (`struct io_uring_buf`): the
/// first entry's `resv` is the ring's tail. Fields are written one by one through raw pointers.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(
    std::mem::size_of::<RingEntry>() == std::mem::size_of::<BufRingEntry>()
        && std::mem::align_of::<RingEntry>() == std::mem::align_of::<BufRingEntry>()
);

use crate::stats::Counters;

/// The buffer group id of the loop's pool in its ring (one pool per loop).
pub(crate) const POOL_GROUP: u16 = 0;

/// The default buffer count of [`Builder::recv_pool`](crate::Builder::recv_pool).
pub const DEFAULT_POOL_COUNT: u16 = 1024;
/// The default buffer size of [`Builder::recv_pool`](crate::Builder::recv_pool).
pub const DEFAULT_POOL_SIZE: u32 = 4096;

/// What a failed mapping of the pool says it was for.
const POOL_WHAT: &str = "receive pool; lower Builder::recv_pool";

/// How many buffers a pool's ring holds at first (see `Free::Ring`).
const INITIAL_RING_FILL: u32 = 64;

/// The most memory one pool may take (`count * size`).
const MAX_POOL_BYTES: u64 = 1 << 32;

/// Checks a `recv_pool(count, size)` setting.
pub(crate) fn check_config(count: u16, size: u32) -> io::Result<()> {
    let bad = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    if count == 0 || !count.is_power_of_two() || count > 32768 {
        return bad(format!(
            "Builder::recv_pool: count {count} must be a power of two from 1 to 32768"
        ));
    }
    if size == 0 {
        return bad("Builder::recv_pool: size must be at least 1 byte".into());
    }
    if u64::from(count) * u64::from(size) > MAX_POOL_BYTES {
        return bad(format!(
            "Builder::recv_pool: {count} buffers of {size} bytes exceed the 4 GiB a pool may take"
        ));
    }
    Ok(())
}

/// Anonymous memory straight from the kernel (`mmap`), unmapped on drop. The kernel zeroes pages
/// on first touch, so a page of the pool no receive ever used costs nothing (an allocator's zeroed
/// allocation would write every page up front).
pub(crate) struct Region {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

impl Region {
    pub(crate) fn zeroed(bytes: usize, what: &str) -> io::Result<Region> {
        let len = bytes.max(1);
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
        // pointer of ours is passed in.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot map the {bytes}-byte {what} ({e})"),
            ));
        }
        let ptr = NonNull::new(ptr.cast()).expect("mmap returned a null mapping");
        Ok(Region { ptr, len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: mapped in `zeroed` with this length; the pool unmaps it only once the kernel can
        // no longer write into it (see `Pool`'s drop order).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Where free buffers are kept.
enum Free {
    /// A provided buffer ring registered with the kernel, kept filled with `target` buffers; the
    /// other free buffers wait in `spare`, last returned first out. The ring is a FIFO: filled
    /// with every free buffer it would cycle through all of them, touching the whole pool's
    /// memory; this way a loop whose connections are mostly idle keeps reusing a few hot buffers.
    Ring {
        entries: Region,
        /// The tail as we last published it.
        tail: Cell<u16>,
        /// Buffers published in the ring that the kernel has not taken yet (each one it takes
        /// comes back in a completion).
        avail: Cell<u32>,
        /// How many buffers the ring is kept filled with: starts small, doubles (up to the
        /// pool's count) each time a receive found the ring empty.
        target: Cell<u32>,
        spare: RefCell<Vec<u16>>,
        /// False once the loop unregistered the ring (it closed): returned buffers just stay here
        /// until the pool goes.
        live: Cell<bool>,
        /// Which buffer each ring entry holds (by entry index), which entry each buffer was
        /// last published in, and whether it is still there or taken by the kernel with its
        /// completion not seen yet (by buffer id): a bundled receive names only its first
        /// buffer, and the others are the entries after it. An entry is not written again while
        /// its buffer is in the ring, so a bundle's entries still name its buffers when its
        /// completion is read, however late (completions of different receives may come in any
        /// order).
        entry_bid: Box<[Cell<u16>]>,
        bid_entry: Box<[Cell<u16>]>,
        in_ring: Box<[Cell<bool>]>,
        /// Set when the ring was registered with `IOU_PBUF_RING_INC` (see [`Incremental`]).
        inc: Option<Incremental>,
    },
    /// A free list the loop takes from before each `recv`.
    List(RefCell<Vec<u16>>),
}

/// Incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12+): a receive takes from the buffer
/// at the ring's head only the bytes it got, and the buffer stays at the head until it is used up.
/// So a burst of small receives (a thousand connections sending a byte each) shares a few buffers
/// instead of taking one each: an idle server touches a few pages of the pool, not one buffer per
/// connection of its largest burst.
///
/// A completion names the buffer and the length, not the offset: each completion of a buffer
/// continues where the one before it left off (the kernel's documented contract), so the pool
/// counts what it handed out of each buffer. The kernel moves its head past a buffer when the
/// buffer's bytes are used up, and says so in each completion (`IORING_CQE_F_BUF_MORE` is set
/// while it stays at the head): the pool follows that word, except on zero-length completions,
/// where some kernels clear the flag without moving on, and refuses a completion that says the
/// kernel goes on filling a buffer the pool counts as used up. (A receive the kernel runs from
/// a worker thread takes the whole buffer at once: its bytes are where the pool counts them, and
/// the flag says the kernel is past the buffer.) A buffer goes back to the spare list once the
/// kernel is past it and the last [`PooledBuf`] cut from it is dropped.
struct Incremental {
    /// Each buffer's count (by buffer id).
    parts: Box<[Parts]>,
}

/// What the pool counts of one buffer of an incremental ring.
#[derive(Default)]
struct Parts {
    /// Bytes handed out since the buffer was last published.
    used: Cell<u32>,
    /// Live `PooledBuf`s cut from it.
    users: Cell<u32>,
}

/// A loop's receive pool, shared by the loop, its streams' queues and every [`PooledBuf`]. The
/// memory goes when the last of them does.
pub(crate) struct Pool {
    memory: Region,
    count: u16,
    size: u32,
    free: Free,
    /// Readers waiting for a buffer to come back (the pool ran dry).
    waiters: RefCell<Vec<Waker>>,
    counters: Rc<Counters>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("count", &self.count)
            .field("size", &self.size)
            .field("ring", &self.is_ring())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Pool {
    /// A pool with a free list.
    pub(crate) fn with_list(count: u16, size: u32, counters: Rc<Counters>) -> io::Result<Pool> {
        let memory = Region::zeroed(count as usize * size as usize, POOL_WHAT)?;
        Ok(Pool {
            memory,
            count,
            size,
            free: Free::List(RefCell::new((0..count).rev().collect())),
            waiters: RefCell::new(Vec::new()),
            counters,
        })
    }

    /// A pool whose free buffers live in a buffer ring, every buffer in it. The caller registers
    /// [`ring_addr`](Self::ring_addr) with the kernel before any op selects from group
    /// [`POOL_GROUP`], and calls [`retire_ring`](Self::retire_ring) once it unregistered it.
    pub(crate) fn with_ring(count: u16, size: u32, counters: Rc<Counters>) -> io::Result<Pool> {
        let memory = Region::zeroed(count as usize * size as usize, POOL_WHAT)?;
        let entries = Region::zeroed(
            count as usize * std::mem::size_of::<BufRingEntry>(),
            POOL_WHAT,
        )?;
        let pool = Pool {
            memory,
            count,
            size,
            free: Free::Ring {
                entries,
                tail: Cell::new(0),
                avail: Cell::new(0),
                target: Cell::new(u32::from(count).min(INITIAL_RING_FILL)),
                spare: RefCell::new((0..count).rev().collect()),
                live: Cell::new(true),
                entry_bid: (0..count).map(|_| Cell::new(0)).collect(),
                bid_entry: (0..count).map(|_| Cell::new(0)).collect(),
                in_ring: (0..count).map(|_| Cell::new(false)).collect(),
                inc: None,
            },
            waiters: RefCell::new(Vec::new()),
            counters,
        };
        pool.refill();
        Ok(pool)
    }

    /// Tops the ring up to its target from the spare buffers. The uring driver calls it before
    /// every `io_uring_enter`: with `DEFER_TASKRUN` the kernel takes buffers from the ring only
    /// inside an enter, so one refill there does what a refill after every take and every give
    /// back did, with one tail update per trip instead of one per buffer.
    ///
    /// Inline in the caller: most trips find the ring full (`refill_slow` tops it up).
    #[inline]
    pub(crate) fn refill(&self) {
        if let Free::Ring {
            avail,
            target,
            live,
            ..
        } = &self.free
            && avail.get() < target.get()
            && live.get()
        {
            self.refill_slow();
        }
    }

    /// [`refill`](Self::refill) of a ring below its target.
    #[inline(never)]
    fn refill_slow(&self) {
        let Free::Ring {
            avail,
            target,
            spare,
            ..
        } = &self.free
        else {
            return;
        };
        let mut spare = spare.borrow_mut();
        let mut pushed = false;
        while avail.get() < target.get() && self.ring_push_spare(&mut spare) {
            avail.set(avail.get() + 1);
            pushed = true;
        }
        if pushed {
            self.publish_tail();
        }
    }

    /// A receive found the ring empty (`ENOBUFS`): keep more buffers in it from now on.
    pub(crate) fn note_ring_empty(&self) {
        if let Free::Ring { target, .. } = &self.free {
            // One more buffer kept in the ring per receive that found it empty: the target
            // follows the largest burst seen. (Doubling it per empty ring overshot: a burst of
            // connections took it to the whole pool, and the ring, a FIFO, then touched every
            // buffer's memory, which an idle server keeps resident.)
            target.set((target.get() + 1).min(u32::from(self.count)));
            self.refill();
        }
    }

    /// Switches a ring pool to incremental consumption: the caller registered its ring with
    /// `IOU_PBUF_RING_INC`, and no op has selected from it yet.
    pub(crate) fn set_incremental(&mut self) {
        if let Free::Ring { inc, .. } = &mut self.free {
            let count = usize::from(self.count);
            *inc = Some(Incremental {
                parts: (0..count).map(|_| Parts::default()).collect(),
            });
        }
    }

    /// Whether receives take only what they need of a buffer (`IOU_PBUF_RING_INC`).
    pub(crate) fn is_incremental(&self) -> bool {
        matches!(self.free, Free::Ring { inc: Some(_), .. })
    }

    pub(crate) fn is_ring(&self) -> bool {
        matches!(self.free, Free::Ring { .. })
    }

    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// The address of the ring's entries, for `IORING_REGISTER_PBUF_RING`.
    pub(crate) fn ring_addr(&self) -> Option<u64> {
        match &self.free {
            Free::Ring { entries, .. } => Some(entries.ptr.as_ptr() as u64),
            Free::List(_) => None,
        }
    }

    /// The loop unregistered the ring: the kernel no longer reads it or selects from it.
    pub(crate) fn retire_ring(&self) {
        if let Free::Ring { live, .. } = &self.free {
            live.set(false);
        }
    }

    /// Buffers out of the pool (with users, or queued on streams): the loop's
    /// `Stats::pool_buffers_in_use`, which is kept here and nowhere else.
    fn in_use(&self) -> u64 {
        self.counters.pool_in_use.get()
    }

    /// Whether every buffer is out (with users, or queued on streams). On an incremental ring a
    /// buffer whose parts are held may still be in the ring, with room the kernel fills: the
    /// pool is exhausted only when the ring and the spare list are both empty.
    pub(crate) fn exhausted(&self) -> bool {
        match &self.free {
            Free::Ring {
                inc: Some(_),
                avail,
                spare,
                ..
            } => avail.get() == 0 && spare.borrow().is_empty(),
            _ => self.in_use() >= u64::from(self.count),
        }
    }

    /// Remembers a reader to wake when a buffer comes back.
    pub(crate) fn wait_for_buffer(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
            Counters::bump(&self.counters.pool_empty_waits);
        }
    }

    fn buffer_ptr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the offset stays inside the `count * size` region.
        unsafe {
            self.memory
                .ptr
                .as_ptr()
                .add(bid as usize * self.size as usize)
        }
    }

    /// Writes the entry at the tail (not yet visible to the kernel) for a buffer from `spare`.
    /// False, writing nothing, when no buffer is spare or the entry's last buffer is still in the
    /// ring (taken by the kernel, its completion not read yet: a bundle may name the entries
    /// after its first); the ring is topped up again once that completion is read.
    fn ring_push_spare(&self, spare: &mut Vec<u16>) -> bool {
        let Free::Ring {
            entries,
            tail,
            entry_bid,
            bid_entry,
            in_ring,
            ..
        } = &self.free
        else {
            return false;
        };
        let idx = tail.get() & (self.count - 1);
        let old = entry_bid[idx as usize].get();
        if in_ring[old as usize].get() && bid_entry[old as usize].get() == idx {
            return false;
        }
        let Some(bid) = spare.pop() else {
            return false;
        };
        entry_bid[idx as usize].set(bid);
        bid_entry[bid as usize].set(idx);
        in_ring[bid as usize].set(true);
        let entry = entries.ptr.as_ptr().cast::<RingEntry>();
        // Fields are written through raw pointers, never a reference to the whole entry: the
        // first entry's last field is the tail, which the kernel reads concurrently and only
        // `publish_tail` writes.
        // SAFETY: `idx < count` and the region holds `count` `RingEntry`s (asserted equal to
        // `BufRingEntry` above); the kernel reads only entries up to the published tail, and
        // this one lies past it.
        unsafe {
            let entry = entry.add(idx as usize);
            std::ptr::addr_of_mut!((*entry).addr).write(self.buffer_ptr(bid) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        tail.set(tail.get().wrapping_add(1));
        true
    }

    /// Makes the entries written so far visible to the kernel.
    fn publish_tail(&self) {
        let Free::Ring { entries, tail, .. } = &self.free else {
            return;
        };
        // SAFETY: the tail field lies in the first entry of the live ring region; the kernel reads
        // it concurrently, so it is written atomically (release: the entries come first).
        let shared = unsafe {
            &*BufRingEntry::tail(entries.ptr.as_ptr().cast::<BufRingEntry>()).cast::<AtomicU16>()
        };
        shared.store(tail.get(), Ordering::Release);
    }

    /// The kernel put `len` bytes into buffer `bid` (a completion with `IORING_CQE_F_BUFFER`).
    /// The ring is topped up at the loop's next trip to the kernel ([`refill`](Self::refill)), so
    /// a bundle's later entries stay as they are while it is taken apart.
    ///
    /// # Safety
    ///
    /// `bid` must come from a completion of an op that selected from this pool, so the kernel is
    /// done with it and nobody else holds it.
    unsafe fn take_selected(self: &Rc<Self>, bid: u16, len: u32) -> io::Result<PooledBuf> {
        if bid >= self.count || len > self.size {
            return Err(io::Error::other(format!(
                "the kernel selected buffer {bid} with {len} bytes from a pool of {} x {}",
                self.count, self.size
            )));
        }
        debug_assert!(
            !self.is_incremental(),
            "take_bundle serves incremental rings"
        );
        if let Free::Ring { avail, in_ring, .. } = &self.free {
            if !in_ring[bid as usize].replace(false) {
                return Err(io::Error::other(format!(
                    "the kernel completed a receive into buffer {bid}, which was not in the \
                     loop's buffer ring"
                )));
            }
            avail.set(avail.get().saturating_sub(1));
        }
        if len > 0 {
            Counters::bump(&self.counters.pool_received);
        }
        Ok(self.lend(bid, len as usize))
    }

    /// A receive put `len` bytes into the buffer `first` names (its completion's `flags` carry
    /// `IORING_CQE_F_BUFFER`), and for a bundled receive (`IORING_RECVSEND_BUNDLE`) into the ring
    /// entries after it: each entry's buffer full but the last. Calls `each` with every buffer in
    /// order (one for a `len` that fits a buffer). On an incremental ring the bytes continue
    /// where the buffer's last completion left off (see [`Incremental`]).
    ///
    /// # Safety
    ///
    /// As [`take_selected`](Self::take_selected): the completion of an op that selected from this
    /// pool's ring reported `first` and `len`.
    ///
    /// The common case, an incremental ring and bytes that fit in the rest of the named buffer,
    /// is inline in the caller (one part, `each` called once); the rest is out of line.
    #[inline]
    pub(crate) unsafe fn take_bundle(
        self: &Rc<Self>,
        first: u16,
        len: u32,
        flags: u32,
        each: impl FnMut(PooledBuf),
    ) -> io::Result<()> {
        if let Free::Ring { inc: Some(inc), .. } = &self.free {
            // SAFETY: the caller's promise, passed on.
            return unsafe { self.take_incremental(inc, first, len, flags, each) };
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { self.take_whole(first, len, each) }
    }

    /// [`take_bundle`](Self::take_bundle) on a ring that is not incremental (or a free-list
    /// pool): each buffer whole.
    ///
    /// # Safety
    ///
    /// As [`take_selected`](Self::take_selected).
    #[inline(never)]
    unsafe fn take_whole(
        self: &Rc<Self>,
        first: u16,
        len: u32,
        mut each: impl FnMut(PooledBuf),
    ) -> io::Result<()> {
        let Free::Ring {
            entry_bid,
            bid_entry,
            ..
        } = &self.free
        else {
            // SAFETY: the caller's promise, passed on.
            return unsafe { self.take_selected(first, len) }.map(each);
        };
        if len <= self.size {
            // One buffer: the completion names it.
            // SAFETY: the caller's promise, passed on.
            return unsafe { self.take_selected(first, len) }.map(each);
        }
        if first >= self.count {
            return Err(io::Error::other(format!(
                "the kernel selected buffer {first} from a pool of {} buffers",
                self.count
            )));
        }
        let parts = len.div_ceil(self.size).max(1);
        if parts > u32::from(self.count) {
            return Err(io::Error::other(format!(
                "the kernel reported a bundle of {len} bytes, more than the pool's {} x {}",
                self.count, self.size
            )));
        }
        if parts > 1 {
            Counters::bump(&self.counters.recv_bundles);
        }
        let start = bid_entry[first as usize].get();
        let mut left = len;
        let mut res = Ok(());
        for i in 0..parts {
            let entry = (u32::from(start) + i) & (u32::from(self.count) - 1);
            let bid = entry_bid[entry as usize].get();
            let n = left.min(self.size);
            left -= n;
            // SAFETY: the kernel filled the ring entries from `first`'s on, in order, and
            // reported them all in this one completion: each entry's buffer is done with and
            // nobody else holds it. No entry is rewritten before the loop ends (no refill).
            match unsafe { self.take_selected(bid, n) } {
                Ok(buf) => each(buf),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        res
    }

    /// [`take_bundle`](Self::take_bundle) on an incremental ring: the common case, bytes that
    /// fit in the rest of the buffer the completion names, here; a bundle that goes on into
    /// further buffers in [`take_incremental_bundle`](Self::take_incremental_bundle).
    ///
    /// # Safety
    ///
    /// As [`take_selected`](Self::take_selected).
    #[inline]
    unsafe fn take_incremental(
        self: &Rc<Self>,
        inc: &Incremental,
        first: u16,
        len: u32,
        flags: u32,
        mut each: impl FnMut(PooledBuf),
    ) -> io::Result<()> {
        let b = usize::from(first);
        let Some(state) = inc.parts.get(b) else {
            return Err(self.not_in_ring(first));
        };
        let start = state.used.get();
        let room = self.size - start;
        if len > room {
            // SAFETY: the caller's promise, passed on.
            return unsafe { self.take_incremental_bundle(inc, first, len, flags, each) };
        }
        self.take_part(
            inc,
            first,
            start,
            len,
            io_uring::cqueue::buffer_more(flags),
            true,
        )
        .map(&mut each)
    }

    /// Cuts the part `start..start + n` of buffer `bid` (the last part of a completion when
    /// `last`) and marks the buffer out of the ring once the kernel is past it: once its bytes
    /// are used up, or as the last part's `kernel_more` (the completion's
    /// `IORING_CQE_F_BUF_MORE`) says.
    #[inline(always)]
    fn take_part(
        self: &Rc<Self>,
        inc: &Incremental,
        bid: u16,
        start: u32,
        n: u32,
        kernel_more: bool,
        last: bool,
    ) -> io::Result<PooledBuf> {
        let Free::Ring { in_ring, avail, .. } = &self.free else {
            unreachable!("an incremental pool is a ring");
        };
        let b = usize::from(bid);
        let (Some(state), Some(held)) = (inc.parts.get(b), in_ring.get(b)) else {
            return Err(self.not_in_ring(bid));
        };
        if !held.get() {
            return Err(self.not_in_ring(bid));
        }
        let end = start + n;
        // The kernel's rule: its head moves past a buffer once its bytes are used up. The last
        // part's flag is the kernel's own word, and the pool follows it: a receive the kernel
        // ran from a worker thread took the whole buffer up front, its bytes still where the
        // pool counts them. (Not on a zero-length completion, where some kernels clear the flag
        // without moving past the buffer.)
        let mut done = end == self.size;
        if last && n > 0 {
            if done && kernel_more {
                return Err(self.disagree(bid, start, n));
            }
            done = !kernel_more;
        }
        state.used.set(end);
        if done {
            held.set(false);
            avail.set(avail.get().saturating_sub(1));
        }
        if n > 0 {
            Counters::bump(&self.counters.pool_received);
        }
        let users = state.users.get();
        state.users.set(users + 1);
        if users == 0 {
            Counters::bump(&self.counters.pool_in_use);
        }
        Ok(PooledBuf::lent(
            self.clone(),
            bid,
            start as usize,
            end as usize,
        ))
    }

    /// The kernel says it goes on filling buffer `bid` though by the pool's count its bytes are
    /// used up: its bytes may be elsewhere than the pool thinks. They are not handed out, and
    /// the buffer stays the kernel's, as it says.
    #[cold]
    fn disagree(&self, bid: u16, start: u32, n: u32) -> io::Error {
        io::Error::other(format!(
            "the kernel reported {n} bytes into buffer {bid} at offset {start} of {} and that \
             it goes on filling the buffer; the loop's count of its bytes says it is used up",
            self.size,
        ))
    }

    #[cold]
    fn not_in_ring(&self, bid: u16) -> io::Error {
        io::Error::other(format!(
            "the kernel completed a receive into buffer {bid}, which was not in the loop's \
             buffer ring"
        ))
    }

    /// A bundle on an incremental ring: the rest of buffer `first`, then whole buffers of the
    /// ring's next entries, the last one perhaps in part.
    ///
    /// # Safety
    ///
    /// As [`take_selected`](Self::take_selected).
    #[cold]
    unsafe fn take_incremental_bundle(
        self: &Rc<Self>,
        inc: &Incremental,
        first: u16,
        len: u32,
        flags: u32,
        mut each: impl FnMut(PooledBuf),
    ) -> io::Result<()> {
        let Free::Ring {
            entry_bid,
            bid_entry,
            ..
        } = &self.free
        else {
            unreachable!("an incremental pool is a ring");
        };
        Counters::bump(&self.counters.recv_bundles);
        let kernel_more = io_uring::cqueue::buffer_more(flags);
        let mut bid = first;
        let mut left = len;
        loop {
            let Some(state) = inc.parts.get(usize::from(bid)) else {
                return Err(self.not_in_ring(bid));
            };
            let start = state.used.get();
            let n = left.min(self.size - start);
            left -= n;
            each(self.take_part(inc, bid, start, n, kernel_more, left == 0)?);
            if left == 0 {
                return Ok(());
            }
            if start + n != self.size {
                // Bytes left over past a buffer that is not used up: not what the ring allows.
                return Err(io::Error::other(format!(
                    "the kernel reported {len} bytes from buffer {first}, more than the ring's \
                     buffers from there hold"
                )));
            }
            // A bundle goes on in the ring's next entry.
            let entry = bid_entry[usize::from(bid)].get().wrapping_add(1) & (self.count - 1);
            bid = entry_bid[usize::from(entry)].get();
        }
    }

    /// Takes a free buffer from the list (free-list pools); `None` if none is free.
    pub(crate) fn take_free(self: &Rc<Self>) -> Option<PooledBuf> {
        let Free::List(list) = &self.free else {
            return None;
        };
        let bid = list.borrow_mut().pop()?;
        Some(self.lend(bid, 0))
    }

    #[inline]
    fn lend(self: &Rc<Self>, bid: u16, len: usize) -> PooledBuf {
        Counters::bump(&self.counters.pool_in_use);
        PooledBuf::lent(self.clone(), bid, 0, len)
    }

    #[inline]
    pub(super) fn give_back(&self, bid: u16) {
        let b = usize::from(bid);
        if let Free::Ring {
            inc: Some(inc),
            in_ring,
            ..
        } = &self.free
            && let Some(parts) = inc.parts.get(b)
        {
            let users = parts.users.get();
            if users > 1 {
                parts.users.set(users - 1);
                return; // other parts of the buffer are still held
            }
            parts.users.set(0);
            let c = &self.counters.pool_in_use;
            c.set(c.get().saturating_sub(1));
            // (`in_ring` has an entry per buffer, as `parts` does.)
            if in_ring.get(b).is_some_and(Cell::get) {
                // The kernel goes on filling the rest of it. Readers waiting for a buffer are
                // told all the same: they look again at whether the pool is exhausted.
                self.wake_waiters();
                return;
            }
            parts.used.set(0);
            self.put_back(bid);
            return;
        }
        let c = &self.counters.pool_in_use;
        c.set(c.get().saturating_sub(1));
        self.put_back(bid);
    }

    /// Buffer `bid`, with no user left, goes back to the free buffers, and readers waiting for
    /// one are woken.
    fn put_back(&self, bid: u16) {
        match &self.free {
            // Back in the ring at the loop's next trip to the kernel (`refill`).
            Free::Ring { spare, .. } => spare.borrow_mut().push(bid),
            Free::List(list) => list.borrow_mut().push(bid),
        }
        self.wake_waiters();
    }

    /// Wakes the readers waiting for a buffer to come back.
    #[inline(always)]
    fn wake_waiters(&self) {
        if !self.waiters.borrow().is_empty() {
            self.wake_waiters_now();
        }
    }

    /// [`wake_waiters`](Self::wake_waiters) when some wait.
    #[cold]
    #[inline(never)]
    fn wake_waiters_now(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        // Contained: a waiter may be a foreign executor's waker (a `recv_pooled` it polls), and
        // a panic in its `wake` must neither skip the other waiters nor unwind into the code
        // that dropped the buffer (user code, or the loop's reap freeing queued buffers).
        waiters
            .into_iter()
            .for_each(crate::blocking::wake_contained);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::IoBuf;

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        for (count, size) in [(0, 4096), (3, 4096), (1000, 4096), (1024, 0)] {
            let e = check_config(count, size).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("recv_pool"), "{e}");
        }
        assert!(check_config(32768, 131072).is_ok());
        assert!(check_config(32768, 1 << 20).is_err());
        assert!(check_config(1, 1).is_ok());
    }

    #[test]
    fn a_list_pool_lends_every_buffer_once_and_takes_them_back() {
        let pool = Rc::new(Pool::with_list(4, 16, Rc::default()).unwrap());
        let bufs: Vec<_> = std::iter::from_fn(|| pool.take_free()).collect();
        assert_eq!(bufs.len(), 4);
        assert!(pool.exhausted());
        let mut ptrs: Vec<_> = bufs.iter().map(|b| b.base()).collect();
        ptrs.sort();
        ptrs.dedup();
        assert_eq!(ptrs.len(), 4, "two loans share a buffer");
        drop(bufs);
        assert!(!pool.exhausted());
        assert_eq!(pool.in_use(), 0);
    }

    /// The completion flag that says the kernel goes on filling the buffer.
    const BUF_MORE: u32 = 1 << 4;

    fn incremental(count: u16, size: u32) -> Rc<Pool> {
        let mut pool = Pool::with_ring(count, size, Rc::default()).unwrap();
        pool.set_incremental();
        Rc::new(pool)
    }

    /// Takes what a completion of `len` bytes naming `bid` reports, as the loop does.
    fn take(pool: &Rc<Pool>, bid: u16, len: u32, flags: u32) -> io::Result<Vec<PooledBuf>> {
        let mut parts = Vec::new();
        // SAFETY: no kernel here: the completions are made up, and nothing writes the memory.
        unsafe { pool.take_bundle(bid, len, flags, |b| parts.push(b)) }?;
        Ok(parts)
    }

    fn is_spare(pool: &Pool, bid: u16) -> bool {
        let Free::Ring { spare, .. } = &pool.free else {
            unreachable!()
        };
        spare.borrow().contains(&bid)
    }

    #[test]
    fn incremental_parts_follow_one_another_and_the_buffer_comes_back_after_the_last() {
        let pool = incremental(4, 16);
        let a = take(&pool, 0, 5, BUF_MORE).unwrap();
        let b = take(&pool, 0, 11, 0).unwrap(); // used up: the kernel is past it
        assert_eq!(b[0].stable_ptr(), a[0].stable_ptr().wrapping_add(5));
        assert_eq!((a[0].len(), b[0].len()), (5, 11));
        assert_eq!(pool.in_use(), 1, "two parts of one buffer");
        drop(a);
        assert!(!is_spare(&pool, 0), "a part is still held");
        drop(b);
        assert!(is_spare(&pool, 0));
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_part_of_a_buffer_still_in_the_ring_does_not_bring_it_back() {
        let pool = incremental(4, 16);
        drop(take(&pool, 0, 3, BUF_MORE).unwrap());
        assert!(!is_spare(&pool, 0), "the kernel goes on filling buffer 0");
        // An empty completion (end of stream) naming it, with the flag cleared as some kernels
        // do: the kernel did not move on, so neither does the pool.
        drop(take(&pool, 0, 0, 0).unwrap());
        assert!(!is_spare(&pool, 0));
        let c = take(&pool, 0, 4, BUF_MORE).unwrap();
        assert_eq!(c[0].stable_ptr(), pool.buffer_ptr(0).wrapping_add(3));
    }

    #[test]
    fn the_kernels_word_that_it_is_past_a_buffer_is_followed() {
        // A receive run by a kernel worker takes the whole buffer at once and says so: the
        // bytes are handed out and the buffer comes back once they are dropped.
        let pool = incremental(4, 16);
        let a = take(&pool, 0, 4, 0).unwrap();
        assert_eq!(a[0].stable_ptr(), pool.buffer_ptr(0));
        drop(a);
        assert!(is_spare(&pool, 0));
    }

    #[test]
    fn a_kernel_that_goes_on_filling_a_used_up_buffer_gets_an_error_not_bytes() {
        let pool = incremental(4, 16);
        drop(take(&pool, 0, 10, BUF_MORE).unwrap());
        let e = take(&pool, 0, 6, BUF_MORE).unwrap_err();
        assert!(e.to_string().contains("used up"), "{e}");
        assert!(!is_spare(&pool, 0), "the kernel said it still fills it");
        let e = take(&pool, 9, 1, 0).unwrap_err();
        assert!(
            e.to_string().contains("not in the loop's buffer ring"),
            "{e}"
        );
    }

    #[test]
    fn an_incremental_bundle_spans_the_rest_of_a_buffer_and_the_next_ones() {
        let pool = incremental(4, 16);
        drop(take(&pool, 0, 10, BUF_MORE).unwrap());
        // 6 bytes left in buffer 0, then all of buffer 1 and 2 bytes of buffer 2.
        let parts = take(&pool, 0, 24, BUF_MORE).unwrap();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [6, 16, 2]);
        assert_eq!(parts[1].stable_ptr(), pool.buffer_ptr(1));
        drop(parts);
        assert!(is_spare(&pool, 0) && is_spare(&pool, 1) && !is_spare(&pool, 2));
    }

    #[test]
    fn a_buffer_outlives_its_pool_handle() {
        let pool = Rc::new(Pool::with_list(2, 8, Rc::default()).unwrap());
        let mut buf = pool.take_free().unwrap();
        let (ptr, cap) = buf.spare();
        assert_eq!(cap, 8);
        // SAFETY: the buffer has 8 writable bytes.
        unsafe {
            ptr.copy_from_nonoverlapping(b"abcdefgh".as_ptr(), 8);
            buf.set_received(8);
        }
        drop(pool);
        buf.advance(3);
        assert_eq!(&buf[..], b"defgh");
        assert_eq!(buf.bytes_init(), 5);
    }
}
