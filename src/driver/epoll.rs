//! The epoll driver: edge-triggered, one registration per fd for its life (added the first time an
//! op on it would block), per-direction readiness flags and wakers, timers through the wait timeout.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use slab::Slab;

use super::Shared;
use super::op::Interest;
use super::small::WakerList;
use crate::faults::Fault;
use crate::stats::Counters;

/// The token of the wake eventfd.
const WAKE_TOKEN: u64 = u64::MAX;

/// One registered fd's readiness.
#[derive(Default)]
struct ScheduledIo {
    generation: u32,
    readable: bool,
    writable: bool,
    /// The peer closed its side (RDHUP) or the fd hung up: reads stay ready for good, whatever a
    /// short read suggests.
    read_closed: bool,
    /// The fd hung up: writes stay ready for good.
    write_closed: bool,
    /// `EPOLLERR` was reported and not yet seen gone: a socket error is pending (an ICMP error on
    /// a UDP socket, say) until a call reports it, which clears it. Not a hang-up: once it is
    /// gone the fd waits for its next edge like any other (see `clear_ready`).
    error: bool,
    /// `EPOLLPRI` was reported and not yet seen gone (TCP urgent data): a TCP read stops at the
    /// urgent mark with data still queued, so a short read does not prove the socket empty.
    urgent: bool,
    readers: WakerList,
    writers: WakerList,
}

pub(crate) struct EpollDriver {
    epfd: OwnedFd,
    events: Vec<libc::epoll_event>,
    ios: Slab<ScheduledIo>,
    next_gen: u32,
    counters: Rc<Counters>,
}

fn token_parts(token: u64) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}

fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        // Round up: a timer must never fire before its deadline.
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// `poll(2)` with no wait: the fd's events among `events` now (plus `POLLERR`/`POLLHUP`, which
/// are always reported). A failed call reports `events`: the caller keeps the fd ready, and
/// the next syscall on it says what is wrong.
fn poll_now(fd: RawFd, events: i16) -> i16 {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call; a zero timeout never waits.
    match unsafe { libc::poll(&mut pfd, 1, 0) } {
        n if n < 0 => events,
        _ => pfd.revents,
    }
}

impl EpollDriver {
    pub(super) fn new(entries: u32, shared: &Shared, counters: Rc<Counters>) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a negative return is an error.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut driver = EpollDriver {
            // SAFETY: `fd` was just returned by epoll_create1 and nobody else owns it.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: Vec::with_capacity(entries.clamp(1, 65536) as usize),
            ios: Slab::new(),
            next_gen: 0,
            counters,
        };
        driver.ctl(
            libc::EPOLL_CTL_ADD,
            shared.eventfd(),
            libc::EPOLLIN | libc::EPOLLET,
            WAKE_TOKEN,
        )?;
        Ok(driver)
    }

    fn ctl(&mut self, op: i32, fd: RawFd, events: i32, token: u64) -> io::Result<()> {
        Counters::bump(&self.counters.epoll_ctls);
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Adds `fd` for both directions, edge-triggered, once for its life. If it is ready already,
    /// the next wait reports it.
    pub(super) fn register(&mut self, fd: RawFd) -> io::Result<u64> {
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let key = self.ios.insert(ScheduledIo {
            generation,
            ..ScheduledIo::default()
        });
        let token = (u64::from(generation) << 32) | key as u64;
        let events =
            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLET;
        if let Err(e) = self.ctl(libc::EPOLL_CTL_ADD, fd, events, token) {
            self.ios.remove(key);
            return Err(e);
        }
        Ok(token)
    }

    /// Forgets a registration. Closing the fd removes it from epoll, so `EPOLL_CTL_DEL` is only
    /// sent when the fd stays open (`still_open`).
    pub(super) fn deregister(&mut self, fd: RawFd, token: u64, still_open: bool) {
        let (key, generation) = token_parts(token);
        if matches!(self.ios.get(key), Some(io) if io.generation == generation) {
            self.ios.remove(key);
            if still_open {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
            }
        }
    }

    /// The readiness flag and wakers of one direction of a live registration.
    fn direction(&mut self, token: u64, interest: Interest) -> Option<(&mut bool, &mut WakerList)> {
        let (key, generation) = token_parts(token);
        let io = self
            .ios
            .get_mut(key)
            .filter(|io| io.generation == generation)?;
        Some(match interest {
            Interest::Read => (&mut io.readable, &mut io.readers),
            Interest::Write => (&mut io.writable, &mut io.writers),
        })
    }

    /// Whether the fd's peer closed (reads) or the fd hung up (either direction).
    fn closed(&self, token: u64, interest: Interest) -> bool {
        let (key, generation) = token_parts(token);
        match self.ios.get(key).filter(|io| io.generation == generation) {
            Some(io) => match interest {
                Interest::Read => io.read_closed,
                Interest::Write => io.write_closed,
            },
            None => false,
        }
    }

    /// Whether a syscall in this direction could only say `EAGAIN` now: no edge came since the
    /// last one did (and the fd did not hang up).
    pub(super) fn known_not_ready(&mut self, token: u64, interest: Interest) -> bool {
        !self.closed(token, interest)
            && matches!(self.direction(token, interest), Some((ready, _)) if !*ready)
    }

    /// The syscall said `EAGAIN`: not ready in this direction until the next edge; wake `waker` then.
    pub(super) fn arm(&mut self, token: u64, interest: Interest, waker: &Waker) {
        let Some((ready, wakers)) = self.direction(token, interest) else {
            waker.wake_by_ref(); // stale registration: let the op retry and re-register
            return;
        };
        *ready = false;
        wakers.add(waker);
    }

    /// For a new op on a registered fd: if the fd is known not ready in this direction, keeps the
    /// waker and returns true (the op waits for the next edge without trying its syscall).
    pub(super) fn arm_unless_ready(
        &mut self,
        token: u64,
        interest: Interest,
        waker: &Waker,
    ) -> bool {
        if self.closed(token, interest) {
            return false;
        }
        match self.direction(token, interest) {
            Some((ready, wakers)) if !*ready => {
                wakers.add(waker);
                true
            }
            _ => false,
        }
    }

    /// Not ready until the next edge: a short transfer emptied the socket (or filled its
    /// buffer), and `verify` is its descriptor; or an `AsyncFd` user saw `WouldBlock` (`None`).
    ///
    /// A hang-up keeps the fd ready for good (the next call must see it, and no edge will come).
    /// A pending error or urgent data (`EPOLLERR`, `EPOLLPRI`) is transient: no edge announces
    /// that it is still there, nor that it is gone. After a short transfer the kernel is asked
    /// (one `poll(2)`, only while such an event is outstanding), and readiness stays only while
    /// data is still queued (past the urgent mark, say) or the error still pending. A
    /// `WouldBlock` proves more (no data, no pending socket error), and is trusted as it is: an
    /// error left on the socket's error queue (`IP_RECVERR`), which `poll(2)` keeps reporting
    /// until `MSG_ERRQUEUE` reads it, does not keep a plain reader ready for good.
    pub(super) fn clear_ready(&mut self, token: u64, interest: Interest, verify: Option<RawFd>) {
        if self.closed(token, interest) {
            return; // EOF or a hang-up: the next op must see it, and no edge will come
        }
        let (key, generation) = token_parts(token);
        let Some(io) = self
            .ios
            .get_mut(key)
            .filter(|io| io.generation == generation)
        else {
            return;
        };
        let doubt = io.error || (interest == Interest::Read && io.urgent);
        if doubt && let Some(fd) = verify {
            let dir_bits = match interest {
                Interest::Read => libc::POLLIN,
                Interest::Write => libc::POLLOUT,
            };
            Counters::bump(&self.counters.io_syscalls);
            let revents = poll_now(fd, dir_bits | libc::POLLPRI);
            io.error = revents & libc::POLLERR != 0;
            if interest == Interest::Read {
                io.urgent = revents & libc::POLLPRI != 0;
            }
            if revents & (dir_bits | libc::POLLERR | libc::POLLHUP) != 0 {
                // Data is still queued, or the error is still pending: the next call reports it.
                return;
            }
        }
        match interest {
            Interest::Read => io.readable = false,
            Interest::Write => io.writable = false,
        }
    }

    /// For an armed op polled again: true if an edge came since (retry the syscall); otherwise the
    /// waker is kept and the op stays pending.
    pub(super) fn poll_ready(&mut self, token: u64, interest: Interest, waker: &Waker) -> bool {
        let Some((ready, wakers)) = self.direction(token, interest) else {
            return true;
        };
        if !*ready {
            wakers.add(waker);
        }
        *ready
    }

    /// One `epoll_wait` for up to `timeout`, then wakes whatever became ready.
    pub(super) fn park(&mut self, timeout: Option<Duration>, shared: &Shared) -> io::Result<()> {
        if self.counters.faults.inject(Fault::Interrupted) {
            // As if a signal interrupted epoll_wait before anything came: the loop turns again.
            return Ok(());
        }
        let mut block = timeout != Some(Duration::ZERO);
        if block && !shared.prepare_sleep() {
            block = false;
        }
        let ms = if block { timeout_ms(timeout) } else { 0 };
        Counters::bump(&self.counters.epoll_waits);
        // SAFETY: `events` has room for `capacity()` entries; the kernel writes at most that many
        // and we set the length to what it reports.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.capacity() as i32,
                ms,
            )
        };
        if block {
            shared.finish_sleep();
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { self.events.set_len(n as usize) };
        for i in 0..self.events.len() {
            let ev = self.events[i];
            let (token, bits) = (ev.u64, ev.events as i32);
            Counters::bump(&self.counters.completions);
            if token == WAKE_TOKEN {
                shared.drain_eventfd();
                continue;
            }
            let (key, generation) = token_parts(token);
            let Some(io) = self
                .ios
                .get_mut(key)
                .filter(|io| io.generation == generation)
            else {
                continue; // the fd was closed since
            };
            // A hang-up is for good; an error is not (a call reports it and clears it): it
            // makes both directions ready without closing either.
            let hangup = bits & libc::EPOLLHUP != 0;
            let error = bits & libc::EPOLLERR != 0;
            if hangup || bits & libc::EPOLLRDHUP != 0 {
                io.read_closed = true;
            }
            if bits & libc::EPOLLPRI != 0 {
                io.urgent = true;
            }
            if error {
                io.error = true;
            }
            if hangup {
                io.write_closed = true;
            }
            let any = hangup || error;
            if any || bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) != 0 {
                io.readable = true;
                io.readers.wake_all();
            }
            if any || bits & libc::EPOLLOUT != 0 {
                io.writable = true;
                io.writers.wake_all();
            }
        }
        self.events.clear();
        if !self.ios.is_empty() && self.counters.faults.inject(Fault::SpuriousWakeup) {
            // Readiness is a hint: report one registration ready in both directions, whether
            // it is or not; its ops try their syscalls and wait again on EAGAIN.
            let nth = self.counters.faults.below(self.ios.len() as u64) as usize;
            if let Some((_, io)) = self.ios.iter_mut().nth(nth) {
                io.readable = true;
                io.writable = true;
                io.readers.wake_all();
                io.writers.wake_all();
            }
        }
        Ok(())
    }

    /// Drops every stored waker (the loop is closing). Registrations go with their fds.
    pub(super) fn shutdown(&mut self) {
        for (_, io) in self.ios.iter_mut() {
            io.readers.clear();
            io.writers.clear();
        }
    }
}
