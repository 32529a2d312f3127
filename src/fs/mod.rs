//! Files: [`File`], [`OpenOptions`] and whole-file and path helpers.
//!
//! On the uring backend every call is a ring op (`openat`, `read`, `write`, `fsync`, `statx`,
//! `close`, `unlinkat`, `renameat`, `mkdirat`, `linkat`, `symlinkat`, `fallocate`,
//! `sync_file_range`, and `ftruncate` on Linux 6.9+, probed), except those Linux has no ring op
//! for: listing a directory ([`read_dir`]) and [`copy`] (`copy_file_range`) run on the blocking
//! pool, as does `set_len` on older kernels. On the epoll backend the same calls run their
//! syscall on the blocking pool, since epoll cannot wait for a regular file. A read whose whole
//! range is in the page cache is done on the loop thread instead (`preadv2` with `RWF_NOWAIT`,
//! about a microsecond): always on epoll, where it saves the trip to a pool thread, and on uring
//! when no other op waits in the submission queue, where it saves a ring trip that nothing else
//! would share. Buffers are owned, as for sockets, and must be `Send` (they may travel to a pool
//! thread).
//!
//! Errors keep std's [`io::ErrorKind`] and name the call and path: `remove_file "/tmp/x": No
//! such file or directory (os error 2)`; the kernel's error is the error's `source()`.

mod dir;
mod file;
mod fixed;
mod metadata;
mod open_options;

pub use dir::{DirEntry, ReadDir};
pub use file::File;
pub use fixed::{FixedBuf, FixedBufs};
pub use metadata::{FileType, Metadata};
pub use open_options::OpenOptions;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::buf::IoBuf;
use crate::driver::op::FileOp;
use crate::op::fs_path::{PathOp, StatTarget, Statx};

/// A path as the kernel takes it.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the path {path:?} contains a NUL byte"),
        )
    })
}

/// Reads a whole file.
///
/// # Errors
///
/// `NotFound`, `PermissionDenied`, ... from opening; read errors.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("greeting");
/// ringloop::run(async {
///     ringloop::fs::write(&path, b"hello".to_vec()).await?;
///     assert_eq!(ringloop::fs::read(&path).await?, b"hello");
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    read_inner(path)
        .await
        .map_err(|e| name_path("read", path, e))
}

async fn read_inner(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path).await?;
    let len = file.len().await?;
    let mut out = Vec::with_capacity(len as usize);
    // The file may grow or shrink while we read: read until end of file.
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(64 * 1024);
        }
        let pos = out.len();
        let (res, slice) = file.read_at(out.slice(pos..), pos as u64).await;
        out = slice.into_inner();
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.close().await?;
    Ok(out)
}

/// Writes `contents` as the whole file, creating or truncating it.
///
/// # Errors
///
/// Errors from creating the file or writing it.
pub async fn write<B: IoBuf + Send>(path: impl AsRef<Path>, contents: B) -> io::Result<()> {
    let path = path.as_ref();
    let write = async {
        let file = File::create(path).await?;
        let (res, _) = file.write_all_at(contents, 0).await;
        res?;
        file.close().await
    };
    write.await.map_err(|e| name_path("write", path, e))
}

/// Names the call and the path in an error, keeping its kind; the OS error is its `source()`.
pub(crate) fn name_path(call: &'static str, path: &Path, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        PathError {
            call,
            paths: format!("{path:?}"),
            source: err,
        },
    )
}

/// As [`name_path`] for a call with two paths.
fn name_paths(call: &'static str, from: &Path, to: &Path, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        PathError {
            call,
            paths: format!("{from:?} to {to:?}"),
            source: err,
        },
    )
}

/// An error of a path call: which call, which path(s), and the kernel's error.
#[derive(Debug)]
struct PathError {
    call: &'static str,
    paths: String,
    source: io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.call, self.paths, self.source)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

async fn path_op(
    call: &'static str,
    path: &Path,
    op: impl FnOnce(CString) -> PathOp,
) -> io::Result<()> {
    let c = c_path(path)?;
    FileOp::new(op(c))
        .await
        .map_err(|e| name_path(call, path, e))
}

async fn two_path_op(
    call: &'static str,
    from: &Path,
    to: &Path,
    op: impl FnOnce(CString, CString) -> PathOp,
) -> io::Result<()> {
    let (a, b) = (c_path(from)?, c_path(to)?);
    FileOp::new(op(a, b))
        .await
        .map_err(|e| name_paths(call, from, to, e))
}

/// Removes a file (or a symlink, not what it points to).
///
/// # Errors
///
/// `NotFound` if there is none; `IsADirectory` for a directory; the error names the path.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    path_op("remove_file", path.as_ref(), PathOp::Unlink).await
}

/// Removes an empty directory.
///
/// # Errors
///
/// `NotFound`; `DirectoryNotEmpty`; `NotADirectory` for a file; the error names the path.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    path_op("remove_dir", path.as_ref(), PathOp::RmDir).await
}

/// Renames `from` to `to`, replacing `to` if it exists.
///
/// # Errors
///
/// `NotFound` if `from` does not exist; `CrossesDevices` across filesystems; the error names
/// both paths.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    two_path_op("rename", from.as_ref(), to.as_ref(), PathOp::Rename).await
}

/// Creates a hard link `link` to the file `original`.
///
/// # Errors
///
/// `NotFound` if `original` does not exist; `AlreadyExists` if `link` does; the error names
/// both paths.
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    two_path_op(
        "hard_link",
        original.as_ref(),
        link.as_ref(),
        PathOp::HardLink,
    )
    .await
}

/// Creates a symbolic link `link` whose target is `original` (which need not exist), as std's
/// `std::os::unix::fs::symlink`.
///
/// # Errors
///
/// `AlreadyExists` if `link` exists; `NotFound` if its directory does not; the error names
/// both paths.
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    two_path_op("symlink", original.as_ref(), link.as_ref(), PathOp::Symlink).await
}

/// Creates a directory (mode 0777 before the umask).
///
/// # Errors
///
/// `AlreadyExists` if the path exists; `NotFound` if its parent does not; the error names the
/// path.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    path_op("create_dir", path.as_ref(), |p| PathOp::MkDir(p, 0o777)).await
}

/// Creates a directory and every missing parent. An existing directory is fine, as std's.
///
/// # Errors
///
/// `NotADirectory` or `AlreadyExists` if a component exists and is not a directory;
/// `PermissionDenied`; the error names the path that failed.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    // Walk up until a directory exists (or is made), then come back down.
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        if at.as_os_str().is_empty() {
            break;
        }
        match create_dir(at).await {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at);
                match at.parent() {
                    Some(parent) => at = parent,
                    None => return Err(e),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if metadata(at).await.is_ok_and(|m| m.is_dir()) {
                    break;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    for dir in missing.into_iter().rev() {
        match create_dir(dir).await {
            Ok(()) => {}
            // Made meanwhile by someone else: fine if it is a directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !metadata(dir).await.is_ok_and(|m| m.is_dir()) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn stat_path(call: &'static str, path: &Path, follow: bool) -> io::Result<Metadata> {
    let c = c_path(path)?;
    FileOp::new(Statx::new(StatTarget::Path { path: c, follow }))
        .await
        .map(Metadata::from_statx)
        .map_err(|e| name_path(call, path, e))
}

/// A path's metadata, following symlinks (`statx`).
///
/// # Errors
///
/// `NotFound`; `NotADirectory` if a parent component is a file; `PermissionDenied`; the error
/// names the path.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    stat_path("metadata", path.as_ref(), true).await
}

/// A path's metadata without following a final symlink (`statx` with `AT_SYMLINK_NOFOLLOW`).
///
/// # Errors
///
/// As [`metadata`].
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    stat_path("symlink_metadata", path.as_ref(), false).await
}

/// Lists a directory: see [`ReadDir`].
///
/// # Errors
///
/// `NotFound`; `NotADirectory`; `PermissionDenied`; the error names the path.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    dir::open(path.as_ref()).await
}

/// Copies the contents and permission bits of the file `from` to `to` (created or truncated)
/// and returns the bytes copied, as std's `fs::copy` (which uses `copy_file_range`, so the
/// kernel copies without the data passing through the process; on the blocking pool).
///
/// # Errors
///
/// `NotFound` if `from` does not exist; `InvalidInput` if it is not a regular file; the error
/// names both paths.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    let (f, t) = (from.clone(), to.clone());
    crate::spawn_blocking(move || std::fs::copy(&f, &t))
        .await
        .map_err(|e| io::Error::other(format!("copy: the pool job failed: {e}")))?
        .map_err(|e| name_paths("copy", &from, &to, e))
}
