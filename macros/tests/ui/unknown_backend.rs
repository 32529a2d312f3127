#[ringloop::main(backend = "kqueue")]
async fn main() {}

#[ringloop::test(backend = "io_uring")]
async fn spelled_like_the_env_var() {}

#[ringloop::test(backend = "auto")]
async fn auto_is_the_default() {}

#[ringloop::test(backend = epoll)]
async fn not_a_string() {}
