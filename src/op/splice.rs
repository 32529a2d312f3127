//! `send_file`: a file's bytes to a stream without a copy through user space.
//!
//! - `sendfile(2)` on the socket for the part of the range the page cache holds (looked up with
//!   `cachestat` or `mincore`, which read nothing), waiting for writability on `EAGAIN` like any
//!   poll-based write (on uring a poll in the ring): the faster path, measured.
//! - uring, from the first page not in the page cache: two `IORING_OP_SPLICE`s per chunk through
//!   a pipe the loop's thread keeps for it (file to pipe, then pipe to stream; the kernel moves
//!   page references, not bytes), so the disk read happens in the kernel's workers, not on the
//!   loop thread. `RINGLOOP_DISABLE=splice` turns this off.
//! - epoll (or uring with the splice path off), from the first page not in the page cache: reads
//!   on the blocking pool, each sent as a plain write. The loop thread never waits for a disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

/// The most bytes of a range whose page-cache residency one look covers (and so the most one
/// inline `sendfile` moves): 16 MiB, 4,096 pages, one byte each for `mincore`.
const RESIDENCY_WINDOW: u64 = 16 << 20;

/// The bytes one blocking-pool read takes, when neither the ring nor the page cache can serve
/// the range without the loop thread waiting for the disk.
const POOL_READ: usize = 1 << 20;

thread_local! {
    /// Per file fd: where the last `send_file` that went off the loop thread ended. A
    /// `send_file` of the same fd from there goes off the loop thread at once (an fd number
    /// reused by another file at that very offset only costs that call the faster path).
    static OFF_LOOP: RefCell<HashMap<RawFd, u64>> = RefCell::new(HashMap::new());
}

/// The most files `OFF_LOOP` remembers (it forgets them all past that).
const OFF_LOOP_MAX: usize = 4096;

/// `send_file` on a stream's fd: up to `len` bytes of `file` from `offset`; fewer only if the
/// file ends first. See `stream_methods!`.
///
/// The loop thread never waits for the disk here: `sendfile` runs inline only over the part of
/// the range that the page cache holds (a `cachestat` or `mincore` look, not a read). From the
/// first page that is not resident on, the rest of the range goes through the ring's splices
/// (uring), else through reads on the blocking pool and plain sends of what they read; it does
/// not switch back, since the pages those paths just read carry the kernel's readahead marks,
/// and a `sendfile` over them would start the next disk reads from the loop thread; nor does
/// the next `send_file` of the file that starts where this one ended (`OFF_LOOP`).
///
/// `head`, when not empty, goes first, inline, with `MSG_MORE`: the kernel holds it back to go
/// out with the file's first bytes (one TCP segment for a small file, where `TCP_NODELAY` would
/// push the head alone). Should no byte of the file follow (an empty range, the file ending at
/// `offset`, an error, or the future dropped first), the held bytes are pushed by clearing
/// `TCP_CORK`, unless the caller corked the socket.
pub(crate) async fn send_file(
    stream: &SharedFd,
    head: &[u8],
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
    if i64::try_from(offset).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "send_file: offset past i64::MAX",
        ));
    }
    // No file reaches past i64::MAX, and no position passed to the kernel may.
    let len = len.min(i64::MAX as u64 - offset);
    // Writes a dropped op left in the kernel go first.
    poll_fn(|cx| stream.poll_settled(Interest::Write, cx)).await;
    if !head.is_empty() {
        // Until a byte of the file has gone, the head may be held back for it: pushed if the
        // body sends nothing, fails, or the future is dropped (the guard's drop).
        let held = HeldHead(stream);
        send_head(&driver, stream, head).await?;
        let sent = checked(
            file,
            len,
            send_body(&driver, stream, file, offset, len).await,
        )?;
        if sent > 0 {
            // The body's last send carried no MSG_MORE: nothing is held.
            std::mem::forget(held);
        }
        return Ok(sent);
    }
    checked(
        file,
        len,
        send_body(&driver, stream, file, offset, len).await,
    )
}

/// What the body's send gave, except for a file that is neither a regular file nor a block
/// device (a directory, a FIFO, a socket, a character device such as `/dev/null`): the
/// backends' paths answer those differently (`EINVAL` from a splice, `EISDIR` from a read, or
/// nothing sent), so they all get one `InvalidInput` error that names the file's kind. Looked at only when nothing or an
/// error came of a non-empty range, so a regular file's send pays no syscall for it.
fn checked(file: &FileFd, len: u64, res: io::Result<u64>) -> io::Result<u64> {
    match res {
        Ok(0) if len > 0 => not_sendable(file).map_or(Ok(0), Err),
        Err(e) => Err(not_sendable(file).unwrap_or(e)),
        ok => ok,
    }
}

/// `EINVAL` with the file's kind when `send_file` cannot send it (see `checked`). The look is
/// a `statx` of the open file from cached attributes (`AT_STATX_DONT_SYNC`: no trip to a
/// network file system's server from the loop thread).
fn not_sendable(file: &FileFd) -> Option<io::Error> {
    // SAFETY: statx is plain data; an all-zero value is valid and the kernel fills it.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the open fd; `stx` is
    // writable.
    let ok = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE,
            &mut stx,
        )
    } == 0;
    if !ok || stx.stx_mask & libc::STATX_TYPE == 0 {
        return None;
    }
    let kind = match u32::from(stx.stx_mode) & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFBLK => return None,
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        _ => "not a regular file",
    };
    Some(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("send_file: the file is {kind}; it sends regular files and block devices (EINVAL)"),
    ))
}

/// Sends all of `head` with `MSG_MORE` (the kernel keeps a partial segment for what follows).
async fn send_head(driver: &Rc<DriverCell>, stream: &SharedFd, head: &[u8]) -> io::Result<()> {
    let mut wait = ReadyWait::new(Interest::Write);
    send_all(driver, stream, &mut wait, head, libc::MSG_MORE).await
}

/// Sends all of `bytes` on the stream, with `MSG_NOSIGNAL` (a closed peer is `EPIPE`, not
/// `SIGPIPE`) and `flags`, waiting for room through `wait`.
async fn send_all(
    driver: &Rc<DriverCell>,
    stream: &SharedFd,
    wait: &mut ReadyWait,
    bytes: &[u8],
    flags: libc::c_int,
) -> io::Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        let k = poll_fn(|cx| {
            wait.poll_transfer(driver, stream, cx, bytes.len() - at, |raw, max| {
                // SAFETY: `bytes[at..at + max]` is initialised and borrowed for the call; the
                // stream's fd is held by `stream`.
                cvt(unsafe {
                    libc::send(
                        raw,
                        bytes[at..].as_ptr().cast(),
                        max,
                        libc::MSG_NOSIGNAL | flags,
                    )
                })
            })
        })
        .await?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the stream accepted no more bytes",
            ));
        }
        at += k;
    }
    Ok(())
}

/// Pushes the bytes of a head sent with `MSG_MORE` when dropped (see `send_file`).
struct HeldHead<'a>(&'a SharedFd);

impl Drop for HeldHead<'_> {
    fn drop(&mut self) {
        push_held(self.0);
    }
}

/// Pushes bytes a `MSG_MORE` send left held: clearing `TCP_CORK` sends what is queued (an error,
/// on a socket that is not TCP, leaves nothing held: those do not hold back for `MSG_MORE`).
/// A cork the caller set is left as it is: they hold the bytes on purpose, and uncork.
fn push_held(stream: &SharedFd) {
    let mut corked: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `corked` and `size` are a writable int option and its length for the call; the fd
    // is held by `stream`.
    let rc = unsafe {
        libc::getsockopt(
            stream.raw(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&mut corked as *mut libc::c_int).cast(),
            &mut size,
        )
    };
    if rc != 0 || corked != 0 {
        return;
    }
    let off: libc::c_int = 0;
    // SAFETY: a plain int option read by the kernel during the call; the fd is held by `stream`.
    unsafe {
        libc::setsockopt(
            stream.raw(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// The file's part of `send_file`.
async fn send_body(
    driver: &Rc<DriverCell>,
    stream: &SharedFd,
    file: &FileFd,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    let ring = driver.backend() == crate::Backend::Uring && driver.fast().splice;
    // A file sent in pieces (a server bounding each with a timeout) whose previous piece went
    // off the loop thread: this one goes the same way, its pages being the readahead of that one.
    let off_loop = OFF_LOOP.with(|m| m.borrow_mut().remove(&file.as_raw_fd())) == Some(offset);
    let mut sent = 0u64;
    while sent < len {
        let pos = offset + sent;
        let window = (len - sent).min(RESIDENCY_WINDOW);
        let resident = if off_loop {
            0
        } else {
            resident_prefix(file, pos, window)
        };
        if resident == 0 {
            let rest = if ring {
                spliced(stream, file, pos, len - sent).await?
            } else {
                pooled(driver, stream, file, pos, len - sent).await?
            };
            OFF_LOOP.with(|m| {
                let mut m = m.borrow_mut();
                if m.len() >= OFF_LOOP_MAX {
                    m.clear();
                }
                m.insert(file.as_raw_fd(), pos + rest);
            });
            return Ok(sent + rest);
        }
        let n = sendfile(driver, stream, file, pos, resident).await?;
        sent += n;
        if n < resident {
            break; // the file ended
        }
    }
    Ok(sent)
}

/// How many bytes from `offset` (at most `len`) the page cache holds, counted in whole pages
/// from the page holding `offset`: a `sendfile` over them does not wait for the disk. 0 when
/// the first page is not resident, or when the file cannot be looked at this way (then a path
/// that may wait, off the loop thread, takes the range). Past the end of the file counts as not
/// resident.
fn resident_prefix(file: &FileFd, offset: u64, len: u64) -> u64 {
    let page = page_size();
    let first = offset / page * page;
    let span = offset + len - first; // bytes from the first page's start
    let pages = span.div_ceil(page);
    let cached = match cachestat(file, first, span) {
        Some(c) if c >= pages => return len,
        Some(0) => return 0,
        _ => mincore_prefix(file, first, span, pages),
    };
    (cached * page).saturating_sub(offset - first).min(len)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// `cachestat(2)` (Linux 6.5): how many pages of `[offset, offset + len)` are in the page cache,
/// in one syscall; `None` where the kernel (or a seccomp filter) has no such call, or the file
/// is not one it counts.
fn cachestat(file: &FileFd, offset: u64, len: u64) -> Option<u64> {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "loongarch64"
    ))]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// The syscall's number, one for every architecture above.
        const SYS_CACHESTAT: libc::c_long = 451;
        /// The kernel said it has no such call: do not ask again.
        static MISSING: AtomicBool = AtomicBool::new(false);
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            nr_cache: u64,
            nr_dirty: u64,
            nr_writeback: u64,
            nr_evicted: u64,
            nr_recently_evicted: u64,
        }
        if MISSING.load(Ordering::Relaxed) {
            return None;
        }
        let range = Range { off: offset, len };
        let mut stat = Stat::default();
        // SAFETY: `range` and `stat` are live locals of the layouts the syscall reads and
        // writes; the file's fd is held by `file`.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                file.as_raw_fd(),
                &range as *const Range,
                &mut stat as *mut Stat,
                0u32,
            )
        };
        if rc == 0 {
            return Some(stat.nr_cache);
        }
        let err = io::Error::last_os_error().raw_os_error();
        if matches!(err, Some(libc::ENOSYS) | Some(libc::EPERM)) {
            MISSING.store(true, Ordering::Relaxed);
        }
        None
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "loongarch64"
    )))]
    {
        let _ = (file, offset, len);
        None
    }
}

/// The resident pages at the start of `[offset, offset + span)` (`offset` page-aligned, `pages`
/// pages, at most `RESIDENCY_WINDOW`), from `mincore(2)` over a mapping of the range that is
/// never touched (mapping a file reads nothing); 0 if it cannot be mapped.
fn mincore_prefix(file: &FileFd, offset: u64, span: u64, pages: u64) -> u64 {
    let mut vec = [0u8; (RESIDENCY_WINDOW / 4096) as usize + 2];
    let Ok(pos) = libc::off_t::try_from(offset) else {
        return 0;
    };
    if pages as usize > vec.len() {
        return 0; // a page size under 4 KiB: no such Linux port
    }
    // SAFETY: a new shared read-only mapping of the file (held by `file`) that nothing reads;
    // unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            pos,
        )
    };
    if addr == libc::MAP_FAILED {
        return 0; // a write-only fd, a file that cannot be mapped: the slow paths decide
    }
    // SAFETY: `vec` has a byte for each of the mapping's `pages` pages.
    let rc = unsafe { libc::mincore(addr, span as usize, vec.as_mut_ptr()) };
    // SAFETY: the mapping made above, unmapped once; no reference into it exists.
    unsafe { libc::munmap(addr, span as usize) };
    if rc != 0 {
        return 0;
    }
    vec[..pages as usize]
        .iter()
        .take_while(|&&b| b & 1 == 1)
        .count() as u64
}

/// The range from a file the page cache does not hold, without splices: each `POOL_READ` is
/// read on the blocking pool (which waits for the disk in the loop's stead), then sent as a
/// plain write.
async fn pooled(
    driver: &Rc<DriverCell>,
    stream: &SharedFd,
    file: &FileFd,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    let mut wait = ReadyWait::new(Interest::Write);
    let mut sent = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    while sent < len {
        let want = (len - sent).min(POOL_READ as u64) as usize;
        let pos = libc::off_t::try_from(offset + sent).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "send_file: offset past i64::MAX",
            )
        })?;
        let fd = file.clone();
        let mut spare = std::mem::take(&mut buf);
        let read = crate::spawn_blocking(move || {
            spare.clear();
            spare.reserve(want);
            // SAFETY: the Vec has room for `want` bytes; the file's fd is held by `fd`.
            let n =
                cvt(unsafe { libc::pread(fd.as_raw_fd(), spare.as_mut_ptr().cast(), want, pos) });
            if let Ok(n) = n {
                // SAFETY: pread initialised the first `n <= want` bytes.
                unsafe { spare.set_len(n as usize) };
            }
            (n, spare)
        });
        let (n, got) = read
            .await
            .map_err(|e| io::Error::other(format!("send_file's read on the blocking pool: {e}")))?;
        let n = n? as usize;
        if n == 0 {
            break; // the file ended
        }
        send_all(driver, stream, &mut wait, &got[..n], 0).await?;
        sent += n as u64;
        buf = got;
    }
    Ok(sent)
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
        // The kernel's workers run splices, where a non-blocking look at the ring cannot see
        // them: a paused clock must wait for each (as for any file op) instead of jumping to a
        // timer meanwhile. Not held while waiting for room in the socket (below): a peer that
        // stopped reading must not stop the paused clock.
        let hold = crate::time::ClockHold::new();
        let mut in_pipe = Op::new(file_to_pipe).await?;
        drop(hold);
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
            let hold = crate::time::ClockHold::new();
            let spliced = Op::new(pipe_to_stream).await;
            drop(hold);
            let n = match spliced {
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
