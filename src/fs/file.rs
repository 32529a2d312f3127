//! `File`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use super::{Metadata, OpenOptions};
use crate::buf::{AlignedBuf, BufResult, IoBuf, IoBufMut, write_all_with};
use crate::driver::op::FileOp;
use crate::op::fs::{Access, Close, FileFd, Fsync, ReadAt, WriteAt};
use crate::op::fs_path::{FileRange, RangeOp, StatTarget, Statx};

/// An open file, read and written at explicit offsets with owned buffers. Dropping it closes it
/// (once no op on it is in flight); [`close`](File::close) does the same and reports errors.
///
/// # Examples
///
/// ```
/// use ringloop::fs::File;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data");
/// ringloop::run(async {
///     let f = File::options().read(true).write(true).create(true).open(&path).await?;
///     let (res, _) = f.write_all_at(b"hello world".to_vec(), 0).await;
///     res?;
///     f.sync_all().await?;
///     let (res, buf) = f.read_at(Vec::with_capacity(5), 6).await;
///     assert_eq!(&buf[..res?], b"world");
///     assert_eq!(f.len().await?, 11);
///     f.close().await
/// }).unwrap();
/// ```
pub struct File {
    fd: FileFd,
    /// Opened with `O_DIRECT`: the (memory, offset) alignment its reads and writes need.
    direct: Option<(u32, u32)>,
}

impl File {
    /// `direct`: the fd was opened with `O_DIRECT` (its alignment is then looked up).
    pub(crate) fn from_owned(fd: OwnedFd, direct: bool) -> File {
        let direct = direct.then(|| direct_alignment_now(&fd));
        File {
            fd: Arc::new(fd),
            direct,
        }
    }

    /// For a file opened with `O_DIRECT`: the alignment (memory, file offset and length) its
    /// reads and writes need, in bytes, from the file's `statx` (Linux 6.1+) or else
    /// [`DEFAULT_DIRECT_ALIGN`](crate::buf::DEFAULT_DIRECT_ALIGN). `None` for other files.
    pub fn direct_io_align(&self) -> Option<(u32, u32)> {
        self.direct
    }

    /// A zeroed buffer of `capacity` bytes aligned for direct I/O on this file: the memory
    /// alignment of [`direct_io_align`](File::direct_io_align), else
    /// [`DEFAULT_DIRECT_ALIGN`](crate::buf::DEFAULT_DIRECT_ALIGN).
    ///
    /// # Errors
    ///
    /// As [`AlignedBuf::new`].
    pub fn aligned_buf(&self, capacity: usize) -> io::Result<AlignedBuf> {
        let align = self
            .direct
            .map_or(crate::buf::DEFAULT_DIRECT_ALIGN, |(mem, _)| mem as usize);
        AlignedBuf::new(capacity, align)
    }

    /// Refuses a direct-I/O transfer the kernel would refuse with a bare `EINVAL`.
    fn check_direct(&self, ptr: *const u8, len: usize, pos: u64) -> io::Result<()> {
        let Some((mem, off)) = self.direct else {
            return Ok(());
        };
        let (mem, off) = (u64::from(mem.max(1)), u64::from(off.max(1)));
        if pos.is_multiple_of(off)
            && (len as u64).is_multiple_of(off)
            && (ptr as u64).is_multiple_of(mem)
        {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "direct I/O (O_DIRECT) on this file needs offsets and lengths that are multiples \
                 of {off} bytes and buffers aligned to {mem} bytes; got offset {pos}, length \
                 {len}, buffer address {ptr:p}: use File::aligned_buf (a buf::AlignedBuf) and whole blocks"
            ),
        ))
    }

    /// The fd, shared with the ops that use it.
    pub(crate) fn shared_fd(&self) -> &FileFd {
        &self.fd
    }

    /// Opens a file read-only.
    ///
    /// # Errors
    ///
    /// `NotFound`, `PermissionDenied`, `EMFILE`, ...
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file write-only, creating it or truncating it.
    ///
    /// # Errors
    ///
    /// `NotFound` if the directory does not exist, `PermissionDenied`, `EMFILE`, ...
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Options for opening a file.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Takes over a std file.
    pub fn from_std(file: std::fs::File) -> File {
        let fd = OwnedFd::from(file);
        let direct = is_direct(&fd);
        File::from_owned(fd, direct)
    }

    /// Gives the file back as a std file.
    ///
    /// # Errors
    ///
    /// `ResourceBusy` if an op on it is still in flight (a dropped one whose completion has not
    /// come yet); the file is returned inside the error's message only as a number, so retry later.
    pub fn into_std(self) -> io::Result<std::fs::File> {
        Arc::try_unwrap(self.fd).map(Into::into).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "an operation on this file is still in flight; try into_std again later",
            )
        })
    }

    /// Reads into `buf` from its start up to its capacity, from offset `pos`; sets its length to
    /// the bytes read. `Ok(0)` at or past end of file.
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EBADF` if the file was not opened for reading.
    pub async fn read_at<B: IoBufMut + Send>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = self.check_direct(buf.stable_ptr(), buf.bytes_total(), pos) {
            return (Err(e), buf);
        }
        let access = self.access(&buf);
        FileOp::new(ReadAt::new(self.fd.clone(), buf, pos, access)).await
    }

    /// How a transfer with `buf` reaches the kernel: a fixed-buffer op if `buf` belongs to the
    /// set registered with this loop's ring.
    fn access(&self, buf: &impl IoBuf) -> Access {
        let fixed = buf.fixed_slot().and_then(|(set, index)| {
            let driver = crate::driver::current()?;
            (driver.fixed_set() == Some(set)).then_some(index)
        });
        Access {
            fixed,
            direct: self.direct.is_some(),
        }
    }

    /// Fills `buf` up to its capacity from offset `pos`.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the file ends first (the buffer then holds what was read); read errors.
    pub async fn read_exact_at<B: IoBufMut + Send>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        let total = buf.bytes_total();
        let mut buf = buf;
        let mut filled = 0;
        while filled < total {
            let (res, slice) = self.read_at(buf.slice(filled..), pos + filled as u64).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the file ended after {filled} of {total} bytes"),
                        )),
                        buf,
                    );
                }
                Ok(n) => {
                    filled += n;
                    if filled < total && self.ends_mid_block(filled) {
                        // A direct read moves whole blocks: one that stopped inside a block met
                        // the end of the file (and the rest could not be asked for: its offset
                        // would not be aligned).
                        return (
                            Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "the file ended after {filled} of {total} bytes (direct I/O)"
                                ),
                            )),
                            buf,
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Whether `n` bytes from an aligned offset stop inside a block of a direct (`O_DIRECT`)
    /// file, where a read of the rest would be refused.
    fn ends_mid_block(&self, n: usize) -> bool {
        self.direct
            .is_some_and(|(_, off)| !(n as u64).is_multiple_of(u64::from(off.max(1))))
    }

    /// Writes some of `buf`'s initialised bytes at offset `pos` (at the end, with `append`).
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EBADF` if the file was not opened for writing, `ENOSPC`.
    pub async fn write_at<B: IoBuf + Send>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = self.check_direct(buf.stable_ptr(), buf.bytes_init(), pos) {
            return (Err(e), buf);
        }
        let access = self.access(&buf);
        FileOp::new(WriteAt::new(self.fd.clone(), buf, pos, access)).await
    }

    /// Writes all of `buf`'s initialised bytes at offset `pos`.
    ///
    /// # Errors
    ///
    /// As [`write_at`](File::write_at); `WriteZero` if the kernel accepted no bytes.
    pub async fn write_all_at<B: IoBuf + Send>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        write_all_with(buf, |slice, done| self.write_at(slice, pos + done as u64)).await
    }

    /// Flushes data and metadata to the device (`fsync`).
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EIO`.
    pub async fn sync_all(&self) -> io::Result<()> {
        FileOp::new(Fsync::new(self.fd.clone(), false)).await
    }

    /// Flushes data (and the metadata needed to read it) to the device (`fdatasync`).
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EIO`.
    pub async fn sync_data(&self) -> io::Result<()> {
        FileOp::new(Fsync::new(self.fd.clone(), true)).await
    }

    /// The file's length in bytes (`statx`, as [`metadata`](File::metadata)).
    ///
    /// # Errors
    ///
    /// The kernel's error.
    pub async fn len(&self) -> io::Result<u64> {
        Ok(self.metadata().await?.len())
    }

    /// The file's metadata (`statx` of the open file).
    ///
    /// # Errors
    ///
    /// The kernel's error.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        FileOp::new(Statx::new(StatTarget::File(self.fd.clone())))
            .await
            .map(Metadata::from_statx)
    }

    /// Truncates or extends the file to `len` bytes (`ftruncate`; extended bytes read as zeros).
    /// A ring op on Linux 6.9+, on the blocking pool before.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the file is not open for writing or `len` is beyond the largest offset;
    /// the kernel's error (`EFBIG`, `EIO`).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        FileOp::new(FileRange::new(self.fd.clone(), RangeOp::SetLen(len)))
            .await
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EBADF) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("set_len({len}): {e} (is the file open for writing?)"),
                ),
                _ => e,
            })
    }

    /// Reserves disk space for `len` bytes from `offset` (`fallocate` mode 0): later writes
    /// there cannot fail with `ENOSPC`, and the file grows to `offset + len` if shorter. For other
    /// `fallocate` modes (punching holes, zeroing ranges) see
    /// [`allocate_with_mode`](File::allocate_with_mode).
    ///
    /// # Errors
    ///
    /// `StorageFull` (`ENOSPC`); `Unsupported` (`EOPNOTSUPP`) on filesystems without it; `EBADF`
    /// if not open for writing.
    pub async fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.allocate_with_mode(0, offset, len).await
    }

    /// `fallocate(mode, offset, len)`, with `libc::FALLOC_FL_*` flags in `mode`.
    ///
    /// # Errors
    ///
    /// As [`allocate`](File::allocate); `InvalidInput` for a mode the filesystem refuses.
    pub async fn allocate_with_mode(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        FileOp::new(FileRange::new(
            self.fd.clone(),
            RangeOp::Allocate(mode, offset, len),
        ))
        .await
    }

    /// Starts or waits for writeback of a byte range (`sync_file_range`), with
    /// `libc::SYNC_FILE_RANGE_*` flags; `len` 0 means to the end of the file. Unlike
    /// [`sync_data`](File::sync_data) it flushes no metadata and gives no durability guarantee;
    /// it paces writeback of large files.
    ///
    /// # Errors
    ///
    /// The kernel's error (`EIO`, `EINVAL` for unknown flags).
    pub async fn sync_range(&self, offset: u64, len: u64, flags: u32) -> io::Result<()> {
        FileOp::new(FileRange::new(
            self.fd.clone(),
            RangeOp::SyncRange(offset, len, flags),
        ))
        .await
    }

    /// Whether the file is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](File::len).
    pub async fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Closes the file and reports the kernel's verdict. If an op on it is still in flight (a
    /// dropped one), the fd is closed when that op completes and this returns `Ok(())`.
    ///
    /// # Errors
    ///
    /// The kernel's error from `close`, e.g. `EIO` from a network filesystem.
    pub async fn close(self) -> io::Result<()> {
        match Arc::try_unwrap(self.fd) {
            Ok(fd) => FileOp::new(Close::new(fd)).await,
            Err(_) => Ok(()),
        }
    }
}

/// Whether an fd is open with `O_DIRECT`.
fn is_direct(fd: &OwnedFd) -> bool {
    // SAFETY: F_GETFL takes no pointer.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DIRECT != 0
}

/// The direct-I/O alignment of an fd open with `O_DIRECT` (`statx`, a quick syscall done once
/// when the `File` is made): what the file reports, else the default.
fn direct_alignment_now(fd: &OwnedFd) -> (u32, u32) {
    let d = crate::buf::DEFAULT_DIRECT_ALIGN as u32;
    // SAFETY: statx is plain data; an all-zero value is valid and the kernel fills it.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the fd; `stx` is writable.
    let ok = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    } == 0;
    let reported = ok
        && stx.stx_mask & libc::STATX_DIOALIGN != 0
        && stx.stx_dio_mem_align > 0
        && stx.stx_dio_offset_align > 0;
    if reported {
        (stx.stx_dio_mem_align, stx.stx_dio_offset_align)
    } else {
        (d, d)
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}
