//! `tracing` data for tokio-console (cargo feature `tracing`): a span per task and the events of
//! its waker, in the shape `console-subscriber` reads.
//!
//! - The task's span: target `tokio::task`, name `runtime.spawn`, with the fields `kind`,
//!   `task.name`, `task.id`, `loc.file`, `loc.line`, `loc.col`. It is entered around each poll,
//!   which is how the console counts polls and busy time.
//! - Waker events: target `tokio::task::waker`, `op` one of `waker.clone`, `waker.drop`,
//!   `waker.wake`, `waker.wake_by_ref`, and `task.id` the span's id. For those the task's waker
//!   is built on a vtable of its own here, since `std::task::Wake` has no hook for clone and drop.
//!
//! With the feature off none of this is compiled. With it on and no subscriber, a span is a
//! disabled no-op and each event is one check of a cached callsite interest.

use std::mem::ManuallyDrop;
use std::panic::Location;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Wake, Waker};

use super::waker::TaskWaker;

/// The span of a new task.
pub(crate) fn task_span(id: u64, name: Option<&str>, spawned_at: &Location<'_>) -> tracing::Span {
    tracing::trace_span!(
        target: "tokio::task",
        "runtime.spawn",
        kind = "task",
        task.name = name.unwrap_or(""),
        task.id = id,
        loc.file = spawned_at.file(),
        loc.line = spawned_at.line(),
        loc.col = spawned_at.column(),
    )
}

fn event(header: &TaskWaker, op: &'static str) {
    if let Some(span) = header.span_id() {
        tracing::trace!(target: "tokio::task::waker", op, task.id = span);
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// The task's waker: as `Waker::from(header)`, with an event per clone, drop and wake.
pub(crate) fn waker(header: Arc<TaskWaker>) -> Waker {
    let ptr = Arc::into_raw(header).cast::<()>();
    // SAFETY: `ptr` comes from `Arc::into_raw` and the vtable's functions treat it as one strong
    // reference of that `Arc<TaskWaker>`, as its contract asks.
    unsafe { Waker::from_raw(RawWaker::new(ptr, &VTABLE)) }
}

/// The `Arc` behind a waker's data pointer, without taking its reference.
///
/// # Safety
///
/// `ptr` must come from `waker` (one strong reference of an `Arc<TaskWaker>` still held).
unsafe fn borrow(ptr: *const ()) -> ManuallyDrop<Arc<TaskWaker>> {
    // SAFETY: the caller promises `ptr` is a live `Arc<TaskWaker>` pointer; `ManuallyDrop`
    // keeps this copy from releasing the reference it does not own.
    ManuallyDrop::new(unsafe { Arc::from_raw(ptr.cast::<TaskWaker>()) })
}

unsafe fn clone(ptr: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned holds a reference, so the count is at least one.
    unsafe { Arc::increment_strong_count(ptr.cast::<TaskWaker>()) };
    // SAFETY: as above.
    let header = unsafe { borrow(ptr) };
    event(&header, "waker.clone");
    RawWaker::new(ptr, &VTABLE)
}

unsafe fn wake(ptr: *const ()) {
    // SAFETY: `wake` consumes the waker's reference, which this `Arc` now owns.
    let header = unsafe { Arc::from_raw(ptr.cast::<TaskWaker>()) };
    event(&header, "waker.wake");
    header.wake();
}

unsafe fn wake_by_ref(ptr: *const ()) {
    // SAFETY: the waker holds its reference for the duration of the call.
    let header = unsafe { borrow(ptr) };
    event(&header, "waker.wake_by_ref");
    header.wake_by_ref();
}

unsafe fn drop_waker(ptr: *const ()) {
    // SAFETY: `drop` consumes the waker's reference, released when this `Arc` goes.
    let header = unsafe { Arc::from_raw(ptr.cast::<TaskWaker>()) };
    event(&header, "waker.drop");
}
