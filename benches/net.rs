//! Network benches: echo ping-pong, streaming, and the bare cost of one op round trip.
//!
//! The server runs its own loop on a thread of its own; the client runs on the bench thread. Both
//! sides use the runtime under test (uring backend, epoll backend, tokio current_thread), so a
//! figure is what two programs on that runtime get from each other over loopback.
//!
//! ```text
//! cargo bench -p ringloop-benches --bench net
//! cargo bench -p ringloop-benches --bench net -- echo_64B      # one group
//! ```

mod support;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_channel::oneshot;
use ringloop::Backend;
use support::{ALL, Rt};

/// What the bench server does with a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// Write back whatever comes in.
    Echo,
    /// Read and discard; send one byte back per `CHUNK` bytes received, so the writer knows when
    /// all it wrote has arrived.
    Sink,
}

const CHUNK: usize = 64 * 1024;
const BUF: usize = 64 * 1024;

/// A server thread, stopped and joined on drop.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the bench server panicked");
        }
    }
}

fn start_server(rt: Rt, serve: Serve) -> Server {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        if serve == Serve::Sink {
            support::pin_to_cpu(0);
        }
        match rt.backend() {
            Some(backend) => ringloop_server(backend, serve, addr_tx, stopped),
            None => tokio_server(serve, addr_tx, stopped),
        }
    });
    let addr = addr_rx.recv().expect("the bench server did not start");
    Server {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

fn ringloop_server(
    backend: Backend,
    serve: Serve,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    stopped: oneshot::Receiver<()>,
) {
    use ringloop::net::{TcpListener, TcpStream};
    async fn conn(s: TcpStream, serve: Serve) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(BUF);
        let mut total = 0usize;
        loop {
            let (res, b) = s.read(buf).await;
            buf = b;
            let n = res?;
            if n == 0 {
                return Ok(());
            }
            match serve {
                Serve::Echo => {
                    let (res, b) = s.write_all(buf).await;
                    buf = b;
                    res?;
                }
                Serve::Sink => {
                    let acks = (total + n) / CHUNK - total / CHUNK;
                    total += n;
                    if acks > 0 {
                        s.write_all(vec![1u8; acks]).await.0?;
                    }
                }
            }
        }
    }
    let mut lp = support::ringloop(backend);
    lp.run_until_complete(async move {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        ringloop::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                s.set_nodelay(true).unwrap();
                ringloop::spawn(conn(s, serve));
            }
        });
        let _ = stopped.await;
    });
    lp.close();
}

fn tokio_server(
    serve: Serve,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    stopped: oneshot::Receiver<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    async fn conn(mut s: TcpStream, serve: Serve) -> std::io::Result<()> {
        let mut buf = vec![0u8; BUF];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            match serve {
                Serve::Echo => s.write_all(&buf[..n]).await?,
                Serve::Sink => {
                    let acks = (total + n) / CHUNK - total / CHUNK;
                    total += n;
                    if acks > 0 {
                        s.write_all(&vec![1u8; acks]).await?;
                    }
                }
            }
        }
    }
    let rt = support::tokio();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                s.set_nodelay(true).unwrap();
                tokio::spawn(conn(s, serve));
            }
        });
        let _ = stopped.await;
    });
}

/// The client side: `conns` connections on the runtime under test, kept open across samples.
enum Client {
    Ringloop(ringloop::EventLoop, Vec<ringloop::net::TcpStream>),
    Tokio(tokio::runtime::Runtime, Vec<tokio::net::TcpStream>),
}

impl Client {
    fn connect(rt: Rt, addr: SocketAddr, conns: usize) -> Client {
        match rt.backend() {
            Some(backend) => {
                let mut lp = support::ringloop(backend);
                let streams = lp.run_until_complete(async {
                    let mut v = Vec::with_capacity(conns);
                    for _ in 0..conns {
                        let s = ringloop::net::TcpStream::connect(addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        v.push(s);
                    }
                    v
                });
                Client::Ringloop(lp, streams)
            }
            None => {
                let rt = support::tokio();
                let streams = rt.block_on(async {
                    let mut v = Vec::with_capacity(conns);
                    for _ in 0..conns {
                        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        v.push(s);
                    }
                    v
                });
                Client::Tokio(rt, streams)
            }
        }
    }

    /// Runs `work` on every connection at once, each in a task of its own that hands its stream
    /// back, and returns how long that took.
    fn each<R, RF, T, TF>(&mut self, ringloop_work: R, tokio_work: T) -> Duration
    where
        R: Fn(ringloop::net::TcpStream) -> RF,
        RF: Future<Output = ringloop::net::TcpStream> + 'static,
        T: Fn(tokio::net::TcpStream) -> TF,
        TF: Future<Output = tokio::net::TcpStream> + Send + 'static,
    {
        match self {
            Client::Ringloop(lp, streams) => lp.run_until_complete(async {
                let start = Instant::now();
                let tasks: Vec<_> = streams
                    .drain(..)
                    .map(|s| ringloop::spawn(ringloop_work(s)))
                    .collect();
                for t in tasks {
                    streams.push(t.await.unwrap());
                }
                start.elapsed()
            }),
            Client::Tokio(rt, streams) => rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = streams
                    .drain(..)
                    .map(|s| tokio::spawn(tokio_work(s)))
                    .collect();
                for t in tasks {
                    streams.push(t.await.unwrap());
                }
                start.elapsed()
            }),
        }
    }

    /// Every connection does `rounds` echo round trips of `size` bytes, all connections at once.
    fn echo(&mut self, rounds: u64, size: usize) -> Duration {
        self.each(
            move |s: ringloop::net::TcpStream| async move {
                let mut msg = vec![7u8; size];
                let mut buf = Vec::with_capacity(size);
                for _ in 0..rounds {
                    msg = s.write_all(msg).await.1;
                    let mut got = 0;
                    while got < size {
                        let (res, b) = s.read(buf).await;
                        buf = b;
                        let n = res.expect("echo read");
                        assert!(n > 0, "the echo server closed");
                        got += n;
                    }
                }
                s
            },
            move |mut s: tokio::net::TcpStream| async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let msg = vec![7u8; size];
                let mut buf = vec![0u8; size];
                for _ in 0..rounds {
                    s.write_all(&msg).await.unwrap();
                    s.read_exact(&mut buf).await.expect("echo read");
                }
                s
            },
        )
    }

    /// Every connection writes `chunks` chunks of `CHUNK` bytes to the sink and waits until the
    /// sink has acknowledged them all.
    fn stream(&mut self, chunks: u64) -> Duration {
        self.each(
            move |s: ringloop::net::TcpStream| async move {
                let mut chunk = vec![5u8; CHUNK];
                for _ in 0..chunks {
                    chunk = s.write_all(chunk).await.1;
                }
                let mut acks = 0u64;
                let mut buf = Vec::with_capacity(4096);
                while acks < chunks {
                    let (res, b) = s.read(buf).await;
                    buf = b;
                    let n = res.expect("ack read");
                    assert!(n > 0, "the sink closed");
                    acks += n as u64;
                }
                s
            },
            move |mut s: tokio::net::TcpStream| async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let chunk = vec![5u8; CHUNK];
                for _ in 0..chunks {
                    s.write_all(&chunk).await.unwrap();
                }
                let mut acks = 0u64;
                let mut buf = vec![0u8; 4096];
                while acks < chunks {
                    let n = s.read(&mut buf).await.expect("ack read");
                    assert!(n > 0, "the sink closed");
                    acks += n as u64;
                }
                s
            },
        )
    }
}

/// Echo ping-pong: one iteration is one round trip on every connection; the throughput is round
/// trips per second.
fn echo(c: &mut Criterion) {
    for size in [64usize, 4096] {
        for conns in [1usize, 64, 512] {
            let label = if size >= 1024 {
                format!("{}KiB", size / 1024)
            } else {
                format!("{size}B")
            };
            let mut g = c.benchmark_group(format!("echo_{label}_{conns}conn"));
            g.throughput(Throughput::Elements(conns as u64));
            for rt in ALL {
                let server = start_server(rt, Serve::Echo);
                let mut client = Client::connect(rt, server.addr, conns);
                g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
                    b.iter_custom(|iters| client.echo(iters, size))
                });
                drop(client);
                drop(server);
            }
            g.finish();
        }
    }
}

/// Streaming: one iteration is one 64 KiB chunk on every connection; the throughput is bytes per
/// second. The server runs on CPU 0 and the client on CPU 1.
fn streaming(c: &mut Criterion) {
    support::pin_to_cpu(1);
    for conns in [1usize, 4] {
        let mut g = c.benchmark_group(format!("stream_64KiB_{conns}conn"));
        g.throughput(Throughput::Bytes((conns * CHUNK) as u64));
        for rt in ALL {
            let server = start_server(rt, Serve::Sink);
            let mut client = Client::connect(rt, server.addr, conns);
            g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
                b.iter_custom(|iters| client.stream(iters))
            });
            drop(client);
            drop(server);
        }
        g.finish();
    }
    support::unpin();
}

/// The bare cost of ops through the loop: one iteration writes one byte into a Unix socket pair
/// and reads it from the other end (two ops, no other thread involved).
fn op_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("op_round_trip");
    g.throughput(Throughput::Elements(1));
    for rt in ALL {
        g.bench_function(BenchmarkId::from_parameter(rt.id()), |b| {
            match rt.backend() {
                Some(backend) => {
                    let mut lp = support::ringloop(backend);
                    let (x, y) = ringloop::net::UnixStream::pair().unwrap();
                    b.iter_custom(|iters| {
                        lp.run_until_complete(async {
                            let mut out = vec![1u8];
                            let mut buf = Vec::with_capacity(1);
                            let start = Instant::now();
                            for _ in 0..iters {
                                out = x.write_all(out).await.1;
                                let (res, b) = y.read(buf).await;
                                buf = b;
                                assert_eq!(res.unwrap(), 1);
                            }
                            start.elapsed()
                        })
                    });
                }
                None => {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let rt = support::tokio();
                    let (mut x, mut y) = rt
                        .block_on(async { tokio::net::UnixStream::pair() })
                        .unwrap();
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let mut buf = [0u8; 1];
                            let start = Instant::now();
                            for _ in 0..iters {
                                x.write_all(&[1]).await.unwrap();
                                assert_eq!(y.read(&mut buf).await.unwrap(), 1);
                            }
                            start.elapsed()
                        })
                    });
                }
            }
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = echo, streaming, op_round_trip
}
criterion_main!(benches);
