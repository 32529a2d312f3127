//! The first-come, first-served list of tasks waiting on one primitive.
//!
//! Every primitive of `sync` keeps its waiters here. A waiter is pushed at the back; a
//! notification unlinks the waiter at the front, marks it notified (with a value: a barrier's
//! index) and hands back its waker, which the primitive wakes once its state is no longer
//! borrowed. The waiter keeps its node until it observes the notification (`poll`) or is dropped
//! (`remove`, which says whether a notification was lost with it, so the primitive can pass it
//! on). Nodes live in a slab and link to each other by key: push, notify and remove are O(1)
//! and allocate nothing once the slab has grown to the most waiters at a time.

use std::marker::PhantomData;
use std::task::{Poll, Waker};

use slab::Slab;

/// No node: the end of the list, or a waiter that is not registered.
pub(super) const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node {
    /// `Some` while the waiter waits (a linked node); taken by the notification.
    waker: Option<Waker>,
    notified: bool,
    /// What the notifier handed over (a barrier's index).
    value: usize,
    prev: usize,
    next: usize,
}

/// Waiters in arrival order. `!Send` and `!Sync`, and so is every primitive that holds one: the
/// primitives serve the tasks of one loop.
#[derive(Debug)]
pub(super) struct WaitList {
    nodes: Slab<Node>,
    head: usize,
    tail: usize,
    /// Linked (not yet notified) waiters.
    waiting: usize,
    _local: PhantomData<*const ()>,
}

impl WaitList {
    #[inline]
    pub(super) const fn new() -> WaitList {
        WaitList {
            nodes: Slab::new(),
            head: NIL,
            tail: NIL,
            waiting: 0,
            _local: PhantomData,
        }
    }

    /// How many waiters wait and are not notified yet.
    #[inline]
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Adds a waiter at the back; its key, for `poll` and `remove`.
    #[inline]
    pub(super) fn push(&mut self, waker: &Waker) -> usize {
        let key = self.nodes.insert(Node {
            waker: Some(waker.clone()),
            notified: false,
            value: 0,
            prev: self.tail,
            next: NIL,
        });
        if self.tail == NIL {
            self.head = key;
        } else {
            self.nodes[self.tail].next = key;
        }
        self.tail = key;
        self.waiting += 1;
        key
    }

    #[inline]
    fn unlink(&mut self, key: usize) {
        let (prev, next) = (self.nodes[key].prev, self.nodes[key].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        self.waiting -= 1;
    }

    /// Notifies the waiter at the front with `value`. Returns its waker to wake (after the
    /// caller's borrow of its state ends), or `None` if nobody waits.
    #[inline]
    pub(super) fn notify_first(&mut self, value: usize) -> Option<Waker> {
        let key = self.head;
        if key == NIL {
            return None;
        }
        self.unlink(key);
        let node = &mut self.nodes[key];
        node.notified = true;
        node.value = value;
        node.waker.take()
    }

    /// The waiter `key` looks: `Ready(value)` (and its node is gone) if it was notified, else it
    /// keeps waiting, to be woken through `waker`.
    #[inline]
    pub(super) fn poll(&mut self, key: usize, waker: &Waker) -> Poll<usize> {
        let node = &mut self.nodes[key];
        if node.notified {
            let value = node.value;
            self.nodes.remove(key);
            return Poll::Ready(value);
        }
        match &node.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => node.waker = Some(waker.clone()),
        }
        Poll::Pending
    }

    /// The waiter `key` goes away (its future was dropped). Returns whether it had been notified
    /// and had not seen it yet: a notification the caller must pass on if it carried a duty.
    #[inline]
    pub(super) fn remove(&mut self, key: usize) -> bool {
        let notified = self.nodes[key].notified;
        if !notified {
            self.unlink(key);
        }
        self.nodes.remove(key);
        notified
    }
}
