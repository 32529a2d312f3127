//! `send_file`: a file's bytes to a stream without a copy through user space.
//!
//! - `sendfile(2)` on the socket, waiting for writability on `EAGAIN` like any poll-based write
//!   (on uring a poll in the ring): on epoll always, on uring when the range's first page is in
//!   the page cache (the faster path, measured).
//! - uring, for a file not in the page cache: two `IORING_OP_SPLICE`s per chunk through a pipe
//!   the loop's thread keeps for it (file to pipe, then pipe to stream; the kernel moves page
//!   references, not bytes), so the disk read happens in the kernel's workers, not on the loop
//!   thread. `RINGLOOP_DISABLE=splice` turns this off.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types::Fd};

use super::cvt;
use super::fs::FileFd;
use super::poll::{PollAdd, ReadyWait};
use crate::driver::DriverCell;
use crate::driver::fd::SharedFd;
use crate::driver::op::{Interest, Op, Operation};

/// The pipe capacity asked for (the kernel's default is 64 KiB; `pipe-max-size` allows 1 MiB
/// unless lowered). A smaller pipe works too: chunks are what the pipe holds.
const PIPE_SIZE: i32 = 1 << 20;

/// A pipe between the two splices of `send_file`: its read end, write end, and capacity.
struct SplicePipe {
    read: SharedFd,
    write: SharedFd,
    cap: u32,
}

thread_local! {
    /// An empty pipe kept for the next `send_file` on this thread. Only a `send_file` that
    /// emptied it puts it back; one that stopped part-way (an error, a dropped future) drops it.
    static SPARE_PIPE: RefCell<Option<SplicePipe>> = const { RefCell::new(None) };
}

impl SplicePipe {
    fn take() -> io::Result<SplicePipe> {
        if let Some(p) = SPARE_PIPE.with(|s| s.borrow_mut().take()) {
            return Ok(p);
        }
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        // Blocking: only ring ops use it, and a splice into an empty pipe or out of a filled one
        // never waits for it.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize)?;
        // SAFETY: pipe2 just opened both fds; each is owned once, here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on a pipe we own; a refusal (EPERM past pipe-max-size, or the
        // user's pipe quota) leaves the default size, which F_GETPIPE_SZ reports.
        let cap = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        Ok(SplicePipe {
            read: SharedFd::new(read),
            write: SharedFd::new(write),
            cap: u32::try_from(cap).ok().filter(|&c| c > 0).unwrap_or(65536),
        })
    }

    fn put_back(self) {
        SPARE_PIPE.with(|s| *s.borrow_mut() = Some(self));
    }
}

/// Where a splice reads from: the file at an offset, or the pipe.
enum Source {
    File(FileFd, u64),
    Pipe(SharedFd),
}

/// One `splice(2)`: file to pipe, or pipe to stream.
pub(crate) struct Splice {
    src: Source,
    dst: SharedFd,
    /// The destination is the stream (pipe to stream): its writes wait for this one.
    to_stream: bool,
    len: u32,
}

impl Splice {
    fn raw_src(&self) -> i32 {
        match &self.src {
            Source::File(f, _) => f.as_raw_fd(),
            Source::Pipe(p) => p.raw(),
        }
    }

    fn src_offset(&self) -> i64 {
        match &self.src {
            Source::File(_, off) => *off as i64,
            Source::Pipe(_) => -1,
        }
    }
}

// SAFETY: the SQE names fds only (no memory); the op holds both (the file's `Arc`, the pipe's and
// stream's `SharedFd`s) until its completion, so neither is closed or reused meanwhile.
unsafe impl Operation for Splice {
    type Output = io::Result<u32>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Splice::new(
            Fd(self.raw_src()),
            self.src_offset(),
            Fd(self.dst.raw()),
            -1,
            self.len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        // Pipe to stream waits for the stream's writability (and counts as a write on it when
        // abandoned); file to pipe never blocks on a pipe we just emptied.
        self.to_stream.then_some((&self.dst, Interest::Write))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        let mut off = self.src_offset();
        let off_ptr = if off < 0 {
            std::ptr::null_mut()
        } else {
            &mut off as *mut i64
        };
        // SAFETY: fds the op holds; `off_ptr` is null or points at a live local.
        cvt(unsafe {
            libc::splice(
                self.raw_src(),
                off_ptr,
                self.dst.raw(),
                std::ptr::null_mut(),
                self.len as usize,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        })
    }

    fn drained(&self, n: u32) -> bool {
        self.to_stream && n < self.len
    }

    fn shorten(&mut self, max: u32) -> bool {
        self.len = self.len.min(max.max(1));
        true
    }

    fn complete(self, res: io::Result<u32>) -> io::Result<u32> {
        res
    }
}

/// `send_file` on a stream's fd: up to `len` bytes of `file` from `offset`; fewer only if the
/// file ends first. See `stream_methods!`.
pub(crate) async fn send_file(
    stream: &SharedFd,
    file: &FileFd,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    let driver = crate::driver::current().ok_or_else(|| {
        io::Error::other(
            "send_file was polled outside a running ringloop event loop: await it inside \
             EventLoop::run_until_complete or ringloop::run",
        )
    })?;
    // Writes a dropped op left in the kernel go first.
    poll_fn(|cx| stream.poll_settled(Interest::Write, cx)).await;
    if driver.backend() == crate::Backend::Uring && driver.fast().splice && !cached(file, offset) {
        spliced(stream, file, offset, len).await
    } else {
        sendfile(&driver, stream, file, offset, len).await
    }
}

/// Whether the page at `offset` is in the page cache (a one-byte `preadv2` with `RWF_NOWAIT`; past
/// the end counts as cached). `sendfile` from the loop thread is the faster path for cached
/// files (measured: 1.1–1.6x the splices' requests per second in the file server, 1 KiB to
/// 1 MiB), but would wait for the disk on the loop thread otherwise.
fn cached(file: &FileFd, offset: u64) -> bool {
    let Ok(pos) = libc::off_t::try_from(offset) else {
        return true; // sendfile reports the bad offset
    };
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: `iov` describes one writable byte on the stack; the file's fd is held by `file`.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, pos, libc::RWF_NOWAIT) };
    n >= 0
}

async fn spliced(stream: &SharedFd, file: &FileFd, offset: u64, len: u64) -> io::Result<u64> {
    let pipe = SplicePipe::take()?;
    let mut sent = 0u64;
    while sent < len {
        let chunk = (len - sent).min(u64::from(pipe.cap)) as u32;
        let file_to_pipe = Splice {
            src: Source::File(file.clone(), offset + sent),
            dst: pipe.write.clone(),
            to_stream: false,
            len: chunk,
        };
        let mut in_pipe = Op::new(file_to_pipe).await?;
        if in_pipe == 0 {
            break; // the file ended
        }
        while in_pipe > 0 {
            let pipe_to_stream = Splice {
                src: Source::Pipe(pipe.read.clone()),
                dst: stream.clone(),
                to_stream: true,
                len: in_pipe,
            };
            // The stream's fd is nonblocking: a full socket answers EAGAIN, even from the
            // kernel's worker; wait for room, then splice again.
            let n = match Op::new(pipe_to_stream).await {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Op::new(PollAdd::new(stream.clone(), Interest::Write)).await?;
                    continue;
                }
                res => res?,
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the stream accepted no more bytes",
                ));
            }
            in_pipe -= n;
            sent += u64::from(n);
        }
    }
    pipe.put_back(); // empty: every byte that went in came out
    Ok(sent)
}

async fn sendfile(
    driver: &Rc<DriverCell>,
    stream: &SharedFd,
    file: &FileFd,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    let mut wait = ReadyWait::new(Interest::Write);
    let mut sent = 0u64;
    while sent < len {
        let chunk = (len - sent).min(1 << 30) as usize;
        let pos = offset + sent;
        let pos = libc::off_t::try_from(pos).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "send_file: offset past i64::MAX",
            )
        })?;
        let n = poll_fn(|cx| {
            wait.poll_transfer_unproven(driver, stream, cx, chunk, |raw, max| {
                let mut off = pos;
                // SAFETY: plain fds (the stream's, and the file's, held by the caller's `File`);
                // `off` is a live local the kernel updates.
                cvt(unsafe { libc::sendfile(raw, file.as_raw_fd(), &mut off, max) })
            })
        })
        .await?;
        if n == 0 {
            break; // the file ended
        }
        sent += n as u64;
    }
    Ok(sent)
}
