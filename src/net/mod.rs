//! Networking on whichever backend the loop runs: TCP, UDP and Unix-domain sockets.
//!
//! Every I/O method takes an owned buffer and gives it back (`(io::Result<T>, buf)`); every
//! operation is cancel-safe when its future is dropped.

#[cfg(feature = "axum")]
mod accept;
mod addr;
pub(crate) mod stream;
mod tcp;
mod udp;
mod unix;

#[cfg(feature = "axum")]
pub(crate) use accept::{AcceptAction, on_accept_error};
pub use addr::ToSocketAddrs;
pub use tcp::{ListenerBuilder, TcpListener, TcpStream};
pub use udp::{TruncatedDatagram, UdpSocket};
pub use unix::{UnixListener, UnixStream};
