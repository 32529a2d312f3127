//! hyper 1.x on ringloop (feature `hyper`): `hyper::rt::Read` and `Write` for
//! [`PollIo`], an [`Executor`](::hyper::rt::Executor) that spawns on the loop ([`LocalExec`]),
//! and a [`Timer`](::hyper::rt::Timer) on the loop's timers ([`Timer`]).
//!
//! ```no_run
//! # // Needs hyper's `server` and `http1` features in the caller's Cargo.toml.
//! # #[cfg(any())] {
//! use ringloop::compat::{PollIo, hyper::{LocalExec, Timer}};
//! let (stream, _) = listener.accept().await?;
//! ringloop::spawn(async move {
//!     let conn = hyper::server::conn::http1::Builder::new()
//!         .timer(Timer)
//!         .serve_connection(PollIo::new(stream), service);
//!     let _ = conn.await;
//! });
//! // HTTP/2 spawns a task per stream: give it LocalExec.
//! let h2 = hyper::server::conn::http2::Builder::new(LocalExec);
//! # }
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use ::hyper::rt::{self, ReadBufCursor};

use super::{PollIo, PollStream};
use crate::time::TimerKey;

impl<S: PollStream> rt::Read for PollIo<S> {
    /// Reads into the cursor's uninitialised part without zeroing it first.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: only the kernel (or the stash copy) writes into the slice, and `advance` marks
        // only the `n` bytes it wrote.
        let unfilled = unsafe { buf.as_mut() };
        let (ptr, len) = (unfilled.as_mut_ptr().cast::<u8>(), unfilled.len());
        // SAFETY: `ptr` is valid for writes of `len` bytes (the cursor's unfilled part).
        let n = ready!(unsafe { self.get_mut().poll_read_raw(cx, ptr, len) })?;
        // SAFETY: the first `n` bytes of the unfilled part were just initialised.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<S: PollStream> rt::Write for PollIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        PollIo::poll_write(self.get_mut(), cx, buf)
    }

    /// Nothing is buffered: always ready.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write side, once.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        PollIo::poll_shutdown(self.get_mut(), cx)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// One `sendmsg` for all the slices.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        PollIo::poll_write_vectored(self.get_mut(), cx, bufs)
    }
}

/// A `hyper::rt::Executor` that spawns on the running loop with [`crate::spawn`], so the futures
/// need not be `Send`. HTTP/2 connections (client and server) need one: each stream is a task.
///
/// # Panics
///
/// `execute` panics if no ringloop event loop runs on the calling thread (hyper calls it from the
/// connection's own task, which runs on the loop).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        crate::spawn(async move {
            drop(fut.await);
        });
    }
}

/// A `hyper::rt::Timer` on the loop's timers, for hyper's header-read timeout, keep-alive and
/// HTTP/2 pings (`.timer(Timer)` on a connection builder).
///
/// Its sleeps are `Send + Sync` as hyper requires, for real: a sleep holds only its deadline and
/// the key of the timer it armed, never a pointer into the loop. Dropped on the loop's thread it
/// disarms its timer; dropped on another thread it leaves the timer to fire once, unnoticed, at
/// its deadline.
///
/// # Panics
///
/// A sleep panics if it is polled (before its deadline) on a thread where no ringloop loop runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

impl rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(HyperSleep::new(deadline_after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(HyperSleep::new(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(s) => s.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// `now + duration`, or about 30 years on if that overflows.
fn deadline_after(duration: Duration) -> Instant {
    // On the loop's clock, which a test may have paused.
    let now = crate::time::Instant::now().into_std();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// hyper's sleep: a deadline and, once polled, the timer it armed (the store's id and key).
#[derive(Debug)]
struct HyperSleep {
    deadline: Instant,
    armed: Option<(u64, TimerKey)>,
}

impl HyperSleep {
    fn new(deadline: Instant) -> Self {
        HyperSleep {
            deadline,
            armed: None,
        }
    }

    fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    /// Disarms the timer if it belongs to the loop running on this thread; otherwise it fires once
    /// at its deadline, waking a task that no longer waits for it.
    fn disarm(&mut self) {
        if let Some((store_id, key)) = self.armed.take()
            && let Some(store) = crate::time::current()
        {
            let mut store = store.borrow_mut();
            if store.store_id() == store_id {
                store.remove(&key);
            }
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if crate::time::Instant::now().into_std() >= this.deadline {
            this.disarm();
            return Poll::Ready(());
        }
        let store = crate::time::current().unwrap_or_else(|| {
            panic!(
                "a ringloop compat::hyper::Timer sleep was polled outside a running event loop: \
                 drive the hyper connection from a task on a ringloop loop"
            )
        });
        let mut store = store.borrow_mut();
        if let Some((store_id, key)) = &this.armed
            && *store_id == store.store_id()
            && store.update_waker(key, cx.waker())
        {
            return Poll::Pending;
        }
        let key = store.insert(this.deadline, cx.waker().clone());
        this.armed = Some((store.store_id(), key));
        Poll::Pending
    }
}

impl rt::Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sleeps_and_timer_are_thread_safe() {
        assert_send_sync::<HyperSleep>();
        assert_send_sync::<Timer>();
    }
}
