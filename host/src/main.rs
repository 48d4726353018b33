//! `sockshim`: run a wasm32-wasip2 plugin with sockshim sockets under a
//! network policy.

use clap::{Parser, Subcommand};
use sockshim_host::compiled::CompileCache;
use sockshim_host::runner::PluginHost;
use sockshim_host::sandboxes::Sandboxes;
use sockshim_host::{PluginLimits, Policy, Rule, SockshimCtx, StopWaits};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Let the host look up NAME (`example.com`, `*.example.com`) for the
    /// plugin although no rule above names it; the addresses found must
    /// match an address rule. Without it, or a rule naming the host, a name
    /// is refused without a DNS lookup. Repeatable.
    #[arg(long = "allow-resolve", value_name = "NAME", value_parser = parse_resolve)]
    allow_resolve: Vec<Rule>,
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
    /// Most bytes one of the plugin's linear memories may grow to: a number
    /// with an optional K, M or G (binary) suffix. Past it, its allocations
    /// fail (a Rust plugin then traps).
    #[arg(long = "max-memory", value_name = "SIZE", value_parser = parse_size,
          default_value_t = PluginLimits::DEFAULT_MAX_MEMORY)]
    max_memory: usize,
    /// Most elements one of the plugin's tables may grow to.
    #[arg(long = "max-table-elements", value_name = "N",
          default_value_t = PluginLimits::DEFAULT_MAX_TABLE_ELEMENTS)]
    max_table_elements: usize,
    /// Most core instances the plugin may create.
    #[arg(long = "max-instances", value_name = "N",
          default_value_t = PluginLimits::DEFAULT_MAX_INSTANCES)]
    max_instances: usize,
    /// Most resources (sockets, streams, descriptors, pollables) the plugin
    /// may hold at once; a host call past it traps the plugin.
    #[arg(long = "max-resources", value_name = "N",
          default_value_t = PluginLimits::DEFAULT_MAX_RESOURCES)]
    max_resources: usize,
    /// Stop the plugin after SECONDS of wall time (a decimal number); the
    /// command then exits with code 124.
    #[arg(long = "timeout", value_name = "SECONDS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
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

fn parse_resolve(s: &str) -> Result<Rule, String> {
    match format!("{s}:*").parse::<Rule>() {
        Ok(rule) if !matches!(rule.host, sockshim_host::policy::HostPattern::Cidr { .. }) => {
            Ok(rule)
        }
        Ok(_) => Err(format!("`{s}` is an address, not a name to resolve")),
        Err(_) => Err(format!("`{s}` is not a host name or `*.`-pattern")),
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{s}` is not a size (a number with an optional K, M or G)"))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds"))
}

/// The exit code after `--timeout`, as timeout(1)'s.
const TIMED_OUT: i32 = 124;

/// Ends the plugin once `limit` has passed: its waits end at once
/// (`stop`), and its next epoch check traps it. A plugin reached by
/// neither (in a long wasi sleep, say) ends with the process, two seconds
/// later. Returns what says whether it fired.
fn watchdog(limit: Duration, stop: StopWaits) -> Arc<AtomicBool> {
    let fired = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&fired);
    let spawned = std::thread::Builder::new()
        .name("sockshim-timeout".into())
        .spawn(move || {
            std::thread::sleep(limit);
            flag.store(true, Ordering::SeqCst);
            stop.stop();
            std::thread::sleep(Duration::from_secs(2));
            eprintln!("sockshim: the plugin ran past --timeout ({limit:?}); ended");
            std::process::exit(TIMED_OUT);
        });
    if let Err(e) = spawned {
        eprintln!("sockshim: cannot start the --timeout watchdog: {e}");
    }
    fired
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
    let policy = args
        .allow_resolve
        .into_iter()
        .fold(policy, Policy::allow_resolve);

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
    let limits = PluginLimits {
        max_memory: args.max_memory,
        max_table_elements: args.max_table_elements,
        max_instances: args.max_instances,
        max_resources: args.max_resources,
        ..PluginLimits::default()
    };
    let timed_out = args.timeout.map(|limit| watchdog(limit, ctx.stop_waits()));
    let code = runtime.block_on(host.run_limited(&component, wasi, ctx, limits));
    let code = match timed_out {
        Some(fired) if fired.load(Ordering::SeqCst) => {
            eprintln!("sockshim: the plugin ran past --timeout; ended");
            Ok(TIMED_OUT)
        }
        _ => code,
    };
    // Not a wait for the blocking pool: a read of sendfile's fallback or a
    // name lookup still in progress there must not hold up the exit.
    runtime.shutdown_background();
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
