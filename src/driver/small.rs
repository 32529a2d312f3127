//! Two small containers for per-fd state, which every connection of a server pays for: each holds
//! its first element inline and allocates only for more (boxed, so the container itself stays a
//! pointer wider than its first element), and frees that allocation once drained.

use std::collections::VecDeque;
use std::task::Waker;

/// Wakers to wake together; an equivalent waker is kept once.
#[derive(Debug, Default)]
pub(crate) struct WakerList {
    first: Option<Waker>,
    // Boxed on purpose: a pointer rather than a Vec's three words in every fd's state.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<Waker>>>,
}

impl WakerList {
    /// Adds `waker` unless an equivalent one is there already.
    #[inline]
    pub(crate) fn add(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                let rest = self.rest.get_or_insert_with(Box::default);
                if !rest.iter().any(|w| w.will_wake(waker)) {
                    rest.push(waker.clone());
                }
            }
        }
    }

    /// Wakes and forgets every waker.
    #[inline]
    pub(crate) fn wake_all(&mut self) {
        // Contained: a foreign waker's panic must not skip the others (`wake_contained`).
        if let Some(w) = self.first.take() {
            crate::blocking::wake_contained(w);
        }
        if self.rest.is_some() {
            self.wake_rest();
        }
    }

    /// `wake_all` of the wakers past the first (out of line: most lists hold one).
    #[cold]
    #[inline(never)]
    fn wake_rest(&mut self) {
        if let Some(rest) = self.rest.take() {
            rest.into_iter().for_each(crate::blocking::wake_contained);
        }
    }

    /// Forgets every waker without waking it.
    pub(crate) fn clear(&mut self) {
        self.first = None;
        self.rest = None;
    }
}

/// A FIFO queue.
#[derive(Debug)]
pub(crate) struct SmallQueue<T> {
    /// The oldest item.
    head: Option<T>,
    // Boxed on purpose: a pointer rather than a VecDeque's four words in every fd's state.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<T>>>,
}

impl<T> Default for SmallQueue<T> {
    fn default() -> Self {
        SmallQueue {
            head: None,
            rest: None,
        }
    }
}

impl<T> SmallQueue<T> {
    #[inline]
    pub(crate) fn push_back(&mut self, item: T) {
        if self.head.is_none() {
            self.head = Some(item);
        } else {
            self.push_behind(item);
        }
    }

    /// `push_back` behind the inline head (out of line: the common queue holds one item).
    #[inline(never)]
    fn push_behind(&mut self, item: T) {
        self.rest.get_or_insert_with(Box::default).push_back(item);
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.rest.is_none() {
            // The common case: at most the one inline item.
            return self.head.take();
        }
        let item = self.head.take()?;
        if let Some(rest) = &mut self.rest {
            self.head = rest.pop_front();
            if rest.is_empty() {
                self.rest = None;
            }
        }
        Some(item)
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.head.as_mut()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// Whether fewer than `bound` items are queued: with the common queue of at most its
    /// inline item, a compare against a constant `bound` that folds away.
    #[inline]
    pub(crate) fn len_below(&self, bound: usize) -> bool {
        match &self.rest {
            None => usize::from(self.head.is_some()) < bound,
            Some(rest) => usize::from(self.head.is_some()) + rest.len() < bound,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_fifo_order_across_its_inline_head() {
        let mut q = SmallQueue::default();
        for i in 0..5 {
            q.push_back(i);
        }
        assert_eq!(q.len(), 5);
        assert!(q.len_below(6) && !q.len_below(5));
        assert_eq!(q.pop_front(), Some(0));
        q.push_back(5);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(rest, [1, 2, 3, 4, 5]);
        assert!(q.is_empty());
        assert!(q.rest.is_none(), "a drained queue holds no allocation");
    }
}
