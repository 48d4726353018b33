//! `file-server [--timeout SECS] [--max-requests N] ADDR [ROOT]`: a small HTTP/1.1 static
//! file server, a sockshim example plugin.
//!
//! Serves the files under ROOT (default `/`), a directory the plugin reaches
//! through its preopened directories:
//!
//! ```sh
//! sockshim run --allow-bind 127.0.0.1:8000 --dir ./site::/ file-server.wasm 127.0.0.1:8000
//! ```
//!
//! Listens on ADDR (port 0 picks a free port) and prints
//! `listening on IP:PORT` with the address actually bound. Each request head
//! is read through a buffered reader from [`Socket::makefile`], and each
//! file body goes to the client with [`Socket::sendfile`]: the host copies
//! it from the file to the socket with sendfile(2), so the body never passes
//! through the plugin's memory.
//!
//! - `GET` answers `200` with `Content-Length` and a `Content-Type` by
//!   extension; `HEAD` the same head without the body.
//! - A directory is served by its `index.html`, or is `404`.
//! - `404` for a missing file, `403` for a path with a `..` segment (plain or
//!   percent-encoded), refused before the filesystem is touched.
//! - `405` (with `Allow: GET, HEAD`) for other methods, `400` for a malformed
//!   request, `414`/`431` for an over-long request line or header lines
//!   beyond the limits in [`http`].
//! - HTTP/1.1 connections stay open for further requests unless the client
//!   sends `Connection: close`; HTTP/1.0 ones close unless it sends
//!   `Connection: keep-alive`.
//!
//! A plugin has one thread and the sockshim contract has no readiness
//! polling (no `select`), so connections are served one at a time. To keep
//! one client from holding the server, a request head must arrive whole
//! within the timeout (`--timeout`, [`DEFAULT_TIMEOUT`] by default) of the
//! previous response (or of the accept), and while a response is sent each
//! wait for the client to take more data is bounded by the same timeout.
//! One line per request goes to stderr. With `--max-requests N` the server exits after its Nth answer
//! (the last one says `Connection: close`), so that `sockshim run --stats`,
//! which reports when the plugin ends, can be read.

mod http;

use std::io::{self, BufRead, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sockshim::fs::File;
use sockshim::{SockOpt, Socket};

use http::{HeadError, Method, RequestHead, Status, Version};

/// The default of `--timeout`: how long a request head may take to arrive,
/// counted from the end of the previous response (or from the accept),
/// which is both the keep-alive idle time and a bound on a client that
/// trickles its head in; and the socket timeout while a response is sent,
/// which bounds each wait for the client to take more data (sendfile's
/// timeout bounds each wait, not the whole transfer).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `--timeout`, one day: deadlines computed from it cannot
/// overflow.
const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// When the server closes a connection, how long it reads (and discards) what
/// the client still sends before closing, so that the close does not reset
/// the connection before the client has read the error response.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// The most bytes discarded that way.
const LINGER_MAX_BYTES: usize = 1 << 20;

const USAGE: &str = "usage: file-server [--timeout SECS] [--max-requests N] ADDR [ROOT]   (for example 127.0.0.1:8000 /)";

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
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut max_requests = None;
    let mut timeout = DEFAULT_TIMEOUT;
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
            let secs = args.next().ok_or("--timeout needs a number of seconds")?;
            match secs.parse::<u64>() {
                Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => {
                    timeout = Duration::from_secs(secs);
                }
                _ => {
                    return Err(format!(
                        "--timeout: `{secs}` is not a number of seconds from 1 to {MAX_TIMEOUT_SECS}"
                    ));
                }
            }
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
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Args {
        addr,
        root,
        max_requests,
        timeout,
    } = match parse_args(&args) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("file-server: {err}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let (addr, root) = (addr.as_str(), root.as_str());
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
    let root = root.trim_end_matches('/');
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
    let mut requests_left = max_requests;
    while requests_left != Some(0) {
        match server.accept() {
            Ok((conn, peer)) => {
                if let Err(err) = serve_connection(&conn, peer, root, timeout, &mut requests_left) {
                    eprintln!("file-server: {peer}: {err}");
                }
            }
            Err(err) => {
                eprintln!("file-server: accept: {err}");
                // Do not spin if the error persists (e.g. a socket limit).
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    ExitCode::SUCCESS
}

/// Serves the requests of one connection until either side closes it, or
/// `requests_left` (when set) falls to zero.
fn serve_connection(
    conn: &Socket,
    peer: SocketAddr,
    root: &str,
    timeout: Duration,
    requests_left: &mut Option<u64>,
) -> io::Result<()> {
    // Bodies go out with sendfile right after their head; without
    // TCP_NODELAY a short body would wait for the head's ACK (Nagle).
    // Only latency depends on it, so a failure is ignored.
    let _ = conn.setsockopt(SockOpt::TcpNoDelay(true));
    let mut reader = conn.makefile("rb")?;
    loop {
        let deadline = Instant::now() + timeout;
        let head = http::read_head(&mut http::BeforeFill::new(&mut reader, || {
            time_left(conn, deadline)
        }));
        let head = match head {
            Ok(Some(head)) => Ok(head),
            // The client closed the connection between requests.
            Ok(None) => return Ok(()),
            // A silent client, or one that trickles its head in: the
            // timeout ran out in a wait (the socket's) or between waits
            // (`time_left`).
            Err(HeadError::Io(err)) if err.kind() == ErrorKind::TimedOut => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no complete request within {} s", timeout.as_secs()),
                ));
            }
            Err(HeadError::Io(err)) => return Err(err),
            Err(HeadError::Reject(status)) => Err(status),
        };
        conn.settimeout(Some(timeout))?;
        if let Some(left) = requests_left {
            *left = left.saturating_sub(1);
        }
        let last = *requests_left == Some(0);
        let head = match head {
            Ok(head) => head,
            Err(status) => {
                let sent = send_error(conn, status, Version::Http11, false, false, &[]);
                eprintln!("{peer} (rejected request) {}", status.code());
                sent?;
                linger(conn, &mut reader);
                return Ok(());
            }
        };
        let keep_alive = head.keep_alive() && !last;
        let result = respond(conn, &head, root, keep_alive);
        let request = head.raw_line.escape_ascii();
        match &result {
            Ok(outcome) => eprintln!(
                "{peer} \"{request}\" {} {}",
                outcome.status.code(),
                outcome.body_bytes
            ),
            Err(err) => eprintln!("{peer} \"{request}\" failed: {err}"),
        }
        if !result?.keep_alive {
            linger(conn, &mut reader);
            return Ok(());
        }
    }
}

/// Sets the socket's timeout to what is left until `deadline`, or fails
/// with [`ErrorKind::TimedOut`] once it is past.
fn time_left(conn: &Socket, deadline: Instant) -> io::Result<()> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => conn.settimeout(Some(left)),
        _ => Err(io::Error::new(ErrorKind::TimedOut, "timed out")),
    }
}

/// What a response was.
struct Outcome {
    status: Status,
    /// Body bytes sent.
    body_bytes: u64,
    /// Whether the connection can carry another request.
    keep_alive: bool,
}

/// Answers one request.
fn respond(conn: &Socket, head: &RequestHead, root: &str, keep_alive: bool) -> io::Result<Outcome> {
    let version = head.line.version;
    let is_head = head.line.method == Method::Head;
    if head.line.method == Method::Other {
        let status = Status::MethodNotAllowed;
        return send_error(
            conn,
            status,
            version,
            is_head,
            keep_alive,
            &[("Allow", "GET, HEAD")],
        );
    }
    let segments = match http::sanitize_path(&head.line.target) {
        Ok(segments) => segments,
        Err(status) => return send_error(conn, status, version, is_head, keep_alive, &[]),
    };
    let (file, len, path) = match open_for_serving(root, &segments) {
        Ok(found) => found,
        Err(status) => return send_error(conn, status, version, is_head, keep_alive, &[]),
    };
    let response = http::response_head(
        Status::Ok,
        len,
        http::content_type(&path),
        version,
        keep_alive,
        &[],
    );
    conn.sendall(response.as_bytes())?;
    let mut outcome = Outcome {
        status: Status::Ok,
        body_bytes: 0,
        keep_alive,
    };
    if is_head || len == 0 {
        return Ok(outcome);
    }
    outcome.body_bytes = conn.sendfile(&file, 0, Some(len))?;
    if outcome.body_bytes != len {
        // The file shrank after its length was sent: the response is cut
        // short, and only closing the connection tells the client so.
        outcome.keep_alive = false;
        eprintln!(
            "file-server: {path} ended after {} of {len} bytes",
            outcome.body_bytes
        );
    }
    Ok(outcome)
}

/// Opens the regular file that `segments` names under `root`, or the
/// `index.html` of the directory they name; returns it with its length and
/// its path. A name that is neither a file nor a directory (a FIFO, a
/// device) is not opened, as opening one could block.
fn open_for_serving(root: &str, segments: &[String]) -> Result<(File, u64, String), Status> {
    let mut path = String::from(root);
    for segment in segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
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
    Ok((file, meta.len(), path))
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

/// Sends an error response with a short text body (just the head for
/// `HEAD`).
fn send_error(
    conn: &Socket,
    status: Status,
    version: Version,
    is_head: bool,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> io::Result<Outcome> {
    let body = format!("{} {}\n", status.code(), status.reason());
    let mut response = http::response_head(
        status,
        body.len() as u64,
        "text/plain; charset=utf-8",
        version,
        keep_alive,
        extra,
    );
    if !is_head {
        response.push_str(&body);
    }
    conn.sendall(response.as_bytes())?;
    Ok(Outcome {
        status,
        body_bytes: if is_head { 0 } else { body.len() as u64 },
        keep_alive,
    })
}

/// Closes the sending side, then reads and discards what the client still
/// sends (a body, pipelined requests), until it closes its side too or for
/// at most [`LINGER_TIMEOUT`] and [`LINGER_MAX_BYTES`]: closing with unread
/// data would reset the connection, and the client could lose the response
/// it has not read yet.
fn linger(conn: &Socket, reader: &mut impl BufRead) {
    let _ = conn.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut discarded = 0;
    while discarded < LINGER_MAX_BYTES && time_left(conn, deadline).is_ok() {
        match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(data) => {
                let n = data.len();
                reader.consume(n);
                discarded += n;
            }
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
            })
        );
        assert_eq!(
            parse(&["--max-requests", "2", "[::1]:80", "--timeout", "5", "/site"]),
            Ok(Args {
                addr: "[::1]:80".into(),
                root: "/site".into(),
                max_requests: Some(2),
                timeout: Duration::from_secs(5),
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
            &["--help"],
            &["-p", "80"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
