//! File and path ops. The uring half is a ring op; the epoll half is the plain syscall, which the
//! driver runs on the blocking pool (a regular file is always "ready", so epoll cannot wait on it).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::{clamp_len, cvt};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Operation};

/// A file's fd, shared with its in-flight ops (which may run on a pool thread) so it is closed
/// only after the last of them.
pub(crate) type FileFd = Arc<OwnedFd>;

fn fd_of(fd: &FileFd) -> types::Fd {
    types::Fd(fd.as_raw_fd())
}

/// Opens (or creates) a path.
pub(crate) struct OpenAt {
    path: CString,
    flags: i32,
    mode: libc::mode_t,
}

impl OpenAt {
    pub(crate) fn new(path: CString, flags: i32, mode: libc::mode_t) -> Self {
        OpenAt {
            path,
            flags: flags | libc::O_CLOEXEC,
            mode,
        }
    }
}

// SAFETY: the SQE points at `path`, a CString owned by the op (its heap storage does not move).
unsafe impl Operation for OpenAt {
    type Output = io::Result<OwnedFd>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        // SAFETY: `path` is a valid NUL-terminated string.
        cvt(
            unsafe { libc::open(self.path.as_ptr(), self.flags, self.mode as libc::c_uint) }
                as isize,
        )
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        // SAFETY: a successful open returns a new fd that nobody else owns.
        res.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    fn orphaned(self, res: io::Result<u32>) {
        drop(self.complete(res)); // closes the fd nobody will see
    }
}

/// How a read or write at an offset reaches the kernel: `fixed` is the index of a registered
/// buffer (`READ_FIXED` / `WRITE_FIXED` on uring); `direct` says the file is open with
/// `O_DIRECT`, whose reads wait for the device even with `RWF_NOWAIT` (so never tried inline).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Access {
    pub(crate) fixed: Option<u16>,
    pub(crate) direct: bool,
}

/// Reads at an offset into a buffer, from its start up to its capacity.
pub(crate) struct ReadAt<B> {
    fd: FileFd,
    buf: B,
    pos: u64,
    access: Access,
}

impl<B> ReadAt<B> {
    pub(crate) fn new(fd: FileFd, buf: B, pos: u64, access: Access) -> Self {
        ReadAt {
            fd,
            buf,
            pos,
            access,
        }
    }
}

// SAFETY: the SQE points at `buf`'s stable storage, owned by the op.
unsafe impl<B: IoBufMut> Operation for ReadAt<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_total());
        let ptr = self.buf.stable_mut_ptr();
        match self.access.fixed {
            Some(index) => opcode::ReadFixed::new(fd_of(&self.fd), ptr, len, index)
                .offset(self.pos)
                .build(),
            None => opcode::Read::new(fd_of(&self.fd), ptr, len)
                .offset(self.pos)
                .build(),
        }
    }

    fn uses_fixed_buffer(&self) -> bool {
        self.access.fixed.is_some()
    }

    fn submit_at_once(&self) -> bool {
        self.access.direct
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_total()) as usize;
        // SAFETY: the buffer is writable for `len <= bytes_total` bytes.
        cvt(unsafe {
            libc::pread(
                self.fd.as_raw_fd(),
                self.buf.stable_mut_ptr().cast(),
                len,
                self.pos as libc::off_t,
            )
        })
    }

    fn try_nowait(&mut self) -> Option<io::Result<u32>> {
        if self.access.direct {
            return None; // a direct read waits for the device whatever the flags say
        }
        let len = clamp_len(self.buf.bytes_total()) as usize;
        let iov = libc::iovec {
            iov_base: self.buf.stable_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: `iov` describes `len <= bytes_total` writable bytes of the op's buffer.
        // RWF_NOWAIT makes the read fail with EAGAIN rather than wait for the disk.
        let res = cvt(unsafe {
            libc::preadv2(
                self.fd.as_raw_fd(),
                &iov,
                1,
                self.pos as libc::off_t,
                libc::RWF_NOWAIT,
            )
        });
        match res {
            // All of it was cached, or the read starts at or past the end of the file.
            Ok(n) if n as usize == len || n == 0 => Some(Ok(n)),
            // Part of it was cached: read the whole range on the pool, so a short count still
            // means the end of the file, as it does for a read that blocks.
            Ok(_) => None,
            // Not cached (EAGAIN), or the file system or kernel has no RWF_NOWAIT.
            Err(_) => None,
        }
    }

    fn complete(mut self, res: io::Result<u32>) -> Self::Output {
        if let Ok(n) = res {
            // SAFETY: the kernel wrote `n <= bytes_total` bytes from the buffer's start.
            unsafe { self.buf.set_init(n as usize) };
        }
        (res.map(|n| n as usize), self.buf)
    }
}

/// Writes a buffer's initialised bytes at an offset.
pub(crate) struct WriteAt<B> {
    fd: FileFd,
    buf: B,
    pos: u64,
    fixed: Option<u16>,
    direct: bool,
}

impl<B> WriteAt<B> {
    pub(crate) fn new(fd: FileFd, buf: B, pos: u64, access: Access) -> Self {
        WriteAt {
            fd,
            buf,
            pos,
            fixed: access.fixed,
            direct: access.direct,
        }
    }
}

// SAFETY: the SQE points at `buf`'s stable storage, owned by the op.
unsafe impl<B: IoBuf> Operation for WriteAt<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        let ptr = self.buf.stable_ptr();
        match self.fixed {
            Some(index) => opcode::WriteFixed::new(fd_of(&self.fd), ptr, len, index)
                .offset(self.pos)
                .build(),
            None => opcode::Write::new(fd_of(&self.fd), ptr, len)
                .offset(self.pos)
                .build(),
        }
    }

    fn uses_fixed_buffer(&self) -> bool {
        self.fixed.is_some()
    }

    fn submit_at_once(&self) -> bool {
        self.direct
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_init()) as usize;
        // SAFETY: the buffer holds `len <= bytes_init` initialised bytes.
        cvt(unsafe {
            libc::pwrite(
                self.fd.as_raw_fd(),
                self.buf.stable_ptr().cast(),
                len,
                self.pos as libc::off_t,
            )
        })
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        (res.map(|n| n as usize), self.buf)
    }
}

/// `fsync` or `fdatasync`.
pub(crate) struct Fsync {
    fd: FileFd,
    data_only: bool,
}

impl Fsync {
    pub(crate) fn new(fd: FileFd, data_only: bool) -> Self {
        Fsync { fd, data_only }
    }
}

// SAFETY: FSYNC carries no pointers.
unsafe impl Operation for Fsync {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(fd_of(&self.fd)).flags(flags).build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: plain syscalls on a live fd.
        let ret = unsafe {
            if self.data_only {
                libc::fdatasync(fd)
            } else {
                libc::fsync(fd)
            }
        };
        cvt(ret as isize)
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(|_| ())
    }
}

/// Closes an fd the op owns. The fd stays owned by the op until the kernel has closed it: an op
/// that never ran (cancelled before it started, or its SQE could not be pushed) closes it when
/// dropped, so it is neither leaked nor closed twice.
pub(crate) struct Close {
    fd: Option<OwnedFd>,
}

impl Close {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Close { fd: Some(fd) }
    }

    fn raw(&self) -> RawFd {
        self.fd
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .expect("a Close op closes its fd once")
    }

    /// The kernel's close ran (whatever it returned, Linux releases the fd number): the op no
    /// longer owns it. After `ECANCELED` it never ran, and dropping the op closes the fd.
    fn settle(&mut self, res: &io::Result<u32>) {
        use std::os::fd::IntoRawFd;
        if !matches!(res, Err(e) if e.raw_os_error() == Some(libc::ECANCELED)) {
            self.fd.take().map(IntoRawFd::into_raw_fd);
        }
    }
}

// SAFETY: CLOSE carries no pointers; the op keeps the fd until the kernel has closed it.
unsafe impl Operation for Close {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.raw())).build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        None
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        use std::os::fd::IntoRawFd;
        let fd = self
            .fd
            .take()
            .map(IntoRawFd::into_raw_fd)
            .expect("a Close op closes its fd once");
        // SAFETY: the op owned `fd`; close(2) releases it whatever it returns, and nobody uses
        // it after this call.
        cvt(unsafe { libc::close(fd) } as isize)
    }

    fn complete(mut self, res: io::Result<u32>) -> Self::Output {
        self.settle(&res);
        res.map(|_| ())
    }

    fn orphaned(mut self, res: io::Result<u32>) {
        self.settle(&res);
    }

    fn unstarted(mut self, err: io::Error) -> Self::Output {
        let _ = err; // the ring could not take the SQE: close here instead
        self.try_syscall().map(|_| ())
    }
}
