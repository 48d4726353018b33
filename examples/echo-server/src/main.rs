//! `echo-server ADDR`: a TCP echo server, a sockshim example plugin.
//!
//! Listens on ADDR (`host:port`, `[ipv6]:port`; port 0 picks a free port),
//! prints `listening on IP:PORT` with the address actually bound, then
//! accepts connections forever and sends every byte of each connection back
//! until the peer closes it.
//!
//! A plugin has one thread and the sockshim contract has no readiness
//! polling (no `select`), so connections are served one at a time, in the
//! order they arrive; others wait in the listen backlog meanwhile. An error
//! on one connection is reported on stderr and the server goes on.

use std::io::{self, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use sockshim::Socket;

/// The most a single `recv` asks for.
const BUFFER_SIZE: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr] = args.as_slice() else {
        eprintln!("usage: echo-server ADDR   (for example 127.0.0.1:7000)");
        return ExitCode::FAILURE;
    };
    let server = match sockshim::create_server(addr.as_str()) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("echo-server: listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = match server.getsockname() {
        Ok(local) => local,
        Err(err) => {
            eprintln!("echo-server: getsockname: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {local}");
    if let Err(err) = io::stdout().flush() {
        eprintln!("echo-server: write to stdout: {err}");
        return ExitCode::FAILURE;
    }
    loop {
        match server.accept() {
            Ok((conn, peer)) => {
                if let Err(err) = echo(&conn) {
                    eprintln!("echo-server: connection from {peer}: {err}");
                }
            }
            Err(err) => {
                eprintln!("echo-server: accept: {err}");
                // Do not spin if the error persists (e.g. a socket limit).
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Sends back everything `conn` receives until the peer closes its side,
/// then closes the connection.
fn echo(conn: &Socket) -> io::Result<()> {
    let mut buf = vec![0; BUFFER_SIZE];
    loop {
        let n = conn.recv_into(&mut buf)?;
        if n == 0 {
            conn.close();
            return Ok(());
        }
        conn.sendall(&buf[..n])?;
    }
}
