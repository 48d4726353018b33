//! Issue 26: an embedder can stop a plugin blocked in any wait, in both
//! wait modes, with one API (`SockshimCtx::stop_waits`): the plugin ends
//! with "the host stopped the plugin" and its descriptors are closed. Also
//! a connect with a timeout to a black hole (a full accept queue) times out
//! no earlier than its deadline, in both modes.
//!
//! The tests count this process's descriptors, so they take turns.

use sockshim_host::SockshimCtx;
use sockshim_tests::*;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One test at a time: each counts the process's descriptors.
static TURN: Mutex<()> = Mutex::const_new(());

const MODES: [Mode; 2] = [Mode::Reactor, Mode::Thread];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Reactor,
    Thread,
}

impl Mode {
    fn ctx(self) -> SockshimCtx {
        let ctx = SockshimCtx::new(loopback());
        match self {
            Mode::Reactor => ctx,
            Mode::Thread => ctx.waiting_on_thread().expect("an eventfd"),
        }
    }
}

/// The waits a plugin can block in.
#[derive(Clone, Copy, Debug)]
enum Wait {
    Recv,
    RecvInto,
    Accept,
    Connect,
    Sendall,
    Sendfile,
    /// sendfile(2) on the blocking pool, as from NFS or FUSE.
    SendfileFromRemote,
    SendfileFromFifo,
    /// From a terminal (a character device) nobody types on.
    SendfileFromTerminal,
    Poll,
    Select,
    Selector,
    Pollable,
}

const WAITS: [Wait; 13] = [
    Wait::Recv,
    Wait::RecvInto,
    Wait::Accept,
    Wait::Connect,
    Wait::Sendall,
    Wait::Sendfile,
    Wait::SendfileFromRemote,
    Wait::SendfileFromFifo,
    Wait::SendfileFromTerminal,
    Wait::Poll,
    Wait::Select,
    Wait::Selector,
    Wait::Pollable,
];

const GUEST_DIR: &str = "/data";

/// What a case holds open on the native side while the plugin waits.
#[derive(Default)]
struct Peer {
    black_hole: Option<BlackHole>,
    fifo_writer: Option<std::fs::File>,
    terminal: Option<std::fs::File>,
}

/// Makes a FIFO named `name` in `dir` and opens it read-write, so that
/// the plugin's open for reading finds a writer that never writes.
fn silent_fifo(dir: &Path, name: &str) -> std::fs::File {
    let fifo = dir.join(name);
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap()
}

/// Starts the plugin blocked in `wait` under `mode`, returns once it is in
/// the wait, with what the native side holds.
async fn start_waiting(wait: Wait, mode: Mode, dir: &TempDir) -> (Running, Peer, Vec<TcpStream>) {
    let mut peer = Peer::default();
    let mut accepted = Vec::new();
    let (listener, addr) = native_listener();
    let args: Vec<String> = match wait {
        Wait::Accept => vec![],
        Wait::Connect => {
            let hole = BlackHole::new();
            let addr = hole.addr().to_string();
            peer.black_hole = Some(hole);
            vec!["connect".into(), addr]
        }
        Wait::Recv => vec!["recv-all".into(), addr],
        Wait::RecvInto => vec!["recv-into-all".into(), addr, "65536".into()],
        Wait::Sendall => vec!["sendall".into(), addr, (64 << 20).to_string()],
        Wait::Sendfile | Wait::SendfileFromRemote => {
            vec!["sendfile".into(), addr, format!("{GUEST_DIR}/big.bin")]
        }
        Wait::SendfileFromFifo => {
            peer.fifo_writer = Some(silent_fifo(dir.path(), "fifo"));
            vec!["sendfile".into(), addr, format!("{GUEST_DIR}/fifo")]
        }
        Wait::SendfileFromTerminal => {
            let (master, slave) = pseudo_terminal();
            peer.terminal = Some(master);
            let name = slave.rsplit('/').next().unwrap().to_string();
            vec!["sendfile".into(), addr, format!("/pts/{name}")]
        }
        Wait::Poll => vec!["wait-forever".into(), "poll".into(), addr],
        Wait::Select => vec!["wait-forever".into(), "select".into(), addr],
        Wait::Selector => vec!["wait-forever".into(), "selector".into(), addr],
        Wait::Pollable => vec!["wait-forever".into(), "pollable".into(), addr],
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dirs = [(dir.path(), GUEST_DIR), (Path::new("/dev/pts"), "/pts")];
    let ctx = match wait {
        Wait::SendfileFromRemote => mode.ctx().with_every_file_remote(),
        _ => mode.ctx(),
    };
    let plugin = match wait {
        Wait::Accept => spawn_with(ECHO_SERVER, &["127.0.0.1:0"], ctx),
        _ => spawn_in(SOCKSHIM_TEST_GUEST, &args, ctx, &dirs),
    };
    match wait {
        Wait::Accept => {
            plugin.listening_on().await;
        }
        Wait::Connect => {}
        _ => {
            let conn = tokio::task::spawn_blocking(move || {
                listener.set_nonblocking(false).unwrap();
                listener.accept()
            });
            let (conn, _) = tokio::time::timeout(Duration::from_secs(30), conn)
                .await
                .expect("the plugin never connected")
                .unwrap()
                .unwrap();
            accepted.push(conn);
        }
    }
    if matches!(
        wait,
        Wait::Poll | Wait::Select | Wait::Selector | Wait::Pollable
    ) {
        plugin.line_starting("waiting=").await;
    }
    // Into the wait (a sendall fills the socket's buffers first).
    tokio::time::sleep(Duration::from_millis(400)).await;
    (plugin, peer, accepted)
}

/// Issue 26: `StopWaits` ended only recv, recv_into and accept on the
/// plugin's thread; a plugin waiting on the reactor could be ended only by
/// dropping its future, and one on its thread stayed in sendfile's wait on
/// a FIFO. Now every wait, in both modes, ends at the stop: the plugin
/// ends with the host's error soon after, and the descriptors it held
/// (sockets, readiness sets, files) are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_waits_ends_every_wait_in_both_modes() {
    let _turn = TURN.lock().await;
    let dir = TempDir::new("stops");
    dir.write("big.bin", &pattern(32 << 20));
    // Instantiated once before counting: a component keeps the image of
    // its memory (a memfd) from its first instance on.
    spawn_with(SOCKSHIM_TEST_GUEST, &["exit", "0"], Mode::Reactor.ctx())
        .finish()
        .await
        .success();
    let server = spawn_with(ECHO_SERVER, &["127.0.0.1:0"], Mode::Reactor.ctx());
    server.listening_on().await;
    server.stop_waits().stop();
    let _ = server.end().await;
    let mut failures = Vec::new();
    for mode in MODES {
        for wait in WAITS {
            let before = open_descriptors();
            let (plugin, peer, accepted) = start_waiting(wait, mode, &dir).await;
            let stop = Instant::now();
            plugin.stop_waits().stop();
            let (result, stdout, stderr) = plugin.end().await;
            let took = stop.elapsed();
            drop((peer, accepted));
            let _ = std::fs::remove_file(dir.path().join("fifo"));
            let case = format!("{wait:?} on the {mode:?}");
            match &result {
                Err(e) if format!("{e:#}").contains("the host stopped the plugin") => {}
                other => failures.push(format!("{case}: ended with {other:?}\n{stdout}{stderr}")),
            }
            if took > Duration::from_secs(5) {
                failures.push(format!("{case}: took {took:?} after the stop"));
            }
            for done in ["received=", "sent=", "woken=", "connect="] {
                if stdout.contains(done) {
                    failures.push(format!("{case}: the wait finished: {stdout}"));
                }
            }
            // The descriptors the plugin held are closed with it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while open_descriptors() != before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let after = open_descriptors();
            if after != before {
                failures.push(format!("{case}: descriptors {before} -> {after}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 26: a connect with a timeout to a destination that never
/// answers (a native listener whose accept queue is full drops the SYNs)
/// fails with a timeout no earlier than its deadline, and not long after,
/// in both wait modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connect_times_out_at_its_deadline_in_both_modes() {
    let _turn = TURN.lock().await;
    let hole = BlackHole::new();
    let addr = hole.addr().to_string();
    for mode in MODES {
        let args = ["connect-timeout", &addr, "700"];
        let out = spawn_with(SOCKSHIM_TEST_GUEST, &args, mode.ctx())
            .finish()
            .await
            .success();
        assert_eq!(out.get("connect"), "TimedOut: timed out", "{mode:?}: {out}");
        let ms = out.num("elapsed_ms");
        assert!((700..5000).contains(&ms), "{mode:?}: gave up after {ms} ms");
    }
}
