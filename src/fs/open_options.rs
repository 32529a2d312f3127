//! `OpenOptions`.

use std::io;
use std::path::Path;

use super::{File, c_path};
use crate::driver::op::FileOp;
use crate::op::fs::OpenAt;

/// How to open a file, as std's `OpenOptions`.
///
/// # Examples
///
/// ```
/// use ringloop::fs::OpenOptions;
/// let dir = tempfile::tempdir().unwrap();
/// ringloop::run(async {
///     let log = OpenOptions::new().append(true).create(true).open(dir.path().join("log")).await?;
///     let (res, _) = log.write_at(b"one line\n".to_vec(), 0).await;
///     res?;
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// All options off; mode 0o666 (before the umask).
    pub fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }

    /// Every write goes to the end of the file (`O_APPEND`); implies writing.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }

    /// Truncate the file to 0 bytes on open (needs `write`).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }

    /// Create the file if it does not exist (needs `write` or `append`).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists (needs `write` or `append`).
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }

    /// The permission bits of a created file (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags, or-ed in (the access mode bits are ignored).
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    fn flags(&self) -> io::Result<i32> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned()));
        let writes = self.write || self.append;
        let access = match (self.read, writes) {
            (true, false) => libc::O_RDONLY,
            (false, true) => libc::O_WRONLY,
            (true, true) => libc::O_RDWR,
            (false, false) => return invalid("OpenOptions: set read, write or append"),
        };
        if self.truncate && !self.write {
            return invalid("OpenOptions: truncate needs write (and not append alone)");
        }
        if (self.create || self.create_new) && !writes {
            return invalid("OpenOptions: create and create_new need write or append");
        }
        let mut flags = access | (self.custom_flags & !libc::O_ACCMODE);
        if self.append {
            flags |= libc::O_APPEND;
        }
        if self.truncate {
            flags |= libc::O_TRUNC;
        }
        if self.create_new {
            flags |= libc::O_CREAT | libc::O_EXCL;
        } else if self.create {
            flags |= libc::O_CREAT;
        }
        Ok(flags)
    }

    /// Opens `path` with these options.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for contradictory options (say, `create` without `write`) or a path with a
    /// NUL byte; the kernel's error otherwise (`NotFound`, `AlreadyExists`, `PermissionDenied`,
    /// `EMFILE` when the fd table is full, ...).
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let flags = self.flags()?;
        let path = c_path(path.as_ref())?;
        let fd = FileOp::new(OpenAt::new(path, flags, self.mode as libc::mode_t)).await?;
        Ok(File::from_owned(fd, flags & libc::O_DIRECT != 0))
    }
}
