//! `send_file` on both backends (and on uring with the splice path off, which uses sendfile):
//! random ranges of a 10 MiB file checked byte for byte, a file shorter than asked, a range past
//! the end, a dropped send_file after which the stream still works, a Unix stream, and errors;
//! `send_file_with_head`'s head before the body, cached or not, and alone (an empty range).

mod common;

use std::time::Duration;

use ringloop::net::UnixStream;
use ringloop::{Backend, EventLoop, spawn};

const FILE_LEN: usize = 10 << 20;

use common::{read_n, tcp_pair};

/// A temporary file holding `data`, opened with ringloop.
async fn file_with(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> ringloop::fs::File {
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    ringloop::fs::File::open(&path).await.unwrap()
}

/// Drops the file's pages from the page cache, so send_file finds it uncached (on uring: the
/// splice path).
fn evict(dir: &tempfile::TempDir, name: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir.path().join(name)).unwrap();
    f.sync_all().unwrap();
    // SAFETY: fadvise on an open fd only drops clean cached pages; no memory is passed.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

fn random_ranges(lp: &mut EventLoop, uncached: bool, splice: bool) {
    let backend = lp.backend();
    lp.run_until_complete(async move {
        let dir = tempfile::tempdir().unwrap();
        let data = common::pattern(17, FILE_LEN);
        let file = file_with(&dir, "big", &data).await;
        let (tx, rx) = tcp_pair().await;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut ranges = vec![
            (0u64, FILE_LEN as u64),
            (FILE_LEN as u64 - 1, 1),
            (12345, 0),
        ];
        for _ in 0..40 {
            let off = next() % FILE_LEN as u64;
            let len = next() % (FILE_LEN as u64 - off + 1);
            ranges.push((off, len.min(3 << 20)));
        }
        let expected: Vec<u8> = ranges
            .iter()
            .flat_map(|&(o, l)| data[o as usize..(o + l) as usize].to_vec())
            .collect();
        let total = expected.len();
        // The reader is a plain thread, so the loop's counters show only send_file's work.
        let rx = rx.into_std().unwrap();
        rx.set_nonblocking(false).unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut got = vec![0u8; total];
            (&rx).read_exact(&mut got).unwrap();
            got
        });
        let before = ringloop::current_stats().unwrap();
        for &(off, len) in &ranges {
            if uncached {
                evict(&dir, "big");
            }
            assert_eq!(
                tx.send_file(&file, off, len).await.unwrap(),
                len,
                "range {off}+{len}"
            );
        }
        if uncached && backend == Backend::Uring && !common::faults_on() {
            // Uncached on uring the bytes move by splices in the ring: no sendfile syscall from
            // the loop. With splicing off, at least one per range that moved bytes.
            let after = ringloop::current_stats().unwrap();
            let syscalls = after.io_syscalls - before.io_syscalls;
            let moving = ranges.iter().filter(|r| r.1 > 0).count() as u64;
            if splice {
                // (Eviction is advisory: a page the kernel keeps sends one range by sendfile.)
                assert!(
                    syscalls * 4 < moving,
                    "{syscalls} sendfiles for {moving} ranges: the splice path did not run"
                );
            } else {
                assert!(
                    syscalls >= moving,
                    "{syscalls} syscalls for {moving} ranges"
                );
            }
        }
        let got = reader.join().unwrap();
        assert!(got == expected, "the bytes came out different");
    });
}

fn short_file_and_past_the_end(lp: &mut EventLoop) {
    lp.run_until_complete(async {
        let dir = tempfile::tempdir().unwrap();
        let data = common::pattern(3, 5000);
        let file = file_with(&dir, "short", &data).await;
        let (tx, rx) = tcp_pair().await;
        // More than the file holds: what there is, from the offset.
        assert_eq!(tx.send_file(&file, 1000, 1 << 20).await.unwrap(), 4000);
        // From the end or past it: nothing.
        assert_eq!(tx.send_file(&file, 5000, 10).await.unwrap(), 0);
        assert_eq!(tx.send_file(&file, 1 << 40, 10).await.unwrap(), 0);
        // An offset no file reaches (past i64::MAX): refused, never taken for "the current
        // position" (-1 to splice).
        let err = tx.send_file(&file, u64::MAX - 5, 10).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(tx.send_file(&file, i64::MAX as u64, 10).await.unwrap(), 0);
        let empty = file_with(&dir, "empty", b"").await;
        assert_eq!(tx.send_file(&empty, 0, 100).await.unwrap(), 0);
        let got = read_n(&rx, 4000).await;
        assert!(got == data[1000..], "the short file came out different");
    });
}

fn dropped_send_file_leaves_the_stream_usable(lp: &mut EventLoop, uncached: bool) {
    lp.run_until_complete(async move {
        let dir = tempfile::tempdir().unwrap();
        let data = common::pattern(11, FILE_LEN);
        let file = file_with(&dir, "big", &data).await;
        let (tx, rx) = tcp_pair().await;
        // Nobody reads yet: the socket fills and a send waits, then is dropped. (Loopback
        // buffers grow to several MiB, so the file goes again and again until one waits.)
        let sends = async {
            for _ in 0..1000 {
                if uncached {
                    evict(&dir, "big");
                }
                tx.send_file(&file, 0, FILE_LEN as u64).await.unwrap();
            }
        };
        let res = ringloop::time::timeout(Duration::from_millis(200), sends).await;
        assert!(res.is_err(), "10 GiB went into an unread socket");
        let marker = b"after the dropped send_file";
        // The reader starts now, so the full socket drains while the marker waits for room.
        let reader = spawn(async move {
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(256 * 1024);
            loop {
                let (res, b) = rx.read(buf).await;
                let n = res.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&b[..n]);
                buf = b;
            }
        });
        let (res, _) = tx.write_all(&marker[..]).await;
        res.unwrap();
        tx.shutdown(std::net::Shutdown::Write).unwrap();
        let got = reader.await.unwrap();
        assert!(
            got.ends_with(marker),
            "the write after the drop was lost or reordered"
        );
        // Before the marker: whole copies of the file, then a prefix of it.
        let sent = got.len() - marker.len();
        for (i, piece) in got[..sent].chunks(FILE_LEN).enumerate() {
            assert!(
                piece == &data[..piece.len()],
                "copy {i} of the file came out different"
            );
        }
    });
}

fn unix_stream_and_errors(lp: &mut EventLoop) {
    lp.run_until_complete(async {
        let dir = tempfile::tempdir().unwrap();
        let data = common::pattern(5, 300_000);
        let file = file_with(&dir, "f", &data).await;
        let (a, b) = UnixStream::pair().unwrap();
        let reader = spawn(async move {
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(65536);
            while got.len() < 300_000 {
                let (res, bb) = b.read(buf).await;
                let n = res.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&bb[..n]);
                buf = bb;
            }
            got
        });
        assert_eq!(a.send_file(&file, 0, 300_000).await.unwrap(), 300_000);
        assert!(reader.await.unwrap() == data);
        // A directory cannot be sent: an error, not a panic or a hang.
        let d = ringloop::fs::File::open(dir.path()).await.unwrap();
        assert!(a.send_file(&d, 0, 10).await.is_err());
        // A closed peer: BrokenPipe (or a reset), never SIGPIPE.
        let (c, gone) = UnixStream::pair().unwrap();
        drop(gone);
        let err = c.send_file(&file, 0, 300_000).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{err}"
        );
    });
}

/// `send_file_with_head`: the head, then the range, byte for byte, for a cached and an uncached
/// file; with nothing of the file to follow (an empty range, the file's end), the head still
/// arrives, while the connection stays open (the bytes held for `MSG_MORE` are pushed).
fn head_then_body(lp: &mut EventLoop) {
    use std::os::fd::AsRawFd;
    lp.run_until_complete(async {
        let dir = tempfile::tempdir().unwrap();
        let data = common::pattern(11, 200_000);
        let file = file_with(&dir, "f", &data).await;
        let (tx, rx) = tcp_pair().await;
        let rx = rx.into_std().unwrap();
        rx.set_nonblocking(false).unwrap();
        // A hang detector, not a speed bound: a held head would never come.
        rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let cases: [(&[u8], u64, u64, bool); 6] = [
            (b"first, and alone\n", 10, 0, false),
            (b"HTTP/1.1 200 OK\r\n\r\n", 0, 1024, false),
            (b"head of the rest\n", 1024, 150_000, false),
            (b"uncached\n", 7, 100_000, true),
            (b"an empty range\n", 10, 0, false),
            (b"past the end\n", 200_000, 10, false),
        ];
        for (head, off, len, uncached) in cases {
            if uncached {
                evict(&dir, "f");
            }
            let body_len = len.min(200_000u64.saturating_sub(off));
            let rx = rx.try_clone().unwrap();
            let want = head.len() + body_len as usize;
            let reader = std::thread::spawn(move || {
                use std::io::Read;
                let mut got = vec![0u8; want];
                (&rx).read_exact(&mut got).map(|_| got)
            });
            let sent = tx.send_file_with_head(head, &file, off, len).await.unwrap();
            assert_eq!(sent, body_len, "{off}+{len}");
            if body_len == 0 {
                // Nothing followed the head: it went out, not held back for more (which lets it
                // wait for the kernel's probe timer, 200 ms and more).
                let mut unsent: libc::c_int = -1;
                // SAFETY: SIOCOUTQNSD writes one int, the send queue's bytes not yet sent.
                let rc = unsafe { libc::ioctl(tx.as_raw_fd(), libc::SIOCOUTQNSD, &mut unsent) };
                assert_eq!(rc, 0, "SIOCOUTQNSD");
                assert_eq!(unsent, 0, "{off}+{len}: the head was held back");
            }
            let got = reader.join().unwrap().expect("the head and body arrive");
            assert_eq!(&got[..head.len()], head, "{off}+{len}: the head first");
            let body = &data[off as usize..(off + body_len) as usize];
            assert!(
                &got[head.len()..] == body,
                "{off}+{len}: the body came out different"
            );
        }
    });
}

/// Bytes of `fd`'s send queue not sent yet (`SIOCOUTQNSD`): not 0 while a head is held back.
fn unsent(fd: std::os::fd::RawFd) -> libc::c_int {
    let mut unsent: libc::c_int = -1;
    // SAFETY: SIOCOUTQNSD writes one int, the send queue's bytes not yet sent.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCOUTQNSD, &mut unsent) };
    assert_eq!(rc, 0, "SIOCOUTQNSD");
    unsent
}

fn tcp_cork(fd: std::os::fd::RawFd) -> libc::c_int {
    let mut v: libc::c_int = -1;
    let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int option and its length, written by the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&mut v as *mut libc::c_int).cast(),
            &mut size,
        )
    };
    assert_eq!(rc, 0, "getsockopt TCP_CORK");
    v
}

/// A head whose body fails (a directory for a file) or whose future is dropped before any
/// byte of the file went (an uncached body, a zero timeout) is pushed, not held back for the
/// kernel's timer; and a cork the caller set stays set.
fn head_pushed_on_error_and_drop_and_caller_cork_kept(lp: &mut EventLoop) {
    use std::os::fd::AsRawFd;
    lp.run_until_complete(async {
        let dir = tempfile::tempdir().unwrap();
        let data = common::pattern(13, 4 << 20);
        let file = file_with(&dir, "f", &data).await;
        let (tx, _rx) = tcp_pair().await;
        let fd = tx.as_raw_fd();

        let not_a_file = ringloop::fs::File::open(dir.path()).await.unwrap();
        let res = tx.send_file_with_head(b"HEAD1", &not_a_file, 0, 10).await;
        assert!(res.is_err(), "a directory as the body: {res:?}");
        assert_eq!(unsent(fd), 0, "the head of a failed body was held back");

        evict(&dir, "f");
        let dropped = ringloop::time::timeout(
            Duration::ZERO,
            tx.send_file_with_head(b"HEAD2", &file, 0, 4 << 20),
        )
        .await;
        if dropped.is_err() {
            // Dropped while its body waited (on a fast disk it may also have finished).
            assert_eq!(unsent(fd), 0, "the head of a dropped call was held back");
        }

        let on: libc::c_int = 1;
        // SAFETY: a plain int option read by the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let sent = tx.send_file_with_head(b"HEAD3", &file, 0, 0).await.unwrap();
        assert_eq!(sent, 0);
        assert_eq!(tcp_cork(fd), 1, "the caller's TCP_CORK was cleared");
    });
}

both_backends! {
    fn send_file_with_head_sends_the_head_then_the_body(lp: &mut EventLoop) {
        head_then_body(lp);
    }

    fn send_file_with_head_pushes_its_head_on_error_and_drop_and_keeps_a_callers_cork(
        lp: &mut EventLoop
    ) {
        head_pushed_on_error_and_drop_and_caller_cork_kept(lp);
    }

    fn send_file_random_ranges_byte_for_byte(lp: &mut EventLoop) {
        random_ranges(lp, false, true);
    }

    /// The file evicted from the page cache before each range: uring splices then.
    fn send_file_of_an_uncached_file(lp: &mut EventLoop) {
        random_ranges(lp, true, true);
    }

    fn send_file_of_a_short_file_and_past_its_end(lp: &mut EventLoop) {
        short_file_and_past_the_end(lp);
    }

    fn a_dropped_send_file_leaves_the_stream_usable(lp: &mut EventLoop) {
        dropped_send_file_leaves_the_stream_usable(lp, false);
    }

    fn a_dropped_send_file_of_an_uncached_file(lp: &mut EventLoop) {
        dropped_send_file_leaves_the_stream_usable(lp, true);
    }

    fn send_file_on_a_unix_stream_and_its_errors(lp: &mut EventLoop) {
        unix_stream_and_errors(lp);
    }

    fn send_file_of_what_is_not_a_regular_file_is_one_error_on_every_path(lp: &mut EventLoop) {
        not_a_regular_file(lp);
    }
}

/// A directory, `/dev/null` and a FIFO as the file: the same `InvalidInput` error naming the
/// file's kind on every backend and path (the splice path said `EINVAL`, the blocking pool's
/// reads `EISDIR`, and `/dev/null` sent nothing, before), with a head too; the stream stays
/// usable.
fn not_a_regular_file(lp: &mut EventLoop) {
    lp.run_until_complete(async {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        // Opened for reading and writing, so the open does not wait for a writer.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let files = [
            (
                "a directory",
                ringloop::fs::File::open(dir.path()).await.unwrap(),
            ),
            (
                "a character device",
                ringloop::fs::File::open("/dev/null").await.unwrap(),
            ),
            ("a FIFO", ringloop::fs::File::from_std(fifo)),
        ];
        let (a, b) = tcp_pair().await;
        for (kind, file) in &files {
            for head in [&b""[..], b"HEAD"] {
                let err = a
                    .send_file_with_head(head, file, 0, 4096)
                    .await
                    .unwrap_err();
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::InvalidInput,
                    "{kind}: {err}"
                );
                assert!(err.to_string().contains(kind), "{kind}: {err}");
            }
        }
        // The heads went (pushed when the body failed); the stream still works.
        a.write_all(b"after" as &'static [u8]).await.0.unwrap();
        let got = read_n(&b, 3 * 4 + 5).await;
        assert_eq!(&got[..], b"HEADHEADHEADafter");
        // An empty range asks nothing of the file: Ok(0), as for a regular file.
        assert_eq!(a.send_file(&files[0].1, 0, 0).await.unwrap(), 0);
    });
}

/// uring with the splice path off: send_file reads an uncached file on the blocking pool.
mod uring_sendfile {
    use super::*;

    fn lp() -> EventLoop {
        EventLoop::builder()
            .backend(Backend::Uring)
            .disable_fast_paths("splice")
            .build()
            .expect("the uring backend is required here")
    }

    #[test]
    fn random_ranges() {
        super::random_ranges(&mut lp(), true, false);
    }

    #[test]
    fn dropped() {
        super::dropped_send_file_leaves_the_stream_usable(&mut lp(), true);
    }

    #[test]
    fn short_file() {
        super::short_file_and_past_the_end(&mut lp());
    }

    #[test]
    fn head_then_body() {
        super::head_then_body(&mut lp());
    }

    #[test]
    fn not_a_regular_file() {
        super::not_a_regular_file(&mut lp());
    }
}
