//! Cancellation at every await, both backends, part two: the fs futures (fixed buffers too),
//! process output and wait, signal receives, sleep, timeout and interval. Each future is dropped
//! after each possible number of polls (`common::cancel::drop_at_every_poll`); then the object
//! still works, `close()` is prompt and nothing leaked (tasks, fds; each test runs in a child
//! process, `common::cancel::run_checked`). The socket futures are in `cancel.rs`.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cancel::{Attempt, attempt_value, check_attempts, drop_at_every_poll, run_checked};
use common::pattern;
use ringloop::fs::{self, File, FixedBufs};
use ringloop::process::Command;
use ringloop::signal::{SignalKind, signal};
use ringloop::time::{interval, sleep, timeout};
use ringloop::{Backend, EventLoop};

in_child_per_backend! {
    file_ops, path_ops, fixed_buffer_ops, process_output_and_wait, signal_receives, timers,
    sync_waits, task_group_and_abort_on_drop,
}

/// Open, read, write, sync, length and close of a `File`, each dropped at every poll.
fn file_ops(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, pattern(0, 64 * 1024)).unwrap();
    let dst = dir.path().join("dst");
    run_checked(backend, EventLoop::builder(), async {
        let f = drop_at_every_poll(async || File::open(&src).await)
            .await
            .output
            .unwrap();
        for pos in [0u64, 1000, 60_000] {
            let (res, buf) = drop_at_every_poll(async || {
                evict(&src); // else the read completes inline at its first poll
                f.read_at(Vec::with_capacity(4096), pos).await
            })
            .await
            .output;
            let n = res.unwrap();
            assert_eq!(buf, pattern(pos as usize, n), "read_at({pos})");
        }
        let (res, buf) =
            drop_at_every_poll(async || f.read_exact_at(Vec::with_capacity(5000), 100).await)
                .await
                .output;
        res.unwrap();
        assert_eq!(buf, pattern(100, 5000));
        let w = drop_at_every_poll(async || File::create(&dst).await)
            .await
            .output
            .unwrap();
        // Each write writes the same bytes at the same place: whether a dropped one went or
        // not, the file ends the same.
        for i in 0..8usize {
            let data = pattern(i * 4096, 4096);
            let n =
                drop_at_every_poll(async || w.write_at(data.clone(), (i * 4096) as u64).await.0)
                    .await
                    .output
                    .unwrap();
            assert_eq!(n, 4096);
        }
        drop_at_every_poll(async || w.write_all_at(pattern(32_768, 8192), 32_768).await.0)
            .await
            .output
            .unwrap();
        drop_at_every_poll(async || w.sync_all().await)
            .await
            .output
            .unwrap();
        drop_at_every_poll(async || w.sync_data().await)
            .await
            .output
            .unwrap();
        let len = drop_at_every_poll(async || w.len().await).await.output;
        assert_eq!(len.unwrap(), 40_960);
        let meta = drop_at_every_poll(async || w.metadata().await).await.output;
        assert_eq!(meta.unwrap().len(), 40_960);
        drop_at_every_poll(async || w.set_len(40_000).await)
            .await
            .output
            .unwrap();
        // `close` takes the file: each attempt closes a file of its own.
        drop_at_every_poll(async || File::open(&dst).await.unwrap().close().await)
            .await
            .output
            .unwrap();
        drop(w);
        let back = std::fs::read(&dst).unwrap();
        assert_eq!(back, pattern(0, 40_000));
    });
}

/// The path functions of `ringloop::fs`, each dropped at every poll.
fn path_ops(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_checked(backend, EventLoop::builder(), async {
        let a = d.join("a");
        drop_at_every_poll(async || fs::write(&a, pattern(0, 10_000)).await)
            .await
            .output
            .unwrap();
        let back = drop_at_every_poll(async || fs::read(&a).await).await.output;
        assert_eq!(back.unwrap(), pattern(0, 10_000));
        let meta = drop_at_every_poll(async || fs::metadata(&a).await)
            .await
            .output;
        assert_eq!(meta.unwrap().len(), 10_000);
        let b = d.join("b");
        let copied = drop_at_every_poll(async || fs::copy(&a, &b).await)
            .await
            .output;
        assert_eq!(copied.unwrap(), 10_000);
        assert_eq!(std::fs::read(&b).unwrap(), pattern(0, 10_000));
        // Operations that change the tree: a dropped attempt may have done it already, so each
        // attempt works on a name of its own and the test checks the result at the end.
        let mut n = 0;
        let made = drop_at_every_poll(async || {
            n += 1;
            fs::create_dir_all(d.join(format!("dir{n}/x/y")))
                .await
                .map(|()| n)
        })
        .await
        .output
        .unwrap();
        assert!(d.join(format!("dir{made}/x/y")).is_dir());
        let mut n = 0;
        let renamed = drop_at_every_poll(async || {
            n += 1;
            let from = d.join(format!("r{n}"));
            std::fs::write(&from, b"r").unwrap();
            fs::rename(&from, d.join(format!("renamed{n}")))
                .await
                .map(|()| n)
        })
        .await
        .output
        .unwrap();
        assert!(d.join(format!("renamed{renamed}")).exists());
        let mut dir = drop_at_every_poll(async || fs::read_dir(d).await)
            .await
            .output
            .unwrap();
        let mut names = Vec::new();
        while let Some(e) = drop_at_every_poll(async || dir.next_entry().await)
            .await
            .output
            .unwrap()
        {
            names.push(e.file_name());
        }
        assert!(
            names.iter().any(|n| n == "a") && names.iter().any(|n| n == "b"),
            "{names:?}"
        );
        let mut n = 0;
        let removed = drop_at_every_poll(async || {
            n += 1;
            let victim = d.join(format!("victim{n}"));
            std::fs::write(&victim, b"v").unwrap();
            fs::remove_file(&victim).await.map(|()| n)
        })
        .await
        .output
        .unwrap();
        assert!(!d.join(format!("victim{removed}")).exists());
    });
}

/// Waits until every buffer of `bufs` is back (a dropped op gives its buffer back when the
/// kernel lets go of it).
async fn all_back(bufs: &FixedBufs) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bufs.available() < bufs.count() {
        assert!(
            Instant::now() < deadline,
            "a fixed buffer of a dropped op never came back ({} of {} free)",
            bufs.available(),
            bufs.count()
        );
        sleep(Duration::from_millis(1)).await;
    }
}

/// Reads and writes with registered buffers (`READ_FIXED` / `WRITE_FIXED` on uring), dropped at
/// every poll: the data is right and every buffer comes back to the set.
fn fixed_buffer_ops(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixed");
    std::fs::write(&path, pattern(0, 64 * 1024)).unwrap();
    run_checked(backend, EventLoop::builder(), async {
        let bufs = FixedBufs::register(16, 16 * 1024).unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .await
            .unwrap();
        for pos in [0u64, 4096, 40_000] {
            let (res, buf) = drop_at_every_poll(async || {
                evict(&path); // else the read completes inline at its first poll
                let buf = bufs
                    .try_take()
                    .expect("every fixed buffer is held by dropped ops");
                f.read_at(buf, pos).await
            })
            .await
            .output;
            let n = res.unwrap();
            assert_eq!(&buf[..], &pattern(pos as usize, n)[..], "read_at({pos})");
        }
        for i in 0..4usize {
            let data = pattern(100_000 + i * 8192, 8192);
            let (res, _buf) = drop_at_every_poll(async || {
                let mut buf = bufs
                    .try_take()
                    .expect("every fixed buffer is held by dropped ops");
                buf.put_slice(&data);
                f.write_at(buf, (i * 8192) as u64).await
            })
            .await
            .output;
            assert_eq!(res.unwrap(), 8192);
        }
        all_back(&bufs).await;
        drop(f);
        drop(bufs);
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..32_768], &pattern(100_000, 32_768)[..]);
    });
}

/// Zombie children of this process (pids).
fn zombie_children() -> Vec<u32> {
    children(true)
}

/// Children of this process (pids): the zombies only, or all of them.
fn children(zombies_only: bool) -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state_matches = !zombies_only || fields.first() == Some(&"Z");
        if state_matches && fields.get(1) == Some(&me.as_str()) {
            out.push(e.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    out
}

/// `Command::output`, `Command::status` and `Child::wait` dropped at every poll: the outputs are
/// right, and no child is left a zombie or running.
fn process_output_and_wait(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf hello; sleep 0.02; printf ' world'"]);
        for _ in 0..2 {
            let out = drop_at_every_poll(async || cmd.output().await)
                .await
                .output
                .unwrap();
            assert_eq!(out.stdout, b"hello world");
            assert!(out.status.success());
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.01; exit 3"]).stdout(Stdio::null());
        let status = drop_at_every_poll(async || cmd.status().await).await.output;
        assert_eq!(status.unwrap().code(), Some(3));
        let mut child = Command::new("sleep").arg("0.05").spawn().unwrap();
        let status = drop_at_every_poll(async || child.wait().await).await.output;
        assert!(status.unwrap().success());
        // A child's pipes: writes to its stdin dropped at every poll (`cat` echoes what went),
        // then reads of its stdout dropped at every poll. Each attempt's bytes, in order. The
        // 120 KB in all fit in the two pipes (64 KiB each) and `cat`'s buffer.
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = cat.stdin.take().unwrap();
        let stdout = cat.stdout.take().unwrap();
        let mut attempts: Vec<Attempt> = Vec::new();
        for _ in 0..4 {
            let sweep = drop_at_every_poll(async || {
                let n = attempts.len();
                let value = attempt_value(n);
                attempts.push(Attempt {
                    value,
                    len: 30_000,
                    completed: None,
                });
                (n, stdin.write_all(vec![value; 30_000]).await.0)
            });
            let (n, res) = sweep.await.output;
            res.unwrap();
            attempts[n].completed = Some(30_000);
        }
        drop(stdin);
        let mut echoed = Vec::new();
        loop {
            let sweep = drop_at_every_poll(async || {
                let (res, buf) = stdout.read(Vec::with_capacity(4096)).await;
                res.map(|_| buf)
            })
            .await;
            let bytes = sweep.output.unwrap();
            if bytes.is_empty() {
                break;
            }
            echoed.extend_from_slice(&bytes);
        }
        check_attempts(&echoed, &attempts);
        assert!(cat.wait().await.unwrap().success());
        // The children of the dropped `output` and `status` futures are reaped in the background.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !zombie_children().is_empty() {
            assert!(
                Instant::now() < deadline,
                "zombie children: {:?}",
                zombie_children()
            );
            sleep(Duration::from_millis(10)).await;
        }
    });
}

/// `Signals::recv` and `Signals::wait` dropped at every poll while another thread raises the signal: the listener
/// still receives a signal raised afterwards.
fn signal_receives(backend: Backend) {
    // The first listener of a process creates its slot's eventfd, which stays for the process's
    // life: make it before the fds are counted.
    drop(signal(SignalKind::user_defined1()).unwrap());
    run_checked(backend, EventLoop::builder(), async {
        let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let raiser = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    // SAFETY: kill(2) with our own pid and a signal a listener handles.
                    unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        for _ in 0..3 {
            let got = drop_at_every_poll(async || usr1.recv().await).await.output;
            assert_eq!(got, Some(()));
            let got = drop_at_every_poll(async || usr1.wait().await).await.output;
            got.unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        raiser.join().unwrap();
        // Deliveries made before now may be pending: drain them, then one more must come.
        while timeout(Duration::from_millis(50), usr1.recv())
            .await
            .is_ok()
        {}
        // SAFETY: as above.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        let got = timeout(Duration::from_secs(10), usr1.recv())
            .await
            .expect("a signal raised after dropped receives never came");
        assert_eq!(got, Some(()));
    });
}

/// `sleep`, `timeout` and `Interval::tick` dropped at every poll.
fn timers(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        for ms in [0, 1, 3] {
            let start = Instant::now();
            drop_at_every_poll(async || sleep(Duration::from_millis(ms)).await).await;
            assert!(start.elapsed() >= Duration::from_millis(ms));
        }
        let out = drop_at_every_poll(async || {
            timeout(Duration::from_millis(3), std::future::pending::<()>()).await
        })
        .await
        .output;
        assert!(
            out.is_err(),
            "a timeout of a pending future completed with its output"
        );
        let out = drop_at_every_poll(async || {
            timeout(Duration::from_secs(10), sleep(Duration::from_millis(2))).await
        })
        .await
        .output;
        assert!(out.is_ok(), "a 2 ms sleep timed out after 10 s");
        let mut iv = interval(Duration::from_millis(2));
        let mut last = None;
        for _ in 0..5 {
            let at = drop_at_every_poll(async || iv.tick().await).await.output;
            assert!(last < Some(at), "interval ticks went back");
            last = Some(at);
        }
        // The timer store still works after the drops.
        timeout(Duration::from_secs(10), sleep(Duration::from_millis(1)))
            .await
            .expect("a sleep after dropped timers never fired");
    });
}

/// A `Command::output()` of a child that writes without end (`yes`), dropped after a few polls:
/// nothing of it may go on reading (the loop's task list is checked by `run_checked`), and the
/// child must end (SIGPIPE once its pipe is closed) and be reaped.
fn dropped_output_leaves_no_reader(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let mut cmd = Command::new("yes");
        for polls in 1..4 {
            let mut out = std::pin::pin!(cmd.output());
            for _ in 0..polls {
                let polled =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(out.as_mut().poll(cx)));
                assert!(polled.await.is_pending(), "`yes` ended");
                sleep(Duration::from_millis(5)).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !children(false).is_empty() {
            assert!(
                Instant::now() < deadline,
                "children still there (running or zombies): {:?}",
                children(false)
            );
            sleep(Duration::from_millis(10)).await;
        }
    });
}

/// Drops `path`'s pages from the page cache, so a read of it goes to the ring (a cached one
/// completes inline at its first poll).
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: posix_fadvise takes no pointers; the fd is open for the call.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise(DONTNEED)");
}

/// The set of fixed buffers dropped while a read with one of its buffers is queued (polled once,
/// its SQE not yet submitted) or in flight: the read must still complete with the right bytes
/// (the set is unregistered only once the ring has no op of it left).
fn fixed_set_dropped_while_an_op_is_queued(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixed");
    std::fs::write(&path, pattern(0, 8192)).unwrap();
    run_checked(backend, EventLoop::builder(), async {
        let f = File::open(&path).await.unwrap();
        'sweep: for polls in 1..=3 {
            evict(&path);
            let bufs = FixedBufs::register(2, 4096).unwrap();
            let buf = bufs.try_take().unwrap();
            let mut read = std::pin::pin!(f.read_at(buf, 100));
            for i in 0..polls {
                if i > 0 {
                    ringloop::yield_now().await;
                }
                let polled =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx)));
                if let std::task::Poll::Ready((res, buf)) = polled.await {
                    // Done before the set's drop (a later poll count): nothing to see here.
                    assert_eq!(&buf[..], &pattern(100, res.unwrap())[..]);
                    continue 'sweep;
                }
            }
            drop(bufs);
            let (res, buf) = read.await;
            let n = res.unwrap_or_else(|e| panic!("after {polls} polls and the set's drop: {e}"));
            assert_eq!(&buf[..], &pattern(100, n)[..]);
        }
    });
}

/// Tests of defects the suite found outside its files (issue 29 items 8 and 5), fixed since;
/// each runs alone in a child process.
mod defects {
    #[test]
    fn uring_fixed_set_dropped_while_an_op_is_queued() {
        run(
            ringloop::Backend::Uring,
            "uring_fixed_set_dropped_while_an_op_is_queued",
            super::fixed_set_dropped_while_an_op_is_queued,
        );
    }

    #[test]
    fn epoll_fixed_set_dropped_while_an_op_is_queued() {
        run(
            ringloop::Backend::Epoll,
            "epoll_fixed_set_dropped_while_an_op_is_queued",
            super::fixed_set_dropped_while_an_op_is_queued,
        );
    }

    fn run(backend: ringloop::Backend, name: &str, test: fn(ringloop::Backend)) {
        if crate::common::in_child() {
            test(backend);
        } else {
            crate::common::cancel::run_ignored_in_child(&format!("defects::{name}"));
        }
    }

    #[test]
    fn uring_dropped_output_leaves_no_reader() {
        run(
            ringloop::Backend::Uring,
            "uring_dropped_output_leaves_no_reader",
            super::dropped_output_leaves_no_reader,
        );
    }

    #[test]
    fn epoll_dropped_output_leaves_no_reader() {
        run(
            ringloop::Backend::Epoll,
            "epoll_dropped_output_leaves_no_reader",
            super::dropped_output_leaves_no_reader,
        );
    }
}

/// `ringloop::sync`'s waits dropped at every poll: a dropped waiter (woken or not) loses no item,
/// permit, lock or notification, and the primitives work on after the sweep.
fn sync_waits(backend: Backend) {
    use ringloop::sync::{Barrier, Condition, Event, Lock, Queue, Semaphore};
    use std::rc::Rc;
    run_checked(backend, EventLoop::builder(), async {
        // Queue::get: every item comes out once, in order, whatever getters were dropped.
        let q = Rc::new(Queue::new(0));
        let producer = {
            let q = q.clone();
            ringloop::spawn(async move {
                for i in 0..5u32 {
                    sleep(Duration::from_millis(1)).await;
                    q.put(i).await;
                }
            })
        };
        for i in 0..5u32 {
            assert_eq!(drop_at_every_poll(async || q.get().await).await.output, i);
        }
        producer.await.unwrap();
        assert!(q.empty());
        // Queue::put on a full queue: each completed put adds exactly one item.
        let full = Rc::new(Queue::new(1));
        full.put_nowait(0u32).unwrap();
        let consumer = {
            let full = full.clone();
            ringloop::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..4 {
                    sleep(Duration::from_millis(1)).await;
                    got.push(full.get().await);
                }
                got
            })
        };
        for i in 1..4u32 {
            drop_at_every_poll(async || full.put(i).await).await;
        }
        assert_eq!(consumer.await.unwrap(), [0, 1, 2, 3]);
        assert!(full.empty());
        // Lock::lock against a holder that lets go after a while.
        let lock = Rc::new(Lock::new());
        for _ in 0..3 {
            let holder = {
                let lock = lock.clone();
                ringloop::spawn(async move {
                    let _guard = lock.lock().await;
                    sleep(Duration::from_millis(2)).await;
                })
            };
            ringloop::yield_now().await;
            drop(drop_at_every_poll(async || lock.lock().await).await.output);
            holder.await.unwrap();
            assert!(!lock.locked(), "a dropped lock() kept the lock");
        }
        // Semaphore::acquire against releases from another task.
        let sem = Rc::new(Semaphore::new(0));
        let releaser = {
            let sem = sem.clone();
            ringloop::spawn(async move {
                for _ in 0..3 {
                    sleep(Duration::from_millis(1)).await;
                    sem.release();
                }
            })
        };
        for _ in 0..3 {
            drop_at_every_poll(async || sem.acquire().await)
                .await
                .output
                .forget();
        }
        releaser.await.unwrap();
        assert_eq!(
            sem.available_permits(),
            0,
            "a dropped acquire() lost or made a permit"
        );
        // Event::wait, set later.
        let event = Rc::new(Event::new());
        let setter = {
            let event = event.clone();
            ringloop::spawn(async move {
                sleep(Duration::from_millis(2)).await;
                event.set();
            })
        };
        drop_at_every_poll(async || event.wait().await).await;
        setter.await.unwrap();
        // Condition::wait, notified from another task until a waiter got through.
        let cond = Rc::new(Condition::new());
        let done = Rc::new(std::cell::Cell::new(false));
        let notifier = {
            let (cond, done) = (cond.clone(), done.clone());
            ringloop::spawn(async move {
                while !done.get() {
                    sleep(Duration::from_millis(1)).await;
                    cond.notify_all();
                }
            })
        };
        drop_at_every_poll(async || {
            let guard = cond.lock().await;
            drop(cond.wait(guard).await);
        })
        .await;
        done.set(true);
        notifier.await.unwrap();
        assert!(!cond.locked(), "a dropped Condition::wait kept the lock");
        // Barrier::wait: the other party keeps arriving (a round that a woken waiter completed
        // before it was dropped has passed, as in asyncio); a dropped waiter that was not
        // released withdraws, and the barrier serves fresh rounds afterwards.
        let barrier = Rc::new(Barrier::new(2));
        let other = {
            let barrier = barrier.clone();
            ringloop::spawn(async move {
                loop {
                    sleep(Duration::from_millis(1)).await;
                    barrier.wait().await;
                }
            })
        };
        drop_at_every_poll(async || barrier.wait().await).await;
        other.abort();
        ringloop::yield_now().await;
        ringloop::yield_now().await;
        let (a, b) = (barrier.clone(), barrier.clone());
        let a = ringloop::spawn(async move { a.wait().await });
        let b = ringloop::spawn(async move { b.wait().await });
        let mut got = [a.await.unwrap(), b.await.unwrap()];
        got.sort();
        assert_eq!(got, [0, 1], "a fresh round after the sweep");
    });
}

/// `TaskGroup::join` and an `AbortOnDrop` handle dropped at every poll: the members and the
/// task are cancelled with them (no task is left: `run_checked` counts).
fn task_group_and_abort_on_drop(backend: Backend) {
    run_checked(backend, EventLoop::builder(), async {
        let out = drop_at_every_poll(async || {
            let mut group = ringloop::TaskGroup::<u32, ()>::new();
            group.spawn(async {
                sleep(Duration::from_millis(2)).await;
                Ok(1)
            });
            group.spawn(async { Ok(2) });
            group.join().await
        })
        .await
        .output;
        assert_eq!(out.unwrap(), [1, 2]);
        let out = drop_at_every_poll(async || {
            ringloop::spawn(async {
                sleep(Duration::from_millis(2)).await;
                5
            })
            .abort_on_drop()
            .await
        })
        .await
        .output;
        assert_eq!(out.unwrap(), 5);
    });
}
