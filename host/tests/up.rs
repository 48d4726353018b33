//! `sockshim up`: the manifest of examples/sandboxes as a user runs it
//! (a client that passes, and one that fails), and through the
//! `Sandboxes` API a plugin that never gets ready.

mod common;

use common::sockshim;
use sockshim_host::sandboxes::{Ready, Sandbox, Sandboxes, UpError};
use sockshim_test_artifacts::{ECHO_SERVER, SOCKSHIM_TEST_GUEST};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The example manifest, pointed at the test build's plugins and at free
/// ports instead of 7000 and 7001, written into a directory of its own.
fn example_manifest(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sandboxes/sandboxes.toml"),
    )
    .unwrap();
    let built = Path::new(ECHO_SERVER).parent().unwrap();
    let tcp = free_port(|| std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr()));
    let udp = free_port(|| std::net::UdpSocket::bind("127.0.0.1:0").map(|s| s.local_addr()));
    let text = text
        .replace(
            "../../target/wasm32-wasip2/release",
            &built.display().to_string(),
        )
        .replace("7000", &tcp.to_string())
        .replace("7001", &udp.to_string());
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("up-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sandboxes.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn free_port(bind: impl Fn() -> std::io::Result<std::io::Result<std::net::SocketAddr>>) -> u16 {
    bind().unwrap().unwrap().port()
}

fn up(manifest: &Path) -> Output {
    sockshim()
        .arg("up")
        .arg(manifest)
        .output()
        .expect("cannot run sockshim")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_example_runs_both_echo_servers_and_their_clients_pass() {
    let manifest = example_manifest("pass", |text| text);
    let out = up(&manifest);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let all = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        stdout.contains("echo-server | listening on 127.0.0.1:"),
        "{all}"
    );
    assert!(
        stdout.contains("udp-echo    | listening on 127.0.0.1:"),
        "{all}"
    );
    assert!(stdout.contains("tcp-client  | tcp 127.0.0.1:"), "{all}");
    assert!(stdout.contains(": echoed 14 bytes"), "{all}");
    assert!(stdout.contains("udp-client  | udp 127.0.0.1:"), "{all}");
    assert!(stderr.contains("tcp-client exited with code 0"), "{all}");
    assert!(stderr.contains("udp-client exited with code 0"), "{all}");
}

#[test]
fn a_failing_client_fails_the_run() {
    // The UDP client without its connect rule: its datagram is denied.
    let manifest = example_manifest("fail", |text| {
        text.replace(
            "allow-connect = [\"127.0.0.1:",
            "# allow-connect = [\"127.0.0.1:",
        )
        .replacen(
            "# allow-connect = [\"127.0.0.1:*",
            "allow-connect = [\"127.0.0.1:*",
            1,
        )
    });
    let written = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        written.contains("\nallow-connect = [\"127.0.0.1:*\"]"),
        "{written}"
    );
    let out = up(&manifest);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let all = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(stdout.contains("udp-client  | echo-check: udp"), "{all}");
    assert!(stdout.contains("access denied"), "{all}");
    assert!(stderr.contains("udp-client exited with code 1"), "{all}");
}

/// Lines written by the run, for the test to read.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_never_gets_ready_fails_the_run_by_name() {
    let lines = Lines::default();
    let started = Instant::now();
    let result = Sandboxes::new()
        .ready_timeout(Duration::from_secs(2))
        .output(lines.clone())
        .plugin(
            Sandbox::new("quiet-server", ECHO_SERVER)
                .arg("127.0.0.1:0")
                .allow_bind("127.0.0.1:*".parse().unwrap())
                .ready(Ready::stdout("a line it never prints")),
        )
        .plugin(
            Sandbox::new("never-started", SOCKSHIM_TEST_GUEST)
                .args(["exit", "0"])
                .test(true),
        )
        .run()
        .await;
    let elapsed = started.elapsed();
    let err = result.expect_err("the run went on without its server");
    assert!(matches!(err, UpError::NeverReady { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("`quiet-server` never got ready"),
        "{message}"
    );
    assert!(message.contains("a line it never prints"), "{message}");
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    let output = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    // Names are padded to the longest, started or not.
    assert!(output.contains("quiet-server  | listening on"), "{output}");
    assert!(!output.contains("never-started"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_ends_before_it_is_ready_fails_the_run_at_once() {
    let result = Sandboxes::new()
        .output(Lines::default())
        .plugin(
            Sandbox::new("short-lived", SOCKSHIM_TEST_GUEST)
                .args(["exit", "0"])
                .ready(Ready::port(9)),
        )
        .run()
        .await;
    let err = result.expect_err("the run went on");
    assert!(matches!(err, UpError::EndedBeforeReady { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`short-lived` ended before it was ready (exit code 0)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_plugins_exit_codes_decide_and_the_rest_are_stopped() {
    let lines = Lines::default();
    let finished = Sandboxes::new()
        .output(lines.clone())
        .plugin(
            Sandbox::new("server", ECHO_SERVER)
                .arg("127.0.0.1:0")
                .allow_bind("127.0.0.1:*".parse().unwrap())
                .ready(Ready::stdout("listening on")),
        )
        .plugin(
            Sandbox::new("passes", SOCKSHIM_TEST_GUEST)
                .args(["exit", "0"])
                .test(true),
        )
        .plugin(
            Sandbox::new("fails", SOCKSHIM_TEST_GUEST)
                .args(["exit", "3"])
                .test(true),
        )
        .run()
        .await
        .unwrap();
    let codes: Vec<_> = finished
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.result.clone()))
        .collect();
    // Rust's std on wasm32-wasip2 reports every non-zero exit as 1.
    assert_eq!(codes, [("passes", Ok(0)), ("fails", Ok(1))]);
    assert_eq!(finished.code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sandbox_has_its_own_environment_and_directories() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("up-dirs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.txt"), "from the host").unwrap();
    let lines = Lines::default();
    let finished = Sandboxes::new()
        .output(lines.clone())
        .plugin(
            Sandbox::new("with-env", SOCKSHIM_TEST_GUEST)
                .args(["env", "GREETING"])
                .env("GREETING", "hello")
                .test(true),
        )
        .plugin(
            Sandbox::new("without", SOCKSHIM_TEST_GUEST)
                .args(["env", "GREETING"])
                .test(true),
        )
        .plugin(
            Sandbox::new("with-dir", SOCKSHIM_TEST_GUEST)
                .args(["read-file", "/data/note.txt"])
                .dir(&dir, "/data")
                .test(true),
        )
        .run()
        .await
        .unwrap();
    assert_eq!(finished.code(), 0, "{finished:?}");
    let output = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert!(output.contains("with-env | value=hello\n"), "{output}");
    assert!(output.contains("without  | value=\n"), "{output}");
    assert!(
        output.contains("with-dir | text=from the host\n"),
        "{output}"
    );
}
