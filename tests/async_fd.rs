//! `io::AsyncFd` on both backends: pipes (both directions), an eventfd written from another
//! thread, a timerfd, inotify; several waiters at once, a dropped waiter, readiness that stays
//! set until cleared and waits after it, `into_inner` followed by the owner closing the fd, and
//! the errors (a regular file, outside a loop).

mod common;

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use ringloop::io::AsyncFd;

/// A nonblocking pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: both are new descriptors nobody else owns.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

fn owned(raw: i32, what: &str) -> std::fs::File {
    assert!(raw >= 0, "{what}: {}", io::Error::last_os_error());
    // SAFETY: `raw` is a new descriptor nobody else owns.
    unsafe { std::fs::File::from_raw_fd(raw) }
}

/// Whether `fut` is still pending after the loop had `ms` milliseconds to finish it.
async fn still_pending<F: Future>(fut: F, ms: u64) -> bool {
    ringloop::time::timeout(Duration::from_millis(ms), fut)
        .await
        .is_err()
}

/// Checks that a wait is still pending after `ms` milliseconds. With faults injected, epoll
/// reports spurious readiness by design (readiness is a hint; the call that follows says
/// `WouldBlock`), so the wait may end and only the rest of the test holds.
async fn assert_waits<F: Future>(fut: F, ms: u64, what: &str) {
    let pending = still_pending(fut, ms).await;
    assert!(
        pending || common::faults_on(),
        "{what}: the wait ended early"
    );
}

/// Reads what is there until `WouldBlock`, waiting for readiness first.
async fn read_some(fd: &AsyncFd<std::fs::File>) -> Vec<u8> {
    loop {
        let mut guard = fd.readable().await.expect("readable");
        let mut buf = vec![0u8; 4096];
        match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
            Ok(n) => {
                buf.truncate(n.expect("read"));
                return buf;
            }
            Err(_would_block) => continue,
        }
    }
}

both_backends! {
    fn pipe_read_waits_for_the_writer(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let rx = AsyncFd::new(rx).unwrap();
            // Nothing written: readable waits.
            assert_waits(rx.readable(), 30, "no event yet").await;
            let writer = ringloop::spawn(async move {
                ringloop::time::sleep(Duration::from_millis(10)).await;
                (&tx).write_all(b"hello").unwrap();
                tx
            });
            assert_eq!(read_some(&rx).await, b"hello");
            let tx = writer.await.unwrap();
            // Drained: the next read says WouldBlock, which clears readiness, and then the wait
            // waits again until the next write.
            let mut guard = rx.readable().await.unwrap();
            let mut buf = [0u8; 16];
            assert!(guard.try_io(|fd| fd.get_ref().read(&mut buf)).is_err());
            assert_waits(rx.readable(), 30, "no event yet").await;
            (&tx).write_all(b"again").unwrap();
            assert_eq!(read_some(&rx).await, b"again");
            // The writer closing is readiness too: the read says end of file.
            drop(tx);
            assert_eq!(read_some(&rx).await, b"");
            // And it stays ready (hung up), cleared or not.
            let mut guard = rx.readable().await.unwrap();
            guard.clear_ready();
            assert!(!still_pending(rx.readable(), 1000).await);
        });
    }

    fn readiness_stays_until_cleared(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let rx = AsyncFd::new(rx).unwrap();
            (&tx).write_all(b"x").unwrap();
            rx.readable().await.unwrap().retain_ready(); // kept
            assert!(!still_pending(rx.readable(), 1000).await);
            rx.readable().await.unwrap().clear_ready();
            // Cleared with the byte still unread: edge-triggered, so no new event comes.
            assert_waits(rx.readable(), 30, "no event yet").await;
            (&tx).write_all(b"y").unwrap();
            assert_eq!(read_some(&rx).await, b"xy");
        });
    }

    fn pipe_write_waits_for_room(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let tx = AsyncFd::new(tx).unwrap();
            let chunk = vec![7u8; 64 * 1024];
            let mut written = 0usize;
            // Fill the pipe.
            loop {
                let mut guard = tx.writable().await.unwrap();
                match guard.try_io(|fd| fd.get_ref().write(&chunk)) {
                    Ok(n) => written += n.unwrap(),
                    Err(_would_block) => break,
                }
            }
            assert!(written > 0);
            assert_waits(tx.writable(), 30, "a full pipe").await;
            let reader = ringloop::spawn(async move {
                ringloop::time::sleep(Duration::from_millis(10)).await;
                let mut buf = vec![0u8; written];
                (&rx).read_exact(&mut buf).unwrap();
                (rx, buf)
            });
            // The reader made room: writable again, and the write goes through.
            let n = loop {
                let mut guard = tx.writable().await.unwrap();
                if let Ok(n) = guard.try_io(|fd| fd.get_ref().write(b"more")) {
                    break n.unwrap();
                }
            };
            assert_eq!(n, 4);
            let (rx, buf) = reader.await.unwrap();
            assert!(buf.iter().all(|&b| b == 7));
            let mut tail = [0u8; 4];
            (&rx).read_exact(&mut tail).unwrap();
            assert_eq!(&tail, b"more");
        });
    }

    fn eventfd_written_from_another_thread(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            // SAFETY: eventfd takes no pointers.
            let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            let efd = AsyncFd::new(owned(raw, "eventfd")).unwrap();
            let writer = efd.get_ref().try_clone().unwrap();
            let thread = std::thread::spawn(move || {
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(5));
                    (&writer).write_all(&1u64.to_ne_bytes()).unwrap();
                }
            });
            let mut total = 0u64;
            while total < 3 {
                let bytes = read_some(&efd).await;
                assert_eq!(bytes.len(), 8);
                total += u64::from_ne_bytes(bytes.try_into().unwrap());
            }
            thread.join().unwrap();
            assert_eq!(total, 3);
        });
    }

    fn timerfd_fires(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            // SAFETY: timerfd_create takes no pointers.
            let raw = unsafe {
                libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
            };
            let tfd = AsyncFd::new(owned(raw, "timerfd_create")).unwrap();
            let spec = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 },
            };
            // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
            let r = unsafe {
                libc::timerfd_settime(tfd.get_ref().as_raw_fd_i32(), 0, &spec, std::ptr::null_mut())
            };
            assert_eq!(r, 0, "timerfd_settime: {}", io::Error::last_os_error());
            let start = std::time::Instant::now();
            let mut expirations = 0u64;
            while expirations < 3 {
                let bytes = read_some(&tfd).await;
                expirations += u64::from_ne_bytes(bytes.try_into().unwrap());
            }
            assert!(start.elapsed() >= Duration::from_millis(20), "fired before its time");
        });
    }

    fn inotify_reports_a_created_file(lp: &mut EventLoop) {
        let dir = tempfile::tempdir().unwrap();
        let dir_path = dir.path().to_owned();
        lp.run_until_complete(async move {
            // SAFETY: inotify_init1 takes no pointers.
            let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
            let ino = AsyncFd::new(owned(raw, "inotify_init1")).unwrap();
            let cpath = std::ffi::CString::new(dir_path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `cpath` is a valid NUL-terminated path.
            let wd = unsafe {
                libc::inotify_add_watch(ino.get_ref().as_raw_fd_i32(), cpath.as_ptr(), libc::IN_CREATE)
            };
            assert!(wd >= 0, "inotify_add_watch: {}", io::Error::last_os_error());
            assert_waits(ino.readable(), 20, "no event yet").await;
            ringloop::fs::write(dir_path.join("born"), b"x".to_vec()).await.unwrap();
            let event = read_some(&ino).await;
            // struct inotify_event: wd, mask, cookie, len, then the NUL-padded name.
            let header = std::mem::size_of::<libc::inotify_event>();
            assert!(event.len() > header);
            let mask = u32::from_ne_bytes(event[4..8].try_into().unwrap());
            assert_ne!(mask & libc::IN_CREATE, 0);
            let name = &event[header..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            assert_eq!(name, b"born");
        });
    }

    fn many_waiters_and_a_dropped_one(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let rx = std::rc::Rc::new(AsyncFd::new(rx).unwrap());
            // A waiter that is polled once and dropped.
            {
                let mut dropped = pin!(rx.readable());
                let first = std::future::poll_fn(|cx| Poll::Ready(dropped.as_mut().poll(cx))).await;
                assert!(first.is_pending());
            }
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let rx = rx.clone();
                    ringloop::spawn(async move {
                        rx.readable().await.unwrap().retain_ready();
                    })
                })
                .collect();
            ringloop::time::sleep(Duration::from_millis(10)).await;
            (&tx).write_all(b"wake all").unwrap();
            for w in waiters {
                ringloop::time::timeout(Duration::from_secs(5), w)
                    .await
                    .expect("every waiter woke")
                    .unwrap();
            }
            assert_eq!(read_some(&rx).await, b"wake all");
        });
    }

    fn poll_read_ready_for_poll_based_code(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let rx = AsyncFd::new(rx).unwrap();
            let mut polls = 0;
            let writer = ringloop::spawn(async move {
                ringloop::time::sleep(Duration::from_millis(5)).await;
                (&tx).write_all(b"p").unwrap();
                tx
            });
            let mut byte = [0u8; 1];
            let n = std::future::poll_fn(|cx| {
                polls += 1;
                loop {
                    let mut guard = match rx.poll_read_ready(cx) {
                        Poll::Ready(g) => g.unwrap(),
                        Poll::Pending => return Poll::Pending,
                    };
                    if let Ok(n) = guard.try_io(|fd| fd.get_ref().read(&mut byte)) {
                        return Poll::Ready(n.unwrap());
                    }
                }
            })
            .await;
            assert_eq!((n, byte), (1, *b"p"));
            assert!(polls >= 2, "the first poll found nothing and waited");
            drop(writer.await.unwrap());
        });
    }

    fn readable_mut_gives_the_value_mutably(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let mut rx = AsyncFd::new(rx).unwrap();
            (&tx).write_all(b"mut").unwrap();
            let mut buf = [0u8; 3];
            loop {
                let mut guard = rx.readable_mut().await.unwrap();
                if let Ok(n) = guard.try_io(|fd| fd.get_mut().read(&mut buf)) {
                    assert_eq!(n.unwrap(), 3);
                    break;
                }
            }
            assert_eq!(&buf, b"mut");
        });
    }

    fn into_inner_then_the_owner_closes_it(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (rx, tx) = pipe();
            let rx = AsyncFd::new(rx).unwrap();
            // A wait in flight (a poll in the ring on uring, an armed registration on epoll).
            assert_waits(rx.readable(), 10, "no event yet").await;
            let rx: std::fs::File = rx.into_inner();
            drop(rx); // the owner closes it at once
            drop(tx);
            // New descriptors reuse the numbers; they work, and nothing of the old fd's wait
            // reaches them.
            for _ in 0..3 {
                let (rx, tx) = pipe();
                let rx = AsyncFd::new(rx).unwrap();
                assert_waits(rx.readable(), 10, "no event yet").await;
                (&tx).write_all(b"new").unwrap();
                assert_eq!(read_some(&rx).await, b"new");
                let back = rx.into_inner();
                let mut rest = [0u8; 1];
                // The value came back intact and still usable without the loop.
                assert_eq!(
                    (&back).read(&mut rest).unwrap_err().kind(),
                    io::ErrorKind::WouldBlock
                );
            }
        });
    }

    fn refuses_regular_files(lp: &mut EventLoop) {
        let file = tempfile::tempfile().unwrap();
        lp.run_until_complete(async move {
            let err = AsyncFd::new(file).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("regular file"), "{err}");
            let dir = std::fs::File::open(".").unwrap();
            let err = AsyncFd::new(dir).unwrap_err();
            assert!(err.to_string().contains("directory"), "{err}");
        });
    }
}

/// Outside a loop, `AsyncFd::new` says so.
#[test]
fn new_outside_a_loop_is_an_error() {
    let (rx, _tx) = pipe();
    let err = AsyncFd::new(OwnedFd::from(rx)).unwrap_err();
    assert!(err.to_string().contains("outside a running"), "{err}");
}

trait RawI32 {
    fn as_raw_fd_i32(&self) -> i32;
}

impl RawI32 for std::fs::File {
    fn as_raw_fd_i32(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.as_raw_fd()
    }
}
