//! The HTTP/1.1 side of the file server that makes no host call: reading and
//! checking a request head from any [`BufRead`], turning a request target
//! into a path that cannot leave the served directory, content types, and
//! response heads. Everything here runs (and is unit-tested) on any target.
//!
//! The grammar is RFC 9112's, read strictly: what it does not allow is a
//! `400 Bad Request`, never a guess.

use std::fmt::Write as _;
use std::io::{self, BufRead, ErrorKind, Read};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest line (request line or header line) read, its CRLF included;
/// a longer request line is `414`, a longer header line `431`. Memory per
/// connection stays bounded by this and the reader's buffer: header lines
/// are checked one at a time and only what the server needs is kept.
pub const MAX_LINE: usize = 8 * 1024;

/// The most header lines a request may have (`431` beyond).
pub const MAX_HEADERS: usize = 100;

/// Empty lines skipped before a request line (RFC 9112 §2.2: a server
/// SHOULD ignore at least one).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// The status codes the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    UriTooLong,
    HeaderFieldsTooLarge,
    InternalServerError,
    VersionNotSupported,
}

impl Status {
    /// The three-digit code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::UriTooLong => "URI Too Long",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The request method; only `GET` and `HEAD` are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other (well-formed) method: `405`.
    Other,
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Method,
    /// The request target in origin form (`/path?query`); an absolute-form
    /// target (`http://host/path`) is reduced to its path and query.
    pub target: String,
    pub version: Version,
}

/// A request head: its request line and what the server needs of its
/// header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub line: RequestLine,
    /// The request line as received (without its CRLF), for the log.
    pub raw_line: Vec<u8>,
    /// A `Connection` field has the `close` option.
    pub connection_close: bool,
    /// A `Connection` field has the `keep-alive` option.
    pub connection_keep_alive: bool,
    /// The request has a body (`Content-Length` above zero, or any
    /// `Transfer-Encoding`). The server does not read bodies: it answers,
    /// then closes the connection, since where the next request would start
    /// is past a body it did not read.
    pub has_body: bool,
}

impl RequestHead {
    /// Whether the connection stays open after the response: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive` (RFC 9112 §9.3), and never after a request
    /// with a body.
    pub fn keep_alive(&self) -> bool {
        if self.connection_close || self.has_body {
            return false;
        }
        match self.line.version {
            Version::Http11 => true,
            Version::Http10 => self.connection_keep_alive,
        }
    }
}

/// Why no request head could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The request is unacceptable: answer with this status, then close the
    /// connection (what follows in the stream cannot be trusted).
    Reject(Status),
    /// Reading failed (a timeout, a reset, or the stream ended in the middle
    /// of a head): close the connection without an answer.
    Io(io::Error),
}

impl From<io::Error> for HeadError {
    fn from(err: io::Error) -> HeadError {
        HeadError::Io(err)
    }
}

/// One line read with [`read_line`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, without its LF or CRLF.
    Complete(Vec<u8>),
    /// The stream ended before anything was read.
    End,
    /// No LF within [`MAX_LINE`] bytes.
    TooLong,
}

/// Reads one line of at most [`MAX_LINE`] bytes (terminator included),
/// never buffering more than that.
fn read_line(reader: &mut impl BufRead) -> io::Result<Line> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(Line::End);
    }
    if line.last() != Some(&b'\n') {
        if line.len() >= MAX_LINE {
            return Ok(Line::TooLong);
        }
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "the client closed the connection in the middle of a request head",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Complete(line))
}

/// Reads a request head (request line, header fields, empty line) from
/// `reader`. `Ok(None)` means the client closed the connection cleanly
/// between requests.
pub fn read_head(reader: &mut impl BufRead) -> Result<Option<RequestHead>, HeadError> {
    let mut raw_line = None;
    for _ in 0..=MAX_LEADING_EMPTY_LINES {
        match read_line(reader)? {
            Line::End => return Ok(None),
            Line::TooLong => return Err(HeadError::Reject(Status::UriTooLong)),
            Line::Complete(line) if line.is_empty() => continue,
            Line::Complete(line) => {
                raw_line = Some(line);
                break;
            }
        }
    }
    let raw_line = raw_line.ok_or(HeadError::Reject(Status::BadRequest))?;
    let line = parse_request_line(&raw_line).map_err(HeadError::Reject)?;

    let mut fields = Fields::default();
    let mut count = 0;
    loop {
        let field = match read_line(reader)? {
            Line::Complete(field) => field,
            Line::TooLong => return Err(HeadError::Reject(Status::HeaderFieldsTooLarge)),
            Line::End => {
                return Err(HeadError::Io(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the client closed the connection in the middle of a request head",
                )));
            }
        };
        if field.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeadError::Reject(Status::HeaderFieldsTooLarge));
        }
        let (name, value) = parse_field(&field).map_err(HeadError::Reject)?;
        fields.add(name, value).map_err(HeadError::Reject)?;
    }
    if line.version == Version::Http11 && !fields.host {
        // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request)
        // status code to any HTTP/1.1 request message that lacks a Host
        // header field".
        return Err(HeadError::Reject(Status::BadRequest));
    }
    if fields.transfer_encoding && fields.content_length.is_some() {
        // RFC 9112 §6.3: a sign of request smuggling.
        return Err(HeadError::Reject(Status::BadRequest));
    }
    Ok(Some(RequestHead {
        line,
        raw_line,
        connection_close: fields.close,
        connection_keep_alive: fields.keep_alive,
        has_body: fields.transfer_encoding || fields.content_length.is_some_and(|n| n > 0),
    }))
}

/// What the server keeps of the header fields.
#[derive(Debug, Default)]
struct Fields {
    host: bool,
    close: bool,
    keep_alive: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
}

impl Fields {
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), Status> {
        if name.eq_ignore_ascii_case("host") {
            if self.host {
                return Err(Status::BadRequest); // RFC 9112 §3.2
            }
            self.host = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(value)?;
            if self.content_length.is_some_and(|seen| seen != length) {
                return Err(Status::BadRequest);
            }
            self.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
        }
        Ok(())
    }
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), within `u64`.
fn parse_content_length(value: &[u8]) -> Result<u64, Status> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Status::BadRequest);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(Status::BadRequest)
}

/// RFC 9110 §5.6.2 `tchar`: the characters of a token (method, field name).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses a request line (without its CRLF): `METHOD SP TARGET SP VERSION`,
/// single spaces, as RFC 9112 §3 writes it.
pub fn parse_request_line(line: &[u8]) -> Result<RequestLine, Status> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if !is_token(method) {
        return Err(Status::BadRequest);
    }
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    let version = parse_version(version)?;
    // The target: visible ASCII only (RFC 3986 characters, percent-encoded
    // beyond that).
    if target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Status::BadRequest);
    }
    let target = std::str::from_utf8(target).map_err(|_| Status::BadRequest)?;
    let target = origin_form(target)?;
    Ok(RequestLine {
        method,
        target,
        version,
    })
}

fn parse_version(version: &[u8]) -> Result<Version, Status> {
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(Status::VersionNotSupported)
        }
        _ => Err(Status::BadRequest),
    }
}

/// The origin form (`/path?query`) of a request target: an origin-form
/// target as it is, an absolute-form one (`http://host/path`, RFC 9112
/// §3.2.2) reduced to its path. The asterisk form and anything else is
/// `400`.
fn origin_form(target: &str) -> Result<String, Status> {
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    let scheme_end = target.find("://").ok_or(Status::BadRequest)?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Status::BadRequest);
    }
    let rest = &target[scheme_end + 3..];
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => Ok(rest[i..].to_owned()),
        Some(i) => Ok(format!("/{}", &rest[i..])),
        None => Ok("/".to_owned()),
    }
}

/// Splits a header field line into its name and value (RFC 9112 §5):
/// `NAME ":" OWS VALUE OWS`, no space before the colon, no line folding,
/// no control characters in the value.
fn parse_field(line: &[u8]) -> Result<(&str, &[u8]), Status> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Status::BadRequest)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // A name that is not a token includes one that starts with whitespace
    // (obsolete line folding) or ends with it (RFC 9112 §5.1: MUST be 400).
    if !is_token(name) {
        return Err(Status::BadRequest);
    }
    let value = value.trim_ascii();
    if value
        .iter()
        .any(|&b| (b.is_ascii_control() && b != b'\t') || b == 0x7f)
    {
        return Err(Status::BadRequest);
    }
    let name = std::str::from_utf8(name).map_err(|_| Status::BadRequest)?;
    Ok((name, value))
}

/// Turns a request target into the path segments of the file it names,
/// relative to the served directory.
///
/// The query and fragment are dropped, percent-escapes decoded, and the
/// path split at `/`. Empty segments and `.` are skipped. A `..` segment,
/// written plainly or percent-encoded (`%2e%2e`, `.%2E`), is `403`: a
/// request that tries to climb out is refused before the filesystem is
/// touched. A bad escape, a NUL, a backslash (a separator on some hosts)
/// or a path that is not UTF-8 is `400`.
pub fn sanitize_path(target: &str) -> Result<Vec<String>, Status> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Status::BadRequest);
    }
    let decoded = percent_decode(path.as_bytes())?;
    let decoded = String::from_utf8(decoded).map_err(|_| Status::BadRequest)?;
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(Status::Forbidden),
            _ if segment.contains(['\\', '\0']) => return Err(Status::BadRequest),
            _ => segments.push(segment.to_owned()),
        }
    }
    Ok(segments)
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, Status> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let (Some(high), Some(low)) = (bytes.next(), bytes.next()) else {
            return Err(Status::BadRequest);
        };
        let hex = |c: &u8| char::from(*c).to_digit(16);
        let (Some(high), Some(low)) = (hex(high), hex(low)) else {
            return Err(Status::BadRequest);
        };
        // Two hex digits: at most 0xff.
        out.push(u8::try_from(high * 16 + low).map_err(|_| Status::BadRequest)?);
    }
    Ok(out)
}

/// The `Content-Type` for a file, by its extension (case-insensitive);
/// `application/octet-stream` when unknown.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, extension)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "text" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "csv" => "text/csv; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// A response head: status line, `Date` unless `date` is empty,
/// `Content-Length`, `Content-Type`, the `Connection` option when it
/// differs from the version's default, any `extra` fields, and the empty
/// line.
pub fn response_head(
    status: Status,
    date: &str,
    content_length: u64,
    content_type: &str,
    version: Version,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> String {
    // One allocation, sized for the usual head, and no formatting but of
    // the numbers: a head is made for every response.
    let mut head = String::with_capacity(256);
    head.push_str("HTTP/1.1 ");
    // Writing to a String cannot fail.
    let _ = write!(head, "{}", status.code());
    head.push(' ');
    head.push_str(status.reason());
    head.push_str("\r\nServer: sockshim-file-server\r\n");
    if !date.is_empty() {
        head.push_str("Date: ");
        head.push_str(date);
        head.push_str("\r\n");
    }
    head.push_str("Content-Length: ");
    let _ = write!(head, "{content_length}");
    head.push_str("\r\nContent-Type: ");
    head.push_str(content_type);
    head.push_str("\r\n");
    match (keep_alive, version) {
        (false, _) => head.push_str("Connection: close\r\n"),
        (true, Version::Http10) => head.push_str("Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// `time` as an HTTP-date (RFC 9110 §5.6.7, `Sun, 06 Nov 1994 08:49:37
/// GMT`), for `Date` and `Last-Modified`; `None` outside the years 1970 to
/// 9999, which the format (and `httpdate`, which panics there) cannot say.
pub fn http_date(time: SystemTime) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    (since_epoch.as_secs() < YEAR_10000).then(|| httpdate::fmt_http_date(time))
}

/// Watches the bytes of a request head arrive piece by piece and says when
/// [`read_head`] has enough of them for its answer: a whole head, or a line
/// or a count past the limits (a rejection). A server that reads without
/// blocking calls it after each receive, so that it parses a head once,
/// not after every piece; each byte is looked at once.
///
/// It follows [`read_head`]'s reading of lines (LF or CRLF, at most
/// [`MAX_LINE`] bytes, at most [`MAX_LEADING_EMPTY_LINES`] empty lines
/// first, at most [`MAX_HEADERS`] fields); anything else `read_head` finds
/// wrong shows when the head is complete.
#[derive(Debug, Default)]
pub struct HeadScanner {
    /// How many bytes of the buffer have been looked at.
    scanned: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    /// Empty lines before the request line.
    leading_empty: usize,
    /// Non-empty lines: the request line and the header fields.
    lines: usize,
}

impl HeadScanner {
    /// Looks at the bytes of `buf` that earlier calls have not seen (`buf`
    /// holds the head from its first byte and only grows between calls)
    /// and returns whether [`read_head`] over `buf` needs no more bytes.
    /// Start a new scanner for the next head.
    pub fn is_decided(&mut self, buf: &[u8]) -> bool {
        while let Some(i) = buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + i + 1;
            self.scanned = end;
            let line = &buf[self.line_start..end];
            self.line_start = end;
            if line.len() > MAX_LINE {
                return true;
            }
            if line == b"\n" || line == b"\r\n" {
                if self.lines > 0 {
                    return true;
                }
                self.leading_empty += 1;
                if self.leading_empty > MAX_LEADING_EMPTY_LINES {
                    return true;
                }
            } else {
                self.lines += 1;
                if self.lines > 1 + MAX_HEADERS {
                    return true;
                }
            }
        }
        self.scanned = buf.len();
        buf.len() - self.line_start >= MAX_LINE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn head(text: &str) -> Result<Option<RequestHead>, HeadError> {
        read_head(&mut Cursor::new(text.as_bytes().to_vec()))
    }

    fn rejected(text: &str) -> Status {
        match head(text) {
            Err(HeadError::Reject(status)) => status,
            other => panic!("{text:?}: expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_request_line(b"GET /index.html HTTP/1.1"),
            Ok(RequestLine {
                method: Method::Get,
                target: "/index.html".into(),
                version: Version::Http11
            })
        );
        let line = parse_request_line(b"HEAD /a?b=c HTTP/1.0").unwrap();
        assert_eq!(
            (line.method, line.target.as_str(), line.version),
            (Method::Head, "/a?b=c", Version::Http10)
        );
        let line = parse_request_line(b"DELETE /x HTTP/1.1").unwrap();
        assert_eq!(line.method, Method::Other);
        // Methods are case-sensitive: `get` is some other method.
        let line = parse_request_line(b"get / HTTP/1.1").unwrap();
        assert_eq!(line.method, Method::Other);
        // The absolute form is reduced to its path.
        for (target, path) in [
            ("http://example.com/a/b", "/a/b"),
            ("http://example.com", "/"),
            ("HTTP://example.com?q", "/?q"),
        ] {
            let line = parse_request_line(format!("GET {target} HTTP/1.1").as_bytes()).unwrap();
            assert_eq!(line.target, path, "{target}");
        }
    }

    #[test]
    fn rejects_malformed_request_lines() {
        for line in [
            &b""[..],
            b"GET",
            b"GET /",
            b"GET  / HTTP/1.1",
            b"GET / HTTP/1.1 ",
            b"GET / HTTP/1.1 extra",
            b"G(T / HTTP/1.1",
            b"GET index.html HTTP/1.1",
            b"GET * HTTP/1.1",
            b"GET ftp://host/ HTTP/1.1",
            b"GET /a\tb HTTP/1.1",
            b"GET /\xff HTTP/1.1",
            b"GET / HTTP/1",
            b"GET / http/1.1",
            b"GET / HTTP/1.1\r",
        ] {
            assert_eq!(
                parse_request_line(line),
                Err(Status::BadRequest),
                "{}",
                line.escape_ascii()
            );
        }
        assert_eq!(
            parse_request_line(b"GET / HTTP/2.0"),
            Err(Status::VersionNotSupported)
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/0.9"),
            Err(Status::VersionNotSupported)
        );
    }

    #[test]
    fn reads_a_head_and_its_connection_options() {
        let request = head("GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /b").unwrap();
        let request = request.unwrap();
        assert_eq!(request.line.target, "/a");
        assert_eq!(request.raw_line, b"GET /a HTTP/1.1");
        assert!(request.keep_alive());

        let request = head("GET / HTTP/1.1\r\nhost: x\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!request.keep_alive());
        let request = head("GET / HTTP/1.1\nHost: x\nConnection: upgrade, close\n\n")
            .unwrap()
            .unwrap();
        assert!(!request.keep_alive(), "bare LF line endings are accepted");

        // HTTP/1.0 closes unless keep-alive is asked; Host is optional.
        let request = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!request.keep_alive());
        let request = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(request.keep_alive());

        // A request with a body is answered, then the connection closed.
        let request = head("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert!(request.has_body && !request.keep_alive());
        let request = head("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!request.has_body && request.keep_alive());
        let request = head("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(request.has_body && !request.keep_alive());
    }

    #[test]
    fn reads_pipelined_heads_one_after_the_other() {
        let mut stream = Cursor::new(
            b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        );
        let first = read_head(&mut stream).unwrap().unwrap();
        let second = read_head(&mut stream).unwrap().unwrap();
        assert_eq!(
            (first.line.method, first.line.target.as_str()),
            (Method::Get, "/a")
        );
        assert_eq!(
            (second.line.method, second.line.target.as_str()),
            (Method::Head, "/b")
        );
        assert!(read_head(&mut stream).unwrap().is_none(), "clean end");
    }

    #[test]
    fn an_end_between_requests_is_clean_and_within_one_is_an_error() {
        assert!(head("").unwrap().is_none());
        for text in [
            "GET / HT",
            "GET / HTTP/1.1\r\nHost: x\r\n",
            "GET / HTTP/1.1\r\nHo",
        ] {
            match head(text) {
                Err(HeadError::Io(err)) => assert_eq!(err.kind(), ErrorKind::UnexpectedEof),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_bad_heads() {
        for text in [
            "GET / HTTP/1.1\r\n\r\n",                            // no Host
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",      // two Hosts
            "GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n",     // no colon
            "GET / HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n",     // space before colon
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",      // obsolete folding
            "GET / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n", // empty name
            "GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n",    // NUL in a value
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", // too many empty lines
        ] {
            assert_eq!(rejected(text), Status::BadRequest, "{text:?}");
        }
        assert_eq!(
            rejected("GET / HTTP/3.0\r\n\r\n"),
            Status::VersionNotSupported
        );
    }

    #[test]
    fn bounds_line_length_and_header_count() {
        // A request line of exactly MAX_LINE bytes with its CRLF is read...
        let target = "/".repeat(MAX_LINE - "GET  HTTP/1.1\r\n".len());
        let request = head(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap();
        assert!(request.is_some());
        // ...one byte more is refused without reading the rest.
        let long = format!("GET /{target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(rejected(&long), Status::UriTooLong);
        let endless = "A".repeat(10 * MAX_LINE);
        assert_eq!(rejected(&endless), Status::UriTooLong);

        let field = format!("X-Big: {}\r\n", "v".repeat(MAX_LINE));
        let text = format!("GET / HTTP/1.1\r\nHost: x\r\n{field}\r\n");
        assert_eq!(rejected(&text), Status::HeaderFieldsTooLarge);

        let fields = "X-A: b\r\n".repeat(MAX_HEADERS - 1);
        let text = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        assert!(
            head(&text).unwrap().is_some(),
            "MAX_HEADERS fields are fine"
        );
        let fields = "X-A: b\r\n".repeat(MAX_HEADERS);
        let text = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        assert_eq!(rejected(&text), Status::HeaderFieldsTooLarge);
    }

    #[test]
    fn sanitizes_paths() {
        let ok = |target: &str| sanitize_path(target).unwrap();
        assert_eq!(ok("/"), Vec::<String>::new());
        assert_eq!(ok("/a/b.txt"), ["a", "b.txt"]);
        assert_eq!(ok("//a/./b//"), ["a", "b"]);
        assert_eq!(ok("/a%20b/c%2Fd"), ["a b", "c", "d"]);
        assert_eq!(ok("/caf%C3%A9?x=/../y#frag"), ["café"]);
        assert_eq!(ok("/..."), ["..."]);
        assert_eq!(ok("/..a/b.."), ["..a", "b.."]);
        // A doubly encoded `..` is a file literally named `%2e%2e`.
        assert_eq!(ok("/%252e%252e"), ["%2e%2e"]);

        for target in [
            "/..",
            "/../secret",
            "/a/../../secret",
            "/a/..",
            "/%2e%2e/secret",
            "/%2E%2e/secret",
            "/.%2e/secret",
            "/%2e./secret",
            "/a%2f..%2fb",
            "/a/%2e%2e%2f%2e%2e%2fsecret",
        ] {
            assert_eq!(sanitize_path(target), Err(Status::Forbidden), "{target}");
        }
        for target in [
            "",
            "a/b",
            "/a%",
            "/a%2",
            "/a%zz",
            "/a%00b",
            "/a%5c..%5cb",
            "/a\\b",
            "/%ff%fe",
        ] {
            assert_eq!(sanitize_path(target), Err(Status::BadRequest), "{target}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/a/B.HTM"), "text/html; charset=utf-8");
        assert_eq!(content_type("/notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("/app.wasm"), "application/wasm");
        assert_eq!(content_type("/p.JPEG"), "image/jpeg");
        assert_eq!(content_type("/big.bin"), "application/octet-stream");
        assert_eq!(content_type("/README"), "application/octet-stream");
        assert_eq!(content_type("/dir.html/file"), "application/octet-stream");
        assert_eq!(content_type("/.hidden"), "application/octet-stream");
    }

    #[test]
    fn formats_response_heads() {
        assert_eq!(
            response_head(Status::Ok, "", 5, "text/plain", Version::Http11, true, &[]),
            "HTTP/1.1 200 OK\r\nServer: sockshim-file-server\r\nContent-Length: 5\r\n\
             Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            response_head(
                Status::Ok,
                "Sun, 06 Nov 1994 08:49:37 GMT",
                5,
                "text/plain",
                Version::Http11,
                true,
                &[("Last-Modified", "Sat, 05 Nov 1994 00:00:00 GMT")]
            ),
            "HTTP/1.1 200 OK\r\nServer: sockshim-file-server\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\n\
             Content-Type: text/plain\r\nLast-Modified: Sat, 05 Nov 1994 00:00:00 GMT\r\n\r\n"
        );
        let head = response_head(
            Status::MethodNotAllowed,
            "",
            0,
            "text/plain",
            Version::Http10,
            true,
            &[("Allow", "GET, HEAD")],
        );
        assert!(
            head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nConnection: keep-alive\r\n"), "{head}");
        assert!(head.ends_with("\r\nAllow: GET, HEAD\r\n\r\n"), "{head}");
        let head = response_head(Status::NotFound, "", 0, "t", Version::Http11, false, &[]);
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    }

    #[test]
    fn formats_http_dates_and_refuses_what_the_format_cannot_say() {
        use std::time::Duration;
        // RFC 9110 §5.6.7's own example.
        let example = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            http_date(example).as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(
            http_date(UNIX_EPOCH).as_deref(),
            Some("Thu, 01 Jan 1970 00:00:00 GMT")
        );
        // A file dated before 1970, or after 9999: no field, no panic.
        assert_eq!(http_date(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            None
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(253_402_300_799)).as_deref(),
            Some("Fri, 31 Dec 9999 23:59:59 GMT")
        );
    }

    /// Feeds `text` to a scanner in pieces of `piece` bytes; returns the
    /// length at which it first said the head was decided.
    fn decided_at(text: &[u8], piece: usize) -> Option<usize> {
        let mut scanner = HeadScanner::default();
        let mut end = 0;
        while end < text.len() {
            end = (end + piece).min(text.len());
            if scanner.is_decided(&text[..end]) {
                return Some(end);
            }
        }
        None
    }

    #[test]
    fn the_scanner_decides_when_read_head_can() {
        let request = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b";
        let head_len = request.len() - b"GET /b".len();
        for piece in [1, 2, 7, 100] {
            let at = decided_at(request, piece).unwrap();
            assert!(at >= head_len, "piece {piece}: {at}");
            assert!(at < head_len + piece, "piece {piece}: {at}");
        }
        let mut cursor = Cursor::new(&request[..]);
        assert!(read_head(&mut cursor).unwrap().is_some());
        assert_eq!(cursor.position() as usize, head_len);
        assert_eq!(decided_at(b"GET / HTTP/1.0\n\n", 1), Some(16));

        // Incomplete heads are not decided.
        for text in [
            &b""[..],
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HT",
        ] {
            assert_eq!(decided_at(text, 1), None, "{}", text.escape_ascii());
        }

        // Past a limit it is decided, and read_head rejects.
        let limits = [
            "A".repeat(MAX_LINE),
            format!("GET / HTTP/1.1\r\nX: {}\r\n", "v".repeat(MAX_LINE)),
            "\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1),
            format!("GET / HTTP/1.1\r\n{}", "X-A: b\r\n".repeat(MAX_HEADERS + 1)),
        ];
        for text in limits {
            let at = decided_at(text.as_bytes(), 3).unwrap_or_else(|| panic!("{text:?}"));
            match read_head(&mut Cursor::new(&text.as_bytes()[..at])) {
                Err(HeadError::Reject(_)) => {}
                other => panic!("{:?}: {other:?}", text.get(..40)),
            }
        }
        // Just within the limits it waits for the rest.
        let text = format!("GET / HTTP/1.1\r\n{}", "X-A: b\r\n".repeat(MAX_HEADERS));
        assert_eq!(decided_at(text.as_bytes(), 5), None);
        assert_eq!(decided_at("A".repeat(MAX_LINE - 1).as_bytes(), 1), None);
    }
}
