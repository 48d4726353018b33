//! Socket addresses: Python's `(host, port)` tuples.

use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use crate::bindings::{IpAddress, SocketAddress};

/// A host and a port: Python's `(host, port)` address tuple.
///
/// The host is a name (`"example.com"`), a literal IPv4 or IPv6 address
/// (`"127.0.0.1"`, `"::1"`, without brackets), or empty, which
/// [`Socket::bind`](crate::Socket::bind) takes as every local address
/// (Python's `""`). Names are resolved by the host.
///
/// It displays as `host:port`, with brackets around an IPv6 host
/// (`[::1]:80`), and parses from the same form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    host: String,
    port: u16,
}

impl Address {
    /// An address from a host and a port; Python's `(host, port)`.
    pub fn new(host: impl Into<String>, port: u16) -> Address {
        Address {
            host: host.into(),
            port,
        }
    }

    /// The host: a name, a literal IP address without brackets, or empty.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host:port`, `[ipv6]:port` or `:port` (every local address).
/// Errors are [`ErrorKind::InvalidInput`].
impl FromStr for Address {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<Address> {
        let invalid = |why: &str| {
            io::Error::new(
                ErrorKind::InvalidInput,
                format!("invalid address {s:?}: {why}"),
            )
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once(']').ok_or_else(|| invalid("missing ']'"))?;
            let port = port
                .strip_prefix(':')
                .ok_or_else(|| invalid("expected ':port' after ']'"))?;
            (host, port)
        } else {
            let (host, port) = s
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected host:port"))?;
            if host.contains(':') {
                return Err(invalid("an IPv6 address needs brackets, as in [::1]:80"));
            }
            (host, port)
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
        Ok(Address::new(host, port))
    }
}

/// Values that name a socket address: what [`Socket::connect`],
/// [`Socket::bind`], [`create_connection`] and [`create_server`] accept.
///
/// Implemented for `(&str, u16)` and `(String, u16)` (Python's
/// `(host, port)`), for [`IpAddr`] / [`Ipv4Addr`] / [`Ipv6Addr`] with a port,
/// for [`SocketAddr`], [`SocketAddrV4`] and [`SocketAddrV6`], for [`Address`],
/// and for `"host:port"` strings (`&str`, `String`), including
/// `"[::1]:80"`. An IPv6 scope id other than zero is passed to the host as
/// `addr%scope`; the flow info is not passed.
///
/// [`Socket::connect`]: crate::Socket::connect
/// [`Socket::bind`]: crate::Socket::bind
/// [`create_connection`]: crate::create_connection
/// [`create_server`]: crate::create_server
pub trait ToAddress {
    /// Converts to an [`Address`]; fails with [`ErrorKind::InvalidInput`]
    /// for a string that is not a valid `host:port`.
    fn to_address(&self) -> io::Result<Address>;
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> io::Result<Address> {
        (**self).to_address()
    }
}

impl ToAddress for Address {
    fn to_address(&self) -> io::Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> io::Result<Address> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> io::Result<Address> {
        self.parse()
    }
}

impl ToAddress for (&str, u16) {
    fn to_address(&self) -> io::Result<Address> {
        Ok(Address::new(self.0, self.1))
    }
}

impl ToAddress for (String, u16) {
    fn to_address(&self) -> io::Result<Address> {
        Ok(Address::new(self.0.as_str(), self.1))
    }
}

impl ToAddress for (IpAddr, u16) {
    fn to_address(&self) -> io::Result<Address> {
        SocketAddr::new(self.0, self.1).to_address()
    }
}

impl ToAddress for (Ipv4Addr, u16) {
    fn to_address(&self) -> io::Result<Address> {
        Ok(Address::new(self.0.to_string(), self.1))
    }
}

impl ToAddress for (Ipv6Addr, u16) {
    fn to_address(&self) -> io::Result<Address> {
        Ok(Address::new(self.0.to_string(), self.1))
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self) -> io::Result<Address> {
        match self {
            SocketAddr::V4(addr) => addr.to_address(),
            SocketAddr::V6(addr) => addr.to_address(),
        }
    }
}

impl ToAddress for SocketAddrV4 {
    fn to_address(&self) -> io::Result<Address> {
        Ok(Address::new(self.ip().to_string(), self.port()))
    }
}

impl ToAddress for SocketAddrV6 {
    fn to_address(&self) -> io::Result<Address> {
        let host = match self.scope_id() {
            0 => self.ip().to_string(),
            scope => format!("{}%{scope}", self.ip()),
        };
        Ok(Address::new(host, self.port()))
    }
}

/// Converts the contract's `ip-address`.
pub(crate) fn ip_from_wit(ip: IpAddress) -> IpAddr {
    match ip {
        IpAddress::Ipv4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    }
}

/// Converts the contract's `socket-address`.
pub(crate) fn socket_addr_from_wit(addr: SocketAddress) -> SocketAddr {
    match addr {
        SocketAddress::Ipv4(v4) => {
            let (a, b, c, d) = v4.address;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), v4.port))
        }
        SocketAddress::Ipv6(v6) => {
            let (a, b, c, d, e, f, g, h) = v6.address;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(a, b, c, d, e, f, g, h),
                v6.port,
                v6.flow_info,
                v6.scope_id,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{Ipv4SocketAddress, Ipv6SocketAddress};

    fn parse(s: &str) -> io::Result<Address> {
        s.to_address()
    }

    #[test]
    fn parses_host_port_strings() {
        assert_eq!(
            parse("example.com:80").unwrap(),
            Address::new("example.com", 80)
        );
        assert_eq!(parse("127.0.0.1:0").unwrap(), Address::new("127.0.0.1", 0));
        assert_eq!(parse("[::1]:8080").unwrap(), Address::new("::1", 8080));
        assert_eq!(parse(":9000").unwrap(), Address::new("", 9000));
        assert_eq!(
            String::from("[fe80::1%eth0]:1").to_address().unwrap(),
            Address::new("fe80::1%eth0", 1)
        );
    }

    #[test]
    fn rejects_bad_strings() {
        for bad in [
            "example.com",
            "::1:80",
            "[::1]80",
            "[::1:80",
            "host:port",
            "h:65536",
            "h:",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn converts_std_addresses() {
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(v6.to_address().unwrap(), Address::new("::1", 80));
        let scoped = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5, 0, 3);
        assert_eq!(scoped.to_address().unwrap(), Address::new("::1%3", 5));
        assert_eq!(
            ("localhost", 1).to_address().unwrap(),
            Address::new("localhost", 1)
        );
        assert_eq!(
            (IpAddr::V4(Ipv4Addr::LOCALHOST), 7).to_address().unwrap(),
            Address::new("127.0.0.1", 7)
        );
    }

    #[test]
    fn displays_with_brackets_for_ipv6() {
        assert_eq!(Address::new("::1", 80).to_string(), "[::1]:80");
        assert_eq!(
            Address::new("example.com", 80).to_string(),
            "example.com:80"
        );
        assert_eq!(Address::new("", 80).to_string(), ":80");
    }

    #[test]
    fn converts_wit_addresses() {
        let v4 = SocketAddress::Ipv4(Ipv4SocketAddress {
            port: 80,
            address: (127, 0, 0, 1),
        });
        assert_eq!(socket_addr_from_wit(v4).to_string(), "127.0.0.1:80");
        let v6 = SocketAddress::Ipv6(Ipv6SocketAddress {
            port: 443,
            flow_info: 0,
            address: (0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            scope_id: 0,
        });
        assert_eq!(socket_addr_from_wit(v6).to_string(), "[2001:db8::1]:443");
        assert_eq!(
            ip_from_wit(IpAddress::Ipv4((10, 0, 0, 1))),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
    }
}
