//! Plugins whose sockets wait on their own thread
//! (`SockshimCtx::waiting_on_thread`, what `sockshim run` uses): guest to
//! guest in one host with a thread each, and `StopWaits` ending a plugin
//! blocked in a wait. (`guest_native.rs` runs the timeouts scenario both
//! ways; the CLI tests run every plugin this way.)

use sockshim_host::SockshimCtx;
use sockshim_tests::*;
use std::io::Write;
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
    let stop = ctx.stop_waits();
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

/// A plugin blocked in `recv` (a plain host function when linked for
/// thread waits, as `PluginHost` links it) is ended by `StopWaits` too, and
/// so is one blocked in `recv_into`, which waits while its result is
/// lowered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_waits_ends_a_plugin_blocked_in_recv() {
    for program in ["recv-all", "recv-into-all"] {
        // A peer that accepts and then sends nothing until the test ends.
        let (listener, addr) = native_listener();
        let ctx = on_thread();
        let stop = ctx.stop_waits();
        let args: &[&str] = match program {
            "recv-all" => &[program, &addr],
            _ => &[program, &addr, "65536"],
        };
        let plugin = spawn_with(SOCKSHIM_TEST_GUEST, args, ctx);
        let (_conn, _) = tokio::task::spawn_blocking(move || listener.accept())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stopped = Instant::now();
        stop.stop();
        let (result, stdout, stderr) = plugin.end().await;
        let elapsed = stopped.elapsed();
        // The receive failed with ECANCELED; the plugin either reported
        // that and exited 1, or was trapped at its next epoch check first.
        match result {
            Ok(code) => {
                assert_eq!(code, 1, "{program}: {stdout}{stderr}");
                assert!(
                    stderr.contains("ECANCELED") || stderr.contains("anceled"),
                    "{program}: {stderr}"
                );
            }
            Err(e) => assert!(
                format!("{e:#}").contains("the host stopped the plugin"),
                "{program}: {e:#}"
            ),
        }
        assert!(!stdout.contains("received="), "{program}: {stdout}");
        assert!(
            elapsed < Duration::from_secs(5),
            "{program}: took {elapsed:?}"
        );
    }
}

/// `recv_into` on a socket that waits on its thread makes one system call
/// per receive, not a peek and a receive: the host waits and receives
/// while the result is lowered, into the buffer the plugin lends. So even
/// the end of the stream lands there (on the reactor, where a peek finds
/// it, it is copied: `guest_native.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_into_waits_and_receives_into_the_lent_buffer() {
    const LEN: usize = 24 << 20;
    let (addr, server) = serve_one(|mut s| s.write_all(&pattern(LEN)).unwrap());
    let args = ["recv-into-all", &addr, "65536"];
    let out = spawn_with(SOCKSHIM_TEST_GUEST, &args, on_thread())
        .finish()
        .await
        .success();
    server.join().unwrap();
    assert_eq!(out.num("received"), LEN as u64, "{out}");
    assert_eq!(out.num("fnv"), fnv1a(&pattern(LEN)), "{out}");
    assert_eq!(out.num("in_place"), out.num("calls"), "{out}");
}

/// Plugins run here on a linker built by the test, not by `PluginHost`,
/// which picks the linker that fits each plugin.
mod own_linker {
    use super::*;
    use sockshim_host::runner::PluginState;
    use wasmtime::Store;
    use wasmtime::component::Linker;
    use wasmtime_wasi::WasiCtx;
    use wasmtime_wasi::p2::bindings::Command;
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

    type AddSockshim = fn(&mut Linker<PluginState>) -> wasmtime::Result<()>;

    /// Runs the test guest with `args` under `ctx` on a linker that
    /// `add_sockshim` completes, on a thread of its own: what `run`
    /// returned, and stdout.
    async fn run(
        add_sockshim: AddSockshim,
        ctx: SockshimCtx,
        args: &[&str],
    ) -> (wasmtime::Result<Result<(), ()>>, String) {
        let engine = host().engine().clone();
        let component = component(SOCKSHIM_TEST_GUEST);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        add_sockshim(&mut linker).unwrap();
        let stdout = MemoryOutputPipe::new(1 << 20);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).inherit_stderr();
        wasi.arg("sockshim-test-guest").args(args);
        let stop = ctx.stop_waits();
        let mut store = Store::new(&engine, PluginState::new(wasi.build(), ctx));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(sockshim_host::runner::yield_or_stop(stop));
        let runtime = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                let command = Command::instantiate_async(&mut store, &component, &linker).await?;
                command.wasi_cli_run().call_run(&mut store).await
            })
        });
        let result = tokio::time::timeout(Duration::from_secs(60), result)
            .await
            .expect("the plugin did not finish within 60 s")
            .expect("the plugin's thread panicked");
        (
            result,
            String::from_utf8_lossy(&stdout.contents()).into_owned(),
        )
    }

    /// `add_to_linker` serves a plugin whose sockets wait on its thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_async_linker_serves_a_plugin_that_waits_on_its_thread() {
        const LEN: usize = 1 << 20;
        let (addr, peer) = serve_one(drain);
        let args = ["sendall", &addr, &LEN.to_string()];
        let (result, stdout) = run(sockshim_host::add_to_linker, on_thread(), &args).await;
        assert!(matches!(result, Ok(Ok(()))), "{result:?}\n{stdout}");
        assert_eq!(peer.join().unwrap(), LEN);
        assert!(stdout.contains(&format!("sent={LEN}")), "{stdout}");
    }

    /// A plugin whose sockets wait on the reactor, on a linker for thread
    /// waits: its first `sendall` traps, and the trap says what to change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_linker_for_thread_waits_traps_a_plugin_on_the_reactor() {
        let (addr, peer) = serve_one(drain);
        let add: AddSockshim = sockshim_host::add_to_linker_waiting_on_thread;
        let ctx = SockshimCtx::new(loopback());
        let (result, stdout) = run(add, ctx, &["sendall", &addr, "1000"]).await;
        let err = result.expect_err("the sendall should have trapped");
        let text = format!("{err:?}");
        assert!(text.contains("`[method]socket.sendall`"), "{text}");
        assert!(text.contains("waiting_on_thread()"), "{text}");
        assert!(!stdout.contains("sent="), "{stdout}");
        // Nothing was sent before the trap.
        assert_eq!(peer.join().unwrap(), 0);
    }
}
