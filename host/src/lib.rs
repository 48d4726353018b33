//! # sockshim-host
//!
//! A [wasmtime] embedding of the `sockshim:socket` contract (`wit/socket.wit`):
//! TCP and UDP sockets with the semantics of CPython's `socket` module, implemented
//! on native non-blocking OS sockets (socket2) on tokio's reactor (or, for a
//! plugin with a thread of its own, [`SockshimCtx::waiting_on_thread`], in
//! ppoll(2) on that thread), and held to a deny-by-default network
//! [`Policy`].
//!
//! Add it to a [`Linker`] beside wasmtime-wasi, the way wasmtime-wasi-http
//! plugs in: the store's data implements [`SockshimView`], and
//! [`add_to_linker`] does the rest.
//!
//! ```no_run
//! use sockshim_host::{Policy, SockshimCtx, SockshimCtxView, SockshimView};
//! use wasmtime::component::{Component, Linker, ResourceTable};
//! use wasmtime::{Engine, Store};
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//!
//! struct State {
//!     wasi: WasiCtx,
//!     sockshim: SockshimCtx,
//!     table: ResourceTable,
//! }
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//! impl SockshimView for State {
//!     fn sockshim(&mut self) -> SockshimCtxView<'_> {
//!         SockshimCtxView { ctx: &mut self.sockshim, table: &mut self.table }
//!     }
//! }
//!
//! # async fn run() -> wasmtime::Result<()> {
//! let engine = Engine::default();
//! let mut linker = Linker::<State>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
//! sockshim_host::add_to_linker(&mut linker)?;
//!
//! let policy = Policy::deny_all().allow_connect("127.0.0.1:8080".parse()?);
//! let mut wasi = WasiCtx::builder();
//! wasi.inherit_stdio();
//! // Hold wasi:sockets (Rust's std::net in the plugin) to the same policy.
//! sockshim_host::apply_policy_to_wasi(&mut wasi, &policy);
//! let state = State {
//!     wasi: wasi.build(),
//!     sockshim: SockshimCtx::new(policy),
//!     table: ResourceTable::new(),
//! };
//! let mut store = Store::new(&engine, state);
//! let component = Component::from_file(&engine, "plugin.wasm")?;
//! let command =
//!     wasmtime_wasi::p2::bindings::Command::instantiate_async(&mut store, &component, &linker)
//!         .await?;
//! let _ = command.wasi_cli_run().call_run(&mut store).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [wasmtime]: https://docs.rs/wasmtime
//! [`Linker`]: wasmtime::component::Linker

#![deny(missing_docs)]

// The ~80 generated items are the contract's Rust names, which the public
// API mentions but a reader of the front page does not need: the contract
// is documented in `wit/socket.wit`.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings;
pub mod compiled;
mod datagram;
mod deadline;
// Only `wasi_errno` is public in it, and that for the crate's binaries.
#[doc(hidden)]
pub mod error;
mod host;
mod in_place;
pub mod limits;
#[doc(hidden)]
pub mod ops_fuzz;
mod placed;
pub mod policy;
#[doc(hidden)]
pub mod policy_fuzz;
mod quota;
mod readiness;
mod resolve;
pub mod runner;
pub mod sandboxes;
mod socket;
mod sys;
#[cfg(test)]
mod testing;
mod wasi_count;

pub use datagram::MAX_DATAGRAM;
pub use deadline::Timeout;
pub use limits::PluginLimits;
pub use policy::{Policy, Rule};
pub use readiness::{MAX_POLL_ENTRIES, Selector, SocketReadiness};
pub use resolve::MAX_LOOKUPS;
pub use socket::{MAX_LINGER, MAX_RECV_SIZE, TcpSocket, TransferStats};
pub use wasi_count::count_wasi_sockets;

use std::sync::Arc;
use sys::WaitOn;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The default limit on sockets one plugin may have open at once.
pub const DEFAULT_MAX_SOCKETS: usize = 1024;

/// Per-plugin sockshim state: the policy, the socket limit and count, and the
/// default timeout of new sockets. One per [`Store`](wasmtime::Store).
#[derive(Debug)]
pub struct SockshimCtx {
    pub(crate) policy: Arc<Policy>,
    pub(crate) quota: Arc<quota::Quota>,
    pub(crate) default_timeout: Timeout,
    pub(crate) transfer_stats: Arc<TransferStats>,
    pub(crate) wait_on: WaitOn,
    /// The plugin's name lookups in progress, and what its name rules
    /// granted.
    pub(crate) resolver: Arc<resolve::Resolver>,
    /// Whether `sendfile` takes every file as one on a slow filesystem.
    pub(crate) every_file_remote: bool,
}

impl SockshimCtx {
    /// State for one plugin held to `policy`, with at most
    /// [`DEFAULT_MAX_SOCKETS`] sockets open.
    pub fn new(policy: impl Into<Arc<Policy>>) -> SockshimCtx {
        SockshimCtx {
            policy: policy.into(),
            quota: quota::Quota::new(DEFAULT_MAX_SOCKETS),
            default_timeout: Timeout::Blocking,
            transfer_stats: Arc::default(),
            wait_on: WaitOn::reactor(),
            resolver: resolve::Resolver::new(MAX_LOOKUPS),
            every_file_remote: false,
        }
    }

    /// Makes the plugin's sockets wait on the thread that runs the plugin,
    /// in ppoll(2), instead of on tokio's reactor: a `recv` that has to
    /// wait blocks that thread until the bytes come, the socket's timeout
    /// passes, or [`StopWaits::stop`].
    ///
    /// This trades density for latency. A waiting plugin holds its thread,
    /// so run each such plugin on a thread of its own (`sockshim run` does:
    /// one plugin, one thread); two of them on one runtime thread, or one
    /// waiting for another, would block each other. In return a wait skips
    /// the reactor and the suspension of the plugin's fiber, which is
    /// most of what an async host adds to a round trip: on one CPU the
    /// benchmark's ping-pong round trip was shorter in each of seven
    /// alternated pairs, median 1.16× native against 1.24×
    /// (docs/benchmarks.md). On two CPUs, in the regime of slow cross-CPU
    /// wake-ups, it came out slower than on the reactor.
    ///
    /// Link such plugins with [`add_to_linker_waiting_on_thread`], which
    /// also skips wasmtime's async call path on each transfer;
    /// [`add_to_linker`] serves them too.
    ///
    /// Dropping the plugin's future cannot interrupt a wait in progress; the
    /// [`StopWaits`] of [`SockshimCtx::stop_waits`] can, from any thread.
    /// Take it after this call: the context gets a new stop signal here.
    pub fn waiting_on_thread(mut self) -> std::io::Result<SockshimCtx> {
        self.wait_on = WaitOn::Thread(Arc::new(sys::StopSignal::new()?));
        Ok(self)
    }

    /// What ends the plugin's waits, in either way of waiting: on its
    /// thread ([`SockshimCtx::waiting_on_thread`]), where dropping the
    /// plugin's future cannot, and on the reactor, where it ends the plugin
    /// without dropping its future (a plugin that shares a task with other
    /// work, or one whose embedder wants it to end with its error). Take it
    /// before the context moves into a store (and after
    /// [`SockshimCtx::waiting_on_thread`]).
    pub fn stop_waits(&self) -> StopWaits {
        StopWaits(Arc::clone(self.wait_on.stop()))
    }

    /// Whether the plugin's sockets wait on its thread
    /// ([`SockshimCtx::waiting_on_thread`]) rather than on the reactor.
    pub fn waits_on_thread(&self) -> bool {
        matches!(self.wait_on, WaitOn::Thread(_))
    }

    /// Sets the limit on sockets open at once (selectors and socket
    /// pollables count as sockets: each holds a host descriptor); past it,
    /// `create`, `accept`, `selector.create` and `subscribe` fail with
    /// `limit-reached`.
    pub fn with_max_sockets(self, max: usize) -> SockshimCtx {
        self.quota.set_max(max);
        self
    }

    /// Makes `sendfile` take every file as one on a slow filesystem (NFS,
    /// FUSE, ...): on the reactor, each sendfile(2) then runs on tokio's
    /// blocking pool, as it does anyway for files that fstatfs(2) does not
    /// place on a local filesystem. For tests (no network filesystem is
    /// needed to take that path) and for embedders who know better than
    /// the filesystem's type.
    #[doc(hidden)]
    pub fn with_every_file_remote(mut self) -> SockshimCtx {
        self.every_file_remote = true;
        self
    }

    /// The plugin's policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// How the plugin's `sendfile` calls moved their bytes. The counters are
    /// shared: take them before the context moves into a store, and read
    /// them while the plugin runs or after it ended.
    pub fn transfer_stats(&self) -> Arc<TransferStats> {
        Arc::clone(&self.transfer_stats)
    }

    /// How many sockets the plugin has open now (selectors and socket
    /// pollables included, and sockets whose lingering close has not
    /// finished).
    pub fn open_sockets(&self) -> usize {
        self.quota.open()
    }
}

/// Ends a plugin's waits, from any thread, whether they are on its thread
/// or on tokio's reactor: the wait in progress (for bytes, a connection, a
/// connect, room to send, a file to read from, a readiness set, a
/// `wasi:io/poll` pollable of a socket, a name lookup), and every later
/// one, fails at once with `os(ECANCELED)` (Python's `OSError`, errno
/// `ECANCELED`). The plugin goes on running; [`runner::PluginHost::run`]
/// (or [`runner::yield_or_stop`] in a store of one's own) also traps it at
/// its next epoch check, with "the host stopped the plugin", so that it
/// ends. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopWaits(Arc<sys::StopSignal>);

impl StopWaits {
    /// Ends the plugin's waits, now and from now on.
    pub fn stop(&self) {
        self.0.stop();
    }

    /// Whether [`StopWaits::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.is_stopped()
    }
}

/// What the sockshim host functions work on: the plugin's [`SockshimCtx`]
/// and the resource table it shares with wasmtime-wasi.
pub struct SockshimCtxView<'a> {
    /// The plugin's sockshim state.
    pub ctx: &'a mut SockshimCtx,
    /// The store's resource table.
    pub table: &'a mut ResourceTable,
}

/// Implemented by the embedder's store data to reach sockshim's state.
pub trait SockshimView: Send {
    /// The sockshim state and resource table of this store.
    fn sockshim(&mut self) -> SockshimCtxView<'_>;
}

/// The [`HasData`] marker for sockshim's host functions.
pub struct Sockshim;

impl HasData for Sockshim {
    type Data<'a> = SockshimCtxView<'a>;
}

/// Adds the `sockshim:socket` imports to `linker`. Use it beside
/// `wasmtime_wasi::p2::add_to_linker_async`; the host functions are async,
/// so instantiate and call the plugin with the `_async` methods. Its
/// plugins' sockets may wait either way, on the reactor or on their thread
/// ([`SockshimCtx::waiting_on_thread`]).
pub fn add_to_linker<T: SockshimView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    add_to_linker_with(linker, in_place::Calls::Async)
}

/// [`add_to_linker`] for a linker whose plugins' sockets all wait on their
/// own thread ([`SockshimCtx::waiting_on_thread`]), as `sockshim run`'s
/// do: `recv`, `recv-into`, `send` and `sendall`, the calls a transfer
/// repeats, are then plain host functions instead of async ones, which
/// skips wasmtime's async call path on each call (on one CPU the
/// benchmark's ping-pong round trip went from 1.17× to 1.14× native, the
/// bulk send's CPU from 1.19× to 1.14×, medians of alternated pairs). The
/// other functions stay async: instantiate and call the plugin with the
/// `_async` methods, as with [`add_to_linker`].
///
/// A plugin whose sockets wait on the reactor cannot use this linker: its
/// first `recv`, `recv-into`, `send` or `sendall` traps with a message
/// that says so.
/// [`runner::PluginHost`] picks the linker that fits each plugin.
pub fn add_to_linker_waiting_on_thread<T: SockshimView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    add_to_linker_with(linker, in_place::Calls::OnThread)
}

fn add_to_linker_with<T: SockshimView + 'static>(
    linker: &mut Linker<T>,
    calls: in_place::Calls,
) -> wasmtime::Result<()> {
    // Interface level: the world also names wasi:filesystem (for `sendfile`'s
    // descriptor), which wasmtime-wasi's own `add_to_linker` provides.
    bindings::sockshim::socket::socket::add_to_linker::<T, Sockshim>(linker, T::sockshim)?;
    in_place::add_to_linker(linker, calls)
}

/// Holds wasmtime-wasi's own sockets (wasi:sockets, which Rust's `std::net`
/// uses in a plugin) to `policy`, so a plugin cannot step around sockshim's
/// policy through them. Turns on TCP and UDP (wasmtime-wasi leaves them off),
/// and name lookup only when the policy lets the host look up every name
/// ([`Policy::resolves_every_name`]): wasmtime-wasi 48 cannot check a
/// lookup name by name, and an open lookup is a channel out of the sandbox.
pub fn apply_policy_to_wasi(builder: &mut wasmtime_wasi::WasiCtxBuilder, policy: &Policy) {
    let policy = Arc::new(policy.clone());
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(policy.resolves_every_name())
        .socket_addr_check(move |addr, use_| {
            let allowed = policy.allows_wasi(addr, use_);
            Box::pin(async move { allowed })
        });
}
