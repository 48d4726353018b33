//! Running a plugin: a wasm32-wasip2 command component with wasmtime-wasi
//! (stdio, arguments, environment, preopened directories, clocks, random)
//! plus sockshim, held to one policy. The `sockshim run` command and the
//! test harness are built on it; embedders with state of their own use
//! [`add_to_linker`](crate::add_to_linker) directly.

use crate::{SockshimCtx, SockshimCtxView, SockshimView, add_to_linker, apply_policy_to_wasi};
use wasmtime::error::Context as _;
use std::path::Path;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The store data of a plugin run by [`PluginHost`].
pub struct PluginState {
    wasi: WasiCtx,
    sockshim: SockshimCtx,
    table: ResourceTable,
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
    linker: Linker<PluginState>,
}

impl PluginHost {
    /// A host with wasmtime's default configuration.
    pub fn new() -> wasmtime::Result<PluginHost> {
        let engine = Engine::new(&wasmtime::Config::new())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        add_to_linker(&mut linker)?;
        Ok(PluginHost { engine, linker })
    }

    /// The engine plugins are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads and compiles a component.
    pub fn load(&self, path: &Path) -> wasmtime::Result<Component> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Component::new(&self.engine, &bytes).map_err(|e| {
            wasmtime::format_err!(
                "{} is not a valid wasm component: {}",
                path.display(),
                first_line(&e)
            )
        })
    }

    /// Runs `component`'s `wasi:cli/run` with `wasi` (stdio, arguments, …)
    /// and `sockshim`; wasi:sockets are held to the sockshim policy too.
    /// Returns the plugin's exit code: 0 when `run` returned ok, 1 when it
    /// returned an error, N after `exit(N)`. A trap is an error.
    pub async fn run(
        &self,
        component: &Component,
        mut wasi: WasiCtxBuilder,
        sockshim: SockshimCtx,
    ) -> wasmtime::Result<i32> {
        apply_policy_to_wasi(&mut wasi, sockshim.policy());
        let state = PluginState {
            wasi: wasi.build(),
            sockshim,
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        let command = Command::instantiate_async(&mut store, component, &self.linker)
            .await
            .map_err(|e| wasmtime::format_err!("cannot instantiate the plugin: {}", first_line(&e)))?;
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

/// The first line of an error chain, for one-line messages.
fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}
