//! Python plugins (issue 24): plugins built in this test run with
//! `scripts/python-plugin.sh` (componentize-py 0.25.1), run by the
//! `sockshim` command against native peers.
//!
//! Each plugin is built once per test run, all up front and at once, and
//! then run once to compile it into the command's cache of compiled plugins,
//! so the tests themselves start in milliseconds. A plugin whose inputs have
//! not changed since the last run is not built again. Where componentize-py
//! cannot be installed (no `python3 -m venv`, no PyPI) every test here says
//! so and passes without running.
mod common;

use common::sockshim;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-plugins")
}

struct Plugins {
    scenarios: PathBuf,
    http_get: PathBuf,
    echo_server: PathBuf,
    static_server: PathBuf,
    asyncio_echo: PathBuf,
}

/// The plugins, or why they cannot be built here. A build that fails for
/// any other reason than a missing componentize-py fails every test.
fn plugins() -> Result<&'static Plugins, &'static str> {
    static PLUGINS: OnceLock<Result<Result<Plugins, String>, String>> = OnceLock::new();
    let built = PLUGINS.get_or_init(|| {
        std::panic::catch_unwind(build_all).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match built {
        Ok(plugins) => plugins.as_ref().map_err(|e| e.as_str()),
        Err(failure) => panic!("building the Python plugins failed: {failure}"),
    }
}

macro_rules! plugins_or_skip {
    () => {
        match plugins() {
            Ok(p) => p,
            Err(why) => {
                eprintln!("skipped: Python plugins cannot be built here: {why}");
                return;
            }
        }
    };
}

/// Exit status of `scripts/python-plugin.sh` when it cannot install
/// componentize-py.
const CANNOT_INSTALL: i32 = 3;

fn build_all() -> Result<Plugins, String> {
    let dir = scratch();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Install componentize-py (and h11, the third-party library the
    // scenarios bundle) before the parallel builds, once.
    let venv = root().join(".venv-python-plugins");
    let probe = Command::new(root().join("scripts/python-plugin.sh"))
        .arg("--install")
        .status()
        .map_err(|e| format!("cannot run scripts/python-plugin.sh: {e}"))?;
    if probe.code() == Some(CANNOT_INSTALL) {
        return Err("componentize-py 0.25.1 could not be installed".into());
    }
    assert!(probe.success(), "scripts/python-plugin.sh --install failed");
    let h11 = dir.join("site-h11");
    if !h11.join("h11").exists() {
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--target"])
            .arg(&h11)
            .arg("h11==0.16.0")
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err("h11 could not be installed from PyPI".into());
        }
    }
    let jobs: Vec<(&str, PathBuf, Option<&Path>)> = vec![
        (
            "scenarios",
            root().join("tests/python/scenarios.py"),
            Some(&h11),
        ),
        ("http_get", root().join("examples/python/http_get.py"), None),
        (
            "echo_server",
            root().join("examples/python/echo_server.py"),
            None,
        ),
        (
            "static_server",
            root().join("examples/python/static_server.py"),
            None,
        ),
        (
            "asyncio_echo",
            root().join("examples/python/asyncio_echo.py"),
            None,
        ),
    ];
    let outs: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(name, app, extra)| s.spawn(move || build_one(name, app, *extra)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One run of each compiles it into the cache (in parallel: Cranelift
    // takes 10 s and more per plugin).
    std::thread::scope(|s| {
        for out in &outs {
            s.spawn(move || {
                let _ = sockshim().arg("run").arg(out).arg("warm-up").output();
            });
        }
    });
    let mut outs = outs.into_iter();
    let mut next = || outs.next().unwrap();
    Ok(Plugins {
        scenarios: next(),
        http_get: next(),
        echo_server: next(),
        static_server: next(),
        asyncio_echo: next(),
    })
}

/// Builds `app` unless a plugin of the same inputs was built before.
fn build_one(name: &str, app: &Path, extra: Option<&Path>) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    let mut inputs = vec![
        app.to_path_buf(),
        root().join("guest/python/run_app.py"),
        root().join("scripts/python-plugin.sh"),
        root().join("wit/socket.wit"),
    ];
    for entry in std::fs::read_dir(root().join("guest/python/sockshim")).unwrap() {
        inputs.push(entry.unwrap().path());
    }
    inputs.sort();
    for path in &inputs {
        if path.is_file() {
            std::fs::read(path).unwrap().hash(&mut hasher);
        }
    }
    let out = scratch().join(format!("{name}-{:016x}.wasm", hasher.finish()));
    if out.exists() {
        return out;
    }
    let partial = out.with_extension("partial");
    let mut command = Command::new(root().join("scripts/python-plugin.sh"));
    command.arg(app).arg(&partial);
    if let Some(extra) = extra {
        command.env("SOCKSHIM_PYTHON_PATH", extra);
    }
    let built = command
        .output()
        .expect("cannot run scripts/python-plugin.sh");
    assert!(
        built.status.success(),
        "building {name} failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::rename(&partial, &out).unwrap();
    out
}

fn run(plugin: &Path, policy: &[&str], args: &[&str]) -> Output {
    sockshim()
        .arg("run")
        .args(policy)
        .arg(plugin)
        .args(args)
        .output()
        .expect("cannot run sockshim")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a scenario that must exit 0, and returns its stdout.
fn scenario(policy: &[&str], args: &[&str]) -> String {
    let p = plugins().unwrap();
    let out = run(&p.scenarios, policy, args);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scenario {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The number after `after` in `line` (a duration in seconds).
fn seconds_after(stdout: &str, after: &str) -> f64 {
    let rest = &stdout[stdout.find(after).expect(after) + after.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// A native echo server answering each line; serves any number of
/// connections, each on its own thread.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut writer = conn.try_clone().unwrap();
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    if writer.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A native HTTP/1.1 server answering every request with `body` and
/// closing the connection.
fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn allow(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[test]
fn socket_makefile_and_create_connection_default_timeout() {
    let _ = plugins_or_skip!();
    let port = echo_server();
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["echo", "127.0.0.1", &port.to_string()],
    );
    assert!(out.contains("timeout None\n"), "{out}");
    assert!(out.contains("line hello\n"), "{out}");
}

#[test]
fn urllib_and_http_client() {
    let _ = plugins_or_skip!();
    let port = http_server("hello from native");
    let url = format!("http://127.0.0.1:{port}/");
    let out = scenario(&["--allow-connect", &allow(port)], &["http", &url]);
    assert!(
        out.contains("status 200\nbody hello from native\n"),
        "{out}"
    );
}

#[test]
fn a_third_party_library_from_pypi_h11() {
    let _ = plugins_or_skip!();
    let port = http_server("hello via h11");
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["h11", "127.0.0.1", &port.to_string()],
    );
    assert!(
        out.contains("h11 status 200\nh11 body hello via h11\n"),
        "{out}"
    );
}

#[test]
fn timeouts_raise_timeout_error_no_earlier_than_the_deadline() {
    let _ = plugins_or_skip!();
    // Accepted by the kernel, never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let policy = ["--allow-connect", &allow(port)];
    let out = scenario(&policy, &["recv-timeout", &port.to_string(), "0.5"]);
    assert!(out.contains("socket.timeout is TimeoutError True"), "{out}");
    assert!(out.contains("TimeoutError timed out after"), "{out}");
    assert!(seconds_after(&out, "timed out after ") >= 0.5, "{out}");
    // setdefaulttimeout: create_connection's sockets take it.
    let out = scenario(&policy, &["default-timeout", &port.to_string(), "0.3"]);
    assert!(out.contains("default 0.3\ntimeout 0.3\n"), "{out}");
    assert!(seconds_after(&out, "TimeoutError after ") >= 0.3, "{out}");
}

#[test]
fn non_blocking_sockets_raise_blocking_io_error() {
    let _ = plugins_or_skip!();
    let port = echo_server();
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["nonblocking", &port.to_string()],
    );
    assert!(out.contains("blocking False timeout 0.0"), "{out}");
    assert!(out.contains("BlockingIOError EAGAIN True"), "{out}");
    assert!(out.contains("connect_ex EINPROGRESS"), "{out}");
    assert!(out.contains("writable True\nSO_ERROR 0\n"), "{out}");
}

#[test]
fn a_refused_connection_is_connection_refused_error_with_wasi_errno() {
    let _ = plugins_or_skip!();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["refused", &port.to_string()],
    );
    // WASI's errno.h numbers ECONNREFUSED 14 (Linux: 111).
    assert!(out.contains("ECONNREFUSED 14\n"), "{out}");
    assert!(out.contains("ConnectionRefusedError 14 True"), "{out}");
}

#[test]
fn selectors_select_and_poll_over_50_connections() {
    let _ = plugins_or_skip!();
    let port = echo_server();
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["many", &port.to_string(), "50"],
    );
    assert!(out.contains("selector EpollSelector"), "{out}");
    assert!(out.contains("answered 50 ok True"), "{out}");
    assert!(out.contains("select readable 50 writable 50"), "{out}");
    assert!(out.contains("poll readable 50"), "{out}");
}

/// A native peer that counts the bytes it receives until the end of the
/// stream.
fn sink() -> (u16, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counted = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0; 1 << 20];
        let mut total = 0;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    (port, counted)
}

#[test]
fn socket_sendfile_of_64_mib_goes_by_sendfile_2() {
    let _ = plugins_or_skip!();
    let (dir, len) = big_file();
    let (port, counted) = sink();
    let mapping = format!("{}::/data", dir.display());
    let p = plugins().unwrap();
    let out = run(
        &p.scenarios,
        &[
            "--stats",
            "--allow-connect",
            &allow(port),
            "--dir",
            &mapping,
        ],
        &["sendfile", "/data/big.bin", "127.0.0.1", &port.to_string()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sent 67108864 position 67108864"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "sendfile carried 67108864 bytes by sendfile(2) and 0 bytes by the read+send fallback"
        ),
        "{stderr}"
    );
    assert_eq!(counted.join().unwrap(), len);
    // os.sendfile-style: one sendfile(2) of at most `count` bytes.
    let (port, counted) = sink();
    let out = scenario(
        &["--allow-connect", &allow(port), "--dir", &mapping],
        &[
            "sendfile-once",
            "/data/big.bin",
            "127.0.0.1",
            &port.to_string(),
        ],
    );
    assert!(out.contains("sent once 1000"), "{out}");
    assert_eq!(counted.join().unwrap(), 1000);
}

/// A native peer that sends 1 MiB of the pattern `i * 7 % 251` to the one
/// connection it accepts, then waits for the plugin to close it.
fn one_mib_source() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let data: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect();
        conn.write_all(&data).unwrap();
        let _ = conn.read_to_end(&mut Vec::new());
    });
    port
}

#[test]
fn recv_of_1_mib_takes_more_than_4_kib_in_one_call_without_a_trap() {
    let _ = plugins_or_skip!();
    let port = one_mib_source();
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["recv-big", "127.0.0.1", &port.to_string()],
    );
    assert!(out.contains("recv-big bytes 1048576 "), "{out}");
    assert!(out.contains("recv-big equal True"), "{out}");
    let largest: usize = out
        .split("largest ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the largest receive");
    assert!(largest > 4096, "no receive took more than 4 KiB: {out}");
}

/// The 64 MiB file of the sendfile tests, in a directory of its own; made
/// once (under another name, then renamed: tests run at once).
fn big_file() -> (PathBuf, u64) {
    let dir = scratch().join("sendfile-site");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.bin");
    let len: u64 = 64 << 20;
    if std::fs::metadata(&file).map(|m| m.len()).ok() != Some(len) {
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let partial = dir.join("big.partial");
        let mut f = std::fs::File::create(&partial).unwrap();
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
        std::fs::rename(&partial, &file).unwrap();
    }
    (dir, len)
}

/// A native sink that keeps what it reads (up to `expect` bytes, then
/// counts the rest).
fn keeping_sink(expect: usize) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let kept = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut all = Vec::with_capacity(expect);
        conn.read_to_end(&mut all).unwrap();
        all
    });
    (port, kept)
}

#[test]
fn os_sendfile_and_asyncio_sock_sendfile_go_by_sendfile_2() {
    let _ = plugins_or_skip!();
    let (dir, len) = big_file();
    let want = std::fs::read(dir.join("big.bin")).unwrap();
    let mapping = format!("{}::/data", dir.display());
    let p = plugins().unwrap();
    for (scenario_name, total) in [("os-sendfile", len + 10), ("asyncio-sendfile", len)] {
        let (port, kept) = keeping_sink(total as usize);
        let out = run(
            &p.scenarios,
            &[
                "--stats",
                "--allow-connect",
                &allow(port),
                "--dir",
                &mapping,
            ],
            &[
                scenario_name,
                "/data/big.bin",
                "127.0.0.1",
                &port.to_string(),
            ],
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!(
                "sendfile carried {total} bytes by sendfile(2) and 0 bytes by the read+send fallback"
            )),
            "{scenario_name}: {stderr}"
        );
        let got = kept.join().unwrap();
        assert_eq!(got.len() as u64, total, "{scenario_name}");
        assert!(
            got[..len as usize] == want[..],
            "{scenario_name}: bytes differ"
        );
        if scenario_name == "os-sendfile" {
            assert!(
                got[len as usize..] == want[len as usize - 10..],
                "the tail differs"
            );
            // Each call sends what the socket takes, at most 1 MiB.
            assert!(
                stdout.contains(&format!("os.sendfile sent {len} in ")),
                "{stdout}"
            );
            assert!(
                stdout.contains(&format!("calls, then 10 position {len}")),
                "{stdout}"
            );
            // stdin is no file the plugin opened by its path
            assert!(
                stdout.contains("os.sendfile of stdin OSError EINVAL"),
                "{stdout}"
            );
        } else {
            assert!(
                stdout.contains(&format!("asyncio sock_sendfile sent {len} position {len}")),
                "{stdout}"
            );
        }
    }
}

#[test]
fn a_wait_on_nothing_without_a_timeout_blocks_until_the_host_ends_it() {
    let _ = plugins_or_skip!();
    let p = plugins().unwrap();
    for kind in ["epoll-none", "epoll-minus-1", "poll", "select"] {
        let started = Instant::now();
        let out = run(&p.scenarios, &["--timeout", "1.5"], &["wait-forever", kind]);
        let elapsed = started.elapsed();
        let (stdout, stderr) = text(&out);
        assert!(
            stdout.contains(&format!("waiting {kind}")),
            "{stdout}\n{stderr}"
        );
        assert!(!stdout.contains("returned"), "{kind}: {stdout}\n{stderr}");
        // 124: ended by --timeout, as timeout(1) says; not an exception
        assert_eq!(out.status.code(), Some(124), "{kind}: {stdout}\n{stderr}");
        assert!(
            elapsed >= Duration::from_millis(1500),
            "{kind}: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(20), "{kind}: {elapsed:?}");
    }
}

#[test]
fn dup_fromfd_and_fileno_of_a_foreign_descriptor_are_cpythons_errors() {
    let _ = plugins_or_skip!();
    let out = scenario(&[], &["foreign-fd"]);
    for line in [
        "socket(fileno=stdout) OSError ENOTSOCK | Socket operation on non-socket",
        "socket(fileno=999) OSError EBADF | Bad file descriptor",
        "fromfd(stdout) OSError ENOTSOCK | Socket operation on non-socket",
        "dup(999) OSError EBADF",
        "sock.dup() OSError ENOTSUP | sockshim sockets cannot be duplicated",
        "fromfd(sock) OSError ENOTSUP | sockshim sockets cannot be duplicated",
        "adopted own True",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn epoll_with_epollet_reports_a_socket_once_per_change() {
    let _ = plugins_or_skip!();
    let out = scenario(
        &[
            "--allow-bind",
            "127.0.0.1:*",
            "--allow-connect",
            "127.0.0.1:*",
        ],
        &["epoll-edge"],
    );
    assert!(out.contains("level 1 1"), "{out}");
    assert!(out.contains("edge 1 0"), "{out}");
}

#[test]
fn a_denied_address_is_permission_error_and_the_plugin_goes_on() {
    let _ = plugins_or_skip!();
    let port = echo_server();
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["denied", "10.1.2.3", "80", &port.to_string()],
    );
    assert!(out.contains("PermissionError True"), "{out}");
    assert!(out.contains("10.1.2.3:80"), "{out}");
    // the same plugin then talks to an allowed peer
    assert!(out.contains("line hello"), "{out}");
}

#[test]
fn cpythons_own_socket_on_wasi_sockets_is_held_by_the_same_policy() {
    let _ = plugins_or_skip!();
    let allowed = echo_server();
    let out = scenario(
        &["--allow-connect", &allow(allowed)],
        &["builtin", "127.0.0.1", &allowed.to_string()],
    );
    assert!(out.contains("builtin connected"), "{out}");
    assert!(out.contains("builtin got b'hello\\n'"), "{out}");
    // A listener the policy does not name never sees the connection.
    let denied = TcpListener::bind("127.0.0.1:0").unwrap();
    denied.set_nonblocking(true).unwrap();
    let port = denied.local_addr().unwrap().port();
    let out = scenario(
        &["--allow-connect", &allow(allowed)],
        &["builtin", "127.0.0.1", &port.to_string()],
    );
    assert!(out.contains("builtin refused"), "{out}");
    assert!(denied.accept().is_err(), "the denied listener was reached");
}

#[test]
fn getaddrinfo_resolves_on_the_host_under_the_policy() {
    let _ = plugins_or_skip!();
    let out = scenario(
        &["--allow-connect", "localhost:80"],
        &["resolve", "localhost"],
    );
    assert!(out.contains("127.0.0.1"), "{out}");
    let p = plugins().unwrap();
    // A name the policy does not mention resolves to nothing allowed.
    let out = run(&p.scenarios, &[], &["resolve", "localhost"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("PermissionError"), "{stderr}");
}

#[test]
fn an_uncaught_exception_prints_its_traceback_and_exits_non_zero() {
    let p = plugins_or_skip!();
    let out = run(&p.scenarios, &[], &["fail"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Traceback (most recent call last)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("RuntimeError: the plugin failed on purpose"),
        "{stderr}"
    );
}

#[test]
fn datagrams_by_sendto_and_recvfrom() {
    let _ = plugins_or_skip!();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0; 100];
        if let Ok((n, from)) = peer.recv_from(&mut buf) {
            let _ = peer.send_to(&buf[..n], from);
        }
    });
    let out = scenario(
        &["--allow-connect", &allow(port)],
        &["udp", "127.0.0.1", &port.to_string()],
    );
    assert!(out.contains("sent 4\nudp got b'ping' True\n"), "{out}");
}

#[test]
fn sys_argv_and_sys_exit_are_the_commands() {
    let p = plugins_or_skip!();
    let out = run(&p.scenarios, &[], &["exit", "7", "two words"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert_eq!(stdout, "argv ['scenarios.py', 'exit', '7', 'two words']\n");
    let out = run(&p.scenarios, &[], &["exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
}

#[test]
fn example_http_get_writes_the_body() {
    let p = plugins_or_skip!();
    let port = http_server("the body");
    let url = format!("http://127.0.0.1:{port}/");
    let out = run(&p.http_get, &["--allow-connect", &allow(port)], &[&url]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "the body");
}

/// Kills the child when dropped, so a failed test leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server plugin on an ephemeral port and returns it with its
/// port, read from its `listening on HOST:PORT`.
fn start_server(plugin: &Path, extra: &[&str]) -> (KillOnDrop, u16) {
    let mut child = sockshim()
        .arg("run")
        .args(["--allow-bind", "127.0.0.1:*"])
        .args(extra)
        .arg(plugin)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start sockshim");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, port)
}

fn echo_round_trip(port: u16, text: &str) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(text.as_bytes()).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut back = String::new();
    conn.read_to_string(&mut back).unwrap();
    assert_eq!(back, text);
}

#[test]
fn example_echo_server_on_socketserver() {
    let p = plugins_or_skip!();
    let (_server, port) = start_server(&p.echo_server, &[]);
    for i in 0..3 {
        echo_round_trip(port, &format!("line {i}\nand more\n"));
    }
}

#[test]
fn example_asyncio_echo_serves_connections_at_once() {
    let p = plugins_or_skip!();
    let (_server, port) = start_server(&p.asyncio_echo, &[]);
    // Ten clients connected together, answered in reverse order.
    let mut conns: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for (i, c) in conns.iter_mut().enumerate().rev() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(format!("client {i}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(c.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, format!("client {i}\n"));
    }
}

#[test]
fn example_static_server_on_http_server_sends_bodies_by_sendfile() {
    let p = plugins_or_skip!();
    let dir = scratch().join("static-site");
    std::fs::create_dir_all(&dir).unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("page.bin"), &body).unwrap();
    let mapping = format!("{}::/", dir.display());
    let (_server, port) = start_server(&p.static_server, &["--dir", &mapping]);
    let started = Instant::now();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /page.bin HTTP/1.0\r\n\r\n").unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&response[..split]);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains("Content-Length: 300000"), "{head}");
    assert!(response[split + 4..] == body[..], "the body differs");
    assert!(started.elapsed() < Duration::from_secs(10));
}
