//! Calls every method of `echo.Echo` with a tonic client on a ringloop connection and checks the
//! answers: `grpc_client [ADDR]` (default 127.0.0.1:50051). Exits non-zero on a wrong answer.
//!
//! `grpc_client --calls N [ADDR]` instead makes N unary calls, 32 at a time, and prints the rate.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringloop_grpc::pb::{EchoRequest, SleepRequest, StatsRequest, StreamRequest};
use tonic::{Code, Request};

type Error = Box<dyn std::error::Error>;

fn check(ok: bool, what: String) -> Result<(), Error> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("wrong: {what}").into())
    }
}

async fn every_method(addr: SocketAddr) -> Result<(), Error> {
    let mut client = ringloop_grpc::connect(addr).await?;

    let reply = client
        .unary(EchoRequest {
            message: "hello".into(),
        })
        .await?
        .into_inner();
    check(
        reply.message == "hello",
        format!("unary answered {:?}", reply.message),
    )?;

    let mut stream = client
        .server_stream(StreamRequest {
            message: "part".into(),
            count: 5,
        })
        .await?
        .into_inner();
    let mut got = Vec::new();
    while let Some(reply) = stream.message().await? {
        got.push(reply.message);
    }
    check(
        got == ["part 0", "part 1", "part 2", "part 3", "part 4"],
        format!("server stream: {got:?}"),
    )?;

    let requests = ["a", "b", "c"].map(|m| EchoRequest { message: m.into() });
    let reply = client
        .client_stream(futures::stream::iter(requests))
        .await?
        .into_inner();
    check(
        reply.message == "a,b,c",
        format!("client stream answered {:?}", reply.message),
    )?;

    let requests = (0..10).map(|i| EchoRequest {
        message: format!("bidi {i}"),
    });
    let mut stream = client
        .bidi(futures::stream::iter(requests))
        .await?
        .into_inner();
    let mut n = 0;
    while let Some(reply) = stream.message().await? {
        if reply.message != format!("bidi {n}") {
            return Err(format!("bidi reply {n} was {:?}", reply.message).into());
        }
        n += 1;
    }
    check(n == 10, format!("bidi: {n} replies in order"))?;

    let before = client.stats(StatsRequest {}).await?.into_inner().cancelled;
    // A deadline the server enforces: the handler is dropped, the client gets DEADLINE_EXCEEDED.
    let mut req = Request::new(SleepRequest { millis: 5_000 });
    req.set_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let status = client
        .sleep(req)
        .await
        .expect_err("a 5 s sleep beat a 100 ms deadline");
    check(
        status.code() == Code::DeadlineExceeded && start.elapsed() < Duration::from_secs(2),
        format!("deadline: {:?} after {:?}", status.code(), start.elapsed()),
    )?;
    // A call the client gives up on: the stream is reset and the server drops the handler.
    let call = client.sleep(SleepRequest { millis: 5_000 });
    let gave_up = ringloop::time::timeout(Duration::from_millis(100), call).await;
    check(gave_up.is_err(), "cancelled call did not finish".into())?;
    ringloop::time::sleep(Duration::from_millis(100)).await;
    let after = client.stats(StatsRequest {}).await?.into_inner().cancelled;
    check(
        after - before == 2,
        format!(
            "server dropped {} handlers (deadline, cancel)",
            after - before
        ),
    )?;
    Ok(())
}

async fn load(addr: SocketAddr, calls: usize) -> Result<(), Error> {
    let client = ringloop_grpc::connect(addr).await?;
    let start = Instant::now();
    let mut group = ringloop::JoinSet::new();
    let per = calls.div_ceil(32);
    for _ in 0..32 {
        let mut client = client.clone();
        group.spawn(async move {
            for _ in 0..per {
                client
                    .unary(EchoRequest {
                        message: "x".repeat(64),
                    })
                    .await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(res) = group.join_next().await {
        res.map_err(|e| e.to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} unary calls in {secs:.2} s: {:.0} calls/s",
        per * 32,
        (per * 32) as f64 / secs
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:50051".to_owned();
    let mut calls = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => calls = args.next().and_then(|n| n.parse::<usize>().ok()),
            "-h" | "--help" => {
                println!("usage: grpc_client [--calls N] [ADDR]   (default 127.0.0.1:50051)");
                return ExitCode::SUCCESS;
            }
            a => addr = a.to_owned(),
        }
    }
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("grpc_client: {addr:?} is not an IP:PORT address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = ringloop::run(async move {
        match calls {
            Some(n) => load(addr, n).await,
            None => every_method(addr).await,
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_client: {e}");
            ExitCode::FAILURE
        }
    }
}
