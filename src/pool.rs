//! A pool of event loops, one per thread (thread-per-core): `LoopPool`, `PoolBuilder` and the
//! `LoopContext` each loop's future gets. No work stealing: what a loop accepts, it serves.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use crate::{Backend, EventLoop, JoinError, LoopHandle, Shutdown};

/// The default ring size, as on [`Builder`](crate::Builder).
const DEFAULT_ENTRIES: u32 = 256;

/// What each loop's future is handed: its index, every loop's handle, and the pool's shutdown
/// signal. `Clone`; it need not be `Send`.
#[derive(Clone)]
pub struct LoopContext {
    index: usize,
    handles: Arc<Vec<LoopHandle>>,
    shutdown: Shutdown,
}

impl fmt::Debug for LoopContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopContext")
            .field("index", &self.index)
            .field("len", &self.handles.len())
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl LoopContext {
    /// This loop's index in the pool, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many loops the pool has.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether the pool has no loops (never: a pool has at least one).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The handle of loop `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= len()`.
    pub fn handle(&self, i: usize) -> LoopHandle {
        self.handles[i].clone()
    }

    /// The pool's shutdown signal: await [`Shutdown::triggered`] to know when to stop.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }
}

/// Configures a [`LoopPool`]. Every setter takes and returns `self`, as [`Builder`](crate::Builder)'s do.
///
/// # Examples
///
/// ```
/// use ringloop::LoopPool;
/// let pool = LoopPool::builder()
///     .threads(2)
///     .start(|cx| async move { cx.index() * 10 })
///     .unwrap();
/// let outs: Vec<usize> = pool.join().into_iter().map(|r| r.unwrap()).collect();
/// assert_eq!(outs, vec![0, 10]);
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    threads: usize,
    pin: bool,
    backend: Option<Backend>,
    entries: u32,
    thread_name: String,
    shutdown_on_signals: bool,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            pin: false,
            backend: None,
            entries: DEFAULT_ENTRIES,
            thread_name: "ringloop".to_owned(),
            shutdown_on_signals: false,
        }
    }
}

impl PoolBuilder {
    /// How many loops (threads). Default: the available parallelism. More loops than cores works.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Pins loop `i` to the `i`-th CPU the process may run on (wrapping). Default false.
    pub fn pin(mut self, on: bool) -> Self {
        self.pin = on;
        self
    }

    /// Forces a backend for every loop, as [`Builder::backend`](crate::Builder::backend).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The ring size of every loop, as [`Builder::entries`](crate::Builder::entries).
    pub fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// The threads' name prefix: loop `i` runs on a thread named `PREFIX-i`. Default `ringloop`.
    pub fn thread_name(mut self, prefix: &str) -> Self {
        self.thread_name = prefix.to_owned();
        self
    }

    /// SIGINT and SIGTERM trigger the pool's shutdown signal (default false). After the first
    /// one, the next SIGINT or SIGTERM takes its default action: a second Ctrl-C kills the process
    /// as usual. The listeners are in place when [`start`](PoolBuilder::start) returns and go
    /// when loop 0 closes; a pool that shut down without a signal leaves nothing of this behind
    /// (a later listener for either signal receives every delivery).
    pub fn shutdown_on_signals(mut self, on: bool) -> Self {
        self.shutdown_on_signals = on;
        self
    }

    /// Builds every loop, each on its own thread, then runs `f(context)` on each.
    ///
    /// Every loop is built before this returns; a loop's future starts only once all are built,
    /// so its [`LoopContext`] reaches every loop.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 threads; the first error building a loop (a forced `uring` the kernel
    /// refuses, a bad `RINGLOOP_BACKEND`, `EMFILE`) or pinning or spawning a thread. No thread is
    /// left running then.
    pub fn start<F, Fut>(self, f: F) -> io::Result<LoopPool<Fut::Output>>
    where
        F: Fn(LoopContext) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        if self.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "PoolBuilder::threads must be at least 1",
            ));
        }
        let cpus = if self.pin {
            allowed_cpus()?
        } else {
            Vec::new()
        };
        let f = Arc::new(f);
        let shutdown = Shutdown::new();
        let on_signals = if self.shutdown_on_signals {
            Some(crate::signal::shutdown_on(shutdown.clone())?)
        } else {
            None
        };
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, io::Result<LoopHandle>)>();
        let mut go = Vec::with_capacity(self.threads);
        let mut threads = Vec::with_capacity(self.threads);
        let mut failure = None;
        for i in 0..self.threads {
            let (go_tx, go_rx) = mpsc::channel::<Option<Arc<Vec<LoopHandle>>>>();
            let ready_tx = ready_tx.clone();
            let f = f.clone();
            let shutdown = shutdown.clone();
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let (entries, backend) = (self.entries, self.backend);
            let spawned = thread::Builder::new()
                .name(format!("{}-{i}", self.thread_name))
                .spawn(move || -> Result<Fut::Output, JoinError> {
                    // Built on its thread: a `Builder` may hold a non-`Send` slow-poll hook.
                    let builder = EventLoop::builder().entries(entries);
                    let builder = match backend {
                        Some(backend) => builder.backend(backend),
                        None => builder,
                    };
                    let built = cpu.map_or(Ok(()), pin_to).and_then(|()| builder.build());
                    let mut lp = match built {
                        Ok(lp) => {
                            let _ = ready_tx.send((i, Ok(lp.handle())));
                            lp
                        }
                        Err(e) => {
                            let _ = ready_tx.send((i, Err(e)));
                            return Err(JoinError::cancelled());
                        }
                    };
                    drop(ready_tx);
                    let Ok(Some(handles)) = go_rx.recv() else {
                        return Err(JoinError::cancelled()); // another loop failed to build
                    };
                    let cx = LoopContext {
                        index: i,
                        handles,
                        shutdown: shutdown.clone(),
                    };
                    let out = catch_unwind(AssertUnwindSafe(|| lp.run_until_complete(f(cx))));
                    lp.close();
                    out.map_err(|payload| {
                        // Tell the other loops, so they return too.
                        shutdown.trigger();
                        JoinError::panic(payload)
                    })
                });
            match spawned {
                Ok(t) => {
                    threads.push(t);
                    go.push(go_tx);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(ready_tx);
        let mut handles: Vec<Option<LoopHandle>> = vec![None; threads.len()];
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok((i, Ok(h))) => handles[i] = Some(h),
                Ok((_, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(io::Error::other("a loop thread died while starting"));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // Nobody starts: every thread gets `None`, closes its loop and ends.
            drop(go);
            for t in threads {
                let _ = t.join();
            }
            return Err(e);
        }
        let handles: Vec<LoopHandle> = handles
            .into_iter()
            .map(|h| h.expect("every loop reported"))
            .collect();
        let all = Arc::new(handles.clone());
        if let Some(make) = on_signals {
            // Queued before loop 0 starts its future: it runs at loop 0's first turn.
            drop(handles[0].spawn_with(make));
        }
        for tx in &go {
            let _ = tx.send(Some(all.clone()));
        }
        Ok(LoopPool {
            handles,
            shutdown,
            threads: threads.into_iter().map(Some).collect(),
        })
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the live set for an index below its capacity.
    let cpus: Vec<usize> = (0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    if cpus.is_empty() {
        return Err(io::Error::other("sched_getaffinity returned no CPU"));
    }
    Ok(cpus)
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `allowed_cpus`, below the set's capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot pin a loop thread to CPU {cpu}: {e}"),
        ));
    }
    Ok(())
}

/// A pool of event loops, one per thread, each running the future [`PoolBuilder::start`] made
/// for it. Dropping the pool triggers its shutdown signal and joins every thread.
///
/// # Examples
///
/// Every loop serves one port (`SO_REUSEPORT`) until the pool shuts down:
///
/// ```
/// use ringloop::LoopPool;
/// use ringloop::net::TcpListener;
///
/// let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let pool = LoopPool::builder().threads(2).start(move |cx| async move {
///     let listener = TcpListener::builder().reuse_port(true).bind(("127.0.0.1", port)).unwrap();
///     let stop = cx.shutdown().triggered();
///     let mut stop = std::pin::pin!(stop);
///     let mut served = 0;
///     loop {
///         let accept = std::pin::pin!(listener.accept());
///         match futures_select(accept, stop.as_mut()).await {
///             Some(Ok(_)) => served += 1,
///             _ => return served,
///         }
///     }
/// }).unwrap();
/// pool.shutdown();
/// assert_eq!(pool.join().into_iter().map(|r| r.unwrap()).sum::<usize>(), 0);
///
/// // A two-way select for the example: `Some` when `a` wins, `None` when `b` does.
/// async fn futures_select<A: std::future::Future, B: std::future::Future>(
///     mut a: std::pin::Pin<&mut A>,
///     mut b: std::pin::Pin<&mut B>,
/// ) -> Option<A::Output> {
///     std::future::poll_fn(|cx| {
///         if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
///             return std::task::Poll::Ready(Some(v));
///         }
///         b.as_mut().poll(cx).map(|_| None)
///     })
///     .await
/// }
/// ```
pub struct LoopPool<T> {
    handles: Vec<LoopHandle>,
    shutdown: Shutdown,
    threads: Vec<Option<thread::JoinHandle<Result<T, JoinError>>>>,
}

impl<T> fmt::Debug for LoopPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopPool")
            .field("len", &self.handles.len())
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl LoopPool<()> {
    /// A builder; [`PoolBuilder::start`] picks the pool's output type.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

impl<T> LoopPool<T> {
    /// How many loops.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether the pool has no loops (never: a pool has at least one).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The handle of loop `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= len()`.
    pub fn handle(&self, i: usize) -> LoopHandle {
        self.handles[i].clone()
    }

    /// The pool's shutdown signal (the one every [`LoopContext::shutdown`] returns).
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Triggers the pool's shutdown signal. Loops stop when their futures return.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Waits for every loop's future and returns their outputs in loop order. A loop whose
    /// future panicked gives a [`JoinError`] with [`is_panic`](JoinError::is_panic); the pool's
    /// shutdown signal was triggered then, so the others can return too.
    pub fn join(mut self) -> Vec<Result<T, JoinError>> {
        self.threads
            .iter_mut()
            .map(|t| match t.take().map(thread::JoinHandle::join) {
                Some(Ok(res)) => res,
                Some(Err(payload)) => Err(JoinError::panic(payload)),
                None => Err(JoinError::cancelled()),
            })
            .collect()
    }
}

impl<T> Drop for LoopPool<T> {
    fn drop(&mut self) {
        if self.threads.iter().any(Option::is_some) {
            self.shutdown.trigger();
            for t in self.threads.iter_mut().filter_map(Option::take) {
                let _ = t.join();
            }
        }
    }
}
