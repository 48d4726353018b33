//! `echo-check tcp|udp ADDR [MESSAGE]`: checks that the echo server at
//! ADDR sends MESSAGE back, a sockshim example plugin and the client of
//! `examples/sandboxes/`.
//!
//! Over TCP (`echo-server`) it connects, sends the message, shuts its
//! sending side and reads the echo to the end; over UDP (`udp-echo`) it
//! sends the message as one datagram and receives one back. Each
//! operation waits at most five seconds. Prints `tcp ADDR: echoed N bytes`
//! (or `udp …`) and exits 0 when the echo is the message; otherwise says
//! what went wrong on stderr and exits 1.

use std::io::{self, Read};
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::Duration;

use sockshim::{Family, Kind, Socket};

const WAIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (proto, addr, message) = match args.as_slice() {
        [proto, addr] => (proto, addr, "hello from echo-check"),
        [proto, addr, message] => (proto, addr, message.as_str()),
        _ => {
            eprintln!("usage: echo-check tcp|udp ADDR [MESSAGE]");
            return ExitCode::from(2);
        }
    };
    let echoed = match proto.as_str() {
        "tcp" => tcp(addr, message.as_bytes()),
        "udp" => udp(addr, message.as_bytes()),
        _ => {
            eprintln!("echo-check: `{proto}` is neither tcp nor udp");
            return ExitCode::from(2);
        }
    };
    match echoed {
        Ok(echo) if echo == message.as_bytes() => {
            println!("{proto} {addr}: echoed {} bytes", echo.len());
            ExitCode::SUCCESS
        }
        Ok(echo) => {
            eprintln!(
                "echo-check: {proto} {addr}: sent {message:?}, got {:?}",
                String::from_utf8_lossy(&echo)
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("echo-check: {proto} {addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn tcp(addr: &str, message: &[u8]) -> io::Result<Vec<u8>> {
    let sock = sockshim::create_connection(addr, Some(WAIT))?;
    sock.sendall(message)?;
    sock.shutdown(Shutdown::Write)?;
    let mut echo = Vec::new();
    (&sock).read_to_end(&mut echo)?;
    Ok(echo)
}

fn udp(addr: &str, message: &[u8]) -> io::Result<Vec<u8>> {
    let family = if addr.starts_with('[') {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let sock = Socket::new(family, Kind::Datagram)?;
    sock.settimeout(Some(WAIT))?;
    // Connected: only the server's datagrams come back.
    sock.connect(addr)?;
    sock.send(message)?;
    sock.recv(64 * 1024)
}
