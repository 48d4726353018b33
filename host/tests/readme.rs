//! The README's plugin example, built as a user would: its `Cargo.toml` and
//! `src/main.rs`, taken from README.md (the code blocks after the
//! `<!-- readme-plugin: FILE -->` markers), as a crate of its own outside
//! this workspace, then run with `sockshim run` under a name rule. So the
//! README cannot drift from the API.

mod common;

use common::sockshim;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root (this crate is `host/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The code block that follows `<!-- readme-plugin: FILE -->` in `readme`.
fn snippet(readme: &str, file: &str) -> String {
    let marker = format!("<!-- readme-plugin: {file} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no `{marker}`"))
        .1;
    let fence = after
        .find("```")
        .unwrap_or_else(|| panic!("no code block after `{marker}`"));
    let block = &after[fence + 3..];
    let body = &block[block.find('\n').unwrap() + 1..];
    let end = body
        .find("\n```")
        .unwrap_or_else(|| panic!("the code block after `{marker}` does not end"));
    body[..=end].to_string()
}

/// A native HTTP server for one request on 127.0.0.1; returns its port
/// and, when joined, the request's head.
fn http_server(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        write!(stream, "HTTP/1.0 200 OK\r\n\r\n{body}").unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (port, handle)
}

#[test]
fn the_readme_plugin_builds_outside_the_workspace_and_runs() {
    let root = workspace();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let manifest = snippet(&readme, "Cargo.toml");
    let main = snippet(&readme, "src/main.rs");

    // The README points at `../sockshim/guest`, a checkout beside the
    // plugin; here the checkout is this workspace.
    let dependency = r#"path = "../sockshim/guest""#;
    assert!(
        manifest.contains(dependency),
        "the README's Cargo.toml has no `{dependency}`:\n{manifest}"
    );
    let guest = root.join("guest");
    let manifest = manifest.replace(dependency, &format!("path = {:?}", guest.to_str().unwrap()));
    let name = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .expect("the README's Cargo.toml names its package")
        .trim_matches('"')
        .to_string();

    // Outside the workspace, so that cargo does not take it for a member.
    let dir = std::env::temp_dir().join(format!("sockshim-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    // `[workspace]`: a crate of its own even if the directory is inside
    // some other workspace.
    std::fs::write(dir.join("Cargo.toml"), format!("{manifest}\n[workspace]\n")).unwrap();
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
    // The selector echo server of "Many connections in one plugin", as a
    // second binary of the same crate.
    std::fs::create_dir_all(dir.join("src/bin")).unwrap();
    let selector_echo = snippet(&readme, "src/bin/selector-echo.rs");
    std::fs::write(dir.join("src/bin/selector-echo.rs"), selector_echo).unwrap();
    // The workspace's lock file pins the versions this test build already
    // has, so the build needs no network (`--offline`).
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    // The guests' target directory: the guest crate and its dependencies
    // are built there already for the tests, for the same target and
    // profile, so only the example itself compiles.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("wasm-artifacts");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
        ])
        // The workspace's release profile, which the guests were built
        // with: without it every dependency compiles again (a minute).
        .args(["--config", "profile.release.lto=\"fat\""])
        .args(["--config", "profile.release.codegen-units=1"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .expect("cannot run cargo");
    assert!(
        built.status.success(),
        "the README's plugin does not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(wasm.exists(), "no {}", wasm.display());

    // Run as the README says: a name rule, the name as the argument.
    let (port, server) = http_server("hello from the test's server");
    let rule = format!("localhost:{port}");
    let out = sockshim()
        .args(["run", "--allow-connect", &rule])
        .arg(&wasm)
        .arg(&rule)
        .output()
        .expect("cannot run sockshim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hello from the test's server"), "{stdout}");
    assert!(server.join().unwrap().starts_with("GET / HTTP/1.0\r\n"));

    let echo = target_dir.join("wasm32-wasip2/release/selector-echo.wasm");
    selector_echo_serves_two_clients_at_once(&echo);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's selector echo server: a client that connects and says
/// nothing does not keep a second one from being served, and is served
/// itself when it speaks.
fn selector_echo_serves_two_clients_at_once(wasm: &Path) {
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::process::Stdio;
    use std::time::Duration;

    let mut child = sockshim()
        .args(["run", "--allow-bind", "127.0.0.1:*"])
        .arg(wasm)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run sockshim");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the plugin said {first:?}"))
        .to_string();
    let connect = || {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    let echo = |mut s: &TcpStream, msg: &[u8]| {
        s.write_all(msg).unwrap();
        let mut got = vec![0; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    };
    let silent = connect();
    let talker = connect();
    echo(&talker, b"served while the other is silent");
    echo(&silent, b"and then the silent one");
    let _ = child.kill();
    let _ = child.wait();
}
