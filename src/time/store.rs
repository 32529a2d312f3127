//! The timer store: deadlines and the wakers to call when they pass. Pure data, no syscalls.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use std::time::Instant;

/// Identifies one armed timer; unique for the store's life.
pub(crate) type TimerKey = (Instant, u64);

/// Armed timers ordered by deadline, ties broken by arming order.
#[derive(Debug)]
pub(crate) struct TimerStore {
    timers: BTreeMap<TimerKey, Waker>,
    /// The earliest deadline armed (the first key's), kept beside the map in a cell the loop
    /// shares (`first_cell`): the loop looks at it twice a turn, without borrowing the store.
    first: Rc<Cell<Option<Instant>>>,
    next_id: u64,
    /// Unique in the process: a timer armed from a `Send` handle finds its own store by it.
    store_id: u64,
}

impl Default for TimerStore {
    fn default() -> Self {
        static NEXT_STORE: AtomicU64 = AtomicU64::new(0);
        TimerStore {
            timers: BTreeMap::new(),
            first: Rc::new(Cell::new(None)),
            next_id: 0,
            store_id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl TimerStore {
    /// This store's id, unique in the process.
    #[allow(dead_code)]
    pub(crate) fn store_id(&self) -> u64 {
        self.store_id
    }

    /// Arms a timer; `waker` is woken once `deadline` has passed.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let key = (deadline, self.next_id);
        self.next_id += 1;
        self.timers.insert(key, waker);
        if self.first.get().is_none_or(|f| deadline < f) {
            self.first.set(Some(deadline));
        }
        key
    }

    /// Replaces the waker of an armed timer; false if the timer is no longer armed.
    pub(crate) fn update_waker(&mut self, key: &TimerKey, waker: &Waker) -> bool {
        match self.timers.get_mut(key) {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Disarms a timer (no effect if it fired already).
    pub(crate) fn remove(&mut self, key: &TimerKey) {
        if self.timers.remove(key).is_some() && self.first.get() == Some(key.0) {
            self.first.set(self.first_in_map());
        }
    }

    fn first_in_map(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((d, _), _)| *d)
    }

    /// The earliest deadline still armed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.first.get()
    }

    /// The cell that holds `next_deadline`, for the loop to read without borrowing the store.
    pub(crate) fn first_cell(&self) -> Rc<Cell<Option<Instant>>> {
        self.first.clone()
    }

    /// Removes every timer whose deadline is at or before `now` and appends its waker to `out`,
    /// earliest first.
    pub(crate) fn fire(&mut self, now: Instant, out: &mut Vec<Waker>) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        self.first.set(self.first_in_map());
    }

    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.timers.clear();
        self.first.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct Mark(AtomicUsize, usize, Arc<std::sync::Mutex<Vec<usize>>>);
    impl Wake for Mark {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.2.lock().unwrap().push(self.1);
        }
    }

    fn waker(id: usize, log: &Arc<std::sync::Mutex<Vec<usize>>>) -> Waker {
        Waker::from(Arc::new(Mark(AtomicUsize::new(0), id, log.clone())))
    }

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut store = TimerStore::default();
        let t0 = Instant::now();
        store.insert(t0 + Duration::from_millis(30), waker(3, &log));
        store.insert(t0 + Duration::from_millis(10), waker(1, &log));
        store.insert(t0 + Duration::from_millis(20), waker(2, &log));
        assert_eq!(store.next_deadline(), Some(t0 + Duration::from_millis(10)));

        let mut out = Vec::new();
        store.fire(t0 + Duration::from_millis(9), &mut out);
        assert!(out.is_empty(), "nothing is due before the first deadline");
        store.fire(t0 + Duration::from_millis(20), &mut out);
        out.drain(..).for_each(Waker::wake);
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn removed_timers_never_fire_and_ties_keep_arming_order() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut store = TimerStore::default();
        let t = Instant::now();
        let a = store.insert(t, waker(1, &log));
        store.insert(t, waker(2, &log));
        store.insert(t, waker(3, &log));
        store.remove(&a);
        assert!(!store.update_waker(&a, &waker(9, &log)));
        let mut out = Vec::new();
        store.fire(t, &mut out);
        out.drain(..).for_each(Waker::wake);
        assert_eq!(*log.lock().unwrap(), vec![2, 3]);
        assert!(store.is_empty());
        assert_eq!(store.next_deadline(), None);
    }

    #[test]
    fn next_deadline_follows_inserts_removals_fires_and_clear() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut store = TimerStore::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let late = store.insert(t0 + ms(30), waker(3, &log));
        assert_eq!(store.next_deadline(), Some(t0 + ms(30)));
        let early = store.insert(t0 + ms(10), waker(1, &log));
        let tie = store.insert(t0 + ms(10), waker(2, &log));
        store.insert(t0 + ms(20), waker(4, &log));
        assert_eq!(store.next_deadline(), Some(t0 + ms(10)));
        // Removing one of two timers at the earliest deadline leaves it; the other moves it on.
        store.remove(&early);
        assert_eq!(store.next_deadline(), Some(t0 + ms(10)));
        store.remove(&tie);
        assert_eq!(store.next_deadline(), Some(t0 + ms(20)));
        // Removing a later timer, or one already gone, leaves it too.
        store.remove(&late);
        store.remove(&early);
        assert_eq!(store.next_deadline(), Some(t0 + ms(20)));
        store.insert(t0 + ms(40), waker(5, &log));
        let mut out = Vec::new();
        store.fire(t0 + ms(25), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(store.next_deadline(), Some(t0 + ms(40)));
        store.clear();
        assert_eq!(store.next_deadline(), None);
    }
}
