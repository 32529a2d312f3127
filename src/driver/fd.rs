//! `SharedFd`: an fd shared by a socket and its in-flight ops, closed when the last holder goes.
//! It also carries the fd's epoll registration and the bytes of stream reads that completed after
//! their future was dropped.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::DriverCell;

/// A reference-counted fd. Ops hold a clone while the kernel may use the fd, so closing a socket
/// with an op in flight never closes (or reuses) the fd under the kernel.
#[derive(Clone, Debug)]
pub(crate) struct SharedFd {
    inner: Rc<FdInner>,
}

#[derive(Debug)]
struct FdInner {
    fd: OwnedFd,
    /// The epoll registration: the driver it is registered with and its token.
    registration: RefCell<Option<(Rc<DriverCell>, u64)>>,
    /// Bytes a cancelled read received; the next read returns them first.
    stash: RefCell<Vec<u8>>,
    has_stash: Cell<bool>,
}

impl SharedFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        SharedFd {
            inner: Rc::new(FdInner {
                fd,
                registration: RefCell::new(None),
                stash: RefCell::new(Vec::new()),
                has_stash: Cell::new(false),
            }),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
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

    pub(crate) fn has_stash(&self) -> bool {
        self.inner.has_stash.get()
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl Drop for FdInner {
    fn drop(&mut self) {
        if let Some((driver, token)) = self.registration.get_mut().take() {
            driver.deregister(self.fd.as_raw_fd(), token, false);
        }
        // `fd` closes itself after this.
    }
}
