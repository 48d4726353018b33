//! `file-server [--timeout SECS] [--head-timeout SECS] [--max-requests N] [--no-access-log] ADDR [ROOT]`:
//! a small HTTP/1.1 static file server, a sockshim example plugin.
//!
//! Serves the files under ROOT (default `/`), a directory the plugin reaches
//! through its preopened directories:
//!
//! ```sh
//! sockshim run --allow-bind 127.0.0.1:8000 --dir ./site::/ file-server.wasm 127.0.0.1:8000
//! ```
//!
//! Listens on ADDR (port 0 picks a free port) and prints
//! `listening on IP:PORT` with the address actually bound.
//!
//! - `GET` answers `200` with `Content-Length`, a `Content-Type` by
//!   extension and the file's `Last-Modified`; `HEAD` the same head
//!   without the body. Every response has a `Date` (RFC 9110 §6.6.1).
//! - A directory is served by its `index.html`, or is `404`.
//! - `404` for a missing file, `403` for a path with a `..` segment (plain or
//!   percent-encoded), refused before the filesystem is touched.
//! - `405` (with `Allow: GET, HEAD`) for other methods, `400` for a malformed
//!   request, `414`/`431` for an over-long request line or header lines
//!   beyond the limits in [`http`].
//! - HTTP/1.1 connections stay open for further requests (pipelined ones
//!   too) unless the client sends `Connection: close`; HTTP/1.0 ones close
//!   unless it sends `Connection: keep-alive`.
//!
//! Many connections are served at once, from the plugin's one thread, by
//! an event loop over a [`DefaultSelector`] (Python's `selectors`). Every
//! socket is non-blocking and each connection is a small state machine
//! ([`State`]): reading a request head (bytes are gathered until
//! [`http::HeadScanner`] says the head is complete, then parsed once),
//! sending the response head, sending the body with
//! [`Socket::sendfile_once`] — one zero-copy sendfile(2) of what the socket
//! takes now, resumed when it is writable again, so the body never passes
//! through the plugin's memory — and, before a close, lingering. A
//! connection is watched for reading or for writing, never both, and a
//! large body goes out at most [`BODY_TURN`] bytes per turn so that other
//! connections are served in between.
//!
//! Slow clients are bounded per connection, while the others are served:
//! a request head must be complete within `--head-timeout`
//! ([`DEFAULT_HEAD_TIMEOUT`]) of its first byte, so a client that trickles
//! its head in is dropped; a connection waits at most `--timeout`
//! ([`DEFAULT_TIMEOUT`]) for a whole request after the previous response
//! (or the accept), and at most as long for the client to take more of a
//! response.
//!
//! Files are kept open for a moment between requests, as nginx's
//! `open_file_cache` keeps them ([`OpenFiles`]): a file asked for again
//! within [`OPEN_FILE_VALID`] is served from the descriptor and length found
//! the first time, without touching the filesystem, so a change to it shows
//! at most that long later. At most [`OPEN_FILES_MAX`] files are kept.
//!
//! One line per request goes to stderr, through a buffer written out each
//! time the loop is about to wait, not once per line; `--no-access-log`
//! leaves those lines out (nginx's `access_log off`) and keeps the lines
//! about failures and dropped connections. With
//! `--max-requests N` the server stops reading requests after the Nth
//! (whose answer says `Connection: close`), finishes the responses under
//! way and exits, so that `sockshim run --stats`, which reports when the
//! plugin ends, can be read.

mod http;

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufWriter, Cursor, ErrorKind, Stderr, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sockshim::fs::File;
use sockshim::selectors::{DefaultSelector, EVENT_READ, EVENT_WRITE, FxHashMap};
use sockshim::{Events, SockOpt, Socket};

use http::{HeadError, HeadScanner, Method, RequestHead, Status, Version};

/// The default of `--timeout`: how long a connection may wait for a whole
/// request head, counted from the end of the previous response (or from
/// the accept) — the keep-alive idle time — and how long it may wait for
/// the client to take more of a response.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of `--head-timeout`: how long a request head may take to
/// arrive whole once its first byte has, which bounds a client that
/// trickles its head in.
const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `--timeout` and `--head-timeout`, one day: deadlines
/// computed from them cannot overflow.
const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// When the server closes a connection, how long it reads (and discards) what
/// the client still sends before closing, so that the close does not reset
/// the connection before the client has read the error response.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// The most bytes discarded that way.
const LINGER_MAX_BYTES: usize = 1 << 20;

/// The most one `recv` of a request head asks for.
const RECV_SIZE: usize = 16 * 1024;

/// The most body bytes one connection sends per turn of the event loop
/// (nginx's `sendfile_max_chunk`), so that a fast reader of a large file
/// does not keep the others waiting.
const BODY_TURN: u64 = 2 << 20;

/// How long to stop accepting after `accept` fails with something other
/// than "nothing to accept" (for example the plugin's socket limit), so
/// that a lasting error does not make the loop spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a file stays in [`OpenFiles`] before it is looked up and opened
/// again (nginx's `open_file_cache_valid`, whose default is a minute).
const OPEN_FILE_VALID: Duration = Duration::from_secs(1);

/// The most files [`OpenFiles`] keeps open (nginx's `open_file_cache
/// max=`).
const OPEN_FILES_MAX: usize = 64;

/// The selector's key data for the listener; connections have their own
/// numbers, counted from zero.
const LISTENER: u64 = u64::MAX;

const USAGE: &str = "usage: file-server [--timeout SECS] [--head-timeout SECS] [--max-requests N] [--no-access-log] ADDR [ROOT]   (for example 127.0.0.1:8000 /)";

/// The command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    addr: String,
    root: String,
    /// Exit (with success) after answering this many requests; for tests
    /// and for `sockshim run --stats`, which reports when the plugin ends.
    max_requests: Option<u64>,
    /// See [`DEFAULT_TIMEOUT`].
    timeout: Duration,
    /// See [`DEFAULT_HEAD_TIMEOUT`].
    head_timeout: Duration,
    /// Log each request answered in full (`--no-access-log` clears it).
    access_log: bool,
}

/// Parses a number of seconds for `flag`, from 1 to [`MAX_TIMEOUT_SECS`].
fn parse_secs(flag: &str, secs: Option<&String>) -> Result<Duration, String> {
    let secs = secs.ok_or_else(|| format!("{flag} needs a number of seconds"))?;
    match secs.parse::<u64>() {
        Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{flag}: `{secs}` is not a number of seconds from 1 to {MAX_TIMEOUT_SECS}"
        )),
    }
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut max_requests = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut head_timeout = DEFAULT_HEAD_TIMEOUT;
    let mut access_log = true;
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--max-requests" {
            let n = args.next().ok_or("--max-requests needs a number")?;
            match n.parse::<u64>() {
                Ok(n) if n > 0 => max_requests = Some(n),
                _ => return Err(format!("--max-requests: `{n}` is not a positive number")),
            }
        } else if arg == "--timeout" {
            timeout = parse_secs(arg, args.next())?;
        } else if arg == "--head-timeout" {
            head_timeout = parse_secs(arg, args.next())?;
        } else if arg == "--no-access-log" {
            access_log = false;
        } else if arg.starts_with('-') {
            return Err(format!("unknown option `{arg}`"));
        } else {
            positional.push(arg.clone());
        }
    }
    let mut positional = positional.into_iter();
    let (Some(addr), root, None) = (positional.next(), positional.next(), positional.next()) else {
        return Err("expected ADDR and at most one ROOT".to_owned());
    };
    Ok(Args {
        addr,
        root: root.unwrap_or_else(|| "/".to_owned()),
        max_requests,
        timeout,
        head_timeout,
        access_log,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("file-server: {err}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let (addr, root) = (args.addr.as_str(), args.root.as_str());
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            eprintln!("file-server: {root} is not a directory");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("file-server: {root}: {err} (is it under a directory given with --dir?)");
            return ExitCode::FAILURE;
        }
    }
    let server = match sockshim::create_server(addr) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("file-server: listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = match server.getsockname() {
        Ok(local) => local,
        Err(err) => {
            eprintln!("file-server: getsockname: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {local}");
    if let Err(err) = io::stdout().flush() {
        eprintln!("file-server: write to stdout: {err}");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut server = Server {
        listener: server,
        root: root.trim_end_matches('/').to_owned(),
        timeout: args.timeout,
        head_timeout: args.head_timeout,
        access_log: args.access_log,
        requests_left: args.max_requests,
        selector: match DefaultSelector::new() {
            Ok(selector) => selector,
            Err(err) => {
                eprintln!("file-server: selector: {err}");
                return ExitCode::FAILURE;
            }
        },
        conns: FxHashMap::default(),
        deadlines: BTreeSet::new(),
        next_id: 0,
        accepting: false,
        accept_paused_until: None,
        log: BufWriter::with_capacity(16 * 1024, io::stderr()),
        scratch: vec![0; RECV_SIZE],
        open_files: OpenFiles::default(),
        now: started,
        date: DateField::new(started),
    };
    let result = server.run();
    let _ = server.log.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("file-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Where a connection is in its life.
enum State {
    /// Gathering a request head in [`Conn::input`].
    ReadingHead {
        /// When the wait for this request began: the accept, or the end of
        /// the previous response.
        since: Instant,
        /// When its first byte arrived.
        first_byte: Option<Instant>,
        scanner: HeadScanner,
    },
    /// Sending a response: its head, then its body.
    Sending(Response),
    /// The sending side is shut; reading and discarding what the client
    /// still sends until it closes too, or until the deadline.
    Lingering { discarded: usize },
}

/// A response under way.
struct Response {
    /// The request line as received, for the log; `None` for a request
    /// rejected before it was understood.
    request: Option<Vec<u8>>,
    status: Status,
    head: Vec<u8>,
    /// Bytes of `head` sent so far.
    head_sent: usize,
    /// The body: the file (none for `HEAD` and errors, whose short body is
    /// part of `head`).
    body: Option<Rc<Served>>,
    /// Bytes of the body sent so far.
    body_sent: u64,
    /// Body bytes to log: the file's part sent, or the error text's length.
    logged_bytes: u64,
    /// Whether the connection carries another request afterwards.
    keep_alive: bool,
}

/// One client connection.
struct Conn {
    sock: Socket,
    peer: SocketAddr,
    /// Received bytes not parsed yet: the head being read, and any
    /// pipelined requests after it.
    input: Vec<u8>,
    state: State,
    /// What the selector watches the connection for.
    interest: Events,
    /// When the current wait ends.
    deadline: Instant,
    /// The deadline this connection has in [`Server::deadlines`].
    armed: Instant,
}

/// What to do with a connection after handling it.
enum Next {
    /// Watch it for these events.
    Wait(Events),
    /// Close it; with a line for the log, the reason.
    Close(Option<String>),
}

/// The server: the listener, the connections, their deadlines.
struct Server {
    listener: Socket,
    root: String,
    timeout: Duration,
    head_timeout: Duration,
    /// Whether a request answered in full gets a line in the log.
    access_log: bool,
    /// Requests still to answer under `--max-requests`.
    requests_left: Option<u64>,
    selector: DefaultSelector<u64>,
    conns: FxHashMap<u64, Conn>,
    /// Every connection's deadline with its number, earliest first.
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// Whether the listener is registered.
    accepting: bool,
    accept_paused_until: Option<Instant>,
    /// The request log, written out before each wait.
    log: BufWriter<Stderr>,
    /// A buffer for receiving: request heads before they are appended to
    /// their connection's input, and what is discarded.
    scratch: Vec<u8>,
    /// The files opened recently.
    open_files: OpenFiles,
    /// The time when the last wait ended, which the connections it
    /// reported are served at, as nginx's event loop keeps it: reading the
    /// clock is a host call, and a request would make four.
    now: Instant,
    /// The responses' `Date`.
    date: DateField,
}

/// The `Date` field's value, which an origin server with a clock sends on
/// every response (RFC 9110 §6.6.1): formatted once per second of the wall
/// clock, as nginx keeps its time strings, so that a busy server reads the
/// wall clock (a host call) at most once a second.
struct DateField {
    /// The HTTP-date; empty when the wall clock cannot say it (before
    /// 1970), and then no `Date` is sent.
    value: String,
    /// When the wall clock's second turns: the value is made afresh then.
    until: Instant,
}

impl DateField {
    fn new(now: Instant) -> DateField {
        DateField {
            value: String::new(),
            until: now,
        }
    }

    /// Brings the value up to `now`, a monotonic time just read.
    fn refresh(&mut self, now: Instant) {
        if now < self.until {
            return;
        }
        let wall = SystemTime::now();
        self.value = http::http_date(wall).unwrap_or_default();
        let into_second = wall.duration_since(UNIX_EPOCH).map_or(Duration::ZERO, |d| {
            Duration::from_nanos(d.subsec_nanos().into())
        });
        self.until = now + (Duration::from_secs(1) - into_second);
    }
}

impl Server {
    /// The event loop; returns once `--max-requests` answers are sent.
    fn run(&mut self) -> io::Result<()> {
        self.listener.setblocking(false)?;
        self.selector
            .register(&self.listener, EVENT_READ, LISTENER)?;
        self.accepting = true;
        loop {
            if self.requests_left == Some(0) {
                if self.accepting {
                    self.selector.unregister(&self.listener)?;
                    self.accepting = false;
                }
                let busy = self
                    .conns
                    .values()
                    .any(|conn| !matches!(conn.state, State::ReadingHead { .. }));
                if !busy {
                    return Ok(());
                }
            }
            let now = Instant::now();
            let wake = self
                .deadlines
                .first()
                .map(|&(deadline, _)| deadline)
                .into_iter()
                .chain(self.accept_paused_until)
                .min();
            let timeout = wake.map(|wake| wake.saturating_duration_since(now));
            if timeout != Some(Duration::ZERO) {
                // Nothing to do if stderr is gone.
                let _ = self.log.flush();
            }
            let ready = self.selector.select(timeout)?;
            // After the wait: what it reported arrived before this.
            self.now = Instant::now();
            self.date.refresh(self.now);
            for (key, events) in ready {
                if key.data == LISTENER {
                    self.accept_all();
                } else {
                    self.handle(key.data, events)?;
                }
            }
            let now = self.now;
            if let Some(until) = self.accept_paused_until
                && now >= until
            {
                self.accept_paused_until = None;
                if self.requests_left != Some(0) {
                    self.selector
                        .register(&self.listener, EVENT_READ, LISTENER)?;
                    self.accepting = true;
                }
            }
            while let Some(&(deadline, id)) = self.deadlines.first() {
                if deadline > now {
                    break;
                }
                self.deadlines.pop_first();
                self.expire(id)?;
            }
        }
    }

    /// Accepts every connection waiting in the backlog and registers it.
    fn accept_all(&mut self) {
        loop {
            let (sock, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(err) if is_transient(&err) => return,
                // The client gave up before it was accepted; the next one
                // may be waiting.
                Err(err) if err.kind() == ErrorKind::ConnectionAborted => continue,
                Err(err) => {
                    let _ = writeln!(self.log, "file-server: accept: {err}");
                    if self.selector.unregister(&self.listener).is_ok() {
                        self.accepting = false;
                        self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    }
                    return;
                }
            };
            if let Err(err) = self.add(sock, peer) {
                let _ = writeln!(self.log, "file-server: {peer}: {err}");
            }
        }
    }

    /// Starts serving an accepted connection.
    fn add(&mut self, sock: Socket, peer: SocketAddr) -> io::Result<()> {
        sock.setblocking(false)?;
        // Bodies go out with sendfile right after their head; without
        // TCP_NODELAY a short body would wait for the head's ACK (Nagle).
        // Only latency depends on it, so a failure is ignored.
        let _ = sock.setsockopt(SockOpt::TcpNoDelay(true));
        let id = self.next_id;
        self.next_id += 1;
        self.selector.register(&sock, EVENT_READ, id)?;
        let now = self.now;
        let deadline = now + self.timeout;
        self.deadlines.insert((deadline, id));
        self.conns.insert(
            id,
            Conn {
                sock,
                peer,
                input: Vec::new(),
                state: State::ReadingHead {
                    since: now,
                    first_byte: None,
                    scanner: HeadScanner::default(),
                },
                interest: EVENT_READ,
                deadline,
                armed: deadline,
            },
        );
        Ok(())
    }

    /// Serves one connection's readiness.
    fn handle(&mut self, id: u64, events: Events) -> io::Result<()> {
        let Some(mut conn) = self.conns.remove(&id) else {
            return Ok(());
        };
        let next = self.step(&mut conn, events);
        self.settle(id, conn, next)
    }

    /// A connection's deadline passed.
    fn expire(&mut self, id: u64) -> io::Result<()> {
        let Some(conn) = self.conns.remove(&id) else {
            return Ok(());
        };
        let why = match &conn.state {
            State::ReadingHead {
                since, first_byte, ..
            } => {
                if first_byte.is_some_and(|first| first + self.head_timeout < *since + self.timeout)
                {
                    format!(
                        "file-server: {}: request head not complete within {} s of its first byte",
                        conn.peer,
                        self.head_timeout.as_secs()
                    )
                } else {
                    format!(
                        "file-server: {}: no complete request within {} s",
                        conn.peer,
                        self.timeout.as_secs()
                    )
                }
            }
            State::Sending(response) => response.log_line(
                conn.peer,
                Some(format!(
                    "the client took nothing for {} s",
                    self.timeout.as_secs()
                )),
            ),
            State::Lingering { .. } => String::new(),
        };
        self.settle(id, conn, Next::Close((!why.is_empty()).then_some(why)))
    }

    /// Applies what handling a connection decided: logs, closes, or changes
    /// what it is watched for and its deadline.
    fn settle(&mut self, id: u64, mut conn: Conn, next: Next) -> io::Result<()> {
        match next {
            Next::Wait(events) => {
                if events != conn.interest {
                    if let Err(err) = self.selector.modify(&conn.sock, events, id) {
                        let _ = writeln!(self.log, "file-server: {}: {err}", conn.peer);
                        return self.settle(id, conn, Next::Close(None));
                    }
                    conn.interest = events;
                }
                conn.deadline = self.deadline_of(&conn);
                if conn.deadline != conn.armed {
                    self.deadlines.remove(&(conn.armed, id));
                    self.deadlines.insert((conn.deadline, id));
                    conn.armed = conn.deadline;
                }
                self.conns.insert(id, conn);
            }
            Next::Close(why) => {
                if let Some(why) = why {
                    let _ = writeln!(self.log, "{why}");
                }
                self.deadlines.remove(&(conn.armed, id));
                let _ = self.selector.unregister(&conn.sock);
            }
        }
        Ok(())
    }

    /// When the connection's current wait ends.
    fn deadline_of(&self, conn: &Conn) -> Instant {
        match &conn.state {
            State::ReadingHead {
                since, first_byte, ..
            } => {
                let idle = *since + self.timeout;
                first_byte.map_or(idle, |first| idle.min(first + self.head_timeout))
            }
            // Sending and lingering set theirs when they make progress.
            State::Sending(_) | State::Lingering { .. } => conn.deadline,
        }
    }

    /// Moves a connection on as far as it goes without waiting.
    fn step(&mut self, conn: &mut Conn, events: Events) -> Next {
        // Whether a receive may find something: once one has been made, a
        // head read after a response waits for the next event rather than
        // trying a receive that would most likely come back empty.
        let mut can_read = events.intersects(EVENT_READ | Events::ERROR | Events::HANG_UP);
        loop {
            let next = match conn.state {
                State::ReadingHead { .. } => {
                    let next = self.read_head(conn, can_read);
                    can_read = false;
                    next
                }
                State::Sending(_) => self.send(conn),
                State::Lingering { .. } => self.linger(conn),
            };
            match next {
                // The state changed: go on in the new one.
                None => continue,
                Some(next) => return next,
            }
        }
    }

    /// Receives what has arrived of a request head; once it is whole,
    /// starts the response. `None` when the state changed.
    fn read_head(&mut self, conn: &mut Conn, can_read: bool) -> Option<Next> {
        let State::ReadingHead {
            first_byte,
            scanner,
            ..
        } = &mut conn.state
        else {
            unreachable!("read_head in another state");
        };
        let mut ended = false;
        if !scanner.is_decided(&conn.input) {
            if !can_read {
                return Some(Next::Wait(EVENT_READ));
            }
            // Into the shared buffer, then onto the input: a copy of what
            // came, instead of zeroing room for a whole `RECV_SIZE` in
            // each connection's input for every receive.
            let received = conn.sock.recv_into(&mut self.scratch);
            if let Ok(n) = received {
                conn.input.extend_from_slice(&self.scratch[..n]);
            }
            match received {
                Ok(0) => ended = true,
                Ok(_) => {
                    first_byte.get_or_insert(self.now);
                }
                Err(err) if is_transient(&err) => return Some(Next::Wait(EVENT_READ)),
                Err(err) => {
                    return Some(Next::Close(Some(format!(
                        "file-server: {}: {err}",
                        conn.peer
                    ))));
                }
            }
            if !ended && !scanner.is_decided(&conn.input) {
                return Some(Next::Wait(EVENT_READ));
            }
        }
        if self.requests_left == Some(0) {
            // The last request under `--max-requests` is read: no more.
            return Some(Next::Close(None));
        }
        let mut cursor = Cursor::new(&conn.input[..]);
        let parsed = http::read_head(&mut cursor);
        let consumed = cursor.position() as usize;
        let response = match parsed {
            Ok(Some(head)) => {
                conn.input.drain(..consumed);
                let last = self.count_request();
                let keep_alive = head.keep_alive() && !last;
                self.respond(&head, keep_alive)
            }
            // The client closed the connection between requests.
            Ok(None) if ended => return Some(Next::Close(None)),
            Err(HeadError::Io(err)) if ended => {
                return Some(Next::Close(Some(format!(
                    "file-server: {}: {err}",
                    conn.peer
                ))));
            }
            // Not whole yet after all: wait for more.
            Ok(None) | Err(HeadError::Io(_)) => return Some(Next::Wait(EVENT_READ)),
            Err(HeadError::Reject(status)) => {
                conn.input.clear();
                self.count_request();
                self.error_response(None, status, Version::Http11, false, false, &[])
            }
        };
        conn.state = State::Sending(response);
        conn.deadline = self.now + self.timeout;
        None
    }

    /// Counts a request against `--max-requests`; returns whether it is the
    /// last.
    fn count_request(&mut self) -> bool {
        if let Some(left) = &mut self.requests_left {
            *left = left.saturating_sub(1);
        }
        self.requests_left == Some(0)
    }

    /// Sends what the socket takes of the response; once it is all sent,
    /// logs it and reads the next request, or lingers before closing.
    /// `None` when the state changed.
    fn send(&mut self, conn: &mut Conn) -> Option<Next> {
        let State::Sending(response) = &mut conn.state else {
            unreachable!("send in another state");
        };
        match response.progress(&conn.sock) {
            Ok(Progress::Blocked { moved }) => {
                if moved {
                    conn.deadline = self.now + self.timeout;
                }
                return Some(Next::Wait(EVENT_WRITE));
            }
            Ok(Progress::Turn) => {
                conn.deadline = self.now + self.timeout;
                return Some(Next::Wait(EVENT_WRITE));
            }
            Ok(Progress::Done) => {}
            Err(err) => {
                let line = response.log_line(conn.peer, Some(err.to_string()));
                return Some(Next::Close(Some(line)));
            }
        }
        if self.access_log {
            let _ = writeln!(self.log, "{}", response.log_line(conn.peer, None));
        }
        let now = self.now;
        if response.keep_alive {
            conn.state = State::ReadingHead {
                since: now,
                first_byte: (!conn.input.is_empty()).then_some(now),
                scanner: HeadScanner::default(),
            };
        } else {
            let _ = conn.sock.shutdown(Shutdown::Write);
            conn.input.clear();
            conn.state = State::Lingering { discarded: 0 };
            conn.deadline = now + LINGER_TIMEOUT;
        }
        None
    }

    /// Reads and discards what the client still sends before the close
    /// (a body, pipelined requests), until it closes its side too, or for
    /// at most [`LINGER_TIMEOUT`] and [`LINGER_MAX_BYTES`]: closing with
    /// unread data would reset the connection, and the client could lose
    /// the response it has not read yet.
    fn linger(&mut self, conn: &mut Conn) -> Option<Next> {
        let State::Lingering { discarded } = &mut conn.state else {
            unreachable!("linger in another state");
        };
        loop {
            match conn.sock.recv_into(&mut self.scratch) {
                Ok(0) => return Some(Next::Close(None)),
                Ok(n) => {
                    *discarded += n;
                    if *discarded >= LINGER_MAX_BYTES {
                        return Some(Next::Close(None));
                    }
                }
                Err(err) if is_transient(&err) => return Some(Next::Wait(EVENT_READ)),
                Err(_) => return Some(Next::Close(None)),
            }
        }
    }

    /// The response to a request.
    fn respond(&mut self, head: &RequestHead, keep_alive: bool) -> Response {
        let request = Some(head.raw_line.clone());
        let version = head.line.version;
        let is_head = head.line.method == Method::Head;
        if head.line.method == Method::Other {
            return self.error_response(
                request,
                Status::MethodNotAllowed,
                version,
                is_head,
                keep_alive,
                &[("Allow", "GET, HEAD")],
            );
        }
        let found = http::sanitize_path(&head.line.target).and_then(|segments| {
            self.open_files
                .open(fs_path(&self.root, &segments), self.now)
        });
        let served = match found {
            Ok(served) => served,
            Err(status) => {
                return self.error_response(request, status, version, is_head, keep_alive, &[]);
            }
        };
        let last_modified = [("Last-Modified", served.last_modified.as_str())];
        let response_head = http::response_head(
            Status::Ok,
            &self.date.value,
            served.len,
            http::content_type(&served.path),
            version,
            keep_alive,
            if served.last_modified.is_empty() {
                &[]
            } else {
                &last_modified
            },
        );
        Response {
            request,
            status: Status::Ok,
            head: response_head.into_bytes(),
            head_sent: 0,
            body: (!is_head && served.len > 0).then_some(served),
            body_sent: 0,
            logged_bytes: 0,
            keep_alive,
        }
    }

    /// An error response with a short text body (just the head for `HEAD`).
    fn error_response(
        &self,
        request: Option<Vec<u8>>,
        status: Status,
        version: Version,
        is_head: bool,
        keep_alive: bool,
        extra: &[(&str, &str)],
    ) -> Response {
        let body = format!("{} {}\n", status.code(), status.reason());
        let mut head = http::response_head(
            status,
            &self.date.value,
            body.len() as u64,
            "text/plain; charset=utf-8",
            version,
            keep_alive,
            extra,
        );
        if !is_head {
            head.push_str(&body);
        }
        Response {
            request,
            status,
            head: head.into_bytes(),
            head_sent: 0,
            body: None,
            body_sent: 0,
            logged_bytes: if is_head { 0 } else { body.len() as u64 },
            keep_alive,
        }
    }
}

/// How far [`Response::progress`] got.
enum Progress {
    /// The socket takes no more now; `moved` says whether it took anything
    /// before that.
    Blocked { moved: bool },
    /// [`BODY_TURN`] bytes went out: the others' turn.
    Turn,
    /// The whole response is sent.
    Done,
}

impl Response {
    /// Sends what the socket takes now: the rest of the head with `send`,
    /// then the body with `sendfile_once`, at most [`BODY_TURN`] of it.
    fn progress(&mut self, sock: &Socket) -> io::Result<Progress> {
        let mut moved = false;
        while self.head_sent < self.head.len() {
            match sock.send(&self.head[self.head_sent..]) {
                Ok(n) => {
                    self.head_sent += n;
                    moved = true;
                }
                Err(err) if is_transient(&err) => return Ok(Progress::Blocked { moved }),
                Err(err) => return Err(err),
            }
        }
        let Some(served) = &self.body else {
            return Ok(Progress::Done);
        };
        let (file, path, len) = (&served.file, &served.path, &served.len);
        let mut this_turn = 0;
        while self.body_sent < *len {
            if this_turn >= BODY_TURN {
                return Ok(Progress::Turn);
            }
            let count = (*len - self.body_sent).min(BODY_TURN - this_turn);
            match sock.sendfile_once(file, self.body_sent, count) {
                Ok(0) => {
                    // The file shrank after its length was sent: the
                    // response is cut short, and only closing the
                    // connection tells the client so; and the file is
                    // looked up afresh for the next request.
                    self.keep_alive = false;
                    served.changed.set(true);
                    eprintln!(
                        "file-server: {path} ended after {} of {len} bytes",
                        self.body_sent
                    );
                    break;
                }
                Ok(n) => {
                    self.body_sent += n;
                    self.logged_bytes = self.body_sent;
                    this_turn += n;
                    moved = true;
                    if n < count && self.body_sent < *len {
                        // Short of the file: the socket's buffer is full,
                        // and another call now nearly always fails (nginx
                        // makes it and gets EAGAIN). The selector says
                        // when it drains.
                        return Ok(Progress::Blocked { moved });
                    }
                }
                Err(err) if is_transient(&err) => return Ok(Progress::Blocked { moved }),
                Err(err) => return Err(err),
            }
        }
        Ok(Progress::Done)
    }

    /// The request's line in the log: `PEER "REQUEST LINE" STATUS BYTES`,
    /// or `PEER "REQUEST LINE" failed: ERROR`; `PEER (rejected request)
    /// STATUS` for a request that was not understood.
    fn log_line(&self, peer: SocketAddr, failure: Option<String>) -> String {
        match (&self.request, failure) {
            (Some(request), None) => format!(
                "{peer} \"{}\" {} {}",
                request.escape_ascii(),
                self.status.code(),
                self.logged_bytes
            ),
            (Some(request), Some(err)) => {
                format!("{peer} \"{}\" failed: {err}", request.escape_ascii())
            }
            (None, None) => format!("{peer} (rejected request) {}", self.status.code()),
            (None, Some(err)) => {
                format!(
                    "{peer} (rejected request) {} failed: {err}",
                    self.status.code()
                )
            }
        }
    }
}

/// "Try again later": the socket is not ready, or a signal interrupted the
/// call.
fn is_transient(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// A file opened for serving: the open file, its length and modification
/// time when it was opened, and its path.
struct Served {
    file: File,
    len: u64,
    /// `Last-Modified`'s value, empty when the filesystem gives no time the
    /// field can say.
    last_modified: String,
    path: String,
    /// Set when sending it found it changed (shorter than `len`): it is not
    /// served again.
    changed: std::cell::Cell<bool>,
}

/// Files opened recently, by path, as nginx's `open_file_cache` keeps
/// them: each is served from what was found when it was opened, for
/// [`OPEN_FILE_VALID`], and then opened afresh. At most [`OPEN_FILES_MAX`]
/// are kept (the oldest goes first); a file still being sent stays open
/// until its responses end, whether it is kept or not. Failures are not
/// kept: a missing file is looked for every time.
#[derive(Default)]
struct OpenFiles {
    entries: HashMap<String, (Rc<Served>, Instant)>,
}

impl OpenFiles {
    /// The file at `path` to serve at `now`: kept, or opened now.
    fn open(&mut self, path: String, now: Instant) -> Result<Rc<Served>, Status> {
        let fresh = |served: &Served, opened: Instant| {
            !served.changed.get() && now.saturating_duration_since(opened) < OPEN_FILE_VALID
        };
        if let Some((served, opened)) = self.entries.get(&path)
            && fresh(served, *opened)
        {
            return Ok(Rc::clone(served));
        }
        self.entries.remove(&path);
        let served = Rc::new(open_for_serving(path.clone())?);
        if self.entries.len() >= OPEN_FILES_MAX {
            self.entries
                .retain(|_, (served, opened)| fresh(served, *opened));
        }
        if self.entries.len() >= OPEN_FILES_MAX
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, opened))| *opened)
                .map(|(path, _)| path.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(path, (Rc::clone(&served), now));
        Ok(served)
    }
}

/// The path that `segments` name under `root`.
fn fs_path(root: &str, segments: &[String]) -> String {
    let mut path = String::from(root);
    for segment in segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// Opens the regular file at `path`, or the `index.html` of the directory
/// there. A name that is neither a file nor a directory (a FIFO, a device)
/// is not opened, as opening one could block.
fn open_for_serving(mut path: String) -> Result<Served, Status> {
    let mut meta = std::fs::metadata(&path).map_err(status_for)?;
    if meta.is_dir() {
        path = format!("{}/index.html", path.trim_end_matches('/'));
        meta = std::fs::metadata(&path).map_err(status_for)?;
    }
    if !meta.is_file() {
        return Err(Status::NotFound);
    }
    let file = File::open(&path).map_err(status_for)?;
    // The type again, of what was opened: the name may have changed since.
    let meta = file.metadata().map_err(status_for)?;
    if !meta.is_file() {
        return Err(Status::NotFound);
    }
    Ok(Served {
        file,
        len: meta.len(),
        last_modified: meta
            .modified()
            .ok()
            .and_then(http::http_date)
            .unwrap_or_default(),
        path,
        changed: std::cell::Cell::new(false),
    })
}

/// The status for a filesystem error.
fn status_for(err: io::Error) -> Status {
    match err.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            Status::NotFound
        }
        ErrorKind::PermissionDenied => Status::Forbidden,
        _ => {
            eprintln!("file-server: {err}");
            Status::InternalServerError
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_arguments() {
        assert_eq!(
            parse(&["127.0.0.1:0"]),
            Ok(Args {
                addr: "127.0.0.1:0".into(),
                root: "/".into(),
                max_requests: None,
                timeout: DEFAULT_TIMEOUT,
                head_timeout: DEFAULT_HEAD_TIMEOUT,
                access_log: true,
            })
        );
        assert_eq!(
            parse(&[
                "--max-requests",
                "2",
                "[::1]:80",
                "--timeout",
                "5",
                "--head-timeout",
                "3",
                "--no-access-log",
                "/site"
            ]),
            Ok(Args {
                addr: "[::1]:80".into(),
                root: "/site".into(),
                max_requests: Some(2),
                timeout: Duration::from_secs(5),
                head_timeout: Duration::from_secs(3),
                access_log: false,
            })
        );
        for bad in [
            &[][..],
            &["a", "b", "c"],
            &["--max-requests"],
            &["--max-requests", "0", "a"],
            &["--max-requests", "x", "a"],
            &["--timeout", "0", "a"],
            &["--timeout", "-1", "a"],
            &["--timeout", "86401", "a"],
            &["a", "--timeout"],
            &["--head-timeout", "0", "a"],
            &["--no-access-log=yes", "a"],
            &["--head-timeout", "x", "a"],
            &["a", "--head-timeout"],
            &["--help"],
            &["-p", "80"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
