//! The core of `Queue`, `PriorityQueue` and `LifoQueue`: asyncio's queues between the tasks of
//! one loop.
//!
//! One core does the waiting for all three; they differ only in the order items leave
//! (`Store`). The core keeps two promises apart from the items: a `get` that was woken for an
//! item is owed one (`get_owed`), a `put` that was woken for a free slot is owed one
//! (`put_owed`). `get_nowait` and a new `get` take only items nobody is owed, `put_nowait` and a
//! new `put` only slots nobody is owed, so nobody overtakes a waiter; a woken waiter that is
//! dropped gives its due back and the next waiter is woken for it (`rebalance`).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::wait_list::{NIL, WaitList};

/// The order items leave a queue in.
pub(super) trait Store {
    type Item;
    fn push(&mut self, item: Self::Item);
    fn pop(&mut self) -> Option<Self::Item>;
    fn len(&self) -> usize;
}

/// First in, first out.
impl<T> Store for VecDeque<T> {
    type Item = T;
    fn push(&mut self, item: T) {
        self.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.pop_front()
    }
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
}

/// Last in, first out.
impl<T> Store for Vec<T> {
    type Item = T;
    fn push(&mut self, item: T) {
        Vec::push(self, item);
    }
    fn pop(&mut self) -> Option<T> {
        Vec::pop(self)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// Smallest first.
impl<T: Ord> Store for BinaryHeap<Reverse<T>> {
    type Item = T;
    fn push(&mut self, item: T) {
        BinaryHeap::push(self, Reverse(item));
    }
    fn pop(&mut self) -> Option<T> {
        BinaryHeap::pop(self).map(|Reverse(item)| item)
    }
    fn len(&self) -> usize {
        BinaryHeap::len(self)
    }
}

pub(super) struct Core<S> {
    state: RefCell<State<S>>,
}

struct State<S> {
    items: S,
    maxsize: usize,
    getters: WaitList,
    putters: WaitList,
    /// Getters woken for an item that have not taken it yet: that many of `items` are theirs.
    get_owed: usize,
    /// Putters woken for a slot that have not filled it yet.
    put_owed: usize,
    /// Items put and not yet marked done with `task_done`.
    unfinished: usize,
    joiners: WaitList,
}

/// Up to one getter and one putter to wake once the state is no longer borrowed.
type Wakes = (Option<Waker>, Option<Waker>);

#[inline]
fn wake((a, b): Wakes) {
    if let Some(w) = a {
        w.wake();
    }
    if let Some(w) = b {
        w.wake();
    }
}

impl<S: Store> State<S> {
    /// Items that a new `get` may take.
    #[inline]
    fn available(&self) -> usize {
        self.items.len() - self.get_owed
    }

    #[inline]
    fn full(&self) -> bool {
        self.maxsize > 0 && self.available() + self.put_owed >= self.maxsize
    }

    #[inline]
    fn push(&mut self, item: S::Item) {
        self.items.push(item);
        self.unfinished += 1;
    }

    /// Wakes a getter if an item is free for it and a putter if a slot is. One operation frees
    /// at most one of each.
    #[inline]
    fn rebalance(&mut self) -> Wakes {
        let mut wakes = (None, None);
        if self.getters.waiting() == 0 && self.putters.waiting() == 0 {
            return wakes;
        }
        if self.available() > 0 {
            wakes.0 = self.getters.notify_first(0);
            if wakes.0.is_some() {
                self.get_owed += 1;
            }
        }
        if !self.full() {
            wakes.1 = self.putters.notify_first(0);
            if wakes.1.is_some() {
                self.put_owed += 1;
            }
        }
        wakes
    }

    /// Takes an item someone may take (one owed to the caller, or a free one).
    #[inline]
    fn take(&mut self) -> (S::Item, Wakes) {
        let Some(item) = self.items.pop() else {
            unreachable!("a queue had fewer items than its getters were owed");
        };
        (item, self.rebalance())
    }
}

impl<S: Store + Default> Core<S> {
    pub(super) fn new(maxsize: usize) -> Core<S> {
        Core {
            state: RefCell::new(State {
                items: S::default(),
                maxsize,
                getters: WaitList::new(),
                putters: WaitList::new(),
                get_owed: 0,
                put_owed: 0,
                unfinished: 0,
                joiners: WaitList::new(),
            }),
        }
    }
}

impl<S: Store> Core<S> {
    pub(super) fn put(&self, item: S::Item) -> Put<'_, S> {
        Put {
            core: self,
            item: Some(item),
            key: NIL,
        }
    }

    pub(super) fn get(&self) -> Get<'_, S> {
        Get {
            core: self,
            key: NIL,
        }
    }

    pub(super) fn put_nowait(&self, item: S::Item) -> Result<(), QueueFull<S::Item>> {
        let wakes = {
            let mut s = self.state.borrow_mut();
            if s.full() {
                return Err(QueueFull(item));
            }
            s.push(item);
            s.rebalance()
        };
        wake(wakes);
        Ok(())
    }

    pub(super) fn get_nowait(&self) -> Result<S::Item, QueueEmpty> {
        let (item, wakes) = {
            let mut s = self.state.borrow_mut();
            if s.available() == 0 {
                return Err(QueueEmpty);
            }
            s.take()
        };
        wake(wakes);
        Ok(item)
    }

    pub(super) fn task_done(&self) -> Result<(), TaskDoneError> {
        let n = {
            let mut s = self.state.borrow_mut();
            if s.unfinished == 0 {
                return Err(TaskDoneError);
            }
            s.unfinished -= 1;
            if s.unfinished > 0 {
                return Ok(());
            }
            s.joiners.waiting()
        };
        for _ in 0..n {
            let waker = self.state.borrow_mut().joiners.notify_first(0);
            match waker {
                Some(w) => w.wake(),
                None => break,
            }
        }
        Ok(())
    }

    pub(super) fn join(&self) -> Join<'_, S> {
        Join {
            core: self,
            key: NIL,
        }
    }

    pub(super) fn qsize(&self) -> usize {
        self.state.borrow().available()
    }

    pub(super) fn full(&self) -> bool {
        self.state.borrow().full()
    }

    pub(super) fn maxsize(&self) -> usize {
        self.state.borrow().maxsize
    }

    pub(super) fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct(name)
            .field("qsize", &s.available())
            .field("maxsize", &s.maxsize)
            .field("getters", &s.getters.waiting())
            .field("putters", &s.putters.waiting())
            .field("unfinished", &s.unfinished)
            .finish()
    }
}

pub(super) struct Put<'a, S: Store> {
    core: &'a Core<S>,
    item: Option<S::Item>,
    key: usize,
}

// The item is moved in and out, never pinned.
impl<S: Store> Unpin for Put<'_, S> {}

impl<S: Store> Future for Put<'_, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let wakes = {
            let mut s = this.core.state.borrow_mut();
            if this.key == NIL {
                if s.full() {
                    this.key = s.putters.push(cx.waker());
                    return Poll::Pending;
                }
            } else {
                if s.putters.poll(this.key, cx.waker()).is_pending() {
                    return Poll::Pending;
                }
                this.key = NIL;
                s.put_owed -= 1;
            }
            let Some(item) = this.item.take() else {
                unreachable!("a queue's put future was polled after it completed");
            };
            s.push(item);
            s.rebalance()
        };
        wake(wakes);
        Poll::Ready(())
    }
}

impl<S: Store> Drop for Put<'_, S> {
    fn drop(&mut self) {
        if self.key == NIL {
            return;
        }
        let wakes = {
            let mut s = self.core.state.borrow_mut();
            if !s.putters.remove(self.key) {
                return;
            }
            // Woken for a slot it will not fill: the next putter gets it.
            s.put_owed -= 1;
            s.rebalance()
        };
        wake(wakes);
    }
}

pub(super) struct Get<'a, S: Store> {
    core: &'a Core<S>,
    key: usize,
}

impl<S: Store> Future for Get<'_, S> {
    type Output = S::Item;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<S::Item> {
        let this = self.get_mut();
        let (item, wakes) = {
            let mut s = this.core.state.borrow_mut();
            if this.key == NIL {
                if s.available() == 0 {
                    this.key = s.getters.push(cx.waker());
                    return Poll::Pending;
                }
            } else {
                if s.getters.poll(this.key, cx.waker()).is_pending() {
                    return Poll::Pending;
                }
                this.key = NIL;
                s.get_owed -= 1;
            }
            s.take()
        };
        wake(wakes);
        Poll::Ready(item)
    }
}

impl<S: Store> Drop for Get<'_, S> {
    fn drop(&mut self) {
        if self.key == NIL {
            return;
        }
        let wakes = {
            let mut s = self.core.state.borrow_mut();
            if !s.getters.remove(self.key) {
                return;
            }
            // Woken for an item it will not take: the item stays, the next getter gets it.
            s.get_owed -= 1;
            s.rebalance()
        };
        wake(wakes);
    }
}

pub(super) struct Join<'a, S: Store> {
    core: &'a Core<S>,
    key: usize,
}

impl<S: Store> Future for Join<'_, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut s = this.core.state.borrow_mut();
        if this.key == NIL {
            if s.unfinished == 0 {
                return Poll::Ready(());
            }
            this.key = s.joiners.push(cx.waker());
            return Poll::Pending;
        }
        let seen = s.joiners.poll(this.key, cx.waker());
        if seen.is_ready() {
            this.key = NIL;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<S: Store> Drop for Join<'_, S> {
    fn drop(&mut self) {
        if self.key != NIL {
            // Every joiner is woken together: nothing to pass on.
            self.core.state.borrow_mut().joiners.remove(self.key);
        }
    }
}

/// `put_nowait` found the queue full; the item is handed back.
#[derive(Clone, PartialEq, Eq)]
pub struct QueueFull<T>(pub T);

impl<T> QueueFull<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueueFull(..)")
    }
}

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue is full: await put() to wait for a free slot, or get items first")
    }
}

impl<T> std::error::Error for QueueFull<T> {}

/// `get_nowait` found no item to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEmpty;

impl fmt::Display for QueueEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue is empty: await get() to wait for an item")
    }
}

impl std::error::Error for QueueEmpty {}

/// `task_done` was called more times than items were put (asyncio's `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "task_done() called more times than items were put: call it once per item taken",
        )
    }
}

impl std::error::Error for TaskDoneError {}
