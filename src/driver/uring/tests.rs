//! Unit tests of the uring driver.

use super::*;
use std::time::Instant;

fn driver(shared: &Shared) -> UringDriver {
    UringDriver::new(8, shared, Rc::new(Counters::default()), FastPaths::ALL, 0)
        .expect("io_uring is required")
}

/// Parks for 20 ms with nothing to complete and checks the wait lasted about that long.
fn park_20ms(d: &mut UringDriver, shared: &Shared) {
    let start = Instant::now();
    d.park(Some(Duration::from_millis(20)), shared).unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(20),
        "woke early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "overslept: {waited:?}");
}

/// On this kernel (6.x) the ring fd is registered and the first setup flags are taken; with
/// those fast paths off, the fallbacks run (and a wait still works through them).
#[test]
fn the_ring_fd_is_registered_and_the_setup_flags_taken_unless_switched_off() {
    let shared = Shared::new().unwrap();
    let mut d = driver(&shared);
    assert!(d.ring_index.is_some(), "IORING_REGISTER_RING_FDS failed");
    assert!(d.setup.contains("NO_SQARRAY"), "{}", d.setup);
    park_20ms(&mut d, &shared);
    let off = FastPaths {
        registered_ring: false,
        setup_flags: false,
        ..FastPaths::ALL
    };
    let mut d = UringDriver::new(8, &shared, Rc::new(Counters::default()), off, 0).unwrap();
    assert!(d.ring_index.is_none());
    assert!(!d.setup.contains("NO_SQARRAY"), "{}", d.setup);
    park_20ms(&mut d, &shared);
}

#[test]
fn a_wait_ends_at_its_timeout_with_ext_arg() {
    let shared = Shared::new().unwrap();
    let mut d = driver(&shared);
    park_20ms(&mut d, &shared);
}

#[test]
fn a_remote_wake_ends_a_blocking_wait() {
    let shared = std::sync::Arc::new(Shared::new().unwrap());
    let mut d = driver(&shared);
    let s = shared.clone();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        s.push_remote(1);
    });
    let start = Instant::now();
    d.park(None, &shared).unwrap(); // no timeout: only the eventfd can end it
    assert!(start.elapsed() < Duration::from_secs(5));
    waker.join().unwrap();
    let mut ids = Vec::new();
    shared.take_remote(&mut ids, &mut Vec::new());
    assert_eq!(ids, vec![1]);
}

/// A batched wait (a busy loop with a few ops in flight) still ends soon after one
/// completion: it asks for more than one but holds out microseconds for them, not until the
/// others come. With the fewest and the most ops in flight that batch (2 and 8), and one
/// between.
#[test]
fn a_batched_wait_ends_soon_after_one_completion() {
    for slow in [1usize, 3, 7] {
        let shared = Shared::new().unwrap();
        let mut d = driver(&shared);
        if crate::backend::kernel_version().is_some_and(|v| v >= (6, 12)) {
            assert!(d.batch_waits, "IORING_FEAT_MIN_TIMEOUT on Linux 6.12+");
        }
        let waker = std::task::Waker::noop();
        let times: Vec<Box<Timespec>> = std::iter::once(5u64)
            .chain((0..slow as u64).map(|i| 2_000 + 500 * i))
            .map(|ms| Box::new(Timespec::from(Duration::from_millis(ms))))
            .collect();
        for ts in &times {
            let entry = opcode::Timeout::new(&**ts).build();
            // The test keeps `times` alive until the driver shut down below.
            d.submit_op(entry, waker).unwrap();
        }
        d.last_reaped = 2; // as if the last turn was busy
        let start = Instant::now();
        d.park(None, &shared).unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(5), "woke early: {waited:?}");
        assert!(
            waited < Duration::from_millis(1_000),
            "a batched wait with {} ops in flight held out for the slower ops: {waited:?}",
            slow + 1
        );
        assert_eq!(d.last_reaped, 1, "the one completion that came was reaped");
        d.shutdown();
        drop(d);
        drop(times);
    }
}

/// Parks until another thread's `push_remote` wakes the loop (no timeout: only the wake can end
/// the wait), `times` times in a row.
fn woken_from_another_thread(d: &mut UringDriver, shared: &std::sync::Arc<Shared>, times: u64) {
    for id in 0..times {
        let s = shared.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            s.push_remote(id);
        });
        let mut ids = Vec::new();
        // A spurious wake (allowed) ends a park with nothing queued: park again.
        while ids.is_empty() {
            d.park(None, shared).unwrap();
            shared.take_remote(&mut ids, &mut Vec::new());
        }
        waker.join().unwrap();
        assert_eq!(ids, vec![id]);
    }
}

/// With `wake-poll`, one multishot poll of the eventfd serves every wake: it is still armed
/// after each (no re-arm). If the kernel ends it, the next park arms it again and wakes still
/// arrive. Without the fast path, the eventfd read is used up by each wake and re-armed.
#[test]
fn remote_wakes_keep_one_multishot_poll_armed() {
    let shared = std::sync::Arc::new(Shared::new().unwrap());
    let mut d = driver(&shared);
    assert!(d.wake_poll, "multishot poll is in Linux 5.13+");
    woken_from_another_thread(&mut d, &shared, 3);
    assert!(d.wake_armed, "the multishot poll ended after a wake");
    assert_eq!(d.in_flight, 1, "only the wake poll is in flight");

    // The kernel ends the poll (as on a CQ overflow): the CQE without F_MORE disarms it.
    let cancel = opcode::AsyncCancel::new(WAKE_TAG)
        .build()
        .user_data(CANCEL_TAG);
    // SAFETY: ASYNC_CANCEL carries no pointers.
    unsafe { d.push(&cancel) }.unwrap();
    d.submit_and_wait(2).unwrap();
    d.reap();
    assert!(!d.wake_armed, "a cancelled wake poll still counts as armed");
    assert_eq!(d.in_flight, 0);
    woken_from_another_thread(&mut d, &shared, 2);
    assert!(d.wake_armed);

    let read = FastPaths {
        wake_poll: false,
        ..FastPaths::ALL
    };
    let mut d = UringDriver::new(8, &shared, Rc::new(Counters::default()), read, 0).unwrap();
    woken_from_another_thread(&mut d, &shared, 2);
    assert!(!d.wake_armed, "the eventfd read is used up by a wake");
    d.shutdown();
    assert!(d.drained());
}

/// A multishot op asked to stop by one completion and ended by the next, both reaped in one
/// batch: the cancel pushed after the batch aims at a freed slot (as does one that `push`
/// pushes after its full-SQ submit reaped the op's completion). It must not hit the op that
/// takes the slot next, and it does not: the stale cancel is queued before that op's SQE, the
/// kernel issues SQEs in order, and `ASYNC_CANCEL` only finds requests issued before it (see
/// `UringDriver::push_cancel`).
#[test]
fn a_stale_cancel_misses_the_next_op_in_its_slot() {
    fn stop(_: &WeakFd, _: Option<&Rc<Pool>>, _: io::Result<u32>, _: u32, _: bool) -> bool {
        false
    }
    let shared = Shared::new().unwrap();
    let mut d = driver(&shared);
    let fd = super::super::fd::SharedFd::new(std::fs::File::open("/dev/null").unwrap().into());
    // A multishot timeout that fires twice, 1 ms apart: its first completion (F_MORE) asks to
    // stop, the second ends it.
    let every = Box::new(Timespec::from(Duration::from_millis(1)));
    let entry = opcode::Timeout::new(&*every)
        .count(2)
        .flags(io_uring::types::TimeoutFlags::MULTISHOT)
        .build();
    let key = d
        .submit_multishot(entry, fd.downgrade(), stop, libc::ETIME)
        .unwrap();
    let waker = std::task::Waker::noop();
    let start = Instant::now();
    // Both completions are posted before the one reap that dispatches them.
    while d.ring.completion().len() < 2 {
        d.enter(1, Some(Duration::from_millis(10))).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the multishot timeout never ended"
        );
    }
    d.reap();
    assert!(!d.ops.contains(key), "the multishot timeout ended");
    assert_eq!(d.ring.submission().len(), 1, "the stale cancel is queued");
    // The next op takes the freed slot while the stale cancel is still queued.
    let long = Box::new(Timespec::from(Duration::from_secs(30)));
    let next = d
        .submit_op(opcode::Timeout::new(&*long).build(), waker)
        .unwrap();
    assert_eq!(next, key, "the slab reuses the freed slot");
    d.enter(1, Some(Duration::from_millis(50))).unwrap();
    d.reap();
    assert!(
        matches!(d.ops.get(next), Some(Lifecycle::Waiting(_))),
        "a cancel aimed at the slot's previous op cancelled its next one"
    );
    d.shutdown();
    drop(d);
    drop((every, long));
}

/// A reap copies CQEs out a chunk at a time: one with many more completions than a chunk
/// dispatches every one of them, each to its own op, and leaves the CQ empty.
#[test]
fn a_reap_of_many_chunks_dispatches_every_completion() {
    const OPS: usize = 100;
    let shared = Shared::new().unwrap();
    let mut d = UringDriver::new(
        128,
        &shared,
        Rc::new(Counters::default()),
        FastPaths::ALL,
        0,
    )
    .expect("io_uring is required");
    let waker = std::task::Waker::noop();
    let keys: Vec<usize> = (0..OPS)
        .map(|_| d.submit_op(opcode::Nop::new().build(), waker).unwrap())
        .collect();
    let start = Instant::now();
    while d.ring.completion().len() < OPS {
        d.enter(OPS as u32, Some(Duration::from_millis(10)))
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the nops never completed"
        );
    }
    d.reap();
    assert_eq!(d.last_reaped, OPS);
    assert!(d.ring.completion().is_empty());
    for key in keys {
        assert!(
            matches!(d.ops.get(key), Some(Lifecycle::Completed(0))),
            "op {key} was not completed"
        );
    }
    d.shutdown();
}
