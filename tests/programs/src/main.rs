//! The guest side of the integration tests: one wasm32-wasip2 command whose
//! first argument names a scenario. Each scenario does what a plugin author
//! would do with the `sockshim` crate and prints what it observed as
//! `key=value` lines; the native side of each test (tests/tests/*.rs) asserts
//! on them. A failure the scenario does not expect exits non-zero.

#[path = "../../src/data.rs"]
mod data;

use data::{fnv1a, pattern};
use sockshim::{Family, Kind, SockOpt, SockOptName, Socket};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((scenario, rest)) = args.split_first() else {
        eprintln!("usage: sockshim-test-guest SCENARIO [ARGS]...");
        return ExitCode::from(2);
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let result = match (scenario.as_str(), rest.as_slice()) {
        ("exit", [code]) => std::process::exit(code.parse().unwrap_or(3)),
        ("sendall", [addr, len]) => sendall(addr, parse(len)),
        ("recv-all", [addr]) => recv_all(addr),
        ("echo-client", [addr, len]) => echo_client(addr, parse(len)),
        ("recv-zero", [addr]) => recv_zero(addr),
        ("recv-until-eof", [addr]) => recv_until_eof(addr),
        ("partial-send", [addr]) => partial_send(addr),
        ("timeouts", [addr]) => timeouts(addr),
        ("sendall-deadline", [addr, len, ms]) => sendall_deadline(addr, parse(len), parse(ms)),
        ("connect", [addr]) => connect(addr, None),
        ("connect-timeout", [addr, ms]) => connect(addr, Some(Duration::from_millis(parse(ms)))),
        ("connect-twice", [denied, allowed]) => connect_twice(denied, allowed),
        ("use-after-close", [addr]) => use_after_close(addr),
        ("huge-recv", [addr]) => huge_recv(addr),
        ("accept-timeouts", []) => accept_timeouts(),
        ("socket-limit", [n]) => socket_limit(parse(n)),
        ("read-write", [addr]) => read_write(addr),
        ("std-connect", [addr]) => std_connect(addr),
        ("options", [addr]) => options(addr),
        ("addresses", [addr]) => addresses(addr),
        ("resolve", [host]) => resolve(host),
        ("ipv6", [addr]) => ipv6(addr),
        ("datagram", []) => {
            report(
                "datagram",
                outcome(&Socket::new(Family::Ipv4, Kind::Datagram)),
            );
            Ok(())
        }
        ("env", [name]) => {
            report("value", std::env::var(name).unwrap_or_default());
            Ok(())
        }
        ("read-file", [path]) => std::fs::read_to_string(path).map(|text| report("text", text)),
        _ => {
            eprintln!("unknown scenario or wrong arguments: {args:?}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{scenario}: unexpected error: {e} ({:?})", e.kind());
            ExitCode::from(1)
        }
    }
}

type Result = std::io::Result<()>;

fn parse<T: std::str::FromStr>(s: &str) -> T {
    match s.parse() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("not a number: {s}");
            std::process::exit(2)
        }
    }
}

fn report(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

/// The error of `r` as `KIND: message`, or `ok`.
fn outcome<T>(r: &std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}: {e}", e.kind()),
    }
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

fn sendall(addr: &str, len: usize) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    let data = pattern(len);
    let started = Instant::now();
    sock.sendall(&data)?;
    report("sent", data.len());
    report("fnv", fnv1a(&data));
    report("elapsed_ms", ms(started));
    Ok(())
}

fn recv_all(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    let mut data = Vec::new();
    loop {
        let chunk = sock.recv(1 << 20)?;
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    report("received", data.len());
    report("fnv", fnv1a(&data));
    Ok(())
}

fn echo_client(addr: &str, len: usize) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(30)))?;
    let data = pattern(len);
    // A peer that echoes while we send: send in pieces and read back as we
    // go, so neither side's buffers fill up.
    let mut echoed = Vec::with_capacity(len);
    for piece in data.chunks(256 << 10) {
        sock.sendall(piece)?;
        sock.setblocking(false)?;
        loop {
            match sock.recv(1 << 20) {
                Ok(chunk) if !chunk.is_empty() => echoed.extend_from_slice(&chunk),
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        sock.settimeout(Some(Duration::from_secs(30)))?;
    }
    sock.shutdown(Shutdown::Write)?;
    loop {
        let chunk = sock.recv(1 << 20)?;
        if chunk.is_empty() {
            break;
        }
        echoed.extend_from_slice(&chunk);
    }
    report("sent", data.len());
    report("echoed", echoed.len());
    report("equal", echoed == data);
    Ok(())
}

fn recv_zero(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    // Blocking, and nothing will arrive: recv(0) must still return at once.
    let started = Instant::now();
    let data = sock.recv(0)?;
    report("len", data.len());
    report("elapsed_ms", ms(started));
    let mut empty = [0u8; 0];
    report("recv_into_empty", sock.recv_into(&mut empty)?);
    Ok(())
}

fn recv_until_eof(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    let mut data = Vec::new();
    loop {
        let chunk = sock.recv(4096)?;
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    report("data", String::from_utf8_lossy(&data));
    // After end of stream, recv keeps returning empty, like Python.
    report("again", sock.recv(4096)?.len());
    Ok(())
}

fn partial_send(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    sock.setsockopt(SockOpt::SendBufSize(64 << 10))?;
    sock.setblocking(false)?;
    // The peer does not read: one send takes what fits in the buffers.
    let data = vec![7u8; 16 << 20];
    let first = sock.send(&data)?;
    report("len", data.len());
    report("first", first);
    // Until the peer reads, the next send would block.
    let mut then = sock.send(&data[first..]);
    let mut more = 0;
    while let Ok(n) = then {
        more += n;
        then = sock.send(&data[first + more..]);
    }
    report("then", outcome(&then));
    Ok(())
}

fn timeouts(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    report("default_timeout", format!("{:?}", sock.gettimeout()));

    sock.settimeout(Some(Duration::ZERO))?;
    report("zero_blocking", sock.getblocking());
    let started = Instant::now();
    report("zero", outcome(&sock.recv(10)));
    report("zero_ms", ms(started));

    sock.settimeout(Some(Duration::from_millis(500)))?;
    report("positive_timeout", format!("{:?}", sock.gettimeout()));
    let started = Instant::now();
    report("positive", outcome(&sock.recv(10)));
    report("positive_ms", ms(started));

    sock.settimeout(None)?;
    report("none_blocking", sock.getblocking());
    let data = sock.recv(10)?;
    report("none", String::from_utf8_lossy(&data));
    Ok(())
}

fn sendall_deadline(addr: &str, len: usize, timeout_ms: u64) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    sock.setsockopt(SockOpt::SendBufSize(64 << 10))?;
    sock.settimeout(Some(Duration::from_millis(timeout_ms)))?;
    let data = pattern(len);
    let started = Instant::now();
    let result = sock.sendall(&data);
    report("elapsed_ms", ms(started));
    report("outcome", outcome(&result));
    if let Err(e) = &result {
        report(
            "bytes_sent",
            sockshim::bytes_sent(e).map_or("none".to_string(), |n| n.to_string()),
        );
    }
    Ok(())
}

fn connect(addr: &str, timeout: Option<Duration>) -> Result {
    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    sock.settimeout(timeout)?;
    let started = Instant::now();
    report("connect", outcome(&sock.connect(addr)));
    report("elapsed_ms", ms(started));
    Ok(())
}

fn connect_twice(denied: &str, allowed: &str) -> Result {
    let first = sockshim::create_connection(denied, Some(Duration::from_secs(5)));
    report("denied", outcome(&first));
    // The plugin goes on after a denial, and so does the host.
    let sock = sockshim::create_connection(allowed, Some(Duration::from_secs(5)))?;
    sock.sendall(b"still here")?;
    report("allowed", "ok");
    Ok(())
}

fn use_after_close(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    sock.close();
    sock.close(); // idempotent
    report("recv", outcome(&sock.recv(10)));
    report("send", outcome(&sock.send(b"x")));
    report("getpeername", outcome(&sock.getpeername()));
    Ok(())
}

fn huge_recv(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    report("huge", outcome(&sock.recv(usize::MAX)));
    report("over_max", outcome(&sock.recv((16 << 20) + 1)));
    // The socket is still usable afterwards.
    sock.sendall(b"ping")?;
    report("after", String::from_utf8_lossy(&sock.recv(4)?));
    Ok(())
}

fn accept_timeouts() -> Result {
    let server = sockshim::create_server("127.0.0.1:0")?;
    server.settimeout(Some(Duration::from_secs(5)))?;
    let addr = server.getsockname()?;

    let client = sockshim::create_connection(addr, Some(Duration::from_secs(5)))?;
    let (conn, peer) = server.accept()?;
    report("accepted_timeout", format!("{:?}", conn.gettimeout()));
    report("peer_is_client", peer == client.getsockname()?);

    sockshim::setdefaulttimeout(Some(Duration::from_millis(1500)));
    let _client2 = sockshim::create_connection(addr, Some(Duration::from_secs(5)))?;
    let (conn2, _) = server.accept()?;
    report("accepted_with_default", format!("{:?}", conn2.gettimeout()));
    let fresh = Socket::new(Family::Ipv4, Kind::Stream)?;
    report("new_with_default", format!("{:?}", fresh.gettimeout()));
    report(
        "getdefaulttimeout",
        format!("{:?}", sockshim::getdefaulttimeout()),
    );

    // Bytes cross between the two ends of one plugin.
    client.sendall(b"loop")?;
    report("looped", String::from_utf8_lossy(&conn.recv(4)?));
    Ok(())
}

fn socket_limit(limit: usize) -> Result {
    let mut socks = Vec::new();
    for _ in 0..limit {
        socks.push(Socket::new(Family::Ipv4, Kind::Stream)?);
    }
    report(
        "over_limit",
        outcome(&Socket::new(Family::Ipv4, Kind::Stream)),
    );
    let closed = socks.pop();
    drop(closed);
    report(
        "after_close",
        outcome(&Socket::new(Family::Ipv4, Kind::Stream)),
    );
    Ok(())
}

fn read_write(addr: &str) -> Result {
    let mut sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    sock.write_all(b"hello line\nsecond line\n")?;
    sock.flush()?;
    let mut reader = BufReader::new(&sock);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    report("line1", line.trim_end());
    line.clear();
    reader.read_line(&mut line)?;
    report("line2", line.trim_end());
    let mut rest = String::new();
    reader.read_to_string(&mut rest)?;
    report("rest", rest.trim_end());
    Ok(())
}

fn std_connect(addr: &str) -> Result {
    // Rust's std::net goes through wasi:sockets, not sockshim: the host's
    // policy must hold there too.
    let result = std::net::TcpStream::connect(addr);
    report("std_connect", outcome(&result));
    Ok(())
}

fn options(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    sock.setsockopt(SockOpt::TcpNoDelay(true))?;
    sock.setsockopt(SockOpt::KeepAlive(true))?;
    sock.setsockopt(SockOpt::ReuseAddr(true))?;
    sock.setsockopt(SockOpt::RecvBufSize(128 << 10))?;
    sock.setsockopt(SockOpt::Linger(Some(Duration::from_secs(2))))?;
    for name in [
        SockOptName::TcpNoDelay,
        SockOptName::KeepAlive,
        SockOptName::ReuseAddr,
        SockOptName::RecvBufSize,
        SockOptName::Linger,
    ] {
        report(
            &format!("{name:?}"),
            format!("{:?}", sock.getsockopt(name)?),
        );
    }
    report(
        "huge_buffer",
        outcome(&sock.setsockopt(SockOpt::RecvBufSize(usize::MAX))),
    );
    Ok(())
}

fn addresses(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    report("peer", sock.getpeername()?);
    report("local_ip", sock.getsockname()?.ip());
    let fresh = Socket::new(Family::Ipv4, Kind::Stream)?;
    report("unconnected_peer", outcome(&fresh.getpeername()));
    report("family", format!("{:?}", sock.family()));
    Ok(())
}

fn ipv6(addr: &str) -> Result {
    let sock = Socket::new(Family::Ipv6, Kind::Stream)?;
    sock.settimeout(Some(Duration::from_secs(10)))?;
    sock.connect(addr)?;
    report("peer", sock.getpeername()?);
    report("local_ip", sock.getsockname()?.ip());
    sock.sendall(b"six")?;
    report("echo", String::from_utf8_lossy(&sock.recv(16)?));
    // An IPv4 address on an IPv6 socket is refused, as in Python.
    let other = Socket::new(Family::Ipv6, Kind::Stream)?;
    report("v4_on_v6", outcome(&other.connect("127.0.0.1:9")));
    Ok(())
}

fn resolve(host: &str) -> Result {
    report("resolve", format!("{:?}", sockshim::resolve(host)));
    Ok(())
}
