//! Fault injection at the kernel boundary (cargo feature `fault-injection`, off by default).
//!
//! With the feature on and `RINGLOOP_FAULTS=SEED[:RATE]` set, both backends lie to the rest of
//! ringloop within what Linux is allowed to answer, each lie at a chance of `RATE` (default
//! 0.05) where it can be told:
//!
//! | fault | where | what Linux allows |
//! |---|---|---|
//! | short transfer | an op's read or write (both backends) | a stream read or write may move fewer bytes than asked |
//! | `EINTR` | an op's nonblocking syscall, `epoll_wait` | a signal may interrupt any of them |
//! | spurious wakeup | epoll readiness, uring readiness polls | readiness is a hint: the syscall may then say `EAGAIN` |
//! | cancelled before start | a uring op's submission | `ECANCELED` for an op the kernel never ran |
//! | multishot end | a uring multishot's submission | a multishot may end at once (`ENOBUFS`, no `F_MORE`) |
//! | submit refused | `io_uring_enter` | `EBUSY` / `EAGAIN` when completions are backed up |
//! | partial submit | `io_uring_enter` | the kernel may take fewer SQEs than offered |
//! | late completion | uring completions | completions of different ops come in any order, and later (not those naming a buffer of an incremental ring: Linux reports each buffer's parts in the order it filled them) |
//!
//! A full completion queue comes from a small ring: with faults on, uring rings have 8 entries
//! (16 completions), so bursts overflow the CQ and the kernel's overflow list is exercised.
//!
//! Each loop draws from its own generator, seeded by `SEED` and the loop's number in the
//! process, so a run is reproducible per seed. What was injected is counted in
//! [`Stats::faults_injected`](crate::Stats::faults_injected) (until the loop closes) and, for the
//! whole process, printed to stderr at exit. Ops never know: the driver applies every fault
//! (a byte transfer is told, through `Operation::shorten`, how much it may move).

use std::io;

/// The kinds of fault, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    ShortTransfer,
    Interrupted,
    SpuriousWakeup,
    CancelledBeforeStart,
    MultishotEnd,
    SubmitRefused,
    PartialSubmit,
    LateCompletion,
}

/// The environment variable that turns faults on.
pub(crate) const ENV: &str = "RINGLOOP_FAULTS";

/// The ring size while faults are on (a small CQ that overflows under load).
#[cfg(feature = "fault-injection")]
pub(crate) const RING_ENTRIES: Option<u32> = Some(8);
#[cfg(not(feature = "fault-injection"))]
pub(crate) const RING_ENTRIES: Option<u32> = None;

#[cfg(feature = "fault-injection")]
mod on {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// One loop's injector: `None` when `RINGLOOP_FAULTS` is unset.
    #[derive(Debug, Default)]
    pub(crate) struct Faults {
        state: Option<Injector>,
    }

    #[derive(Debug)]
    struct Injector {
        rng: Cell<u64>,
        /// A roll below this is a fault.
        threshold: u64,
        counts: [Cell<u64>; 8],
    }

    /// Loops built so far in this process: each loop's generator starts from its number.
    static LOOPS: AtomicU64 = AtomicU64::new(0);

    /// Faults injected by every loop of the process that has closed, by kind.
    static TOTALS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

    /// Prints the process's totals to stderr at exit, once any loop injected a fault.
    extern "C" fn print_totals() {
        let t: Vec<u64> = TOTALS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        if t.iter().sum::<u64>() > 0 {
            eprintln!(
                "ringloop: faults injected in this process: short_transfers={} interrupted={} \
                 spurious_wakeups={} cancelled_before_start={} multishot_ends={} \
                 submits_refused={} partial_submits={} late_completions={}",
                t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]
            );
        }
    }

    /// Parses `SEED[:RATE]`.
    fn parse(value: &str) -> Option<(u64, f64)> {
        let (seed, rate) = match value.split_once(':') {
            Some((s, r)) => (s, r.parse::<f64>().ok()?),
            None => (value, 0.05),
        };
        let seed = seed.trim().parse::<u64>().ok()?;
        (rate > 0.0 && rate <= 1.0).then_some((seed, rate))
    }

    impl Faults {
        /// The injector `RINGLOOP_FAULTS` asks for (none if unset).
        ///
        /// # Errors
        ///
        /// `InvalidInput` naming the accepted format if the value cannot be parsed.
        pub(crate) fn from_env() -> io::Result<Faults> {
            let Some(value) = std::env::var_os(ENV) else {
                return Ok(Faults::default());
            };
            let value = value.to_string_lossy();
            let (seed, rate) = parse(&value).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{ENV}={value:?} is not SEED[:RATE]: SEED is an unsigned integer, RATE \
                         a chance from 0 (exclusive) to 1, 0.05 if left out (e.g. 7 or 7:0.1)"
                    ),
                )
            })?;
            let index = LOOPS.fetch_add(1, Ordering::Relaxed);
            if index == 0 {
                // SAFETY: registers a plain function with no captured state; it only reads
                // atomics and writes to stderr.
                unsafe { libc::atexit(print_totals) };
            }
            // splitmix64 of seed and loop number: distinct, well-mixed starting points.
            let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            Ok(Faults {
                state: Some(Injector {
                    rng: Cell::new(z | 1),
                    threshold: (rate * u64::MAX as f64) as u64,
                    counts: Default::default(),
                }),
            })
        }

        fn next(i: &Injector) -> u64 {
            // xorshift64*
            let mut x = i.rng.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            i.rng.set(x);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Whether to inject `fault` now (counted if so).
        #[inline]
        pub(crate) fn inject(&self, fault: Fault) -> bool {
            let hit = self.roll();
            if hit {
                self.count(fault);
            }
            hit
        }

        /// A draw at the configured chance, not counted (for a fault that may turn out not to
        /// apply: count it with [`count`](Self::count) if it did).
        #[inline]
        pub(crate) fn roll(&self) -> bool {
            match &self.state {
                Some(i) => Self::next(i) < i.threshold,
                None => false,
            }
        }

        /// Counts one injected `fault`.
        pub(crate) fn count(&self, fault: Fault) {
            if let Some(i) = &self.state {
                let c = &i.counts[fault as usize];
                c.set(c.get() + 1);
            }
        }

        /// A number in `0..n` (`n > 0`).
        pub(crate) fn below(&self, n: u64) -> u64 {
            match &self.state {
                Some(i) => Self::next(i) % n,
                None => 0,
            }
        }

        /// Whether faults are on for this loop.
        pub(crate) fn enabled(&self) -> bool {
            self.state.is_some()
        }

        /// Adds this loop's counts to the process's totals (the loop is closing).
        pub(crate) fn add_to_totals(&self) {
            if let Some(i) = &self.state {
                for (total, c) in TOTALS.iter().zip(&i.counts) {
                    total.fetch_add(c.replace(0), Ordering::Relaxed);
                }
            }
        }

        pub(crate) fn counts(&self) -> FaultCounts {
            let Some(i) = &self.state else {
                return FaultCounts::default();
            };
            let c = |f: Fault| i.counts[f as usize].get();
            FaultCounts {
                short_transfers: c(Fault::ShortTransfer),
                interrupted: c(Fault::Interrupted),
                spurious_wakeups: c(Fault::SpuriousWakeup),
                cancelled_before_start: c(Fault::CancelledBeforeStart),
                multishot_ends: c(Fault::MultishotEnd),
                submits_refused: c(Fault::SubmitRefused),
                partial_submits: c(Fault::PartialSubmit),
                late_completions: c(Fault::LateCompletion),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::parse;

        #[test]
        fn the_setting_is_seed_and_an_optional_rate() {
            assert_eq!(parse("7"), Some((7, 0.05)));
            assert_eq!(parse("7:0.5"), Some((7, 0.5)));
            assert_eq!(parse("7:1"), Some((7, 1.0)));
            for bad in ["", "x", "7:", "7:0", "7:1.5", "-1", "7:abc"] {
                assert_eq!(parse(bad), None, "{bad:?} was taken");
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
pub(crate) use on::Faults;

/// Without the feature: nothing to inject, and every check folds away.
#[cfg(not(feature = "fault-injection"))]
#[derive(Debug, Default)]
pub(crate) struct Faults;

#[cfg(not(feature = "fault-injection"))]
impl Faults {
    /// Warns once if `RINGLOOP_FAULTS` is set in a build that cannot inject.
    pub(crate) fn from_env() -> io::Result<Faults> {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if std::env::var_os(ENV).is_some() {
            WARNED.call_once(|| {
                eprintln!(
                    "ringloop: {ENV} is set, but this build has no fault injection (cargo \
                     feature `fault-injection`); no faults are injected"
                );
            });
        }
        Ok(Faults)
    }

    #[inline(always)]
    pub(crate) fn inject(&self, _fault: Fault) -> bool {
        false
    }

    #[inline(always)]
    pub(crate) fn roll(&self) -> bool {
        false
    }

    #[inline(always)]
    pub(crate) fn count(&self, _fault: Fault) {}

    #[inline(always)]
    pub(crate) fn below(&self, _n: u64) -> u64 {
        0
    }

    #[inline(always)]
    pub(crate) fn enabled(&self) -> bool {
        false
    }

    pub(crate) fn counts(&self) -> FaultCounts {
        FaultCounts::default()
    }

    #[inline(always)]
    pub(crate) fn add_to_totals(&self) {}
}

/// Faults injected into a loop, by kind: the lies within what Linux may answer that a build with
/// the cargo feature `fault-injection` tells when `RINGLOOP_FAULTS=SEED[:RATE]` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Reads and writes cut short.
    pub short_transfers: u64,
    /// Syscalls answered with `EINTR` (nonblocking I/O, `epoll_wait`).
    pub interrupted: u64,
    /// Readiness reported for an fd that may not be ready (an epoll event, or a uring poll that
    /// completes at once).
    pub spurious_wakeups: u64,
    /// uring ops completed with `ECANCELED` before they started.
    pub cancelled_before_start: u64,
    /// uring multishot ops ended at once (`ENOBUFS`, no more completions).
    pub multishot_ends: u64,
    /// `io_uring_enter` calls answered with `EBUSY` before taking anything.
    pub submits_refused: u64,
    /// `io_uring_enter` calls that took fewer SQEs than offered.
    pub partial_submits: u64,
    /// uring completions held back and delivered with a later batch, out of order.
    pub late_completions: u64,
}

impl FaultCounts {
    /// All faults injected, of every kind.
    pub fn total(&self) -> u64 {
        self.short_transfers
            + self.interrupted
            + self.spurious_wakeups
            + self.cancelled_before_start
            + self.multishot_ends
            + self.submits_refused
            + self.partial_submits
            + self.late_completions
    }
}
