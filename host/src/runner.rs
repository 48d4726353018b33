//! Running a plugin: a wasm32-wasip2 command component with wasmtime-wasi
//! (stdio, arguments, environment, preopened directories, clocks, random)
//! plus sockshim, held to one policy. The `sockshim run` command and the
//! test harness are built on it; embedders with state of their own use
//! [`add_to_linker`] directly.

use crate::compiled::{self, CompileCache};
use crate::{
    PluginLimits, SockshimCtx, SockshimCtxView, SockshimView, StopWaits, add_to_linker,
    add_to_linker_waiting_on_thread, apply_policy_to_wasi, count_wasi_sockets,
};
use std::path::Path;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The store data of a plugin run by [`PluginHost`].
pub struct PluginState {
    wasi: WasiCtx,
    sockshim: SockshimCtx,
    table: ResourceTable,
    limits: wasmtime::StoreLimits,
}

impl PluginState {
    /// The store data of a plugin with `wasi` and `sockshim`, for a store
    /// that is not [`PluginHost`]'s: linked by hand, say.
    pub fn new(wasi: WasiCtx, sockshim: SockshimCtx) -> PluginState {
        PluginState::with_limits(wasi, sockshim, PluginLimits::default())
    }

    /// [`PluginState::new`] held to `limits`; install them in the store
    /// with [`PluginState::limit`].
    pub fn with_limits(wasi: WasiCtx, sockshim: SockshimCtx, limits: PluginLimits) -> PluginState {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        PluginState {
            wasi,
            sockshim,
            table,
            limits: limits.store_limits(),
        }
    }

    /// Holds `store` to the limits its state was made with: its memories,
    /// tables and instances (the resource table holds itself to its cap).
    pub fn limit(store: &mut Store<PluginState>) {
        store.limiter(|state| &mut state.limits);
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl SockshimView for PluginState {
    fn sockshim(&mut self) -> SockshimCtxView<'_> {
        SockshimCtxView {
            ctx: &mut self.sockshim,
            table: &mut self.table,
        }
    }
}

/// An engine and a linker with wasmtime-wasi and sockshim, shared by every
/// plugin it runs; many plugins may run at once, each in its own store.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    /// For plugins whose sockets wait on the reactor.
    linker: Linker<PluginState>,
    /// For plugins whose sockets wait on their thread.
    thread_linker: Linker<PluginState>,
}

impl PluginHost {
    /// A host with wasmtime's default configuration plus epoch interruption:
    /// every [`YIELD_INTERVAL`] a running plugin yields to the async
    /// executor, so a plugin that computes (or spins) without waiting cannot
    /// hold a runtime thread, and dropping its future stops it.
    ///
    /// Component-model async is off: the plugins are WASI 0.2 commands, and
    /// with concurrency support (on by default once any crate in the build
    /// enables wasmtime-wasi's `p3`) every host call would go through
    /// wasmtime's task bookkeeping.
    pub fn new() -> wasmtime::Result<PluginHost> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(false);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        count_wasi_sockets(&mut linker)?;
        let mut thread_linker = linker.clone();
        add_to_linker(&mut linker)?;
        add_to_linker_waiting_on_thread(&mut thread_linker)?;
        Ok(PluginHost {
            engine,
            linker,
            thread_linker,
        })
    }

    /// The engine plugins are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads and compiles a component.
    pub fn load(&self, path: &Path) -> wasmtime::Result<Component> {
        self.load_with(path, None)
    }

    /// Reads a component and compiles it, or takes it compiled from
    /// `cache` (see [`CompileCache`]).
    pub fn load_with(
        &self,
        path: &Path,
        cache: Option<&CompileCache>,
    ) -> wasmtime::Result<Component> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        check_component(path, &bytes)?;
        compiled::compile(&self.engine, &bytes, cache).map_err(|e| {
            wasmtime::format_err!(
                "{} is not a valid wasm component: {}",
                path.display(),
                joined_lines(&e)
            )
        })
    }

    /// Runs `component`'s `wasi:cli/run` with `wasi` (stdio, arguments, …)
    /// and `sockshim`; wasi:sockets are held to the sockshim policy too.
    /// Returns the plugin's exit code: 0 when `run` returned ok, 1 when it
    /// returned an error, N after `exit(N)`. A trap is an error.
    ///
    /// A plugin whose sockets wait on its thread
    /// ([`SockshimCtx::waiting_on_thread`]) needs a thread of its own to run
    /// on. Either way, a plugin ends with a trap ("the host stopped the
    /// plugin") once its [`StopWaits`] is stopped, even one blocked in a
    /// wait.
    pub async fn run(
        &self,
        component: &Component,
        wasi: WasiCtxBuilder,
        sockshim: SockshimCtx,
    ) -> wasmtime::Result<i32> {
        self.run_limited(component, wasi, sockshim, PluginLimits::default())
            .await
    }

    /// [`PluginHost::run`] with `limits` on what the plugin's store may
    /// hold instead of the defaults ([`PluginLimits`]): a plugin that
    /// reaches one ends with an error (a trap, or a failed instantiation),
    /// and the host goes on.
    pub async fn run_limited(
        &self,
        component: &Component,
        mut wasi: WasiCtxBuilder,
        sockshim: SockshimCtx,
        limits: PluginLimits,
    ) -> wasmtime::Result<i32> {
        apply_policy_to_wasi(&mut wasi, sockshim.policy());
        let linker = if sockshim.waits_on_thread() {
            &self.thread_linker
        } else {
            &self.linker
        };
        let state = PluginState::with_limits(wasi.build(), sockshim, limits);
        let mut store = Store::new(&self.engine, state);
        PluginState::limit(&mut store);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(yield_or_stop(store.data().sockshim.stop_waits()));
        let command = Command::instantiate_async(&mut store, component, linker)
            .await
            .map_err(|e| {
                wasmtime::format_err!("cannot instantiate the plugin: {}", first_line(&e))
            })?;
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(e.context("the plugin trapped")),
            },
        }
    }
}

/// How often a running plugin yields to the async executor.
pub const YIELD_INTERVAL: Duration = Duration::from_millis(10);

/// The epoch callback of [`PluginHost`]'s stores, for a store whose epoch
/// deadline is 1: at every epoch the plugin yields to the async executor,
/// and once `stop` (the store's [`SockshimCtx::stop_waits`]) was given it
/// traps instead of running on. Internal: public for the tests and the
/// benchmark, which build stores of their own.
#[doc(hidden)]
pub fn yield_or_stop<T: 'static>(
    stop: impl Into<Option<StopWaits>>,
) -> impl FnMut(StoreContextMut<'_, T>) -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static
{
    let stop = stop.into();
    move |_| match &stop {
        Some(stop) if stop.is_stopped() => {
            Err(wasmtime::format_err!("the host stopped the plugin"))
        }
        _ => Ok(UpdateDeadline::Yield(1)),
    }
}

/// Advances the engine's epoch every [`YIELD_INTERVAL`] until the engine is
/// dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("sockshim-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(YIELD_INTERVAL);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| eprintln!("sockshim: cannot start the epoch ticker: {e}"));
}

/// The errors a newcomer meets before wasmtime's parser would: a file that
/// is not WebAssembly at all, and a core module where a component is
/// needed (a `wasm32-wasip1` or `wasm32-unknown-unknown` build). WAT text
/// is left to wasmtime, which compiles it.
fn check_component(path: &Path, bytes: &[u8]) -> wasmtime::Result<()> {
    const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
    let is_text = bytes.trim_ascii_start().starts_with(b"(");
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', version @ ..]) if version == CORE_MODULE_VERSION => {
            wasmtime::bail!(
                "{} is a core WebAssembly module, not a component: build the plugin with \
                 `cargo build --target wasm32-wasip2`",
                path.display()
            )
        }
        Some([0, b'a', b's', b'm', ..]) => Ok(()),
        _ if is_text => Ok(()),
        _ => wasmtime::bail!(
            "{} is not a WebAssembly file (it does not start with the wasm magic \
             number); a plugin is a component built with `cargo build --target wasm32-wasip2`",
            path.display()
        ),
    }
}

/// An error chain on one line: its lines, blank ones dropped, joined, so
/// that a message is never cut mid-sentence.
fn joined_lines(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// The first line of an error chain, for one-line messages.
fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}
