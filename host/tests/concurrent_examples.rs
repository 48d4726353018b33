//! The example plugins serving many connections at once, as a user runs
//! them: `sockshim run` as a real process and native peers on real
//! sockets. Time bounds are generous and only catch a server that holds
//! one client behind another; no test asserts speed.

mod common;

use common::{Listening, sockshim};
use sockshim_test_artifacts::{ECHO_SERVER, FILE_SERVER, TCP_PROXY};
use std::collections::HashSet;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for anything before it calls the server stuck.
const PATIENCE: Duration = Duration::from_secs(60);

/// A plugin run with `sockshim run`, listening ([`Listening`]).
struct Plugin(Listening);

impl Plugin {
    fn start(sockshim_flags: &[&str], plugin: &str, args: &[&str]) -> Plugin {
        Plugin(Listening::start(
            sockshim()
                .args(["run", "--allow-bind", "127.0.0.1:*"])
                .args(sockshim_flags)
                .arg(plugin)
                .args(args),
        ))
    }

    fn connect(&self) -> TcpStream {
        let conn = TcpStream::connect(&self.0.addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.set_write_timeout(Some(PATIENCE)).unwrap();
        conn
    }

    /// Waits (up to [`PATIENCE`]) until stderr satisfies `logged`; returns
    /// it.
    fn wait_for_log(&self, logged: impl Fn(&str) -> bool) -> String {
        self.0.wait_for_log(PATIENCE, logged)
    }

    /// Kills the plugin; returns its whole stderr.
    fn stop(&mut self) -> String {
        self.0.kill().1
    }
}

/// `len` bytes of a pseudo-random stream named by `seed`, in pieces of at
/// most `piece` bytes, to `out`.
fn stream(seed: u64, len: usize, piece: usize, mut out: impl FnMut(&[u8])) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut buf = vec![0u8; piece.next_multiple_of(8)];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(piece);
        out(&buf[..n]);
        left -= n;
    }
}

fn stream_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut all = Vec::with_capacity(len);
    stream(seed, len, 4096, |piece| all.extend_from_slice(piece));
    all
}

/// The hash and length of stream `seed`.
fn stream_digest(seed: u64, len: usize) -> (u64, u64) {
    let mut hasher = DefaultHasher::new();
    stream(seed, len, 1 << 16, |piece| hasher.write(piece));
    (hasher.finish(), len as u64)
}

/// Writes stream `seed` to `conn`, then shuts its sending side.
fn send_stream(conn: &mut TcpStream, seed: u64, len: usize) {
    stream(seed, len, 1 << 16, |piece| conn.write_all(piece).unwrap());
    conn.shutdown(Shutdown::Write).unwrap();
}

/// Reads `conn` to the end; returns the hash and length of what came.
fn read_digest(conn: &mut TcpStream) -> (u64, u64) {
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (hasher.finish(), len),
            Ok(n) => {
                hasher.write(&buf[..n]);
                len += n as u64;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("read after {len} bytes: {err}"),
        }
    }
}

#[test]
fn echo_server_serves_200_interleaved_clients() {
    const CLIENTS: usize = 200;
    const ROUNDS: usize = 8;
    let server = Plugin::start(&[], ECHO_SERVER, &["127.0.0.1:0"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    // Every round, every client sends a message of its own (of a length
    // that differs from client to client), then every client reads its
    // echo: all connections are open and in use at once.
    let message = |client: usize, round: usize| {
        stream_bytes(
            (client * ROUNDS + round) as u64,
            1 + (client * 37 + round * 101) % 3000,
        )
    };
    let mut received: Vec<Vec<u8>> = vec![Vec::new(); CLIENTS];
    for round in 0..ROUNDS {
        for (i, conn) in clients.iter_mut().enumerate() {
            conn.write_all(&message(i, round)).unwrap();
        }
        for (i, conn) in clients.iter_mut().enumerate() {
            let mut echo = vec![0; message(i, round).len()];
            conn.read_exact(&mut echo)
                .unwrap_or_else(|err| panic!("client {i}, round {round}: {err}"));
            received[i].extend_from_slice(&echo);
        }
    }
    // A client that closes its side gets the rest, then the end.
    for conn in &clients {
        conn.shutdown(Shutdown::Write).unwrap();
    }
    for (i, conn) in clients.iter_mut().enumerate() {
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "client {i}: {} more bytes", rest.len());
        let sent: Vec<u8> = (0..ROUNDS).flat_map(|round| message(i, round)).collect();
        assert!(received[i] == sent, "client {i}: the echo differs");
    }
    let mut server = server;
    let log = server.stop();
    assert!(!log.contains("echo-server:"), "{log}");
}

#[test]
fn echo_server_is_not_held_by_a_silent_client_or_one_that_does_not_read() {
    let server = Plugin::start(&[], ECHO_SERVER, &["127.0.0.1:0"]);
    // One client connects and says nothing; another sends a lot and reads
    // nothing, so its echo fills the buffers on both sides.
    let silent = server.connect();
    let mut flood = server.connect();
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![7u8; 1 << 16];
    let mut flooded = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        match flood.write(&chunk) {
            Ok(n) => flooded += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(err) => panic!("{err}"),
        }
    }
    assert!(flooded > 0);
    // Meanwhile others are served, one after the other and together.
    for i in 0..20 {
        let mut conn = server.connect();
        let message = stream_bytes(1000 + i, 10_000);
        conn.write_all(&message).unwrap();
        let mut echo = vec![0; message.len()];
        conn.read_exact(&mut echo)
            .unwrap_or_else(|err| panic!("client {i}: {err}"));
        assert!(echo == message, "client {i}: the echo differs");
    }
    // The flooding client gets all of its bytes back once it reads.
    flood.set_write_timeout(Some(PATIENCE)).unwrap();
    flood.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    flood.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed.len(), flooded);
    assert!(echoed.iter().all(|&b| b == 7));
    drop(silent);
}

/// A temporary directory holding the files a file server serves. Removed
/// on drop.
struct Site {
    dir: PathBuf,
}

impl Site {
    /// Files `f0.bin`..: pseudo-random, of the given lengths.
    fn new(name: &str, lens: &[usize]) -> Site {
        let dir =
            std::env::temp_dir().join(format!("sockshim-concurrent-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (i, &len) in lens.iter().enumerate() {
            fs::write(dir.join(format!("f{i}.bin")), stream_bytes(i as u64, len)).unwrap();
        }
        Site { dir }
    }

    fn serve(&self, plugin_flags: &[&str]) -> Plugin {
        let dir = format!("{}::/", self.dir.display());
        let mut args = plugin_flags.to_vec();
        args.push("127.0.0.1:0");
        Plugin::start(&["--dir", &dir], FILE_SERVER, &args)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Sends a keep-alive `GET path` and reads the response; returns its
/// status and body.
fn get(reader: &mut BufReader<TcpStream>, path: &str) -> (u16, Vec<u8>) {
    reader
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut len = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        assert!(
            !name.eq_ignore_ascii_case("connection"),
            "not keep-alive: {line}"
        );
        if name.eq_ignore_ascii_case("content-length") {
            len = Some(value.trim().parse::<usize>().unwrap());
        }
    }
    let mut body = vec![0; len.expect("no Content-Length")];
    reader.read_exact(&mut body).unwrap();
    (status, body)
}

#[test]
fn file_server_answers_16_concurrent_keep_alive_clients_byte_for_byte() {
    const CLIENTS: usize = 16;
    const REQUESTS: usize = 12;
    let lens = [0, 1, 4096, 100_000, 1 << 20, 5 << 20];
    let site = Site::new("keep-alive", &lens);
    let server = site.serve(&[]);
    let files: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..lens.len())
            .map(|i| fs::read(site.dir.join(format!("f{i}.bin"))).unwrap())
            .collect(),
    );
    // All connections are open before any asks for anything, and each
    // waits for the others to have their first answer before going on.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let mut reader = BufReader::new(server.connect());
            let (barrier, files) = (Arc::clone(&barrier), Arc::clone(&files));
            thread::spawn(move || {
                let local = reader.get_ref().local_addr().unwrap().to_string();
                barrier.wait();
                for request in 0..REQUESTS {
                    let file = (client + request) % files.len();
                    let (status, body) = get(&mut reader, &format!("/f{file}.bin"));
                    assert_eq!(status, 200, "client {client}, request {request}");
                    assert!(
                        body == files[file],
                        "client {client}, request {request}: /f{file}.bin differs"
                    );
                    if request == 0 {
                        barrier.wait();
                    }
                }
                local
            })
        })
        .collect();
    let locals: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    // One log line per request, and each client's came from its one
    // connection.
    let log = server.wait_for_log(|log| log.matches("\" 200 ").count() >= CLIENTS * REQUESTS);
    for local in &locals {
        let lines = log
            .lines()
            .filter(|line| line.starts_with(&format!("{local} \"GET /f")))
            .count();
        assert_eq!(lines, REQUESTS, "{local}:\n{log}");
    }
    let peers: HashSet<&str> = log
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(peers.len(), CLIENTS, "{log}");
}

#[test]
fn file_server_drops_a_client_trickling_its_head_while_serving_others() {
    let site = Site::new("trickle", &[4096]);
    let server = site.serve(&["--head-timeout", "3"]);
    let file = fs::read(site.dir.join("f0.bin")).unwrap();

    // A client that sends its head one byte every half second: each byte
    // well within any per-read timeout, the whole head never in time.
    let mut trickle = server.connect();
    trickle
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let trickler = thread::spawn(move || {
        let started = Instant::now();
        let head = b"GET /f0.bin HTTP/1.1\r\nHost: t\r\nX-Slow: ";
        for &byte in head.iter().chain(std::iter::repeat(&b'a')) {
            assert!(
                started.elapsed() < PATIENCE,
                "the server kept a trickling client"
            );
            if trickle.write_all(&[byte]).is_err() {
                return started.elapsed();
            }
            let mut buf = [0; 64];
            match trickle.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(n) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&buf[..n])),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // Reset: closed too.
                Err(_) => return started.elapsed(),
            }
        }
        unreachable!("the head never ends")
    });

    // Meanwhile another client is served, again and again, until the
    // trickling one is dropped.
    let mut reader = BufReader::new(server.connect());
    let mut served = 0;
    while !trickler.is_finished() {
        let (status, body) = get(&mut reader, "/f0.bin");
        assert_eq!(status, 200);
        assert!(body == file);
        served += 1;
        thread::sleep(Duration::from_millis(100));
    }
    let dropped_after = trickler.join().unwrap();
    assert!(served > 0);
    assert!(
        dropped_after >= Duration::from_millis(2500),
        "{dropped_after:?}"
    );
    let log = server.wait_for_log(|log| log.contains("request head not complete within 3 s"));
    assert!(
        log.contains("request head not complete within 3 s of its first byte"),
        "{log}"
    );
    // The served client's connection is still good.
    let (status, _) = get(&mut reader, "/f0.bin");
    assert_eq!(status, 200);
}

/// A native upstream listening on a free port, and a `tcp-proxy` in front
/// of it.
fn proxy() -> (TcpListener, Plugin) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let proxy = Plugin::start(
        &["--allow-connect", &upstream_addr],
        TCP_PROXY,
        &["127.0.0.1:0", &upstream_addr],
    );
    (upstream, proxy)
}

fn accept(upstream: &TcpListener) -> TcpStream {
    let (conn, _) = upstream.accept().unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    conn.set_write_timeout(Some(PATIENCE)).unwrap();
    conn
}

#[test]
fn tcp_proxy_relays_64_mib_each_way_with_half_close_passed_through() {
    const LEN: usize = 64 << 20;
    let (upstream, proxy) = proxy();
    let mut client = proxy.connect();

    // The upstream reads the client's 64 MiB to the end, which it sees
    // only if the proxy passes the client's half-close on, and only then
    // answers with 64 MiB of its own, which reach the client only if the
    // proxy keeps the other direction open.
    let upstream_side = thread::spawn(move || {
        let mut conn = accept(&upstream);
        let received = read_digest(&mut conn);
        send_stream(&mut conn, 2, LEN);
        // The client closes after reading all: the proxy passes that on.
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        received
    });
    send_stream(&mut client, 1, LEN);
    let answer = read_digest(&mut client);
    drop(client);
    let request = upstream_side.join().unwrap();
    assert_eq!(request, stream_digest(1, LEN), "client to upstream");
    assert_eq!(answer, stream_digest(2, LEN), "upstream to client");

    let mut proxy = proxy;
    let log = proxy.stop();
    assert!(!log.contains("tcp-proxy:"), "{log}");
}

#[test]
fn tcp_proxy_relays_many_clients_at_once_both_ways() {
    const CLIENTS: usize = 40;
    const LEN: usize = 512 << 10;
    let (upstream, proxy) = proxy();
    // The upstream serves every connection at once: it sends its stream
    // while it reads the client's, and closes its side first or last.
    let upstream_side = thread::spawn(move || {
        let mut peers = Vec::new();
        for _ in 0..CLIENTS {
            let mut conn = accept(&upstream);
            peers.push(thread::spawn(move || {
                let mut seed = [0u8; 8];
                conn.read_exact(&mut seed).unwrap();
                let seed = u64::from_le_bytes(seed);
                let mut writer = conn.try_clone().unwrap();
                let sending = thread::spawn(move || send_stream(&mut writer, seed + 1, LEN));
                let received = read_digest(&mut conn);
                sending.join().unwrap();
                (seed, received)
            }));
        }
        peers
            .into_iter()
            .map(|peer| peer.join().unwrap())
            .collect::<Vec<_>>()
    });
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|i| {
            let mut conn = proxy.connect();
            thread::spawn(move || {
                let seed = 1000 * (i + 1);
                conn.write_all(&seed.to_le_bytes()).unwrap();
                let mut reader = conn.try_clone().unwrap();
                let receiving = thread::spawn(move || read_digest(&mut reader));
                send_stream(&mut conn, seed, LEN);
                let received = receiving.join().unwrap();
                assert_eq!(received, stream_digest(seed + 1, LEN), "client {i}");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    for (seed, received) in upstream_side.join().unwrap() {
        assert_eq!(received, stream_digest(seed, LEN), "from client {seed}");
    }
}

#[test]
fn tcp_proxy_reports_an_unreachable_upstream_and_goes_on() {
    // A port nothing listens on: bound, then closed.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut proxy = Plugin::start(
        &["--allow-connect", &closed_addr],
        TCP_PROXY,
        &["127.0.0.1:0", &closed_addr],
    );
    for _ in 0..3 {
        let mut conn = proxy.connect();
        let mut rest = Vec::new();
        // The proxy closes the client's connection: an end or a reset.
        let _ = conn.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }
    let log = proxy.wait_for_log(|log| log.matches("connect to the upstream").count() >= 3);
    assert_eq!(log.matches("connect to the upstream").count(), 3, "{log}");
    let log = proxy.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn tcp_proxy_passes_the_upstreams_half_close_on_too() {
    let (upstream, proxy) = proxy();
    let mut client = proxy.connect();
    // The upstream greets and shuts its side at once; the client reads the
    // greeting to the end and only then sends its request, which must
    // still reach the upstream.
    let upstream_side = thread::spawn(move || {
        let mut conn = accept(&upstream);
        conn.write_all(b"hello, then nothing more").unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).unwrap();
        request
    });
    let mut greeting = Vec::new();
    client.read_to_end(&mut greeting).unwrap();
    assert_eq!(greeting, b"hello, then nothing more");
    client.write_all(b"a request after the end").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(upstream_side.join().unwrap(), b"a request after the end");
}

#[test]
fn echo_server_reports_a_reset_connection_and_goes_on() {
    let server = Plugin::start(&[], ECHO_SERVER, &["127.0.0.1:0"]);
    // A client sends a lot, reads nothing, then resets the connection
    // (SO_LINGER 0): the server's next send to it fails.
    let mut reset = server.connect();
    reset
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![1u8; 1 << 16];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) && reset.write_all(&chunk).is_ok() {}
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    let log = server.wait_for_log(|log| log.contains("echo-server: connection from"));
    assert!(log.contains("echo-server: connection from"), "{log}");
    // Still serving.
    let mut conn = server.connect();
    conn.write_all(b"still there?").unwrap();
    let mut echo = [0; 12];
    conn.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still there?");
}
