//! Issue 26's hardening of the `sockshim` command, run as a process against
//! native peers: what only a whole process shows (that it exits, and when).

mod common;

use sockshim_test_artifacts::SOCKSHIM_TEST_GUEST;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `sockshim run ARGS`, output captured.
fn sockshim(args: &[&str]) -> Child {
    common::sockshim()
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sockshim")
}

/// Waits up to `bound` for `child`; kills it and returns `None` past that.
fn wait_within(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A native peer that accepts connections and never reads them.
fn silent_peer() -> (TcpListener, String, std::thread::JoinHandle<Vec<TcpStream>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepting = listener.try_clone().unwrap();
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        if let Ok((s, _)) = accepting.accept() {
            held.push(s);
        }
        held
    });
    (listener, addr, held)
}

/// Issue 26, defect 1: a plugin that sets `SO_LINGER` to `u32::MAX`
/// (forever, to the kernel) on a connection whose peer does not read, and
/// then closes it, exits it, or traps with it open, made `sockshim run`
/// hang: the explicit close parked a blocking-pool thread the runtime
/// waited for at exit, and the others ran the lingering close(2) inline.
/// Now the process ends within the bounded linger.
#[test]
fn a_lingering_socket_does_not_hold_up_the_exit() {
    for how in ["close", "exit", "trap"] {
        let (_listener, addr, _held) = silent_peer();
        let mut child = sockshim(&[
            "--allow-connect",
            &addr,
            SOCKSHIM_TEST_GUEST,
            "linger",
            &addr,
            &u32::MAX.to_string(),
            how,
        ]);
        // The bounded linger is 10 s; 60 s is generous.
        let status = wait_within(&mut child, Duration::from_secs(60));
        let text = output(child);
        let status = status.unwrap_or_else(|| panic!("{how}: sockshim did not exit:\n{text}"));
        assert!(text.contains("filled="), "{how}: {text}");
        match how {
            "trap" => assert!(!status.success(), "{how}: {text}"),
            _ => assert!(status.success(), "{how}: {text}"),
        }
    }
}

/// Issue 26, defect 3: a plugin could grow its memory without bound. With
/// `--max-memory` it cannot, and reaching the limit ends it with an error;
/// under the limit it runs as before.
#[test]
fn max_memory_bounds_the_plugin() {
    let mut child = sockshim(&[
        "--max-memory",
        "64M",
        SOCKSHIM_TEST_GUEST,
        "allocate",
        "256",
    ]);
    let status = wait_within(&mut child, Duration::from_secs(60)).expect("sockshim hung");
    let text = output(child);
    assert!(!status.success(), "{text}");
    assert!(!text.contains("allocated="), "{text}");
    assert!(text.contains("sockshim:"), "a clean error: {text}");
    let mut child = sockshim(&["--max-memory", "64M", SOCKSHIM_TEST_GUEST, "allocate", "16"]);
    let status = wait_within(&mut child, Duration::from_secs(60)).expect("sockshim hung");
    let text = output(child);
    assert!(status.success(), "{text}");
    assert!(text.contains("allocated=16"), "{text}");
}

/// The Proof, "Stopping": `--timeout` ends a plugin blocked in a
/// wait (here a recv from a peer that never sends) with exit code 124.
#[test]
fn timeout_ends_a_plugin_blocked_in_recv() {
    let (_listener, addr, _held) = silent_peer();
    let started = Instant::now();
    let mut child = sockshim(&[
        "--timeout",
        "1",
        "--allow-connect",
        &addr,
        SOCKSHIM_TEST_GUEST,
        "recv-all",
        &addr,
    ]);
    let status = wait_within(&mut child, Duration::from_secs(60));
    let text = output(child);
    let status = status.unwrap_or_else(|| panic!("--timeout did not end the plugin:\n{text}"));
    assert_eq!(status.code(), Some(124), "{text}");
    assert!(text.contains("--timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// A plugin argument spelled like a flag of `sockshim run` goes to the
/// plugin: `--timeout` after the plugin's path is the plugin's (the file
/// server has a `--timeout` of its own), not the wall-time limit.
#[test]
fn a_plugin_argument_spelled_like_a_flag_goes_to_the_plugin() {
    // The guest's `resolve NAME` prints `resolve=...` and exits 0; had
    // sockshim taken the flag for itself, it would have wanted a value, or
    // left the guest without a NAME: exit 2 either way.
    for args in [
        &[SOCKSHIM_TEST_GUEST, "resolve", "--timeout"][..],
        &[SOCKSHIM_TEST_GUEST, "resolve", "--stats"][..],
        &["--stats", SOCKSHIM_TEST_GUEST, "resolve", "--no-cache"][..],
    ] {
        let mut child = sockshim(args);
        let status = wait_within(&mut child, Duration::from_secs(60)).expect("sockshim hung");
        let text = output(child);
        assert!(status.success(), "{args:?}: {text}");
        assert!(text.contains("resolve="), "{args:?}: {text}");
    }
}
