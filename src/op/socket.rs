//! Socket setup ops: `Accept` and `Connect`.

use std::future::poll_fn;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::{opcode, squeue, types::Fd};
use socket2::{SockAddr, SockAddrStorage, SockRef};

use super::cvt;
use crate::driver::DriverCell;
use crate::driver::fd::{SharedFd, WeakFd};
use crate::driver::op::{Interest, Op, Operation};

/// The most connections a listener's multishot accept queues before it is stopped (until an
/// `accept` finds the queue empty); the rest wait in the kernel's backlog.
const ACCEPT_QUEUE_BOUND: usize = 64;

/// Where a listener's multishot accept delivers: the listener's queue.
fn deliver_accept(
    fd: &WeakFd,
    _pool: Option<&Rc<crate::buf::pool::Pool>>,
    res: io::Result<u32>,
    _flags: u32,
    more: bool,
) -> bool {
    let item = match res {
        // SAFETY: a successful accept returns a new fd that nobody else owns.
        Ok(conn) => Some(Ok(unsafe { OwnedFd::from_raw_fd(conn as i32) })),
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => None,
        Err(e) => Some(Err(e)),
    };
    // Without the listener, `item` is dropped: the connection closes here.
    fd.upgrade()
        .is_some_and(|fd| fd.accept_queue().deliver(item, more, ACCEPT_QUEUE_BOUND))
}

/// Takes the next connection the listener's multishot accept delivered, arming it when none is.
fn poll_accept_queue(
    fd: &SharedFd,
    driver: &Rc<DriverCell>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<OwnedFd>> {
    if let Some(next) = fd.accept_queue().poll_next(cx) {
        return next;
    }
    let entry = opcode::AcceptMulti::new(Fd(fd.raw()))
        .flags(ACCEPT_FLAGS)
        .build();
    super::arm_multishot(
        fd,
        driver,
        SharedFd::accept_queue,
        entry,
        (deliver_accept, libc::ECANCELED),
        true,
        cx,
    )?;
    Poll::Pending
}

/// Accepts one connection: on uring (5.19+) from the listener's multishot accept, which stays
/// armed and queues connections nobody asked for yet (closed with the listener); otherwise with
/// one accept op. The peer's address comes with it when the op gave one.
pub(crate) async fn accept(fd: &SharedFd) -> io::Result<(OwnedFd, Option<SockAddr>)> {
    if let Some(driver) = crate::driver::current()
        && driver.readiness_in_ring()
        && driver.fast().multishot_accept
    {
        fd.settled(Interest::Read).await;
        let conn = poll_fn(|cx| poll_accept_queue(fd, &driver, cx)).await?;
        return Ok((conn, None));
    }
    let (conn, addr) = Op::new(Accept::new(fd.clone())).await?;
    Ok((conn, Some(addr)))
}

const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

/// Accepts one connection; the new fd is close-on-exec and nonblocking.
pub(crate) struct Accept {
    fd: SharedFd,
    storage: SockAddrStorage,
    len: libc::socklen_t,
}

impl Accept {
    pub(crate) fn new(fd: SharedFd) -> Self {
        let storage = SockAddrStorage::zeroed();
        let len = storage.size_of();
        Accept { fd, storage, len }
    }
}

// SAFETY: the SQE points at `storage` and `len`, fields of this op, which lives boxed until its
// CQE arrives.
unsafe impl Operation for Accept {
    type Output = io::Result<(OwnedFd, SockAddr)>;

    fn sqe(&mut self) -> squeue::Entry {
        let addr: *mut SockAddrStorage = &mut self.storage;
        opcode::Accept::new(Fd(self.fd.raw()), addr.cast(), &mut self.len)
            .flags(ACCEPT_FLAGS)
            .build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Read))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        self.len = self.storage.size_of();
        let addr: *mut SockAddrStorage = &mut self.storage;
        // SAFETY: `addr` and `len` describe this op's storage, large enough for any address.
        cvt(
            unsafe { libc::accept4(self.fd.raw(), addr.cast(), &mut self.len, ACCEPT_FLAGS) }
                as isize,
        )
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        let fd = res?;
        // SAFETY: a successful accept returns a new fd that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the kernel filled `storage` with an address of `len` bytes.
        let addr = unsafe { SockAddr::new(self.storage, self.len) };
        Ok((fd, addr))
    }

    fn orphaned(self, res: io::Result<u32>) {
        if let Ok(fd) = res {
            // SAFETY: the accepted fd is ours alone; nobody will ever see it, so close it.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
    }
}

/// Connects a socket to an address.
pub(crate) struct Connect {
    fd: SharedFd,
    addr: SockAddr,
    started: bool,
}

impl Connect {
    pub(crate) fn new(fd: SharedFd, addr: SockAddr) -> Self {
        Connect {
            fd,
            addr,
            started: false,
        }
    }
}

// SAFETY: the SQE points at `addr`, a field of this op, which lives boxed until its CQE arrives.
unsafe impl Operation for Connect {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Connect::new(
            Fd(self.fd.raw()),
            self.addr.as_ptr().cast(),
            self.addr.len(),
        )
        .build()
    }

    fn readiness(&self) -> Option<(&SharedFd, Interest)> {
        Some((&self.fd, Interest::Write))
    }

    fn try_syscall(&mut self) -> io::Result<u32> {
        if !self.started {
            self.started = true;
            // SAFETY: `addr` is a valid socket address of `len()` bytes.
            let ret =
                unsafe { libc::connect(self.fd.raw(), self.addr.as_ptr().cast(), self.addr.len()) };
            if ret == 0 {
                return Ok(0);
            }
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // In progress: wait until the socket is writable, then read the outcome.
                Some(libc::EINPROGRESS) | Some(libc::EINTR) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                // A Unix listener whose backlog is full: nothing will signal when it has room.
                Some(libc::EAGAIN) => Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "connect: the listening socket's backlog is full (EAGAIN); try again later",
                )),
                _ => Err(e),
            };
        }
        let sock = SockRef::from(&self.fd);
        if let Some(e) = sock.take_error()? {
            return Err(e);
        }
        match sock.peer_addr() {
            Ok(_) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(e),
        }
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(|_| ())
    }
}
