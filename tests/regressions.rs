//! Regression tests, each named after what broke.

mod common;

use std::io::Write;

use std::time::Duration;

use ringloop::net::TcpListener;
use ringloop::time::timeout;

both_backends! {
    /// On epoll a short read marks the socket not ready until its next edge, to skip the read
    /// that would only say EAGAIN. When the data and the peer's FIN came in one edge, the read
    /// after the short one waited for an edge that never comes, and the EOF was never seen (the
    /// epoll cancellation storm hung). A closed peer now keeps the socket readable.
    fn eof_that_came_with_the_last_data_is_seen_after_a_short_read(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            // A read that waits, so the socket is registered and armed; its result is short.
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                peer.write_all(b"hello").unwrap();
                peer
            });
            let (res, _) = s.read(Vec::with_capacity(4096)).await;
            assert_eq!(res.unwrap(), 5);
            // Data and FIN both arrive before the loop next looks at epoll: one edge for both.
            let mut peer = writer.join().unwrap();
            peer.write_all(b"world").unwrap();
            drop(peer);
            std::thread::sleep(Duration::from_millis(20));
            let (res, buf) = s.read(Vec::with_capacity(4096)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(buf, b"world");
            let (res, _) = timeout(Duration::from_secs(5), s.read(Vec::with_capacity(4096)))
                .await
                .expect("the EOF that came with the last data was never seen");
            assert_eq!(res.unwrap(), 0);
        });
    }

    /// On epoll an op whose data is already there completes inside the poll that started it, so a
    /// task reading from a peer that is always ahead never returned `Pending` and starved every
    /// other task (seen as a 1.3 s p99 on the echo server under strace). The cooperative budget
    /// makes it yield.
    fn a_task_whose_reads_are_always_ready_does_not_starve_others(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().await.unwrap();
            // 64 KiB wait in the socket: each 16-byte read finds data at once.
            peer.write_all(&vec![7u8; 64 * 1024]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));

            let s = &s;
            common::busy_reader_lets_others_run(|_| async move {
                let (res, _) = s.read(Vec::with_capacity(16)).await;
                assert_eq!(res.unwrap(), 16);
            })
            .await;
        });
    }

    /// On uring a read dropped by a timeout can lose its cancel race and still take bytes, which
    /// the next read returns first. A read issued before that orphan's completion came in could
    /// take later bytes meanwhile, so the stream came out reordered (about one run in 15 of
    /// tcp.rs's timeout test). Reads now wait for dropped reads on the stream to settle.
    fn a_new_read_cannot_overtake_a_dropped_read_still_in_the_kernel(lp: &mut EventLoop) {
        const TOTAL: usize = 50_000;
        for run in 0..10 {
            lp.run_until_complete(async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let writer = std::thread::spawn(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    c.set_nodelay(true).unwrap();
                    let data = common::pattern(run, TOTAL);
                    for (i, chunk) in data.chunks(97).enumerate() {
                        c.write_all(chunk).unwrap();
                        if i % 3 == 0 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                });
                let (s, _) = listener.accept().await.unwrap();
                let mut got = Vec::with_capacity(TOTAL);
                while got.len() < TOTAL {
                    if let Ok((res, b)) =
                        timeout(Duration::from_micros(40), s.read(Vec::with_capacity(300))).await
                    {
                        let n = res.unwrap();
                        assert!(n > 0, "unexpected EOF");
                        got.extend_from_slice(&b[..n]);
                    }
                }
                writer.join().unwrap();
                assert!(got == common::pattern(run, TOTAL), "run {run}: the stream was reordered");
            });
        }
    }
}
