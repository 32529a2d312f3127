//! `Bytes` and `BytesMut` as owned buffers (feature `bytes`, see Cargo.toml), on both backends.

mod common;

use bytes::{Bytes, BytesMut};
use ringloop::net::UnixStream;

both_backends! {
    fn bytes_and_bytes_mut_round_trip(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (a, b) = UnixStream::pair().unwrap();
            let (res, sent) = a.write_all(Bytes::from_static(b"shared bytes")).await;
            res.unwrap();
            assert_eq!(&sent[..], b"shared bytes");
            let (res, got) = b.read(BytesMut::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 12);
            assert_eq!(&got[..], b"shared bytes");
        });
    }
}
