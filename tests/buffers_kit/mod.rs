//! The buffer types of `tests/buffers.rs` behind one trait: each type's safe API as
//! [`Mutation`]s, where its memory lies, and views of it (plain, sliced, nested) with the
//! invariants every op must keep.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use ringloop::buf::{AlignedBuf, IoBuf, IoBufMut, Slice};
use ringloop::fs::{FixedBuf, FixedBufs};

/// A change made through a buffer type's safe API.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Append this many bytes (where the type can grow).
    Grow(usize),
    /// Shorten to this many bytes.
    Truncate(usize),
    /// Give spare capacity back (`shrink_to_fit`, or the type's nearest).
    Compact,
    /// Make room for this many more bytes.
    Reserve(usize),
    /// Put a new buffer of this capacity in its place.
    Replace(usize),
    /// Forget the contents.
    Clear,
    /// Overwrite the initialised bytes of the view (through `DerefMut`).
    Fill(u8),
}

/// A buffer type under test: its safe API as [`Mutation`]s, and where its memory is.
pub trait Subject: IoBufMut + Send + Sized {
    fn mutate(&mut self, m: &Mutation, fixed: &FixedBufs);
    /// The allocation's start and size, which every view of the buffer must stay inside.
    fn allocation(&self) -> (usize, usize);
    /// Its own length and capacity as its API reports them.
    fn len_cap(&self) -> (usize, usize);
}

impl Subject for Vec<u8> {
    fn mutate(&mut self, m: &Mutation, _: &FixedBufs) {
        match *m {
            Mutation::Grow(n) => self.extend(std::iter::repeat_n(0xAB, n)),
            Mutation::Truncate(n) => self.truncate(n),
            Mutation::Compact => self.shrink_to_fit(),
            Mutation::Reserve(n) => self.reserve(n),
            Mutation::Replace(n) => *self = Vec::with_capacity(n),
            Mutation::Clear => self.clear(),
            Mutation::Fill(b) => self.fill(b),
        }
    }
    fn allocation(&self) -> (usize, usize) {
        (self.as_ptr() as usize, self.capacity())
    }
    fn len_cap(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
}

impl Subject for Box<[u8]> {
    fn mutate(&mut self, m: &Mutation, _: &FixedBufs) {
        match *m {
            Mutation::Grow(n) | Mutation::Reserve(n) => {
                let mut v = std::mem::take(self).into_vec();
                v.resize(v.len() + n, 0xCD);
                *self = v.into_boxed_slice();
            }
            Mutation::Truncate(n) => {
                let mut v = std::mem::take(self).into_vec();
                v.truncate(n);
                *self = v.into_boxed_slice();
            }
            Mutation::Replace(n) => *self = vec![0; n].into_boxed_slice(),
            Mutation::Clear => *self = Box::default(),
            Mutation::Compact => {}
            Mutation::Fill(b) => self.fill(b),
        }
    }
    fn allocation(&self) -> (usize, usize) {
        (self.as_ptr() as usize, self.len())
    }
    fn len_cap(&self) -> (usize, usize) {
        (self.len(), self.len())
    }
}

impl Subject for AlignedBuf {
    fn mutate(&mut self, m: &Mutation, _: &FixedBufs) {
        match *m {
            Mutation::Grow(n) => {
                self.put_slice(&vec![0xEF; n]);
            }
            Mutation::Truncate(n) => self.truncate(n),
            Mutation::Compact => self.set_len(self.capacity()),
            Mutation::Reserve(n) => self.set_len(self.len() + n),
            Mutation::Replace(n) => *self = AlignedBuf::new(n, 512).unwrap(),
            Mutation::Clear => self.clear(),
            Mutation::Fill(b) => self.fill(b),
        }
    }
    fn allocation(&self) -> (usize, usize) {
        (self.as_ptr() as usize, self.capacity())
    }
    fn len_cap(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
}

impl Subject for FixedBuf {
    fn mutate(&mut self, m: &Mutation, fixed: &FixedBufs) {
        match *m {
            Mutation::Grow(n) => {
                self.put_slice(&vec![0x12; n]);
            }
            Mutation::Truncate(n) => self.set_len(self.len().min(n)),
            Mutation::Compact | Mutation::Reserve(_) => self.set_len(self.capacity()),
            Mutation::Replace(_) => {
                if let Some(other) = fixed.try_take() {
                    *self = other;
                }
            }
            Mutation::Clear => self.clear(),
            Mutation::Fill(b) => self.fill(b),
        }
    }
    fn allocation(&self) -> (usize, usize) {
        (self.as_ptr() as usize, self.capacity())
    }
    fn len_cap(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
}

#[cfg(feature = "bytes")]
impl Subject for bytes::BytesMut {
    fn mutate(&mut self, m: &Mutation, _: &FixedBufs) {
        match *m {
            Mutation::Grow(n) => self.extend_from_slice(&vec![0x34; n]),
            Mutation::Truncate(n) => self.truncate(n),
            Mutation::Compact => {
                // What is left after `split_to` is a view with less capacity than before.
                let n = self.len() / 2;
                let _ = self.split_to(n);
            }
            Mutation::Reserve(n) => self.reserve(n),
            Mutation::Replace(n) => *self = bytes::BytesMut::with_capacity(n),
            Mutation::Clear => self.clear(),
            Mutation::Fill(b) => self.fill(b),
        }
    }
    fn allocation(&self) -> (usize, usize) {
        (self.as_ptr() as usize, self.capacity())
    }
    fn len_cap(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
}

/// A buffer, a slice of it, or a slice of a slice.
pub enum View<B> {
    Plain(B),
    One(Slice<B>),
    Two(Slice<Slice<B>>),
}

impl<B: Subject> View<B> {
    pub fn new(buf: B, depth: u8, ranges: [(usize, usize); 2]) -> Self {
        let slice = |total: usize, (x, y): (usize, usize)| {
            let (lo, hi) = (x.min(y).min(total), x.max(y).min(total));
            lo..hi
        };
        match depth {
            0 => View::Plain(buf),
            1 => {
                let r = slice(buf.bytes_total(), ranges[0]);
                View::One(buf.slice(r))
            }
            _ => {
                let r = slice(buf.bytes_total(), ranges[0]);
                let one = buf.slice(r);
                let r = slice(one.bytes_total(), ranges[1]);
                View::Two(one.slice(r))
            }
        }
    }

    pub fn base(&self) -> &B {
        match self {
            View::Plain(b) => b,
            View::One(s) => s.get_ref(),
            View::Two(s) => s.get_ref().get_ref(),
        }
    }

    pub fn base_mut(&mut self) -> &mut B {
        match self {
            View::Plain(b) => b,
            View::One(s) => s.get_mut(),
            View::Two(s) => s.get_mut().get_mut(),
        }
    }

    /// The view's pointer, total and initialised bytes.
    pub fn shape(&self) -> (usize, usize, &[u8]) {
        match self {
            View::Plain(b) => (b.stable_ptr() as usize, b.bytes_total(), init_bytes(b)),
            View::One(s) => (s.stable_ptr() as usize, s.bytes_total(), &s[..]),
            View::Two(s) => (s.stable_ptr() as usize, s.bytes_total(), &s[..]),
        }
    }

    pub fn fill(&mut self, b: u8, fixed: &FixedBufs) {
        match self {
            View::Plain(x) => x.mutate(&Mutation::Fill(b), fixed),
            View::One(s) => s.fill(b),
            View::Two(s) => s.fill(b),
        }
    }

    /// The invariants every op must keep.
    pub fn check(&self, after: &str) -> Result<(), TestCaseError> {
        let base = self.base();
        let (len, cap) = base.len_cap();
        prop_assert!(
            len <= cap,
            "after {}: length {} past capacity {}",
            after,
            len,
            cap
        );
        prop_assert_eq!(base.bytes_init(), len, "after {}", after);
        let (start, size) = base.allocation();
        let (ptr, total, init) = self.shape();
        prop_assert!(init.len() <= total, "after {}", after);
        if total > 0 {
            prop_assert!(
                ptr >= start && ptr + total <= start + size,
                "after {}: the view ({} bytes at offset {}) leaves its {}-byte allocation",
                after,
                total,
                ptr as isize - start as isize,
                size
            );
        }
        Ok(())
    }
}

/// A buffer's initialised bytes, as the kernel sees them when it sends the buffer.
pub fn init_bytes<X: IoBuf>(x: &X) -> &[u8] {
    // SAFETY: `IoBuf` promises `bytes_init()` initialised bytes at `stable_ptr()`, which stay
    // put while `x` is borrowed.
    unsafe { std::slice::from_raw_parts(x.stable_ptr(), x.bytes_init()) }
}
