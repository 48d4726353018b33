//! The in-process wasm host of the benchmark: two engines and linkers, and
//! the three guests compiled once (kept compiled in `compiled/` beside the
//! .wasm files) and pre-instantiated. Guests whose sockets wait on the
//! reactor run as tasks on a multi-threaded tokio runtime, as an embedding
//! serving many plugins (`sockshim up`) runs them; a guest whose sockets wait
//! on its thread gets a thread and a current-thread runtime of its own, as
//! `sockshim run` gives a plugin.
//!
//! Both engines are configured as sockshim's `PluginHost` configures its own
//! (epoch interruption with a yield every 10 ms). The WASI 0.3 guest needs
//! component-model async, whose concurrency support makes every host call
//! of a store take wasmtime's task machinery; the WASI 0.2 and sockshim
//! guests run on an engine without it, as a host that runs no WASI 0.3
//! plugin has.

use crate::{Result, guests};
use sockshim_host::compiled::{self, CompileCache};
use sockshim_host::{Policy, SockshimCtx, SockshimCtxView, SockshimView, StopWaits};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The store data of every guest.
pub struct State {
    wasi: WasiCtx,
    sockshim: SockshimCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl SockshimView for State {
    fn sockshim(&mut self) -> SockshimCtxView<'_> {
        SockshimCtxView {
            ctx: &mut self.sockshim,
            table: &mut self.table,
        }
    }
}

/// The guest programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    /// Rust std::net on wasm32-wasip2: wasi:sockets 0.2.
    P2,
    /// wasi:sockets 0.3 through the `wasip3` crate.
    P3,
    /// The `sockshim` crate.
    Sockshim,
    /// The `file-server` example plugin (the static workload), run as
    /// `sockshim run` runs a plugin: on a thread of its own, its sockets
    /// waiting there (ppoll) and its file operations blocking that thread
    /// (`allow_blocking_current_thread`) rather than hopping to tokio's
    /// blocking pool; whatever `--sockshim-waits` says.
    FileServer,
    /// The Python plugin of the python workload (`bench/python/net_bench.py`
    /// built by componentize-py, [`Wasm::load_python`]), run as the file
    /// server is: as `sockshim run` runs a plugin.
    Python,
}

/// Where a guest finds the preopened directory of the file workloads.
pub const GUEST_DATA_DIR: &str = "/data";

pub struct Wasm {
    /// For the WASI 0.2 and sockshim guests: no concurrency support.
    engine: Engine,
    /// For the WASI 0.3 guest: component-model async.
    concurrent_engine: Engine,
    runtime: tokio::runtime::Runtime,
    p2: wasmtime_wasi::p2::bindings::CommandPre<State>,
    p3: wasmtime_wasi::p3::bindings::CommandPre<State>,
    sockshim: wasmtime_wasi::p2::bindings::CommandPre<State>,
    /// The sockshim guest, linked for sockets that wait on its thread
    /// (`add_to_linker_waiting_on_thread`, as `sockshim run` links it).
    sockshim_on_thread_pre: wasmtime_wasi::p2::bindings::CommandPre<State>,
    /// The `file-server` example, on the reactor and on its thread.
    file_server: wasmtime_wasi::p2::bindings::CommandPre<State>,
    file_server_on_thread: wasmtime_wasi::p2::bindings::CommandPre<State>,
    /// The Python plugin, once [`Wasm::load_python`] has loaded it.
    python: std::sync::OnceLock<wasmtime_wasi::p2::bindings::CommandPre<State>>,
    /// The linker of the plugins whose sockets wait on their thread.
    thread_linker: Linker<State>,
    policy: std::sync::Arc<Policy>,
    /// Whether the sockshim guest's sockets wait on its thread
    /// (`--sockshim-waits thread`) when it runs through [`Wasm::start`].
    sockshim_on_thread: bool,
}

/// The future that runs a guest (see [`Wasm::guest_writing_to`]).
type GuestRun = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// A guest started by [`Wasm::start`], to [`Wasm::wait`] for.
pub struct Started {
    task: tokio::task::JoinHandle<Result<()>>,
    /// Ends the waits of a guest whose sockets wait on its thread.
    stop: Option<StopWaits>,
}

fn werr(e: wasmtime::Error) -> crate::Error {
    format!("{e:#}").into()
}

impl Wasm {
    /// Builds the engine and linker and loads the guests. With `pooling`,
    /// instances come from wasmtime's pooling allocator sized for
    /// `max_instances` at once.
    pub fn new(pooling: bool, max_instances: u32) -> Result<Wasm> {
        let config = |concurrent: bool| {
            let mut config = wasmtime::Config::new();
            config.epoch_interruption(true);
            if concurrent {
                config.wasm_component_model_async(true);
            } else {
                config.concurrency_support(false);
            }
            if pooling {
                let n = max_instances + 8;
                let mut pool = wasmtime::PoolingAllocationConfig::new();
                pool.total_component_instances(n)
                    .total_core_instances(n * 8)
                    .total_memories(n * 2)
                    .total_tables(n * 8)
                    .total_stacks(n)
                    .max_memory_size(1 << 30);
                config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            }
            config
        };
        let engine = Engine::new(&config(false)).map_err(werr)?;
        let concurrent_engine = Engine::new(&config(true)).map_err(werr)?;
        spawn_epoch_ticker(&engine);
        spawn_epoch_ticker(&concurrent_engine);

        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(werr)?;
        let mut thread_linker = linker.clone();
        sockshim_host::add_to_linker(&mut linker).map_err(werr)?;
        sockshim_host::add_to_linker_waiting_on_thread(&mut thread_linker).map_err(werr)?;
        let mut concurrent_linker = Linker::<State>::new(&concurrent_engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut concurrent_linker).map_err(werr)?;
        wasmtime_wasi::p3::add_to_linker(&mut concurrent_linker).map_err(werr)?;

        let pre = |engine: &Engine, linker: &Linker<State>, path: &str| {
            let component = load(engine, Path::new(path))?;
            linker.instantiate_pre(&component).map_err(werr)
        };
        let p2 =
            wasmtime_wasi::p2::bindings::CommandPre::new(pre(&engine, &linker, guests::GUEST_P2)?)
                .map_err(werr)?;
        let p3 = wasmtime_wasi::p3::bindings::CommandPre::new(pre(
            &concurrent_engine,
            &concurrent_linker,
            guests::GUEST_P3,
        )?)
        .map_err(werr)?;
        let sockshim_guest = load(&engine, Path::new(guests::GUEST_SOCKSHIM))?;
        let sockshim_pre = |linker: &Linker<State>, component: &Component| {
            let pre = linker.instantiate_pre(component).map_err(werr)?;
            wasmtime_wasi::p2::bindings::CommandPre::new(pre).map_err(werr)
        };
        let sockshim = sockshim_pre(&linker, &sockshim_guest)?;
        let sockshim_on_thread_pre = sockshim_pre(&thread_linker, &sockshim_guest)?;
        let file_server_component = load(&engine, Path::new(guests::FILE_SERVER))?;
        let file_server = sockshim_pre(&linker, &file_server_component)?;
        let file_server_on_thread = sockshim_pre(&thread_linker, &file_server_component)?;

        let policy = Policy::deny_all()
            .allow_connect("127.0.0.1:*".parse()?)
            .allow_bind("127.0.0.1:*".parse()?);
        let runtime = host_runtime()?;
        Ok(Wasm {
            engine,
            concurrent_engine,
            runtime,
            p2,
            p3,
            sockshim,
            sockshim_on_thread_pre,
            file_server,
            file_server_on_thread,
            python: std::sync::OnceLock::new(),
            thread_linker,
            policy: std::sync::Arc::new(policy),
            sockshim_on_thread: false,
        })
    }

    /// Makes the sockshim guest's sockets wait on its thread
    /// (`SockshimCtx::waiting_on_thread`, as `sockshim run` does) when it
    /// runs through [`Wasm::start`], [`Wasm::run`] or [`Wasm::output`]: each
    /// such guest then gets a thread of its own, from the runtime's
    /// blocking pool, and a current-thread runtime on it, as `sockshim run`
    /// gives a plugin. The scale workload's [`Wasm`], in a process of its
    /// own, never does this: a thousand guests would need a thousand
    /// threads.
    pub fn sockshim_waits_on_thread(&mut self) {
        self.sockshim_on_thread = true;
    }

    /// Loads the Python plugin at `path` (compiled once, then from
    /// `compiled/` beside it), linked as `sockshim run` links a plugin, for
    /// [`Guest::Python`]; returns how long loading took. At most one plugin:
    /// a second call keeps the first.
    pub fn load_python(&self, path: &Path) -> Result<Duration> {
        let started = std::time::Instant::now();
        let component = load(&self.engine, path)?;
        let took = started.elapsed();
        let pre = self
            .thread_linker
            .instantiate_pre(&component)
            .map_err(werr)?;
        let _ = self
            .python
            .set(wasmtime_wasi::p2::bindings::CommandPre::new(pre).map_err(werr)?);
        Ok(took)
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The future that runs `guest` with `args` to completion (`Ok` when it
    /// exited 0), with `data_dir` preopened as [`GUEST_DATA_DIR`] if given,
    /// its standard output going to `stdout` (instead of nowhere) if given,
    /// and its sockets waiting on its thread if `on_thread`; and the stop
    /// handle of those waits.
    fn guest_writing_to(
        &self,
        guest: Guest,
        args: &[String],
        data_dir: Option<&Path>,
        stdout: Option<MemoryOutputPipe>,
        on_thread: bool,
    ) -> (GuestRun, Option<StopWaits>) {
        let setup = self.store(guest, args, data_dir, stdout, on_thread);
        let stop = match &setup {
            Ok(store) => Some(store.data().sockshim.stop_waits()),
            Err(_) => None,
        };
        let sockshim = match (guest, on_thread) {
            (Guest::FileServer, true) => self.file_server_on_thread.clone(),
            (Guest::FileServer, false) => self.file_server.clone(),
            (Guest::Python, _) => match self.python.get() {
                Some(pre) => pre.clone(),
                None => {
                    let run = async { Err("the Python plugin is not loaded".into()) };
                    return (Box::pin(run) as GuestRun, None);
                }
            },
            (_, true) => self.sockshim_on_thread_pre.clone(),
            (_, false) => self.sockshim.clone(),
        };
        let (p2, p3) = (self.p2.clone(), self.p3.clone());
        let what = format!("{guest:?} guest {args:?}");
        let run = async move {
            let mut store = setup?;
            let result = match guest {
                Guest::P3 => run_p3(&mut store, &p3).await,
                Guest::P2 => run_p2(&mut store, &p2).await,
                Guest::Sockshim | Guest::FileServer | Guest::Python => {
                    run_p2(&mut store, &sockshim).await
                }
            };
            result.map_err(|e| format!("{what}: {e}").into())
        };
        (Box::pin(run), stop)
    }

    /// Starts `guest` on the runtime, or, if its sockets wait on its thread
    /// ([`Wasm::sockshim_waits_on_thread`]), on a thread of its own.
    pub fn start(&self, guest: Guest, args: &[String], data_dir: Option<&Path>) -> Started {
        self.start_writing_to(guest, args, data_dir, None)
    }

    fn start_writing_to(
        &self,
        guest: Guest,
        args: &[String],
        data_dir: Option<&Path>,
        stdout: Option<MemoryOutputPipe>,
    ) -> Started {
        let on_thread = match guest {
            Guest::Sockshim => self.sockshim_on_thread,
            Guest::FileServer | Guest::Python => true,
            Guest::P2 | Guest::P3 => false,
        };
        let (run, stop) = self.guest_writing_to(guest, args, data_dir, stdout, on_thread);
        let task = if on_thread {
            // As `sockshim run`: the guest's thread drives a current-thread
            // runtime of its own, so a wake-up of a wasi:io wait stays on
            // that thread instead of coming from a worker of the shared one.
            self.runtime.spawn_blocking(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let result = runtime.block_on(run);
                // Not a wait for its blocking pool, as `sockshim run` exits.
                runtime.shutdown_background();
                result
            })
        } else {
            self.runtime.spawn(run)
        };
        Started { task, stop }
    }

    /// Runs `guest` as [`Wasm::start`] does and waits at most `timeout` for
    /// it.
    pub fn run(
        &self,
        guest: Guest,
        args: &[String],
        data_dir: Option<&Path>,
        timeout: Duration,
    ) -> Result<()> {
        self.wait(self.start(guest, args, data_dir), timeout)
    }

    /// Runs `guest` as [`Wasm::run`] does and returns what it wrote to its
    /// standard output (at most 64 KiB).
    pub fn output(&self, guest: Guest, args: &[String], timeout: Duration) -> Result<String> {
        let stdout = MemoryOutputPipe::new(64 << 10);
        let started = self.start_writing_to(guest, args, None, Some(stdout.clone()));
        self.wait(started, timeout)?;
        Ok(String::from_utf8_lossy(&stdout.contents()).into_owned())
    }

    /// Stops a started guest that would run on (a server): aborts its task
    /// and ends its waits on its thread, then waits at most `timeout` for it
    /// to be gone.
    pub fn stop(&self, started: Started, timeout: Duration) {
        started.task.abort();
        if let Some(stop) = &started.stop {
            stop.stop();
        }
        let _ = wait_for(&self.runtime, started.task, timeout);
    }

    /// Waits at most `timeout` for a started guest; past that, aborts its
    /// task (see [`wait_for`]) and stops its waits on its thread.
    pub fn wait(&self, started: Started, timeout: Duration) -> Result<()> {
        let result = wait_for(&self.runtime, started.task, timeout);
        if let (Err(_), Some(stop)) = (&result, &started.stop) {
            stop.stop();
        }
        result
    }

    fn store(
        &self,
        guest: Guest,
        args: &[String],
        data_dir: Option<&Path>,
        stdout: Option<MemoryOutputPipe>,
        on_thread: bool,
    ) -> Result<Store<State>> {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(stdout) = stdout {
            wasi.stdout(stdout);
        }
        let program = match guest {
            Guest::P2 => "bench-p2",
            Guest::P3 => "bench-p3",
            Guest::Sockshim => "bench-sockshim",
            Guest::FileServer => "file-server",
            Guest::Python => "net_bench.py",
        };
        wasi.arg(program).args(args);
        // The file server logs a line per request: thousands a second
        // under load, which would bury the tables (it is written to
        // nothing instead, as nginx's access_log is off).
        if guest != Guest::FileServer {
            wasi.inherit_stderr();
        }
        if matches!(guest, Guest::FileServer | Guest::Python) && on_thread {
            // As `sockshim run`: the plugin has the thread to itself.
            wasi.allow_blocking_current_thread(true);
        }
        if let Some(dir) = data_dir {
            wasi.preopened_dir(dir, GUEST_DATA_DIR, FsPerms::ReadOnly)
                .map_err(werr)?;
        }
        // wasi:sockets (0.2 and 0.3): loopback only. A connect or listen
        // without a bind is checked first as an implicit bind of 0.0.0.0:0.
        wasi.allow_tcp(true).socket_addr_check(|addr, _| {
            let ip = addr.ip();
            let allowed = ip.is_loopback() || (ip.is_unspecified() && addr.port() == 0);
            Box::pin(async move { allowed })
        });
        let mut sockshim = SockshimCtx::new(self.policy.clone());
        if on_thread {
            sockshim = sockshim.waiting_on_thread()?;
        }
        let state = State {
            wasi: wasi.build(),
            sockshim,
            table: ResourceTable::new(),
        };
        let engine = match guest {
            Guest::P3 => &self.concurrent_engine,
            Guest::P2 | Guest::Sockshim | Guest::FileServer | Guest::Python => &self.engine,
        };
        let mut store = Store::new(engine, state);
        store.set_epoch_deadline(1);
        let stop = store.data().sockshim.stop_waits();
        store.epoch_deadline_callback(sockshim_host::runner::yield_or_stop(stop));
        Ok(store)
    }
}

/// Maps a command's outcome to `Ok` for exit status 0.
fn exit_status(result: wasmtime::Result<std::result::Result<(), ()>>) -> Result<()> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err("exited with status 1".into()),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Ok(()),
            Some(I32Exit(code)) => Err(format!("exited with status {code}").into()),
            None => Err(format!("trapped: {e:#}").into()),
        },
    }
}

async fn run_p2(
    store: &mut Store<State>,
    pre: &wasmtime_wasi::p2::bindings::CommandPre<State>,
) -> Result<()> {
    let command = pre.instantiate_async(&mut *store).await.map_err(werr)?;
    exit_status(command.wasi_cli_run().call_run(&mut *store).await)
}

async fn run_p3(
    store: &mut Store<State>,
    pre: &wasmtime_wasi::p3::bindings::CommandPre<State>,
) -> Result<()> {
    let command = pre.instantiate_async(&mut *store).await.map_err(werr)?;
    let result = store
        .run_concurrent(async move |store| command.wasi_cli_run().call_run(store).await)
        .await;
    exit_status(result.and_then(|r| r))
}

/// Compiles `path`, or loads it compiled by an earlier run with a
/// compatible engine from `compiled/` beside it (sockshim's
/// [`CompileCache`], as `sockshim run` keeps its plugins).
fn load(engine: &Engine, path: &Path) -> Result<Component> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new(".")).join("compiled");
    let cache = CompileCache::open(dir).ok();
    compiled::compile(engine, &bytes, cache.as_ref())
        .map_err(|e| format!("{}: {}", path.display(), werr(e)).into())
}

/// Advances the engine's epoch every 10 ms until the engine is dropped, as
/// sockshim's `PluginHost` does.
fn spawn_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(sockshim_host::runner::YIELD_INTERVAL);
            }
        })
        .expect("cannot start the epoch ticker");
}

/// The runtime the guests run on: tokio's multi-threaded scheduler, one
/// worker per CPU. Native tasks compared with them run on one built here.
pub fn host_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Waits at most `timeout` for `task` on `runtime`; aborts it past that.
///
/// The time limit is kept by a watchdog thread, not by a tokio timer: a
/// timer on the runtime makes the parks of its workers arm a kernel timer
/// (epoll_wait with a timeout), which the guests would pay in their waits
/// and native async, whose tasks run without a limit, would not. In one
/// ping-pong run of the sockshim guest (50,000 round trips), `perf stat`
/// counted 9,398 `hrtimer_start` events with a tokio timeout and 739 with
/// the watchdog. The ratios did not move measurably (the far-off timer is
/// cheap to arm); the two sides now wait alike.
pub fn wait_for(
    runtime: &tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<Result<()>>,
    timeout: Duration,
) -> Result<()> {
    let abort = task.abort_handle();
    let expired = Arc::new(tokio::sync::Notify::new());
    let (finished, finish) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let expired = Arc::clone(&expired);
        std::thread::Builder::new()
            .name("guest-watchdog".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = finish.recv_timeout(timeout) {
                    expired.notify_one();
                }
            })?
    };
    let joined = runtime.block_on(async {
        tokio::select! {
            joined = task => Some(joined),
            () = expired.notified() => None,
        }
    });
    drop(finished);
    let _ = watchdog.join();
    match joined {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(format!("a guest task failed: {join}").into()),
        None => {
            abort.abort();
            Err(format!("a guest took longer than {timeout:?}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn a_task_that_ends_gives_its_result() {
        let runtime = runtime();
        let ok = runtime.spawn(async { Ok(()) });
        assert!(wait_for(&runtime, ok, Duration::from_secs(10)).is_ok());
        let failed = runtime.spawn(async { Err("it failed".into()) });
        let err = wait_for(&runtime, failed, Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.to_string(), "it failed");
    }

    /// The watchdog ends the wait and aborts the task; run on a thread of
    /// its own, so that a wait that never ends fails the test instead of
    /// hanging it.
    #[test]
    fn a_task_past_its_limit_is_aborted() {
        let runtime = Arc::new(runtime());
        let task = runtime.spawn(async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let abort = task.abort_handle();
        let (done, result) = std::sync::mpsc::channel();
        let waiter = {
            let runtime = Arc::clone(&runtime);
            std::thread::spawn(move || {
                let started = Instant::now();
                let waited = wait_for(&runtime, task, Duration::from_millis(300));
                let _ = done.send((waited.map_err(|e| e.to_string()), started.elapsed()));
            })
        };
        let (waited, elapsed) = result
            .recv_timeout(Duration::from_secs(30))
            .expect("the wait ended");
        waiter.join().expect("the waiting thread");
        let err = waited.unwrap_err();
        assert!(err.contains("took longer than 300ms"), "{err}");
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        let started = Instant::now();
        while !abort.is_finished() {
            assert!(started.elapsed() < Duration::from_secs(10), "not aborted");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
