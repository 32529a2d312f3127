//! [`PooledBuf`]: a buffer of the loop's receive pool, handed to the user.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use super::super::IoBuf;
use super::Pool;
use crate::stats::Counters;

enum Storage {
    Pool {
        pool: Rc<Pool>,
        bid: u16,
    },
    /// Bytes that did not come through the pool (a cancelled owned read's leftovers).
    Owned(Vec<u8>),
}

/// Bytes received into a buffer of the loop's receive pool, from
/// [`TcpStream::recv_pooled`](crate::net::TcpStream::recv_pooled) or
/// [`UnixStream::recv_pooled`](crate::net::UnixStream::recv_pooled).
///
/// It derefs to the received bytes, and it is an [`IoBuf`], so it can be written straight back
/// (`stream.write_all(buf).await`) with no copy. Dropping it returns the buffer to the pool. It may
/// outlive its stream and its loop: the pool's memory goes when the loop is closed and the last
/// `PooledBuf` is dropped. An empty `PooledBuf` from `recv_pooled` means end of stream.
///
/// Holding buffers keeps them from other connections: while every buffer of the pool is held,
/// `recv_pooled` on any stream of the loop waits for one to come back.
///
/// # Examples
///
/// ```
/// use ringloop::net::{TcpListener, TcpStream};
///
/// ringloop::run(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server, _) = listener.accept().await?;
///     client.write_all(b"hello" as &'static [u8]).await.0?;
///     let buf = server.recv_pooled().await?;
///     assert_eq!(&buf[..], b"hello");
///     server.write_all(buf).await.0?; // echo it back, no copy
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub struct PooledBuf {
    storage: Storage,
    start: usize,
    len: usize,
}

impl PooledBuf {
    /// Bytes `start..end` of buffer `bid` of `pool`.
    pub(super) fn lent(pool: Rc<Pool>, bid: u16, start: usize, end: usize) -> PooledBuf {
        PooledBuf {
            storage: Storage::Pool { pool, bid },
            start,
            len: end,
        }
    }

    pub(crate) fn from_vec(bytes: Vec<u8>) -> PooledBuf {
        let len = bytes.len();
        PooledBuf {
            storage: Storage::Owned(bytes),
            start: 0,
            len,
        }
    }

    /// An empty buffer: end of stream.
    pub(crate) fn eof() -> PooledBuf {
        PooledBuf::from_vec(Vec::new())
    }

    pub(super) fn base(&self) -> *const u8 {
        match &self.storage {
            Storage::Pool { pool, bid } => pool.buffer_ptr(*bid),
            Storage::Owned(v) => v.as_ptr(),
        }
    }

    /// The whole buffer's storage and capacity, to `recv` into (free-list pools).
    pub(crate) fn spare(&mut self) -> (*mut u8, usize) {
        match &mut self.storage {
            Storage::Pool { pool, bid } => (pool.buffer_ptr(*bid), pool.size as usize),
            Storage::Owned(v) => (v.as_mut_ptr(), v.capacity()),
        }
    }

    /// Sets how many bytes `recv` put into the buffer from its start.
    ///
    /// # Safety
    ///
    /// The first `len` bytes must be initialised and `len` at most the capacity.
    pub(crate) unsafe fn set_received(&mut self, len: usize) {
        match &mut self.storage {
            // SAFETY: the caller initialised `len <= capacity` bytes.
            Storage::Owned(v) => unsafe { v.set_len(len) },
            Storage::Pool { pool, .. } if len > 0 => Counters::bump(&pool.counters.pool_received),
            Storage::Pool { .. } => {}
        }
        self.start = 0;
        self.len = len;
    }

    /// Drops the first `n` bytes (they were copied out).
    pub(crate) fn advance(&mut self, n: usize) {
        self.start += n.min(self.len - self.start);
    }

    /// The buffer's capacity: the pool's buffer size (or the length of bytes that came from
    /// elsewhere). On an incremental ring (uring, Linux 6.12+) the bytes are a part of such a
    /// buffer, which other receives' parts share.
    pub fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Pool { pool, .. } => pool.size as usize,
            Storage::Owned(v) => v.capacity(),
        }
    }

    /// Whether the bytes sit in a buffer of the loop's pool (rather than in a heap copy, as
    /// bytes a cancelled owned read left behind do).
    pub fn is_pooled(&self) -> bool {
        matches!(self.storage, Storage::Pool { .. })
    }
}

impl Deref for PooledBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `start..len` lies within the storage and was initialised by the kernel (or by
        // the Vec); the storage lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.base().add(self.start), self.len - self.start) }
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let (ptr, _) = self.spare();
        // SAFETY: as in `deref`; `self` is the buffer's only owner, so the access is exclusive.
        unsafe { std::slice::from_raw_parts_mut(ptr.add(self.start), self.len - self.start) }
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len())
            .field("pooled", &self.is_pooled())
            .finish()
    }
}

// SAFETY: the pointer is into memory the buffer keeps alive (its pool's region, or its Vec), and
// it does not move while the buffer is owned by an op; `len - start` bytes are initialised.
unsafe impl IoBuf for PooledBuf {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `start <= len <= capacity`.
        unsafe { self.base().add(self.start) }
    }

    fn bytes_init(&self) -> usize {
        self.len - self.start
    }

    fn bytes_total(&self) -> usize {
        self.len - self.start
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Storage::Pool { pool, bid } = &self.storage {
            pool.give_back(*bid);
        }
    }
}
