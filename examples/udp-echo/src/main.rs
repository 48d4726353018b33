//! `udp-echo ADDR`: a UDP echo server, a sockshim example plugin.
//!
//! Binds ADDR (`host:port`, `[ipv6]:port`; port 0 picks a free port),
//! prints `listening on IP:PORT` with the address actually bound, then
//! sends every datagram back to its sender, forever. A blocking `recvfrom`
//! loop: one datagram at a time, each whole (up to the largest a datagram
//! holds), empty ones included.
//!
//! Run it with a bind rule for ADDR and a connect rule for its clients
//! (`--allow-bind 127.0.0.1:7001 --allow-connect 127.0.0.1:*`): a socket
//! bound under a bind rule hears anyone, but every datagram it sends, an
//! answer included, goes only where a connect rule allows; a reply the
//! policy denies is reported on stderr and the server goes on.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use sockshim::{Family, Kind, Socket};

/// Large enough for any datagram.
const BUFFER_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr] = args.as_slice() else {
        eprintln!("usage: udp-echo ADDR   (for example 127.0.0.1:7001)");
        return ExitCode::FAILURE;
    };
    match serve(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("udp-echo: {addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> io::Result<()> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not an IP:PORT address"))?;
    let family = if parsed.is_ipv6() {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let sock = Socket::new(family, Kind::Datagram)?;
    sock.bind(parsed)?;
    println!("listening on {}", sock.getsockname()?);
    io::stdout().flush()?;
    let mut buf = vec![0; BUFFER_SIZE];
    loop {
        let (n, from) = sock.recvfrom_into(&mut buf)?;
        // A sender that went away (or that the kernel refuses to reach)
        // does not end the server.
        if let Err(err) = sock.sendto(&buf[..n], from) {
            eprintln!("udp-echo: reply to {from}: {err}");
        }
    }
}
