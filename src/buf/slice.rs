use super::{IoBuf, IoBufMut};
use std::ops::{Deref, DerefMut};

/// A range of an owned buffer, made by [`IoBuf::slice`]; it owns the buffer and gives it back
/// whole with [`into_inner`](Slice::into_inner).
///
/// Writing a `Slice` sends the initialised bytes of its range; reading into a `Slice` fills its range
/// from the start and extends the buffer's initialised length if the read went past it.
///
/// The buffer may change through [`get_mut`](Slice::get_mut) (shrunk, replaced): every use of the
/// slice (each I/O op, each deref) then looks at the range as it lies inside the buffer *now*,
/// clamped to the buffer's current capacity. A range that lies wholly past the end is empty: a
/// read into it reads nothing, a write of it sends nothing.
///
/// # Examples
///
/// ```
/// use ringloop::buf::IoBuf;
/// let mut slice = Vec::with_capacity(4096).slice(0..4096);
/// *slice.get_mut() = Vec::with_capacity(8);
/// assert!(slice.bytes_total() <= slice.get_ref().capacity());
/// ```
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

impl<T: IoBuf> Slice<T> {
    pub(crate) fn new(buf: T, begin: usize, end: usize) -> Self {
        Slice { buf, begin, end }
    }

    /// Where the range starts in the whole buffer, as it was made (see [`Slice`] for a buffer
    /// that shrank since).
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Where the range ends (exclusive) in the whole buffer, as it was made (see [`Slice`] for a
    /// buffer that shrank since).
    pub fn end(&self) -> usize {
        self.end
    }

    /// The range as it lies in the buffer now: `begin <= end <= bytes_total()` of the buffer.
    /// Read fresh at every use, because [`get_mut`](Slice::get_mut) lets the buffer shrink.
    fn bounds(&self) -> (usize, usize) {
        let end = self.end.min(self.buf.bytes_total());
        (self.begin.min(end), end)
    }

    /// The whole buffer, by reference.
    pub fn get_ref(&self) -> &T {
        &self.buf
    }

    /// The whole buffer, by mutable reference. Changing its capacity is allowed: the range is
    /// checked against the buffer again at its next use.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.buf
    }

    /// Gives the whole buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: IoBuf> Deref for Slice<T> {
    type Target = [u8];

    /// The initialised bytes of the range.
    fn deref(&self) -> &[u8] {
        let len = self.bytes_init();
        // SAFETY: `IoBuf` promises `bytes_init()` initialised bytes at `stable_ptr()`; the range's
        // initialised part starts at its (clamped) begin and has `len` bytes, inside the buffer
        // as it is now.
        unsafe { std::slice::from_raw_parts(self.stable_ptr(), len) }
    }
}

impl<T: IoBufMut> DerefMut for Slice<T> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.bytes_init();
        // SAFETY: as in `deref`, and `IoBufMut` makes the storage writable; `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.stable_mut_ptr(), len) }
    }
}

// SAFETY: the pointer is the inner buffer's stable pointer offset by `begin`, and the lengths
// are those of the range, both clamped to the buffer's capacity as it is at this call (`bounds`),
// so they stay inside the allocation however the buffer changed through `get_mut`.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.bounds().0)
    }
    fn bytes_init(&self) -> usize {
        let (begin, end) = self.bounds();
        self.buf.bytes_init().clamp(begin, end) - begin
    }
    fn bytes_total(&self) -> usize {
        let (begin, end) = self.bounds();
        end - begin
    }
    fn fixed_slot(&self) -> Option<(u64, u16)> {
        // A part of a registered buffer lies inside it, which is all a fixed op needs.
        self.buf.fixed_slot()
    }
}

// SAFETY: as for IoBuf; the inner buffer is writable over the whole (clamped) range.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        let begin = self.bounds().0;
        self.buf.stable_mut_ptr().wrapping_add(begin)
    }
    unsafe fn set_init(&mut self, pos: usize) {
        let (begin, end) = self.bounds();
        let init = self.buf.bytes_init();
        // `pos` is at most `bytes_total()` (the caller's promise); the clamp keeps a broken
        // promise from marking bytes past the buffer's capacity.
        let whole = (begin + pos).min(end);
        if whole > init {
            if begin > init {
                // SAFETY: `init..begin` lies inside the buffer's capacity (`begin <= end <=
                // bytes_total`), which `IoBufMut` makes writable; zeroing it means no byte is
                // marked initialised that was never written.
                unsafe {
                    std::ptr::write_bytes(self.buf.stable_mut_ptr().add(init), 0, begin - init)
                }
            }
            // SAFETY: `0..begin` is initialised (it was, or was just zeroed) and the caller
            // initialised `begin..whole`, with `whole <= end <= bytes_total`.
            unsafe { self.buf.set_init(whole) }
        }
    }
}
