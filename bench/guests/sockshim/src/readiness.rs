//! The sockshim guest's readiness commands (issue 22):
//!
//! - `readiness HOLD ECHO N ITERS`: N sockets registered, one ready. Open
//!   N - 1 connections to HOLD (a peer that accepts and never writes, so
//!   they are never readable) and one to ECHO; send one byte on the last and
//!   wait until it comes back, so that exactly one socket is readable, for
//!   good (readiness is level-triggered and nothing reads it). Then time
//!   ITERS waits of a `DefaultSelector` holding all N for reading
//!   (`select(None)`, one host `selector.wait`), and ITERS `sockshim::poll`
//!   calls over the list of all N (one host `poll`), each of which must
//!   report exactly the one ready socket. Prints `selector_wait NS` and
//!   `poll NS`, NS in ns per wait.
//! - `manyconn PORT CONNS`: a single-threaded echo server through a
//!   `DefaultSelector`. Listen on 127.0.0.1:PORT, accept CONNS connections
//!   (non-blocking, TCP_NODELAY) as they come, echo what each sends, and
//!   return once all CONNS have been accepted and have closed.
//! - `manyconn-async PORT CONNS`: the same server as wstd tasks on
//!   `sockshim::aio` (the `async` feature): one task accepts the CONNS
//!   connections, and each connection is a task of its own that awaits
//!   `recv_into` and `sendall`; every wait is on the socket's pollable,
//!   all of them in wstd's one `wasi:io/poll` call.

use sockshim::aio::AsyncSocket;
use sockshim::selectors::{DefaultSelector, EVENT_READ, EVENT_WRITE};
use sockshim::{Events, SockOpt, Socket};
use std::io::{self, ErrorKind};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// See `readiness` in the module's documentation.
pub fn readiness(hold: &str, echo: &str, n: usize, iters: u32) -> io::Result<()> {
    if n == 0 {
        return Err(io::Error::other("readiness needs at least one socket"));
    }
    let mut socks = Vec::with_capacity(n);
    for _ in 1..n {
        socks.push(sockshim::create_connection(hold, None)?);
    }
    let ready = sockshim::create_connection(echo, None)?;
    ready.setsockopt(SockOpt::TcpNoDelay(true))?;
    ready.sendall(b"r")?;
    let echoed = sockshim::poll(&[(&ready, Events::READABLE)], Some(Duration::from_secs(60)))?;
    if echoed.is_empty() {
        return Err(io::Error::other("the echo peer did not answer in 60 s"));
    }
    socks.push(ready);

    let mut selector = DefaultSelector::new()?;
    for (i, sock) in socks.iter().enumerate() {
        selector.register(sock, EVENT_READ, i)?;
    }
    let check = |what: &str, ready: usize| match ready {
        1 => Ok(()),
        k => Err(io::Error::other(format!(
            "{what}: {k} sockets ready, expected 1"
        ))),
    };
    // A tenth as warm-up, then the timed waits.
    for _ in 0..iters / 10 {
        check("select", selector.select(None)?.len())?;
    }
    let started = Instant::now();
    for _ in 0..iters {
        check("select", selector.select(None)?.len())?;
    }
    report("selector_wait", started, iters);

    let entries: Vec<(&Socket, Events)> = socks.iter().map(|s| (s, Events::READABLE)).collect();
    for _ in 0..iters / 10 {
        check("poll", sockshim::poll(&entries, None)?.len())?;
    }
    let started = Instant::now();
    for _ in 0..iters {
        check("poll", sockshim::poll(&entries, None)?.len())?;
    }
    report("poll", started, iters);
    // Take the echoed byte, so that the close is not a reset for the peer.
    let mut byte = [0u8];
    socks[n - 1].recv_into(&mut byte)?;
    Ok(())
}

fn report(key: &str, started: Instant, iters: u32) {
    let ns = started.elapsed().as_nanos() as f64 / f64::from(iters.max(1));
    println!("{key} {ns:.1}");
}

/// A connection of `manyconn`: its socket and what it could not send yet.
struct Conn {
    sock: Socket,
    pending: Vec<u8>,
}

/// The listener's data in the selector; connections have their slot.
const LISTENER: usize = usize::MAX;

/// See `manyconn` in the module's documentation.
pub fn manyconn(port: u16, conns: usize) -> io::Result<()> {
    let listener = sockshim::create_server_with((Ipv4Addr::LOCALHOST, port), 4096)?;
    listener.setblocking(false)?;
    let mut selector = DefaultSelector::new()?;
    selector.register(&listener, EVENT_READ, LISTENER)?;
    let mut slots: Vec<Option<Conn>> = Vec::with_capacity(conns);
    let (mut accepted, mut open) = (0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    while accepted < conns || open > 0 {
        for (key, events) in selector.select(None)? {
            if key.data == LISTENER {
                while accepted < conns {
                    let sock = match listener.accept() {
                        Ok((sock, _)) => sock,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    sock.setblocking(false)?;
                    sock.setsockopt(SockOpt::TcpNoDelay(true))?;
                    selector.register(&sock, EVENT_READ, slots.len())?;
                    slots.push(Some(Conn {
                        sock,
                        pending: Vec::new(),
                    }));
                    accepted += 1;
                    open += 1;
                }
                if accepted == conns {
                    selector.unregister(&listener)?;
                }
                continue;
            }
            let slot = key.data;
            let Some(conn) = slots[slot].as_mut() else {
                continue;
            };
            let closed = if conn.pending.is_empty() {
                events.contains(EVENT_READ) && echo(conn, &mut buf)?
            } else {
                flush(conn)?
            };
            if closed {
                let conn = slots[slot].take().expect("the slot was just used");
                selector.unregister(&conn.sock)?;
                open -= 1;
            } else {
                // Wait to write while something is left to send, else to read.
                let want = if conn.pending.is_empty() {
                    EVENT_READ
                } else {
                    EVENT_WRITE
                };
                if key.events != want {
                    selector.modify(&conn.sock, want, slot)?;
                }
            }
        }
    }
    Ok(())
}

/// See `manyconn-async` in the module's documentation.
pub fn manyconn_async(port: u16, conns: usize) -> io::Result<()> {
    wstd::runtime::block_on(async move {
        let listener = AsyncSocket::from_socket(sockshim::create_server_with(
            (Ipv4Addr::LOCALHOST, port),
            4096,
        )?)?;
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let (sock, _) = listener.accept().await?;
            sock.setsockopt(SockOpt::TcpNoDelay(true))?;
            tasks.push(wstd::runtime::spawn(async move {
                // A message is 64 bytes; the native server reads into one
                // 64 KiB buffer it shares, a task needs one of its own.
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match sock.recv_into(&mut buf).await {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
                        Err(e) => return Err(e),
                    };
                    sock.sendall(&buf[..n]).await?;
                }
            }));
        }
        drop(listener);
        for task in tasks {
            task.await?;
        }
        Ok(())
    })
}

/// Receives what the connection has and sends it back, keeping what the
/// socket did not take; true at end of stream (or reset).
fn echo(conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    let n = match conn.sock.recv_into(buf) {
        Ok(0) => return Ok(true),
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(true),
        Err(e) => return Err(e),
    };
    conn.pending.extend_from_slice(&buf[..n]);
    flush(conn)
}

/// Sends as much of the pending bytes as the socket takes now; true if the
/// peer is gone.
fn flush(conn: &mut Conn) -> io::Result<bool> {
    while !conn.pending.is_empty() {
        match conn.sock.send(&conn.pending) {
            Ok(n) => {
                conn.pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
