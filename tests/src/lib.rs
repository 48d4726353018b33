//! The harness of sockshim's integration tests: runs wasm32-wasip2 guests
//! in-process in a [`PluginHost`], with captured output, next to native
//! peers on loopback.
//!
//! The guests are built once per test build (crate
//! `sockshim-test-artifacts`) and compiled to machine code once per test
//! process.

use sockshim_host::runner::PluginHost;
use sockshim_host::{Policy, Rule, SockshimCtx, StopWaits};
use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

mod data;

pub use data::{fnv1a, fnv1a_continue, pattern};
pub use sockshim_test_artifacts::{
    DNS_QUERY, ECHO_SERVER, HTTP_GET, SOCKSHIM_TEST_GUEST, UDP_ECHO,
};

/// The host every test shares: one engine, one linker.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new().expect("cannot create the plugin host"))
}

/// The compiled component at `path`, compiled once per process.
pub fn component(path: &str) -> Component {
    static CACHE: OnceLock<Mutex<HashMap<String, Component>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(path.to_string())
        .or_insert_with(|| {
            host()
                .load(path.as_ref())
                .unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
        })
        .clone()
}

/// A policy from `--allow-connect`-style specs.
pub fn policy(connect: &[&str], bind: &[&str]) -> Policy {
    let rule = |s: &&str| s.parse::<Rule>().unwrap();
    let p = connect
        .iter()
        .map(rule)
        .fold(Policy::deny_all(), Policy::allow_connect);
    bind.iter().map(rule).fold(p, Policy::allow_bind)
}

/// Loopback only, any port, both ways: what most tests run with.
pub fn loopback() -> Policy {
    policy(&["127.0.0.0/8:*", "[::1]:*"], &["127.0.0.0/8:*", "[::1]:*"])
}

/// A plugin running in the background on the current tokio runtime.
pub struct Running {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    task: tokio::task::JoinHandle<wasmtime::Result<i32>>,
    /// What ends the plugin's waits (on its thread, which aborting its
    /// task cannot, or on the reactor).
    stop_waits: StopWaits,
}

/// What a finished plugin left behind.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit code.
    pub code: i32,
    /// Everything it printed to stdout.
    pub stdout: String,
    /// Everything it printed to stderr.
    pub stderr: String,
}

impl Outcome {
    /// The value of the first `key=value` line of stdout.
    pub fn get(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{key}=` in the plugin's output:\n{self}"))
    }

    /// [`get`](Self::get), parsed.
    pub fn num(&self, key: &str) -> u64 {
        let v = self.get(key);
        v.parse()
            .unwrap_or_else(|_| panic!("`{key}={v}` is not a number:\n{self}"))
    }

    /// Asserts the plugin exited 0.
    pub fn success(self) -> Outcome {
        assert_eq!(self.code, 0, "the plugin failed:\n{self}");
        self
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Starts the plugin at `wasm` with `args` (argv[1..]) under `ctx`.
pub fn spawn_with(wasm: &str, args: &[&str], ctx: SockshimCtx) -> Running {
    spawn_in(wasm, args, ctx, &[])
}

/// [`spawn_with`], with host directories preopened for the plugin: each
/// `(host_dir, guest_dir)` read-write, as `sockshim run --dir HOST::GUEST`
/// preopens it.
///
/// A plugin whose sockets wait on its thread
/// ([`SockshimCtx::waiting_on_thread`]) gets a thread of its own (one of
/// tokio's blocking pool), as such a plugin needs; the others run as tasks.
pub fn spawn_in(wasm: &str, args: &[&str], ctx: SockshimCtx, dirs: &[(&Path, &str)]) -> Running {
    let component = component(wasm);
    let stop_waits = ctx.stop_waits();
    let on_thread = ctx.waits_on_thread();
    let stdout = MemoryOutputPipe::new(64 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone()).stderr(stderr.clone());
    wasi.arg(wasm.rsplit('/').next().unwrap_or(wasm));
    wasi.args(args);
    for (host_dir, guest_dir) in dirs {
        wasi.preopened_dir(host_dir, guest_dir, FsPerms::ReadWrite)
            .unwrap_or_else(|e| panic!("cannot preopen {}: {e}", host_dir.display()));
    }
    let run = async move { host().run(&component, wasi, ctx).await };
    let task = if on_thread {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runtime.block_on(run))
    } else {
        tokio::spawn(run)
    };
    Running {
        stdout,
        stderr,
        task,
        stop_waits,
    }
}

/// Starts the plugin at `wasm` with `args` under `policy`.
pub fn spawn(wasm: &str, args: &[&str], policy: Policy) -> Running {
    spawn_with(wasm, args, SockshimCtx::new(policy))
}

/// Runs the test guest's `scenario` to the end under `policy`.
pub async fn run_guest(scenario: &str, args: &[&str], policy: Policy) -> Outcome {
    let mut all = vec![scenario];
    all.extend_from_slice(args);
    spawn(SOCKSHIM_TEST_GUEST, &all, policy).finish().await
}

/// Runs the test guest's `scenario` to the end under `ctx`, with `dirs`
/// preopened as in [`spawn_in`]. Keep `ctx.transfer_stats()` first to read
/// the run's sendfile counters afterwards.
pub async fn run_guest_in(
    scenario: &str,
    args: &[&str],
    ctx: SockshimCtx,
    dirs: &[(&Path, &str)],
) -> Outcome {
    let mut all = vec![scenario];
    all.extend_from_slice(args);
    spawn_in(SOCKSHIM_TEST_GUEST, &all, ctx, dirs)
        .finish()
        .await
}

impl Running {
    /// Waits (up to 60 s) for a stdout line starting with `prefix`, and
    /// returns the rest of it.
    pub async fn line_starting(&self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let out = String::from_utf8_lossy(&self.stdout.contents()).into_owned();
            if let Some(rest) = out.lines().find_map(|l| l.strip_prefix(prefix)) {
                return rest.to_string();
            }
            if self.task.is_finished() || tokio::time::Instant::now() > deadline {
                panic!(
                    "the plugin never printed `{prefix}`:\n--- stdout\n{out}--- stderr\n{}",
                    String::from_utf8_lossy(&self.stderr.contents())
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (up to 60 s) for a stderr line containing `text`, and returns
    /// it.
    pub async fn stderr_line_containing(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let err = String::from_utf8_lossy(&self.stderr.contents()).into_owned();
            if let Some(line) = err.lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            if self.task.is_finished() || tokio::time::Instant::now() > deadline {
                panic!("the plugin never printed `{text}` on stderr:\n{err}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// For a server that prints `listening on ADDR`: waits for it and
    /// returns ADDR.
    pub async fn listening_on(&self) -> SocketAddr {
        let addr = self.line_starting("listening on ").await;
        addr.trim()
            .parse()
            .unwrap_or_else(|_| panic!("`listening on {addr}` is not an address"))
    }

    /// Waits (up to 120 s) for the plugin to end.
    pub async fn finish(self) -> Outcome {
        let (result, stdout, stderr) = self.end().await;
        let code = result.unwrap_or_else(|e| panic!("the plugin trapped: {e:?}\n{stderr}"));
        Outcome {
            code,
            stdout,
            stderr,
        }
    }

    /// Waits (up to 120 s) for the plugin to end, trap or not: what `run`
    /// returned, then stdout and stderr.
    pub async fn end(self) -> (wasmtime::Result<i32>, String, String) {
        let mut task = self.task;
        let text = |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
        let Ok(joined) = tokio::time::timeout(Duration::from_secs(120), &mut task).await else {
            task.abort();
            panic!(
                "the plugin did not finish within 120 s:\n--- stdout\n{}--- stderr\n{}",
                text(&self.stdout),
                text(&self.stderr)
            );
        };
        let result = joined.expect("the plugin's task panicked");
        (result, text(&self.stdout), text(&self.stderr))
    }

    /// What ends the plugin's waits (and, at its next epoch check, the
    /// plugin), in either way of waiting.
    pub fn stop_waits(&self) -> &StopWaits {
        &self.stop_waits
    }

    /// Stops a plugin that would run forever (a server); one that waits on
    /// its thread ends at its next epoch check.
    pub fn stop(self) {
        self.task.abort();
        self.stop_waits.stop();
    }
}

/// A native listener on an ephemeral loopback port.
pub fn native_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// A loopback port nothing listens on.
pub fn closed_port() -> String {
    let (listener, addr) = native_listener();
    drop(listener);
    addr
}

/// A loopback address that drops connection requests: a listener with
/// backlog 0 whose accept queue is full (of connections made and never
/// accepted), so Linux drops further SYNs, and a connect to it waits until
/// its timeout, as to an unrouted address. Held open until dropped.
pub struct BlackHole {
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
    addr: SocketAddr,
}

impl BlackHole {
    /// Listens on an ephemeral loopback port with backlog 0, then connects
    /// natively until a connect no longer completes (the queue is full).
    pub fn new() -> BlackHole {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        assert!(
            !fillers.is_empty() && fillers.len() < 16,
            "the accept queue never filled ({} connects completed)",
            fillers.len()
        );
        BlackHole {
            _listener: listener,
            _fillers: fillers,
            addr,
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for BlackHole {
    fn default() -> BlackHole {
        BlackHole::new()
    }
}

/// A pseudo-terminal's master and the path of its slave (`/dev/pts/N`).
pub fn pseudo_terminal() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt returns a new descriptor we own (checked), and
    // ptsname_r writes a NUL-terminated path into the buffer it is given.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(master), path)
    }
}

/// How many descriptors this process has open.
pub fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Reads a connection to its end (or error) and returns how many bytes came.
pub fn drain(mut stream: TcpStream) -> usize {
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    sink.len()
}

/// A native server thread: accepts one connection and hands it to `serve`.
pub fn serve_one<R: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> R + Send + 'static,
) -> (String, std::thread::JoinHandle<R>) {
    let (listener, addr) = native_listener();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve(stream)
    });
    (addr, handle)
}

/// A directory of its own under the system's temporary directory, removed
/// with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `sockshim-NAME-PID-N` in the temporary directory.
    pub fn new(name: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sockshim-{name}-{}-{n}", std::process::id()));
        // A leftover of a crashed run with the same pid goes first.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `data` to the file `name` in it and returns the file's path.
    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, data)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
