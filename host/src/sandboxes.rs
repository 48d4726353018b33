//! Several plugins, one run: what `sockshim up SANDBOXES.toml` does, as a
//! Rust API for embedders' own tests.
//!
//! Each plugin runs in a sandbox of its own (its own store, arguments,
//! environment, preopened directories and network [`Policy`]), all in one
//! host process on one tokio runtime. They start in the order given; a
//! plugin with a readiness condition ([`Ready`]) holds back the plugins
//! after it until it is ready, and fails the run if it is not within the
//! ready timeout (or ends first). Every line a plugin prints, on stdout or
//! stderr, is written to one output with the plugin's name in front. The
//! run ends when the plugins marked as the test ([`Sandbox::test`]; every
//! plugin when none is) have ended; the others are stopped then.
//! [`Finished::code`] is the run's exit code: 0 when every test plugin
//! exited 0.
//!
//! ```no_run
//! use sockshim_host::sandboxes::{Ready, Sandbox, Sandboxes};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let finished = Sandboxes::new()
//!     .plugin(
//!         Sandbox::new("echo", "target/wasm32-wasip2/release/echo-server.wasm")
//!             .arg("127.0.0.1:7000")
//!             .allow_bind("127.0.0.1:7000".parse()?)
//!             .ready(Ready::port(7000)),
//!     )
//!     .plugin(
//!         Sandbox::new("client", "target/wasm32-wasip2/release/echo-check.wasm")
//!             .args(["tcp", "127.0.0.1:7000"])
//!             .allow_connect("127.0.0.1:7000".parse()?)
//!             .test(true),
//!     )
//!     .run()
//!     .await?;
//! assert_eq!(finished.code(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! The same run as a manifest for `sockshim up` ([`Sandboxes::from_manifest`];
//! paths are relative to the manifest's directory):
//!
//! ```toml
//! ready-timeout = 30  # seconds; the default
//!
//! [[plugin]]
//! name = "echo"
//! component = "target/wasm32-wasip2/release/echo-server.wasm"
//! args = ["127.0.0.1:7000"]
//! allow-bind = ["127.0.0.1:7000"]
//! ready = { port = 7000 }           # or { stdout = "listening on" }
//!
//! [[plugin]]
//! name = "client"
//! component = "target/wasm32-wasip2/release/echo-check.wasm"
//! args = ["tcp", "127.0.0.1:7000"]
//! env = { GREETING = "hello" }
//! dirs = ["data::/data"]             # HOST_DIR[::GUEST_DIR], as --dir
//! allow-connect = ["127.0.0.1:7000"]
//! test = true
//! ```

use crate::runner::PluginHost;
use crate::{Policy, Rule, SockshimCtx};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How long a plugin may take to get ready unless told otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// When a plugin counts as ready, so that the plugins after it may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ready {
    /// A TCP connection to this address is accepted.
    Port(SocketAddr),
    /// The plugin printed a line (on stdout) that contains this text.
    Stdout(String),
}

impl Ready {
    /// A TCP connection to `port` on 127.0.0.1 is accepted.
    pub fn port(port: u16) -> Ready {
        Ready::Port(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    /// A line the plugin prints on stdout contains `text`.
    pub fn stdout(text: impl Into<String>) -> Ready {
        Ready::Stdout(text.into())
    }
}

impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ready::Port(addr) => write!(f, "a connection to {addr} to be accepted"),
            Ready::Stdout(text) => write!(f, "a line containing {text:?} on its stdout"),
        }
    }
}

/// One plugin of a run, with its sandbox.
#[derive(Clone, Debug)]
pub struct Sandbox {
    name: String,
    component: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<(PathBuf, String)>,
    policy: Policy,
    ready: Option<Ready>,
    test: bool,
}

impl Sandbox {
    /// The plugin `name` (what its output lines start with), from the
    /// wasm32-wasip2 command component at `component`; it starts with no
    /// arguments, no environment, no directories, and a policy that
    /// allows nothing.
    pub fn new(name: impl Into<String>, component: impl Into<PathBuf>) -> Sandbox {
        Sandbox {
            name: name.into(),
            component: component.into(),
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            policy: Policy::deny_all(),
            ready: None,
            test: false,
        }
    }

    /// Adds an argument (`argv[1]`, `argv[2]`, …).
    pub fn arg(mut self, arg: impl Into<String>) -> Sandbox {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Sandbox {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Sandbox {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Preopens `host_dir` for the plugin as `guest_dir`, read-write, as
    /// `sockshim run --dir HOST::GUEST` does.
    pub fn dir(mut self, host_dir: impl Into<PathBuf>, guest_dir: impl Into<String>) -> Sandbox {
        self.dirs.push((host_dir.into(), guest_dir.into()));
        self
    }

    /// Allows connecting (and sending datagrams) as `rule` says.
    pub fn allow_connect(mut self, rule: Rule) -> Sandbox {
        self.policy = self.policy.allow_connect(rule);
        self
    }

    /// Allows binding as `rule` says.
    pub fn allow_bind(mut self, rule: Rule) -> Sandbox {
        self.policy = self.policy.allow_bind(rule);
        self
    }

    /// The plugins after this one start once it is `ready`.
    pub fn ready(mut self, ready: Ready) -> Sandbox {
        self.ready = Some(ready);
        self
    }

    /// Marks the plugin as (part of) the test: the run ends when the test
    /// plugins have, and their exit codes decide its outcome.
    pub fn test(mut self, test: bool) -> Sandbox {
        self.test = test;
        self
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a run could not go to its end.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The manifest cannot be read or is not valid.
    #[error("{0}")]
    Manifest(String),
    /// A plugin cannot be loaded or started.
    #[error("sandbox `{name}`: {message}")]
    Start {
        /// The plugin's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A plugin did not get ready within the ready timeout.
    #[error("sandbox `{name}` never got ready: waited {waited:?} for {condition}")]
    NeverReady {
        /// The plugin's name.
        name: String,
        /// How long the run waited.
        waited: Duration,
        /// What it waited for.
        condition: Ready,
    },
    /// A plugin ended before it was ready.
    #[error("sandbox `{name}` ended before it was ready ({how}), while waiting for {condition}")]
    EndedBeforeReady {
        /// The plugin's name.
        name: String,
        /// How it ended.
        how: String,
        /// What the run waited for.
        condition: Ready,
    },
}

/// How a test plugin ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The plugin's name.
    pub name: String,
    /// Its exit code, or why it trapped.
    pub result: Result<i32, String>,
}

/// The end of a run: how each test plugin ended, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The test plugins.
    pub tests: Vec<Ended>,
}

impl Finished {
    /// The run's exit code: the first non-zero exit code of a test plugin
    /// (1 for a trap), or 0 when each exited 0.
    pub fn code(&self) -> i32 {
        self.tests
            .iter()
            .map(|ended| ended.result.as_ref().map_or(1, |code| *code))
            .find(|code| *code != 0)
            .unwrap_or(0)
    }
}

/// A run of several plugins, each in its own sandbox (see the module's
/// documentation).
pub struct Sandboxes {
    plugins: Vec<Sandbox>,
    ready_timeout: Duration,
    output: Sink,
    host: Option<PluginHost>,
}

/// Where the plugins' prefixed lines go.
type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

impl Default for Sandboxes {
    fn default() -> Self {
        Sandboxes::new()
    }
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("plugins", &self.plugins)
            .field("ready_timeout", &self.ready_timeout)
            .finish_non_exhaustive()
    }
}

impl Sandboxes {
    /// A run of no plugins yet, writing to the process's stdout, with the
    /// [`DEFAULT_READY_TIMEOUT`].
    pub fn new() -> Sandboxes {
        Sandboxes {
            plugins: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            output: Arc::new(Mutex::new(Box::new(io::stdout()))),
            host: None,
        }
    }

    /// Adds a plugin; plugins start in the order they are added.
    pub fn plugin(mut self, sandbox: Sandbox) -> Sandboxes {
        self.plugins.push(sandbox);
        self
    }

    /// How long each plugin with a readiness condition may take to get
    /// ready.
    pub fn ready_timeout(mut self, timeout: Duration) -> Sandboxes {
        self.ready_timeout = timeout;
        self
    }

    /// Writes the plugins' prefixed output lines to `output` instead of
    /// the process's stdout.
    pub fn output(mut self, output: impl Write + Send + 'static) -> Sandboxes {
        self.output = Arc::new(Mutex::new(Box::new(output)));
        self
    }

    /// Runs the plugins in `host` (its engine and linker, and its compiled
    /// code for components it loaded before) instead of a new one.
    pub fn host(mut self, host: PluginHost) -> Sandboxes {
        self.host = Some(host);
        self
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Sandbox] {
        &self.plugins
    }

    /// The plugin named `name`, to change before the run (a test pointing
    /// a manifest's components elsewhere, say).
    pub fn plugin_mut(&mut self, name: &str) -> Option<&mut Sandbox> {
        self.plugins.iter_mut().find(|p| p.name == name)
    }

    /// Reads a `SANDBOXES.toml` manifest (see the module's
    /// documentation); relative paths in it are relative to its directory.
    pub fn from_manifest(path: &Path) -> Result<Sandboxes, UpError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UpError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Sandboxes::parse_manifest(&text, base)
            .map_err(|e| UpError::Manifest(format!("{}: {e}", path.display())))
    }

    /// Parses a manifest's text, with relative paths taken from `base`.
    pub fn parse_manifest(text: &str, base: &Path) -> Result<Sandboxes, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut run = Sandboxes::new();
        if let Some(secs) = manifest.ready_timeout {
            let timeout = Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("ready-timeout {secs} is not a number of seconds"))?;
            run = run.ready_timeout(timeout);
        }
        if manifest.plugin.is_empty() {
            return Err("no [[plugin]] in the manifest".into());
        }
        for entry in manifest.plugin {
            let sandbox = entry.into_sandbox(base)?;
            if run.plugins.iter().any(|p| p.name == sandbox.name) {
                return Err(format!("two plugins are named `{}`", sandbox.name));
            }
            run = run.plugin(sandbox);
        }
        Ok(run)
    }

    /// Runs the plugins to the end of the test plugins (see the module's
    /// documentation). Call it inside a multi-threaded tokio runtime: the
    /// plugins run as its tasks, waiting on its reactor.
    pub async fn run(self) -> Result<Finished, UpError> {
        let host = match self.host {
            Some(host) => host,
            None => PluginHost::new().map_err(|e| UpError::Start {
                name: "(host)".into(),
                message: format!("{e:#}"),
            })?,
        };
        let width = self.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
        let no_tests = !self.plugins.iter().any(|p| p.test);
        let mut started: Vec<Started> = Vec::new();
        let result = start_all(
            &host,
            self.plugins,
            self.ready_timeout,
            &self.output,
            width,
            &mut started,
        )
        .await;
        if let Err(e) = result {
            for plugin in &started {
                plugin.task.abort();
            }
            return Err(e);
        }
        let mut tests = Vec::new();
        for plugin in &mut started {
            if !(plugin.test || no_tests) {
                continue;
            }
            let result = match (&mut plugin.task).await {
                Ok(Ok(code)) => Ok(code),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(e) => Err(format!("the plugin's task failed: {e}")),
            };
            plugin.finish_output();
            tests.push(Ended {
                name: plugin.name.clone(),
                result,
            });
        }
        for plugin in &started {
            plugin.task.abort();
            plugin.finish_output();
        }
        Ok(Finished { tests })
    }
}

/// A plugin that was started.
struct Started {
    name: String,
    test: bool,
    task: JoinHandle<wasmtime::Result<i32>>,
    stdout: Prefixed,
    stderr: Prefixed,
}

impl Started {
    /// Writes out what the plugin printed without a final newline.
    fn finish_output(&self) {
        self.stdout.finish();
        self.stderr.finish();
    }
}

/// Starts the plugins in order, each after the one before is ready.
async fn start_all(
    host: &PluginHost,
    plugins: Vec<Sandbox>,
    ready_timeout: Duration,
    output: &Sink,
    width: usize,
    started: &mut Vec<Started>,
) -> Result<(), UpError> {
    for sandbox in plugins {
        let name = sandbox.name.clone();
        let fail = |message: String| UpError::Start {
            name: name.clone(),
            message,
        };
        let component = host
            .load(&sandbox.component)
            .map_err(|e| fail(format!("{e:#}")))?;
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let pattern = match &sandbox.ready {
            Some(Ready::Stdout(text)) => Some((text.clone(), ready_tx)),
            _ => None,
        };
        let prefix = format!("{name:width$} | ");
        let stdout = Prefixed::new(prefix.clone(), Arc::clone(output), pattern);
        let stderr = Prefixed::new(prefix, Arc::clone(output), None);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        let argv0 = sandbox
            .component
            .file_name()
            .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
        wasi.arg(argv0);
        wasi.args(&sandbox.args);
        wasi.envs(&sandbox.env);
        for (host_dir, guest_dir) in &sandbox.dirs {
            wasi.preopened_dir(host_dir, guest_dir, FsPerms::ReadWrite)
                .map_err(|e| fail(format!("cannot open {}: {e:#}", host_dir.display())))?;
        }
        let ctx = SockshimCtx::new(sandbox.policy);
        let host = host.clone();
        let task = tokio::spawn(async move { host.run(&component, wasi, ctx).await });
        started.push(Started {
            name: name.clone(),
            test: sandbox.test,
            task,
            stdout,
            stderr,
        });
        let Some(condition) = sandbox.ready else {
            continue;
        };
        let Some(plugin) = started.last_mut() else {
            continue; // cannot happen: pushed above
        };
        let ready = async {
            match &condition {
                Ready::Stdout(_) => {
                    let _ = ready_rx.wait_for(|ready| *ready).await;
                }
                Ready::Port(addr) => {
                    while tokio::net::TcpStream::connect(addr).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        tokio::select! {
            () = ready => {}
            ended = &mut plugin.task => {
                let how = match ended {
                    Ok(Ok(code)) => format!("exit code {code}"),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("its task failed: {e}"),
                };
                plugin.finish_output();
                return Err(UpError::EndedBeforeReady { name, how, condition });
            }
            () = tokio::time::sleep(ready_timeout) => {
                plugin.finish_output();
                return Err(UpError::NeverReady { name, waited: ready_timeout, condition });
            }
        }
    }
    Ok(())
}

/// A plugin's stdout or stderr: split into lines, each written to the
/// run's output after the plugin's name; on stdout, a line that contains
/// the readiness text marks the plugin ready.
#[derive(Clone)]
struct Prefixed(Arc<PrefixedInner>);

struct PrefixedInner {
    prefix: String,
    output: Sink,
    /// Bytes after the last newline.
    partial: Mutex<Vec<u8>>,
    ready: Option<(String, watch::Sender<bool>)>,
}

impl Prefixed {
    fn new(prefix: String, output: Sink, ready: Option<(String, watch::Sender<bool>)>) -> Prefixed {
        Prefixed(Arc::new(PrefixedInner {
            prefix,
            output,
            partial: Mutex::new(Vec::new()),
            ready,
        }))
    }

    fn write(&self, bytes: &[u8]) {
        let inner = &self.0;
        let mut partial = inner.partial.lock().unwrap_or_else(|e| e.into_inner());
        partial.extend_from_slice(bytes);
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            self.line(&line[..end]);
        }
    }

    /// Writes out the bytes after the last newline, if any.
    fn finish(&self) {
        let mut partial = self.0.partial.lock().unwrap_or_else(|e| e.into_inner());
        if !partial.is_empty() {
            let line = std::mem::take(&mut *partial);
            self.line(&line);
        }
    }

    fn line(&self, line: &[u8]) {
        let inner = &self.0;
        let line = String::from_utf8_lossy(line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        {
            let mut output = inner.output.lock().unwrap_or_else(|e| e.into_inner());
            // The run's output failing (a closed pipe) must not stop the
            // plugins: the line is lost, as a terminal's would be.
            let _ = writeln!(output, "{}{line}", inner.prefix);
            let _ = output.flush();
        }
        if let Some((text, ready)) = &inner.ready
            && line.contains(text.as_str())
        {
            ready.send_replace(true);
        }
    }
}

impl IsTerminal for Prefixed {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Prefixed {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A manifest: `SANDBOXES.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Manifest {
    ready_timeout: Option<f64>,
    #[serde(default)]
    plugin: Vec<PluginEntry>,
}

/// One `[[plugin]]` of a manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PluginEntry {
    name: String,
    component: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dirs: Vec<String>,
    #[serde(default)]
    allow_connect: Vec<String>,
    #[serde(default)]
    allow_bind: Vec<String>,
    ready: Option<ReadyEntry>,
    #[serde(default)]
    test: bool,
}

/// `ready = { port = N }` (`host` 127.0.0.1 unless given) or
/// `ready = { stdout = "text" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyEntry {
    port: Option<u16>,
    host: Option<IpAddr>,
    stdout: Option<String>,
}

impl PluginEntry {
    fn into_sandbox(self, base: &Path) -> Result<Sandbox, String> {
        let name = self.name;
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(format!("plugin name `{name}` is empty or has spaces"));
        }
        let in_plugin = |what: String| format!("plugin `{name}`: {what}");
        let mut sandbox = Sandbox::new(name.clone(), base.join(&self.component))
            .args(self.args)
            .test(self.test);
        for (key, value) in self.env {
            sandbox = sandbox.env(key, value);
        }
        for dir in &self.dirs {
            let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
            sandbox = sandbox.dir(base.join(host), guest);
        }
        for spec in &self.allow_connect {
            let rule = spec.parse().map_err(|e| in_plugin(format!("{e}")))?;
            sandbox = sandbox.allow_connect(rule);
        }
        for spec in &self.allow_bind {
            let rule = spec.parse().map_err(|e| in_plugin(format!("{e}")))?;
            sandbox = sandbox.allow_bind(rule);
        }
        if let Some(ready) = self.ready {
            let ready = match ready {
                ReadyEntry {
                    port: Some(port),
                    host,
                    stdout: None,
                } => Ready::Port(SocketAddr::new(
                    host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    port,
                )),
                ReadyEntry {
                    port: None,
                    host: None,
                    stdout: Some(text),
                } if !text.is_empty() => Ready::Stdout(text),
                _ => {
                    return Err(in_plugin(
                        "ready takes either { port = N } (with an optional host) or \
                         { stdout = \"text\" }"
                            .into(),
                    ));
                }
            };
            sandbox = sandbox.ready(ready);
        }
        Ok(sandbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_everything_a_sandbox_has() {
        let text = r#"
            ready-timeout = 5
            [[plugin]]
            name = "server"
            component = "server.wasm"
            args = ["127.0.0.1:7000"]
            env = { MODE = "fast" }
            dirs = ["data::/data", "/abs"]
            allow-bind = ["127.0.0.1:7000"]
            ready = { port = 7000 }
            [[plugin]]
            name = "client"
            component = "/elsewhere/client.wasm"
            allow-connect = ["127.0.0.1:7000", "localhost:*"]
            ready = { stdout = "started" }
            test = true
        "#;
        let run = Sandboxes::parse_manifest(text, Path::new("/m")).unwrap();
        assert_eq!(run.ready_timeout, Duration::from_secs(5));
        let [server, client] = run.plugins() else {
            panic!("two plugins");
        };
        assert_eq!(server.component, Path::new("/m/server.wasm"));
        assert_eq!(server.args, ["127.0.0.1:7000"]);
        assert_eq!(server.env, [("MODE".to_string(), "fast".to_string())]);
        assert_eq!(
            server.dirs,
            [
                (PathBuf::from("/m/data"), "/data".to_string()),
                (PathBuf::from("/abs"), "/abs".to_string())
            ]
        );
        assert_eq!(server.ready, Some(Ready::port(7000)));
        assert!(!server.test);
        assert!(server.policy.allows(
            crate::policy::Operation::Bind,
            "127.0.0.1:7000".parse().unwrap()
        ));
        assert_eq!(client.component, Path::new("/elsewhere/client.wasm"));
        assert_eq!(client.ready, Some(Ready::stdout("started")));
        assert!(client.test);
    }

    #[test]
    fn a_bad_manifest_says_what_is_wrong() {
        let cases = [
            ("", "no [[plugin]]"),
            ("[[plugin]]\nname = \"a\"", "component"),
            (
                "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nready = { port = 1, stdout = \"x\" }",
                "plugin `a`: ready takes either",
            ),
            (
                "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nallow-connect = [\"nope\"]",
                "plugin `a`: invalid address rule",
            ),
            (
                "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[plugin]]\nname = \"a\"\ncomponent = \"b.wasm\"",
                "two plugins are named `a`",
            ),
            (
                "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nallow_connect = []",
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            let err = Sandboxes::parse_manifest(text, Path::new(".")).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn output_lines_carry_the_name_and_readiness_is_seen_in_them() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let sink: Sink = Arc::new(Mutex::new(Box::new(out.clone())));
        let (tx, rx) = watch::channel(false);
        let stdout = Prefixed::new("echo  | ".into(), sink, Some(("listening on".into(), tx)));
        stdout.write(b"starting\nlisten");
        assert!(!*rx.borrow());
        stdout.write(b"ing on 127.0.0.1:7\r\nno newline");
        assert!(*rx.borrow());
        stdout.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "echo  | starting\necho  | listening on 127.0.0.1:7\necho  | no newline\n"
        );
    }
}
