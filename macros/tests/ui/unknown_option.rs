#[ringloop::main(flavor = "current_thread")]
async fn main() {}

#[ringloop::test(worker_threads = 2)]
async fn a_test() {}
