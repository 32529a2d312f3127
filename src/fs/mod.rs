//! Files: [`File`], [`OpenOptions`] and whole-file and path helpers.
//!
//! On the uring backend every call is a ring op (`openat`, `read`, `write`, `fsync`, `statx`,
//! `close`, `unlinkat`, `renameat`, `mkdirat`). On the epoll backend the same calls run their
//! syscall on the blocking pool, since epoll cannot wait for a regular file. A read whose whole
//! range is in the page cache is done on the loop thread instead (`preadv2` with `RWF_NOWAIT`,
//! about a microsecond): always on epoll, where it saves the trip to a pool thread, and on uring
//! when no other op waits in the submission queue, where it saves a ring trip that nothing else
//! would share. Buffers are owned, as for sockets, and must be `Send` (they may travel to a pool
//! thread).

mod file;
mod open_options;

pub use file::File;
pub use open_options::OpenOptions;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::buf::IoBuf;
use crate::driver::op::FileOp;
use crate::op::fs::PathOp;

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
    let file = File::create(path).await?;
    let (res, _) = file.write_all_at(contents, 0).await;
    res?;
    file.close().await
}

/// Removes a file.
///
/// # Errors
///
/// `NotFound` if there is none; `IsADirectory` for a directory.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    FileOp::new(PathOp::Unlink(c_path(path.as_ref())?)).await
}

/// Renames `from` to `to`, replacing `to` if it exists.
///
/// # Errors
///
/// `NotFound` if `from` does not exist; `CrossesDevices` across filesystems.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    FileOp::new(PathOp::Rename(c_path(from.as_ref())?, c_path(to.as_ref())?)).await
}

/// Creates a directory (mode 0777 before the umask).
///
/// # Errors
///
/// `AlreadyExists` if the path exists; `NotFound` if its parent does not.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    FileOp::new(PathOp::MkDir(c_path(path.as_ref())?, 0o777)).await
}
