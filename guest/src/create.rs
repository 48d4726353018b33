//! Python's module-level helpers: `create_connection`, `create_server` and
//! `getaddrinfo`.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::address::{Address, ToAddress, ip_from_wit};
use crate::bindings;
use crate::error::from_code;
use crate::options::SockOpt;
use crate::socket::{Family, Kind, Socket};

/// The backlog [`create_server`] uses, as CPython's `listen()` does by
/// default (`min(SOMAXCONN, 128)`).
pub const DEFAULT_BACKLOG: u32 = 128;

/// Resolves a host name (or a literal address) to the IP addresses this
/// plugin may connect to or bind, in the resolver's order; corresponds to
/// Python's `socket.getaddrinfo(host, port, type=SOCK_STREAM)`, addresses
/// only.
///
/// A name that does not resolve fails with [`ErrorKind::AddrNotAvailable`];
/// a name whose addresses the host's policy all refuses fails with
/// [`ErrorKind::PermissionDenied`].
pub fn resolve(host: &str) -> io::Result<Vec<IpAddr>> {
    let addresses = bindings::resolve_addresses(host).map_err(from_code)?;
    Ok(addresses.into_iter().map(ip_from_wit).collect())
}

/// Connects a new TCP socket to `addr`; corresponds to Python's
/// `socket.create_connection(address, timeout)`.
///
/// A host name is resolved with [`resolve`]; a literal IP address is used
/// as it is. Each address is tried in order, as CPython does: a new socket
/// of the address's family is created, its timeout set to `timeout`, and
/// connected. The first socket that connects is returned; if none does,
/// the error of the last attempt.
///
/// `timeout` is set on the socket before connecting and stays set, as
/// [`Socket::settimeout`] takes it: `None` blocks (Python's `timeout=None`).
/// For Python's behaviour when the argument is omitted, pass
/// [`getdefaulttimeout()`](crate::getdefaulttimeout).
///
/// ```no_run
/// use std::time::Duration;
///
/// let sock = sockshim::create_connection(("example.com", 80), Some(Duration::from_secs(30)))?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn create_connection(addr: impl ToAddress, timeout: Option<Duration>) -> io::Result<Socket> {
    let addr = addr.to_address()?;
    let ips = match addr.host().parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolve(addr.host())?,
    };
    let mut last_error = None;
    for ip in ips {
        match connect_to(SocketAddr::new(ip, addr.port()), timeout) {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| no_addresses(&addr)))
}

fn connect_to(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<Socket> {
    let socket = Socket::new(Family::of(addr.ip()), Kind::Stream)?;
    socket.settimeout(timeout)?;
    socket.connect(addr)?;
    Ok(socket)
}

/// Creates a TCP socket listening on `addr` with the default backlog
/// ([`DEFAULT_BACKLOG`]); corresponds to Python's
/// `socket.create_server(address)`. See [`create_server_with`].
///
/// ```no_run
/// let server = sockshim::create_server("127.0.0.1:0")?;
/// println!("listening on {}", server.getsockname()?);
/// let (conn, peer) = server.accept()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn create_server(addr: impl ToAddress) -> io::Result<Socket> {
    create_server_with(addr, DEFAULT_BACKLOG)
}

/// Creates a TCP socket listening on `addr` with the given backlog;
/// corresponds to Python's `socket.create_server(address, family=...,
/// backlog=backlog, reuse_port=False)`.
///
/// The family follows the host part: a literal IPv6 address gives an IPv6
/// socket; a literal IPv4 address or an empty host (every IPv4 address)
/// an IPv4 socket; a name is resolved with [`resolve`] and the socket bound
/// to its first IPv4 address, or its first IPv6 address if it has no IPv4
/// one. As in CPython, `SO_REUSEADDR` is set (a failure to set it is
/// ignored), then the socket is bound and put in listening mode.
pub fn create_server_with(addr: impl ToAddress, backlog: u32) -> io::Result<Socket> {
    let addr = addr.to_address()?;
    let (family, host) = bind_target(&addr)?;
    let socket = Socket::new(family, Kind::Stream)?;
    // CPython: "Fail later on bind(), for platforms which may not support
    // this option."
    let _ = socket.setsockopt(SockOpt::ReuseAddr(true));
    socket.bind((host.as_str(), addr.port()))?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// The family of the socket to create for binding `addr`, and the host to
/// bind it to.
fn bind_target(addr: &Address) -> io::Result<(Family, String)> {
    let host = addr.host();
    if host.is_empty() {
        return Ok((Family::Ipv4, String::new()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((Family::of(ip), host.to_owned()));
    }
    if host.contains(':') {
        // An IPv6 literal with a zone, such as "fe80::1%eth0".
        return Ok((Family::Ipv6, host.to_owned()));
    }
    let ips = resolve(host)?;
    let ip = ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| ips.first())
        .ok_or_else(|| no_addresses(addr))?;
    Ok((Family::of(*ip), ip.to_string()))
}

fn no_addresses(addr: &Address) -> io::Error {
    io::Error::new(
        ErrorKind::AddrNotAvailable,
        format!("{} resolves to no address", addr.host()),
    )
}
