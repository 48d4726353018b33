//! Plugins whose sockets wait on their own thread
//! (`SockshimCtx::waiting_on_thread`, what `sockshim run` uses): guest to
//! guest in one host with a thread each, and `StopWaits` ending a plugin
//! blocked in a wait. (`guest_native.rs` runs the timeouts scenario both
//! ways; the CLI tests run every plugin this way.)

use sockshim_host::SockshimCtx;
use sockshim_tests::*;
use std::time::{Duration, Instant};

fn on_thread() -> SockshimCtx {
    SockshimCtx::new(loopback())
        .waiting_on_thread()
        .expect("an eventfd for the stop signal")
}

/// Two plugins that wait on their threads, one serving the other, in one
/// host: each holds a thread of its own, so neither blocks the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_client_and_guest_server_each_on_a_thread() {
    let server = spawn_with(ECHO_SERVER, &["127.0.0.1:0"], on_thread());
    let addr = server.listening_on().await.to_string();
    const LEN: usize = 8 << 20;
    let args = ["echo-client", &addr, &LEN.to_string()];
    let out = spawn_with(SOCKSHIM_TEST_GUEST, &args, on_thread())
        .finish()
        .await
        .success();
    assert_eq!(out.num("sent"), LEN as u64);
    assert_eq!(out.num("echoed"), LEN as u64);
    assert_eq!(out.get("equal"), "true");
    // The server holds its thread in `accept` until stopped.
    server.stop();
}

/// A server blocked in `accept` without a timeout holds its thread until
/// `StopWaits::stop`: then the wait fails (ECANCELED, see the host's unit
/// tests) and the plugin, which would go on accepting, is trapped at its
/// next epoch check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_waits_ends_a_plugin_blocked_in_accept() {
    let ctx = on_thread();
    let stop = ctx.stop_waits().expect("a stop handle on the thread");
    let server = spawn_with(ECHO_SERVER, &["127.0.0.1:0"], ctx);
    server.listening_on().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    stop.stop();
    let (result, _stdout, stderr) = server.end().await;
    let elapsed = stopped.elapsed();
    // The accept came back (with ECANCELED) and the plugin, running again,
    // was trapped at once: its epoch deadline passed while it waited.
    let err = result.expect_err("the plugin should have been trapped");
    assert!(
        format!("{err:#}").contains("the host stopped the plugin"),
        "{err:#}\n{stderr}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}
