//! One file per op family; each op implements both the uring and the epoll half of
//! [`Operation`](crate::driver::op::Operation) side by side.

pub(crate) mod fs;
pub(crate) mod msg;
pub(crate) mod poll;
pub(crate) mod pooled;
pub(crate) mod rw;
pub(crate) mod socket;

use std::io;

/// Turns a syscall's return value into a CQE-like result.
pub(crate) fn cvt(ret: isize) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// Lengths beyond what one op can move are clamped; callers loop for the rest.
pub(crate) fn clamp_len(len: usize) -> u32 {
    len.min(i32::MAX as usize) as u32
}
