//! The loop thread never waits for anything but its park (`LoopThreadProbe`, in
//! tests/common/probe.rs): `send_file` from a cold page cache (all of the file, or all but its
//! first page), on both backends and on uring with the splice path off, and the fs calls.

mod common;

use std::time::Duration;

use common::probe::{LoopThreadProbe, drop_cache, write_cold_file};
use common::{read_n, tcp_pair};
use ringloop::{Backend, EventLoop, spawn};

/// Big enough that reading it from the disk takes the loop thread measurably long.
const COLD_LEN: usize = 16 << 20;

/// Scheduler noise the probe tolerates outside the park (a disk read takes far longer).
const NOISE: Duration = Duration::from_millis(100);

/// Reads page 0 of `path` through its own file description with `POSIX_FADV_RANDOM`, so only
/// that page enters the page cache (no readahead window, no readahead marker).
fn cache_first_page(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: advice on an fd we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, 0).unwrap();
}

/// `send_file` of a file whose pages are on the disk only (or all but the first), checked byte
/// for byte, with the probe around it.
fn send_file_cold(lp: &mut EventLoop, first_page_cached: bool) {
    send_file_cold_in(lp, first_page_cached, COLD_LEN);
}

/// As `send_file_cold`, the file sent in `piece`-byte `send_file`s one after another (as a
/// server that bounds each with a timeout does): the pages of each piece after the first were
/// read ahead by the one before, and must not be sent from the loop thread, whose `sendfile`
/// would start the next readahead itself.
fn send_file_cold_in(lp: &mut EventLoop, first_page_cached: bool, piece: usize) {
    lp.run_until_complete(async move {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let path = dir.path().join("cold");
        assert!(
            write_cold_file(&path, COLD_LEN),
            "the test file's pages stayed in the page cache: put CARGO_TARGET_TMPDIR on a disk"
        );
        if first_page_cached {
            cache_first_page(&path);
        }
        let file = ringloop::fs::File::open(&path).await.unwrap();
        let (tx, rx) = tcp_pair().await;
        let reader = spawn(async move { read_n(&rx, COLD_LEN).await });
        let probe = LoopThreadProbe::start();
        let mut sent = 0;
        while sent < COLD_LEN as u64 {
            let n = tx.send_file(&file, sent, piece as u64).await.unwrap();
            assert!(n > 0, "the file ended early");
            sent += n;
        }
        let report = probe.assert_never_blocked("send_file from a cold page cache", NOISE);
        assert_eq!(sent, COLD_LEN as u64);
        let got = reader.await.unwrap();
        assert!(
            got == common::pattern(0, COLD_LEN),
            "the bytes came out different"
        );
        eprintln!("{report:?}");
        drop_cache(&path);
    });
}

both_backends! {
    fn send_file_from_a_cold_page_cache_never_blocks_the_loop(lp: &mut EventLoop) {
        send_file_cold(lp, false);
    }

    /// The defect: the first page's residency decided for the whole range, and sendfile read
    /// the other 16 MiB from the disk on the loop thread.
    fn send_file_with_only_its_first_page_cached_never_blocks_the_loop(lp: &mut EventLoop) {
        send_file_cold(lp, true);
    }

    fn send_file_of_a_cold_file_in_pieces_never_blocks_the_loop(lp: &mut EventLoop) {
        send_file_cold_in(lp, false, 1 << 20);
    }

    fn the_fs_calls_on_cold_files_never_block_the_loop(lp: &mut EventLoop) {
        fs_calls_cold(lp);
    }

    /// A paused clock waits for a send_file reading from the disk, as for any file op: on
    /// uring the splices run in the kernel's workers, where a non-blocking look at the ring
    /// sees nothing, and the clock jumped to the timeout while the disk was being read. Over a
    /// Unix stream: a wait for room in a TCP socket may last until the peer's ACK, a network
    /// wait the paused clock does not wait for (by design), which made this test flaky.
    fn a_paused_clock_waits_for_a_send_file_from_the_disk(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let path = dir.path().join("cold");
            assert!(write_cold_file(&path, COLD_LEN), "put CARGO_TARGET_TMPDIR on a disk");
            let file = ringloop::fs::File::open(&path).await.unwrap();
            let (tx, rx) = ringloop::net::UnixStream::pair().unwrap();
            let reader = spawn(async move {
                let mut got = Vec::with_capacity(COLD_LEN);
                let mut buf = Vec::with_capacity(256 * 1024);
                while got.len() < COLD_LEN {
                    let (res, b) = rx.read(buf).await;
                    let k = res.unwrap();
                    assert!(k > 0, "end of stream after {} bytes", got.len());
                    got.extend_from_slice(&b[..k]);
                    buf = b;
                }
                got
            });
            ringloop::time::pause();
            let sent = ringloop::time::timeout(
                std::time::Duration::from_secs(10),
                tx.send_file(&file, 0, COLD_LEN as u64),
            )
            .await
            .expect("the paused clock jumped to the timeout while send_file read the disk")
            .unwrap();
            assert_eq!(sent, COLD_LEN as u64);
            ringloop::time::resume();
            assert!(reader.await.unwrap() == common::pattern(0, COLD_LEN));
            drop_cache(&path);
        });
    }
}

/// uring with the splice path off: the part not in the page cache goes another way too.
mod uring_without_splice {
    use super::*;

    fn lp() -> EventLoop {
        EventLoop::builder()
            .backend(Backend::Uring)
            .disable_fast_paths("splice")
            .build()
            .expect("the uring backend is required here")
    }

    #[test]
    fn send_file_from_a_cold_page_cache_never_blocks_the_loop() {
        send_file_cold(&mut lp(), false);
    }

    #[test]
    fn send_file_with_only_its_first_page_cached_never_blocks_the_loop() {
        send_file_cold(&mut lp(), true);
    }

    #[test]
    fn send_file_of_a_cold_file_in_pieces_never_blocks_the_loop() {
        send_file_cold_in(&mut lp(), false, 1 << 20);
    }
}

/// The fs calls on files whose pages are on the disk only: whole-file reads, reads at offsets,
/// a copy, writes and syncs, metadata, directories, renames and removals.
fn fs_calls_cold(lp: &mut EventLoop) {
    lp.run_until_complete(async {
        use ringloop::fs;
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        assert!(write_cold_file(&a, COLD_LEN));
        assert!(write_cold_file(&b, COLD_LEN));
        let expected = common::pattern(0, COLD_LEN);
        let probe = LoopThreadProbe::start();

        let whole = fs::read(&a).await.unwrap();
        assert!(whole == expected, "fs::read came out different");
        let file = fs::File::open(&b).await.unwrap();
        let mut at = 0;
        let mut buf = Vec::with_capacity(1 << 20);
        while at < COLD_LEN {
            let (res, got) = file.read_exact_at(buf, at as u64).await;
            res.unwrap();
            assert!(
                got[..] == expected[at..at + got.len()],
                "read_exact_at at {at}"
            );
            at += got.len();
            buf = got;
        }
        assert_eq!(file.metadata().await.unwrap().len(), COLD_LEN as u64);
        drop_cache(&a);
        let c = dir.path().join("c");
        assert_eq!(fs::copy(&a, &c).await.unwrap(), COLD_LEN as u64);
        fs::write(dir.path().join("d"), vec![7u8; 1 << 20])
            .await
            .unwrap();
        let out = fs::File::create(dir.path().join("e")).await.unwrap();
        let (res, _) = out.write_all_at(vec![1u8; 1 << 20], 0).await;
        res.unwrap();
        out.sync_all().await.unwrap();
        fs::create_dir_all(dir.path().join("x/y/z")).await.unwrap();
        let mut names = Vec::new();
        let mut entries = fs::read_dir(dir.path()).await.unwrap();
        while let Some(e) = entries.next_entry().await.unwrap() {
            e.metadata().await.unwrap();
            names.push(e.file_name());
        }
        assert_eq!(names.len(), 6, "{names:?}");
        fs::rename(&c, dir.path().join("c2")).await.unwrap();
        fs::remove_file(dir.path().join("c2")).await.unwrap();
        fs::remove_dir(dir.path().join("x/y/z")).await.unwrap();
        assert!(fs::metadata(&a).await.unwrap().is_file());

        // Reads that miss the page cache are tried without blocking first (RWF_NOWAIT, or
        // io_uring's own first attempt), and the kernel starts readahead from that attempt: the
        // loop thread starts disk reads there, but never waits for them.
        let report = probe.assert_never_waited("the fs calls on cold files", NOISE);
        eprintln!("{report:?}");
        drop_cache(&a);
        drop_cache(&b);
    });
}
