//! The `sockshim` command as a user runs it: a real process, real plugins,
//! native peers.

mod common;

use common::sockshim;
use sockshim_test_artifacts::{ECHO_SERVER, HTTP_GET, SOCKSHIM_TEST_GUEST};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

fn run(args: &[&str]) -> Output {
    sockshim().args(args).output().expect("cannot run sockshim")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Kills the child when dropped, so a failed test leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exits_with_the_plugins_exit_code() {
    let out = run(&["run", SOCKSHIM_TEST_GUEST, "exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Rust's std on wasm32-wasip2 reports `exit(n)` for n != 0 as WASI 0.2's
    // `exit(err)`, which is exit code 1; `exit-with-code` (WASI 0.2.12)
    // would carry n itself.
    let out = run(&["run", SOCKSHIM_TEST_GUEST, "exit", "7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A plugin's own error output reaches stderr.
    let out = run(&["run", SOCKSHIM_TEST_GUEST, "no-such-scenario"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown scenario"),
        "{}",
        stderr(&out)
    );
}

/// A plugin run again is loaded compiled from the cache directory, not
/// compiled again; a directory others can write to is refused, with a
/// warning, and the plugin still runs.
#[test]
fn a_plugin_runs_again_from_its_compiled_copy() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-compile-cache");
    let _ = std::fs::remove_dir_all(&dir);
    let cache_dir = dir.to_str().expect("a UTF-8 path");
    let entries = || -> Vec<std::fs::Metadata> {
        std::fs::read_dir(&dir)
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).collect())
            .unwrap_or_default()
    };
    let run_in = |extra: &[&str]| {
        let out = run(&[&["run"], extra, &[SOCKSHIM_TEST_GUEST, "exit", "0"]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    run_in(&["--cache-dir", cache_dir]);
    let first = entries();
    assert_eq!(first.len(), 1);
    let out = run_in(&["--cache-dir", cache_dir]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let second = entries();
    assert_eq!(second.len(), 1);
    {
        use std::os::unix::fs::MetadataExt;
        // Stored again would be a new file renamed into place.
        assert_eq!(second[0].ino(), first[0].ino());
    }
    run_in(&["--no-cache"]);
    assert_eq!(entries().len(), 1);

    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        std::fs::remove_file(entry.path()).unwrap();
    }
    let out = run_in(&["--cache-dir", cache_dir]);
    assert!(
        stderr(&out).contains("not caching compiled plugins")
            && stderr(&out).contains("writable by others"),
        "{}",
        stderr(&out)
    );
    assert!(entries().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_flag_is_one_clear_line() {
    for (args, expect) in [
        (
            &["run", "--allow-connect", "nonsense", SOCKSHIM_TEST_GUEST][..],
            "invalid address rule `nonsense`",
        ),
        (
            &["run", "--allow-bind", "10.0.0.0/40:*", SOCKSHIM_TEST_GUEST][..],
            "prefix length",
        ),
        (&["run", "--bogus", SOCKSHIM_TEST_GUEST][..], "--bogus"),
        (
            &["run", "--env", "NOEQUALS", SOCKSHIM_TEST_GUEST][..],
            "NAME=VALUE",
        ),
        (&["run"][..], "PLUGIN.wasm"),
    ] {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{args:?}: more than one line:\n{err}"
        );
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn an_unreadable_or_invalid_plugin_is_one_clear_line() {
    let out = run(&["run", "/nonexistent/plugin.wasm"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        err.trim(),
        "sockshim: cannot read /nonexistent/plugin.wasm: No such file or directory (os error 2)"
    );

    let dir = std::env::temp_dir().join(format!("sockshim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("bogus.wasm");
    std::fs::write(&bogus, "this is not wasm").unwrap();
    let out = run(&["run", bogus.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a WebAssembly file"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
}

#[test]
fn passes_arguments_environment_and_directories() {
    let out = run(&[
        "run",
        "--env",
        "GREETING=hello there",
        SOCKSHIM_TEST_GUEST,
        "env",
        "GREETING",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "value=hello there\n");

    let dir = std::env::temp_dir().join(format!("sockshim-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.txt"), "from the host").unwrap();
    let mapping = format!("{}::/data", dir.display());
    let out = run(&[
        "run",
        "--dir",
        &mapping,
        SOCKSHIM_TEST_GUEST,
        "read-file",
        "/data/note.txt",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "text=from the host\n",
        "{}",
        stderr(&out)
    );
}

#[test]
fn echo_server_echoes_10_mib_byte_for_byte() {
    let mut child = sockshim()
        .args([
            "run",
            "--allow-bind",
            "127.0.0.1:*",
            ECHO_SERVER,
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();

    let data: Vec<u8> = (0..10u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = conn.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut echoed = Vec::new();
        reader.read_to_end(&mut echoed).unwrap();
        echoed
    });
    conn.write_all(&data).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let echoed = reading.join().unwrap();
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "the echo differs");
}

/// A native HTTP/1.1 server answering one request with `body`.
fn http_server(body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut request = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            request.push_str(&line);
        }
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request
    });
    (addr, handle)
}

#[test]
fn http_get_fetches_a_page_when_allowed() {
    let (addr, server) = http_server("hello from a native server\n");
    let url = format!("http://{addr}/index.txt");
    let out = run(&["run", "--allow-connect", &addr, HTTP_GET, &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from a native server\n"
    );
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /index.txt HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains(&format!("Host: {addr}")), "{request}");
}

#[test]
fn http_get_is_denied_clearly_when_not_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let url = format!("http://{addr}/");
    let out = run(&["run", HTTP_GET, &url]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(err.contains(&addr), "{err}");
    // Nothing reached the server.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
}
