//! The `file-server` example plugin as a user runs it: `sockshim run` as a
//! real process, a temporary site directory, and real `curl` (or a plain
//! `std::net` client) as the native HTTP client.

mod common;

use common::{Listening, sockshim};
use sockshim_test_artifacts::FILE_SERVER;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

const CURL: &str = "/usr/bin/curl";
const HELLO: &str = "hello, world\n";
const INDEX: &str = "<!doctype html><title>docs</title>\n";
const SECRET: &str = "the secret outside the served directory\n";

/// A temporary directory holding `site/` (what the server serves) and,
/// beside it, `secret.txt`, which no request may reach. Removed on drop.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn new(name: &str) -> Site {
        let dir = std::env::temp_dir().join(format!(
            "sockshim-file-server-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("site/docs")).unwrap();
        fs::create_dir_all(dir.join("site/empty")).unwrap();
        fs::write(dir.join("site/hello.txt"), HELLO).unwrap();
        fs::write(dir.join("site/docs/index.html"), INDEX).unwrap();
        fs::write(dir.join("site/nothing.txt"), "").unwrap();
        fs::write(dir.join("secret.txt"), SECRET).unwrap();
        Site { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("site")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A `sockshim run … file-server.wasm 127.0.0.1:0` process serving `site/`
/// as `/` ([`Listening`]: its stderr, the request log, readable while it
/// runs).
struct Server(Listening);

impl Server {
    fn start(site: &Site, sockshim_flags: &[&str], plugin_flags: &[&str]) -> Server {
        let dir = format!("{}::/", site.root().display());
        Server(Listening::start(
            sockshim()
                .args(["run", "--allow-bind", "127.0.0.1:*", "--dir", &dir])
                .args(sockshim_flags)
                .arg(FILE_SERVER)
                .args(plugin_flags)
                .arg("127.0.0.1:0"),
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.0.addr)
    }

    fn connect(&self) -> TcpStream {
        let conn = TcpStream::connect(&self.0.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        conn
    }

    /// Kills the server, waits for it, and checks that nothing is left:
    /// the process is gone and nothing listens on its address any more.
    /// Returns its exit status and stderr.
    fn kill(&mut self) -> (ExitStatus, String) {
        let pid = self.0.pid();
        let ended = self.0.kill();
        self.check_gone(pid, ended)
    }

    /// Waits (up to 30 s) until the request log satisfies `logged`, then as
    /// [`Server::kill`]. The plugin logs a request after answering it, so a
    /// client can be done before the line is written.
    fn kill_once_logged(&mut self, logged: impl Fn(&str) -> bool) -> (ExitStatus, String) {
        self.0.wait_for_log(Duration::from_secs(30), logged);
        self.kill()
    }

    /// Waits (up to 60 s) for the server to exit on its own, as it does
    /// after `--max-requests` answers; then as for [`Server::kill`].
    fn wait_for_exit(&mut self) -> (ExitStatus, String) {
        let pid = self.0.pid();
        let ended = self.0.wait_for_exit(Duration::from_secs(60));
        self.check_gone(pid, ended)
    }

    fn check_gone(&self, pid: Option<u32>, ended: (ExitStatus, String)) -> (ExitStatus, String) {
        let pid = pid.expect("the server was already stopped");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} is still there"
        );
        assert!(
            TcpStream::connect(&self.0.addr).is_err(),
            "something still listens on {}",
            self.0.addr
        );
        ended
    }
}

/// Runs curl with a generous overall time limit.
fn curl(args: &[&str]) -> Output {
    Command::new(CURL)
        .args(["--silent", "--show-error", "--max-time", "300"])
        .args(args)
        .output()
        .expect("cannot run curl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs curl for one URL and returns (status code, body).
fn curl_status(args: &[&str]) -> (String, String) {
    let mut all = vec!["--write-out", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// One response read from a raw connection.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .expect("no Content-Length")
            .parse()
            .unwrap()
    }
}

/// Reads one response; its body too unless `head_request`.
fn read_response(reader: &mut impl BufRead, head_request: bool) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_request {
        response.body = vec![0; response.content_length()];
        reader.read_exact(&mut response.body).unwrap();
    }
    response
}

/// Asserts that the server closed the connection: end of stream, nothing
/// more.
fn assert_closed(reader: &mut impl Read) {
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "more after the last response: {rest:?}");
}

/// The peers of the server's request log lines (`PEER "REQUEST" STATUS
/// BYTES`) that contain `needle`.
fn log_peers(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(needle))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Writes `len` pseudo-random bytes to `path`.
fn write_random_file(path: &Path, len: usize) {
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..len / chunk.len() {
        for word in chunk.chunks_exact_mut(8) {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        out.write_all(&chunk).unwrap();
    }
    out.flush().unwrap();
}

/// Whether two files have the same bytes.
fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    if a.metadata().unwrap().len() != b.metadata().unwrap().len() {
        return false;
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return true;
        }
        b.read_exact(&mut y[..n]).unwrap();
        if x[..n] != y[..n] {
            return false;
        }
    }
}

/// The two counts of `sockshim run --stats`' line: bytes by sendfile(2),
/// bytes by the read+send fallback.
fn sendfile_stats(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|line| line.starts_with("sockshim: sendfile carried "))
        .unwrap_or_else(|| panic!("no --stats line in:\n{log}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    assert_eq!(
        line,
        format!(
            "sockshim: sendfile carried {} bytes by sendfile(2) and {} bytes by the read+send fallback",
            numbers[0], numbers[1]
        )
    );
    (numbers[0], numbers[1])
}

#[test]
fn curl_downloads_256_mib_sent_by_sendfile_byte_for_byte() {
    const LEN: usize = 256 << 20;
    let site = Site::new("big");
    let big = site.root().join("big.bin");
    write_random_file(&big, LEN);
    let out_path = site.dir.join("downloaded.bin");

    // One request, then the plugin exits, so that --stats reports.
    let mut server = Server::start(&site, &["--stats"], &["--max-requests", "1"]);
    let started = Instant::now();
    let out = curl(&[
        "--fail",
        "--output",
        out_path.to_str().unwrap(),
        &server.url("/big.bin"),
    ]);
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    eprintln!("256 MiB in {:?}", started.elapsed());
    assert_eq!(
        fs::metadata(&out_path).unwrap().len(),
        LEN as u64,
        "wrong length"
    );
    assert!(same_contents(&big, &out_path), "the download differs");

    let (status, log) = server.wait_for_exit();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("\"GET /big.bin HTTP/1.1\" 200 268435456"),
        "{log}"
    );
    // The body went by sendfile(2), none by the fallback.
    assert_eq!(sendfile_stats(&log), (LEN as u64, 0), "{log}");
}

#[test]
fn curl_reuses_one_connection_for_two_urls() {
    let site = Site::new("reuse");
    let mut server = Server::start(&site, &[], &[]);
    let out = curl(&[
        "--verbose",
        &server.url("/hello.txt"),
        &server.url("/docs/"),
    ]);
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{HELLO}{INDEX}"));
    let verbose = text(&out.stderr);
    assert!(
        verbose.contains("Re-using existing connection"),
        "{verbose}"
    );

    let (_, log) = server.kill_once_logged(|log| log_peers(log, "\" 200 ").len() >= 2);
    // Both requests came from one peer address and port: one connection.
    let peers = log_peers(&log, "\" 200 ");
    assert_eq!(peers.len(), 2, "{log}");
    assert_eq!(peers[0], peers[1], "{log}");
}

#[test]
fn one_connection_carries_several_requests() {
    let site = Site::new("raw");
    let mut server = Server::start(&site, &[], &[]);
    let conn = server.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;

    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    writer.write_all(get("/hello.txt").as_bytes()).unwrap();
    let response = read_response(&mut reader, false);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, HELLO.as_bytes());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("connection"), None);

    // HEAD: the same head, no body, so the next response follows at once.
    writer
        .write_all(b"HEAD /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader, true);
    assert_eq!(response.status, 200);
    assert_eq!(response.content_length(), HELLO.len());

    // Two requests in one write (pipelined): two answers, in order.
    writer
        .write_all(format!("{}{}", get("/docs"), get("/nothing.txt")).as_bytes())
        .unwrap();
    let response = read_response(&mut reader, false);
    assert_eq!(
        (response.status, &response.body[..]),
        (200, INDEX.as_bytes())
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let response = read_response(&mut reader, false);
    assert_eq!((response.status, response.body.len()), (200, 0));

    // Errors that leave the connection usable.
    writer.write_all(get("/missing.txt").as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader, false).status, 404);
    writer.write_all(get("/../secret.txt").as_bytes()).unwrap();
    let response = read_response(&mut reader, false);
    assert_eq!(response.status, 403);
    assert!(!text(&response.body).contains("secret"));
    writer
        .write_all(b"DELETE /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader, false);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));

    // Connection: close is honoured.
    writer
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader, false);
    assert_eq!(
        (response.status, &response.body[..]),
        (200, HELLO.as_bytes())
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_closed(&mut reader);

    let (_, log) = server.kill_once_logged(|log| log_peers(log, "HTTP/1.1\" ").len() >= 8);
    let peers = log_peers(&log, "HTTP/1.1\" ");
    assert_eq!(peers.len(), 8, "{log}");
    assert!(peers.iter().all(|peer| *peer == peers[0]), "{log}");
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let site = Site::new("http10");
    let mut server = Server::start(&site, &[], &[]);

    let mut conn = server.connect();
    conn.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(conn);
    let response = read_response(&mut reader, false);
    assert_eq!(
        (response.status, &response.body[..]),
        (200, HELLO.as_bytes())
    );
    assert_closed(&mut reader);

    let conn = server.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    for _ in 0..2 {
        writer
            .write_all(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    drop(writer);
    drop(reader);
    server.kill();
}

#[test]
fn missing_files_are_404_and_climbing_out_is_refused() {
    let site = Site::new("refuse");
    let mut server = Server::start(&site, &[], &[]);

    let (code, _) = curl_status(&[&server.url("/missing.txt")]);
    assert_eq!(code, "404");
    // A directory without index.html.
    let (code, _) = curl_status(&[&server.url("/empty/")]);
    assert_eq!(code, "404");
    let (code, body) = curl_status(&[&server.url("/hello.txt")]);
    assert_eq!((code.as_str(), body.as_str()), ("200", HELLO));

    for path in [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/.%2E/secret.txt",
        "/docs%2f..%2f..%2fsecret.txt",
    ] {
        let (code, body) = curl_status(&["--path-as-is", &server.url(path)]);
        assert!(code == "403" || code == "400", "{path}: {code}");
        assert!(!body.contains("secret"), "{path}: {body}");
    }

    let (_, log) = server.kill_once_logged(|log| {
        log.contains("\"GET /../secret.txt HTTP/1.1\" 403")
            && log.contains("\"GET /%2e%2e/secret.txt HTTP/1.1\" 403")
    });
    assert!(log.contains("\"GET /../secret.txt HTTP/1.1\" 403"), "{log}");
    assert!(
        log.contains("\"GET /%2e%2e/secret.txt HTTP/1.1\" 403"),
        "{log}"
    );
}

#[test]
fn head_returns_the_headers_only() {
    let site = Site::new("head");
    let mut server = Server::start(&site, &[], &[]);

    // --head prints the head; with --write-out, the size of the body read.
    let out = curl(&[
        "--head",
        "--write-out",
        "body=%{size_download}",
        &server.url("/hello.txt"),
    ]);
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    let head = text(&out.stdout);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", HELLO.len())),
        "{head}"
    );
    assert!(
        head.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\nbody=0"), "{head}");

    let out = curl(&["--head", &server.url("/missing.txt")]);
    assert!(text(&out.stdout).starts_with("HTTP/1.1 404 Not Found\r\n"));

    // On the wire: nothing follows a HEAD response but the next response.
    let conn = server.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    writer
        .write_all(b"HEAD /docs/ HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut reader, true);
    assert_eq!(response.status, 200);
    assert_eq!(response.content_length(), INDEX.len());
    let response = read_response(&mut reader, false);
    assert_eq!(response.body, HELLO.as_bytes());
    assert_closed(&mut reader);
    server.kill();
}

#[test]
fn responses_carry_the_date_and_files_their_last_modified() {
    let site = Site::new("dates");
    let dated = site.root().join("dated.txt");
    fs::write(&dated, "old news").unwrap();
    let date_file = |time| {
        fs::File::options()
            .write(true)
            .open(&dated)
            .unwrap()
            .set_modified(time)
            .unwrap();
    };
    // A file last changed on a known day: RFC 9110's example date.
    date_file(std::time::UNIX_EPOCH + Duration::from_secs(784_111_777));
    let mut server = Server::start(&site, &[], &[]);
    let get = |path: &str| {
        let mut conn = server.connect();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut BufReader::new(conn), false)
    };
    // Each field once at most, so that `header` reads the only one.
    let count = |response: &Response, name: &str| {
        response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };

    for (path, status) in [("/dated.txt", 200), ("/missing.txt", 404)] {
        let response = get(path);
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(count(&response, "Date"), 1, "{response:?}");
        let date = httpdate::parse_http_date(response.header("Date").unwrap()).unwrap();
        let now = std::time::SystemTime::now();
        let apart = now.duration_since(date).unwrap_or_else(|e| e.duration());
        assert!(
            apart < Duration::from_secs(5),
            "Date {date:?} is {apart:?} from now"
        );
        if status == 200 {
            assert_eq!(count(&response, "Last-Modified"), 1, "{response:?}");
            assert_eq!(
                response.header("Last-Modified"),
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                "{response:?}"
            );
        } else {
            assert_eq!(response.header("Last-Modified"), None, "{response:?}");
        }
    }
    // A file dated before 1970, which the format cannot say: served, with
    // no Last-Modified.
    date_file(std::time::UNIX_EPOCH - Duration::from_secs(86_400));
    // Opened afresh: the open-file cache keeps a file for a moment.
    std::thread::sleep(Duration::from_secs(2));
    let response = get("/dated.txt");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("Last-Modified"), None, "{response:?}");
    server.kill();
}

#[test]
fn bad_requests_get_http_errors_and_the_server_goes_on() {
    let site = Site::new("bad");
    let mut server = Server::start(&site, &[], &[]);
    let long_target = format!("/{}", "a".repeat(10_000));
    let many_fields = "X-Field: 1\r\n".repeat(200);
    let cases: Vec<(String, u16)> = vec![
        ("garbage\r\n\r\n".into(), 400),
        ("GET /hello.txt\r\n\r\n".into(), 400),
        ("GET /hello.txt HTTP/1.1\r\n\r\n".into(), 400), // no Host
        (
            "GET /hello.txt HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n".into(),
            400,
        ),
        ("GET /hello.txt HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        (
            format!("GET {long_target} HTTP/1.1\r\nHost: t\r\n\r\n"),
            414,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "b".repeat(10_000)
            ),
            431,
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: t\r\n{many_fields}\r\n"),
            431,
        ),
        (
            "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX: a\u{0}b\r\n\r\n".into(),
            400,
        ),
        // An endless header line: refused at the line limit, not buffered.
        (
            format!(
                "GET /hello.txt HTTP/1.1\r\nHost: t\r\nX: {}",
                "x".repeat(1 << 20)
            ),
            431,
        ),
    ];
    for (request, expected) in cases {
        let conn = server.connect();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut writer = conn;
        // The server may answer and close before it has read everything.
        let _ = writer.write_all(request.as_bytes());
        let response = read_response(&mut reader, false);
        assert_eq!(response.status, expected, "{:?}", request.get(..40));
        assert_eq!(response.header("connection"), Some("close"));
        assert_closed(&mut reader);
    }
    // A client that sends a body gets its answer, then the connection closes.
    let mut conn = server.connect();
    conn.write_all(b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let response = read_response(&mut reader, false);
    assert_eq!(response.status, 405);
    assert_closed(&mut reader);

    // Still serving.
    let (code, body) = curl_status(&[&server.url("/hello.txt")]);
    assert_eq!((code.as_str(), body.as_str()), ("200", HELLO));
    let (status, log) = server.kill();
    assert!(!status.success());
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn bad_arguments_give_the_usage_and_exit_1() {
    let site = Site::new("args");
    let run = |args: &[&str]| {
        sockshim()
            .args(["run", "--allow-bind", "127.0.0.1:*"])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [&[FILE_SERVER][..], &[FILE_SERVER, "--bogus", "127.0.0.1:0"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("usage: file-server"), "{err}");
    }
    // No --dir: the root is not reachable, and the message says why.
    let out = run(&[FILE_SERVER, "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("file-server: /: "), "{err}");
    assert!(err.contains("--dir"), "{err}");
    // A port the policy does not allow.
    let dir = format!("{}::/", site.root().display());
    let out = sockshim()
        .args(["run", "--allow-bind", "127.0.0.1:1", "--dir", &dir])
        .args([FILE_SERVER, "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("file-server: listen on 127.0.0.1:0: access denied"),
        "{err}"
    );
}

#[test]
fn a_silent_or_trickling_client_cannot_hold_the_server() {
    let site = Site::new("slow");
    let mut server = Server::start(&site, &[], &["--timeout", "2"]);

    // A client that connects and says nothing holds no one else (the
    // server serves every connection at once), and its connection is
    // closed once the timeout has passed.
    let mut silent = server.connect();
    let (code, body) = curl_status(&[&server.url("/hello.txt")]);
    assert_eq!((code.as_str(), body.as_str()), ("200", HELLO));
    let mut rest = Vec::new();
    silent.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // A client that trickles its head in, a byte well within each timeout,
    // is cut off once the whole head has taken longer than the timeout.
    let mut trickle = server.connect();
    trickle
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    trickle
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server kept a trickling client"
        );
        let _ = trickle.write_all(b"a");
        let mut buf = [0; 64];
        match trickle.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(n) => panic!("unexpected answer {:?}", text(&buf[..n])),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break started.elapsed(), // reset: closed too
        }
    };
    assert!(
        closed_after >= Duration::from_millis(1500),
        "{closed_after:?}"
    );

    let (_, log) =
        server.kill_once_logged(|log| log.matches(": no complete request within 2 s").count() >= 2);
    assert_eq!(
        log.matches(": no complete request within 2 s").count(),
        2,
        "{log}"
    );
}

#[test]
fn no_access_log_leaves_out_the_requests_but_not_the_dropped_clients() {
    let site = Site::new("quiet");
    let mut server = Server::start(&site, &[], &["--no-access-log", "--timeout", "1"]);
    let silent = server.connect();
    let out = curl(&[&server.url("/hello.txt"), &server.url("/docs/")]);
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{HELLO}{INDEX}"));

    // The silent client is still dropped with a line, after the answers.
    let (_, log) = server.kill_once_logged(|log| log.contains(": no complete request within 1 s"));
    drop(silent);
    assert!(log.contains(": no complete request within 1 s"), "{log}");
    assert!(log_peers(&log, "HTTP/1.1\" ").is_empty(), "{log}");
    assert!(!log.contains("\"GET "), "{log}");
}
