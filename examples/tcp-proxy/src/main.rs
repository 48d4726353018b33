//! `tcp-proxy LISTEN UPSTREAM`: a TCP proxy, a sockshim example plugin.
//!
//! Listens on LISTEN (`host:port`, `[ipv6]:port`; port 0 picks a free
//! port), prints `listening on IP:PORT` with the address actually bound,
//! and for every client it accepts opens a connection to UPSTREAM
//! (`host:port`, a name resolved once at start) and relays the bytes of
//! both directions until both are done:
//!
//! ```sh
//! sockshim run --allow-bind 127.0.0.1:7000 --allow-connect 127.0.0.1:8000 \
//!     tcp-proxy.wasm 127.0.0.1:7000 127.0.0.1:8000
//! ```
//!
//! Many clients are relayed at once, from the plugin's one thread, by an
//! event loop over a [`DefaultSelector`] (Python's `selectors`): every
//! socket is non-blocking, the upstream connect too ([`Socket::connect_ex`]
//! returns `EINPROGRESS`; the connect has ended when the socket turns
//! writable, and [`Socket::take_error`] says how).
//!
//! - Each direction has a buffer of [`BUFFER_SIZE`] bytes. While it is
//!   full the proxy stops reading the side that fills it (backpressure: TCP
//!   flow control then slows that sender), and it watches a side for
//!   writability only while it has bytes waiting for it.
//! - Half-close passes through: when one side shuts its sending side (the
//!   proxy reads the end of the stream), the proxy sends what it still
//!   holds for the other side, then shuts the sending side towards it; the
//!   other direction goes on. When both directions have ended, both
//!   connections are closed.
//! - An error on either connection of a pair (a reset, a refused upstream)
//!   is reported on stderr and closes both; the proxy goes on.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sockshim::selectors::{DefaultSelector, EVENT_READ, EVENT_WRITE};
use sockshim::{Address, Events, Family, Kind, Socket, errno};

/// The bytes buffered per direction of a relayed connection.
const BUFFER_SIZE: usize = 64 * 1024;

/// How long to stop accepting after `accept` fails with something other
/// than "nothing to accept" (for example the plugin's socket limit), so
/// that a lasting error does not make the loop spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The selector's key data for the listener. A relayed connection's two
/// sockets have `2 * id` (the client) and `2 * id + 1` (the upstream).
const LISTENER: u64 = u64::MAX;

const USAGE: &str =
    "usage: tcp-proxy LISTEN UPSTREAM   (for example 127.0.0.1:7000 127.0.0.1:8000)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let upstream = match resolve_upstream(upstream) {
        Ok(upstream) => upstream,
        Err(err) => {
            eprintln!("tcp-proxy: upstream {upstream}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let server = match sockshim::create_server(listen.as_str()) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("tcp-proxy: listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = match server.getsockname() {
        Ok(local) => local,
        Err(err) => {
            eprintln!("tcp-proxy: getsockname: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {local}");
    if let Err(err) = io::stdout().flush() {
        eprintln!("tcp-proxy: write to stdout: {err}");
        return ExitCode::FAILURE;
    }
    match serve(server, upstream) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tcp-proxy: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The upstream's socket address: `host:port` with a literal address, or
/// with a name resolved now (its first address), once for every client.
fn resolve_upstream(upstream: &str) -> io::Result<SocketAddr> {
    let addr: Address = upstream.parse()?;
    let ip = match addr.host().parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => *sockshim::resolve(addr.host())?.first().ok_or_else(|| {
            io::Error::new(ErrorKind::NotFound, "the name resolves to no address")
        })?,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

/// The bytes in flight in one direction, from the side that sends them
/// (the source) to the other (the destination).
struct Pipe {
    buf: Box<[u8]>,
    /// The bytes waiting are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The source has shut its sending side: nothing more will come.
    eof: bool,
    /// The end was passed on: the destination's sending side is shut.
    shut: bool,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            shut: false,
        }
    }

    fn waiting(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether the source is to be read: it may send more and there is room
    /// for it.
    fn wants_read(&self) -> bool {
        !self.eof && self.end - self.start < self.buf.len()
    }

    /// Receives once from `source` into the free space.
    fn fill(&mut self, source: &Socket) -> io::Result<()> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match source.recv_into(&mut self.buf[self.end..]) {
            Ok(0) => self.eof = true,
            Ok(n) => self.end += n,
            Err(err) if is_transient(&err) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Sends what is waiting to `dest` until it takes no more; once the
    /// source has ended and everything is sent, shuts `dest`'s sending side.
    fn drain(&mut self, dest: &Socket) -> io::Result<()> {
        while self.start < self.end {
            match dest.send(self.waiting()) {
                Ok(n) => self.start += n,
                Err(err) if is_transient(&err) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        self.start = 0;
        self.end = 0;
        if self.eof && !self.shut {
            dest.shutdown(Shutdown::Write)?;
            self.shut = true;
        }
        Ok(())
    }
}

/// A client and its connection to the upstream.
struct Relay {
    peer: SocketAddr,
    client: Socket,
    upstream: Socket,
    /// The upstream connect has not completed yet.
    connecting: bool,
    /// Client to upstream.
    up: Pipe,
    /// Upstream to client.
    down: Pipe,
    /// What each side is registered for (`None`: not registered).
    client_interest: Option<Events>,
    upstream_interest: Option<Events>,
}

/// Which socket of a [`Relay`] an event is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

impl Relay {
    /// Serves the readiness of one side, then moves what can be moved in
    /// both directions.
    fn handle(&mut self, side: Side, events: Events) -> io::Result<()> {
        let readable =
            events.intersects(EVENT_READ | Events::ERROR | Events::HANG_UP | Events::READ_HANG_UP);
        match side {
            Side::Upstream if self.connecting => {
                if let Some(err) = self.upstream.take_error()? {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("connect to the upstream: {err}"),
                    ));
                }
                self.connecting = false;
            }
            Side::Upstream => {
                if readable && self.down.wants_read() {
                    self.down.fill(&self.upstream)?;
                }
            }
            Side::Client => {
                if readable && self.up.wants_read() {
                    self.up.fill(&self.client)?;
                }
            }
        }
        self.down.drain(&self.client)?;
        if !self.connecting {
            self.up.drain(&self.upstream)?;
        }
        Ok(())
    }

    /// What the client is to be watched for now.
    fn client_wants(&self) -> Option<Events> {
        interest(self.up.wants_read(), !self.down.waiting().is_empty())
    }

    /// What the upstream is to be watched for now.
    fn upstream_wants(&self) -> Option<Events> {
        if self.connecting {
            return Some(EVENT_WRITE);
        }
        interest(self.down.wants_read(), !self.up.waiting().is_empty())
    }

    /// Brings the registrations of both sockets to what they want now;
    /// `id` is the relay's number.
    fn register(&mut self, selector: &mut DefaultSelector<u64>, id: u64) -> io::Result<()> {
        let (client_wants, upstream_wants) = (self.client_wants(), self.upstream_wants());
        update(
            selector,
            &self.client,
            2 * id,
            &mut self.client_interest,
            client_wants,
        )?;
        update(
            selector,
            &self.upstream,
            2 * id + 1,
            &mut self.upstream_interest,
            upstream_wants,
        )
    }

    /// Both directions have ended and been passed on.
    fn done(&self) -> bool {
        self.up.shut && self.down.shut
    }
}

/// The events for wanting to read and to write; `None` for neither.
fn interest(read: bool, write: bool) -> Option<Events> {
    match (read, write) {
        (true, true) => Some(EVENT_READ | EVENT_WRITE),
        (true, false) => Some(EVENT_READ),
        (false, true) => Some(EVENT_WRITE),
        (false, false) => None,
    }
}

/// Brings a socket's registration to `wanted`.
fn update(
    selector: &mut DefaultSelector<u64>,
    sock: &Socket,
    key: u64,
    current: &mut Option<Events>,
    wanted: Option<Events>,
) -> io::Result<()> {
    match (*current, wanted) {
        (Some(now), Some(wanted)) if now == wanted => return Ok(()),
        (Some(_), Some(wanted)) => {
            selector.modify(sock, wanted, key)?;
        }
        (None, Some(wanted)) => {
            selector.register(sock, wanted, key)?;
        }
        (Some(_), None) => {
            selector.unregister(sock)?;
        }
        (None, None) => {}
    }
    *current = wanted;
    Ok(())
}

/// "Try again later": the socket is not ready, or a signal interrupted the
/// call.
fn is_transient(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// The event loop: accepts clients and relays them until the selector
/// fails.
fn serve(server: Socket, upstream: SocketAddr) -> io::Result<()> {
    server.setblocking(false)?;
    let mut selector = DefaultSelector::new()?;
    selector.register(&server, EVENT_READ, LISTENER)?;
    let mut relays: HashMap<u64, Relay> = HashMap::new();
    let mut next_id = 0;
    let mut accept_paused_until: Option<Instant> = None;
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
                let accepted =
                    accept_all(&server, upstream, &mut selector, &mut relays, &mut next_id);
                if let Err(err) = accepted {
                    eprintln!("tcp-proxy: accept: {err}");
                    selector.unregister(&server)?;
                    accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                }
                continue;
            }
            let id = key.data / 2;
            let side = if key.data % 2 == 0 {
                Side::Client
            } else {
                Side::Upstream
            };
            let Some(relay) = relays.get_mut(&id) else {
                continue;
            };
            if let Err(err) = relay.handle(side, events) {
                eprintln!("tcp-proxy: client {}: {err}", relay.peer);
                close(&mut selector, &mut relays, id)?;
                continue;
            }
            if relay.done() {
                close(&mut selector, &mut relays, id)?;
                continue;
            }
            if let Err(err) = relay.register(&mut selector, id) {
                eprintln!("tcp-proxy: client {}: {err}", relay.peer);
                close(&mut selector, &mut relays, id)?;
            }
        }
    }
}

/// Forgets a relay: unregisters and closes both its sockets.
fn close(
    selector: &mut DefaultSelector<u64>,
    relays: &mut HashMap<u64, Relay>,
    id: u64,
) -> io::Result<()> {
    if let Some(relay) = relays.remove(&id) {
        if relay.client_interest.is_some() {
            selector.unregister(&relay.client)?;
        }
        if relay.upstream_interest.is_some() {
            selector.unregister(&relay.upstream)?;
        }
    }
    Ok(())
}

/// Accepts every client waiting in the backlog, starts its connect to the
/// upstream and registers both.
fn accept_all(
    server: &Socket,
    upstream: SocketAddr,
    selector: &mut DefaultSelector<u64>,
    relays: &mut HashMap<u64, Relay>,
    next_id: &mut u64,
) -> io::Result<()> {
    loop {
        let (client, peer) = match server.accept() {
            Ok(accepted) => accepted,
            Err(err) if is_transient(&err) => return Ok(()),
            // The client gave up before it was accepted; the next one may
            // be waiting.
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => continue,
            Err(err) => return Err(err),
        };
        match start_connect(&client, upstream) {
            Ok((upstream, connecting)) => {
                let id = *next_id;
                *next_id += 1;
                let mut relay = Relay {
                    peer,
                    client,
                    upstream,
                    connecting,
                    up: Pipe::new(),
                    down: Pipe::new(),
                    client_interest: None,
                    upstream_interest: None,
                };
                match relay.register(selector, id) {
                    Ok(()) => {
                        relays.insert(id, relay);
                    }
                    Err(err) => {
                        eprintln!("tcp-proxy: client {peer}: {err}");
                        if relay.client_interest.is_some() {
                            selector.unregister(&relay.client)?;
                        }
                    }
                }
            }
            Err(err) => eprintln!("tcp-proxy: client {peer}: connect to the upstream: {err}"),
        }
    }
}

/// Makes `client` non-blocking and starts a non-blocking connect to the
/// upstream; returns the upstream socket and whether the connect is still
/// going on.
fn start_connect(client: &Socket, upstream: SocketAddr) -> io::Result<(Socket, bool)> {
    client.setblocking(false)?;
    let family = match upstream.ip() {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    };
    let sock = Socket::new(family, Kind::Stream)?;
    sock.setblocking(false)?;
    match sock.connect_ex(upstream) {
        0 => Ok((sock, false)),
        errno::EINPROGRESS => Ok((sock, true)),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}
