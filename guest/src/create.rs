//! Python's module-level helpers: `create_connection`, `create_server` and
//! `getaddrinfo`.

use std::io::{self, ErrorKind};
use std::net::IpAddr;
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
/// A name that does not resolve fails with [`ErrorKind::AddrNotAvailable`]
/// ([`gai_errno`](crate::gai_errno) `EAI_NONAME`); a lookup the resolver
/// could not complete now with [`ErrorKind::Other`] (`gai_errno`
/// `EAI_AGAIN`, CPython's `gaierror` "Temporary failure in name
/// resolution"); a name whose addresses the host's policy all refuses with
/// [`ErrorKind::PermissionDenied`].
pub fn resolve(host: &str) -> io::Result<Vec<IpAddr>> {
    let addresses = bindings::resolve_addresses(host)
        .map_err(|code| unresolved(host, "any address", from_code(code)))?;
    Ok(addresses.into_iter().map(ip_from_wit).collect())
}

/// Connects a new TCP socket to `addr`; corresponds to Python's
/// `socket.create_connection(address, timeout)`.
///
/// A literal IP address is connected to as it is. A host name is handed to
/// the host, so that the host's policy sees the name the plugin used and a
/// name rule (`--allow-connect localhost:8000`) applies: the name is
/// resolved once to learn which address families it has, in the resolver's
/// order, and for each family a new socket of that family is created, its
/// timeout set, and connected by the name (the host uses the first address
/// of that family its policy allows). The first socket that connects is
/// returned; if none does, the error of the last attempt. CPython tries
/// every address; here the host tries one per family.
///
/// `timeout` is Python's argument: `Some(d)` sets `d` on the socket before
/// connecting, and it stays set, as [`Socket::settimeout`] takes it. `None`
/// leaves the socket with the [default timeout](crate::getdefaulttimeout)
/// every new socket starts with, as CPython's `create_connection(address)`
/// does when the argument is omitted; the default blocks unless
/// [`setdefaulttimeout`](crate::setdefaulttimeout) changed it. To block
/// whatever the default, create the [`Socket`], call `settimeout(None)` and
/// [`connect`](Socket::connect).
///
/// ```no_run
/// use std::time::Duration;
///
/// let sock = sockshim::create_connection(("example.com", 80), Some(Duration::from_secs(30)))?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn create_connection(addr: impl ToAddress, timeout: Option<Duration>) -> io::Result<Socket> {
    let addr = addr.to_address()?;
    if let Ok(ip) = addr.host().parse::<IpAddr>() {
        return connect_to(Family::of(ip), &addr, timeout);
    }
    if addr.host().contains(':') {
        // An IPv6 literal with a zone, such as "fe80::1%2".
        return connect_to(Family::Ipv6, &addr, timeout);
    }
    let ips = resolve(addr.host()).map_err(|e| unresolved(addr.host(), "any address", e))?;
    let mut last_error = None;
    for family in families(&ips) {
        match connect_to(family, &addr, timeout) {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| no_addresses(&addr)))
}

/// The families of `ips`, each once, in the order they first appear.
fn families(ips: &[IpAddr]) -> Vec<Family> {
    let mut families = Vec::new();
    for ip in ips {
        let family = Family::of(*ip);
        if !families.contains(&family) {
            families.push(family);
        }
    }
    families
}

fn connect_to(family: Family, addr: &Address, timeout: Option<Duration>) -> io::Result<Socket> {
    let socket = Socket::new(family, Kind::Stream)?;
    if let Some(timeout) = timeout {
        socket.settimeout(Some(timeout))?;
    }
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
/// an IPv4 socket; a name gives an IPv4 socket if it resolves to an IPv4
/// address, else an IPv6 one, and the socket is bound by the name, so that
/// the host's policy sees it and a name rule (`--allow-bind
/// localhost:8000`) applies; the host binds the first address of that
/// family its policy allows. As in CPython, `SO_REUSEADDR` is set (a
/// failure to set it is ignored), then the socket is bound and put in
/// listening mode.
pub fn create_server_with(addr: impl ToAddress, backlog: u32) -> io::Result<Socket> {
    let addr = addr.to_address()?;
    let family = bind_family(&addr)?;
    let socket = Socket::new(family, Kind::Stream)?;
    // CPython: "Fail later on bind(), for platforms which may not support
    // this option."
    let _ = socket.setsockopt(SockOpt::ReuseAddr(true));
    socket.bind(&addr)?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// The family of the socket to create for binding `addr`.
fn bind_family(addr: &Address) -> io::Result<Family> {
    let host = addr.host();
    if host.is_empty() {
        return Ok(Family::Ipv4);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Family::of(ip));
    }
    if host.contains(':') {
        // An IPv6 literal with a zone, such as "fe80::1%eth0".
        return Ok(Family::Ipv6);
    }
    let families = families(&resolve(host).map_err(|e| unresolved(host, "any address", e))?);
    if families.contains(&Family::Ipv4) {
        return Ok(Family::Ipv4);
    }
    families.first().copied().ok_or_else(|| no_addresses(addr))
}

/// The error of an operation on the name `host` that failed with
/// `address-not-available`, saying that the name did not resolve to `what`
/// ("any address", "an IPv4 address"), where the host's answer alone reads
/// "address not available"; and of one that failed with
/// `temporary-lookup-failure`, naming the host. Any other error is returned
/// as it is. Like CPython's `socket.gaierror`, they carry no errno but an
/// `EAI_*` code ([`gai_errno`](crate::gai_errno)).
pub(crate) fn unresolved(host: &str, what: &str, error: io::Error) -> io::Error {
    if error.kind() == ErrorKind::AddrNotAvailable {
        crate::error::lookup_error(
            ErrorKind::AddrNotAvailable,
            crate::errno::EAI_NONAME,
            format!("the name `{host}` did not resolve to {what}"),
        )
    } else if crate::gai_errno(&error) == Some(crate::errno::EAI_AGAIN) {
        crate::error::lookup_error(
            ErrorKind::Other,
            crate::errno::EAI_AGAIN,
            format!("temporary failure in name resolution of `{host}`"),
        )
    } else {
        error
    }
}

fn no_addresses(addr: &Address) -> io::Error {
    io::Error::new(
        ErrorKind::AddrNotAvailable,
        format!("{} resolves to no address", addr.host()),
    )
}
