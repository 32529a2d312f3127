//! The `tracing` feature's data, as console-subscriber reads it, on both backends: a
//! `runtime.spawn` span (target `tokio::task`) per task with its name, id and spawn location,
//! entered once per poll; waker events (target `tokio::task::waker`) naming the span, with wakes,
//! clones and drops. A capturing subscriber stands in for console-subscriber.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Default, Debug)]
struct SpanSeen {
    name: String,
    target: String,
    fields: HashMap<String, String>,
    enters: u64,
    exits: u64,
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, SpanSeen>,
    /// (op, task.id) of each waker event.
    waker_events: Vec<(String, u64)>,
    next: u64,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut seen = self.0.lock().unwrap();
        seen.next += 1;
        let id = seen.next;
        let mut span = SpanSeen {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            ..SpanSeen::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        seen.spans.insert(id, span);
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == "tokio::task::waker" {
            let mut fields = HashMap::new();
            event.record(&mut Fields(&mut fields));
            let op = fields.get("op").cloned().unwrap_or_default();
            let id = fields
                .get("task.id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.0.lock().unwrap().waker_events.push((op, id));
        }
    }
    fn enter(&self, span: &Id) {
        if let Some(s) = self.0.lock().unwrap().spans.get_mut(&span.into_u64()) {
            s.enters += 1;
        }
    }
    fn exit(&self, span: &Id) {
        if let Some(s) = self.0.lock().unwrap().spans.get_mut(&span.into_u64()) {
            s.exits += 1;
        }
    }
}

both_backends! {
    fn tasks_are_spans_and_wakers_are_events(lp: &mut EventLoop) {
        if !common::in_child() {
            // Alone in a process: tracing caches each callsite's interest process-wide, and a
            // test running at the same time with another subscriber (or none) can leave it
            // cached as "never" for this one.
            common::run_in_child(
                &common::test_path(lp.backend(), "tasks_are_spans_and_wakers_are_events"),
                &[],
            );
            return;
        }
        let capture = Capture::default();
        let seen = capture.0.clone();
        let line = line!() + 4; // the spawn_named call below
        let polls = tracing::subscriber::with_default(capture, || {
            lp.run_until_complete(async move {
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let worker = ringloop::spawn_named("worker", async move {
                    ringloop::time::sleep(Duration::from_millis(5)).await;
                    // A wake from another thread, through a cloned waker.
                    let waker = std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
                    let thread = std::thread::spawn(move || {
                        rx.recv().unwrap();
                        waker.wake();
                    });
                    // Pending once after waking itself by reference.
                    let mut once = false;
                    std::future::poll_fn(|cx| {
                        if std::mem::replace(&mut once, true) {
                            std::task::Poll::Ready(())
                        } else {
                            cx.waker().wake_by_ref();
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                    ringloop::yield_now().await;
                    thread
                });
                tx.send(()).unwrap();
                let thread = worker.await.unwrap();
                thread.join().unwrap();
                ringloop::current_task().map(|t| t.polls())
            })
        });
        let _ = polls;
        let seen = seen.lock().unwrap();
        let (id, span) = seen
            .spans
            .iter()
            .find(|(_, s)| s.fields.get("task.name").map(String::as_str) == Some("worker"))
            .expect("a span for the task named worker");
        assert_eq!((span.name.as_str(), span.target.as_str()), ("runtime.spawn", "tokio::task"));
        assert_eq!(span.fields.get("kind").map(String::as_str), Some("task"));
        assert!(span.fields.get("loc.file").is_some_and(|f| f.ends_with("tracing.rs")), "{span:?}");
        assert_eq!(span.fields.get("loc.line"), Some(&line.to_string()), "{span:?}");
        assert!(span.fields.contains_key("loc.col") && span.fields.contains_key("task.id"));
        // Entered once per poll: the first poll, after the sleep, after the wake by reference,
        // after yield_now (at least four), and every enter has its exit.
        assert!(span.enters >= 4, "{span:?}");
        assert_eq!(span.enters, span.exits);
        let ops: Vec<&str> = seen
            .waker_events
            .iter()
            .filter(|(_, task)| task == id)
            .map(|(op, _)| op.as_str())
            .collect();
        for op in ["waker.clone", "waker.wake", "waker.drop"] {
            assert!(ops.contains(&op), "no {op} among {ops:?}");
        }
        assert!(ops.contains(&"waker.wake_by_ref"), "{ops:?}");
    }
}

/// Without a subscriber the tasks run as ever (spans are disabled no-ops).
#[test]
fn no_subscriber_no_effect() {
    let mut lp = common::new_loop(ringloop::Backend::Epoll);
    let n = lp.run_until_complete(async {
        let handles: Vec<_> = (0..100)
            .map(|i| ringloop::spawn_named(format!("t{i}"), async move { i }))
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(n, 4950);
}
