//! `sockshim`: run a wasm32-wasip2 plugin with sockshim sockets under a
//! network policy.

use clap::{Parser, Subcommand};
use sockshim_host::compiled::CompileCache;
use sockshim_host::runner::PluginHost;
use sockshim_host::sandboxes::Sandboxes;
use sockshim_host::{Policy, Rule, SockshimCtx};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use wasmtime::error::Context as _;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Run WebAssembly plugins with real sockets, under a deny-by-default
/// network policy.
#[derive(Parser, Debug)]
#[command(name = "sockshim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a wasm32-wasip2 command component (a plugin).
    Run(RunArgs),
    /// Run the plugins a SANDBOXES.toml manifest lists, each in its own
    /// sandbox, in one host process, until its test plugins end.
    Up(UpArgs),
}

#[derive(Parser, Debug)]
struct UpArgs {
    /// How long, in seconds, each plugin with a readiness condition may
    /// take to get ready (default: the manifest's `ready-timeout`, else 30).
    #[arg(long = "ready-timeout", value_name = "SECS")]
    ready_timeout: Option<f64>,
    /// The manifest: `[[plugin]]` tables with name, component, args, env,
    /// dirs, allow-connect, allow-bind, ready and test.
    #[arg(value_name = "SANDBOXES.toml")]
    manifest: PathBuf,
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// Allow connecting to HOST:PORT, IP:PORT, CIDR:PORT or [IPV6]:PORT;
    /// PORT is a number, LOW-HIGH or `*`. Repeatable.
    #[arg(long = "allow-connect", value_name = "SPEC")]
    allow_connect: Vec<Rule>,
    /// Allow binding (and so listening on) SPEC, written as for
    /// --allow-connect. Repeatable.
    #[arg(long = "allow-bind", value_name = "SPEC")]
    allow_bind: Vec<Rule>,
    /// Preopen HOST_DIR for the plugin, as GUEST_DIR (default: the same
    /// path). Repeatable.
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    dirs: Vec<String>,
    /// Set an environment variable for the plugin. Repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Most sockets the plugin may have open at once.
    #[arg(long = "max-sockets", value_name = "N", default_value_t = sockshim_host::DEFAULT_MAX_SOCKETS)]
    max_sockets: usize,
    /// When the plugin ends, print on stderr how its `sendfile` calls moved
    /// their bytes: by sendfile(2), or by the read-and-send fallback.
    #[arg(long = "stats")]
    stats: bool,
    /// Keep compiled plugins in DIR (default: $XDG_CACHE_HOME/sockshim, else
    /// ~/.cache/sockshim), so a plugin runs again without being compiled
    /// again. The directory must be writable by its owner alone.
    #[arg(long = "cache-dir", value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile the plugin on every run; keep nothing on disk.
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// The plugin (a wasm32-wasip2 command component), then its arguments.
    /// Everything from the plugin's path on belongs to the plugin, flags
    /// too, as with `wasmtime run`.
    #[arg(
        value_name = "PLUGIN.wasm [ARGS]",
        required = true,
        trailing_var_arg = true,
        num_args = 1..
    )]
    plugin_and_args: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("sockshim: {} (see `sockshim --help`)", one_line(&e));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Up(args) => up(args),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("sockshim: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// One clear line from a clap error, not its multi-line usage block: the
/// message and its tips (clap's "a similar argument exists: '--allow-bind'"
/// for a misspelt flag), without the usage.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut message = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        // "use '-- --flag'" is wrong advice here: after the plugin's path
        // every argument is the plugin's anyway.
        if line.is_empty() || line.starts_with("tip: to pass") {
            continue;
        }
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(line.trim_start_matches("error: "));
    }
    message
}

/// The cache of compiled plugins the flags ask for. A directory named with
/// `--cache-dir` that cannot be used is reported, and the plugin is
/// compiled; the default one is used only if it can be, silently.
fn compile_cache(no_cache: bool, cache_dir: Option<&Path>) -> Option<CompileCache> {
    if no_cache {
        return None;
    }
    match cache_dir {
        Some(dir) => CompileCache::open(dir)
            .inspect_err(|e| eprintln!("sockshim: not caching compiled plugins: {e}"))
            .ok(),
        None => CompileCache::open(CompileCache::default_dir()?).ok(),
    }
}

fn run(args: RunArgs) -> wasmtime::Result<i32> {
    let policy = args
        .allow_connect
        .into_iter()
        .fold(Policy::deny_all(), Policy::allow_connect);
    let policy = args.allow_bind.into_iter().fold(policy, Policy::allow_bind);

    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio();
    // The plugin has this thread to itself (below): its file operations may
    // block it, instead of each hopping to tokio's blocking pool and back
    // (two futex wake-ups and a thread switch per stat or open, which a
    // file server pays on every request).
    wasi.allow_blocking_current_thread(true);
    let Some((plugin, plugin_args)) = args.plugin_and_args.split_first() else {
        wasmtime::bail!("no plugin given");
    };
    let plugin = Path::new(plugin);
    let argv0 = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    wasi.arg(argv0);
    wasi.args(plugin_args);
    wasi.envs(&args.env);
    for dir in &args.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
        wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
            .with_context(|| format!("cannot open directory {host} for --dir"))?;
    }

    // One plugin, one thread: the thread that runs the plugin also waits
    // for its sockets, in ppoll(2) (`waiting_on_thread`), so a wake-up
    // goes neither through the reactor nor between threads. sendfile's
    // fallback still reads files on tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let host = PluginHost::new()?;
    let cache = compile_cache(args.no_cache, args.cache_dir.as_deref());
    let component = host.load_with(plugin, cache.as_ref())?;
    let ctx = SockshimCtx::new(policy)
        .with_max_sockets(args.max_sockets)
        .waiting_on_thread()
        .context("cannot set up the plugin's socket waits")?;
    let stats = ctx.transfer_stats();
    let code = runtime.block_on(host.run(&component, wasi, ctx));
    if args.stats {
        eprintln!(
            "sockshim: sendfile carried {} bytes by sendfile(2) and {} bytes by the read+send fallback",
            stats.sendfile_bytes(),
            stats.fallback_bytes()
        );
    }
    code
}

/// `sockshim up`: the manifest's plugins on one multi-threaded runtime,
/// their sockets on its reactor; the exit code is the test plugins'.
fn up(args: UpArgs) -> wasmtime::Result<i32> {
    let mut sandboxes = Sandboxes::from_manifest(&args.manifest)?;
    if let Some(secs) = args.ready_timeout {
        let timeout = Duration::try_from_secs_f64(secs).map_err(|_| {
            wasmtime::format_err!("--ready-timeout {secs} is not a number of seconds")
        })?;
        sandboxes = sandboxes.ready_timeout(timeout);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let finished = runtime.block_on(sandboxes.run())?;
    for ended in &finished.tests {
        match &ended.result {
            Ok(code) => eprintln!("sockshim up: {} exited with code {code}", ended.name),
            Err(e) => eprintln!("sockshim up: {} trapped: {e}", ended.name),
        }
    }
    // Stopped plugins end with the runtime, without waiting for them.
    runtime.shutdown_background();
    Ok(finished.code())
}
