//! One file per op family; each op implements both the uring and the epoll half of
//! [`Operation`](crate::driver::op::Operation) side by side.

/// Builds an SQE on a `SharedFd`: `$build` sees `$t`, the fd's slot in the ring's file table
/// (`types::Fixed`, a direct descriptor: `driver::uring::direct`) where it has one in the running
/// loop, else its fd number (`types::Fd`). The io-uring crate takes the two as different types,
/// so `$build` is written once and compiled for each.
macro_rules! sqe_fd {
    ($fd:expr, |$t:ident| $build:expr) => {
        match $fd.direct_slot() {
            Some(slot) => {
                let $t = io_uring::types::Fixed(slot);
                $build
            }
            None => {
                let $t = io_uring::types::Fd($fd.raw());
                $build
            }
        }
    };
}

pub(crate) mod fs;
pub(crate) mod fs_path;
pub(crate) mod msg;
pub(crate) mod poll;
pub(crate) mod pooled;
pub(crate) mod rw;
pub(crate) mod socket;
pub(crate) mod splice;

use std::cell::RefMut;
use std::io;
use std::rc::Rc;
use std::task::Context;

use crate::driver::DriverCell;
use crate::driver::fd::{MultiQueue, SharedFd};
use crate::driver::op::Deliver;
use crate::stats::Counters;

/// Arms a multishot op (`entry`) on `fd`, its completions going to `deliver`, which queues them
/// on the queue `queue` picks; the caller's waker waits there. `ends_with` is the error the kernel
/// would end the op with before its first completion (`ENOBUFS` for a receive from the pool,
/// `ECANCELED` otherwise), which fault injection uses. `rearm`: a new arm after the first counts
/// in `Stats::multishot_rearms`.
pub(crate) fn arm_multishot<T>(
    fd: &SharedFd,
    driver: &Rc<DriverCell>,
    queue: for<'a> fn(&'a SharedFd) -> RefMut<'a, MultiQueue<T>>,
    entry: io_uring::squeue::Entry,
    (deliver, ends_with): (Deliver, i32),
    rearm: bool,
    cx: &Context<'_>,
) -> io::Result<()> {
    let rearm = rearm && queue(fd).arms > 0;
    // No borrow of the queue while pushing: a full SQ makes the push reap completions, which
    // deliver into it.
    let key = driver.submit_multishot(entry, fd, deliver, ends_with)?;
    if rearm {
        Counters::bump(&driver.counters().multishot_rearms);
    }
    let mut queue = queue(fd);
    queue.armed(key, driver);
    queue.wait(cx.waker());
    Ok(())
}

/// Turns a syscall's return value into a CQE-like result.
#[inline]
pub(crate) fn cvt(ret: isize) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// Lengths beyond what one op can move are clamped; callers loop for the rest.
#[inline]
pub(crate) fn clamp_len(len: usize) -> u32 {
    len.min(i32::MAX as usize) as u32
}
