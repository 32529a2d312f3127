//! The local ready queue: ids of woken tasks, first in first out, on plain cells.
//!
//! The loop touches it a few times per message (a wake pushes, the turn pops, `has_work` looks),
//! so it is a ring of a power-of-two length with free-running `head` and `tail` counters: a push
//! is a store and an increment, a pop a load and an increment, and no access takes a `RefCell`
//! borrow. No method hands out a reference into the ring or calls code that could reach the
//! queue while it holds one (ids are plain `u64`s; the only call out is to the allocator, when
//! the ring grows), so one thread's accesses never overlap.

use std::cell::{Cell, UnsafeCell};

/// The ring's first length (a power of two): 64 ids, a turn's poll budget.
const FIRST_LEN: usize = 64;

/// A FIFO of task ids for one loop's thread.
pub(crate) struct ReadyQueue {
    /// The ring: a power of two long; the ids sit at `head..tail` (masked).
    slots: UnsafeCell<Box<[u64]>>,
    /// Counts pops so far (wrapping); the next id to pop is at `head & mask`.
    head: Cell<usize>,
    /// Counts pushes so far (wrapping); the next push goes to `tail & mask`.
    tail: Cell<usize>,
}

impl Default for ReadyQueue {
    fn default() -> Self {
        ReadyQueue {
            slots: UnsafeCell::new(vec![0; FIRST_LEN].into_boxed_slice()),
            head: Cell::new(0),
            tail: Cell::new(0),
        }
    }
}

impl ReadyQueue {
    /// How many ids wait.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.tail.get().wrapping_sub(self.head.get())
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.get() == self.tail.get()
    }

    /// Appends `id`.
    #[inline]
    pub(crate) fn push_back(&self, id: u64) {
        let tail = self.tail.get();
        if tail.wrapping_sub(self.head.get()) == self.capacity() {
            self.grow();
        }
        let tail = self.tail.get();
        // SAFETY: no reference into `slots` lives outside a method of this queue, and none of
        // them calls code that could reach the queue while it holds one (see the module docs):
        // this one is the only reference now.
        let slots = unsafe { &mut *self.slots.get() };
        let mask = slots.len() - 1;
        // SAFETY: `slots` is never empty (a power of two long), so the masked index is in it.
        *unsafe { slots.get_unchecked_mut(tail & mask) } = id;
        self.tail.set(tail.wrapping_add(1));
    }

    #[inline]
    fn capacity(&self) -> usize {
        // SAFETY: as in `push_back`: the only reference into `slots` now.
        unsafe { &*self.slots.get() }.len()
    }

    /// Takes the oldest id.
    #[inline]
    pub(crate) fn pop_front(&self) -> Option<u64> {
        let head = self.head.get();
        if head == self.tail.get() {
            return None;
        }
        // SAFETY: as in `push_back`: the only reference into `slots` now.
        let slots = unsafe { &*self.slots.get() };
        // SAFETY: `slots` is never empty (a power of two long), so the masked index is in it.
        let id = *unsafe { slots.get_unchecked(head & (slots.len() - 1)) };
        self.head.set(head.wrapping_add(1));
        Some(id)
    }

    /// Forgets every id.
    pub(crate) fn clear(&self) {
        self.head.set(self.tail.get());
    }

    /// Doubles the ring, keeping the ids in order (kept out of line: the push stays small).
    #[cold]
    #[inline(never)]
    fn grow(&self) {
        let bigger = self.capacity() * 2;
        // The ids are copied out in order (no reference into `slots` is held while the new
        // ring is allocated), then the longer ring holds them from its start.
        let mut ids = Vec::with_capacity(bigger);
        while let Some(id) = self.pop_front() {
            ids.push(id);
        }
        let len = ids.len();
        ids.resize(bigger.max(len.next_power_of_two()), 0);
        let old = std::mem::replace(
            // SAFETY: as in `push_back`: the only reference into `slots` now.
            unsafe { &mut *self.slots.get() },
            ids.into_boxed_slice(),
        );
        self.head.set(0);
        self.tail.set(len);
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_out_in_order_across_growth_and_wrap() {
        let q = ReadyQueue::default();
        let mut expect = std::collections::VecDeque::new();
        let mut next = 0u64;
        // Interleaved pushes and pops wrap the ring; bursts grow it.
        for round in 0..50 {
            for _ in 0..(round * 7 % 150) {
                q.push_back(next);
                expect.push_back(next);
                next += 1;
            }
            for _ in 0..(round * 5 % 120) {
                assert_eq!(q.pop_front(), expect.pop_front());
            }
            assert_eq!(q.len(), expect.len());
            assert_eq!(q.is_empty(), expect.is_empty());
        }
        while let Some(id) = expect.pop_front() {
            assert_eq!(q.pop_front(), Some(id));
        }
        assert_eq!(q.pop_front(), None);
        q.push_back(1);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
    }
}
