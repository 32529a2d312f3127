//! The gRPC example end to end in one process, on both backends: a tonic client on a ringloop
//! connection calls every kind of method of the service served by `compat::axum::serve`; a
//! deadline and a client that gives up both drop the server's handler.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringloop::Backend;
use ringloop::net::TcpListener;
use ringloop_grpc::pb::{EchoRequest, SleepRequest, StatsRequest, StreamRequest};
use ringloop_grpc::{EchoService, router};
use tonic::{Code, Request};

fn on(backend: Backend, test: impl AsyncFnOnce(SocketAddr)) {
    let mut lp = ringloop::EventLoop::builder()
        .backend(backend)
        .build()
        .unwrap_or_else(|e| panic!("the {backend} backend is required here but failed: {e}"));
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        ringloop::spawn(async move {
            ringloop::compat::axum::serve(listener, router(EchoService::default()))
                .await
                .unwrap()
        });
        test(addr).await;
    });
    lp.close();
}

async fn every_kind_of_call(addr: SocketAddr) {
    let mut client = ringloop_grpc::connect(addr).await.unwrap();
    let reply = client
        .unary(EchoRequest {
            message: "hi".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "hi");

    let req = StreamRequest {
        message: "s".into(),
        count: 300,
    };
    let mut stream = client.server_stream(req).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(r) = stream.message().await.unwrap() {
        assert_eq!(r.message, format!("s {n}"));
        n += 1;
    }
    assert_eq!(n, 300);

    let too_many = StreamRequest {
        message: "s".into(),
        count: u32::MAX,
    };
    let status = client.server_stream(too_many).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let reqs = (0..50).map(|i| EchoRequest {
        message: i.to_string(),
    });
    let reply = client
        .client_stream(futures::stream::iter(reqs))
        .await
        .unwrap();
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(reply.into_inner().message, want.join(","));

    let reqs = (0..50).map(|i| EchoRequest {
        message: format!("b{i}"),
    });
    let mut stream = client
        .bidi(futures::stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(r) = stream.message().await.unwrap() {
        assert_eq!(r.message, format!("b{n}"));
        n += 1;
    }
    assert_eq!(n, 50);
}

async fn deadlines_and_cancels_drop_the_handler(addr: SocketAddr) {
    let mut client = ringloop_grpc::connect(addr).await.unwrap();
    let cancelled = async |client: &mut ringloop_grpc::Client| {
        client
            .stats(StatsRequest {})
            .await
            .unwrap()
            .into_inner()
            .cancelled
    };
    assert_eq!(cancelled(&mut client).await, 0);

    let mut req = Request::new(SleepRequest { millis: 10_000 });
    req.set_timeout(Duration::from_millis(50));
    let start = Instant::now();
    let status = client.sleep(req).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(cancelled(&mut client).await, 1);

    let call = client.sleep(SleepRequest { millis: 10_000 });
    assert!(
        ringloop::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err()
    );
    let mut seen = 1;
    for _ in 0..100 {
        seen = cancelled(&mut client).await;
        if seen == 2 {
            break;
        }
        ringloop::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 2, "the handler of the abandoned call was not dropped");

    // A handler that finishes in time is not counted.
    let mut req = Request::new(SleepRequest { millis: 10 });
    req.set_timeout(Duration::from_secs(5));
    assert_eq!(
        client.sleep(req).await.unwrap().into_inner().message,
        "slept 10 ms"
    );
    assert_eq!(cancelled(&mut client).await, 2);
}

mod uring {
    use super::*;

    #[test]
    fn every_kind_of_call() {
        on(Backend::Uring, super::every_kind_of_call);
    }

    #[test]
    fn deadlines_and_cancels_drop_the_handler() {
        on(
            Backend::Uring,
            super::deadlines_and_cancels_drop_the_handler,
        );
    }
}

mod epoll {
    use super::*;

    #[test]
    fn every_kind_of_call() {
        on(Backend::Epoll, super::every_kind_of_call);
    }

    #[test]
    fn deadlines_and_cancels_drop_the_handler() {
        on(
            Backend::Epoll,
            super::deadlines_and_cancels_drop_the_handler,
        );
    }
}
