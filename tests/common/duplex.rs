//! The stream methods the cancellation suites drive, for `TcpStream` and `UnixStream` alike
//! (included by `cancel.rs` and `cancel_sockets.rs`; each uses some of it).

#![allow(dead_code)]

use std::future::Future;
use std::io;

use ringloop::buf::{BufResult, PooledBuf};
use ringloop::fs::File;
use ringloop::net::{TcpStream, UnixStream};

/// The stream methods under test, for `TcpStream` and `UnixStream` alike.
pub trait Duplex: Sized + 'static {
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<usize, Vec<u8>>> + '_;
    fn readv(
        &self,
        bufs: Vec<Vec<u8>>,
    ) -> impl Future<Output = BufResult<usize, Vec<Vec<u8>>>> + '_;
    fn write(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<usize, Vec<u8>>> + '_;
    fn writev(
        &self,
        bufs: Vec<Vec<u8>>,
    ) -> impl Future<Output = BufResult<usize, Vec<Vec<u8>>>> + '_;
    fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<(), Vec<u8>>> + '_;
    fn recv_pooled(&self) -> impl Future<Output = io::Result<PooledBuf>> + '_;
    fn recv_pooled_many<'a>(
        &'a self,
        out: &'a mut Vec<PooledBuf>,
    ) -> impl Future<Output = io::Result<usize>> + 'a;
    fn send_file<'a>(
        &'a self,
        file: &'a File,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = io::Result<u64>> + 'a;
    fn send_file_with_head<'a>(
        &'a self,
        head: &'a [u8],
        file: &'a File,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = io::Result<u64>> + 'a;
}

macro_rules! duplex {
    ($t:ty) => {
        impl Duplex for $t {
            fn read(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<usize, Vec<u8>>> + '_ {
                <$t>::read(self, buf)
            }
            fn readv(
                &self,
                bufs: Vec<Vec<u8>>,
            ) -> impl Future<Output = BufResult<usize, Vec<Vec<u8>>>> + '_ {
                <$t>::readv(self, bufs)
            }
            fn write(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<usize, Vec<u8>>> + '_ {
                <$t>::write(self, buf)
            }
            fn writev(
                &self,
                bufs: Vec<Vec<u8>>,
            ) -> impl Future<Output = BufResult<usize, Vec<Vec<u8>>>> + '_ {
                <$t>::writev(self, bufs)
            }
            fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = BufResult<(), Vec<u8>>> + '_ {
                <$t>::write_all(self, buf)
            }
            fn recv_pooled(&self) -> impl Future<Output = io::Result<PooledBuf>> + '_ {
                <$t>::recv_pooled(self)
            }
            fn recv_pooled_many<'a>(
                &'a self,
                out: &'a mut Vec<PooledBuf>,
            ) -> impl Future<Output = io::Result<usize>> + 'a {
                <$t>::recv_pooled_many(self, out)
            }
            fn send_file<'a>(
                &'a self,
                file: &'a File,
                offset: u64,
                len: u64,
            ) -> impl Future<Output = io::Result<u64>> + 'a {
                <$t>::send_file(self, file, offset, len)
            }
            fn send_file_with_head<'a>(
                &'a self,
                head: &'a [u8],
                file: &'a File,
                offset: u64,
                len: u64,
            ) -> impl Future<Output = io::Result<u64>> + 'a {
                <$t>::send_file_with_head(self, head, file, offset, len)
            }
        }
    };
}
duplex!(TcpStream);
duplex!(UnixStream);

pub async fn unix_pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().unwrap()
}
