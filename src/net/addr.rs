//! `ToSocketAddrs`: what `connect` accepts. Literal addresses convert at once; host names are
//! resolved on the blocking pool, never on the loop thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Anything that names socket addresses: the same types std's `ToSocketAddrs` takes
/// (`SocketAddr`, `(IpAddr, u16)`, `"127.0.0.1:80"`, `"localhost:80"`, `("localhost", 80)`,
/// `String`, `&[SocketAddr]`, and references to them).
///
/// Host names are looked up on the blocking pool, so a slow resolver never stalls the loop.
/// This trait is sealed: it cannot be implemented outside ringloop.
pub trait ToSocketAddrs: sealed::Resolve {}

pub(crate) mod sealed {
    use super::*;

    /// Either the addresses, or a name to look up off the loop thread.
    #[derive(Debug)]
    pub enum Lookup {
        Ready(Vec<SocketAddr>),
        Name(String),
    }

    /// The private half of [`ToSocketAddrs`].
    pub trait Resolve {
        /// Converts without blocking.
        fn lookup(&self) -> Lookup;
    }
}

use sealed::{Lookup, Resolve};

/// Resolves `addr`, using the blocking pool for host names.
pub(crate) async fn resolve(addr: &impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs = match addr.lookup() {
        Lookup::Ready(v) => v,
        Lookup::Name(name) => {
            crate::spawn_blocking(move || {
                std::net::ToSocketAddrs::to_socket_addrs(&name).map(Iterator::collect)
            })
            .await??
        }
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to no socket address",
        ));
    }
    Ok(addrs)
}

macro_rules! ready_impl {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {}
        impl Resolve for $t {
            fn lookup(&self) -> Lookup {
                Lookup::Ready(vec![SocketAddr::from(*self)])
            }
        }
    )*};
}

ready_impl!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl ToSocketAddrs for str {}
impl Resolve for str {
    fn lookup(&self) -> Lookup {
        match self.parse::<SocketAddr>() {
            Ok(a) => Lookup::Ready(vec![a]),
            Err(_) => Lookup::Name(self.to_owned()),
        }
    }
}

impl ToSocketAddrs for String {}
impl Resolve for String {
    fn lookup(&self) -> Lookup {
        self.as_str().lookup()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Resolve for (&str, u16) {
    fn lookup(&self) -> Lookup {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Lookup::Ready(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => Lookup::Name(format!("{}:{}", self.0, self.1)),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Resolve for (String, u16) {
    fn lookup(&self) -> Lookup {
        (self.0.as_str(), self.1).lookup()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl Resolve for [SocketAddr] {
    fn lookup(&self) -> Lookup {
        Lookup::Ready(self.to_vec())
    }
}

impl ToSocketAddrs for Vec<SocketAddr> {}
impl Resolve for Vec<SocketAddr> {
    fn lookup(&self) -> Lookup {
        Lookup::Ready(self.clone())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Resolve + ?Sized> Resolve for &T {
    fn lookup(&self) -> Lookup {
        (**self).lookup()
    }
}
