//! The system calls behind a child's wait: `pidfd_open`, `waitid` without reaping, `waitpid`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// `pidfd_open(pid)`: `None` where it fails (`ENOSYS` before 5.3, `EPERM` from a seccomp
/// filter, `EMFILE` with a full fd table): the child is running by then, so the caller falls
/// back to waiting without a pidfd rather than failing.
pub(super) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new fd (close-on-exec, as pidfd_open makes them) that nobody else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Blocks until the child `pid` has exited, without reaping it (`waitid` with `WNOWAIT`): the
/// loop's thread reaps it and records the status, so the pid stays the child's until then.
pub(super) fn wait_exited(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: `info` is a valid out pointer for the call.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `waitpid(pid, options)`: the status if the child was reaped.
pub(super) fn waitpid(pid: u32, options: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer for the call.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, options) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((r != 0).then(|| ExitStatus::from_raw(status)));
    }
}
