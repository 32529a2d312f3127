use super::{IoBuf, IoBufMut};
use std::ops::{Deref, DerefMut};

/// A range of an owned buffer, made by [`IoBuf::slice`]; it owns the buffer and gives it back
/// whole with [`into_inner`](Slice::into_inner).
///
/// Writing a `Slice` sends the initialised bytes of its range; reading into a `Slice` fills its range
/// from the start and extends the buffer's initialised length if the read went past it.
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

    /// Where the range starts in the whole buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Where the range ends (exclusive) in the whole buffer.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The whole buffer, by reference.
    pub fn get_ref(&self) -> &T {
        &self.buf
    }

    /// The whole buffer, by mutable reference.
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
        // initialised part starts at `begin` and has `len` bytes, inside the buffer.
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

// SAFETY: the pointer is the inner buffer's stable pointer offset by `begin <= bytes_total`, so it
// stays put and stays inside the allocation; lengths are clamped to the range.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.begin)
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
    fn fixed_slot(&self) -> Option<(u64, u16)> {
        // A part of a registered buffer lies inside it, which is all a fixed op needs.
        self.buf.fixed_slot()
    }
}

// SAFETY: as for IoBuf; the inner buffer is writable over the whole range.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr().wrapping_add(self.begin)
    }
    unsafe fn set_init(&mut self, pos: usize) {
        let init = self.buf.bytes_init();
        let whole = self.begin + pos;
        if whole > init {
            if self.begin > init {
                // SAFETY: `init..begin` lies inside the buffer's capacity (begin <= end <= total),
                // which `IoBufMut` makes writable; zeroing it means no byte is marked initialised
                // that was never written.
                unsafe {
                    std::ptr::write_bytes(self.buf.stable_mut_ptr().add(init), 0, self.begin - init)
                }
            }
            // SAFETY: `0..begin` is initialised (it was, or was just zeroed) and the caller
            // initialised `begin..whole`, with `whole <= end <= bytes_total`.
            unsafe { self.buf.set_init(whole) }
        }
    }
}
