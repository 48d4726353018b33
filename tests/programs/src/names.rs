//! Scenarios for names reaching the host (so that name rules apply), the
//! errno values CPython gives, and the command line reaching the plugin.

use sockshim::{Family, Kind, Socket};
use std::time::Duration;

use crate::{Result, outcome, report};

/// The outcome of `r`, with the errno where there is one:
/// `KIND: message` plus ` errno=N`, or `ok`.
fn with_errno<T>(r: &std::io::Result<T>) -> String {
    match r {
        Err(e) => match e.raw_os_error() {
            Some(errno) => format!("{} errno={errno}", outcome(r)),
            None => outcome(r),
        },
        Ok(_) => "ok".to_string(),
    }
}

/// Every argument the plugin got, one per line.
pub fn args(args: &[&str]) -> Result {
    report("argc", args.len());
    for (i, arg) in args.iter().enumerate() {
        report(&format!("arg{i}"), arg);
    }
    Ok(())
}

/// `create_connection` to `addr` (a name and a port), and the peer it
/// reached.
pub fn create_connection(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(5)));
    report("create_connection", with_errno(&sock));
    if let Ok(sock) = sock {
        report("peer", sock.getpeername()?);
        sock.sendall(b"by name")?;
    }
    Ok(())
}

/// `create_server` on `addr` (a name and a port), and the address it bound.
pub fn create_server(addr: &str) -> Result {
    let server = sockshim::create_server(addr);
    report("create_server", with_errno(&server));
    if let Ok(server) = server {
        report("bound", server.getsockname()?);
    }
    Ok(())
}

/// `Socket::bind` of an IPv4 socket to `addr` (a name and a port).
pub fn bind(addr: &str) -> Result {
    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    report("bind", with_errno(&sock.bind(addr)));
    Ok(())
}

/// `create_connection`, `Socket::connect` and `create_server` with a
/// name that does not resolve.
pub fn unresolvable(addr: &str) -> Result {
    report(
        "create_connection",
        outcome(&sockshim::create_connection(
            addr,
            Some(Duration::from_secs(10)),
        )),
    );
    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    report("connect", outcome(&sock.connect(addr)));
    report("create_server", outcome(&sockshim::create_server(addr)));
    Ok(())
}

/// `create_connection(addr, None)` takes the default timeout, as CPython's
/// `create_connection(addr)` does; `Some` sets its own.
pub fn create_connection_default_timeout(addr: &str) -> Result {
    let blocking = sockshim::create_connection(addr, None)?;
    report("before_default", format!("{:?}", blocking.gettimeout()));
    sockshim::setdefaulttimeout(Some(Duration::from_millis(1500)));
    let defaulted = sockshim::create_connection(addr, None)?;
    report("with_default", format!("{:?}", defaulted.gettimeout()));
    let explicit = sockshim::create_connection(addr, Some(Duration::from_secs(7)))?;
    report("explicit", format!("{:?}", explicit.gettimeout()));
    Ok(())
}

/// The errno of an operation on a closed socket, and of a socket past the
/// host's limit of `limit` sockets.
pub fn errnos(limit: usize) -> Result {
    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    sock.close();
    report("closed_recv", with_errno(&sock.recv(1)));
    report("closed_listen", with_errno(&sock.listen(1)));
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(Socket::new(Family::Ipv4, Kind::Stream)?);
    }
    report(
        "over_limit",
        with_errno(&Socket::new(Family::Ipv4, Kind::Stream)),
    );
    Ok(())
}

/// A failed name lookup as `KIND gai=CODE: message`.
fn lookup_outcome<T>(r: &std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?} gai={:?}: {e}", e.kind(), sockshim::gai_errno(e)),
    }
}

/// What a failed lookup of `host` looks like through `resolve`
/// (`getaddrinfo`), `create_connection` and `connect` by name.
pub fn lookup_errors(host: &str, port: u16) -> Result {
    report("resolve", lookup_outcome(&sockshim::resolve(host)));
    let timeout = Some(Duration::from_secs(10));
    report(
        "create_connection",
        lookup_outcome(&sockshim::create_connection((host, port), timeout)),
    );
    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    report("connect", lookup_outcome(&sock.connect((host, port))));
    Ok(())
}
