//! Networking: TCP listeners and streams, on whichever backend the loop runs.

mod addr;
mod tcp;

pub use addr::ToSocketAddrs;
pub use tcp::{TcpListener, TcpStream};
