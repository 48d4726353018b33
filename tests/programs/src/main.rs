//! The guest side of the integration tests: one wasm32-wasip2 command whose
//! first argument names a scenario. Each scenario does what a plugin author
//! would do with the `sockshim` crate and prints what it observed as
//! `key=value` lines; the native side of each test (tests/tests/*.rs) asserts
//! on them. A failure the scenario does not expect exits non-zero.

#[path = "../../src/data.rs"]
mod data;
mod names;
mod readiness;
mod udp;

use data::{fnv1a, pattern};
use sockshim::fs::File;
use sockshim::{Family, Kind, SockOpt, SockOptName, Socket};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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
        ("recv-into-all", [addr, bufsize]) => recv_into_all(addr, parse(bufsize)),
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
        ("recv-reset", [addr, size]) => recv_reset(addr, parse(size)),
        ("accept-timeouts", []) => accept_timeouts(),
        ("socket-limit", [n]) => socket_limit(parse(n)),
        ("read-write", [addr]) => read_write(addr),
        ("std-connect", [addr]) => std_connect(addr),
        ("options", [addr]) => options(addr),
        ("addresses", [addr]) => addresses(addr),
        ("resolve", [host]) => resolve(host),
        ("ipv6", [addr]) => ipv6(addr),
        ("udp-basics", [addr]) => udp::basics(addr),
        ("udp-connected", [addr]) => udp::connected(addr),
        ("udp-refused", [addr]) => udp::refused(addr),
        ("udp-policy", [allowed, denied]) => udp::policy(allowed, denied),
        ("udp-std-policy", [allowed, denied]) => udp::std_policy(allowed, denied),
        ("env", [name]) => {
            report("value", std::env::var(name).unwrap_or_default());
            Ok(())
        }
        ("read-file", [path]) => std::fs::read_to_string(path).map(|text| report("text", text)),
        ("sendfile", [addr, path]) => sendfile(addr, path),
        ("sendfile-slices", [addr, path, dir]) => sendfile_slices(addr, path, dir),
        ("sendfile-stalled", [addr, path, offset, ms]) => {
            sendfile_stalled(addr, path, parse(offset), parse(ms))
        }
        ("sendfile-deadline", [addr, path, ms]) => sendfile_deadline(addr, path, parse(ms)),
        ("sendfile-reset", [addr, path]) => sendfile_reset(addr, path),
        ("sendfile-write-only", [addr, dir, name]) => sendfile_write_only(addr, dir, name),
        ("makefile-lines", [addr]) => makefile_lines(addr),
        ("makefile-write", [addr]) => makefile_write(addr),
        ("makefile-outlives-socket", [addr]) => makefile_outlives_socket(addr),
        ("makefile-timeout", [addr]) => makefile_timeout(addr),
        ("select-timeouts", [addr]) => readiness::select_timeouts(addr),
        ("readiness-states", []) => readiness::readiness_states(),
        ("nonblocking-connect", [open, refused]) => readiness::nonblocking_connect(open, refused),
        ("sendfile-once", [addr, path, dir]) => readiness::sendfile_once(addr, path, dir),
        ("async-race", [addr]) => readiness::async_race(addr),
        ("async-end", [addr]) => readiness::async_end_after_short_read(addr),
        ("async-echo", [addr, len]) => readiness::async_echo(addr, parse(len)),
        ("async-echo-server", [n]) => readiness::async_echo_server(parse(n)),
        ("selector-echo-server", [n]) => readiness::selector_echo_server(parse(n)),
        ("selector-api", []) => readiness::selector_api(),
        ("pollables-dropped", [addr]) => readiness::pollables_dropped(addr),
        ("args", args) => names::args(args),
        ("create-connection", [addr]) => names::create_connection(addr),
        ("create-server", [addr]) => names::create_server(addr),
        ("bind", [addr]) => names::bind(addr),
        ("unresolvable", [addr]) => names::unresolvable(addr),
        ("default-timeout", [addr]) => names::create_connection_default_timeout(addr),
        ("errnos", [limit]) => names::errnos(parse(limit)),
        ("lookup-errors", [host, port]) => names::lookup_errors(host, parse(port)),
        // Issue 26: hardening.
        ("linger", [addr, secs, how]) => linger(addr, parse(secs), how),
        ("allocate", [mib]) => allocate(parse(mib)),
        ("std-connect-many", [addr, n]) => std_connect_many(addr, parse(n)),
        ("wait-forever", [how, addr]) => readiness::wait_forever(how, addr),
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

/// Receives until end of stream with `recv_into`, one buffer reused.
fn recv_into_all(addr: &str, bufsize: usize) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    let mut buf = vec![0u8; bufsize];
    let mut data = Vec::new();
    let mut calls = 0u64;
    let in_place_before = sockshim::receives_in_place();
    loop {
        calls += 1;
        let n = sock.recv_into(&mut buf)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    report("received", data.len());
    report("fnv", fnv1a(&data));
    report("calls", calls);
    report("in_place", sockshim::receives_in_place() - in_place_before);
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
    // After end of stream, recv keeps returning empty, like Python; both
    // ways the host receives (copied up to 4 KiB, placed above).
    report("again", sock.recv(4096)?.len());
    report("again_placed", sock.recv(64 << 10)?.len());
    Ok(())
}

/// recv on a connection the peer resets, small and large.
fn recv_reset(addr: &str, size: usize) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    // The peer resets 300 ms after accepting: let the reset arrive before
    // the first recv.
    std::thread::sleep(Duration::from_millis(900));
    report("first", outcome(&sock.recv(size)));
    match sock.recv(size) {
        Ok(data) => report("second", format!("{} bytes", data.len())),
        Err(e) => report("second", outcome::<()>(&Err(e))),
    }
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
    report("zero_placed", outcome(&sock.recv(64 << 10)));
    report("zero_ms", ms(started));

    sock.settimeout(Some(Duration::from_millis(500)))?;
    report("positive_timeout", format!("{:?}", sock.gettimeout()));
    let started = Instant::now();
    report("positive", outcome(&sock.recv(10)));
    report("positive_ms", ms(started));
    let started = Instant::now();
    report("positive_placed", outcome(&sock.recv(64 << 10)));
    report("positive_placed_ms", ms(started));
    // `recv_into` of a buffer the host receives into (`recv-into`), which
    // a socket that waits on its thread makes while its result is lowered.
    let mut buf = vec![0u8; 64 << 10];
    sock.settimeout(Some(Duration::ZERO))?;
    report("zero_into", outcome(&sock.recv_into(&mut buf)));
    sock.settimeout(Some(Duration::from_millis(500)))?;
    let started = Instant::now();
    report("positive_into", outcome(&sock.recv_into(&mut buf)));
    report("positive_into_ms", ms(started));

    sock.settimeout(None)?;
    report("none_blocking", sock.getblocking());
    let data = sock.recv(10)?;
    report("none", String::from_utf8_lossy(&data));
    // The peer sends more once it hears back; this waits for it.
    sock.sendall(b"!")?;
    let n = sock.recv_into(&mut buf)?;
    report("none_into", String::from_utf8_lossy(&buf[..n]));
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

/// `bytes_sent` of an error, or `none`.
fn sent_of<T>(r: &std::io::Result<T>) -> String {
    match r {
        Ok(_) => "none".to_string(),
        Err(e) => sockshim::bytes_sent(e).map_or("none".to_string(), |n| n.to_string()),
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads up to `n` bytes at the file's position, as hex.
fn next_bytes(mut file: &File, n: usize) -> std::io::Result<String> {
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        let read = file.read(&mut buf[got..])?;
        if read == 0 {
            break;
        }
        got += read;
    }
    Ok(hex(&buf[..got]))
}

/// The whole file at `path` (a regular file or a FIFO) to `addr`.
fn sendfile(addr: &str, path: &str) -> Result {
    let file = File::open(path)?;
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(30)))?;
    let started = Instant::now();
    let sent = sock.sendfile(&file, 0, None)?;
    report("elapsed_ms", ms(started));
    report("sent", sent);
    report("position", file.position());
    Ok(())
}

/// Slices of the file at `path` to `addr`, in order, over one connection;
/// then the argument errors, and a directory (`dir`).
fn sendfile_slices(addr: &str, path: &str, dir: &str) -> Result {
    let mut file = File::open(path)?;
    let len = file.len()?;
    report("len", len);
    report("is_file", file.metadata()?.is_file());
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(30)))?;

    // A middle slice; the file's position ends after it, and reading goes
    // on from there.
    let sent = sock.sendfile(&file, 1000, Some(5000))?;
    report("middle_sent", sent);
    report("middle_position", file.position());
    report("middle_stream_position", file.stream_position()?);
    report("middle_next", next_bytes(&file, 16)?);

    // A count past the end: only what exists.
    let sent = sock.sendfile(&file, len - 100, Some(1000))?;
    report("tail_sent", sent);
    report("tail_position", file.position());
    report("tail_next", outcome(&file.read(&mut [0; 8])));
    report("tail_next_len", (&file).read(&mut [0; 8])?);

    // At and past the end: nothing, and 0.
    report("at_end", sock.sendfile(&file, len, None)?);
    report("past_end", sock.sendfile(&file, len + 10, Some(10))?);
    report("past_end_position", file.position());

    // Count zero: CPython's "count must be a positive integer".
    file.seek(SeekFrom::Start(7))?;
    let zero = sock.sendfile(&file, 20, Some(0));
    report("count_zero", outcome(&zero));
    report("count_zero_sent", sent_of(&zero));
    report("count_zero_position", file.position());

    // A non-blocking socket is refused, as in CPython.
    sock.setblocking(false)?;
    let nonblocking = sock.sendfile(&file, 0, Some(10));
    report("nonblocking", outcome(&nonblocking));
    sock.settimeout(Some(Duration::from_secs(30)))?;

    // A directory opens (as open(2) does) but cannot be sent.
    let directory = File::open(dir)?;
    report("dir_is_dir", directory.metadata()?.is_dir());
    report("directory", outcome(&sock.sendfile(&directory, 0, None)));

    // A path under no preopened directory.
    report("outside", outcome(&File::open("/nowhere/x")));
    report("missing", outcome(&File::open(format!("{dir}/missing"))));

    // A closed socket: the error, and the file untouched.
    file.set_position(3);
    sock.shutdown(Shutdown::Write)?;
    sock.close();
    report("closed", outcome(&sock.sendfile(&file, 0, None)));
    report("closed_position", file.position());
    Ok(())
}

/// sendfile to a peer that stops reading, with a socket timeout.
fn sendfile_stalled(addr: &str, path: &str, offset: u64, timeout_ms: u64) -> Result {
    let file = File::open(path)?;
    report("len", file.len()?);
    let sock = sockshim::create_connection(addr, None)?;
    sock.setsockopt(SockOpt::SendBufSize(64 << 10))?;
    sock.settimeout(Some(Duration::from_millis(timeout_ms)))?;
    let started = Instant::now();
    let result = sock.sendfile(&file, offset, None);
    report("elapsed_ms", ms(started));
    report("outcome", outcome(&result));
    report("bytes_sent", sent_of(&result));
    report("position", file.position());
    Ok(())
}

/// sendfile_until to a slow reader: the deadline bounds the whole call,
/// though every wait is short.
fn sendfile_deadline(addr: &str, path: &str, deadline_ms: u64) -> Result {
    let file = File::open(path)?;
    report("len", file.len()?);
    let sock = sockshim::create_connection(addr, None)?;
    sock.setsockopt(SockOpt::SendBufSize(64 << 10))?;
    sock.settimeout(Some(Duration::from_secs(5)))?;

    // A deadline already past: at once, nothing sent.
    file.set_position(99);
    let past = sock.sendfile_until(&file, 10, None, Instant::now());
    report("past", outcome(&past));
    report("past_bytes_sent", sent_of(&past));
    report("past_position", file.position());

    let started = Instant::now();
    let deadline = started + Duration::from_millis(deadline_ms);
    let result = sock.sendfile_until(&file, 0, None, deadline);
    report("elapsed_ms", ms(started));
    report("outcome", outcome(&result));
    report("bytes_sent", sent_of(&result));
    report("position", file.position());
    Ok(())
}

/// sendfile to a peer that resets the connection.
fn sendfile_reset(addr: &str, path: &str) -> Result {
    let file = File::open(path)?;
    report("len", file.len()?);
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(20)))?;
    let result = sock.sendfile(&file, 0, None);
    report("outcome", outcome(&result));
    report("bytes_sent", sent_of(&result));
    report("position", file.position());
    Ok(())
}

/// Line reading through makefile("rb"), mixed with plain reads.
fn makefile_lines(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    let mut file = sock.makefile("rb")?;
    report("mode", file.mode());
    report("writable", file.writable());
    let mut line = String::new();
    file.read_line(&mut line)?;
    report("line1", line.trim_end());
    line.clear();
    file.read_line(&mut line)?;
    report("line2", line.trim_end());
    let mut five = [0; 5];
    file.read_exact(&mut five)?;
    report("exact5", String::from_utf8_lossy(&five));
    line.clear();
    file.read_line(&mut line)?;
    report("line3", line.trim_end());
    let mut field = Vec::new();
    file.read_until(b';', &mut field)?;
    report("until", String::from_utf8_lossy(&field));
    let mut some = [0; 3];
    let n = file.read(&mut some)?;
    report("read3", String::from_utf8_lossy(&some[..n]));
    let rest: Vec<String> = (&mut file).lines().collect::<std::io::Result<_>>()?;
    report("lines", rest.join("|"));
    report("eof_read", file.read(&mut some)?);
    report("write_to_rb", outcome(&file.write(b"x")));
    report("flush_rb", outcome(&file.flush()));
    file.close()?;
    report("closed", file.is_closed());
    report("read_closed", outcome(&file.read(&mut some)));
    report("close_again", outcome(&file.close()));
    report("text_mode", outcome(&sock.makefile("r")));
    report("bad_mode", outcome(&sock.makefile("rwb+")));
    Ok(())
}

/// Writes through makefile("wb"): nothing reaches the peer before flush.
fn makefile_write(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    let mut file = sock.makefile("wb")?;
    report("mode", file.mode());
    report("read_from_wb", outcome(&file.read(&mut [0; 4])));
    report(
        "read_line_from_wb",
        outcome(&file.read_line(&mut String::new())),
    );
    file.write_all(b"hello ")?;
    file.write_all(b"world\n")?;
    // The peer checks that nothing arrives while this sleeps.
    std::thread::sleep(Duration::from_millis(1500));
    file.flush()?;
    report("flushed", "yes");
    // A write larger than the buffer goes out whole.
    let mut small = sock.makefile_with_buffer("wb", 4)?;
    small.write_all(b"0123456789\n")?;
    // Dropping a writable file flushes it.
    let mut dropped = sock.makefile("wb")?;
    dropped.write_all(b"dropped\n")?;
    drop(dropped);
    // close() flushes and reports.
    small.write_all(b"closed\n")?;
    report("close", outcome(&small.close()));
    report("write_closed", outcome(&small.write(b"x")));
    // Unbuffered: each write goes at once.
    let mut raw = sock.makefile_with_buffer("wb", 0)?;
    raw.write_all(b"raw\n")?;
    drop(raw);
    drop(file);
    sock.close();
    Ok(())
}

/// Two file objects keep the connection open after the socket is closed;
/// the peer sees the end only when the last one goes.
fn makefile_outlives_socket(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    let mut reader = sock.makefile("rb")?;
    let mut writer = sock.makefile("wb")?;
    sock.close();
    report("socket_recv", outcome(&sock.recv(1)));
    report("socket_makefile", outcome(&sock.makefile("rb")));
    writer.write_all(b"ping\n")?;
    writer.flush()?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    report("reply", line.trim_end());
    drop(reader);
    // The writer alone still holds the connection.
    writer.write_all(b"still here\n")?;
    writer.flush()?;
    report("still", "written");
    std::thread::sleep(Duration::from_millis(1500));
    writer.close()?;
    report("closed", "yes");
    // Long enough after the close that the peer's end of stream is told
    // apart from the plugin's exit.
    std::thread::sleep(Duration::from_millis(3000));
    Ok(())
}

/// A read that timed out poisons the file object, not the socket.
fn makefile_timeout(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_millis(300)))?;
    let mut file = sock.makefile("rwb")?;
    let mut line = String::new();
    let started = Instant::now();
    report("first", outcome(&file.read_line(&mut line)));
    report("first_ms", ms(started));
    // Ask the peer for the rest, and give it time to arrive.
    file.write_all(b"go\n")?;
    file.flush()?;
    std::thread::sleep(Duration::from_millis(800));
    line.clear();
    report("second", outcome(&file.read_line(&mut line)));
    report("read_after", outcome(&file.read(&mut [0; 4])));
    // Writing still works, and so does the socket itself.
    report(
        "write_after",
        outcome(&file.write_all(b"ok\n").and_then(|()| file.flush())),
    );
    sock.settimeout(Some(Duration::from_secs(5)))?;
    report("socket_recv", String::from_utf8_lossy(&sock.recv(100)?));
    Ok(())
}

/// sendfile from a descriptor opened only for writing, through the raw
/// bindings (`sockshim::fs::File` opens for reading only): the host must
/// refuse to read what the plugin could not read itself.
fn sendfile_write_only(addr: &str, dir: &str, name: &str) -> Result {
    use sockshim::bindings;
    use wasip2::filesystem::preopens;
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let fs_error = |e: wasip2::filesystem::types::ErrorCode| std::io::Error::other(e.to_string());
    let preopens = preopens::get_directories();
    let Some((base, _)) = preopens.iter().find(|(_, n)| n == dir) else {
        return Err(std::io::Error::other(format!("no preopen {dir}")));
    };
    let write_only = base
        .open_at(
            PathFlags::empty(),
            name,
            OpenFlags::empty(),
            DescriptorFlags::WRITE,
        )
        .map_err(fs_error)?;
    let readable = base
        .open_at(
            PathFlags::empty(),
            name,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(fs_error)?;
    let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let sock =
        bindings::Socket::create(bindings::AddressFamily::Ipv4, bindings::SocketType::Stream)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    sock.connect(&addr.ip().to_string(), addr.port())
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let refused = sock.sendfile(&write_only, 0, None, None);
    report("write_only", format!("{refused:?}"));
    // The same file opened for reading goes.
    let sent = sock.sendfile(&readable, 0, None, None);
    report("readable", format!("{sent:?}"));
    Ok(())
}

/// Connects, sets `SO_LINGER` to `secs`, fills the connection (the peer
/// does not read), then ends `how`: `close` (an explicit close, then a
/// normal exit), `exit` (exit with the socket open) or `trap`.
fn linger(addr: &str, secs: u64, how: &str) -> Result {
    let sock = sockshim::create_connection(addr, Some(Duration::from_secs(10)))?;
    sock.setsockopt(SockOpt::Linger(Some(Duration::from_secs(secs))))?;
    sock.setblocking(false)?;
    let chunk = vec![7u8; 64 << 10];
    let mut sent = 0;
    // Until the peer's window is shut as well as our buffer full: only then
    // do bytes stay unacknowledged, which is what a lingering close waits
    // for.
    let mut stalls = 0;
    while stalls < 5 {
        match sock.send(&chunk) {
            Ok(n) => {
                sent += n;
                stalls = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
    report("filled", sent);
    match how {
        "close" => {
            sock.close();
            report("closed", "ok");
        }
        "exit" => std::process::exit(0),
        _ => panic!("trapping with a lingering socket open"),
    }
    Ok(())
}

/// Allocates and touches `mib` MiB.
fn allocate(mib: usize) -> Result {
    let mut block = vec![0u8; mib << 20];
    for i in (0..block.len()).step_by(4096) {
        block[i] = 1;
    }
    report("allocated", block.iter().filter(|b| **b == 1).count() / 256);
    Ok(())
}

/// Opens up to `n` connections with Rust's std::net (wasi:sockets),
/// holding them all, and says how many it got and why it stopped.
fn std_connect_many(addr: &str, n: usize) -> Result {
    let mut held = Vec::new();
    let mut stopped = "none".to_string();
    for _ in 0..n {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(e) => {
                stopped = format!("{:?}: {e}", e.kind());
                break;
            }
        }
    }
    report("connected", held.len());
    report("stopped", stopped);
    Ok(())
}
