//! A child's piped stdin, stdout and stderr: nonblocking pipe ends read and written with the
//! same owned-buffer methods as the streams.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;
use crate::net::stream::Stream;

/// A pipe end, made nonblocking for the loop.
pub(super) fn pipe(fd: impl Into<OwnedFd>) -> io::Result<Stream> {
    let fd: OwnedFd = fd.into();
    // SAFETY: F_GETFL/F_SETFL on an fd we own; no pointers.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(Stream::pipe(SharedFd::new(fd)))
}

/// Reads a pipe to its end.
pub(super) async fn read_to_end(io: &Stream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let (res, b) = io.read(buf).await;
        match res? {
            0 => return Ok(out),
            _ => out.extend_from_slice(&b),
        }
        buf = b;
    }
}

macro_rules! pipe_type {
    ($(#[$doc:meta])* $name:ident, read) => {
        pipe_type!(@common $(#[$doc])* $name);
        impl $name {
            /// Reads into `buf` from its start up to its capacity and sets its length to the
            /// bytes read; `Ok(0)` once the child closed its end. Cancel-safe as
            /// [`TcpStream::read`](crate::net::TcpStream::read).
            ///
            /// # Errors
            ///
            /// The kernel's error.
            pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
                self.io.read(buf).await
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, write) => {
        pipe_type!(@common $(#[$doc])* $name);
        impl $name {
            /// Writes some of `buf`'s initialised bytes; returns how many.
            ///
            /// # Errors
            ///
            /// The kernel's error, e.g. `BrokenPipe` once the child closed its end.
            pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
                self.io.write(buf).await
            }

            /// Writes all of `buf`'s initialised bytes.
            ///
            /// # Errors
            ///
            /// As [`write`](Self::write); `WriteZero` if the pipe took nothing.
            pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
                self.io.write_all(buf).await
            }
        }
    };
    (@common $(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            pub(super) io: Stream,
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.io.fd.as_fd()
            }
        }
    };
}

pipe_type!(
    /// A child's stdin (`Stdio::piped()`); dropping it closes the pipe, and the child reads
    /// end-of-file.
    ChildStdin,
    write
);
pipe_type!(
    /// A child's stdout (`Stdio::piped()`).
    ChildStdout,
    read
);
pipe_type!(
    /// A child's stderr (`Stdio::piped()`).
    ChildStderr,
    read
);
