//! Safe code cannot corrupt memory: every public buffer type (`Vec<u8>`, `Box<[u8]>`,
//! `AlignedBuf`, `FixedBuf`, `BytesMut` with the `bytes` feature), plain, sliced and in nested
//! slices, driven through its whole safe API between ops (grown, shrunk, replaced through
//! `Slice::get_mut`, cleared, overwritten), then read into and written from a stream socket, a
//! datagram socket and a file, on both backends. After each op the buffer must lie inside its
//! allocation, its length inside its capacity, and its bytes be the ones read.
//!
//! The cases come from proptest (`PROPTEST_CASES` sets how many; 128 by default). The regression
//! tests below are the defects this suite found, named after what broke.

mod buffers_kit;
mod common;

use std::cell::RefCell;
use std::path::PathBuf;

use buffers_kit::{Mutation, Subject, View, init_bytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use ringloop::EventLoop;
use ringloop::buf::{AlignedBuf, IoBuf, IoBufMut};
use ringloop::fs::{File, FixedBufs};
use ringloop::net::{UdpSocket, UnixStream};

/// One step of a case.
#[derive(Debug, Clone)]
enum Step {
    Mutate(Mutation),
    /// A peer sends this many bytes on the stream; the view reads them (what does not fit is
    /// drained after).
    ReadStream(usize),
    /// A datagram of this many bytes into the view (truncated to fit).
    ReadDatagram(usize),
    /// A read of the file at this offset into the view.
    ReadFile(u64),
    /// The view is written to the stream; the peer must get its initialised bytes.
    WriteStream,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Vec,
    Boxed,
    Aligned,
    Fixed,
    #[cfg(feature = "bytes")]
    BytesMut,
}

#[derive(Debug, Clone)]
struct Case {
    kind: Kind,
    cap: usize,
    /// 0: the buffer itself; 1: a slice of it; 2: a slice of a slice.
    depth: u8,
    ranges: [(usize, usize); 2],
    steps: Vec<Step>,
}

const MAX: usize = 9000;

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..MAX).prop_map(Mutation::Grow),
        (0..MAX).prop_map(Mutation::Truncate),
        Just(Mutation::Compact),
        (0..MAX).prop_map(Mutation::Reserve),
        (0..MAX).prop_map(Mutation::Replace),
        Just(Mutation::Clear),
        any::<u8>().prop_map(Mutation::Fill),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => mutation().prop_map(Step::Mutate),
        1 => (0..MAX).prop_map(Step::ReadStream),
        1 => (0..MAX).prop_map(Step::ReadDatagram),
        1 => (0..FILE_LEN as u64 + 100).prop_map(Step::ReadFile),
        1 => Just(Step::WriteStream),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    #[cfg(feature = "bytes")]
    let kinds = vec![
        Kind::Vec,
        Kind::Boxed,
        Kind::Aligned,
        Kind::Fixed,
        Kind::BytesMut,
    ];
    #[cfg(not(feature = "bytes"))]
    let kinds = vec![Kind::Vec, Kind::Boxed, Kind::Aligned, Kind::Fixed];
    proptest::sample::select(kinds)
}

fn case() -> impl Strategy<Value = Case> {
    (
        kind(),
        1..MAX,
        0u8..3,
        [(0..MAX, 0..MAX), (0..MAX, 0..MAX)],
        proptest::collection::vec(step(), 1..16),
    )
        .prop_map(|(kind, cap, depth, ranges, steps)| Case {
            kind,
            cap,
            depth,
            ranges,
            steps,
        })
}

/// The file every case reads from, `FILE_LEN` bytes of [`byte_at`].
const FILE_LEN: usize = 20_000;

fn byte_at(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

/// What a case talks to, made once per test on the test's loop.
struct Io {
    a: UnixStream,
    b: UnixStream,
    udp_a: UdpSocket,
    udp_b: UdpSocket,
    file: File,
    fixed: FixedBufs,
    _dir: tempfile::TempDir,
}

/// Runs `f` on the view as whatever it is, giving it back.
macro_rules! on_view {
    ($view:expr, |$b:ident| $body:expr) => {
        match $view {
            View::Plain($b) => {
                let ($b, out) = $body;
                (View::Plain($b), out)
            }
            View::One($b) => {
                let ($b, out) = $body;
                (View::One($b), out)
            }
            View::Two($b) => {
                let ($b, out) = $body;
                (View::Two($b), out)
            }
        }
    };
}

async fn read_stream<X: IoBufMut>(io: &Io, x: X, n: usize) -> (X, Result<usize, String>) {
    let data: Vec<u8> = (0..n).map(byte_at).collect();
    let (res, _) = io.a.write_all(data).await;
    res.unwrap();
    if n == 0 {
        return (x, Ok(0)); // nothing to read: a read would wait
    }
    let total = x.bytes_total();
    if total == 0 {
        drain(&io.b, n).await;
        return (x, Ok(0));
    }
    let (res, x) = io.b.read(x).await;
    let got = res.map_err(|e| e.to_string());
    if let Ok(k) = got {
        drain(&io.b, n - k).await;
    }
    (x, got)
}

async fn drain(s: &UnixStream, mut left: usize) {
    while left > 0 {
        let (res, _) = s.read(Vec::with_capacity(left)).await;
        let k = res.unwrap();
        assert!(k > 0, "the stream ended with {left} bytes to come");
        left -= k;
    }
}

async fn read_datagram<X: IoBufMut>(io: &Io, x: X, n: usize) -> (X, Result<usize, String>) {
    let data: Vec<u8> = (0..n).map(byte_at).collect();
    let (res, _) = io.udp_a.send(data).await;
    res.unwrap();
    let (res, x) = io.udp_b.recv(x).await;
    (x, kept_of_datagram(res).map_err(|e| e.to_string()))
}

/// A receive's byte count, counting a truncated datagram (an error that says so, carrying what
/// was kept) as the bytes kept: what the buffer's invariants are checked against.
fn kept_of_datagram(res: std::io::Result<usize>) -> std::io::Result<usize> {
    match res {
        Err(e) => match ringloop::net::TruncatedDatagram::of(&e) {
            Some(t) => Ok(t.received()),
            None => Err(e),
        },
        ok => ok,
    }
}

async fn read_file<X: IoBufMut + Send>(io: &Io, x: X, pos: u64) -> (X, Result<usize, String>) {
    let (res, x) = io.file.read_at(x, pos).await;
    (x, res.map_err(|e| e.to_string()))
}

async fn write_stream<X: IoBuf>(io: &Io, x: X) -> (X, Result<usize, String>) {
    let n = x.bytes_init();
    let (res, x) = io.a.write_all(x).await;
    res.unwrap();
    let mut got = Vec::new();
    while got.len() < n {
        let (res, buf) = io.b.read(Vec::with_capacity(n - got.len())).await;
        assert!(res.unwrap() > 0);
        got.extend_from_slice(&buf);
    }
    if init_bytes(&x) != &got[..] {
        return (
            x,
            Err("the peer got other bytes than the buffer holds".into()),
        );
    }
    (x, Ok(n))
}

async fn run_case<B: Subject + 'static>(io: &Io, buf: B, case: &Case) -> Result<(), TestCaseError> {
    let mut view = View::new(buf, case.depth, case.ranges);
    view.check("slicing")?;
    for (i, step) in case.steps.iter().enumerate() {
        let what = format!("step {i} ({step:?})");
        match step {
            Step::Mutate(Mutation::Fill(b)) => view.fill(*b, &io.fixed),
            Step::Mutate(m) => view.base_mut().mutate(m, &io.fixed),
            Step::ReadStream(n) => {
                let (v, got) = on_view!(view, |x| read_stream(io, x, *n).await);
                view = v;
                check_read(&view, got, byte_at, &what)?;
            }
            Step::ReadDatagram(n) => {
                let (v, got) = on_view!(view, |x| read_datagram(io, x, *n).await);
                view = v;
                check_read(&view, got, byte_at, &what)?;
            }
            Step::ReadFile(pos) => {
                let (v, got) = on_view!(view, |x| read_file(io, x, *pos).await);
                view = v;
                check_read(&view, got, |k| byte_at(*pos as usize + k), &what)?;
            }
            Step::WriteStream => {
                let (v, got) = on_view!(view, |x| write_stream(io, x).await);
                view = v;
                prop_assert!(got.is_ok(), "{}: {:?}", what, got);
            }
        }
        view.check(&what)?;
    }
    Ok(())
}

/// A read gave `got` bytes: they fit the view and are the expected ones.
fn check_read<B: Subject>(
    view: &View<B>,
    got: Result<usize, String>,
    expect: impl Fn(usize) -> u8,
    what: &str,
) -> Result<(), TestCaseError> {
    view.check(what)?;
    let n = got.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    let (_, total, init) = view.shape();
    prop_assert!(n <= total, "{}: read {} into a view of {}", what, n, total);
    prop_assert!(
        init.len() >= n,
        "{}: {} read, {} marked initialised",
        what,
        n,
        init.len()
    );
    let want: Vec<u8> = (0..n).map(expect).collect();
    prop_assert_eq!(&init[..n], &want[..], "{}", what);
    Ok(())
}

fn setup(lp: &mut EventLoop) -> Io {
    lp.run_until_complete(async {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("data");
        std::fs::write(&path, (0..FILE_LEN).map(byte_at).collect::<Vec<u8>>()).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let udp_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp_a.connect(udp_b.local_addr().unwrap()).unwrap();
        udp_b.connect(udp_a.local_addr().unwrap()).unwrap();
        Io {
            a,
            b,
            udp_a,
            udp_b,
            file: File::open(&path).await.unwrap(),
            fixed: FixedBufs::register(4, 8192).unwrap(),
            _dir: dir,
        }
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

fn run_kind(io: &Io, case: &Case) -> impl std::future::Future<Output = Result<(), TestCaseError>> {
    let case = case.clone();
    async move {
        match case.kind {
            Kind::Vec => run_case(io, Vec::with_capacity(case.cap), &case).await,
            Kind::Boxed => run_case(io, vec![0u8; case.cap].into_boxed_slice(), &case).await,
            Kind::Aligned => run_case(io, AlignedBuf::new(case.cap, 4096).unwrap(), &case).await,
            Kind::Fixed => {
                let buf = io
                    .fixed
                    .try_take()
                    .expect("every buffer of the set is back");
                run_case(io, buf, &case).await
            }
            #[cfg(feature = "bytes")]
            Kind::BytesMut => run_case(io, bytes::BytesMut::with_capacity(case.cap), &case).await,
        }
    }
}

both_backends! {
    /// The suite: random cases of every buffer type through every safe call, then I/O.
    fn every_buffer_type_survives_any_safe_use_then_io(lp: &mut EventLoop) {
        let io = setup(lp);
        let lp = RefCell::new(lp);
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&case(), |case| {
            lp.borrow_mut().run_until_complete(run_kind(&io, &case))
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        let lp = lp.into_inner();
        lp.run_until_complete(async move { drop(io) });
    }

    /// Issue 29 item 15: a 2,000-byte datagram into a slice of 4,096 over a `Vec` replaced by one
    /// of 8 bytes wrote past the new allocation, then set its length past its capacity.
    fn a_datagram_into_a_slice_of_a_replaced_vec_stays_inside_it(lp: &mut EventLoop) {
        let io = setup(lp);
        lp.run_until_complete(async {
            let mut slice = Vec::with_capacity(4096).slice(0..4096);
            *slice.get_mut() = Vec::with_capacity(8);
            let (res, _) = io.udp_a.send(vec![1u8; 2000]).await;
            res.unwrap();
            let (res, slice) = io.udp_b.recv(slice).await;
            let v = slice.into_inner();
            assert!(v.len() <= v.capacity(), "length {} past capacity {}", v.len(), v.capacity());
            // The datagram is longer than what is left of the buffer: reported as truncated.
            let err = res.unwrap_err();
            let t = ringloop::net::TruncatedDatagram::of(&err).expect("a truncated datagram");
            assert_eq!(t.datagram_len(), 2000);
            assert_eq!(t.received(), v.capacity().min(2000));
            assert!(v.iter().all(|&b| b == 1));
        });
    }

    /// The same through a stream read and a file read, with the buffer shrunk in place.
    fn stream_and_file_reads_into_a_slice_of_a_shrunk_vec_stay_inside_it(lp: &mut EventLoop) {
        let io = setup(lp);
        lp.run_until_complete(async {
            let mut v = Vec::with_capacity(4096);
            v.extend_from_slice(b"abcdef");
            let mut slice = v.slice(2..4096);
            slice.get_mut().shrink_to_fit();
            let (res, _) = io.a.write_all(vec![2u8; 3000]).await;
            res.unwrap();
            let (res, mut slice) = io.b.read(slice).await;
            let n = res.unwrap();
            assert!(n <= 4, "read {n} bytes into a range of at most 4");
            drain(&io.b, 3000 - n).await;
            slice.get_mut().truncate(3);
            slice.get_mut().shrink_to_fit();
            let (res, slice) = io.file.read_at(slice, 0).await;
            let v = slice.into_inner();
            assert!(v.len() <= v.capacity(), "length {} past capacity {}", v.len(), v.capacity());
            assert!(res.unwrap() <= v.capacity().saturating_sub(2));
            assert_eq!(&v[..2], b"ab");
        });
    }
}

/// Issue 29 item 12: a direct (`O_DIRECT`) read whose SQE was queued but whose immediate submit
/// failed gave its buffer back with the error while the SQE stayed queued for the loop's next
/// enter, so the kernel could later write into a buffer its caller owned again. It stays in
/// flight instead. (uring only: the submit is the ring's; `io_uring_enter` is made to fail
/// with a seccomp filter, in a child process.)
#[test]
fn a_direct_read_whose_submit_fails_keeps_its_buffer() {
    use std::future::Future;
    use std::os::unix::fs::OpenOptionsExt;
    use std::task::Poll;
    if !common::in_child() {
        common::run_in_child("a_direct_read_whose_submit_fails_keeps_its_buffer", &[]);
        return;
    }
    let mut lp = common::new_loop(ringloop::Backend::Uring);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("direct");
    std::fs::write(&path, vec![1u8; 8192]).unwrap();
    let std_file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    lp.run_until_complete(async {
        let f = File::from_std(std_file);
        let (a, _b) = UnixStream::pair().unwrap();
        // A read in the kernel, so that the direct read is submitted at once rather than with
        // the loop's next wait.
        let _idle = ringloop::spawn(async move { a.read(Vec::with_capacity(8)).await.0.is_ok() });
        for _ in 0..3 {
            ringloop::yield_now().await;
        }
        common::deny_syscall(libc::SYS_io_uring_enter, libc::ENOMEM);
        let buf = f.aligned_buf(4096).unwrap();
        let mut read = Box::pin(f.read_at(buf, 0));
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        if let Poll::Ready((res, _)) = first {
            panic!("the read gave its buffer back while its SQE is still queued: {res:?}");
        }
    });
    // Closing cannot reach the kernel now: the loop leaks what it cannot prove finished.
    drop(lp);
}
