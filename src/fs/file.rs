//! `File`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use super::{Metadata, OpenOptions};
use crate::buf::{BufResult, IoBuf, IoBufMut, write_all_with};
use crate::driver::op::FileOp;
use crate::op::fs::{Close, FileFd, Fsync, ReadAt, Size, WriteAt};
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
}

impl File {
    pub(crate) fn from_owned(fd: OwnedFd) -> File {
        File { fd: Arc::new(fd) }
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
        File::from_owned(file.into())
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
        FileOp::new(ReadAt::new(self.fd.clone(), buf, pos)).await
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
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes some of `buf`'s initialised bytes at offset `pos` (at the end, with `append`).
    ///
    /// # Errors
    ///
    /// The kernel's error, e.g. `EBADF` if the file was not opened for writing, `ENOSPC`.
    pub async fn write_at<B: IoBuf + Send>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        FileOp::new(WriteAt::new(self.fd.clone(), buf, pos)).await
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

    /// The file's length in bytes (`statx` on uring, `fstat` on epoll).
    ///
    /// # Errors
    ///
    /// The kernel's error.
    pub async fn len(&self) -> io::Result<u64> {
        FileOp::new(Size::new(self.fd.clone())).await
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
