//! The seed's demo 3: build a loop, run one coroutine, close the loop.
//!
//! ```text
//! cargo run --example hello
//! RINGLOOP_BACKEND=epoll cargo run --example hello
//! ```
//!
//! Prints four lines on stdout; the backend it ran on goes to stderr.

use std::process::ExitCode;

async fn coroutine() {
    println!("in coroutine");
}

fn main() -> ExitCode {
    let mut event_loop = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("hello: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    match event_loop.fallback_reason() {
        Some(why) => eprintln!(
            "backend: {} (io_uring unavailable: {why})",
            event_loop.backend()
        ),
        None => eprintln!("backend: {}", event_loop.backend()),
    }
    println!("starting coroutine");
    let coro = coroutine();
    println!("entering event loop");
    event_loop.run_until_complete(coro);
    println!("closing event loop");
    event_loop.close();
    ExitCode::SUCCESS
}
