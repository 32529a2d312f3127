//! Owned buffers for completion I/O.
//!
//! With io_uring the kernel reads from or writes into a buffer *after* the call that started the
//! operation has returned, so the loop must own the buffer until the operation completes. Every I/O
//! method therefore takes its buffer by value and hands it back next to the result:
//!
//! ```no_run
//! # async fn demo(stream: ringloop::net::TcpStream) -> std::io::Result<()> {
//! let buf = Vec::with_capacity(4096);
//! let (res, buf) = stream.read(buf).await;
//! let n = res?;
//! assert_eq!(buf.len(), n);
//! # Ok(()) }
//! ```
//!
//! The epoll backend implements the very same API, so code does not change with the backend.

mod direct;
pub(crate) mod pool;
mod slice;
#[cfg(test)]
mod tests;

pub use direct::{AlignedBuf, DEFAULT_DIRECT_ALIGN};
pub use pool::{DEFAULT_POOL_COUNT, DEFAULT_POOL_SIZE, PooledBuf};
pub use slice::Slice;

use std::io;
use std::ops::{Bound, RangeBounds};

/// Writes all of `buf`'s initialised bytes through `write(slice, offset)` (called again with the
/// rest after a short write); `WriteZero` if a write takes nothing.
pub(crate) async fn write_all_with<B, F, Fut>(buf: B, mut write: F) -> BufResult<(), B>
where
    B: IoBuf,
    F: FnMut(Slice<B>, usize) -> Fut,
    Fut: std::future::Future<Output = BufResult<usize, Slice<B>>>,
{
    let total = buf.bytes_init();
    let mut buf = buf;
    let mut written = 0;
    while written < total {
        let (res, slice) = write(buf.slice(written..total), written).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                return (
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the kernel accepted no more bytes",
                    )),
                    buf,
                );
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// The result of an owned-buffer I/O call: the outcome and the buffer, given back either way.
pub type BufResult<T, B> = (io::Result<T>, B);

/// A buffer the kernel may read from: its first [`bytes_init`](IoBuf::bytes_init) bytes are sent.
///
/// Implemented for owned buffers: `Vec<u8>`, `Box<[u8]>`, `String`, `Rc<[u8]>`, `Arc<[u8]>`, and
/// `'static` data (`&'static [u8]`, `&'static str`, byte literals such as `b"hi\n"`); with the
/// `bytes` feature, `bytes::Bytes` and `BytesMut`. A borrowed `&buf[..]` does not work: the
/// loop must own the buffer while the kernel may use it (see the [module docs](self)). Since
/// `&'static [u8]` is a buffer, a shorter-lived `&[u8]` is refused with a lifetime error
/// ("borrowed data escapes ... must outlive `'static`") rather than this trait's message: copy
/// it (`data.to_vec()`) or share it as an `Rc<[u8]>` or `Bytes`.
///
/// # Safety
///
/// Implementors promise that [`stable_ptr`](IoBuf::stable_ptr) points to at least
/// [`bytes_total`](IoBuf::bytes_total) bytes of which the first [`bytes_init`](IoBuf::bytes_init)
/// are initialised, and that the pointer stays valid and unchanged while the value is moved
/// (heap-backed or `'static` storage), until the value is dropped or mutated through `&mut`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be written by ringloop: pass an owned buffer",
    label = "the loop must own this buffer while the kernel reads it",
    note = "owned buffers: Vec<u8>, Box<[u8]>, String, Rc<[u8]>, Arc<[u8]>, &'static [u8], &'static str, a byte literal; bytes::Bytes with the `bytes` feature",
    note = "to send borrowed bytes, copy them: `stream.write_all(data.to_vec())`"
)]
pub unsafe trait IoBuf: Unpin + 'static {
    /// A pointer to the first byte; stays put when `self` is moved.
    fn stable_ptr(&self) -> *const u8;

    /// How many bytes, from the start, are initialised (what a write sends).
    fn bytes_init(&self) -> usize;

    /// How many bytes the buffer can hold (what a read may fill).
    fn bytes_total(&self) -> usize;

    /// A view of `range` of this buffer that owns the buffer, for partial writes and reads.
    ///
    /// # Panics
    ///
    /// Panics if the range is inverted or ends past [`bytes_total`](IoBuf::bytes_total), as slicing
    /// a std slice does.
    ///
    /// # Examples
    ///
    /// ```
    /// use ringloop::buf::IoBuf;
    /// let slice = b"hello world".to_vec().slice(6..);
    /// assert_eq!(&slice[..], b"world");
    /// assert_eq!(slice.into_inner(), b"hello world");
    /// ```
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let total = self.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.checked_add(1).expect("slice start overflows usize"),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1).expect("slice end overflows usize"),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(begin <= end, "slice start {begin} is past its end {end}");
        assert!(
            end <= total,
            "slice end {end} is past the buffer's capacity {total}"
        );
        Slice::new(self, begin, end)
    }

    /// Which registered buffer this is, for buffers of a
    /// [`FixedBufs`](crate::fs::FixedBufs) set: the set's id and
    /// the buffer's index. `None` for every other buffer (the default).
    #[doc(hidden)]
    fn fixed_slot(&self) -> Option<(u64, u16)> {
        None
    }
}

/// A buffer the kernel may write into: a read fills it from its start up to
/// [`bytes_total`](IoBuf::bytes_total).
///
/// # Safety
///
/// As for [`IoBuf`]; in addition [`stable_mut_ptr`](IoBufMut::stable_mut_ptr) is valid for writes
/// of [`bytes_total`](IoBuf::bytes_total) bytes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read into by ringloop: pass an owned, growable buffer",
    label = "the loop must own this buffer while the kernel writes into it",
    note = "buffers a read can fill: Vec<u8> (e.g. `Vec::with_capacity(4096)`), Box<[u8]>; bytes::BytesMut with the `bytes` feature",
    note = "the read gives the buffer back: `let (res, buf) = stream.read(buf).await;`"
)]
pub unsafe trait IoBufMut: IoBuf {
    /// A writable pointer to the first byte; stays put when `self` is moved.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that the first `pos` bytes are now initialised (a read filled them).
    ///
    /// For `Vec<u8>` this sets the length to `pos`.
    ///
    /// # Safety
    ///
    /// The first `pos` bytes must really be initialised and `pos <= bytes_total()`.
    unsafe fn set_init(&mut self, pos: usize);
}

/// `IoBuf` for a type whose `as_ptr()` stays put when moved, whose `len()` bytes are initialised
/// out of `$total`.
macro_rules! io_buf {
    ($($t:ty => $total:ident),* $(,)?) => {$(
        // SAFETY: heap-backed (`Vec`, `String`, `Box`) or `'static` storage does not move when the
        // value is moved; `len()` bytes are initialised and `$total()` bytes are allocated.
        unsafe impl IoBuf for $t {
            fn stable_ptr(&self) -> *const u8 {
                self.as_ptr()
            }
            fn bytes_init(&self) -> usize {
                self.len()
            }
            fn bytes_total(&self) -> usize {
                self.$total()
            }
        }
    )*};
}

io_buf!(
    Vec<u8> => capacity,
    String => capacity,
    Box<[u8]> => len,
    &'static [u8] => len,
    &'static str => len,
    std::rc::Rc<[u8]> => len,
    std::sync::Arc<[u8]> => len,
);

// SAFETY: a `'static` array lives for the whole program and never moves; all `N` bytes are
// initialised. So `write_all(b"hi\n")` works with a byte literal as it is.
unsafe impl<const N: usize> IoBuf for &'static [u8; N] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        N
    }
    fn bytes_total(&self) -> usize {
        N
    }
}

// SAFETY: as for IoBuf; the whole capacity is writable.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller promises the first `pos <= capacity` bytes are initialised; the
        // clamp keeps a broken promise from setting a length past the allocation.
        unsafe { self.set_len(pos.min(self.capacity())) }
    }
}

// SAFETY: as for IoBuf; every byte is writable.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {
        // A boxed slice is always fully initialised; its length is fixed.
    }
}

#[cfg(feature = "bytes")]
io_buf!(bytes::Bytes => len, bytes::BytesMut => capacity);

// SAFETY: a BytesMut's storage is on the heap and does not move with the handle; all of its
// capacity is writable by its unique owner.
#[cfg(feature = "bytes")]
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // Not `as_mut_ptr()` (of the `[u8]` it derefs to): that pointer is good for `len()`
        // bytes only, and a read fills the whole capacity. The spare capacity of a buffer of
        // length 0 is all of it, so the pointer to it is good for every byte (Miri checks this).
        let len = self.len();
        // SAFETY: a shorter length is always initialised.
        unsafe { self.set_len(0) };
        let ptr = self.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        // SAFETY: the first `len` bytes were initialised a moment ago and nothing wrote to them.
        unsafe { self.set_len(len) };
        ptr
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller promises the first `pos <= capacity` bytes are initialised; the
        // clamp keeps a broken promise from setting a length past the allocation.
        unsafe { self.set_len(pos.min(self.capacity())) }
    }
}
