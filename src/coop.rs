//! Cooperative budget: how many ops one task poll may complete without ever waiting.
//!
//! On the epoll backend an op whose data is already there completes inside the poll that started
//! it. A task serving a fast peer could then loop forever without returning `Pending`, starving
//! every other task. Each poll gets a budget; once it is spent, ops yield to the loop first.

use std::cell::Cell;

/// Ops one task poll may complete immediately.
const BUDGET: u32 = 128;

thread_local! {
    static REMAINING: Cell<u32> = const { Cell::new(BUDGET) };
}

/// Called before each task (or main future) poll.
pub(crate) fn reset() {
    REMAINING.with(|r| r.set(BUDGET));
}

/// Takes one unit of budget; false when the poll has spent it all and the op must yield.
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
