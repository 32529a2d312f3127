//! `SharedFd`: an fd shared by a socket and its in-flight ops, closed when the last holder goes.
//! It also carries the fd's epoll registration and the bytes of stream reads that completed after
//! their future was dropped.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, Waker};

use super::DriverCell;
use super::op::Interest;

/// A reference-counted fd. Ops hold a clone while the kernel may use the fd, so closing a socket
/// with an op in flight never closes (or reuses) the fd under the kernel.
#[derive(Clone, Debug)]
pub(crate) struct SharedFd {
    inner: Rc<FdInner>,
}

#[derive(Debug)]
struct FdInner {
    /// `None` only after `into_owned` took it.
    fd: Option<OwnedFd>,
    /// The epoll registration: the driver it is registered with and its token.
    registration: RefCell<Option<(Rc<DriverCell>, u64)>>,
    /// Bytes a cancelled read received; the next read returns them first.
    stash: RefCell<Vec<u8>>,
    has_stash: Cell<bool>,
    /// Dropped ops still in the kernel, per direction (read, write); a new op in that direction
    /// waits for them so the byte stream keeps its order.
    orphans: [Cell<u32>; 2],
    /// Woken when a direction's last orphan completes.
    settle_wakers: RefCell<Vec<Waker>>,
    /// The last stream read came back short: the socket had no more data then, so the next read
    /// most likely waits (uring asks the kernel to poll first instead of trying the receive).
    read_drained: Cell<bool>,
    /// A nonblocking read on this fd once found nothing: reads here usually wait (a
    /// request-response peer), so on uring they go straight to the ring from then on instead of
    /// being tried inline first.
    read_waits: Cell<bool>,
}

impl SharedFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        SharedFd {
            inner: Rc::new(FdInner {
                fd: Some(fd),
                registration: RefCell::new(None),
                stash: RefCell::new(Vec::new()),
                has_stash: Cell::new(false),
                orphans: [Cell::new(0), Cell::new(0)],
                settle_wakers: RefCell::new(Vec::new()),
                read_drained: Cell::new(false),
                read_waits: Cell::new(false),
            }),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }

    /// Takes the fd back out (for `into_std`), leaving epoll if it was registered.
    ///
    /// # Errors
    ///
    /// If an op dropped earlier is still in the kernel, or bytes a dropped read received are still
    /// unread (they would be lost).
    pub(crate) fn into_owned(self) -> io::Result<OwnedFd> {
        if self.has_stash() {
            return Err(io::Error::other(
                "the socket holds bytes a cancelled read received; read them before into_std",
            ));
        }
        let mut inner = Rc::try_unwrap(self.inner).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "an operation on this socket is still in flight; try into_std again later",
            )
        })?;
        let fd = inner.fd.take().expect("the fd is present until into_owned");
        if let Some((driver, token)) = inner.registration.get_mut().take() {
            driver.deregister(fd.as_raw_fd(), token, true);
        }
        Ok(fd)
    }

    /// The epoll token of this fd with `driver`, if registered there.
    pub(crate) fn registration(&self, driver: &Rc<DriverCell>) -> Option<u64> {
        match &*self.inner.registration.borrow() {
            Some((d, token)) if Rc::ptr_eq(d, driver) => Some(*token),
            _ => None,
        }
    }

    /// Records a registration, returning the previous one (with another loop) to release.
    pub(crate) fn set_registration(
        &self,
        driver: Rc<DriverCell>,
        token: u64,
    ) -> Option<(Rc<DriverCell>, u64)> {
        self.inner.registration.replace(Some((driver, token)))
    }

    /// Whether the last stream read on this fd came back short (see `read_drained`).
    pub(crate) fn read_drained(&self) -> bool {
        self.inner.read_drained.get()
    }

    pub(crate) fn set_read_drained(&self, drained: bool) {
        self.inner.read_drained.set(drained);
    }

    /// Whether a nonblocking read on this fd ever found nothing (see `read_waits`).
    pub(crate) fn read_waits(&self) -> bool {
        self.inner.read_waits.get()
    }

    pub(crate) fn set_read_waits(&self) {
        self.inner.read_waits.set(true);
    }

    /// Keeps bytes a dropped read received, for the next read.
    pub(crate) fn stash(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.inner.stash.borrow_mut().extend_from_slice(bytes);
            self.inner.has_stash.set(true);
        }
    }

    /// Moves up to `cap` stashed bytes to `out`; returns how many, or `None` if the stash is empty.
    ///
    /// # Safety
    ///
    /// `out` must be valid for writes of `cap` bytes.
    pub(crate) unsafe fn take_stash(&self, out: *mut u8, cap: usize) -> Option<usize> {
        if !self.inner.has_stash.get() {
            return None;
        }
        let mut stash = self.inner.stash.borrow_mut();
        let n = stash.len().min(cap);
        // SAFETY: `stash` holds at least `n` bytes and the caller makes `out` writable for
        // `cap >= n` bytes; a Vec's storage never overlaps a caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(stash.as_ptr(), out, n) };
        stash.drain(..n);
        self.inner.has_stash.set(!stash.is_empty());
        Some(n)
    }

    /// A dropped op in direction `dir` is still in the kernel.
    pub(crate) fn orphan_started(&self, dir: Interest) {
        let c = &self.inner.orphans[dir as usize];
        c.set(c.get() + 1);
    }

    /// A dropped op in direction `dir` completed; wakes ops waiting to go next.
    pub(crate) fn orphan_finished(&self, dir: Interest) {
        let c = &self.inner.orphans[dir as usize];
        c.set(c.get().saturating_sub(1));
        if c.get() == 0 {
            self.inner
                .settle_wakers
                .borrow_mut()
                .drain(..)
                .for_each(Waker::wake);
        }
    }

    /// Waits until no dropped op in direction `dir` is still in the kernel, so that the next op
    /// cannot overtake it (on uring two ops on one socket may run in either order).
    pub(crate) async fn settled(&self, dir: Interest) {
        poll_fn(|cx| self.poll_settled(dir, cx)).await
    }

    /// `settled` for a caller that polls.
    pub(crate) fn poll_settled(&self, dir: Interest, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.orphans[dir as usize].get() == 0 {
            Poll::Ready(())
        } else {
            let mut wakers = self.inner.settle_wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    pub(crate) fn has_stash(&self) -> bool {
        self.inner.has_stash.get()
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner
            .fd
            .as_ref()
            .expect("the fd is present until into_owned")
            .as_fd()
    }
}

impl Drop for FdInner {
    fn drop(&mut self) {
        if let Some((driver, token)) = self.registration.get_mut().take()
            && let Some(fd) = &self.fd
        {
            driver.deregister(fd.as_raw_fd(), token, false);
        }
        // `fd` closes itself after this.
    }
}
