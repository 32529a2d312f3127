//! Debug mode's slow-poll warning: a task that blocks the loop with `std::thread::sleep(200 ms)`
//! inside one poll. Run with `RINGLOOP_DEBUG=1` and the loop names that task on stderr:
//!
//! ```text
//! RINGLOOP_DEBUG=1 cargo run --example slow_poll
//! ringloop: task "blocking-task" (spawned at examples/slow_poll.rs:..) blocked the loop for 200.1 ms in one poll ...
//! ```
//!
//! Without `RINGLOOP_DEBUG=1` it runs the same and prints nothing about it.

use std::time::{Duration, Instant};

fn main() {
    ringloop::run(async {
        let ticker = ringloop::spawn_named("ticker", async {
            // Ticks every 50 ms; the blocking task makes one tick late.
            let mut last = Instant::now();
            for _ in 0..6 {
                ringloop::time::sleep(Duration::from_millis(50)).await;
                println!("tick after {:>3} ms", last.elapsed().as_millis());
                last = Instant::now();
            }
        });
        let blocker = ringloop::spawn_named("blocking-task", async {
            ringloop::time::sleep(Duration::from_millis(60)).await;
            // Wrong in async code: this blocks every task of the loop for 200 ms. Debug mode
            // names this task; the fix is ringloop::spawn_blocking.
            std::thread::sleep(Duration::from_millis(200));
        });
        blocker.await.unwrap();
        ticker.await.unwrap();
    });
}
