//! `echo-server ADDR`: a TCP echo server, a sockshim example plugin.
//!
//! Listens on ADDR (`host:port`, `[ipv6]:port`; port 0 picks a free port),
//! prints `listening on IP:PORT` with the address actually bound, then
//! accepts connections forever and sends every byte of each connection back
//! until the peer closes its side; then it sends what is left and closes.
//!
//! Many connections are served at once, from the plugin's one thread, by
//! an event loop over a [`DefaultSelector`] (Python's `selectors`): the
//! listener and every connection are non-blocking, and the loop waits for
//! whichever is ready. A connection is watched for
//! [`EVENT_WRITE`] only while it has output pending (what the peer has not
//! taken yet), so an idle connection costs nothing; a client that connects
//! and says nothing delays no one. Each connection's pending output is
//! bounded ([`MAX_PENDING`]): while it is full the server stops reading
//! that connection, and TCP's flow control slows its sender down.
//!
//! An error on one connection is reported on stderr, that connection is
//! closed, and the server goes on.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sockshim::Events;
use sockshim::Socket;
use sockshim::selectors::{DefaultSelector, EVENT_READ, EVENT_WRITE};

/// The most a single `recv` asks for.
const BUFFER_SIZE: usize = 64 * 1024;

/// The most output kept for a connection whose peer does not read: past
/// it the server stops reading from that peer until it takes some.
const MAX_PENDING: usize = 256 * 1024;

/// How long to stop accepting after `accept` fails with something other
/// than "nothing to accept" (for example the plugin's socket limit), so
/// that a lasting error does not make the loop spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The selector's key data for the listener; connections have their own
/// numbers, counted from zero.
const LISTENER: u64 = u64::MAX;

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
    match serve(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One client connection.
struct Conn {
    sock: Socket,
    peer: SocketAddr,
    /// Received bytes not sent back yet: `pending[sent..]`.
    pending: Vec<u8>,
    sent: usize,
    /// The peer has shut its sending side: close once `pending` is sent.
    eof: bool,
    /// What the selector watches the connection for now.
    interest: Events,
}

impl Conn {
    fn pending(&self) -> &[u8] {
        &self.pending[self.sent..]
    }

    /// What the connection waits for in its state: reading while the peer
    /// may send and there is room for its bytes, writing while output is
    /// pending. `None` when it is done.
    fn wanted(&self) -> Option<Events> {
        let read = !self.eof && self.pending().len() < MAX_PENDING;
        let write = !self.pending().is_empty();
        match (read, write) {
            (true, true) => Some(EVENT_READ | EVENT_WRITE),
            (true, false) => Some(EVENT_READ),
            (false, true) => Some(EVENT_WRITE),
            (false, false) => None,
        }
    }

    /// Receives once and queues what arrived.
    fn receive(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.sock.recv_into(buf) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                if self.sent == self.pending.len() {
                    self.pending.clear();
                    self.sent = 0;
                }
                self.pending.extend_from_slice(&buf[..n]);
            }
            Err(err) if is_transient(&err) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Sends pending output until it is all sent or the socket takes no
    /// more.
    fn flush(&mut self) -> io::Result<()> {
        while !self.pending().is_empty() {
            match self.sock.send(self.pending()) {
                Ok(n) => self.sent += n,
                Err(err) if is_transient(&err) => break,
                Err(err) => return Err(err),
            }
        }
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
        } else if self.sent >= MAX_PENDING {
            // Keep the buffer from growing: drop what has been sent.
            self.pending.drain(..self.sent);
            self.sent = 0;
        }
        Ok(())
    }
}

/// "Try again later": the socket is not ready, or a signal interrupted the
/// call.
fn is_transient(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// The event loop: accepts and serves connections until the selector
/// fails.
fn serve(server: Socket) -> io::Result<()> {
    server.setblocking(false)?;
    let mut selector = DefaultSelector::new()?;
    selector.register(&server, EVENT_READ, LISTENER)?;
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_id = 0;
    let mut accept_paused_until: Option<Instant> = None;
    let mut buf = vec![0; BUFFER_SIZE];
    loop {
        let timeout =
            accept_paused_until.map(|until| until.saturating_duration_since(Instant::now()));
        let ready = selector.select(timeout)?;
        if let Some(until) = accept_paused_until
            && Instant::now() >= until
        {
            accept_paused_until = None;
            selector.register(&server, EVENT_READ, LISTENER)?;
        }
        for (key, events) in ready {
            if key.data == LISTENER {
                if let Err(err) = accept_all(&server, &mut selector, &mut conns, &mut next_id) {
                    eprintln!("echo-server: accept: {err}");
                    selector.unregister(&server)?;
                    accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                }
                continue;
            }
            let Some(conn) = conns.get_mut(&key.data) else {
                continue;
            };
            let outcome = handle(conn, events, &mut buf);
            let next = match outcome {
                Ok(()) => conn.wanted(),
                Err(err) => {
                    eprintln!("echo-server: connection from {}: {err}", conn.peer);
                    None
                }
            };
            match next {
                Some(events) if events == conn.interest => {}
                Some(events) => {
                    selector.modify(&conn.sock, events, key.data)?;
                    conn.interest = events;
                }
                None => {
                    selector.unregister(&conn.sock)?;
                    conns.remove(&key.data);
                }
            }
        }
    }
}

/// Serves one connection's readiness: reads if it was readable, and sends
/// what is pending. The selector reports an error or a hang-up as
/// readiness for what the connection waits for, so the `recv` or `send`
/// then returns it.
fn handle(conn: &mut Conn, events: Events, buf: &mut [u8]) -> io::Result<()> {
    let trouble = Events::ERROR | Events::HANG_UP | Events::READ_HANG_UP;
    if conn.interest.contains(EVENT_READ) && events.intersects(EVENT_READ | trouble) {
        conn.receive(buf)?;
    }
    if !conn.pending().is_empty() {
        conn.flush()?;
    }
    Ok(())
}

/// Accepts every connection waiting in the backlog and registers it.
fn accept_all(
    server: &Socket,
    selector: &mut DefaultSelector<u64>,
    conns: &mut HashMap<u64, Conn>,
    next_id: &mut u64,
) -> io::Result<()> {
    loop {
        let (sock, peer) = match server.accept() {
            Ok(accepted) => accepted,
            Err(err) if is_transient(&err) => return Ok(()),
            // The client gave up before it was accepted: not the server's
            // problem, and the next one may be waiting.
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => continue,
            Err(err) => return Err(err),
        };
        if let Err(err) = sock.setblocking(false) {
            eprintln!("echo-server: connection from {peer}: {err}");
            continue;
        }
        let id = *next_id;
        *next_id += 1;
        if let Err(err) = selector.register(&sock, EVENT_READ, id) {
            eprintln!("echo-server: connection from {peer}: {err}");
            continue;
        }
        conns.insert(
            id,
            Conn {
                sock,
                peer,
                pending: Vec::new(),
                sent: 0,
                eof: false,
                interest: EVENT_READ,
            },
        );
    }
}
