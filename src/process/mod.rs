//! Child processes, asyncio's `create_subprocess_exec`: [`Command`] builds and starts one,
//! [`Child`] waits for it, and its piped stdin, stdout and stderr are read and written with the
//! same owned-buffer methods as the streams.
//!
//! The exit is waited for through a pidfd (Linux 5.3+): on io_uring a poll on it in the ring, on
//! epoll its readiness. No `SIGCHLD` handler is installed, so ringloop does not disturb a program
//! that reaps children its own way. On kernels without `pidfd_open`, `wait` runs a blocking
//! `waitpid` on the blocking pool instead.
//!
//! A [`Child`] dropped before its exit was awaited is reaped in the background (by a task on the
//! current loop, or on the blocking pool outside one), so it never stays a zombie; with
//! [`Command::kill_on_drop`] it is killed first.
//!
//! # Examples
//!
//! ```
//! use ringloop::process::Command;
//!
//! ringloop::run(async {
//!     let out = Command::new("echo").arg("hello").output().await?;
//!     assert!(out.status.success());
//!     assert_eq!(out.stdout, b"hello\n");
//!     std::io::Result::Ok(())
//! }).unwrap();
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::pin;
use std::process::{ExitStatus, Output, Stdio};
use std::task::{Poll, ready};

use crate::driver::current as current_driver;
use crate::driver::fd::SharedFd;
use crate::driver::op::Interest;
use crate::op::poll::ReadyWait;

mod pipes;
mod sys;

pub use pipes::{ChildStderr, ChildStdin, ChildStdout};
use pipes::{pipe, read_to_end};
use sys::{pidfd_open, wait_exited, waitpid};

/// A command to start as a child process, built as `std::process::Command` is.
///
/// By default the child inherits stdin, stdout and stderr ([`spawn`](Command::spawn),
/// [`status`](Command::status)); [`output`](Command::output) captures stdout and stderr and gives
/// the child an empty stdin, unless they were set.
pub struct Command {
    inner: std::process::Command,
    program: OsString,
    kill_on_drop: bool,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("command", &self.inner)
            .field("kill_on_drop", &self.kill_on_drop)
            .finish()
    }
}

impl Command {
    /// A command that runs `program` (looked up in `PATH` if it has no `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            inner: std::process::Command::new(program.as_ref()),
            program: program.as_ref().to_owned(),
            kill_on_drop: false,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Starts the child with no environment variables but those set with [`env`](Self::env)
    /// afterwards.
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// The child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// The child's stdin: `Stdio::piped()` gives [`Child::stdin`].
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's stdout: `Stdio::piped()` gives [`Child::stdout`].
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's stderr: `Stdio::piped()` gives [`Child::stderr`].
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Whether a [`Child`] dropped before its exit was awaited is killed (`SIGKILL`) first.
    /// Default false: the child runs on and is reaped in the background when it exits.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Command {
        self.kill_on_drop = kill;
        self
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// `NotFound` naming the program if it does not exist; `PermissionDenied` if it is not
    /// executable; the kernel's error otherwise (e.g. `EMFILE` when the fd table is full).
    pub fn spawn(&mut self) -> io::Result<Child> {
        let child = self.inner.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {:?}: {e}", self.program.to_string_lossy()),
            )
        })?;
        Child::from_std(child, self.kill_on_drop)
    }

    /// Starts the child, captures its stdout and stderr (unless they were set) until they close,
    /// and waits for its exit.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn), and errors reading the pipes or waiting.
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.stdin_set {
            self.inner.stdin(Stdio::null());
        }
        if !self.stdout_set {
            self.inner.stdout(Stdio::piped());
        }
        if !self.stderr_set {
            self.inner.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // The defaults of `spawn` and `status` stay as they were.
        if !self.stdin_set {
            self.inner.stdin(Stdio::inherit());
        }
        if !self.stdout_set {
            self.inner.stdout(Stdio::inherit());
        }
        if !self.stderr_set {
            self.inner.stderr(Stdio::inherit());
        }
        child?.wait_with_output().await
    }

    /// Starts the child and waits for its exit (stdio inherited unless set).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn) and [`Child::wait`].
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        // Every pipe the caller asked for is closed before the wait: nobody could use them
        // after this returns, and a child blocked writing to a full pipe would never exit.
        drop(child.stdin.take());
        drop(child.stdout.take());
        drop(child.stderr.take());
        child.wait().await
    }
}

/// A started child process.
///
/// Dropping it before its exit was awaited leaves no zombie: it is reaped in the background
/// (killed first with [`Command::kill_on_drop`]).
pub struct Child {
    /// The child's stdin, with `Stdio::piped()`.
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, with `Stdio::piped()`.
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, with `Stdio::piped()`.
    pub stderr: Option<ChildStderr>,
    pid: u32,
    /// The exit status, once reaped.
    status: Option<ExitStatus>,
    /// Readable once the child exited; `None` where `pidfd_open` failed (kernels before 5.3,
    /// seccomp filters, a full fd table).
    pidfd: Option<SharedFd>,
    /// Without a pidfd: the blocking pool's wait for the exit, which does not reap (`WNOWAIT`),
    /// kept across dropped `wait` futures so none loses the status and `kill` never hits a
    /// reused pid.
    exit_waiter: Option<crate::JoinHandle<io::Result<()>>>,
    kill_on_drop: bool,
    /// This is the background reaper of a dropped child: if it is dropped in turn (its loop
    /// closed), the blocking pool takes over rather than another task.
    reaper: bool,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

impl Child {
    fn from_std(mut child: std::process::Child, kill_on_drop: bool) -> io::Result<Child> {
        let pid = child.id();
        let mut me = Child {
            stdin: None,
            stdout: None,
            stderr: None,
            pid,
            status: None,
            pidfd: pidfd_open(pid).map(SharedFd::new),
            exit_waiter: None,
            kill_on_drop,
            reaper: false,
        };
        // The child runs already: if setting up its pipes fails, the caller gets an error and
        // no handle, so the child must not go on unseen. Dropping `me` kills and reaps it.
        me.kill_on_drop = true;
        me.stdin = child
            .stdin
            .take()
            .map(pipe)
            .transpose()?
            .map(|io| ChildStdin { io });
        me.stdout = child
            .stdout
            .take()
            .map(pipe)
            .transpose()?
            .map(|io| ChildStdout { io });
        me.stderr = child
            .stderr
            .take()
            .map(pipe)
            .transpose()?
            .map(|io| ChildStderr { io });
        // std's `Child` neither waits nor kills on drop: `me` owns the pid from here.
        drop(child);
        me.kill_on_drop = kill_on_drop;
        Ok(me)
    }

    /// The child's process id; `None` once it was reaped (the id may then belong to another
    /// process).
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid)
    }

    /// The exit status if the child has exited, without waiting.
    ///
    /// # Errors
    ///
    /// The kernel's error from `waitpid`.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = waitpid(self.pid, libc::WNOHANG)?;
        }
        Ok(self.status)
    }

    /// Waits for the child's exit and returns its status. The child's stdin, if piped, stays
    /// open: drop [`stdin`](Child::stdin) first if the child waits for it to close.
    ///
    /// Cancel-safe: dropping the future leaves the child as it was (not reaped, its status
    /// kept for the next `wait` or `try_wait`), with or without a pidfd.
    ///
    /// # Errors
    ///
    /// The kernel's error; an error outside a running loop.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let Some(pidfd) = self.pidfd.clone() else {
            // No pidfd: the blocking pool waits for the exit without reaping; the handle stays
            // in `self` if this future is dropped, and the next wait picks it up.
            let pid = self.pid;
            let waiter = self
                .exit_waiter
                .get_or_insert_with(|| crate::spawn_blocking(move || wait_exited(pid)));
            let exited = waiter.await;
            self.exit_waiter = None;
            exited.map_err(|e| io::Error::other(e.to_string()))??;
            return self
                .try_wait()?
                .ok_or_else(|| io::Error::other("waitpid found no status for an exited child"));
        };
        let driver = current_driver().ok_or_else(|| {
            io::Error::other(
                "Child::wait was polled outside a running ringloop event loop: await it inside \
                 EventLoop::run_until_complete or ringloop::run",
            )
        })?;
        let mut wait = ReadyWait::new(Interest::Read);
        poll_fn(|cx| {
            loop {
                ready!(wait.poll_ready(&driver, &pidfd, cx))?;
                if let Some(status) = self.try_wait()? {
                    return Poll::Ready(Ok(status));
                }
                // The pidfd becomes readable when the child exits.
                ready!(wait.poll_begin(&driver, &pidfd, cx))?;
            }
        })
        .await
    }

    /// Sends `SIGKILL` to the child and waits for its exit. Killing a child that already exited
    /// is not an error.
    ///
    /// # Errors
    ///
    /// The kernel's error from `kill` or `waitpid`.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }

    /// Sends `SIGKILL` unless the child was reaped already (then its pid may be another
    /// process's).
    fn start_kill(&mut self) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill takes a pid and a signal, no pointers; the child is not reaped, so the pid
        // is still ours (a zombie keeps it).
        if unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Waits for the exit while reading stdout and stderr to their end.
    ///
    /// Both reads run inside this future, not as tasks of their own: dropping it drops them and
    /// the pipes, so a child that writes on meets a closed pipe (`SIGPIPE`) instead of a reader
    /// that fills memory for nobody.
    async fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let (out, err) = join_reads(
            read_to_end_of(stdout.as_ref().map(|s| &s.io)),
            read_to_end_of(stderr.as_ref().map(|s| &s.io)),
        )
        .await?;
        drop((stdout, stderr));
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout: out,
            stderr: err,
        })
    }
}

/// Reads a pipe to its end; nothing for no pipe.
async fn read_to_end_of(io: Option<&crate::net::stream::Stream>) -> io::Result<Vec<u8>> {
    match io {
        Some(io) => read_to_end(io).await,
        None => Ok(Vec::new()),
    }
}

/// Polls both reads until both are done, or until one fails (the other is dropped then).
async fn join_reads(
    a: impl Future<Output = io::Result<Vec<u8>>>,
    b: impl Future<Output = io::Result<Vec<u8>>>,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut got_a, mut got_b) = (None, None);
    poll_fn(|cx| {
        if got_a.is_none()
            && let Poll::Ready(res) = a.as_mut().poll(cx)
        {
            got_a = Some(res?);
        }
        if got_b.is_none()
            && let Poll::Ready(res) = b.as_mut().poll(cx)
        {
            got_b = Some(res?);
        }
        match (got_a.take(), got_b.take()) {
            (Some(a), Some(b)) => Poll::Ready(Ok((a, b))),
            (a, b) => {
                (got_a, got_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if self.kill_on_drop {
            let _ = self.start_kill();
        }
        if matches!(self.try_wait(), Ok(Some(_)) | Err(_)) {
            return; // reaped now (or not ours to reap)
        }
        // Reap it in the background: a task on this loop waiting on the pidfd, or a blocking
        // waitpid on the pool where there is no loop or no pidfd.
        let pid = self.pid;
        let pidfd = self.pidfd.take();
        match (
            pidfd,
            crate::executor::context::current_shared().is_some() && !self.reaper,
        ) {
            (Some(pidfd), true) => {
                let mut orphan = Child {
                    stdin: None,
                    stdout: None,
                    stderr: None,
                    pid,
                    status: None,
                    pidfd: Some(pidfd),
                    exit_waiter: None,
                    kill_on_drop: false,
                    reaper: true,
                };
                drop(crate::spawn(async move {
                    let _ = orphan.wait().await;
                    // If the loop closes first, `orphan` is dropped outside it: the pool reaps.
                }));
            }
            _ => crate::blocking::execute(Box::new(move || {
                let _ = waitpid(pid, 0);
            })),
        }
        // Our record of it is gone; the background reaper owns the pid now.
        self.status = Some(ExitStatus::from_raw(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, EventLoop};

    /// The fallback for kernels without `pidfd_open`: `wait` runs a blocking `waitpid` on the
    /// pool, and a dropped child is reaped there too. Forced here by taking the pidfd away.
    #[test]
    fn without_a_pidfd_wait_and_drop_reap_on_the_blocking_pool() {
        for backend in [Backend::Uring, Backend::Epoll] {
            let mut lp = EventLoop::builder().backend(backend).build().unwrap();
            lp.run_until_complete(async {
                let mut child = Command::new("sh").args(["-c", "exit 4"]).spawn().unwrap();
                child.pidfd = None;
                assert_eq!(child.wait().await.unwrap().code(), Some(4));
                assert_eq!(child.id(), None);

                let mut dropped = Command::new("sleep").arg("0.05").spawn().unwrap();
                dropped.pidfd = None;
                let pid = dropped.id().unwrap();
                drop(dropped);
                let gone = || !std::path::Path::new(&format!("/proc/{pid}")).exists();
                for _ in 0..200 {
                    if gone() {
                        break;
                    }
                    crate::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                assert!(gone(), "{backend}: the dropped child {pid} was not reaped");
            });
        }
    }
}
