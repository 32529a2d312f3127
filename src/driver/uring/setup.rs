//! Setting the ring up: its flags (the fastest the kernel takes), its registered fd, and what
//! is registered with it (the receive pool's buffer ring, a `FixedBufs` set).

use super::*;

const IORING_REGISTER_RING_FDS: u32 = 20;
const IORING_UNREGISTER_RING_FDS: u32 = 21;
/// `io_uring_buf_reg.flags`: the ring's buffers are consumed incrementally (Linux 6.12).
const IOU_PBUF_RING_INC: u16 = 2;

/// `struct io_uring_rsrc_update`, the argument of `IORING_(UN)REGISTER_RING_FDS`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Builds a ring with the fastest flags the kernel accepts, dropping them one by one on `EINVAL`.
pub(super) fn build_ring(entries: u32, fast: FastPaths) -> io::Result<(IoUring, &'static str)> {
    type Setup = fn(&mut io_uring::Builder) -> &mut io_uring::Builder;
    let attempts: [(&str, Setup); 5] = [
        // SUBMIT_ALL (5.18): a bad SQE in a batch does not hold back the ones after it.
        // NO_SQARRAY (6.6): SQEs are taken from the SQ in order, with no index array to fill.
        (
            "SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|SUBMIT_ALL|NO_SQARRAY",
            |b| {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun()
                    .setup_submit_all()
                    .setup_no_sqarray()
            },
        ),
        ("SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_coop_taskrun()
        }),
        ("SINGLE_ISSUER|COOP_TASKRUN", |b| {
            b.setup_single_issuer().setup_coop_taskrun()
        }),
        ("COOP_TASKRUN", |b| b.setup_coop_taskrun()),
        ("none", |b| b),
    ];
    let mut last = None;
    let skip = usize::from(!fast.setup_flags);
    for (name, setup) in attempts.into_iter().skip(skip) {
        let mut builder = IoUring::builder();
        builder
            .setup_clamp()
            .setup_cqsize(entries.saturating_mul(4));
        setup(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

impl UringDriver {
    pub(in crate::driver) fn new(
        entries: u32,
        shared: &Shared,
        counters: Rc<Counters>,
        fast: FastPaths,
        direct_slots: u32,
    ) -> io::Result<Self> {
        let (ring, setup) = build_ring(entries, fast)?;
        if !ring.params().is_feature_ext_arg() {
            // Waits are bounded through EXT_ARG (Linux 5.11); the backend probe refuses io_uring
            // without it, so this is only reached by a ring built past the probe.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11)",
            ));
        }
        let defer_taskrun = setup.contains("DEFER_TASKRUN");
        let mut driver = UringDriver {
            // Only with DEFER_TASKRUN does a waiting task stay asleep until its count is reached.
            batch_waits: fast.wait_batch && defer_taskrun && ring.params().is_feature_min_timeout(),
            last_reaped: 0,
            defer_taskrun,
            ring,
            ops: Slab::with_capacity(entries as usize),
            in_flight: 0,
            setup,
            wake_fd: shared.eventfd(),
            wake_poll: fast.wake_poll,
            wake_buf: Box::new(0),
            wake_armed: false,
            closing: false,
            orphans: Vec::new(),
            msgs: Slab::new(),
            pool: None,
            ring_index: None,
            pool_registered: false,
            multis: 0,
            counters,
            batch: Vec::new(),
            late: Vec::new(),
            zero_copy_socks: Vec::new(),
            abandoned: false,
            direct: DirectTable::new(if fast.direct_fd { direct_slots } else { 0 }),
        };
        if fast.registered_ring {
            driver.ring_index = driver.register_ring_fd();
        }
        if crate::backend::uring_features().msg_ring {
            shared.accept_messages(driver.ring.as_raw_fd());
        }
        driver.arm_wake()?;
        Ok(driver)
    }

    /// Registers the ring's fd with this thread (Linux 5.18+), so enters skip the fd lookup.
    /// `None` if the kernel refuses: enters then pass the fd as usual.
    pub(super) fn register_ring_fd(&self) -> Option<u32> {
        let mut up = RsrcUpdate {
            offset: u32::MAX, // any free slot
            resv: 0,
            data: self.ring.as_raw_fd() as u64,
        };
        // SAFETY: `up` is one valid io_uring_rsrc_update for the duration of the call.
        let res = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_REGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1,
            )
        };
        (res == 1).then_some(up.offset)
    }

    /// Drops the ring's registration with this thread (it keeps the ring alive otherwise).
    pub(super) fn unregister_ring_fd(&mut self) {
        let Some(index) = self.ring_index.take() else {
            return;
        };
        let mut up = RsrcUpdate {
            offset: index,
            resv: 0,
            data: 0,
        };
        // SAFETY: `up` is one valid io_uring_rsrc_update for the duration of the call.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_UNREGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1,
            )
        };
    }

    /// Registers the receive pool's buffer ring as group [`POOL_GROUP`], with incremental
    /// consumption (`IOU_PBUF_RING_INC`) when `incremental` and the kernel takes it (else the
    /// ring is registered as before: kernels before 6.12 refuse the flag). Returns the pool, and
    /// switches it to incremental consumption when the kernel took the flag. On an error the pool
    /// is dropped: nothing was registered.
    pub(in crate::driver) fn register_pool(
        &mut self,
        mut pool: Pool,
        incremental: bool,
    ) -> io::Result<Rc<Pool>> {
        let Some(addr) = pool.ring_addr() else {
            return Err(io::Error::other("a free-list pool"));
        };
        let register = |flags: u16| {
            // SAFETY: the ring's entries live in the pool's memory, which the loop keeps (through
            // its `Rc<Pool>`) until `unregister_pool` ran after the last CQE; on failure nothing
            // was registered.
            unsafe {
                self.ring.submitter().register_buf_ring_with_flags(
                    addr,
                    pool.count(),
                    POOL_GROUP,
                    flags,
                )
            }
        };
        let taken = if incremental && register(IOU_PBUF_RING_INC).is_ok() {
            true
        } else if let Err(e) = register(0) {
            return Err(e);
        } else {
            false
        };
        if taken {
            pool.set_incremental();
        }
        let pool = Rc::new(pool);
        self.pool_registered = true;
        self.pool = Some(pool.clone());
        Ok(pool)
    }

    /// Unregisters the pool's buffer ring (every CQE came in, so no op selects from it).
    pub(super) fn unregister_pool(&mut self) {
        if std::mem::take(&mut self.pool_registered) {
            let _ = self.ring.submitter().unregister_buf_ring(POOL_GROUP);
        }
    }

    /// Whether every CQE came in (after `shutdown`): nothing the kernel may write is still in use.
    /// Registers `iovecs` as the ring's buffer table (`IORING_REGISTER_BUFFERS`).
    pub(in crate::driver) fn register_buffers(&mut self, iovecs: &[libc::iovec]) -> io::Result<()> {
        let bytes: usize = iovecs.iter().map(|v| v.iov_len).sum();
        // SAFETY: every iovec describes memory of a `FixedBufs` set, which the driver keeps
        // alive (`DriverCell::fixed`) until it unregisters the table or the ring is gone, and
        // which ops in flight keep through the `FixedBuf` they own.
        unsafe { self.ring.submitter().register_buffers(iovecs) }.map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ENOMEM) => {
                    "the kernel could not pin the memory: raise RLIMIT_MEMLOCK (ulimit -l; \
                     kernels before 5.12) or the memory cgroup's limit, or register fewer or \
                     smaller buffers"
                }
                Some(libc::EBUSY) => "the ring has a buffer table already",
                _ => "the kernel refused the registration",
            };
            io::Error::new(
                if e.raw_os_error() == Some(libc::ENOMEM) {
                    io::ErrorKind::OutOfMemory
                } else {
                    e.kind()
                },
                format!(
                    "FixedBufs::register: registering {} buffers ({bytes} bytes) failed: {e}: {why}",
                    iovecs.len()
                ),
            )
        })
    }

    /// Drops the ring's buffer table.
    pub(in crate::driver) fn unregister_buffers(&mut self) {
        // A fixed-buffer SQE names its buffer by index, and the kernel looks the index up when
        // it takes the SQE (and from then on holds the buffer until the op completes): SQEs
        // still queued go to the kernel first, or they would find no table and fail (EFAULT).
        while !self.sq_empty() {
            if self.submit_queued().is_err() {
                break; // the ring failed: nothing queued will reach the kernel
            }
        }
        let _ = self.ring.submitter().unregister_buffers();
    }
}
