//! What a newcomer meets first with the `sockshim` command: arguments after
//! the plugin's path reach the plugin, name rules work for the plugins as
//! written, and each mistake gets one line that says what to do.

mod common;

use common::sockshim;
use sockshim_test_artifacts::{HTTP_GET, SOCKSHIM_TEST_GUEST};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;

/// `sockshim ARGS`, output captured.
fn run(args: &[&str]) -> Output {
    sockshim().args(args).output().expect("cannot run sockshim")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file of this test's own in the build's scratch directory.
fn scratch_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-messages-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

/// The one line `sockshim` printed on stderr, after asserting the exit
/// code and that there was one line.
fn one_line(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "more than one line:\n{err}");
    err.trim_end().to_string()
}

#[test]
fn everything_after_the_plugin_belongs_to_the_plugin() {
    let out = run(&[
        "run",
        SOCKSHIM_TEST_GUEST,
        "args",
        "--allow-bind",
        "127.0.0.1:*",
        "--stats",
        "--max-requests",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "argc=5\narg0=--allow-bind\narg1=127.0.0.1:*\narg2=--stats\narg3=--max-requests\narg4=3\n"
    );
    // `--stats` was the plugin's, not sockshim's.
    assert!(
        !stderr(&out).contains("sendfile carried"),
        "{}",
        stderr(&out)
    );

    // sockshim's own flags still come before the path.
    let out = run(&["run", "--stats", SOCKSHIM_TEST_GUEST, "args"]);
    assert_eq!(stdout(&out), "argc=0\n");
    assert!(
        stderr(&out).contains("sendfile carried"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_misspelt_flag_suggests_the_right_one() {
    let out = run(&["run", "--allow-conect", "127.0.0.1:80", SOCKSHIM_TEST_GUEST]);
    let err = one_line(&out, 2);
    assert!(err.contains("--allow-conect"), "{err}");
    assert!(err.contains("'--allow-connect'"), "no suggestion: {err}");
}

#[test]
fn a_url_as_a_policy_spec_says_so_and_what_to_write() {
    let out = run(&[
        "run",
        "--allow-connect",
        "http://localhost:8000/",
        SOCKSHIM_TEST_GUEST,
    ]);
    let err = one_line(&out, 2);
    assert!(err.contains("not a URL"), "{err}");
    assert!(err.contains("`localhost:8000`"), "{err}");
}

#[test]
fn a_core_module_says_to_build_for_wasm32_wasip2() {
    // The smallest core module: the preamble of version 1.
    let module = scratch_file("core.wasm", b"\0asm\x01\0\0\0");
    let out = run(&["run", module.to_str().unwrap()]);
    let err = one_line(&out, 1);
    assert!(err.contains("is a core WebAssembly module"), "{err}");
    assert!(err.contains("--target wasm32-wasip2"), "{err}");
}

#[test]
fn a_file_that_is_not_wasm_gets_a_whole_sentence() {
    let text = scratch_file("text.wasm", b"this is not wasm at all\n");
    let out = run(&["run", text.to_str().unwrap()]);
    let err = one_line(&out, 1);
    assert!(err.contains("is not a WebAssembly file"), "{err}");
    assert!(
        err.ends_with("built with `cargo build --target wasm32-wasip2`"),
        "{err}"
    );

    // A component's preamble followed by garbage: wasmtime's reason, whole.
    let broken = scratch_file("broken.wasm", b"\0asm\x0d\0\x01\0\xff\xff\xff");
    let out = run(&["run", broken.to_str().unwrap()]);
    let err = one_line(&out, 1);
    assert!(err.contains("is not a valid wasm component: "), "{err}");
    let reason = err.split("is not a valid wasm component: ").nth(1).unwrap();
    assert!(reason.len() > 10, "no reason given: {err}");
}

/// A native HTTP server for one request on 127.0.0.1.
fn http_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let body = "reached by name";
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    (port, handle)
}

#[test]
fn http_get_by_name_works_under_a_name_rule() {
    // The report of issue 25: a name rule alone, and a URL with the name.
    let (port, server) = http_server();
    let rule = format!("localhost:{port}");
    let url = format!("http://localhost:{port}/");
    let out = run(&["run", "--allow-connect", &rule, HTTP_GET, &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("reached by name"), "{}", stdout(&out));
    server.join().unwrap();
}

#[test]
fn a_name_that_does_not_resolve_says_so() {
    let out = run(&[
        "run",
        "--allow-connect",
        "*:*",
        HTTP_GET,
        "http://nosuch.invalid/",
    ]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the name `nosuch.invalid` did not resolve"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}
