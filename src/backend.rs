//! Which backend runs: the `Backend` type, `RINGLOOP_BACKEND` parsing, and the io_uring probe that
//! decides whether `auto` can pick io_uring (and, if not, why).

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::OnceLock;

use io_uring::{IoUring, Probe, opcode};

/// The environment variable that picks the backend: `auto` (default), `uring` or `epoll`.
pub const BACKEND_ENV: &str = "RINGLOOP_BACKEND";

/// The I/O backend an [`EventLoop`](crate::EventLoop) runs on.
///
/// Parses from `uring` (also `io_uring`, `proactor`) and `epoll` (also `selector`), ignoring case;
/// displays as `uring` or `epoll`.
///
/// # Examples
///
/// ```
/// use ringloop::Backend;
/// assert_eq!("proactor".parse::<Backend>().unwrap(), Backend::Uring);
/// assert_eq!("selector".parse::<Backend>().unwrap(), Backend::Epoll);
/// assert_eq!(Backend::Uring.to_string(), "uring");
/// assert!("kqueue".parse::<Backend>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// io_uring, the completion ("proactor") backend: ops are submitted and a completion wakes the
    /// future.
    Uring,
    /// epoll, the readiness ("selector") backend: the syscall is tried, and on `EAGAIN` the loop
    /// waits for readiness and retries.
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// The error for a string that names no backend; its message lists the accepted names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseBackendError {
    value: String,
}

impl fmt::Display for ParseBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown backend {:?}: accepted values are auto, uring (or io_uring, proactor) \
             and epoll (or selector)",
            self.value
        )
    }
}

impl std::error::Error for ParseBackendError {}

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" | "proactor" => Ok(Backend::Uring),
            "epoll" | "selector" => Ok(Backend::Epoll),
            _ => Err(ParseBackendError {
                value: s.to_owned(),
            }),
        }
    }
}

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Auto,
    Forced(Backend),
}

/// Reads `RINGLOOP_BACKEND`. Unset or empty means `auto`.
pub(crate) fn choice_from_env() -> io::Result<Choice> {
    let Some(raw) = std::env::var_os(BACKEND_ENV) else {
        return Ok(Choice::Auto);
    };
    let value = raw.to_string_lossy();
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("auto") {
        return Ok(Choice::Auto);
    }
    trimmed.parse().map(Choice::Forced).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{BACKEND_ENV}={value:?} is not a backend: accepted values are auto, uring \
                 (or io_uring, proactor) and epoll (or selector)"
            ),
        )
    })
}

/// Why io_uring cannot be used in this process.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable {
    /// The errno behind it, if the kernel gave one.
    pub(crate) errno: Option<i32>,
    /// A sentence for people.
    pub(crate) reason: String,
    /// `auto` must fail rather than fall back (ENOMEM: the machine is short of memory, and epoll
    /// would hide that).
    pub(crate) fatal: bool,
}

impl Unavailable {
    pub(crate) fn to_io_error(&self, context: &str) -> io::Error {
        let kind = match self.errno {
            Some(e) => io::Error::from_raw_os_error(e).kind(),
            None => io::ErrorKind::Unsupported,
        };
        io::Error::new(kind, format!("{context}: {}", self.reason))
    }
}

/// Every opcode the uring backend submits. A kernel that lacks one of them gets epoll under `auto`.
pub(crate) const REQUIRED_OPCODES: &[(u8, &str)] = &[
    (opcode::Nop::CODE, "IORING_OP_NOP"),
    (opcode::Read::CODE, "IORING_OP_READ"),
    (opcode::Recv::CODE, "IORING_OP_RECV"),
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
    (opcode::RecvMsg::CODE, "IORING_OP_RECVMSG"),
    (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
    (opcode::Connect::CODE, "IORING_OP_CONNECT"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    (opcode::Write::CODE, "IORING_OP_WRITE"),
    (opcode::OpenAt::CODE, "IORING_OP_OPENAT"),
    (opcode::Close::CODE, "IORING_OP_CLOSE"),
    (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    (opcode::Statx::CODE, "IORING_OP_STATX"),
    (opcode::UnlinkAt::CODE, "IORING_OP_UNLINKAT"),
    (opcode::RenameAt::CODE, "IORING_OP_RENAMEAT"),
    (opcode::MkDirAt::CODE, "IORING_OP_MKDIRAT"),
    (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
    (opcode::Splice::CODE, "IORING_OP_SPLICE"),
];

/// What the probe found beyond the required opcodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UringFeatures {
    /// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19, like `IORING_OP_SOCKET`): a receive may skip its
    /// first attempt and wait for data straight away.
    pub(crate) recv_poll_first: bool,
    /// `IORING_OP_MSG_RING` is there and trusted (Linux 6.1+, which also lets it target
    /// `DEFER_TASKRUN` rings): a uring loop may wake another uring loop through its own ring
    /// instead of the target's eventfd. `RINGLOOP_CROSS_WAKE=eventfd` turns it off.
    pub(crate) msg_ring: bool,
    /// `IORING_OP_SEND_ZC` (Linux 6.0): a send that pins the caller's pages instead of copying
    /// them, with a second completion once the kernel is done with them.
    pub(crate) send_zc: bool,
    /// `IORING_FEAT_RECVSEND_BUNDLE` (Linux 6.10): one receive completion may fill several
    /// buffers of a provided buffer ring.
    pub(crate) recv_bundle: bool,
    /// `IORING_OP_FTRUNCATE` (Linux 6.9): `File::set_len` on the ring rather than the pool.
    pub(crate) ftruncate: bool,
}

/// Linux's (major, minor) version, from uname.
/// The environment variable that switches io_uring fast paths off, for diagnosis and for
/// measuring what each one brings: a comma-separated list of [`FAST_PATHS`] names.
pub(crate) const DISABLE_ENV: &str = "RINGLOOP_DISABLE";

/// The io_uring fast paths `RINGLOOP_DISABLE` can switch off, each with what runs instead.
pub(crate) const FAST_PATHS: &[(&str, &str)] = &[
    (
        "multishot-recv",
        "recv_pooled arms a one-shot receive with buffer select per call",
    ),
    (
        "buf-ring",
        "the receive pool is a free list and recv_pooled waits for readiness, then receives",
    ),
    ("multishot-accept", "each accept is one accept op"),
    (
        "registered-ring",
        "io_uring_enter gets the ring's fd rather than its registered index",
    ),
    (
        "setup-flags",
        "the ring is set up without SUBMIT_ALL and NO_SQARRAY",
    ),
    (
        "splice",
        "send_file reads the part of a file not in the page cache on the blocking pool (as on \
         epoll), instead of two splices through a pipe",
    ),
    (
        "buf-inc",
        "a pooled receive takes a whole buffer of the ring however few bytes it got, rather than \
         only the bytes it got (incremental consumption), so small receives do not share buffers",
    ),
    (
        "bundle",
        "a multishot receive fills one pool buffer per completion rather than a bundle of them",
    ),
    (
        "wait-batch",
        "a busy loop's wait ends at the first completion rather than holding out a few \
         microseconds for a second",
    ),
    (
        "wake-poll",
        "the loop is woken from other threads by an eventfd read it re-arms after every wake, \
         rather than by one multishot poll of the eventfd",
    ),
    (
        "direct-fd",
        "accepted connections are plain fds that every ring op looks up, rather than also slots \
         in the ring's file table (direct descriptors) that ops name instead",
    ),
    (
        "send-zc",
        "stream writes of owned buffers at or above Builder::zero_copy_threshold are plain \
         sends (a copy) rather than zero-copy sends",
    ),
];

/// Which io_uring fast paths a loop uses: those the kernel has and nobody switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FastPaths {
    /// One multishot receive per stream feeds `recv_pooled` (Linux 6.0+).
    pub(crate) multishot_recv: bool,
    /// The receive pool is a provided buffer ring (Linux 5.19+).
    pub(crate) buf_ring: bool,
    /// One multishot accept per listener (Linux 5.19+).
    pub(crate) multishot_accept: bool,
    /// The ring's fd is registered with its thread (Linux 5.18+).
    pub(crate) registered_ring: bool,
    /// `SUBMIT_ALL` and `NO_SQARRAY` are tried first at ring setup.
    pub(crate) setup_flags: bool,
    /// `send_file` of a file not in the page cache splices through a pipe on the ring (else, and
    /// on epoll, the blocking pool reads what is not resident).
    pub(crate) splice: bool,
    /// Large owned-buffer writes are zero-copy sends (`IORING_OP_SEND_ZC`), as
    /// `Builder::zero_copy_threshold` says.
    pub(crate) send_zc: bool,
    /// The receive pool's ring is registered for incremental consumption (`IOU_PBUF_RING_INC`,
    /// Linux 6.12+; the registration is the probe): a receive takes only the bytes it got.
    pub(crate) buf_inc: bool,
    /// A stream's multishot receive may fill several pool buffers per completion
    /// (`IORING_RECVSEND_BUNDLE`, Linux 6.10+; probed when the loop is built).
    pub(crate) bundle: bool,
    /// A busy loop's wait holds out a few microseconds for a second completion
    /// (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.12+; probed when the ring is set up).
    pub(crate) wait_batch: bool,
    /// Wakes from other threads arrive through one multishot poll of the loop's eventfd, armed
    /// once, rather than an eventfd read re-armed after each wake (Linux 5.13+).
    pub(crate) wake_poll: bool,
    /// Accepted TCP connections also get a slot in the ring's file table (a direct descriptor,
    /// Linux 5.19+ for the sparse table), which their ring ops name instead of the fd.
    pub(crate) direct_fd: bool,
}

impl FastPaths {
    pub(crate) const ALL: FastPaths = FastPaths {
        multishot_recv: true,
        buf_ring: true,
        multishot_accept: true,
        registered_ring: true,
        setup_flags: true,
        splice: true,
        send_zc: true,
        buf_inc: true,
        bundle: true,
        wait_batch: true,
        wake_poll: true,
        direct_fd: true,
    };

    /// All fast paths, less those named in `disable` (a comma-separated list, from
    /// `RINGLOOP_DISABLE` or the builder), less those the kernel lacks.
    pub(crate) fn resolve(disable: Option<&str>) -> io::Result<FastPaths> {
        let from_env = std::env::var(DISABLE_ENV).ok();
        let mut fast = FastPaths::ALL;
        for list in [from_env.as_deref(), disable].into_iter().flatten() {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let flag = match name.to_ascii_lowercase().as_str() {
                    "multishot-recv" => &mut fast.multishot_recv,
                    "buf-ring" => &mut fast.buf_ring,
                    "multishot-accept" => &mut fast.multishot_accept,
                    "registered-ring" => &mut fast.registered_ring,
                    "setup-flags" => &mut fast.setup_flags,
                    "splice" => &mut fast.splice,
                    "send-zc" => &mut fast.send_zc,
                    "buf-inc" => &mut fast.buf_inc,
                    "bundle" => &mut fast.bundle,
                    "wait-batch" => &mut fast.wait_batch,
                    "wake-poll" => &mut fast.wake_poll,
                    "direct-fd" => &mut fast.direct_fd,
                    _ => {
                        let names: Vec<&str> = FAST_PATHS.iter().map(|(n, _)| *n).collect();
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "{DISABLE_ENV}: unknown fast path {name:?}: accepted names are {}, \
                                 comma-separated",
                                names.join(", ")
                            ),
                        ));
                    }
                };
                *flag = false;
            }
        }
        let kernel = kernel_version().unwrap_or((0, 0));
        fast.multishot_recv &= kernel >= (6, 0);
        fast.buf_ring &= kernel >= (5, 19);
        fast.buf_inc &= fast.buf_ring && kernel >= (6, 12);
        fast.multishot_accept &= kernel >= (5, 19);
        fast.registered_ring &= kernel >= (5, 18);
        fast.wake_poll &= kernel >= (5, 13);
        fast.direct_fd &= kernel >= (5, 19);
        Ok(fast)
    }
}

pub(crate) fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: an all-zero utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: uname NUL-terminates `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_str()
        .ok()?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

static PROBE: OnceLock<Result<UringFeatures, Unavailable>> = OnceLock::new();

/// Probes io_uring once per process: a 2-entry ring plus `IORING_REGISTER_PROBE`.
pub(crate) fn probe() -> Result<(), &'static Unavailable> {
    PROBE.get_or_init(run_probe).as_ref().map(|_| ())
}

/// The optional features the probe found; all off if io_uring is unusable.
pub(crate) fn uring_features() -> UringFeatures {
    match PROBE.get_or_init(run_probe) {
        Ok(f) => *f,
        Err(_) => UringFeatures {
            recv_poll_first: false,
            msg_ring: false,
            send_zc: false,
            recv_bundle: false,
            ftruncate: false,
        },
    }
}

fn run_probe() -> Result<UringFeatures, Unavailable> {
    let ring = IoUring::new(2).map_err(|e| describe_setup_error(&e))?;
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Err(Unavailable {
            errno: e.raw_os_error(),
            reason: format!(
                "IORING_REGISTER_PROBE failed ({e}): the kernel is older than 5.6, which \
                 ringloop's io_uring backend needs"
            ),
            fatal: false,
        });
    }
    if !ring.params().is_feature_ext_arg() {
        // Waits are bounded by a timeout passed to io_uring_enter (EXT_ARG, Linux 5.11).
        return Err(Unavailable {
            errno: Some(libc::EOPNOTSUPP),
            reason: "the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11)".to_owned(),
            fatal: false,
        });
    }
    let missing: Vec<&str> = REQUIRED_OPCODES
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(Unavailable {
            errno: Some(libc::EOPNOTSUPP),
            reason: format!("the kernel's io_uring lacks {}", missing.join(", ")),
            fatal: false,
        });
    }
    let msg_ring_wanted = std::env::var("RINGLOOP_CROSS_WAKE").map_or(true, |v| v != "eventfd");
    Ok(UringFeatures {
        recv_poll_first: probe.is_supported(opcode::Socket::CODE),
        msg_ring: msg_ring_wanted
            && probe.is_supported(opcode::MsgRingData::CODE)
            && kernel_version().is_some_and(|v| v >= (6, 1)),
        send_zc: probe.is_supported(opcode::SendZc::CODE),
        recv_bundle: ring.params().is_feature_recvsend_bundle(),
        ftruncate: probe.is_supported(opcode::Ftruncate::CODE),
    })
}

/// Reads `kernel.io_uring_disabled` (absent before Linux 6.6).
fn io_uring_disabled_sysctl() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns an `io_uring_setup` failure into a reason a person can act on.
pub(crate) fn describe_setup_error(e: &io::Error) -> Unavailable {
    let errno = e.raw_os_error();
    let (reason, fatal) = match errno {
        Some(libc::ENOSYS) => (
            "io_uring_setup is not implemented (ENOSYS): the kernel is older than 5.1 or was \
             built without CONFIG_IO_URING"
                .to_owned(),
            false,
        ),
        Some(libc::EPERM) => {
            let why = match io_uring_disabled_sysctl() {
                Some(2) => {
                    "kernel.io_uring_disabled = 2 disables io_uring for every process".into()
                }
                Some(1) => "kernel.io_uring_disabled = 1 limits io_uring to CAP_SYS_ADMIN and \
                            the kernel.io_uring_group group"
                    .into(),
                _ => "a seccomp filter denies it (Docker's default profile does) or a security \
                      module forbids it"
                    .to_owned(),
            };
            (
                format!("io_uring_setup was denied (EPERM, operation not permitted): {why}"),
                false,
            )
        }
        Some(libc::ENOMEM) => (
            "io_uring_setup failed with ENOMEM: the ring's memory is charged to RLIMIT_MEMLOCK \
             (ulimit -l) on kernels before 5.12 and to the memory cgroup on later ones; raise that \
             limit, build the loop with a smaller Builder::entries, or set RINGLOOP_BACKEND=epoll"
                .to_owned(),
            true,
        ),
        _ => (format!("io_uring_setup failed: {e}"), false),
    };
    Unavailable {
        errno,
        reason,
        fatal,
    }
}
