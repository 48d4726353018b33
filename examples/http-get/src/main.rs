//! `http-get URL`: a minimal HTTP/1.1 client, a sockshim example plugin.
//!
//! Fetches `http://host[:port]/path` with a GET request and writes the
//! response body to stdout. Handles `Content-Length`, chunked
//! transfer-encoding and bodies delimited by the end of the connection.
//! Exits with 0 on a 2xx status; otherwise prints `http-get: HTTP STATUS`
//! to stderr and exits with 1 (after writing the body). Any other failure
//! prints `http-get: <what>: <error>` and exits with 1. No TLS: `https://`
//! URLs are refused.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use sockshim::Address;

/// The timeout of the connection, and of every read from it.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest status, header or chunk-size line accepted, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// The most header lines accepted in one response head.
const MAX_HEADERS: usize = 256;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("http-get: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url] = args.as_slice() else {
        return Err("usage: http-get http://host[:port]/path".to_owned());
    };
    let url = Url::parse(url).map_err(|why| format!("invalid URL {url:?}: {why}"))?;
    let target = Address::new(url.host.as_str(), url.port);

    let conn = sockshim::create_connection(&target, Some(TIMEOUT))
        .map_err(context(format!("connect to {target}")))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         User-Agent: sockshim-http-get/0.1\r\n\r\n",
        url.path, url.authority
    );
    conn.sendall(request.as_bytes())
        .map_err(context("send request"))?;

    let mut reader = BufReader::with_capacity(64 * 1024, &conn);
    let head = read_head(&mut reader)?;
    let mut out = io::stdout().lock();
    match head.framing()? {
        Framing::None => {}
        Framing::Length(length) => copy_body(&mut reader, &mut out, Some(length))?,
        Framing::Chunked => copy_chunked(&mut reader, &mut out)?,
        Framing::UntilClose => copy_body(&mut reader, &mut out, None)?,
    }
    out.flush().map_err(context("write to stdout"))?;

    if (200..300).contains(&head.status) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("http-get: HTTP {}", head.status);
        Ok(ExitCode::FAILURE)
    }
}

/// Prefixes an error with what was being done.
fn context<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

/// The parts of an `http://` URL that a request needs.
#[derive(Debug, PartialEq)]
struct Url {
    /// Host name or IP address, without brackets.
    host: String,
    port: u16,
    /// `host[:port]` as written in the URL, for the `Host` header.
    authority: String,
    /// Path and query, at least `/`.
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("expected http://host[:port]/path")?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err("https is not supported (no TLS); use http://".to_owned());
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "unsupported scheme {scheme:?}; only http:// is supported"
            ));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err("user names in URLs are not supported".to_owned());
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("spaces and control characters must be percent-encoded".to_owned());
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or("missing ']'")?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected ':port' after ']'")?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err("an IPv6 address needs brackets, as in http://[::1]/".to_owned());
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("missing host".to_owned());
        }
        let port = match port {
            None | Some("") => 80,
            Some(port) => port.parse().map_err(|_| format!("invalid port {port:?}"))?,
        };
        let path = tail.split('#').next().unwrap_or_default();
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(Url {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// The status and headers of a response.
struct Head {
    status: u16,
    /// Header names in lower case, values trimmed.
    headers: Vec<(String, String)>,
}

/// How the body of a response is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// RFC 9112, section 6.3, for the response to a GET.
    fn framing(&self) -> Result<Framing, String> {
        if self.status == 204 || self.status == 304 || (100..200).contains(&self.status) {
            return Ok(Framing::None);
        }
        if let Some(codings) = self.header("transfer-encoding") {
            let last = codings.rsplit(',').next().unwrap_or_default().trim();
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        match self.header("content-length") {
            Some(length) => length
                .parse()
                .map(Framing::Length)
                .map_err(|_| format!("read response: invalid Content-Length {length:?}")),
            None => Ok(Framing::UntilClose),
        }
    }
}

/// Reads the status line and headers, skipping interim (1xx) responses.
fn read_head(reader: &mut impl BufRead) -> Result<Head, String> {
    loop {
        let line = read_line(reader)?;
        let status = parse_status_line(&line)
            .ok_or_else(|| format!("read response: not an HTTP status line: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(reader)?;
            if line.is_empty() {
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(format!("read response: more than {MAX_HEADERS} headers"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("read response: malformed header line {line:?}"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        // 101 Switching Protocols is final, but never asked for here.
        if !(100..200).contains(&status) || status == 101 {
            return Ok(Head { status, headers });
        }
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Reads one line without its line ending; fails at end of stream.
fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    reader
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(context("read response"))?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() as u64 == MAX_LINE {
            format!("read response: line longer than {MAX_LINE} bytes")
        } else {
            "read response: connection closed in the middle of the response".to_owned()
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Copies `length` bytes of body, or everything until the end of the
/// stream if `length` is `None`.
fn copy_body(
    reader: &mut impl BufRead,
    out: &mut impl Write,
    length: Option<u64>,
) -> Result<(), String> {
    let mut remaining = length;
    loop {
        if remaining == Some(0) {
            return Ok(());
        }
        let buf = reader.fill_buf().map_err(context("read response body"))?;
        if buf.is_empty() {
            return match remaining {
                None => Ok(()),
                Some(left) => Err(format!(
                    "read response body: connection closed with {left} bytes missing"
                )),
            };
        }
        let n = match remaining {
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        out.write_all(&buf[..n])
            .map_err(context("write to stdout"))?;
        reader.consume(n);
        if let Some(left) = remaining.as_mut() {
            *left -= n as u64;
        }
    }
}

/// Decodes a chunked body (RFC 9112, section 7.1), discarding trailers.
fn copy_chunked(reader: &mut impl BufRead, out: &mut impl Write) -> Result<(), String> {
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| format!("read response body: invalid chunk size {line:?}"))?;
        if size == 0 {
            // Trailer fields, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(());
        }
        copy_body(reader, out, Some(size))?;
        if !read_line(reader)?.is_empty() {
            return Err("read response body: missing line end after a chunk".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let url = Url::parse("http://example.com").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("example.com", 80, "/")
        );
        let url = Url::parse("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.port, 8080);
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.path, "/a/b?c=d");
        let url = Url::parse("http://[::1]:81?q").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 81, "/?q")
        );
        assert_eq!(url.authority, "[::1]:81");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "https://example.com/",
            "ftp://example.com/",
            "example.com",
            "http://",
            "http://:80/",
            "http://host:99999/",
            "http://::1/",
            "http://u@host/",
            "http://host/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decodes_chunked_bodies() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        let mut out = Vec::new();
        copy_chunked(&mut &body[..], &mut out).unwrap();
        assert_eq!(out, b"hello, world");
    }

    #[test]
    fn reads_heads() {
        let response =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc";
        let mut reader = &response[..];
        let head = read_head(&mut reader).unwrap();
        assert_eq!(head.status, 404);
        assert!(matches!(head.framing(), Ok(Framing::Length(3))));
        let mut out = Vec::new();
        copy_body(&mut reader, &mut out, Some(3)).unwrap();
        assert_eq!(out, b"abc");
        let mut short = &b"ab"[..];
        assert!(copy_body(&mut short, &mut Vec::new(), Some(3)).is_err());
    }
}
