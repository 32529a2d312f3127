//! Unix signals on the loop: `ctrl_c()`, `signal(kind)` and `Signals::recv`.
//!
//! One process-wide action per signal number, registered through `signal-hook-registry` at the
//! first listener (see `action`: handlers installed before keep being called, and the default
//! action comes back when the last listener goes). The action does only async-signal-safe work:
//! it walks a fixed table of listener slots and adds 1 to the eventfd of each slot listening to
//! that signal. A `Signals` waits for its eventfd like for any other fd (a poll in the ring on
//! io_uring, the fd's registration on epoll), so every loop on every thread can listen at once,
//! and blocking-pool threads need no signal mask (no `signalfd`).
//!
//! The slot protocol (model-checked in `loom_model` below): the handler adds 1 to a slot's
//! `busy` count before it reads the slot's signal number and subtracts 1 after its write;
//! releasing a slot clears the number, then waits until `busy` reads 0, then drains the eventfd,
//! and only then frees the slot for reuse. Both counts move by read-modify-writes, so **a handler
//! never writes to a slot's eventfd after the slot was released**: a slot reused for another
//! signal never sees a stale delivery of the old one.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::task::{Context, Poll, ready};

use crate::sync::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use crate::driver::fd::SharedFd;
use crate::driver::op::Interest;
use crate::op::cvt;
use crate::op::poll::ReadyWait;

mod action;

/// How many `Signals` may exist at once in the process.
const SLOTS: usize = 256;

/// One listener's place in the table the handler reads.
struct Slot {
    /// The signal listened to; 0 when free.
    signum: AtomicI32,
    /// The slot's eventfd (created on first use, never closed); -1 before.
    fd: AtomicI32,
    /// Handlers running over this slot right now.
    busy: AtomicU32,
    taken: AtomicBool,
}

impl Slot {
    #[cfg(not(ringloop_loom))]
    const fn new() -> Slot {
        Slot {
            signum: AtomicI32::new(0),
            fd: AtomicI32::new(-1),
            busy: AtomicU32::new(0),
            taken: AtomicBool::new(false),
        }
    }

    #[cfg(ringloop_loom)]
    fn new() -> Slot {
        Slot {
            signum: AtomicI32::new(0),
            fd: AtomicI32::new(-1),
            busy: AtomicU32::new(0),
            taken: AtomicBool::new(false),
        }
    }

    /// The handler's side for signal `sig`: `write` gets the slot's eventfd if the slot listens
    /// to `sig`. Async-signal-safe (lock-free atomics only).
    fn deliver(&self, sig: i32, write: impl FnOnce(i32)) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        if self.signum.load(Ordering::Acquire) == sig {
            write(self.fd.load(Ordering::Acquire));
        }
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Takes the slot if it is free.
    fn claim(&self) -> bool {
        self.taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Starts delivering `sig` to the slot's eventfd.
    fn listen(&self, sig: i32) {
        self.signum.store(sig, Ordering::Release);
    }

    /// Stops deliveries, waits for handlers still writing, drains the eventfd with `drain`, and
    /// frees the slot.
    fn release(&self, drain: impl FnOnce(i32)) {
        self.signum.swap(0, Ordering::AcqRel);
        // A handler that may have seen the old number has `busy` raised until its write is done.
        // Read with a read-modify-write: the latest count, and it acquires the handler's release.
        while self.busy.fetch_add(0, Ordering::AcqRel) != 0 {
            crate::sync::spin_loop();
        }
        drain(self.fd.load(Ordering::Acquire));
        self.taken.store(false, Ordering::Release);
    }
}

#[cfg(not(ringloop_loom))]
static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

// Under the model checker, loom's atomics cannot live in a `static`; nothing but the models'
// own slots is used there.
#[cfg(ringloop_loom)]
loom::lazy_static! {
    static ref TABLE: Vec<Slot> = (0..SLOTS).map(|_| Slot::new()).collect();
}

/// ringloop's part of the signal handler: adds 1 to the eventfd of every slot listening to `sig`.
/// Async-signal-safe. (The registry's handler saves and restores `errno` around its actions.)
fn deliver(sig: libc::c_int) {
    for slot in TABLE.iter() {
        slot.deliver(sig, |fd| {
            let one: u64 = 1;
            // SAFETY: write(2) is async-signal-safe; the slot's eventfd is never closed, and
            // `one` is a live u64. EAGAIN (a saturated counter) still leaves it readable.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        });
    }
}

/// A kind of signal to listen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(i32);

impl SignalKind {
    /// `SIGINT` (Ctrl-C).
    pub fn interrupt() -> Self {
        SignalKind(libc::SIGINT)
    }
    /// `SIGTERM`.
    pub fn terminate() -> Self {
        SignalKind(libc::SIGTERM)
    }
    /// `SIGHUP`.
    pub fn hangup() -> Self {
        SignalKind(libc::SIGHUP)
    }
    /// `SIGUSR1`.
    pub fn user_defined1() -> Self {
        SignalKind(libc::SIGUSR1)
    }
    /// `SIGUSR2`.
    pub fn user_defined2() -> Self {
        SignalKind(libc::SIGUSR2)
    }
    /// Any signal number; [`signal`] refuses those that cannot or must not be caught.
    pub fn from_raw(signum: i32) -> Self {
        SignalKind(signum)
    }
    /// The signal number.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

fn refuse(kind: SignalKind) -> Option<&'static str> {
    match kind.0 {
        libc::SIGKILL => Some("SIGKILL cannot be caught"),
        libc::SIGSTOP => Some("SIGSTOP cannot be caught"),
        libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL => Some(
            "SIGSEGV, SIGBUS, SIGFPE and SIGILL report faults of the thread that raised them; a \
             handler that returns would re-run the faulting instruction",
        ),
        n if n < 1 || n > libc::SIGRTMAX() => Some("not a signal number"),
        _ => None,
    }
}

/// A claimed slot in the table, listening to one signal. `Send`; releasing it waits for handlers
/// still writing to its eventfd.
struct Registration {
    index: usize,
    signum: i32,
}

impl Registration {
    fn new(kind: SignalKind) -> io::Result<Registration> {
        if let Some(why) = refuse(kind) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot listen for signal {}: {why}", kind.0),
            ));
        }
        let index = TABLE.iter().position(Slot::claim).ok_or_else(|| {
            io::Error::other(format!(
                "more than {SLOTS} signal listeners at once; drop some Signals first"
            ))
        })?;
        let slot = &TABLE[index];
        if slot.fd.load(Ordering::SeqCst) < 0 {
            // SAFETY: eventfd takes no pointers; a negative return is an error.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                slot.taken.store(false, Ordering::SeqCst);
                return Err(io::Error::last_os_error());
            }
            slot.fd.store(fd, Ordering::SeqCst);
        }
        drain(slot.fd.load(Ordering::SeqCst));
        if let Err(e) = action::install(kind.0, deliver) {
            slot.taken.store(false, Ordering::SeqCst);
            return Err(e);
        }
        slot.listen(kind.0);
        Ok(Registration {
            index,
            signum: kind.0,
        })
    }

    fn fd(&self) -> i32 {
        TABLE[self.index].fd.load(Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        TABLE[self.index].release(drain);
        action::uninstall(self.signum);
    }
}

fn drain(fd: i32) {
    let mut buf = 0u64;
    // SAFETY: reads at most 8 bytes into a live u64 from a nonblocking eventfd.
    unsafe { libc::read(fd, (&mut buf as *mut u64).cast(), 8) };
}

/// A pool's `shutdown_on_signals`: listeners for SIGINT and SIGTERM made now (so a signal right
/// after the pool starts counts), and a task to run on one of its loops that triggers `shutdown`
/// at the first of them. While the task lives (a guard undoes it however the task ends), a
/// delivery makes the next one take the default action, so a second Ctrl-C kills the process.
pub(crate) fn shutdown_on(
    shutdown: crate::Shutdown,
) -> io::Result<impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send> {
    let int = Registration::new(SignalKind::interrupt())?;
    let term = Registration::new(SignalKind::terminate())?;
    let armed = action::Armed::new(&[libc::SIGINT, libc::SIGTERM]);
    Ok(
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
            Box::pin(async move {
                let _armed = armed;
                let (mut int, mut term) = (
                    Signals::from_registration(int),
                    Signals::from_registration(term),
                );
                let stop = shutdown.triggered();
                let mut stop = std::pin::pin!(stop);
                // A listener that fails is reported and set aside (its signal gets its default
                // action back, so it still ends the process); only a delivery shuts down.
                let mut alive = [true, true];
                let signalled = poll_fn(|cx| {
                    if stop.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    for (i, (listener, sig, name)) in [
                        (&mut int, libc::SIGINT, "SIGINT"),
                        (&mut term, libc::SIGTERM, "SIGTERM"),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        if !alive[i] {
                            continue;
                        }
                        match listener.poll_wait(cx) {
                            Poll::Ready(Ok(())) => return Poll::Ready(true),
                            Poll::Ready(Err(e)) => {
                                alive[i] = false;
                                eprintln!(
                                    "ringloop: the pool cannot listen for {name} ({e}); it no \
                                     longer shuts down gracefully on it, and {name} takes its \
                                     default action"
                                );
                                action::kill_on_next(sig);
                            }
                            Poll::Pending => {}
                        }
                    }
                    Poll::Pending
                })
                .await;
                if signalled {
                    // The action armed the signal that came; do the same for the other, so any
                    // second SIGINT or SIGTERM ends the process.
                    for sig in [libc::SIGINT, libc::SIGTERM] {
                        action::kill_on_next(sig);
                    }
                    shutdown.trigger();
                }
                // The second-signal rule holds while the pool shuts down: keep the guard until
                // loop 0 closes and drops this task; its drop then disarms what is left.
                std::future::pending::<()>().await;
            })
        },
    )
}

/// A listener for one kind of signal: [`recv`](Signals::recv) completes once per delivery made
/// after it was created (several deliveries before a `recv` may coalesce into one).
///
/// Await it on a ringloop loop, on either backend. Several `Signals` for one signal, on any loops
/// and threads, each see every delivery. While any `Signals` for a signal exists, the process no
/// longer takes that signal's default action (a SIGINT no longer kills it); when the last one is
/// dropped, the default action comes back if nothing else handled the signal before (even if
/// another crate started listening to it through `signal-hook-registry` meanwhile).
///
/// ringloop's handler chains: a handler installed before the first listener (a raw `sigaction`,
/// another library's) is still called at every delivery, and listeners of crates that register
/// through `signal-hook-registry` as ringloop does (`tokio::signal`) keep receiving beside it.
pub struct Signals {
    registration: Registration,
    /// A duplicate of the slot's eventfd, waited on by the loop.
    fd: Option<SharedFd>,
    wait: ReadyWait,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("signal", &self.registration.signum)
            .finish()
    }
}

/// Listens for `kind` from now on.
///
/// # Errors
///
/// `InvalidInput` for `SIGKILL`, `SIGSTOP`, `SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL` and numbers
/// that are no signal (the message says which and why); an error if more than 256 listeners exist
/// at once, or if the eventfd or `sigaction` fails.
///
/// # Examples
///
/// ```
/// use ringloop::signal::{SignalKind, signal};
/// ringloop::run(async {
///     let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
///     // Deliver one to ourselves.
///     let pid = std::process::id().to_string();
///     std::process::Command::new("kill").args(["-USR1", &pid]).status().unwrap();
///     assert_eq!(usr1.recv().await, Some(()));
/// });
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signals> {
    Ok(Signals::from_registration(Registration::new(kind)?))
}

/// Completes at the next `SIGINT` (Ctrl-C) delivered after the call.
///
/// The listener is registered by the call itself, not at the future's first poll: a `SIGINT`
/// that comes between the two is caught (it neither kills the process nor goes unseen).
///
/// # Errors
///
/// As [`signal`] (reported when the future is awaited), and as [`Signals::wait`].
pub fn ctrl_c() -> impl Future<Output = io::Result<()>> + 'static {
    let listener = signal(SignalKind::interrupt());
    async move { listener?.wait().await }
}

impl Signals {
    fn from_registration(registration: Registration) -> Signals {
        Signals {
            registration,
            fd: None,
            wait: ReadyWait::new(Interest::Read),
        }
    }

    /// Waits for the next delivery. `None` if the listener cannot receive (an error: see
    /// [`wait`](Self::wait), which says which). `None` is never a delivery.
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Waits for the next delivery, and says what went wrong if the listener cannot wait.
    ///
    /// # Errors
    ///
    /// An error outside a running ringloop loop; the kernel's error if the listener's eventfd
    /// cannot be duplicated for the loop (`EMFILE` with a full fd table) or read.
    pub async fn wait(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// Polls for the next delivery: [`recv`](Self::recv) for poll-based code. `Ready(None)` on
    /// an error (see [`poll_wait`](Self::poll_wait)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.poll_wait(cx).map(|res| res.ok())
    }

    /// [`wait`](Self::wait) for a caller that polls.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(driver) = crate::driver::current() else {
            return Poll::Ready(Err(io::Error::other(
                "a ringloop signal listener was polled outside a running ringloop event loop: \
                 await it inside EventLoop::run_until_complete or ringloop::run",
            )));
        };
        if self.fd.is_none() {
            // SAFETY: dup takes no pointers; the slot's eventfd stays open while we hold the slot.
            let dup = unsafe { libc::fcntl(self.registration.fd(), libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Poll::Ready(Err(io::Error::last_os_error()));
            }
            // SAFETY: `dup` is a new fd nobody else owns.
            self.fd = Some(SharedFd::new(unsafe { OwnedFd::from_raw_fd(dup) }));
        }
        let fd = self.fd.as_ref().expect("set just above");
        let mut count = 0u64;
        let read = self.wait.poll_syscall(&driver, fd, cx, 8, |raw| {
            // SAFETY: reads 8 bytes into a live u64 from a nonblocking eventfd.
            cvt(unsafe { libc::read(raw, (&mut count as *mut u64).cast(), 8) })
        });
        // An eventfd read gives all 8 bytes or fails.
        Poll::Ready(ready!(read).map(drop))
    }
}

#[cfg(all(test, ringloop_loom))]
mod loom_model {
    use super::*;
    use std::sync::Arc;

    /// A handler delivering signal 10 on one thread while the slot listening to 10 is released
    /// and reused for signal 12 on another: the handler writes to the slot's eventfd only before
    /// the release returned (then the release's drain takes it), never after.
    #[test]
    fn loom_a_released_slot_gets_no_stale_delivery() {
        loom::model(|| {
            let slot = Arc::new(Slot::new());
            slot.fd.store(100, Ordering::Release);
            assert!(slot.claim());
            slot.listen(10);
            let released = Arc::new(AtomicBool::new(false));
            let (s, r) = (slot.clone(), released.clone());
            let handler = crate::sync::thread::spawn(move || {
                s.deliver(10, |fd| {
                    assert_eq!(fd, 100);
                    assert!(
                        !r.load(Ordering::Acquire),
                        "a handler wrote to a slot after its release returned"
                    );
                });
            });
            slot.release(|_| {});
            released.store(true, Ordering::Release);
            // Reused at once for another signal.
            assert!(slot.claim());
            slot.listen(12);
            handler.join().unwrap();
            slot.release(|_| {});
        });
    }
}
