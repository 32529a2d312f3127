//! [`FixedBufs`] / [`FixedBuf`]: a set of buffers registered with the loop's ring, which
//! `File::read_at` / `write_at` use through `IORING_OP_READ_FIXED` / `WRITE_FIXED` (the kernel
//! maps them once rather than pinning the pages on every op).

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::buf::pool::Region;
use crate::buf::{DEFAULT_DIRECT_ALIGN, IoBuf, IoBufMut};
use crate::driver::DriverCell;

/// The most buffers one set may hold (the kernel's limit on registered buffers).
const MAX_FIXED: usize = 1 << 14;

/// Memory shared by a set and the buffers taken from it.
struct FixedShared {
    region: Region,
    size: usize,
    count: usize,
    /// Which set this is, so a buffer from another loop's set is not used by index here.
    id: u64,
    free: Mutex<Vec<u16>>,
}

// SAFETY: the region is plain memory; which buffer is whose is kept by `free` (under its lock)
// and by the unique `FixedBuf` that took an index.
unsafe impl Send for FixedShared {}
// SAFETY: as above.
unsafe impl Sync for FixedShared {}

static NEXT_SET: AtomicU64 = AtomicU64::new(1);

/// A set of equal buffers registered with the current loop's ring (uring), for reads and writes
/// at offsets ([`File::read_at`](super::File::read_at), `write_at`): with a [`FixedBuf`]
/// from the set they are `IORING_OP_READ_FIXED` / `WRITE_FIXED`, which skip mapping and pinning
/// the buffer's pages on every op. On epoll (or a buffer used on another loop) they are plain
/// reads and writes. Each buffer starts on a 4 KiB boundary, so it serves `O_DIRECT` too.
///
/// One set per loop at a time (the ring has one buffer table); dropping the last clone of the
/// set unregisters it. Buffers taken from it stay valid after that (they keep the memory) and
/// are then used as plain buffers.
///
/// # Examples
///
/// ```
/// use ringloop::fs::FixedBufs;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data");
/// ringloop::run(async {
///     let bufs = FixedBufs::register(4, 4096)?;
///     let file = ringloop::fs::File::options().read(true).write(true).create(true).open(&path).await?;
///     let mut buf = bufs.try_take().expect("a free buffer");
///     buf.put_slice(b"fixed");
///     let (res, buf) = file.write_at(buf, 0).await;
///     res?;
///     drop(buf); // back to the set
///     let buf = bufs.try_take().unwrap();
///     let (res, buf) = file.read_at(buf, 0).await;
///     assert_eq!(&buf[..res?], b"fixed");
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct FixedBufs {
    handle: Rc<SetHandle>,
}

struct SetHandle {
    shared: Arc<FixedShared>,
    /// The loop whose ring has the set registered (uring only).
    driver: Option<Weak<DriverCell>>,
}

impl Drop for SetHandle {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.as_ref().and_then(Weak::upgrade) {
            driver.unregister_fixed(self.shared.id);
        }
    }
}

impl FixedBufs {
    /// Allocates `count` buffers of `size` bytes (rounded up to a multiple of 4 KiB) and
    /// registers them with the current loop's ring (uring; on epoll they are only allocated).
    ///
    /// # Errors
    ///
    /// - outside a running loop;
    /// - `InvalidInput` if `count` is 0 or above 16384, or `size` is 0 or above 1 GiB;
    /// - `ResourceBusy` if this loop has a set registered already (drop it first);
    /// - `OutOfMemory` if the memory cannot be mapped, or the kernel cannot pin it (the
    ///   `RLIMIT_MEMLOCK` limit, `ulimit -l`, on kernels before 5.12; the memory cgroup after).
    pub fn register(count: usize, size: usize) -> io::Result<FixedBufs> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        if count == 0 || count > MAX_FIXED {
            return Err(invalid(format!(
                "FixedBufs::register: count {count} must be from 1 to {MAX_FIXED}"
            )));
        }
        if size == 0 || size > 1 << 30 {
            return Err(invalid(format!(
                "FixedBufs::register: size {size} must be from 1 byte to 1 GiB"
            )));
        }
        let driver = crate::driver::current().ok_or_else(|| {
            io::Error::other(
                "FixedBufs::register was called outside a running ringloop event loop: register \
                 the set from a task of the loop that will use it",
            )
        })?;
        let size = size.next_multiple_of(DEFAULT_DIRECT_ALIGN);
        let region = Region::zeroed(count * size, "set of fixed buffers")?;
        let shared = Arc::new(FixedShared {
            region,
            size,
            count,
            id: NEXT_SET.fetch_add(1, Ordering::Relaxed),
            free: Mutex::new((0..count as u16).rev().collect()),
        });
        let iovecs: Vec<libc::iovec> = (0..count)
            .map(|i| libc::iovec {
                // SAFETY: `i * size` is inside the region of `count * size` bytes.
                iov_base: unsafe { shared.region.ptr.as_ptr().add(i * size) }.cast(),
                iov_len: size,
            })
            .collect();
        let keep: Arc<dyn std::any::Any + Send + Sync> = shared.clone();
        let registered = driver.register_fixed(shared.id, &iovecs, keep)?;
        Ok(FixedBufs {
            handle: Rc::new(SetHandle {
                shared,
                driver: registered.then(|| Rc::downgrade(&driver)),
            }),
        })
    }

    /// A free buffer (length 0), or `None` if every buffer is taken. It returns to the set when
    /// dropped.
    pub fn try_take(&self) -> Option<FixedBuf> {
        let shared = &self.handle.shared;
        let index = lock(&shared.free).pop()?;
        Some(FixedBuf {
            shared: shared.clone(),
            index,
            len: 0,
        })
    }

    /// How many buffers are free.
    pub fn available(&self) -> usize {
        lock(&self.handle.shared.free).len()
    }

    /// How many buffers the set has.
    pub fn count(&self) -> usize {
        self.handle.shared.count
    }

    /// Each buffer's size in bytes (the size asked for, rounded up to a multiple of 4 KiB).
    pub fn buf_size(&self) -> usize {
        self.handle.shared.size
    }

    /// Whether the set is registered with a ring (the uring backend), so that reads and writes
    /// with its buffers are fixed-buffer ops.
    pub fn is_registered(&self) -> bool {
        self.handle.driver.is_some()
    }
}

impl fmt::Debug for FixedBufs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBufs")
            .field("count", &self.count())
            .field("buf_size", &self.buf_size())
            .field("available", &self.available())
            .field("registered", &self.is_registered())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One buffer of a [`FixedBufs`] set: fixed capacity ([`FixedBufs::buf_size`]), a length that
/// reads and [`put_slice`](FixedBuf::put_slice) set. It goes back to its set when dropped (on
/// any thread).
pub struct FixedBuf {
    shared: Arc<FixedShared>,
    index: u16,
    len: usize,
}

impl FixedBuf {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: `index < count`, so the buffer lies inside the region.
        unsafe {
            self.shared
                .region
                .ptr
                .as_ptr()
                .add(self.index as usize * self.shared.size)
        }
    }

    /// How many bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.shared.size
    }

    /// Its index in the set's registration.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Forgets the contents (length 0).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends as much of `data` as fits and returns how many bytes that was.
    pub fn put_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity() - self.len);
        // SAFETY: `len + n <= capacity` bytes of this buffer are inside the region, which only
        // this `FixedBuf` uses while it holds the index; `data` cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr().add(self.len), n) };
        self.len += n;
        n
    }

    /// Sets the length to `len` (up to the capacity); the bytes are zeros or what earlier use
    /// left.
    pub fn set_len(&mut self, len: usize) {
        // The region was zeroed when mapped, so any prefix is initialised.
        self.len = len.min(self.capacity());
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        lock(&self.shared.free).push(self.index);
    }
}

impl Deref for FixedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of this buffer are initialised (the region was zeroed).
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl DerefMut for FixedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` and the held index make the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuf")
            .field("index", &self.index)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

// SAFETY: the buffer's memory is kept by the `Arc` and does not move with the value.
unsafe impl IoBuf for FixedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    fn fixed_slot(&self) -> Option<(u64, u16)> {
        Some((self.shared.id, self.index))
    }
}

// SAFETY: the whole buffer is writable, and only through this value while it holds the index.
unsafe impl IoBufMut for FixedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.len = pos.min(self.capacity());
    }
}
