//! `Metadata`: what `statx` says about a file.

use std::fmt;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, SystemTime};

/// A file's metadata, from `statx`: [`fs::metadata`](super::metadata),
/// [`fs::symlink_metadata`](super::symlink_metadata) or [`File::metadata`](super::File::metadata).
/// The names are std's.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data");
/// ringloop::run(async {
///     ringloop::fs::write(&path, b"twelve bytes".to_vec()).await?;
///     let meta = ringloop::fs::metadata(&path).await?;
///     assert!(meta.is_file() && !meta.is_dir());
///     assert_eq!(meta.len(), 12);
///     assert!(meta.modified()? <= std::time::SystemTime::now());
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Metadata {
    stx: libc::statx,
}

fn time(ts: libc::statx_timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(ts.tv_nsec));
    if ts.tv_sec >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.tv_sec as u64) + nanos
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(ts.tv_sec.unsigned_abs()) + nanos
    }
}

impl Metadata {
    pub(crate) fn from_statx(stx: libc::statx) -> Self {
        Metadata { stx }
    }

    fn has(&self, field: u32) -> bool {
        self.stx.stx_mask & field != 0
    }

    fn kind(&self) -> u32 {
        u32::from(self.stx.stx_mode) & libc::S_IFMT
    }

    /// The size in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.stx.stx_size
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    /// Whether this is a symbolic link (only from [`symlink_metadata`](super::symlink_metadata):
    /// the other calls follow links).
    pub fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }

    /// The kind of file.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.kind())
    }

    /// The permission bits, as std's.
    pub fn permissions(&self) -> Permissions {
        Permissions::from_mode(u32::from(self.stx.stx_mode) & 0o7777)
    }

    /// The whole `st_mode` (type and permission bits).
    pub fn mode(&self) -> u32 {
        u32::from(self.stx.stx_mode)
    }

    /// The last modification time.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the filesystem did not report it.
    pub fn modified(&self) -> io::Result<SystemTime> {
        self.time_of(libc::STATX_MTIME, self.stx.stx_mtime, "modification")
    }

    /// The last access time.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the filesystem did not report it.
    pub fn accessed(&self) -> io::Result<SystemTime> {
        self.time_of(libc::STATX_ATIME, self.stx.stx_atime, "access")
    }

    /// The creation (birth) time.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the filesystem does not record it.
    pub fn created(&self) -> io::Result<SystemTime> {
        self.time_of(libc::STATX_BTIME, self.stx.stx_btime, "creation")
    }

    fn time_of(&self, field: u32, ts: libc::statx_timestamp, what: &str) -> io::Result<SystemTime> {
        if self.has(field) {
            Ok(time(ts))
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the filesystem did not report a {what} time"),
            ))
        }
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.stx.stx_ino
    }

    /// The device the file is on (`makedev(major, minor)`).
    pub fn dev(&self) -> u64 {
        libc::makedev(self.stx.stx_dev_major, self.stx.stx_dev_minor)
    }

    /// The number of hard links.
    pub fn nlink(&self) -> u64 {
        u64::from(self.stx.stx_nlink)
    }

    /// The owner's user id.
    pub fn uid(&self) -> u32 {
        self.stx.stx_uid
    }

    /// The owner's group id.
    pub fn gid(&self) -> u32 {
        self.stx.stx_gid
    }

    /// The preferred I/O block size.
    pub fn blksize(&self) -> u64 {
        u64::from(self.stx.stx_blksize)
    }

    /// The 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        self.stx.stx_blocks
    }

    /// Direct I/O (`O_DIRECT`) alignment: `(memory, file offset)` in bytes, for a regular file
    /// on a kernel (6.1+) and filesystem that report it; `None` otherwise, or `Some((0, 0))` if
    /// the file does not support direct I/O. See [`buf::AlignedBuf`](crate::buf::AlignedBuf).
    pub fn direct_io_align(&self) -> Option<(u32, u32)> {
        self.has(libc::STATX_DIOALIGN)
            .then_some((self.stx.stx_dio_mem_align, self.stx.stx_dio_offset_align))
    }
}

/// What kind of file a path names: from [`Metadata::file_type`] or [`DirEntry::file_type`](super::DirEntry::file_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType {
    /// The `S_IF*` bits of `st_mode`.
    kind: u32,
}

impl FileType {
    pub(crate) fn from_mode(mode: u32) -> Self {
        FileType {
            kind: mode & libc::S_IFMT,
        }
    }

    pub(crate) fn from_std(t: std::fs::FileType) -> Self {
        let kind = if t.is_file() {
            libc::S_IFREG
        } else if t.is_dir() {
            libc::S_IFDIR
        } else if t.is_symlink() {
            libc::S_IFLNK
        } else if t.is_fifo() {
            libc::S_IFIFO
        } else if t.is_socket() {
            libc::S_IFSOCK
        } else if t.is_block_device() {
            libc::S_IFBLK
        } else if t.is_char_device() {
            libc::S_IFCHR
        } else {
            0
        };
        FileType { kind }
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind == libc::S_IFREG
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind == libc::S_IFLNK
    }

    /// A named pipe.
    pub fn is_fifo(&self) -> bool {
        self.kind == libc::S_IFIFO
    }

    /// A Unix socket.
    pub fn is_socket(&self) -> bool {
        self.kind == libc::S_IFSOCK
    }

    /// A block device.
    pub fn is_block_device(&self) -> bool {
        self.kind == libc::S_IFBLK
    }

    /// A character device.
    pub fn is_char_device(&self) -> bool {
        self.kind == libc::S_IFCHR
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("len", &self.len())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("ino", &self.ino())
            .field("nlink", &self.nlink())
            .field("modified", &self.modified().ok())
            .finish_non_exhaustive()
    }
}
