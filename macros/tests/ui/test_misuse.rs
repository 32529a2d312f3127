#[ringloop::test]
fn not_async() {}

#[ringloop::test]
async fn with_arguments(n: u32) {
    drop(n);
}

#[ringloop::test]
#[test]
async fn marked_twice() {}

#[ringloop::test(start_paused = "yes")]
async fn paused_takes_a_bool() {}

#[ringloop::test(backend = "epoll", backend = "uring")]
async fn backend_twice() {}

#[ringloop::test]
async fn generic<T>() {}

fn main() {}
