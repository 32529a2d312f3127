//! Readiness for descriptors ringloop does not wrap itself: [`AsyncFd`].
//!
//! A server that watches files (inotify), waits on a timerfd, an eventfd or a signalfd, talks
//! netlink or runs a TUN device puts that descriptor in an `AsyncFd` and awaits
//! [`readable`](AsyncFd::readable) or [`writable`](AsyncFd::writable). The shape is tokio's
//! `AsyncFd`, so code ports by renaming.
//!
//! # Edge-triggered readiness
//!
//! Readiness is remembered per direction until it is cleared: once `readable()` returned, it
//! returns at once again until the guard's [`clear_ready`](AsyncFdReadyGuard::clear_ready) says
//! the descriptor was drained (a nonblocking call said `WouldBlock`). Then the next `readable()`
//! waits for the next event. [`try_io`](AsyncFdReadyGuard::try_io) clears readiness for you when
//! its closure returns `WouldBlock`. So the descriptor must be nonblocking (`O_NONBLOCK`), and
//! a reader drains it until `WouldBlock` before waiting again: an event that arrives while the
//! readiness is set is not reported twice. A pending error (say the ICMP error a UDP socket
//! gets from a closed port) makes the descriptor ready: the call that follows reports it, and
//! once a call said `WouldBlock` it waits again like any other. On epoll a descriptor that hung
//! up stays ready for good (its calls keep reporting the end).
//!
//! A wait that is ready at once spends a unit of the task's cooperative budget, as every ringloop
//! op does: a task looping on it yields to the loop now and then, so it cannot starve the others.
//!
//! # Backends
//!
//! On uring, readiness comes from the ring: one multishot poll per direction, armed the first
//! time someone waits in that direction and kept until the `AsyncFd` goes; each event is one
//! completion, with no syscall of its own. On epoll it comes from the descriptor's
//! edge-triggered registration. `AsyncFd` works on a duplicate of the descriptor (`dup`), so
//! neither the ring nor epoll ever holds a descriptor number its owner may close and reuse:
//! after [`into_inner`](AsyncFd::into_inner) the owner can close it at once.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::{opcode, types::Fd};

use crate::driver::DriverCell;
use crate::driver::fd::{SharedFd, WeakFd};
use crate::driver::op::Interest;

/// The bits a poll in each direction waits for. Errors and hang-ups always count.
fn poll_mask(dir: Interest) -> u32 {
    let bits = match dir {
        Interest::Read => libc::POLLIN | libc::POLLRDHUP | libc::POLLPRI,
        Interest::Write => libc::POLLOUT,
    };
    bits as u32
}

/// Where a multishot poll delivers: the fd's queue for that direction. One pending event is as
/// good as several (readiness is a flag), so a second is not queued.
fn deliver_poll(fd: &WeakFd, dir: Interest, res: io::Result<u32>, more: bool) -> bool {
    let Some(fd) = fd.upgrade() else {
        return false;
    };
    let mut queue = fd.poll_queue(dir);
    let item = match res {
        // The cancel of a poll nobody waits on, or an end before the first event: nothing to
        // report; the next wait arms again.
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => None,
        _ if !queue.items.is_empty() => None,
        res => Some(res),
    };
    queue.deliver(item, more, usize::MAX)
}

fn deliver_read(
    fd: &WeakFd,
    _pool: Option<&Rc<crate::buf::pool::Pool>>,
    res: io::Result<u32>,
    _flags: u32,
    more: bool,
) -> bool {
    deliver_poll(fd, Interest::Read, res, more)
}

fn deliver_write(
    fd: &WeakFd,
    _pool: Option<&Rc<crate::buf::pool::Pool>>,
    res: io::Result<u32>,
    _flags: u32,
    more: bool,
) -> bool {
    deliver_poll(fd, Interest::Write, res, more)
}

/// A descriptor the caller owns, with readiness from the loop it was created on.
///
/// `T` is anything that owns or holds a descriptor: an `OwnedFd`, a `std::fs::File` for an
/// inotify or timerfd, a socket type from another crate. The descriptor must be nonblocking.
/// See the [module docs](self) for the edge-triggered rules.
///
/// # Examples
///
/// An eventfd, read once another task wrote it:
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::fd::FromRawFd;
/// use ringloop::io::AsyncFd;
///
/// ringloop::run(async {
///     // SAFETY: eventfd takes no pointers; a negative return is checked.
///     let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
///     assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
///     // SAFETY: `raw` is a new descriptor nobody else owns.
///     let efd = AsyncFd::new(unsafe { std::fs::File::from_raw_fd(raw) })?;
///     efd.get_ref().write_all(&1u64.to_ne_bytes())?;
///     let count = loop {
///         let mut guard = efd.readable().await?;
///         let mut buf = [0u8; 8];
///         match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
///             Ok(n) => break { n?; u64::from_ne_bytes(buf) },
///             Err(_would_block) => continue,
///         }
///     };
///     assert_eq!(count, 1);
///     std::io::Result::Ok(())
/// }).unwrap();
/// ```
pub struct AsyncFd<T: AsFd> {
    inner: Option<T>,
    fd: SharedFd,
    driver: Rc<DriverCell>,
    /// uring: readiness seen and not cleared yet, per direction (epoll keeps it in its
    /// registration).
    ready: [std::cell::Cell<bool>; 2],
}

/// The error [`AsyncFdReadyGuard::try_io`] returns when its closure would block: readiness was
/// cleared, so await [`AsyncFd::readable`] (or `writable`) again.
#[derive(Debug)]
pub struct TryIoError(());

impl fmt::Display for TryIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operation would block; readiness was cleared, wait for it again")
    }
}

impl std::error::Error for TryIoError {}

impl<T: AsFd> AsyncFd<T> {
    /// Puts `inner`'s descriptor on the current loop.
    ///
    /// # Errors
    ///
    /// - outside a running loop;
    /// - `InvalidInput` if the descriptor cannot be polled for readiness (a regular file or a
    ///   directory: they are always ready; use [`crate::fs`] for them);
    /// - `EMFILE` if the fd table has no room for the duplicate `AsyncFd` works on;
    /// - on epoll, the kernel's `epoll_ctl` error for other descriptors it refuses.
    pub fn new(inner: T) -> io::Result<Self> {
        let driver = crate::driver::current().ok_or_else(|| {
            io::Error::other(
                "AsyncFd::new was called outside a running ringloop event loop: create it from a \
                 task of the loop that will wait on it",
            )
        })?;
        let borrowed = inner.as_fd();
        check_pollable(borrowed)?;
        let fd = SharedFd::duplicate(borrowed)?;
        if !driver.readiness_in_ring() {
            // Register now, so an fd epoll refuses is an error here, not at the first wait.
            driver.epoll_token(&fd).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "AsyncFd::new: epoll refuses descriptor {}: {e}",
                        borrowed.as_raw_fd()
                    ),
                )
            })?;
        }
        Ok(AsyncFd {
            inner: Some(inner),
            fd,
            driver,
            ready: Default::default(),
        })
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        self.inner.as_ref().expect("present until into_inner")
    }

    /// The wrapped value, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("present until into_inner")
    }

    /// Takes the value back out. The loop lets go of its descriptor here (a poll still in the
    /// ring is cancelled and holds only ringloop's own duplicate), so the caller may close the
    /// descriptor right away.
    pub fn into_inner(mut self) -> T {
        self.inner.take().expect("present until into_inner")
    }

    /// Waits until the descriptor is readable (or hung up, or has an error).
    ///
    /// # Errors
    ///
    /// The loop closed, or the ring refused the poll.
    pub async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, T>> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Waits until the descriptor is writable (or hung up, or has an error).
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub async fn writable(&self) -> io::Result<AsyncFdReadyGuard<'_, T>> {
        std::future::poll_fn(|cx| self.poll_write_ready(cx)).await
    }

    /// As [`readable`](Self::readable), with a guard that gives `&mut T` to its closure.
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub async fn readable_mut(&mut self) -> io::Result<AsyncFdReadyMutGuard<'_, T>> {
        std::future::poll_fn(|cx| self.poll_ready(Interest::Read, cx)).await?;
        Ok(AsyncFdReadyMutGuard {
            fd: self,
            dir: Interest::Read,
        })
    }

    /// As [`writable`](Self::writable), with a guard that gives `&mut T` to its closure.
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub async fn writable_mut(&mut self) -> io::Result<AsyncFdReadyMutGuard<'_, T>> {
        std::future::poll_fn(|cx| self.poll_ready(Interest::Write, cx)).await?;
        Ok(AsyncFdReadyMutGuard {
            fd: self,
            dir: Interest::Write,
        })
    }

    /// For poll-based code: `Ready` with a guard when the descriptor is readable; `Pending`, with
    /// `cx`'s waker kept, otherwise.
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub fn poll_read_ready<'a>(
        &'a self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<AsyncFdReadyGuard<'a, T>>> {
        self.poll_ready(Interest::Read, cx)
            .map_ok(|()| AsyncFdReadyGuard {
                fd: self,
                dir: Interest::Read,
            })
    }

    /// For poll-based code: as [`poll_read_ready`](Self::poll_read_ready), for writing.
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub fn poll_write_ready<'a>(
        &'a self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<AsyncFdReadyGuard<'a, T>>> {
        self.poll_ready(Interest::Write, cx)
            .map_ok(|()| AsyncFdReadyGuard {
                fd: self,
                dir: Interest::Write,
            })
    }

    /// Readiness in `dir`. Readiness that is there already costs a unit of the task's
    /// cooperative budget, so a task that loops on waits that are ready at once (a descriptor it
    /// never drains) still lets the others run.
    fn poll_ready(&self, dir: Interest, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.driver.readiness_in_ring() {
            let token = self.driver.epoll_token(&self.fd)?;
            if !self.driver.poll_armed(token, dir, cx.waker()) {
                return Poll::Pending;
            }
            std::task::ready!(crate::coop::poll_proceed(cx));
            return Poll::Ready(Ok(()));
        }
        let ready = &self.ready[dir as usize];
        loop {
            if ready.get() {
                std::task::ready!(crate::coop::poll_proceed(cx));
                return Poll::Ready(Ok(()));
            }
            let next = self.fd.poll_queue(dir).poll_next(cx);
            match next {
                Some(Poll::Ready(Ok(_))) => ready.set(true),
                Some(Poll::Ready(Err(e))) => return Poll::Ready(Err(e)),
                Some(Poll::Pending) => return Poll::Pending,
                None => {
                    let entry = opcode::PollAdd::new(Fd(self.fd.raw()), poll_mask(dir))
                        .multi(true)
                        .build();
                    type Queue =
                        for<'q> fn(
                            &'q SharedFd,
                        )
                            -> std::cell::RefMut<'q, crate::driver::fd::MultiQueue<u32>>;
                    let (queue, deliver): (Queue, crate::driver::op::Deliver) = match dir {
                        Interest::Read => (SharedFd::poll_read_queue, deliver_read),
                        Interest::Write => (SharedFd::poll_write_queue, deliver_write),
                    };
                    crate::op::arm_multishot(
                        &self.fd,
                        &self.driver,
                        queue,
                        entry,
                        (deliver, libc::ECANCELED),
                        true,
                        cx,
                    )?;
                    return Poll::Pending;
                }
            }
        }
    }

    fn clear(&self, dir: Interest) {
        if self.driver.readiness_in_ring() {
            self.ready[dir as usize].set(false);
        } else {
            self.driver.note_would_block(&self.fd, dir);
        }
    }
}

/// `try_io`'s rule: a `WouldBlock` clears readiness (`clear`) and becomes `TryIoError`.
fn unless_would_block<R>(
    res: io::Result<R>,
    clear: impl FnOnce(),
) -> Result<io::Result<R>, TryIoError> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            clear();
            Err(TryIoError(()))
        }
        res => Ok(res),
    }
}

/// Refuses what poll(2) would always call ready: regular files and directories.
fn check_pollable(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: stat is plain data; an all-zero value is valid and fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer and `fd` is open for the call.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFREG || kind == libc::S_IFDIR {
        let what = if kind == libc::S_IFREG {
            "a regular file"
        } else {
            "a directory"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "AsyncFd::new: descriptor {} is {what}, which is always ready and cannot be \
                 waited on; use ringloop::fs for files",
                fd.as_raw_fd()
            ),
        ));
    }
    Ok(())
}

impl<T: AsFd> AsRawFd for AsyncFd<T> {
    /// The caller's descriptor (not ringloop's duplicate).
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_fd().as_raw_fd()
    }
}

impl<T: AsFd> AsFd for AsyncFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Readiness in one direction, from [`AsyncFd::readable`] or [`AsyncFd::writable`]. Dropping it
/// keeps the readiness; [`clear_ready`](Self::clear_ready) or a `WouldBlock` in
/// [`try_io`](Self::try_io) clears it.
pub struct AsyncFdReadyGuard<'a, T: AsFd> {
    fd: &'a AsyncFd<T>,
    dir: Interest,
}

impl<'a, T: AsFd> AsyncFdReadyGuard<'a, T> {
    /// The descriptor was drained (or filled): the next wait waits for a new event.
    pub fn clear_ready(&mut self) {
        self.fd.clear(self.dir);
    }

    /// Keeps the readiness (what dropping the guard does anyway).
    pub fn retain_ready(&mut self) {}

    /// Runs `f`, a nonblocking call on the descriptor. A `WouldBlock` from it clears readiness
    /// and comes back as `Err(TryIoError)`; any other result is `Ok(result)`.
    ///
    /// # Errors
    ///
    /// [`TryIoError`] when `f` would block.
    pub fn try_io<R>(
        &mut self,
        f: impl FnOnce(&'a AsyncFd<T>) -> io::Result<R>,
    ) -> Result<io::Result<R>, TryIoError> {
        let res = f(self.fd);
        unless_would_block(res, || self.clear_ready())
    }

    /// The `AsyncFd` this guard belongs to.
    pub fn get_ref(&self) -> &'a AsyncFd<T> {
        self.fd
    }

    /// The wrapped value.
    pub fn get_inner(&self) -> &'a T {
        self.fd.get_ref()
    }
}

impl<T: AsFd> fmt::Debug for AsyncFdReadyGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFdReadyGuard")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// As [`AsyncFdReadyGuard`], from [`AsyncFd::readable_mut`] or [`AsyncFd::writable_mut`]: its
/// closure gets `&mut AsyncFd<T>`.
pub struct AsyncFdReadyMutGuard<'a, T: AsFd> {
    fd: &'a mut AsyncFd<T>,
    dir: Interest,
}

impl<T: AsFd> AsyncFdReadyMutGuard<'_, T> {
    /// The descriptor was drained (or filled): the next wait waits for a new event.
    pub fn clear_ready(&mut self) {
        self.fd.clear(self.dir);
    }

    /// Keeps the readiness (what dropping the guard does anyway).
    pub fn retain_ready(&mut self) {}

    /// As [`AsyncFdReadyGuard::try_io`], with `&mut AsyncFd<T>`.
    ///
    /// # Errors
    ///
    /// [`TryIoError`] when `f` would block.
    pub fn try_io<R>(
        &mut self,
        f: impl FnOnce(&mut AsyncFd<T>) -> io::Result<R>,
    ) -> Result<io::Result<R>, TryIoError> {
        let res = f(self.fd);
        unless_would_block(res, || self.clear_ready())
    }

    /// The `AsyncFd` this guard belongs to.
    pub fn get_ref(&self) -> &AsyncFd<T> {
        self.fd
    }

    /// The `AsyncFd` this guard belongs to, mutably.
    pub fn get_mut(&mut self) -> &mut AsyncFd<T> {
        self.fd
    }

    /// The wrapped value.
    pub fn get_inner(&self) -> &T {
        self.fd.get_ref()
    }

    /// The wrapped value, mutably.
    pub fn get_inner_mut(&mut self) -> &mut T {
        self.fd.get_mut()
    }
}

impl<T: AsFd> fmt::Debug for AsyncFdReadyMutGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFdReadyMutGuard")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}
