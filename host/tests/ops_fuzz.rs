//! The socket operations' fuzz corpus (`fuzz/corpus/operations`) replayed
//! on stable through `sockshim_host::ops_fuzz`, so CI runs every input the
//! fuzzer kept. A test binary of its own: the driver checks the process's
//! descriptor count, which tests running beside it would disturb; the two
//! tests here take turns.

use sockshim_host::ops_fuzz::{Summary, drive_counting};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/operations")
}

fn seed(name: &str) -> Summary {
    let path = corpus().join(format!("seed-{name}"));
    let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    drive_counting(&input)
}

/// Runs seed `name` until `done` holds of what it did, at most ten times:
/// its waits are capped at 2 ms, which a loaded machine's scheduler can
/// outlast.
fn seed_until(name: &str, done: impl Fn(&Summary) -> bool) -> Summary {
    let mut last = seed(name);
    for _ in 1..10 {
        if done(&last) {
            break;
        }
        last = seed(name);
    }
    last
}

#[test]
fn replays_the_fuzz_corpus() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut inputs: Vec<_> = std::fs::read_dir(corpus())
        .expect("the operations corpus")
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    inputs.sort();
    assert!(inputs.len() > 20, "only {} inputs", inputs.len());
    let started = Instant::now();
    let mut total = Summary::default();
    for path in &inputs {
        let input = std::fs::read(path).expect("a corpus input");
        let summary = drive_counting(&input);
        total.ops += summary.ops;
        total.sent += summary.sent;
        total.received += summary.received;
        total.traps += summary.traps;
    }
    eprintln!(
        "{} inputs, {} operations ({} trapped), {} bytes sent, {} received, in {:?}",
        inputs.len(),
        total.ops,
        total.traps,
        total.sent,
        total.received,
        started.elapsed()
    );
}

/// The driver really reaches the peer: bytes go out and come back over TCP
/// and UDP, on the reactor and on the plugin's thread, and handles used
/// after they were dropped trap.
#[test]
fn the_seeds_move_bytes_through_the_native_peer() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for waits in ["capped", "thread"] {
        let echo = seed_until(&format!("echo-{waits}"), |s| s.received > 0);
        assert_eq!(echo.sent, 100, "{waits}: {echo:?}");
        assert!(echo.received > 0, "{waits}: nothing came back: {echo:?}");
        let chatty = seed_until(&format!("chatty-{waits}"), |s| s.received > 0);
        assert!(chatty.received > 0, "{waits}: {chatty:?}");
        let sendfile = seed_until(&format!("sendfile-{waits}"), |s| s.sent >= 64 << 10);
        assert!(sendfile.sent >= 64 << 10, "{waits}: {sendfile:?}");
        let udp = seed_until(&format!("udp-{waits}"), |s| s.sent == 50 && s.received > 0);
        assert_eq!(udp.sent, 50, "{waits}: {udp:?}");
        assert!(udp.received > 0, "{waits}: no datagram came back: {udp:?}");
    }
    let accept = seed_until("accept", |s| s.received > 0);
    assert_eq!(accept.sent, 150, "{accept:?}");
    assert!(accept.received > 0, "{accept:?}");
    let deny = seed("deny");
    assert_eq!((deny.sent, deny.received), (0, 0), "{deny:?}");
    let selector = seed("selector");
    assert!(
        selector.traps > 0,
        "no call on a dropped handle trapped: {selector:?}"
    );
}
