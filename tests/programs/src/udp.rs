//! Datagram (UDP) scenarios: sockshim's datagram sockets against native
//! peers, and Rust's `std::net::UdpSocket` (wasi:sockets) under the same
//! policy. Each prints `key=value` lines for tests/tests/udp.rs.

use crate::{Result, outcome, report};
use sockshim::{Family, Kind, Socket};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A datagram socket of the family of `addr`, with a generous timeout.
fn datagram_for(addr: &SocketAddr) -> std::io::Result<Socket> {
    let family = if addr.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let sock = Socket::new(family, Kind::Datagram)?;
    sock.settimeout(Some(Duration::from_secs(10)))?;
    Ok(sock)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Against a native echo peer at `addr`: echo, truncation, an empty
/// datagram, `recv(0)` consuming one, `recvfrom_into`, the largest
/// datagram and one byte more, a timeout and non-blocking mode.
pub fn basics(addr: &str) -> Result {
    let peer: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let sock = datagram_for(&peer)?;
    report("sent", sock.sendto(b"hello", addr)?);
    let (echo, from) = sock.recvfrom(100)?;
    report("echo", text(&echo));
    report("from", from);

    sock.sendto(b"0123456789", addr)?;
    report("truncated", text(&sock.recvfrom(4)?.0));
    // The rest of that datagram is gone: the next one is the next datagram.
    sock.sendto(b"", addr)?;
    report("empty", sock.recvfrom(100)?.0.len());
    sock.sendto(b"consumed by recv(0)", addr)?;
    report("zero", sock.recv(0)?.len());
    sock.sendto(b"next", addr)?;
    report("after_zero", text(&sock.recv(100)?));

    // The host receives straight into the buffer, whether the datagram
    // fills it or not.
    let placed_before = sockshim::receives_in_place();
    sock.sendto(b"into", addr)?;
    let mut buf = [0u8; 4];
    let (n, from) = sock.recvfrom_into(&mut buf)?;
    report("into", text(&buf[..n]));
    report("into_from", from);
    sock.sendto(b"short", addr)?;
    let mut buf = [0u8; 100];
    let (n, _) = sock.recvfrom_into(&mut buf)?;
    report("into_short", text(&buf[..n]));
    sock.sendto(b"truncated into", addr)?;
    let mut buf = [0u8; 9];
    let (n, _) = sock.recvfrom_into(&mut buf)?;
    report("into_truncated", text(&buf[..n]));
    report("in_place", sockshim::receives_in_place() - placed_before);

    let max = if peer.is_ipv6() { 65_527 } else { 65_507 };
    let big: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    report("max_sent", sock.sendto(&big, addr)?);
    let (back, _) = sock.recvfrom(1 << 20)?;
    report("max_back", back.len());
    report("max_same", back == big);
    let over = vec![0u8; max + 1];
    report("over", outcome(&sock.sendto(&over, addr)));

    sock.settimeout(Some(Duration::from_millis(300)))?;
    let started = Instant::now();
    report("timeout", outcome(&sock.recvfrom(100)));
    report("timeout_ms", started.elapsed().as_millis());
    sock.setblocking(false)?;
    report("nonblocking", outcome(&sock.recvfrom(100)));
    Ok(())
}

/// A socket connected to `addr`, whose peer (after our first datagram)
/// has another sender write to us first: only the peer's datagram comes;
/// `send` and `recv` work on it, as does `getpeername`.
pub fn connected(addr: &str) -> Result {
    let peer: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let sock = datagram_for(&peer)?;
    sock.connect(addr)?;
    report("peer", sock.getpeername()?);
    sock.send(b"hi")?;
    let (got, from) = sock.recvfrom(100)?;
    report("got", text(&got));
    report("from", from);
    report("recv", text(&sock.recv(100)?));
    Ok(())
}

/// A socket connected to `addr`, a closed port: the send goes, the ICMP
/// port unreachable comes back as the next receive's error.
pub fn refused(addr: &str) -> Result {
    let peer: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let sock = datagram_for(&peer)?;
    sock.connect(addr)?;
    report("send", outcome(&sock.send(b"anyone?")));
    report("recv", outcome(&sock.recv(100)));
    Ok(())
}

/// Under a policy that allows sending to `allowed` only: a denied
/// destination, broadcast, a bind of a specific address, all refused; the
/// wildcard with port 0 bound, and then only `allowed` heard (the native
/// side has another sender write to us first).
pub fn policy(allowed: &str, denied: &str) -> Result {
    let sock = Socket::new(Family::Ipv4, Kind::Datagram)?;
    sock.settimeout(Some(Duration::from_secs(10)))?;
    report("denied", outcome(&sock.sendto(b"no", denied)));
    let port = allowed.rsplit(':').next().unwrap_or("9");
    let broadcast = format!("255.255.255.255:{port}");
    report(
        "broadcast",
        outcome(&sock.sendto(b"all", broadcast.as_str())),
    );
    report("bind_specific", outcome(&sock.bind("127.0.0.1:0")));
    report("bind_wildcard", outcome(&sock.bind("0.0.0.0:0")));
    sock.sendto(b"hi", allowed)?;
    // The other sender's datagram is dropped on the way to a lent buffer
    // as on the way to a new one.
    let mut buf = [0u8; 100];
    let (n, from) = sock.recvfrom_into(&mut buf)?;
    report("got", text(&buf[..n]));
    report("from", from);
    report("then", text(&sock.recvfrom(100)?.0));
    Ok(())
}

/// [`policy`] for `std::net::UdpSocket` in a plugin (wasi:sockets).
pub fn std_policy(allowed: &str, denied: &str) -> Result {
    use std::net::UdpSocket;
    report(
        "bind_specific",
        outcome(&UdpSocket::bind("127.0.0.1:0").map(drop)),
    );
    let sock = UdpSocket::bind("0.0.0.0:0");
    report("bind_wildcard", outcome(&sock));
    let sock = sock?;
    // Not every wasi:sockets host takes a read timeout; the harness bounds
    // the run anyway.
    report(
        "read_timeout",
        outcome(&sock.set_read_timeout(Some(Duration::from_secs(10)))),
    );
    report("denied", outcome(&sock.send_to(b"no", denied)));
    sock.send_to(b"hi", allowed)?;
    let mut buf = [0u8; 100];
    let (n, from) = sock.recv_from(&mut buf)?;
    report("got", text(&buf[..n]));
    report("from", from);
    Ok(())
}
