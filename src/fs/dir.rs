//! Directories: [`ReadDir`] and [`DirEntry`]. Linux has no ring op that lists a directory, so
//! `getdents` runs on the blocking pool, a batch of entries per trip, on both backends.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::{FileType, Metadata};
use crate::JoinHandle;

/// Entries read per trip to the blocking pool.
const BATCH: usize = 64;

type Batch = (std::fs::ReadDir, VecDeque<io::Result<DirEntry>>, bool);

/// The entries of a directory, from [`read_dir`](super::read_dir), without `.` and `..` (as
/// std's). Take them with [`next_entry`](ReadDir::next_entry).
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// ringloop::run(async {
///     ringloop::fs::write(dir.path().join("a"), b"1".to_vec()).await?;
///     ringloop::fs::create_dir(dir.path().join("b")).await?;
///     let mut names = Vec::new();
///     let mut entries = ringloop::fs::read_dir(dir.path()).await?;
///     while let Some(entry) = entries.next_entry().await? {
///         names.push(entry.file_name());
///     }
///     names.sort();
///     assert_eq!(names, ["a", "b"]);
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub struct ReadDir {
    dir: PathBuf,
    buffered: VecDeque<io::Result<DirEntry>>,
    state: State,
}

enum State {
    /// The std iterator, between trips; `None` once it ended.
    Idle(Option<std::fs::ReadDir>),
    /// A trip to the pool in progress (kept if `next_entry`'s future is dropped).
    Reading(JoinHandle<Batch>),
}

impl ReadDir {
    pub(crate) fn new(dir: PathBuf, inner: std::fs::ReadDir) -> Self {
        ReadDir {
            dir,
            buffered: VecDeque::new(),
            state: State::Idle(Some(inner)),
        }
    }

    /// The next entry; `None` at the end.
    ///
    /// # Errors
    ///
    /// The kernel's error reading the directory (`EIO`, say), naming it.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        loop {
            if let Some(entry) = self.buffered.pop_front() {
                return entry.map(Some);
            }
            match &mut self.state {
                State::Idle(None) => return Ok(None),
                State::Idle(inner) => {
                    let mut inner = inner.take().expect("matched just above");
                    let dir = self.dir.clone();
                    self.state = State::Reading(crate::spawn_blocking(move || {
                        let mut batch = VecDeque::with_capacity(BATCH);
                        let mut ended = false;
                        while batch.len() < BATCH {
                            match inner.next() {
                                Some(entry) => batch.push_back(
                                    entry
                                        .map(DirEntry::from_std)
                                        .map_err(|e| super::name_path("read_dir", &dir, e)),
                                ),
                                None => {
                                    ended = true;
                                    break;
                                }
                            }
                        }
                        (inner, batch, ended)
                    }));
                }
                State::Reading(handle) => {
                    let (inner, batch, ended) = handle.await.map_err(|e| {
                        io::Error::other(format!(
                            "read_dir {:?}: the pool job failed: {e}",
                            self.dir
                        ))
                    })?;
                    self.buffered = batch;
                    self.state = State::Idle((!ended).then_some(inner));
                }
            }
        }
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// One entry of a [`ReadDir`].
#[derive(Debug)]
pub struct DirEntry {
    path: PathBuf,
    name: OsString,
    /// From the directory listing itself (`d_type`) where the filesystem gives it.
    file_type: Option<FileType>,
}

impl DirEntry {
    fn from_std(entry: std::fs::DirEntry) -> Self {
        DirEntry {
            path: entry.path(),
            name: entry.file_name(),
            file_type: entry.file_type().ok().map(FileType::from_std),
        }
    }

    /// The entry's name within its directory.
    pub fn file_name(&self) -> OsString {
        self.name.clone()
    }

    /// The directory's path joined with the entry's name.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The kind of file, without following a symlink: from the listing when the filesystem
    /// gives it, else a `statx`.
    ///
    /// # Errors
    ///
    /// As [`symlink_metadata`](super::symlink_metadata) (the entry may be gone by now).
    pub async fn file_type(&self) -> io::Result<FileType> {
        match self.file_type {
            Some(t) => Ok(t),
            None => Ok(self.metadata().await?.file_type()),
        }
    }

    /// The entry's metadata, without following a symlink (as std's).
    ///
    /// # Errors
    ///
    /// As [`symlink_metadata`](super::symlink_metadata) (the entry may be gone by now).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        super::symlink_metadata(&self.path).await
    }
}

/// Opens a directory for listing (on the blocking pool).
pub(super) async fn open(path: &Path) -> io::Result<ReadDir> {
    let dir = path.to_owned();
    let job_dir = dir.clone();
    let inner = crate::spawn_blocking(move || std::fs::read_dir(&job_dir))
        .await
        .map_err(|e| io::Error::other(format!("read_dir {dir:?}: the pool job failed: {e}")))?
        .map_err(|e| super::name_path("read_dir", &dir, e))?;
    Ok(ReadDir::new(dir, inner))
}
