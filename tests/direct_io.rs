//! Direct I/O and registered buffers on both backends: `AlignedBuf`, `O_DIRECT` files through
//! `OpenOptions::custom_flags` (alignment from statx, clear errors for misaligned offsets,
//! lengths and buffers), and `FixedBufs` (fixed-buffer ops on uring, counted in
//! `Stats::fixed_buffer_ops`; plain ops on epoll and for a buffer of another loop's set; one set
//! per loop; buffers that outlive their set and their loop; a read dropped in flight).

mod common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ringloop::Backend;
use ringloop::buf::{AlignedBuf, IoBuf};
use ringloop::fs::File;
use ringloop::fs::FixedBufs;

/// A directory on disk (the project's target dir: `O_DIRECT` needs a real filesystem, which
/// `/tmp` may not be).
fn disk_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tempfile::tempdir_in(base).unwrap()
}

async fn open_direct(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .await
        .unwrap_or_else(|e| panic!("O_DIRECT open of {path:?}: {e}"))
}

fn fixed_ops() -> u64 {
    ringloop::current_stats().unwrap().fixed_buffer_ops
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn aligned_buf_basics() {
    for align in [512, 4096, 65536] {
        let mut buf = AlignedBuf::new(3 * align, align).unwrap();
        assert_eq!(buf.as_ptr() as usize % align, 0);
        assert_eq!(
            (buf.len(), buf.capacity(), buf.align()),
            (0, 3 * align, align)
        );
        assert_eq!(
            buf.put_slice(&vec![1u8; 4 * align]),
            3 * align,
            "fills up to capacity"
        );
        buf.truncate(10);
        assert_eq!(&buf[..], &[1u8; 10]);
        buf.clear();
        buf.set_len(5);
        assert_eq!(&buf[..], &[1u8; 5], "set_len shows what is there");
    }
    let err = AlignedBuf::new(4096, 3000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("power of two"), "{err}");
}

#[test]
fn register_outside_a_loop_is_an_error() {
    let err = FixedBufs::register(2, 4096).unwrap_err();
    assert!(err.to_string().contains("outside a running"), "{err}");
}

both_backends! {
    fn direct_reads_and_writes(lp: &mut EventLoop) {
        let dir = disk_dir();
        let path = dir.path().join("direct");
        lp.run_until_complete(async move {
            let f = open_direct(&path).await;
            let (mem, off) = f.direct_io_align().expect("opened with O_DIRECT");
            assert!(mem.is_power_of_two() && off.is_power_of_two(), "{mem} {off}");
            assert!(File::open(&path).await.unwrap().direct_io_align().is_none());
            let block = 4096usize.max(off as usize);
            let data = pattern(4 * block, 7);
            let mut buf = f.aligned_buf(4 * block).unwrap();
            buf.put_slice(&data);
            let (res, _) = f.write_all_at(buf, 0).await;
            res.unwrap();
            f.sync_data().await.unwrap();
            let buf = f.aligned_buf(2 * block).unwrap();
            let (res, buf) = f.read_exact_at(buf, block as u64).await;
            res.unwrap();
            assert_eq!(&buf[..], &data[block..3 * block]);
            // Past the end: 0 bytes.
            let (res, _) = f.read_at(f.aligned_buf(block).unwrap(), 8 * block as u64).await;
            assert_eq!(res.unwrap(), 0);
            // A std file opened with O_DIRECT is noticed too.
            use std::os::unix::fs::OpenOptionsExt;
            let std_file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .unwrap();
            assert_eq!(File::from_std(std_file).direct_io_align(), Some((mem, off)));
        });
    }

    fn misaligned_direct_io_is_a_clear_error(lp: &mut EventLoop) {
        let dir = disk_dir();
        let path = dir.path().join("direct");
        lp.run_until_complete(async move {
            let f = open_direct(&path).await;
            let (_, off) = f.direct_io_align().unwrap();
            let block = 4096usize.max(off as usize);
            let check = |res: std::io::Result<usize>, what: &str| {
                let err = res.expect_err(what);
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
                assert!(err.to_string().contains("AlignedBuf"), "{what}: {err}");
            };
            let buf = f.aligned_buf(2 * block).unwrap();
            let (res, buf) = f.read_at(buf, 100).await;
            check(res, "a misaligned offset");
            let (res, buf) = f.read_at(buf.slice(..100), 0).await;
            check(res, "a misaligned length");
            let (res, _) = f.read_at(buf.into_inner().slice(1..block + 1), 0).await;
            check(res, "a misaligned buffer");
            let mut v = Vec::with_capacity(2 * block);
            v.extend_from_slice(&pattern(block + 1, 1));
            let (res, _) = f.write_at(v.slice(1..block + 1), 0).await;
            check(res, "a misaligned write buffer");
        });
    }

    fn fixed_buffers(lp: &mut EventLoop) {
        let backend = lp.backend();
        let dir = disk_dir();
        let direct = dir.path().join("direct");
        let buffered = dir.path().join("buffered");
        lp.run_until_complete(async move {
            let set = FixedBufs::register(4, 5000).unwrap();
            assert_eq!((set.count(), set.buf_size(), set.available()), (4, 8192, 4));
            assert_eq!(set.is_registered(), backend == Backend::Uring);
            for path in [&direct, &buffered] {
                let before = fixed_ops();
                let f = if path == &direct {
                    open_direct(path).await
                } else {
                    File::options().read(true).write(true).create(true).open(path).await.unwrap()
                };
                let mut buf = set.try_take().unwrap();
                assert_eq!(buf.as_ptr() as usize % 4096, 0);
                let data = pattern(8192, 3);
                buf.put_slice(&data);
                let (res, buf) = f.write_all_at(buf, 0).await;
                res.unwrap();
                drop(buf);
                let buf = set.try_take().unwrap();
                let (res, buf) = f.read_exact_at(buf, 0).await;
                res.unwrap();
                assert_eq!(&buf[..], &data[..]);
                // A slice of a registered buffer is a fixed op too.
                let (res, slice) = f.read_at(buf.slice(4096..), 4096).await;
                assert_eq!(res.unwrap(), 4096);
                assert_eq!(&slice[..], &data[4096..]);
                let used = fixed_ops() - before;
                match backend {
                    // O_DIRECT: one write, one read_exact (one read), one sliced read.
                    Backend::Uring if path == &direct && !common::faults_on() => {
                        assert_eq!(used, 3)
                    }
                    // Buffered: the write; the reads the page cache serves run inline
                    // (preadv2 with RWF_NOWAIT), no ring op.
                    Backend::Uring => assert!(used >= 1, "{used}"),
                    _ => assert_eq!(used, 0),
                }
            }
            assert_eq!(set.available(), 4, "every buffer went back");

            // Taking them all leaves none; one dropped is one back.
            let all: Vec<_> = (0..4).map(|_| set.try_take().unwrap()).collect();
            assert!(set.try_take().is_none());
            drop(all);
            assert_eq!(set.available(), 4);
        });
    }

    fn one_set_per_loop(lp: &mut EventLoop) {
        let backend = lp.backend();
        lp.run_until_complete(async move {
            let set = FixedBufs::register(2, 4096).unwrap();
            if backend == Backend::Uring {
                let err = FixedBufs::register(2, 4096).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ResourceBusy, "{err}");
            }
            let clone = set.clone();
            drop(set);
            if backend == Backend::Uring {
                assert!(FixedBufs::register(2, 4096).is_err(), "a clone keeps it registered");
            }
            drop(clone);
            let again = FixedBufs::register(2, 4096).unwrap();
            assert_eq!(again.is_registered(), backend == Backend::Uring);
            for (count, size) in [(0, 4096), (1 << 15, 4096), (1, 0), (1, (1 << 30) + 1)] {
                drop(again.clone());
                let err = FixedBufs::register(count, size).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{count}x{size}: {err}");
            }
        });
    }

    fn buffers_outlive_their_set_and_loop(lp: &mut EventLoop) {
        let dir = disk_dir();
        let path: PathBuf = dir.path().join("f");
        std::fs::write(&path, pattern(4096, 9)).unwrap();
        let buf = lp.run_until_complete(async move {
            let set = FixedBufs::register(2, 4096).unwrap();
            let buf = set.try_take().unwrap();
            drop(set); // unregistered; the buffer keeps its memory
            let f = File::open(&path).await.unwrap();
            let before = fixed_ops();
            let (res, buf) = f.read_at(buf, 0).await;
            assert_eq!(res.unwrap(), 4096);
            assert_eq!(fixed_ops(), before, "no longer registered: a plain read");
            buf
        });
        assert_eq!(&buf[..], &pattern(4096, 9)[..]);
    }

    fn a_read_dropped_in_flight_keeps_its_buffer(lp: &mut EventLoop) {
        let dir = disk_dir();
        let path = dir.path().join("big");
        std::fs::write(&path, pattern(1 << 20, 5)).unwrap();
        lp.run_until_complete(async move {
            let set = FixedBufs::register(8, 128 * 1024).unwrap();
            let f = open_direct(&path).await;
            for round in 0..8u64 {
                let buf = set.try_take().unwrap();
                let mut read = std::pin::pin!(f.read_at(buf, round * 128 * 1024));
                // Started (in the ring or on the pool), then dropped.
                let _ = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
            }
            drop(set);
            // Every buffer comes back once its op completed.
            ringloop::time::sleep(std::time::Duration::from_millis(100)).await;
            let set = FixedBufs::register(2, 4096).unwrap();
            let buf = set.try_take().unwrap();
            let (res, buf) = f.read_at(buf, 0).await;
            assert_eq!(res.unwrap(), 4096);
            assert_eq!(&buf[..], &pattern(4096, 5)[..]);
        });
    }

    fn a_buffer_of_another_loops_set_is_plain_here(lp: &mut EventLoop) {
        let backend = lp.backend();
        let dir = disk_dir();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(4096, 2)).unwrap();
        // A set on a uring loop in another thread; one of its buffers comes over here.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let mut other = common::new_loop(Backend::Uring);
            other.run_until_complete(async move {
                let set = FixedBufs::register(2, 4096).unwrap();
                tx.send(set.try_take().unwrap()).unwrap();
                // Keep the set registered there until this loop is done.
                ringloop::spawn_blocking(move || done_rx.recv()).await.unwrap().ok();
            });
            other.close();
        });
        let buf = rx.recv().unwrap();
        lp.run_until_complete(async move {
            // This loop has a set of its own with the same indexes.
            let _mine = FixedBufs::register(2, 4096).unwrap();
            let f = File::open(&path).await.unwrap();
            let before = fixed_ops();
            let (res, buf) = f.read_at(buf, 0).await;
            assert_eq!(res.unwrap(), 4096);
            assert_eq!(&buf[..], &pattern(4096, 2)[..]);
            assert_eq!(fixed_ops(), before, "another loop's buffer is a plain read here");
            let _ = backend;
        });
        done_tx.send(()).unwrap();
        other.join().unwrap();
    }

    /// Issue 29 item 10: a direct file that ends inside the buffer made `read_exact_at` ask for
    /// the rest at an unaligned offset and fail with `InvalidInput`; it is `UnexpectedEof`, with
    /// what was read in the buffer.
    fn read_exact_at_a_direct_file_that_ends_mid_buffer_is_unexpected_eof(lp: &mut EventLoop) {
        let dir = disk_dir();
        let path = dir.path().join("short");
        lp.run_until_complete(async move {
            let f = open_direct(&path).await;
            let (_, off) = f.direct_io_align().unwrap();
            let block = 4096usize.max(off as usize);
            let data = pattern(block + 100, 5);
            std::fs::write(&path, &data).unwrap();
            let buf = f.aligned_buf(3 * block).unwrap();
            let (res, buf) = f.read_exact_at(buf, 0).await;
            let err = res.expect_err("the file is shorter than the buffer");
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
            assert!(buf[..] == data[..], "the buffer holds what was read");
            // Ending on a block boundary is the same error, one read later.
            let data = pattern(block, 6);
            std::fs::write(&path, &data).unwrap();
            let mut buf = buf;
            buf.clear();
            let (res, buf) = f.read_exact_at(buf, 0).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            assert!(buf[..] == data[..], "the buffer holds what was read");
        });
    }

    /// Issue 29 item 8: the last handle of a set dropped while a fixed-buffer op was queued but
    /// not yet submitted unregistered the buffers first, and the op failed with `EFAULT`.
    fn a_set_dropped_with_a_fixed_write_queued_still_writes(lp: &mut EventLoop) {
        let backend = lp.backend();
        let dir = disk_dir();
        let path = dir.path().join("queued");
        lp.run_until_complete(async move {
            let f = File::options().read(true).write(true).create(true).open(&path).await.unwrap();
            let set = FixedBufs::register(2, 4096).unwrap();
            let mut buf = set.try_take().unwrap();
            let data = pattern(4096, 9);
            buf.put_slice(&data);
            let before = fixed_ops();
            let mut write = Box::pin(f.write_at(buf, 0));
            // One poll: on uring the SQE is queued; the loop submits it at its next trip.
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(write.as_mut().poll(cx))
            })
            .await;
            drop(set);
            let (res, buf) = match first {
                std::task::Poll::Ready(out) => out,
                std::task::Poll::Pending => write.await,
            };
            assert_eq!(res.expect("the queued fixed write"), 4096);
            drop(buf);
            if backend == Backend::Uring && !common::faults_on() {
                assert_eq!(fixed_ops() - before, 1, "it was a fixed-buffer write");
            }
            assert_eq!(std::fs::read(&path).unwrap(), data);
        });
    }

}
