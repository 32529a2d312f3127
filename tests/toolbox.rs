//! The rest of asyncio's toolbox, both backends: `TaskGroup`, `ringloop::process`, debug mode's
//! slow-poll warnings, and task introspection.

mod common;

use std::cell::{Cell, RefCell};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use common::{in_child, run_in_child, test_path};
use ringloop::process::Command;
use ringloop::time::sleep;
use ringloop::{Backend, EventLoop, JoinSet, yield_now};

/// Yields `n` times, then returns `v`.
async fn after_yields<T>(n: usize, v: T) -> T {
    for _ in 0..n {
        yield_now().await;
    }
    v
}

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Children of this process that are zombies now.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

/// This process's resident set, in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024
}

/// Children of this process (zombies too) whose command is `name`.
fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...".
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        if comm == name && rest.split_whitespace().nth(1) == Some(me.as_str()) {
            found.push(pid);
        }
    }
    found
}

fn process_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

both_backends! {
    /// `spawn()` returned an error for a child that was already running when `pidfd_open` failed
    /// with anything but `ENOSYS` (a seccomp filter's `EPERM`, `EMFILE`): the caller had no
    /// handle to a live process. It now falls back to waiting without a pidfd.
    fn a_refused_pidfd_open_falls_back_instead_of_failing_spawn(lp: &mut EventLoop) {
        if !in_child() {
            let name = test_path(lp.backend(), "a_refused_pidfd_open_falls_back_instead_of_failing_spawn");
            run_in_child(&name, &[]);
            return;
        }
        common::deny_syscall(libc::SYS_pidfd_open, libc::EPERM);
        lp.run_until_complete(async {
            let mut child = Command::new("sh")
                .args(["-c", "exit 6"])
                .spawn()
                .expect("spawn failed because pidfd_open was refused");
            assert_eq!(child.wait().await.unwrap().code(), Some(6));
        });
    }

    /// Without a pidfd, `wait` ran a blocking `waitpid` on the pool. A dropped `wait` left that
    /// `waitpid` to reap the child, and the status was lost: the next `wait` failed with
    /// `ECHILD` (and `kill` could have hit a reused pid). The pool now waits without reaping.
    fn a_dropped_wait_without_a_pidfd_loses_no_status(lp: &mut EventLoop) {
        if !in_child() {
            let name = test_path(lp.backend(), "a_dropped_wait_without_a_pidfd_loses_no_status");
            run_in_child(&name, &[]);
            return;
        }
        common::deny_syscall(libc::SYS_pidfd_open, libc::EPERM);
        lp.run_until_complete(async {
            let mut child = Command::new("sh").args(["-c", "sleep 0.2; exit 3"]).spawn().unwrap();
            let early = ringloop::time::timeout(Duration::from_millis(20), child.wait()).await;
            assert!(early.is_err(), "the child exited too soon for this test");
            // The child exits meanwhile; nobody awaits it.
            sleep(Duration::from_millis(500)).await;
            assert!(child.id().is_some());
            let status = child.wait().await.expect("the status was lost with the dropped wait");
            assert_eq!(status.code(), Some(3));
            assert_eq!(child.id(), None);
        });
    }

    /// `Command::status` closed only stdin: a child writing more than a pipe holds to a piped
    /// stdout blocked for good, and `status` with it. Every piped stream is closed now.
    fn status_closes_every_piped_stream(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let status = ringloop::time::timeout(
                Duration::from_secs(10),
                Command::new("head")
                    .args(["-c", "4000000", "/dev/zero"])
                    .stdout(Stdio::piped())
                    .status(),
            )
            .await
            .expect("status() hung on a child blocked writing to its piped stdout")
            .unwrap();
            // The child met a closed pipe: SIGPIPE, or an error exit where it is ignored.
            assert!(!status.success(), "{status:?}");
        });
    }

    /// A dropped `output()` future left its stdout reader running as a task of its own: with a
    /// `yes` child it read on for nobody, its buffer growing without bound (gigabytes in
    /// seconds), and the child never met a closed pipe. The reads live in the future now:
    /// dropping it closes the pipes, the child dies of `SIGPIPE` and is reaped. Checked in a
    /// child test process, so its RSS and children are this test's alone.
    fn a_dropped_output_closes_its_pipes_and_reads_no_more(lp: &mut EventLoop) {
        if !in_child() {
            let name = test_path(lp.backend(), "a_dropped_output_closes_its_pipes_and_reads_no_more");
            run_in_child(&name, &[]);
            return;
        }
        lp.run_until_complete(async {
            let before = rss_mib();
            let out = ringloop::time::timeout(
                Duration::from_millis(100),
                Command::new("yes").output(),
            )
            .await;
            assert!(out.is_err(), "yes ended by itself: {out:?}");
            let mut waited = Duration::ZERO;
            while !children_named("yes").is_empty() {
                let grown = rss_mib().saturating_sub(before);
                assert!(
                    grown < 64,
                    "the dropped output() read on: RSS grew by {grown} MiB after the drop"
                );
                assert!(
                    waited < Duration::from_secs(10),
                    "the yes child still runs 10 s after its output() was dropped"
                );
                sleep(Duration::from_millis(20)).await;
                waited += Duration::from_millis(20);
            }
        });
    }

    fn a_group_returns_results_in_completion_order(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let mut group = JoinSet::new();
            for (yields, v) in [(30, 'c'), (10, 'a'), (20, 'b'), (0, 'z')] {
                group.spawn(after_yields(yields, v));
            }
            assert_eq!(group.len(), 4);
            let mut order = String::new();
            while let Some(res) = group.join_next().await {
                order.push(res.unwrap());
            }
            assert_eq!(order, "zabc");
            assert!(group.is_empty());
            assert!(group.join_next().await.is_none());
        });
    }

    fn a_panicking_task_is_an_error_and_the_others_go_on(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let mut group = JoinSet::new();
            group.spawn(after_yields(5, 1));
            group.spawn(async {
                yield_now().await;
                panic!("this task fails");
            });
            group.spawn(after_yields(10, 2));
            let mut ok = Vec::new();
            let mut panics = 0;
            while let Some(res) = group.join_next().await {
                match res {
                    Ok(v) => ok.push(v),
                    Err(e) => {
                        assert!(e.is_panic(), "{e}");
                        panics += 1;
                    }
                }
            }
            assert_eq!((ok, panics), (vec![1, 2], 1));
        });
    }

    fn dropping_a_group_aborts_its_tasks(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let flags: Vec<Rc<Cell<bool>>> = (0..5).map(|_| Rc::new(Cell::new(false))).collect();
            let mut group = JoinSet::new();
            for f in &flags {
                let guard = DropFlag(f.clone());
                group.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
            }
            yield_now().await; // every task started
            drop(group);
            for _ in 0..3 {
                yield_now().await;
            }
            assert!(flags.iter().all(|f| f.get()), "a task of a dropped group still runs");
        });
    }

    fn abort_all_gives_cancelled_results(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let mut group = JoinSet::new();
            for _ in 0..3 {
                group.spawn(std::future::pending::<()>());
            }
            group.abort_all();
            let mut cancelled = 0;
            while let Some(res) = group.join_next().await {
                assert!(res.unwrap_err().is_cancelled());
                cancelled += 1;
            }
            assert_eq!(cancelled, 3);
        });
    }

    fn a_hundred_thousand_tasks_through_one_group(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            const N: u64 = 100_000;
            let mut group = JoinSet::new();
            for i in 0..N {
                group.spawn(async move { i });
            }
            let mut sum = 0;
            let mut count = 0;
            while let Some(res) = group.join_next().await {
                sum += res.unwrap();
                count += 1;
            }
            assert_eq!((count, sum), (N, N * (N - 1) / 2));
        });
        assert_eq!(lp.tasks().len(), 0);
    }

    fn output_of_echo(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let out = Command::new("echo").args(["hello", "world"]).output().await.unwrap();
            assert!(out.status.success());
            assert_eq!(out.stdout, b"hello world\n");
            assert!(out.stderr.is_empty());
            let out = Command::new("sh")
                .args(["-c", "echo oops >&2; exit 3"])
                .output()
                .await
                .unwrap();
            assert_eq!(out.status.code(), Some(3));
            assert_eq!(out.stderr, b"oops\n");
        });
    }

    fn sixteen_mib_through_cat(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            const TOTAL: usize = 16 << 20;
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take().unwrap();
            let stdout = child.stdout.take().unwrap();
            let writer = ringloop::spawn(async move {
                let mut off = 0;
                while off < TOTAL {
                    let len = (100_000).min(TOTAL - off);
                    stdin.write_all(common::pattern(off, len)).await.0.unwrap();
                    off += len;
                }
                // `stdin` is dropped here: cat reads end-of-file.
            });
            let mut got = 0;
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                let (res, b) = stdout.read(buf).await;
                let n = res.unwrap();
                if n == 0 {
                    break;
                }
                assert_eq!(&b[..], &common::pattern(got, n)[..], "at byte {got}");
                got += n;
                buf = b;
            }
            assert_eq!(got, TOTAL);
            writer.await.unwrap();
            assert!(child.wait().await.unwrap().success());
            assert_eq!(child.id(), None, "a reaped child has no id");
        });
    }

    fn kill_ends_a_child(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let mut child = Command::new("sleep").arg("30").spawn().unwrap();
            let pid = child.id().unwrap();
            assert!(child.try_wait().unwrap().is_none());
            child.kill().await.unwrap();
            let status = child.wait().await.unwrap();
            assert_eq!(status.signal(), Some(libc::SIGKILL));
            assert!(process_gone(pid));
            // Killing it again is not an error.
            child.kill().await.unwrap();
        });
    }

    fn a_missing_program_is_not_found_and_named(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let e = Command::new("ringloop-no-such-program").spawn().unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("ringloop-no-such-program"), "{e}");
            let e = Command::new("ringloop-no-such-program").output().await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        });
    }

    /// 200 children at once, all awaited; none is left a zombie (checked in /proc, in a child
    /// test process so other tests' children do not count).
    fn two_hundred_children_are_all_reaped(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "two_hundred_children_are_all_reaped"), &[]);
            return;
        }
        lp.run_until_complete(async {
            let mut group = JoinSet::new();
            for i in 0..200 {
                group.spawn(async move {
                    let mut child = Command::new("sh")
                        .args(["-c", &format!("exit {}", i % 7)])
                        .spawn()
                        .unwrap();
                    child.wait().await.unwrap().code()
                });
            }
            let mut codes = 0;
            while let Some(res) = group.join_next().await {
                assert!(res.unwrap().unwrap() < 7);
                codes += 1;
            }
            assert_eq!(codes, 200);
        });
        assert_eq!(zombie_children(), Vec::<u32>::new());
    }

    /// A child dropped without `wait` is reaped in the background; with `kill_on_drop` it is
    /// killed first. Runs in a child test process (zombies and pids are per process).
    fn dropped_children_leave_no_zombie(lp: &mut EventLoop) {
        if !in_child() {
            run_in_child(&test_path(lp.backend(), "dropped_children_leave_no_zombie"), &[]);
            return;
        }
        let (quick, killed) = lp.run_until_complete(async {
            let quick = Command::new("true").spawn().unwrap();
            let quick_pid = quick.id().unwrap();
            drop(quick);
            let killed = Command::new("sleep").arg("30").kill_on_drop(true).spawn().unwrap();
            let killed_pid = killed.id().unwrap();
            drop(killed);
            // Give the background reapers time to see both exits.
            for _ in 0..100 {
                if process_gone(quick_pid) && process_gone(killed_pid) {
                    break;
                }
                sleep(Duration::from_millis(20)).await;
            }
            (quick_pid, killed_pid)
        });
        assert!(process_gone(quick), "the dropped child {quick} is still there (a zombie?)");
        assert!(process_gone(killed), "the kill_on_drop child {killed} still runs");
        assert_eq!(zombie_children(), Vec::<u32>::new());
    }

    fn names_and_spawn_locations_are_right(lp: &mut EventLoop) {
        let (line_named, line_plain) = (line!() + 2, line!() + 3);
        lp.run_until_complete(async move {
            let named = ringloop::spawn_named("fetcher", async { ringloop::current_task() });
            let plain = ringloop::spawn(async { ringloop::current_task() });
            assert!(ringloop::current_task().is_none(), "the main future is not a task");
            let named = named.await.unwrap().unwrap();
            let plain = plain.await.unwrap().unwrap();
            assert_eq!(named.name(), Some("fetcher"));
            assert_eq!(plain.name(), None);
            assert!(named.spawned_at().file().ends_with("toolbox.rs"));
            assert_eq!(named.spawned_at().line(), line_named);
            assert_eq!(plain.spawned_at().line(), line_plain);
            assert_eq!(named.polls(), 1);
            assert_ne!(named.id(), plain.id());
            assert!(named.to_string().contains("\"fetcher\""), "{named}");
            // A group's task is located where the group's `spawn` was called.
            let mut group = JoinSet::new();
            let line_group = line!() + 1;
            group.spawn(async { ringloop::current_task().unwrap() });
            let info = group.join_next().await.unwrap().unwrap();
            assert_eq!(info.spawned_at().line(), line_group);
            assert!(info.spawned_at().file().ends_with("toolbox.rs"));
        });
    }

    fn tasks_lists_what_is_alive(lp: &mut EventLoop) {
        let waiting: Vec<_> = (0..3)
            .map(|i| lp.spawn(after_yields(1_000_000, i)))
            .collect();
        lp.run_until_complete(async {
            ringloop::spawn_named("quick", async {}).await.unwrap();
        });
        let tasks = lp.tasks();
        assert_eq!(tasks.len(), 3, "{tasks:?}");
        assert!(tasks.iter().all(|t| t.name().is_none() && t.polls() >= 1));
        for w in &waiting {
            w.abort();
        }
        lp.run_until_complete(yield_now());
        assert!(lp.tasks().is_empty());
    }

    /// A 150 ms blocking poll is reported once, naming the task; a 50 ms one is not.
    fn a_slow_poll_is_reported_once_with_the_task_name(lp: &mut EventLoop) {
        let reports = Rc::new(RefCell::new(Vec::new()));
        let seen = reports.clone();
        let mut lp = EventLoop::builder()
            .backend(lp.backend())
            .debug(true)
            .on_slow_poll(move |task, took| {
                seen.borrow_mut().push((task.name().map(String::from), took));
            })
            .build()
            .unwrap();
        lp.run_until_complete(async {
            ringloop::spawn_named("slow", async {
                std::thread::sleep(Duration::from_millis(150));
            })
            .await
            .unwrap();
            ringloop::spawn_named("fast enough", async {
                std::thread::sleep(Duration::from_millis(50));
            })
            .await
            .unwrap();
        });
        let reports = reports.borrow();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].0.as_deref(), Some("slow"));
        assert!(reports[0].1 >= Duration::from_millis(150));
    }

    /// With RINGLOOP_DEBUG=1 the warning goes to stderr, naming the task; closing lists the tasks
    /// still alive.
    fn debug_from_the_environment_prints_the_warning(lp: &mut EventLoop) {
        if !in_child() {
            let name = test_path(lp.backend(), "debug_from_the_environment_prints_the_warning");
            let out = run_in_child(&name, &[("RINGLOOP_DEBUG", "1")]);
            assert!(out.contains("blocked the loop"), "{out}");
            assert!(out.contains("\"blocker\""), "{out}");
            assert!(out.contains("still alive"), "{out}");
            assert!(out.contains("\"left behind\""), "{out}");
            return;
        }
        let mut lp = EventLoop::builder().backend(lp.backend()).build().unwrap();
        lp.run_until_complete(async {
            ringloop::spawn_named("blocker", async {
                std::thread::sleep(Duration::from_millis(120));
            })
            .await
            .unwrap();
            ringloop::spawn_named("left behind", std::future::pending::<()>());
            yield_now().await;
        });
        lp.close();
    }
}

/// A bad `RINGLOOP_DEBUG` is an error from `build` naming the accepted values (in a child, since
/// the environment is process-wide).
#[test]
fn a_bad_debug_setting_is_an_error() {
    if !in_child() {
        run_in_child(
            "a_bad_debug_setting_is_an_error",
            &[("RINGLOOP_DEBUG", "yes")],
        );
        return;
    }
    let e = EventLoop::new().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let msg = e.to_string();
    assert!(msg.contains("RINGLOOP_DEBUG") && msg.contains("\"yes\"") && msg.contains("0 and 1"));
    // An explicit setting wins over the environment.
    assert!(EventLoop::builder().debug(false).build().is_ok());
    let _ = Backend::Epoll;
}
