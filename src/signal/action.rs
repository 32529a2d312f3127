//! What the process does with a signal ringloop listens to: one action per signal number,
//! registered through `signal-hook-registry` (as tokio's signal module does), so a handler that
//! was there first (a raw `sigaction`, another crate's) keeps being called before ours, and
//! listeners of other crates that use the registry (tokio's) keep receiving beside ours.
//!
//! The action stays registered for the process's life (the registry cannot restore the previous
//! disposition). What ringloop promises instead is done by the action itself, from per-signal
//! state it reads with lock-free atomics:
//!
//! - With no ringloop listener left, a signal that nobody handled before ringloop first listened
//!   (its disposition was `SIG_DFL`) takes its default action again: a SIGINT kills once the last
//!   `ctrl_c()` is gone. A listener that another crate registered through the registry after
//!   ringloop's first one (say, a later `tokio::signal::ctrl_c()`) does not hold the default
//!   action off then: the registry cannot tell ringloop about it.
//! - A pool's `shutdown_on_signals` arms the signal while the pool's listener lives (a count, undone
//!   by a guard's `Drop`): a delivery then makes the next one take the default action (the second
//!   Ctrl-C kills). Nothing stays armed after the pool is done, however its listener ended.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Signal numbers go up to `SIGRTMAX` (64 on Linux).
const SIGNALS: usize = 65;

/// One signal number's state, read by the action in the signal handler.
struct State {
    /// ringloop listeners (`Registration`s) for the signal.
    listeners: AtomicUsize,
    /// The signal's disposition was `SIG_DFL` when ringloop registered its action: with no
    /// listener left, the action takes the default action.
    default_when_idle: AtomicBool,
    /// Running pools that shut down on the signal.
    armed: AtomicUsize,
    /// The next delivery takes the default action.
    kill_next: AtomicBool,
}

impl State {
    const fn new() -> State {
        State {
            listeners: AtomicUsize::new(0),
            default_when_idle: AtomicBool::new(false),
            armed: AtomicUsize::new(0),
            kill_next: AtomicBool::new(false),
        }
    }
}

// The handler's state uses std's atomics also under the model checker: the models cover the slot
// protocol, not the handler's flags.
static STATES: [State; SIGNALS] = [const { State::new() }; SIGNALS];

/// Per signal number: whether ringloop's action is registered (it never is unregistered).
static REGISTERED: Mutex<[bool; SIGNALS]> = Mutex::new([false; SIGNALS]);

fn state(sig: i32) -> Option<&'static State> {
    usize::try_from(sig).ok().and_then(|i| STATES.get(i))
}

/// ringloop's action for `sig`, run inside the signal handler: `deliver` hands the signal to
/// the listeners' slots, then the default action is taken where it is due. Async-signal-safe:
/// atomics, `write(2)` in `deliver`, `sigaction` and `raise`.
fn on_signal(sig: i32, deliver: fn(i32)) {
    let Some(st) = state(sig) else { return };
    if st.kill_next.load(Ordering::SeqCst) {
        take_default_action(sig);
        return;
    }
    // Read before `deliver`: once the listeners have the delivery they may finish and drop
    // their registrations (and a pool its guard) while this handler is still running, and a
    // count read after that would take this very delivery for one nobody listened to.
    let armed = st.armed.load(Ordering::SeqCst) > 0;
    let idle =
        st.listeners.load(Ordering::SeqCst) == 0 && st.default_when_idle.load(Ordering::SeqCst);
    deliver(sig);
    if armed {
        st.kill_next.store(true, Ordering::SeqCst);
    } else if idle {
        take_default_action(sig);
    }
}

/// Does what `SIG_DFL` does for `sig`, from inside its handler: nothing for the signals whose
/// default is to be ignored, a stop for the stop signals, else the default disposition is put
/// back and the signal raised again: it is blocked while its handler runs, so it is delivered
/// (and ends the process) as the handler returns.
fn take_default_action(sig: i32) {
    match sig {
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH => {}
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
            // SAFETY: raise is async-signal-safe and takes no pointers.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
        _ => {
            set_default(sig);
            // SAFETY: as above.
            unsafe { libc::raise(sig) };
        }
    }
}

/// Puts back `sig`'s default action. Async-signal-safe (sigaction is; signal(2) is not listed).
fn set_default(sig: libc::c_int) {
    // SAFETY: an all-zero sigaction with SIG_DFL (0) as handler is valid; sigaction reads it.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `dfl` is live for the call; a null old action is allowed.
    unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
}

/// Counts a new listener for `sig` (a number `refuse` let through), registering ringloop's
/// action first if this is the first listener ever. `deliver` is what the action calls.
pub(super) fn install(sig: i32, deliver: fn(i32)) -> io::Result<()> {
    let Some(st) = state(sig) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot listen for signal {sig}: not a signal number"),
        ));
    };
    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if !registered[sig as usize] {
        // SAFETY: an all-zero sigaction is valid; sigaction only writes it.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `current` is live.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
            return Err(io::Error::last_os_error());
        }
        st.default_when_idle
            .store(current.sa_sigaction == libc::SIG_DFL, Ordering::SeqCst);
        // SAFETY: the action is async-signal-safe (see `on_signal`) and cannot panic; `sig` is
        // none of the registry's forbidden signals (`refuse` turned those away).
        unsafe { signal_hook_registry::register(sig, move || on_signal(sig, deliver)) }.map_err(
            |e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot install a handler for signal {sig}: {e}"),
                )
            },
        )?;
        registered[sig as usize] = true;
    }
    if st.listeners.fetch_add(1, Ordering::SeqCst) == 0 {
        // A listener made after the last one went takes the signal over again, as a handler
        // installed anew would (a pool's second-signal rule ended with its listeners).
        st.kill_next.store(false, Ordering::SeqCst);
    }
    Ok(())
}

/// Counts a listener for `sig` gone.
pub(super) fn uninstall(sig: i32) {
    if let Some(st) = state(sig) {
        st.listeners.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes the next delivery of `sig` take its default action.
pub(super) fn kill_on_next(sig: i32) {
    if let Some(st) = state(sig) {
        st.kill_next.store(true, Ordering::SeqCst);
    }
}

/// A pool's `shutdown_on_signals` while it runs: a delivery of one of its signals makes the next
/// one take the default action. Dropping the guard disarms, whether the pool's listener saw a
/// signal, returned, or was dropped unpolled.
pub(super) struct Armed(&'static [i32]);

impl Armed {
    pub(super) fn new(sigs: &'static [i32]) -> Armed {
        for &sig in sigs {
            if let Some(st) = state(sig) {
                st.armed.fetch_add(1, Ordering::SeqCst);
            }
        }
        Armed(sigs)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        for &sig in self.0 {
            if let Some(st) = state(sig)
                && st.armed.fetch_sub(1, Ordering::SeqCst) == 1
            {
                // The last running pool is done: its "the next one kills" ends with it, so a
                // later delivery goes to whatever listens then (or takes the default action
                // only if nothing does).
                st.kill_next.store(false, Ordering::SeqCst);
            }
        }
    }
}
