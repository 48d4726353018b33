//! `dns-query SERVER NAME`: asks the DNS server SERVER for the A records of
//! NAME over UDP and prints them, a sockshim example plugin.
//!
//! SERVER is `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`). Each try waits
//! two seconds for the answer; three tries in all, then it gives up. A
//! datagram that is not the answer to this query (another ID, another
//! sender) is ignored. Prints one line per A record, `NAME A IP TTL`, and
//! exits 0; prints the server's error (`NAME: NXDOMAIN`) or `NAME: no A
//! record` on stdout, or why there was no answer on stderr, and exits 1.
//!
//! Run it with a connect rule for the server (`--allow-connect
//! 127.0.0.1:5353`): the socket is bound implicitly by its first `sendto`
//! and so hears only senders a connect rule allows.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sockshim::{Family, Kind, Socket};

const TRIES: u32 = 3;
const WAIT: Duration = Duration::from_secs(2);
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, name] = args.as_slice() else {
        eprintln!("usage: dns-query SERVER NAME   (for example 127.0.0.1:5353 example.com)");
        return ExitCode::FAILURE;
    };
    let server = match parse_server(server) {
        Some(server) => server,
        None => {
            eprintln!("dns-query: `{server}` is not IP or IP:PORT");
            return ExitCode::FAILURE;
        }
    };
    match query(server, name) {
        Ok(Answer::Records(records)) if !records.is_empty() => {
            for (owner, ip, ttl) in records {
                println!("{owner} A {ip} {ttl}");
            }
            ExitCode::SUCCESS
        }
        Ok(Answer::Records(_)) => {
            println!("{name}: no A record");
            ExitCode::FAILURE
        }
        Ok(Answer::Error(rcode)) => {
            println!("{name}: {}", rcode_name(rcode));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("dns-query: {server}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_server(server: &str) -> Option<SocketAddr> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Some(addr);
    }
    server
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// What the server said.
enum Answer {
    /// The A records of the answer section: owner name, address, TTL.
    Records(Vec<(String, Ipv4Addr, u32)>),
    /// A response code other than NOERROR.
    Error(u8),
}

/// Sends the query, and again after each wait that ends without the
/// answer.
fn query(server: SocketAddr, name: &str) -> io::Result<Answer> {
    let family = if server.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let sock = Socket::new(family, Kind::Datagram)?;
    sock.settimeout(Some(WAIT))?;
    let id = query_id();
    let request = encode_query(id, name)?;
    for attempt in 1..=TRIES {
        sock.sendto(&request, server)?;
        match wait_for_answer(&sock, server, id) {
            Ok(answer) => return Ok(answer),
            Err(err) if err.kind() == io::ErrorKind::TimedOut && attempt < TRIES => {
                eprintln!("dns-query: no answer within {WAIT:?}, asking again");
            }
            Err(err) => return Err(err),
        }
    }
    unreachable!("the last try returns")
}

/// Receives until the answer to query `id` from `server` comes (each
/// receive within the socket's timeout).
fn wait_for_answer(sock: &Socket, server: SocketAddr, id: u16) -> io::Result<Answer> {
    loop {
        let (response, from) = sock.recvfrom(4096)?;
        if from != server {
            continue;
        }
        match decode_response(&response, id) {
            Some(answer) => return Ok(answer),
            None => continue, // not ours, or not a DNS response
        }
    }
}

/// A query ID that differs from run to run.
fn query_id() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

/// A standard query with recursion desired, one question: NAME, A, IN
/// (RFC 1035, 4.1).
fn encode_query(id: u16, name: &str) -> io::Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(512);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    msg.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    msg.extend_from_slice(&[0; 6]); // ANCOUNT, NSCOUNT, ARCOUNT
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a host name"),
            ));
        }
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&TYPE_A.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(msg)
}

/// The answer in `msg`, if it is a response to query `id`.
fn decode_response(msg: &[u8], id: u16) -> Option<Answer> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    if u16_at(0)? != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Some(Answer::Error(rcode));
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = read_name(msg, at)?.1 + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        let (owner, next) = read_name(msg, at)?;
        let kind = u16_at(next)?;
        let class = u16_at(next + 2)?;
        let ttl = u32::from(u16_at(next + 4)?) << 16 | u32::from(u16_at(next + 6)?);
        let len = usize::from(u16_at(next + 8)?);
        let data = msg.get(next + 10..next + 10 + len)?;
        if kind == TYPE_A && class == CLASS_IN && len == 4 {
            let ip = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
            records.push((owner, ip, ttl));
        }
        at = next + 10 + len;
    }
    Some(Answer::Records(records))
}

/// The name at `at`, following compression pointers (RFC 1035, 4.1.4),
/// and where the record goes on after it.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut after = None;
    // Each pointer must go backwards, which bounds the loop.
    let mut limit = at;
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => break,
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(l & 0x3f) << 8 | usize::from(*msg.get(at + 1)?);
                after.get_or_insert(at + 2);
                if target >= limit {
                    return None;
                }
                limit = target;
                at = target;
            }
            l if l < 64 => {
                let label = msg.get(at + 1..at + 1 + usize::from(l))?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + usize::from(l);
            }
            _ => return None,
        }
    }
    Some((labels.join("."), after.unwrap_or(at + 1)))
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("response code {other}"),
    }
}
