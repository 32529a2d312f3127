//! Writes tried at once (`Op::at_once`): a send that goes out at once is made on the loop
//! thread from the future's own memory, with no allocation, no SQE and no second poll; one that
//! would block is boxed and waits (uring: the ring; epoll: the next edge) without trying its
//! syscall twice. On uring a send is tried at once when it would make the ring trip alone; beside
//! other ops it joins the turn's batch in the ring (at full load that measured cheaper than a
//! syscall per send).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::time::Duration;

use ringloop::net::TcpStream;
use ringloop::{Backend, EventLoop};

/// Counts the allocations made on each thread, so a test can see what one call allocates.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the count is a
// thread-local `Cell` with a const initialiser and no destructor, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as `GlobalAlloc::realloc` requires, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// A connected pair: ours on the loop, the peer a plain std socket.
fn pair() -> (TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    (TcpStream::from_std(ours).unwrap(), peer)
}

both_backends! {
    /// A write the socket has room for allocates nothing: its op is never boxed.
    fn a_write_that_goes_out_at_once_allocates_nothing(lp: &mut EventLoop) {
        let (stream, mut peer) = pair();
        lp.run_until_complete(async {
            let msg: &'static [u8] = b"hello, at once";
            // The first write registers the socket (epoll) and warms what a loop makes once.
            let (res, _) = stream.write_all(msg).await;
            res.unwrap();
            let before = allocs();
            let (res, _) = stream.write_all(msg).await;
            let made = allocs() - before;
            res.unwrap();
            if !common::faults_on() {
                assert_eq!(made, 0, "a write that went out at once allocated {made} times");
            }
        });
        let mut got = vec![0; 28];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello, at oncehello, at once");
    }

    /// A write larger than the socket's buffers goes out in part at once, then waits for room
    /// (a boxed op: in the ring on uring, on the next edge on epoll) while the peer is slow,
    /// and every byte arrives in order.
    fn a_write_that_would_block_waits_and_every_byte_arrives(lp: &mut EventLoop) {
        let (stream, mut peer) = pair();
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100)); // the writer blocks first
            let mut got = vec![0; expect.len()];
            peer.read_exact(&mut got).unwrap();
            assert!(got == expect, "the bytes arrived changed or out of order");
        });
        lp.run_until_complete(async {
            let (res, back) = stream.write_all(data).await;
            res.unwrap();
            assert_eq!(back.len(), 8 << 20, "the buffer comes back whole");
        });
        reader.join().unwrap();
    }

    /// Under fault injection (ci/faults.sh runs this file) a send tried at once is cut short
    /// and interrupted like any other syscall, and every byte still arrives in order; without
    /// faults the same writes simply go out.
    fn writes_at_once_take_the_injected_faults_and_lose_nothing(lp: &mut EventLoop) {
        const N: usize = 2_000;
        const LEN: usize = 1_000;
        let (stream, mut peer) = pair();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; N * LEN];
            peer.read_exact(&mut got).unwrap();
            assert!(
                got == common::pattern(0, N * LEN),
                "the bytes arrived changed or out of order"
            );
        });
        let (short, interrupted) = lp.run_until_complete(async {
            for i in 0..N {
                let (res, _) = stream.write_all(common::pattern(i * LEN, LEN)).await;
                res.unwrap();
            }
            let injected = ringloop::current_stats().unwrap().faults_injected;
            (injected.short_transfers, injected.interrupted)
        });
        reader.join().unwrap();
        if common::faults_on() {
            assert!(
                short > 0 && interrupted > 0,
                "{N} writes under fault injection met {short} short sends and {interrupted} \
                 interrupted calls"
            );
        }
    }

    /// Writes that always go out at once never return `Pending` by themselves: each spends
    /// cooperative budget, so a task making many lets another ready task run.
    fn writes_that_always_go_out_at_once_do_not_starve_others(lp: &mut EventLoop) {
        let (stream, peer) = pair();
        // The peer drains in the background, so the socket always has room.
        let drain = std::thread::spawn(move || {
            let mut peer = peer;
            let mut sink = Vec::new();
            peer.read_to_end(&mut sink).unwrap();
            sink.len()
        });
        lp.run_until_complete(async {
            let stream = &stream;
            common::busy_reader_lets_others_run(|i| async move {
                let (res, _) = stream.write_all(i.to_le_bytes().to_vec()).await;
                res.unwrap();
            })
            .await;
        });
        drop(stream);
        assert_eq!(drain.join().unwrap(), 4096 * 8, "every byte arrived once");
    }

    /// A write of a slice sends the slice's bytes only, from its start in the buffer, and gives
    /// the slice back; one of nothing sends nothing and completes.
    fn a_write_of_a_slice_sends_its_range(lp: &mut EventLoop) {
        use ringloop::buf::IoBuf;
        let (stream, mut peer) = pair();
        lp.run_until_complete(async {
            let bytes: Vec<u8> = (0..32).collect();
            let (res, slice) = stream.write_all(bytes.slice(5..12)).await;
            res.unwrap();
            assert_eq!((slice.begin(), slice.end()), (5, 12));
            let (res, empty) = stream.write_all(slice.into_inner().slice(7..7)).await;
            res.unwrap();
            assert_eq!(empty.into_inner().len(), 32, "the buffer comes back whole");
        });
        let mut got = vec![0; 7];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, [5, 6, 7, 8, 9, 10, 11]);
    }
}

/// epoll: each send tried at once counts as one op submitted and one syscall, as it did when the
/// op was built first.
#[test]
fn epoll_lone_sends_count_an_op_and_a_syscall_each() {
    let mut lp = common::new_loop(Backend::Epoll);
    let (stream, mut peer) = pair();
    lp.run_until_complete(async {
        // The first write registers the socket with epoll.
        stream.write_all(&b"warm"[..]).await.0.unwrap();
    });
    let before = lp.stats();
    lp.run_until_complete(async {
        for _ in 0..10 {
            stream.write_all(&b"ping"[..]).await.0.unwrap();
        }
    });
    let after = lp.stats();
    lp.close();
    let mut got = vec![0; 44];
    peer.read_exact(&mut got).unwrap();
    assert!(got[4..].chunks(4).all(|c| c == b"ping"));
    if !common::faults_on() {
        assert_eq!(
            (
                after.ops_submitted - before.ops_submitted,
                after.io_syscalls - before.io_syscalls
            ),
            (10, 10),
            "(ops submitted, syscalls)"
        );
    }
}

/// Runs `n` small writes on `stream` while a read on `other` stays in flight (an op beside
/// them), and returns the loop's (ops submitted, io syscalls) during the writes.
fn writes_beside_a_read(lp: &mut EventLoop, n: usize) -> (u64, u64) {
    sized_writes_beside_a_read(lp, n, b"ping")
}

/// As `writes_beside_a_read`, with `msg` as each write.
fn sized_writes_beside_a_read(lp: &mut EventLoop, n: usize, msg: &'static [u8]) -> (u64, u64) {
    let (stream, mut peer) = pair();
    let (other, _other_peer) = pair();
    // A read that stays in flight beside the writes; `abort` ends it below.
    let reading = lp.spawn(async move {
        let (res, _) = other.read(Vec::with_capacity(64)).await;
        res.map(|n| n == 0)
    });
    // Let the read reach the kernel.
    lp.run_until_complete(ringloop::time::sleep(Duration::from_millis(10)));
    let before = lp.stats();
    lp.run_until_complete(async {
        for _ in 0..n {
            let (res, _) = stream.write_all(msg).await;
            res.unwrap();
        }
    });
    let after = lp.stats();
    reading.abort();
    let mut got = vec![0; msg.len() * n];
    peer.read_exact(&mut got).unwrap();
    assert!(got.chunks(msg.len()).all(|c| c == msg));
    (
        after.ops_submitted - before.ops_submitted,
        after.io_syscalls - before.io_syscalls,
    )
}

/// uring: sends with nothing else in flight are tried at once (one `send` each, no SQE).
#[test]
fn uring_lone_sends_go_out_at_once() {
    let mut lp = common::new_loop(Backend::Uring);
    let (stream, mut peer) = pair();
    // Measured from a loop that has turned once (its first turn may still have setup in flight).
    lp.run_until_complete(ringloop::time::sleep(Duration::from_millis(1)));
    let before = lp.stats();
    lp.run_until_complete(async {
        for _ in 0..10 {
            let (res, _) = stream.write_all(&b"ping"[..]).await;
            res.unwrap();
        }
    });
    let after = lp.stats();
    lp.close();
    let mut got = vec![0; 40];
    peer.read_exact(&mut got).unwrap();
    assert!(got.chunks(4).all(|c| c == b"ping"));
    if !common::faults_on() {
        assert_eq!(
            (
                after.ops_submitted - before.ops_submitted,
                after.io_syscalls - before.io_syscalls
            ),
            (0, 10),
            "(ops submitted, inline syscalls)"
        );
    }
}

/// uring: sends beside another op in flight join the ring's batch (an SQE each, no inline
/// syscall), small or large, and still arrive.
#[test]
fn uring_sends_beside_other_ops_go_to_the_ring() {
    static CHUNK: [u8; 32 * 1024] = [9; 32 * 1024];
    let mut lp = common::new_loop(Backend::Uring);
    let (ops, syscalls) = writes_beside_a_read(&mut lp, 10);
    let (big_ops, big_syscalls) = sized_writes_beside_a_read(&mut lp, 4, &CHUNK);
    lp.close();
    if !common::faults_on() {
        assert_eq!((ops, syscalls), (10, 0), "(ops submitted, inline syscalls)");
        assert!(
            big_ops >= 4 && big_syscalls == 0,
            "(ops submitted, inline syscalls) = ({big_ops}, {big_syscalls})"
        );
    }
}

/// A peer that vanished: the write tried at once reports the error, on both backends and with
/// the fast path off.
#[test]
fn a_write_at_once_to_a_closed_peer_is_an_error() {
    for backend in [Backend::Uring, Backend::Epoll] {
        let mut lp = common::new_loop(backend);
        let (stream, peer) = pair();
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer); // a reset
        let err = lp.run_until_complete(async {
            ringloop::time::sleep(Duration::from_millis(20)).await;
            for _ in 0..100 {
                if let (Err(e), _) = stream.write_all(&[7u8; 1024][..]).await {
                    return e;
                }
            }
            panic!("{backend}: 100 writes to a reset peer all succeeded");
        });
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{backend}: {err}"
        );
        lp.close();
    }
}
