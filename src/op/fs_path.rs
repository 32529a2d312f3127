//! Path ops (unlink, rmdir, rename, mkdir, link, symlink), `statx` and the file-range ops
//! (ftruncate, fallocate, sync_file_range). As in `fs.rs`, the uring half is a ring op and the
//! epoll half the plain syscall, which the driver runs on the blocking pool; an op whose opcode
//! this kernel lacks runs on the pool on uring too (`on_ring`).

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types};

use super::cvt;
use super::fs::FileFd;
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Operation};

const CWD: types::Fd = types::Fd(libc::AT_FDCWD);

/// Path ops without an fd.
pub(crate) enum PathOp {
    Unlink(CString),
    RmDir(CString),
    Rename(CString, CString),
    MkDir(CString, libc::mode_t),
    /// `HardLink(original, link)`.
    HardLink(CString, CString),
    /// `Symlink(target, link)`.
    Symlink(CString, CString),
}

// SAFETY: the SQE points at the CStrings owned by the (boxed) op.
unsafe impl Operation for PathOp {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        match self {
            PathOp::Unlink(p) => opcode::UnlinkAt::new(CWD, p.as_ptr()).build(),
            PathOp::RmDir(p) => opcode::UnlinkAt::new(CWD, p.as_ptr())
                .flags(libc::AT_REMOVEDIR)
                .build(),
            PathOp::Rename(from, to) => {
                opcode::RenameAt::new(CWD, from.as_ptr(), CWD, to.as_ptr()).build()
            }
            PathOp::MkDir(p, mode) => opcode::MkDirAt::new(CWD, p.as_ptr()).mode(*mode).build(),
            PathOp::HardLink(orig, link) => {
                opcode::LinkAt::new(CWD, orig.as_ptr(), CWD, link.as_ptr()).build()
            }
            PathOp::Symlink(target, link) => {
                opcode::SymlinkAt::new(CWD, target.as_ptr(), link.as_ptr()).build()
            }
        }
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        // SAFETY: every path is a valid NUL-terminated string.
        let ret = unsafe {
            match self {
                PathOp::Unlink(p) => libc::unlink(p.as_ptr()),
                PathOp::RmDir(p) => libc::rmdir(p.as_ptr()),
                PathOp::Rename(from, to) => libc::rename(from.as_ptr(), to.as_ptr()),
                PathOp::MkDir(p, mode) => libc::mkdir(p.as_ptr(), *mode),
                PathOp::HardLink(orig, link) => libc::link(orig.as_ptr(), link.as_ptr()),
                PathOp::Symlink(target, link) => libc::symlink(target.as_ptr(), link.as_ptr()),
            }
        };
        cvt(ret as isize)
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(|_| ())
    }
}

/// What `statx` looks at: a path (following a final symlink or not) or an open file.
pub(crate) enum StatTarget {
    Path { path: CString, follow: bool },
    File(FileFd),
}

/// What `Metadata` asks the kernel for: the basic fields, the birth time and the direct-I/O
/// alignment (Linux 6.1+; older kernels leave it out of the answer's mask).
const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME | libc::STATX_DIOALIGN;

/// `statx` of a path or an open file.
pub(crate) struct Statx {
    target: StatTarget,
    statx: libc::statx,
}

impl Statx {
    pub(crate) fn new(target: StatTarget) -> Self {
        Statx {
            target,
            // SAFETY: statx is plain data; all-zero is a valid value.
            statx: unsafe { std::mem::zeroed() },
        }
    }

    fn args(&self) -> (i32, *const libc::c_char, i32) {
        match &self.target {
            StatTarget::Path { path, follow } => {
                let flags = if *follow {
                    0
                } else {
                    libc::AT_SYMLINK_NOFOLLOW
                };
                (libc::AT_FDCWD, path.as_ptr(), flags)
            }
            StatTarget::File(fd) => (fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH),
        }
    }
}

// SAFETY: the SQE points at `statx` (a field of the boxed op) and at the op's own path or a
// static empty string.
unsafe impl Operation for Statx {
    type Output = io::Result<libc::statx>;

    fn sqe(&mut self) -> squeue::Entry {
        let (dirfd, path, flags) = self.args();
        let buf: *mut libc::statx = &mut self.statx;
        opcode::Statx::new(types::Fd(dirfd), path, buf.cast())
            .flags(flags)
            .mask(STATX_MASK)
            .build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let (dirfd, path, flags) = self.args();
        // SAFETY: `path` is NUL-terminated and `statx` a writable statx for the call.
        cvt(unsafe { libc::statx(dirfd, path, flags, STATX_MASK, &mut self.statx) } as isize)
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(|_| self.statx)
    }
}

/// The file-range ops of an open file.
pub(crate) enum RangeOp {
    /// `ftruncate` to this length (IORING_OP_FTRUNCATE, Linux 6.9).
    SetLen(u64),
    /// `fallocate(mode, offset, len)`.
    Allocate(i32, u64, u64),
    /// `sync_file_range(offset, len, flags)`.
    SyncRange(u64, u64, u32),
}

/// A file-range op on an open file.
pub(crate) struct FileRange {
    fd: FileFd,
    op: RangeOp,
}

impl FileRange {
    pub(crate) fn new(fd: FileFd, op: RangeOp) -> Self {
        FileRange { fd, op }
    }
}

fn off(n: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(n).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{n} is beyond the largest file offset ({})",
                libc::off_t::MAX
            ),
        )
    })
}

// SAFETY: these ops carry no pointers, only the fd, which the op keeps open.
unsafe impl Operation for FileRange {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let fd = types::Fd(self.fd.as_raw_fd());
        match self.op {
            RangeOp::SetLen(len) => opcode::Ftruncate::new(fd, len).build(),
            RangeOp::Allocate(mode, offset, len) => opcode::Fallocate::new(fd, len)
                .offset(offset)
                .mode(mode)
                .build(),
            RangeOp::SyncRange(offset, len, flags) => opcode::SyncFileRange::new(fd, len as u32)
                .offset(offset)
                .flags(flags)
                .build(),
        }
    }

    fn on_ring(&self) -> bool {
        match self.op {
            RangeOp::SetLen(_) => crate::backend::uring_features().ftruncate,
            // The ring's sync_file_range takes a 32-bit length.
            RangeOp::SyncRange(_, len, _) => len <= u64::from(u32::MAX),
            RangeOp::Allocate(..) => true,
        }
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: plain syscalls on an fd the op keeps open; no pointers.
        let ret = unsafe {
            match self.op {
                RangeOp::SetLen(len) => libc::ftruncate(fd, off(len)?),
                RangeOp::Allocate(mode, offset, len) => {
                    libc::fallocate(fd, mode, off(offset)?, off(len)?)
                }
                RangeOp::SyncRange(offset, len, flags) => {
                    libc::sync_file_range(fd, off(offset)?, off(len)?, flags)
                }
            }
        };
        cvt(ret as isize)
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(|_| ())
    }
}
