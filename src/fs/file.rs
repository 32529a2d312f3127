//! `File`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use super::OpenOptions;
use crate::buf::{BufResult, IoBuf, IoBufMut, write_all_with};
use crate::driver::op::FileOp;
use crate::op::fs::{Close, FileFd, Fsync, ReadAt, Size, WriteAt};

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
