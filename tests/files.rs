//! Files on both backends: offsets, EOF, truncation, sync, errors, cancellation, fd limits.

mod common;

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::{in_child, open_fds, pattern, run_in_child, test_path};
use ringloop::fs::{self, File, OpenOptions};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::time::sleep;

both_backends! {
    /// A read the page cache serves completes inside the poll that starts it (on epoll always, on
    /// uring when the SQ is empty), so a task reading a cached file in a loop would never return
    /// `Pending`. The cooperative budget makes it yield to other tasks.
    fn a_task_reading_a_cached_file_does_not_starve_others(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(0, 64 * 1024)).unwrap();
        lp.run_until_complete(async move {
            let f = File::open(&path).await.unwrap();
            let f = &f;
            common::busy_reader_lets_others_run(|i| async move {
                let (res, _) = f.read_at(Vec::with_capacity(16), (i * 16) % (64 * 1024)).await;
                assert_eq!(res.unwrap(), 16);
            })
            .await;
        });
    }

    /// On epoll a read tries `RWF_NOWAIT` on the loop thread and goes to the pool when the range
    /// is not (all) in the page cache. Both paths, and a read that runs past the end of the
    /// file, return the file's bytes.
    fn reads_are_right_whether_the_file_is_cached_or_not(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(3, 1 << 20);
        std::fs::write(&path, &data).unwrap();
        let evict = |path: &std::path::Path| {
            let f = std::fs::File::open(path).unwrap();
            f.sync_all().unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: fadvise on an open fd only drops clean cached pages; no memory is passed.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        };
        lp.run_until_complete(async move {
            let f = File::open(&path).await.unwrap();
            for round in 0..3 {
                if round == 1 {
                    evict(&path); // nothing cached: every read goes to the pool
                }
                for (pos, len) in [(0u64, 4096usize), (12_345, 100_000), ((1 << 20) - 10, 4096)] {
                    let (res, buf) = f.read_at(Vec::with_capacity(len), pos).await;
                    let n = res.unwrap();
                    let end = (pos as usize + len).min(data.len());
                    assert_eq!(n, end - pos as usize, "round {round}, read at {pos}");
                    assert_eq!(&buf[..], &data[pos as usize..end], "round {round}, read at {pos}");
                }
            }
        });
    }

    fn read_and_write_at_offsets(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        lp.run_until_complete(async move {
            let f = OpenOptions::new().read(true).write(true).create(true).open(&path).await.unwrap();
            let (res, _) = f.write_all_at(pattern(0, 10_000), 0).await;
            res.unwrap();
            let (res, _) = f.write_all_at(b"MIDDLE".to_vec(), 5000).await;
            res.unwrap();
            assert_eq!(f.len().await.unwrap(), 10_000);
            let (res, buf) = f.read_exact_at(Vec::with_capacity(6), 5000).await;
            res.unwrap();
            assert_eq!(buf, b"MIDDLE");
            let (res, buf) = f.read_at(Vec::with_capacity(100), 0).await;
            assert_eq!(res.unwrap(), 100);
            assert_eq!(buf, pattern(0, 100));
            // At and past the end of file: 0 bytes, and read_exact_at says UnexpectedEof.
            let (res, _) = f.read_at(Vec::with_capacity(10), 10_000).await;
            assert_eq!(res.unwrap(), 0);
            let (res, _) = f.read_at(Vec::with_capacity(10), 1 << 30).await;
            assert_eq!(res.unwrap(), 0);
            let (res, buf) = f.read_exact_at(Vec::with_capacity(50), 9_980).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(buf.len(), 20, "what was read stays in the buffer");
            // Writing past the end leaves a hole of zeros.
            let (res, _) = f.write_all_at(b"end".to_vec(), 20_000).await;
            res.unwrap();
            assert_eq!(f.len().await.unwrap(), 20_003);
            let (res, buf) = f.read_exact_at(Vec::with_capacity(4), 19_999).await;
            res.unwrap();
            assert_eq!(buf, b"\0end");
            f.sync_all().await.unwrap();
            f.sync_data().await.unwrap();
            f.close().await.unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 20_003);
        });
    }

    fn whole_file_helpers_and_paths(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        lp.run_until_complete(async move {
            let big = pattern(7, 3 << 20);
            fs::write(d.join("a"), big.clone()).await.unwrap();
            assert!(fs::read(d.join("a")).await.unwrap() == big);
            fs::write(d.join("a"), b"short".to_vec()).await.unwrap();
            assert_eq!(fs::read(d.join("a")).await.unwrap(), b"short", "write truncates");
            fs::rename(d.join("a"), d.join("b")).await.unwrap();
            assert_eq!(fs::read(d.join("a")).await.unwrap_err().kind(), io::ErrorKind::NotFound);
            fs::create_dir(d.join("sub")).await.unwrap();
            assert_eq!(fs::create_dir(d.join("sub")).await.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
            fs::write(d.join("sub/c"), b"in sub".to_vec()).await.unwrap();
            assert_eq!(std::fs::read(d.join("sub/c")).unwrap(), b"in sub");
            fs::remove_file(d.join("b")).await.unwrap();
            assert_eq!(fs::remove_file(d.join("b")).await.unwrap_err().kind(), io::ErrorKind::NotFound);
            assert!(File::open(d.join("sub/c")).await.unwrap().len().await.unwrap() == 6);
            assert!(fs::read(d.join("empty-missing")).await.is_err());
            fs::write(d.join("empty"), Vec::new()).await.unwrap();
            assert!(File::open(d.join("empty")).await.unwrap().is_empty().await.unwrap());
        });
    }

    fn open_options_and_errors(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        lp.run_until_complete(async move {
            let err = File::open(d.join("missing")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            fs::write(d.join("x"), b"0123456789".to_vec()).await.unwrap();
            let err = OpenOptions::new().write(true).create_new(true).open(d.join("x")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
            // Truncate.
            let f = OpenOptions::new().write(true).truncate(true).open(d.join("x")).await.unwrap();
            assert_eq!(f.len().await.unwrap(), 0);
            drop(f);
            // Append writes at the end whatever the offset.
            fs::write(d.join("log"), b"one\n".to_vec()).await.unwrap();
            let f = OpenOptions::new().append(true).open(d.join("log")).await.unwrap();
            let (res, _) = f.write_all_at(b"two\n".to_vec(), 0).await;
            res.unwrap();
            f.close().await.unwrap();
            assert_eq!(std::fs::read(d.join("log")).unwrap(), b"one\ntwo\n");
            // Mode of a created file.
            let f = OpenOptions::new().write(true).create(true).mode(0o600).open(d.join("private")).await.unwrap();
            drop(f);
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(d.join("private")).unwrap().permissions().mode() & 0o777, 0o600);
            // Contradictory options and bad paths are InvalidInput, not a panic.
            for opts in [
                OpenOptions::new().clone(),
                OpenOptions::new().read(true).create(true).clone(),
                OpenOptions::new().read(true).truncate(true).clone(),
            ] {
                let err = opts.open(d.join("x")).await.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            }
            let err = File::open("bad\0path").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            // Reading a write-only file is the kernel's error.
            let w = OpenOptions::new().write(true).open(d.join("x")).await.unwrap();
            let (res, _) = w.read_at(Vec::with_capacity(4), 0).await;
            assert!(res.is_err());
            // std conversions.
            let std_file = File::from_std(std::fs::File::open(d.join("log")).unwrap()).into_std().unwrap();
            assert_eq!(std_file.metadata().unwrap().len(), 8);
        });
    }

    fn dropped_in_flight_writes_leave_the_file_consistent(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        lp.run_until_complete(async move {
            let f = File::create(&path).await.unwrap();
            for i in 0..200u64 {
                // Start a write and drop it right away: it either happened whole or not at all
                // (regular-file writes are not torn), and the file stays usable.
                let mut w = Box::pin(f.write_at(vec![i as u8; 512], i * 512));
                let _ = poll_fn(|cx| Poll::Ready(Pin::new(&mut w).as_mut().poll(cx).is_ready())).await;
                drop(w);
            }
            sleep(Duration::from_millis(50)).await;
            let (res, _) = f.write_all_at(b"final".to_vec(), 0).await;
            res.unwrap();
            f.sync_all().await.unwrap();
            let data = std::fs::read(&path).unwrap();
            assert_eq!(&data[..5], b"final");
            for (i, block) in data.chunks(512).enumerate().skip(1) {
                assert!(block.iter().all(|&b| b == i as u8) || block.iter().all(|&b| b == 0), "block {i} is torn");
            }
        });
    }

    fn cancelled_opens_leak_no_fd(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "cancelled_opens_leak_no_fd"), &[]);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        std::fs::write(&path, b"x").unwrap();
        lp.run_until_complete(async move {
            let before = open_fds();
            for i in 0..1000 {
                let mut open = Box::pin(File::open(path.clone()));
                let _ = poll_fn(|cx| Poll::Ready(open.as_mut().poll(cx).is_ready())).await;
                if i % 2 == 0 {
                    ringloop::yield_now().await; // sometimes let it complete unseen first
                }
                drop(open);
            }
            // Opens dropped mid-flight complete later (ring or pool): give them time.
            let mut waited = 0;
            while open_fds() != before && waited < 200 {
                sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            assert_eq!(open_fds(), before, "cancelled opens leaked fds");
        });
    }

    fn a_full_fd_table_is_an_error_and_the_loop_keeps_serving(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "a_full_fd_table_is_an_error_and_the_loop_keeps_serving"), &[]);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        lp.run_until_complete(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // A connection waits in the backlog for the accept below.
            let client = std::net::TcpStream::connect(addr).unwrap();
            // Leave room for a few fds only.
            let limit = (open_fds() + 8) as u64;
            let old = rlimit_nofile();
            set_rlimit_nofile(limit);
            let mut files = Vec::new();
            let err = loop {
                match File::open(&path).await {
                    Ok(f) => files.push(f),
                    Err(e) => break e,
                }
                assert!(files.len() < 100, "the limit did not bite");
            };
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
            // accept with a full table: the connection stays in the backlog, accept says EMFILE.
            let err = listener.accept().await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
            // Free fds: the loop serves again, and the waiting connection is accepted.
            files.clear();
            let (s, _) = listener.accept().await.unwrap();
            let _ = TcpStream::connect(addr).await.unwrap();
            drop((s, client));
            assert_eq!(fs::read(&path).await.unwrap(), b"x");
            set_rlimit_nofile(old);
        });
    }
}

fn rlimit_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r.rlim_cur
}

fn set_rlimit_nofile(n: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid rlimit; only the soft limit changes.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = n;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
    }
}
