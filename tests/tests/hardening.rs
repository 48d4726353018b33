//! Issue 26's hardening, in process: what a hostile plugin cannot do to the
//! host that runs it (limits it reaches end it, not the host).

use sockshim_host::{PluginLimits, SockshimCtx};
use sockshim_tests::*;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Runs the test guest with `args` under `limits`: what `run_limited`
/// returned, and stdout and stderr.
async fn run_limited(args: &[&str], limits: PluginLimits) -> (wasmtime::Result<i32>, String) {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone()).stderr(stderr.clone());
    wasi.arg("sockshim-test-guest").args(args);
    let result = host()
        .run_limited(
            &component(SOCKSHIM_TEST_GUEST),
            wasi,
            SockshimCtx::new(loopback()),
            limits,
        )
        .await;
    let text = format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&stdout.contents()),
        String::from_utf8_lossy(&stderr.contents())
    );
    (result, text)
}

/// Issue 26, defect 3: no `ResourceLimiter` and no resource-table cap, so
/// a plugin could grow its memory, and fill the store's resource table,
/// without bound. Reaching either limit now ends the plugin with an error;
/// the host runs the next plugin as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_limits_end_the_plugin_not_the_host() {
    let small_memory = PluginLimits {
        max_memory: 64 << 20,
        ..PluginLimits::default()
    };
    let (result, text) = run_limited(&["allocate", "256"], small_memory).await;
    assert!(
        !matches!(result, Ok(0)),
        "grew past --max-memory: {result:?}\n{text}"
    );
    assert!(!text.contains("allocated="), "{text}");

    // 50 sockets in a table capped at 30 entries (the socket limit, 1024,
    // is not what stops it).
    let few_resources = PluginLimits {
        max_resources: 30,
        ..PluginLimits::default()
    };
    let (result, text) = run_limited(&["socket-limit", "50"], few_resources).await;
    assert!(
        result.is_err(),
        "held 50 sockets in 30 entries: {result:?}\n{text}"
    );

    // The host goes on.
    let (result, text) = run_limited(&["allocate", "16"], small_memory).await;
    assert_eq!(result.unwrap(), 0, "{text}");
    assert!(text.contains("allocated=16"), "{text}");
}

/// Issue 26, defect 2: wasi:sockets (Rust's std::net in the plugin) was
/// outside the per-plugin socket limit, so a plugin could take every
/// descriptor of the process through it. Its sockets count now, with
/// sockshim's, and the one past the limit fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_sockets_count_against_the_socket_limit() {
    let (_listener, addr) = native_listener();
    let ctx = SockshimCtx::new(loopback()).with_max_sockets(5);
    let out = spawn_with(SOCKSHIM_TEST_GUEST, &["std-connect-many", &addr, "20"], ctx)
        .finish()
        .await
        .success();
    assert_eq!(out.num("connected"), 5, "{out}");
    assert_ne!(out.get("stopped"), "none", "{out}");
}

/// Issue 26, defect 7: `sendfile`'s fallback took a character device for
/// a seekable file and read it at an offset on tokio's blocking pool: a
/// terminal failed with `ESPIPE`, and a device that blocks held a pool
/// thread past every timeout. It is read as a stream now, after waiting on
/// the reactor until it is readable, within the call's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendfile_from_a_terminal_waits_for_it_within_the_deadline() {
    use std::io::{Read, Write};
    let (mut master, slave) = pseudo_terminal();
    let (dir, name) = slave.rsplit_once('/').unwrap();
    master.write_all(b"hello\n").unwrap();
    let (addr, server) = serve_one(|mut s| {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let guest_path = format!("/pts/{name}");
    let out = run_guest_in(
        "sendfile-deadline",
        &[&addr, &guest_path, "1000"],
        SockshimCtx::new(loopback()),
        &[(std::path::Path::new(dir), "/pts")],
    )
    .await
    .success();
    let got = server.join().unwrap();
    assert!(out.get("outcome").starts_with("TimedOut"), "{out}");
    assert_eq!(out.num("bytes_sent"), 6, "{out}");
    assert!(out.num("elapsed_ms") >= 900, "{out}");
    assert_eq!(got, b"hello\n");
    drop(master);
}
