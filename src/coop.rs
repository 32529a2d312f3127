//! Cooperative budget: how many ops one task poll may complete without ever waiting.
//!
//! On the epoll backend an op whose data is already there completes inside the poll that started
//! it. A task serving a fast peer could then loop forever without returning `Pending`, starving
//! every other task. Each poll gets a budget; once it is spent, ops yield to the loop first.
//! Futures that can be ready at once without an op (an elapsed timer, readiness already seen
//! by an `AsyncFd`) spend it too, through [`poll_proceed`], as tokio's do.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakers of futures that called `yield_now` (or found the budget spent): the running loop's
/// list, woken after its next look at I/O, timers and wakes from other threads.
pub(crate) type Yielded = Rc<RefCell<Vec<Waker>>>;

/// Ops one task poll may complete immediately.
const BUDGET: u32 = 128;

thread_local! {
    static REMAINING: Cell<u32> = const { Cell::new(BUDGET) };
    /// The running loop's yield list (entered and left with the loop).
    static YIELDED: RefCell<Option<Yielded>> = const { RefCell::new(None) };
}

/// Makes `list` the running loop's yield list on this thread (`None`: no loop runs here).
pub(crate) fn set_yielded(list: Option<Yielded>) {
    let _ = YIELDED.try_with(|y| *y.borrow_mut() = list);
}

/// Parks `waker` until the running loop has next looked at I/O, timers and wakes from other
/// threads (`yield_now`). False outside a loop: the caller then wakes it at once.
pub(crate) fn defer_yield(waker: &Waker) -> bool {
    YIELDED
        .try_with(|y| match &*y.borrow() {
            Some(list) => {
                list.borrow_mut().push(waker.clone());
                true
            }
            None => false,
        })
        .unwrap_or(false)
}

/// Called before each task (or main future) poll (inline in the loop's turn: it runs per poll).
#[inline]
pub(crate) fn reset() {
    REMAINING.with(|r| r.set(BUDGET));
}

/// Takes one unit of budget; false when the poll has spent it all and the op must yield.
#[inline]
pub(crate) fn proceed() -> bool {
    REMAINING.with(|r| {
        let left = r.get();
        if left == 0 {
            false
        } else {
            r.set(left - 1);
            true
        }
    })
}

/// For a future about to complete without waiting (an elapsed timer, readiness already seen):
/// `Ready`, taking one unit of budget, while this task poll has some; once it is spent,
/// `Pending`, with the waker parked until the loop has looked at I/O, timers and other threads
/// (as `yield_now`). Outside a loop always `Ready`: nothing would renew the budget there.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let in_loop = YIELDED.try_with(|y| y.borrow().is_some()).unwrap_or(false);
    if !in_loop || proceed() {
        return Poll::Ready(());
    }
    if !defer_yield(cx.waker()) {
        cx.waker().wake_by_ref();
    }
    Poll::Pending
}
