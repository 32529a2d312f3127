//! Buffers for direct I/O: [`AlignedBuf`], memory aligned as `O_DIRECT` needs. (Buffers
//! registered with the ring are `fs::FixedBufs`.)

use std::alloc::Layout;
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::{IoBuf, IoBufMut};

/// The alignment used when a file does not report its own (`statx` without `STATX_DIOALIGN`).
pub const DEFAULT_DIRECT_ALIGN: usize = 4096;

/// A heap buffer whose start is aligned to a power of two, as direct I/O (`O_DIRECT`) needs:
/// the buffer's address, the file offset and the length must all be multiples of the file's
/// alignment. [`File::aligned_buf`](crate::fs::File::aligned_buf) takes the alignment from the
/// file.
///
/// Its capacity is fixed; its length (the initialised bytes a write sends) grows with reads and
/// [`put_slice`](AlignedBuf::put_slice).
///
/// # Examples
///
/// ```
/// use ringloop::buf::AlignedBuf;
/// let mut buf = AlignedBuf::new(8192, 4096).unwrap();
/// assert_eq!(buf.as_ptr() as usize % 4096, 0);
/// assert_eq!(buf.put_slice(b"header"), 6);
/// assert_eq!(&buf[..], b"header");
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    capacity: usize,
    len: usize,
}

// SAFETY: the buffer owns its allocation; nothing in it is tied to a thread.
unsafe impl Send for AlignedBuf {}
// SAFETY: `&AlignedBuf` gives only reads of plain bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `capacity` bytes whose start is aligned to `align` (a power of two),
    /// with length 0.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `align` is not a power of two or the size overflows; `OutOfMemory` if
    /// the allocation fails.
    pub fn new(capacity: usize, align: usize) -> io::Result<AlignedBuf> {
        let layout = Layout::from_size_align(capacity.max(1), align).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AlignedBuf: alignment {align} is not a power of two (or {capacity} bytes overflow)"),
            )
        })?;
        // SAFETY: the layout has a non-zero size. Zeroed, so every byte is initialised memory
        // (a read that fills less leaves zeros, never garbage).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("AlignedBuf: cannot allocate {capacity} bytes"),
            )
        })?;
        Ok(AlignedBuf {
            ptr,
            layout,
            capacity,
            len: 0,
        })
    }

    /// How many bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The alignment of its start.
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    /// Forgets the contents (length 0; the capacity stays).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Shortens the contents to `len` bytes (no effect if they are shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends as much of `data` as fits and returns how many bytes that was.
    pub fn put_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity - self.len);
        // SAFETY: `len + n <= capacity` bytes are allocated; `data` is a caller's slice, which
        // cannot overlap memory this buffer owns exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// Sets the length to `len` (up to the capacity); the bytes are zeros or what a read left.
    pub fn set_len(&mut self, len: usize) {
        // Every byte was zeroed at allocation, so any prefix is initialised.
        self.len = len.min(self.capacity);
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. An op the kernel still works on owns the
        // buffer, so it cannot be dropped before that op's completion.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len <= capacity` bytes are initialised (zeroed or written).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("align", &self.align())
            .finish()
    }
}

// SAFETY: the allocation does not move with the value; `len` bytes are initialised and
// `capacity` allocated.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity
    }
}

// SAFETY: the whole capacity is allocated and writable.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.len = pos.min(self.capacity);
    }
}
