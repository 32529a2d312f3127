//! A `tokio::signal` listener made before ringloop's keeps receiving (both register through
//! signal-hook-registry), on both backends. Here rather than in the library's `tests/signals.rs`
//! because it needs tokio's signal driver. Each test runs alone in a child process.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{in_child_or_run, raise};
use ringloop::Backend;
use ringloop::signal::{SignalKind, signal};

/// A `tokio::signal` listener made before ringloop's stopped receiving: ringloop's `sigaction`
/// replaced the handler tokio had installed. Both register through signal-hook-registry now.
fn a_tokio_listener_made_first_keeps_receiving(backend: Backend, name: &str) {
    if !in_child_or_run(name) {
        return;
    }
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let tokio_side = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut usr2 = signal(SignalKind::user_defined2()).unwrap();
            ready_tx.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(5), usr2.recv()).await
        })
    });
    ready.recv().unwrap();
    let mut lp = common::new_loop(backend);
    lp.run_until_complete(async {
        let mut usr2 = signal(SignalKind::user_defined2()).unwrap();
        raise("USR2");
        let got = ringloop::time::timeout(Duration::from_secs(5), usr2.recv()).await;
        assert_eq!(got.expect("ringloop's listener got nothing"), Some(()));
    });
    let got = tokio_side.join().unwrap();
    assert_eq!(
        got.expect("the tokio listener made first got nothing"),
        Some(())
    );
}

#[test]
fn uring_a_tokio_listener_made_first_keeps_receiving() {
    a_tokio_listener_made_first_keeps_receiving(
        Backend::Uring,
        "uring_a_tokio_listener_made_first_keeps_receiving",
    );
}

#[test]
fn epoll_a_tokio_listener_made_first_keeps_receiving() {
    a_tokio_listener_made_first_keeps_receiving(
        Backend::Epoll,
        "epoll_a_tokio_listener_made_first_keeps_receiving",
    );
}
