//! Pure tests of the buffer types: no kernel, so they also run under Miri (`ci/miri.sh`).
//!
//! A read is played the way the kernel does it: `bytes_total()` bytes written through
//! `stable_mut_ptr()` (raw pointer writes, as DMA or `copy_to_user`), then `set_init(n)`. Miri
//! (and the invariant checks) then catch a write past the allocation or a length past the
//! capacity, whatever the buffer went through before.

use super::*;
use proptest::prelude::*;

/// Plays a read of `data` into `buf`, as the kernel does: at most `bytes_total()` bytes through
/// the raw pointer, then `set_init`. Returns how many bytes went in.
fn kernel_read<B: IoBufMut>(buf: &mut B, data: &[u8]) -> usize {
    let n = data.len().min(buf.bytes_total());
    // SAFETY: `IoBufMut` promises `bytes_total()` writable bytes at `stable_mut_ptr()`, and `n`
    // is at most that; `data` is a separate allocation.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf.stable_mut_ptr(), n);
        buf.set_init(n);
    }
    n
}

/// Plays a write of `buf` as the kernel does: reads its `bytes_init()` bytes through the raw
/// pointer.
fn kernel_write<B: IoBuf>(buf: &B) -> Vec<u8> {
    let n = buf.bytes_init();
    let mut out = vec![0; n];
    // SAFETY: `IoBuf` promises `bytes_init()` initialised bytes at `stable_ptr()`.
    unsafe { std::ptr::copy_nonoverlapping(buf.stable_ptr(), out.as_mut_ptr(), n) };
    out
}

/// What every `IoBuf` promises, checked on `buf`; `whole` is the allocation `buf` must lie in
/// (its start and capacity).
fn check_inside<B: IoBuf>(buf: &B, whole: (*const u8, usize)) {
    assert!(
        buf.bytes_init() <= buf.bytes_total(),
        "more initialised than held"
    );
    let start = buf.stable_ptr() as usize;
    let (base, cap) = (whole.0 as usize, whole.1);
    if buf.bytes_total() > 0 {
        assert!(start >= base, "the buffer starts before its allocation");
        assert!(
            start + buf.bytes_total() <= base + cap,
            "the buffer ends past its allocation: {} bytes from offset {} of {cap}",
            buf.bytes_total(),
            start - base
        );
    }
}

fn vec_whole(v: &Vec<u8>) -> (*const u8, usize) {
    (v.as_ptr(), v.capacity())
}

#[test]
fn a_slice_over_a_vec_replaced_by_a_smaller_one_stays_inside_it() {
    let mut slice = Vec::with_capacity(4096).slice(0..4096);
    *slice.get_mut() = Vec::with_capacity(8);
    check_inside(&slice, vec_whole(slice.get_ref()));
    let n = kernel_read(&mut slice, &[7u8; 2000]);
    assert_eq!(n, slice.get_ref().capacity());
    let v = slice.into_inner();
    assert!(
        v.len() <= v.capacity(),
        "len {} > capacity {}",
        v.len(),
        v.capacity()
    );
    assert_eq!(v, vec![7u8; n]);
}

#[test]
fn a_slice_over_a_shrunk_vec_stays_inside_it() {
    let mut v = Vec::with_capacity(4096);
    v.extend_from_slice(b"0123456789");
    let mut slice = v.slice(2..4096);
    slice.get_mut().truncate(5);
    slice.get_mut().shrink_to_fit();
    check_inside(&slice, vec_whole(slice.get_ref()));
    assert_eq!(
        &slice[..],
        b"234",
        "the initialised bytes of the clamped range"
    );
    kernel_read(&mut slice, b"abcdefgh");
    let v = slice.into_inner();
    assert!(v.len() <= v.capacity());
    assert_eq!(&v[..2], b"01");
}

#[test]
fn a_range_wholly_past_a_shrunk_buffer_is_empty() {
    let mut slice = vec![1u8; 100].slice(50..100);
    *slice.get_mut() = vec![2u8; 10];
    slice.get_mut().shrink_to_fit();
    assert_eq!(slice.bytes_total(), 0);
    assert_eq!(slice.bytes_init(), 0);
    assert!(slice.is_empty());
    assert_eq!(kernel_read(&mut slice, b"xyz"), 0);
    assert!(kernel_write(&slice).is_empty());
    assert_eq!(slice.into_inner(), vec![2u8; 10]);
}

#[test]
fn nested_slices_follow_the_innermost_buffer() {
    let mut outer = Vec::with_capacity(1024).slice(100..1000).slice(10..800);
    *outer.get_mut().get_mut() = Vec::with_capacity(200);
    let cap = outer.get_ref().get_ref().capacity();
    check_inside(&outer, vec_whole(outer.get_ref().get_ref()));
    assert_eq!(outer.bytes_total(), cap.min(900) - 110);
    let n = kernel_read(&mut outer, &[9u8; 4096]);
    let v = outer.into_inner().into_inner();
    assert!(v.len() <= v.capacity());
    assert_eq!(v.len(), 110 + n);
    assert!(
        v[..110].iter().all(|&b| b == 0),
        "the gap before the range is zeroed"
    );
    assert!(v[110..].iter().all(|&b| b == 9));
}

#[test]
fn a_slice_over_a_replaced_box_stays_inside_it() {
    let mut slice = vec![0u8; 64].into_boxed_slice().slice(8..64);
    *slice.get_mut() = vec![3u8; 16].into_boxed_slice();
    let whole = (slice.get_ref().as_ptr(), slice.get_ref().len());
    check_inside(&slice, whole);
    assert_eq!(kernel_read(&mut slice, &[4u8; 100]), 8);
    assert_eq!(&slice.into_inner()[..], &[[3u8; 8], [4u8; 8]].concat()[..]);
}

#[test]
fn a_slice_over_a_replaced_aligned_buf_stays_inside_it() {
    let mut slice = AlignedBuf::new(8192, 4096).unwrap().slice(4096..8192);
    *slice.get_mut() = AlignedBuf::new(512, 512).unwrap();
    let whole = (slice.get_ref().stable_ptr(), slice.get_ref().capacity());
    check_inside(&slice, whole);
    assert_eq!(kernel_read(&mut slice, &[1u8; 4096]), 0);
    let buf = slice.into_inner();
    assert!(buf.len() <= buf.capacity());
}

#[test]
fn set_init_past_the_capacity_is_clamped() {
    let mut v: Vec<u8> = Vec::with_capacity(4);
    // SAFETY: a broken promise on purpose: the clamp must keep the length inside the capacity
    // (the 4 bytes are written first so that what is marked initialised is).
    unsafe {
        std::ptr::write_bytes(v.as_mut_ptr(), 5, 4);
        v.set_init(1000);
    }
    assert_eq!(v.len(), v.capacity());
    let mut slice = v.slice(0..2);
    // SAFETY: as above: the range holds 2 bytes, all initialised.
    unsafe { slice.set_init(1000) };
    assert_eq!(slice.bytes_init(), 2);
}

#[cfg(feature = "bytes")]
#[test]
fn a_slice_over_a_replaced_bytes_mut_stays_inside_it() {
    let mut slice = bytes::BytesMut::with_capacity(4096).slice(0..4096);
    *slice.get_mut() = bytes::BytesMut::with_capacity(16);
    let whole = (slice.get_ref().as_ptr(), slice.get_ref().capacity());
    check_inside(&slice, whole);
    let n = kernel_read(&mut slice, &[6u8; 2000]);
    let b = slice.into_inner();
    assert!(b.len() <= b.capacity());
    assert_eq!(b.len(), n);
}

/// A read into a `BytesMut` that holds bytes fills its whole capacity through one pointer (Miri
/// checks the pointer is good for all of it) and keeps the bytes before a slice's range.
#[cfg(feature = "bytes")]
#[test]
fn a_read_into_a_bytes_mut_with_bytes_keeps_those_before_the_range() {
    let mut b = bytes::BytesMut::with_capacity(64);
    b.extend_from_slice(b"abc");
    let cap = b.capacity();
    let mut slice = b.slice(3..);
    assert_eq!(kernel_read(&mut slice, &[8u8; 100]), cap - 3);
    let b = slice.into_inner();
    assert_eq!(&b[..3], b"abc");
    assert!(b[3..].iter().all(|&x| x == 8));
    let mut b = b;
    b.truncate(2);
    assert_eq!(kernel_read(&mut b, b"xyz"), 3);
    assert_eq!(&b[..], b"xyz");
}

/// One step of the model test: what safe code may do to a sliced buffer between ops.
#[derive(Debug, Clone)]
enum Step {
    /// A read of this many bytes (a pattern) into the slice.
    Read(usize),
    /// Writes the slice (the kernel reads its initialised bytes).
    Write,
    /// Through `get_mut` on the innermost `Vec`:
    Push(usize),
    Truncate(usize),
    ShrinkToFit,
    Reserve(usize),
    Replace(usize),
    Clear,
    /// Through `DerefMut`: overwrite the slice's bytes.
    Fill(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3000).prop_map(Step::Read),
        Just(Step::Write),
        (0usize..600).prop_map(Step::Push),
        (0usize..3000).prop_map(Step::Truncate),
        Just(Step::ShrinkToFit),
        (0usize..3000).prop_map(Step::Reserve),
        (0usize..3000).prop_map(Step::Replace),
        Just(Step::Clear),
        any::<u8>().prop_map(Step::Fill),
    ]
}

/// Checks a nested slice against the innermost `Vec` as it is now: inside its allocation, and
/// its bytes are the `Vec`'s bytes of the clamped range.
fn check_nested(s: &Slice<Slice<Vec<u8>>>) {
    let v = s.get_ref().get_ref();
    assert!(v.len() <= v.capacity());
    check_inside(s.get_ref(), vec_whole(v));
    check_inside(s, vec_whole(v));
    let inner = s.get_ref();
    let begin1 = inner.begin().min(inner.end().min(v.capacity()));
    let begin2 = s.begin().min(s.end().min(inner.bytes_total()));
    let at = begin1 + begin2;
    assert_eq!(s.stable_ptr() as usize, v.as_ptr() as usize + at);
    if s.bytes_init() > 0 {
        assert_eq!(&s[..], &v[at..at + s.bytes_init()]);
    }
}

/// Fewer cases under Miri, which interprets every step, and no regression file (Miri's
/// isolation keeps the file system out).
fn config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig {
            cases: 8,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any sequence of safe calls on a nested slice and its innermost `Vec`, each followed by
    /// the invariant check, with reads and writes played as the kernel does them.
    #[test]
    fn nested_slices_survive_any_safe_mutation(
        cap in 0usize..3000,
        outer in (0usize..3000, 0usize..3000),
        inner in (0usize..3000, 0usize..3000),
        steps in proptest::collection::vec(step(), 1..24),
    ) {
        let (ob, oe) = (outer.0.min(outer.1).min(cap), outer.0.max(outer.1).min(cap));
        let (ib, ie) = (inner.0.min(inner.1), inner.0.max(inner.1));
        let total = oe - ob;
        let (ib, ie) = (ib.min(total), ie.min(total));
        let mut s = Vec::<u8>::with_capacity(cap).slice(ob..oe).slice(ib..ie);
        check_nested(&s);
        for (i, st) in steps.into_iter().enumerate() {
            let v = s.get_mut().get_mut();
            match st {
                Step::Read(n) => {
                    let data: Vec<u8> = (0..n).map(|k| (k + i) as u8).collect();
                    let got = kernel_read(&mut s, &data);
                    prop_assert!(got <= s.bytes_total());
                    prop_assert_eq!(&s[..got], &data[..got]);
                }
                Step::Write => {
                    let sent = kernel_write(&s);
                    prop_assert_eq!(&sent[..], &s[..]);
                }
                Step::Push(n) => v.extend(std::iter::repeat_n(i as u8, n)),
                Step::Truncate(n) => v.truncate(n),
                Step::ShrinkToFit => v.shrink_to_fit(),
                Step::Reserve(n) => v.reserve(n),
                Step::Replace(n) => *v = Vec::with_capacity(n),
                Step::Clear => v.clear(),
                Step::Fill(b) => s.fill(b),
            }
            check_nested(&s);
        }
    }
}
