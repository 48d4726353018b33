//! `sockshim-bench`: sockshim side by side with native sockets and with
//! wasmtime's wasi:sockets 0.2 and 0.3, on loopback (issue 6).
//!
//! ```text
//! cargo run --release -p sockshim-bench -- [--quick] [--json] [--only WORKLOAD]...
//! ```
//!
//! Guests run in this process in wasmtime; every peer runs in a child
//! process, so the CPU time measured (getrusage of this process) is the
//! guest side's alone. See `--help` and docs/benchmarks.md.

mod child;
mod measure;
mod native;
mod native_async;
#[path = "../guests/page_aligned.rs"]
mod page_aligned;
mod peer;
mod python;
mod readiness;
mod report;
mod soak;
mod static_files;
mod wasm;
mod workloads;

/// The wasm guests built by build.rs.
mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: sockshim-bench [--quick] [--json | --markdown] [--only WORKLOAD]... [--system KEY]...
                      [--reps N] [--pooling | --no-pooling] [--time-limit SECONDS]
                      [--sockshim-recv recv|recv_into] [--one-cpu | --split-cpus]
                      [--buffer BYTES] [--manyconn-conns N]
       sockshim-bench --soak [SECONDS]

Benchmarks sockshim against native Rust std::net and wasmtime's wasi:sockets
0.2 and 0.3 on loopback, in paired repetitions, and prints one table per
workload (or, with --json, one JSON object).

  --quick            about two minutes: 3 repetitions, 256 MiB transfers,
                     10,000 round trips, 500 connections, 1 and 100 instances,
                     1,000 readiness waits, 100 echoed connections, 1 s of
                     HTTP load per static run (default: 5 repetitions, 1 GiB,
                     50,000, 2,000, 1, 100 and 1,000 instances, 10,000 waits,
                     1,000 connections, 5 s)
  --json             print one JSON object on stdout (the tables go to stderr)
  --markdown         print one Markdown table of every workload's ratios on
                     stdout (the tables go to stderr): docs/benchmarks.md's
                     table
  --only WORKLOAD    run only bulk, pingpong, sendfile, connrate, scale,
                     hostcalls, readiness, manyconn, static or python (repeatable, or
                     comma-separated). readiness: one wait over 1, 100 and
                     1,000 sockets with one ready, sockshim's selector.wait
                     and poll against epoll_wait(2) and poll(2), in ns;
                     manyconn: one plugin echoing 1,000 connections (100
                     quick) through its selector, and one as wstd tasks on
                     sockshim::aio, against a mio echo on one thread (and
                     the async plugin also against tokio's current-thread
                     runtime, a task per connection), msg/s and CPU per
                     message; static: the
                     file-server plugin against nginx (one worker, sendfile
                     on) under wrk or the bench's own load generator, 4 KiB
                     at 1 and 16 connections and 64 MiB at 4; skipped
                     without nginx (apt-get install nginx-light wrk);
                     python: bench/python/net_bench.py as a plugin on
                     sockshim, on CPython's _socket over wasi:sockets 0.2
                     and as native CPython (bulk, ping-pong, start time);
                     skipped without python3 or componentize-py
  --system KEY       run only this system (repeatable, or comma-separated),
                     by its JSON key: native, wasi_sockets, wasi_sockets_p3,
                     sockshim, native_async (tokio; in manyconn its
                     current-thread runtime), sockshim_async (manyconn);
                     native_sendfile, native_read_write,
                     wasi_sockets_read_write, guest_read_sendall,
                     sockshim_sendfile (for profiling; ratios need both sides)
  --reps N           repetitions (at least 1)
  --pooling          wasmtime's pooling instance allocator (default: on-demand)
  --one-cpu          run everything (this process, its threads and the peers)
                     on the first CPU it may use, as `taskset -c 0` does: no
                     cross-CPU wake-ups, far less noise, and the figures then
                     measure CPU work rather than wake-up latency
  --split-cpus       this process and its threads on the first CPU it may
                     use, every peer on the second: the loopback's receive
                     work for what the guest sends then always runs on, and
                     is charged to, the guest's CPU (on one CPU it lands on
                     whichever process runs, see docs/benchmarks.md); round trips
                     pay cross-CPU wake-ups
  --time-limit SECS  give up after this long (default: 600 quick, 3600 full)
  --buffer BYTES     the buffer of every system's bulk sends and receives and
                     of the sendfile workload's loops (default 65536, at most
                     16 MiB, sockshim's largest recv): how much one call moves
  --sockshim-recv C  the sockshim guest's receive call in the bulk workloads:
                     recv_into (default; Python's sock.recv_into(buf), one
                     buffer reused) or recv (sock.recv(bufsize), bufsize
                     from --buffer, a new bytes object each call)
  --soak [SECONDS]   instead of the benchmark, a soak (default 180 s): three
                     echo-server and two file-server plugins, on the reactor
                     and on threads of their own, under six concurrent
                     native clients, every answer checked; prints the
                     requests served, the errors, and the descriptors and
                     resident memory before and after; fails on an error or
                     a leaked descriptor
  --manyconn-conns N the manyconn workload's connections, 1 to 1,000
                     (default 1,000, quick 100); below 1,000 each makes
                     100,000 ÷ N exchanges, so that a run echoes as many
                     messages: how the per-message cost grows with the
                     connections one server holds
  --manyconn-native-spin NS
                     the manyconn workload's native mio echo busy-waits NS
                     nanoseconds (at most 100,000) after each read: a native
                     server that costs NS more per message, to see what a
                     per-message cost turns into under this load (default 0)
  --sockshim-waits W where the sockshim guest's sockets wait: reactor
                     (default; tokio's reactor, a waiting guest holds no
                     thread) or thread (ppoll(2) on a thread of its own, as
                     `sockshim run` does). The scale workload always uses
                     the reactor.
";

/// The largest `--buffer`: what one sockshim `recv` may take.
const MAX_BUFFER: usize = sockshim_host::MAX_RECV_SIZE as usize;

/// The most `--manyconn-conns`: the plugins' default limit of open sockets
/// (1,024) holds them with the listener.
const MAX_MANYCONN_CONNS: usize = 1000;

/// The most `--manyconn-native-spin`, in ns: 0.1 ms per message already
/// takes a full run to ten seconds.
const MAX_NATIVE_SPIN: u64 = 100_000;

/// The messages a full manyconn run echoes, however many connections carry
/// them (`--manyconn-conns`).
const MANYCONN_MESSAGES: u64 = 100_000;

const WORKLOADS: [&str; 10] = [
    "bulk",
    "pingpong",
    "sendfile",
    "connrate",
    "hostcalls",
    "scale",
    "readiness",
    "manyconn",
    "static",
    "python",
];

/// What to run, and how big.
pub struct Config {
    pub quick: bool,
    pub json: bool,
    /// Print one Markdown table of the ratios on stdout (`--markdown`).
    pub markdown: bool,
    pub only: Vec<String>,
    /// JSON keys of the systems to run (all when empty).
    pub systems: Vec<String>,
    pub reps: usize,
    pub buf: usize,
    pub bulk_bytes: u64,
    pub pingpong: u64,
    pub sendfile_bytes: u64,
    pub connections: u64,
    pub scale: Vec<u32>,
    pub scale_idle: usize,
    pub scale_bytes: u64,
    pub scale_msg: usize,
    /// The readiness workload's numbers of registered sockets.
    pub readiness_sockets: Vec<usize>,
    /// Waits timed per readiness run.
    pub readiness_waits: u32,
    /// The manyconn workload's connections, and exchanges on each.
    pub manyconn_conns: usize,
    pub manyconn_rounds: u64,
    /// Nanoseconds the native mio echo busy-waits after each read.
    pub manyconn_native_spin: u64,
    /// Seconds of load per static run.
    pub static_secs: u64,
    pub pooling: bool,
    /// Everything (this process, its threads, the peers) on one CPU.
    pub one_cpu: bool,
    /// This process on one CPU, the peers on another.
    pub split_cpus: bool,
    /// The sockshim guest's receive call in the bulk workloads.
    pub sockshim_recv: String,
    /// The sockshim guest's sockets wait on its thread, not on the reactor.
    pub sockshim_on_thread: bool,
    pub time_limit: Duration,
    /// Run the soak for this many seconds instead (`--soak`).
    pub soak: Option<u64>,
}

impl Config {
    fn parse(argv: &[String]) -> Result<Config> {
        let quick = argv.iter().any(|a| a == "--quick");
        let mut cfg = Config {
            quick,
            json: false,
            markdown: false,
            only: vec![],
            systems: vec![],
            reps: if quick { 3 } else { 5 },
            buf: 64 * 1024,
            bulk_bytes: if quick { 256 << 20 } else { 1 << 30 },
            pingpong: if quick { 10_000 } else { 50_000 },
            sendfile_bytes: if quick { 256 << 20 } else { 1 << 30 },
            connections: if quick { 500 } else { 2_000 },
            scale: if quick {
                vec![1, 100]
            } else {
                vec![1, 100, 1000]
            },
            scale_idle: 4,
            scale_bytes: if quick { 64 << 20 } else { 256 << 20 },
            scale_msg: 16 * 1024,
            readiness_sockets: vec![1, 100, 1000],
            readiness_waits: if quick { 1_000 } else { 10_000 },
            manyconn_conns: if quick { 100 } else { 1000 },
            manyconn_rounds: 100,
            manyconn_native_spin: 0,
            static_secs: if quick { 1 } else { 5 },
            pooling: false,
            one_cpu: false,
            split_cpus: false,
            sockshim_recv: "recv_into".into(),
            sockshim_on_thread: false,
            time_limit: Duration::from_secs(if quick { 600 } else { 3600 }),
            soak: None,
        };
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--quick" => {}
                "--json" => cfg.json = true,
                "--markdown" => cfg.markdown = true,
                "--pooling" => cfg.pooling = true,
                "--no-pooling" => cfg.pooling = false,
                "--one-cpu" => cfg.one_cpu = true,
                "--split-cpus" => cfg.split_cpus = true,
                "--only" => {
                    for w in value("--only")?.split(',') {
                        if !WORKLOADS.contains(&w) {
                            return Err(format!("unknown workload {w:?}\n\n{USAGE}").into());
                        }
                        cfg.only.push(w.to_string());
                    }
                }
                "--system" => cfg
                    .systems
                    .extend(value("--system")?.split(',').map(str::to_string)),
                "--sockshim-recv" => {
                    cfg.sockshim_recv = value("--sockshim-recv")?;
                    if !["recv", "recv_into"].contains(&cfg.sockshim_recv.as_str()) {
                        return Err("--sockshim-recv takes recv or recv_into".into());
                    }
                }
                "--sockshim-waits" => {
                    cfg.sockshim_on_thread = match value("--sockshim-waits")?.as_str() {
                        "reactor" => false,
                        "thread" => true,
                        _ => return Err("--sockshim-waits takes reactor or thread".into()),
                    }
                }
                "--reps" => {
                    cfg.reps = number("--reps", value("--reps")?)?;
                    if cfg.reps == 0 {
                        return Err("--reps must be at least 1".into());
                    }
                }
                "--buffer" => {
                    cfg.buf = number("--buffer", value("--buffer")?)?;
                    if !(1..=MAX_BUFFER).contains(&cfg.buf) {
                        return Err(format!("--buffer must be 1 to {MAX_BUFFER} bytes").into());
                    }
                }
                "--manyconn-conns" => {
                    let conns: usize = number("--manyconn-conns", value("--manyconn-conns")?)?;
                    if !(1..=MAX_MANYCONN_CONNS).contains(&conns) {
                        return Err(
                            format!("--manyconn-conns must be 1 to {MAX_MANYCONN_CONNS}").into(),
                        );
                    }
                    cfg.manyconn_conns = conns;
                    cfg.manyconn_rounds = (MANYCONN_MESSAGES / conns as u64).max(100);
                }
                "--manyconn-native-spin" => {
                    let spin: u64 =
                        number("--manyconn-native-spin", value("--manyconn-native-spin")?)?;
                    if spin > MAX_NATIVE_SPIN {
                        return Err(format!(
                            "--manyconn-native-spin must be at most {MAX_NATIVE_SPIN} ns"
                        )
                        .into());
                    }
                    cfg.manyconn_native_spin = spin;
                }
                "--time-limit" => {
                    cfg.time_limit =
                        Duration::from_secs(number("--time-limit", value("--time-limit")?)?)
                }
                "--soak" => {
                    let seconds = match it.clone().next().map(|s| s.parse::<u64>()) {
                        Some(Ok(seconds)) => {
                            it.next();
                            seconds
                        }
                        _ => soak::DEFAULT_SECONDS,
                    };
                    if seconds == 0 {
                        return Err("--soak takes at least 1 second".into());
                    }
                    cfg.soak = Some(seconds);
                }
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n\n{USAGE}").into()),
            }
        }
        if cfg.one_cpu && cfg.split_cpus {
            return Err("--one-cpu and --split-cpus exclude each other".into());
        }
        if cfg.json && cfg.markdown {
            return Err("--json and --markdown exclude each other".into());
        }
        Ok(cfg)
    }

    fn runs(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }

    /// Whether `--system` lets the system with JSON key `key` run.
    pub fn selects(&self, key: &str) -> bool {
        self.systems.is_empty() || self.systems.iter().any(|k| k == key)
    }
}

/// `text` as the number an option takes, or an error naming the option.
fn number<N: std::str::FromStr>(option: &str, text: String) -> Result<N> {
    text.parse()
        .map_err(|_| format!("{option} takes a whole number, not {text:?}").into())
}

/// The directory holding the sendfile workload's file, removed on cleanup.
static TEMP_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

pub fn set_temp_dir(dir: Option<PathBuf>) {
    *TEMP_DIR.lock().unwrap_or_else(|e| e.into_inner()) = dir;
}

/// Kills every child process and removes the temporary file, for the exits
/// that skip destructors (signal, time limit, panic).
fn cleanup() {
    child::kill_all();
    if let Some(dir) = TEMP_DIR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One progress line on stderr.
pub fn progress(what: &str) {
    eprintln!("· {what}");
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("peer") => peer::main(&argv[1..]),
        Some("scale-child") => {
            peer::die_with_parent();
            workloads::scale_child(&argv[1..])
        }
        _ => bench(&argv),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sockshim-bench: {e}");
            cleanup();
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread (call before any thread
/// starts) and handles them in one thread: clean up, then exit. Children
/// start with an empty signal mask (std resets it).
fn handle_signals() {
    // SAFETY: plain signal-set manipulation on a local `sigset_t`, before
    // other threads exist; sigwait only writes the signal number.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            eprintln!("sockshim-bench: signal {sig}, stopping");
            cleanup();
            std::process::exit(128 + sig);
        });
    }
}

fn bench(argv: &[String]) -> Result<()> {
    let cfg = Config::parse(argv)?;
    if let Some(seconds) = cfg.soak {
        return soak::main(seconds);
    }
    // Before any thread starts: threads and children inherit the CPU.
    if cfg.one_cpu || cfg.split_cpus {
        let cpus = allowed_cpus()?;
        child::pin_this_thread(cpus[0])?;
        if cfg.split_cpus {
            let peers = *cpus.get(1).ok_or("--split-cpus needs two CPUs to run on")?;
            child::put_peers_on(peers);
        }
    }
    handle_signals();
    let limit = cfg.time_limit;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("sockshim-bench: time limit of {limit:?} reached, stopping");
        cleanup();
        std::process::exit(3);
    });
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        cleanup();
        default_hook(info);
    }));

    let started = Instant::now();
    let date = utc_now();
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: sockshim-bench was built without optimisation (dev profile): the figures \
             are not representative; use `cargo run --release -p sockshim-bench`"
        );
    }
    let mode = if cfg.quick { "quick" } else { "full" };
    let header = format!(
        "sockshim-bench, {mode} mode, {date}, {} repetitions, {} allocator, {}, {}{}",
        cfg.reps,
        if cfg.pooling { "pooling" } else { "on-demand" },
        if cfg.sockshim_on_thread {
            "sockshim waits on its thread"
        } else {
            "sockshim waits on the reactor"
        },
        if cfg.one_cpu {
            "one CPU".to_string()
        } else if cfg.split_cpus {
            "peers on a CPU of their own".to_string()
        } else {
            format!(
                "{} CPUs",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )
        },
        if cfg!(debug_assertions) {
            ", UNOPTIMISED BUILD"
        } else {
            ""
        },
    );
    let show = |text: &str| {
        if cfg.json || cfg.markdown {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    };
    show(&header);

    let mut json = Map::new();
    // Every workload but `scale` (a process of its own) runs guests here.
    let needs_wasm = WORKLOADS.iter().any(|&w| w != "scale" && cfg.runs(w));
    let wasm = if needs_wasm {
        progress("loading the guests (compiled once, then cached)");
        let mut wasm = wasm::Wasm::new(cfg.pooling, 16)?;
        if cfg.sockshim_on_thread {
            wasm.sockshim_waits_on_thread();
        }
        Some(wasm)
    } else {
        None
    };
    let mut tables = Vec::new();
    type Workload = fn(&wasm::Wasm, &Config) -> Result<Vec<report::Table>>;
    let workloads: [(&str, Workload); 4] = [
        ("bulk", workloads::bulk),
        ("pingpong", workloads::pingpong),
        ("sendfile", workloads::sendfile),
        ("connrate", workloads::connrate),
    ];
    for (name, run) in workloads {
        if let (true, Some(wasm)) = (cfg.runs(name), &wasm) {
            for table in run(wasm, &cfg)? {
                show(&table.to_text());
                json.insert(table.key.clone(), table.to_json());
                tables.push(table);
            }
        }
    }
    if let (true, Some(wasm)) = (cfg.runs("hostcalls"), &wasm) {
        let (text, value) = workloads::hostcalls(wasm, &cfg)?;
        show(&text);
        json.insert("host_calls".into(), value);
    }
    if let (true, Some(wasm)) = (cfg.runs("readiness"), &wasm) {
        let (text, value) = readiness::readiness(wasm, &cfg)?;
        show(&text);
        json.insert("readiness".into(), value);
    }
    if let (true, Some(wasm)) = (cfg.runs("manyconn"), &wasm) {
        for table in readiness::manyconn(wasm, &cfg)? {
            show(&table.to_text());
            json.insert(table.key.clone(), table.to_json());
            tables.push(table);
        }
    }
    if let (true, Some(wasm)) = (cfg.runs("static"), &wasm) {
        match static_files::static_files(wasm, &cfg)? {
            Ok(static_tables) => {
                for table in static_tables {
                    show(&table.to_text());
                    json.insert(table.key.clone(), table.to_json());
                    tables.push(table);
                }
            }
            Err(reason) => {
                show(&reason);
                json.insert("static".into(), json!({ "skipped": reason }));
            }
        }
    }
    if let (true, Some(wasm)) = (cfg.runs("python"), &wasm) {
        match python::python(wasm, &cfg)? {
            Ok(python_tables) => {
                for table in python_tables {
                    show(&table.to_text());
                    json.insert(table.key.clone(), table.to_json());
                    tables.push(table);
                }
            }
            Err(reason) => {
                show(&reason);
                json.insert("python".into(), json!({ "skipped": reason }));
            }
        }
    }
    drop(wasm);
    if cfg.runs("scale") {
        let (text, value) = workloads::scale(&cfg)?;
        show(&text);
        json.insert("scale".into(), value);
    }

    let wall = started.elapsed().as_secs_f64();
    show(&format!("total wall time: {wall:.0} s"));
    if cfg.markdown {
        print!("{header}.\n\n{}", report::markdown(&tables));
    }
    if cfg.json {
        let meta = json!({
            "mode": mode,
            "date": date,
            "repetitions": cfg.reps,
            "buffer_bytes": cfg.buf,
            "pooling_allocator": cfg.pooling,
            "one_cpu": cfg.one_cpu,
            "split_cpus": cfg.split_cpus,
            "optimised_build": !cfg!(debug_assertions),
            "sockshim_sendfile": guests::SOCKSHIM_SENDFILE,
            "sockshim_waits": if cfg.sockshim_on_thread { "thread" } else { "reactor" },
            "wall_s": wall,
        });
        let mut out = Map::new();
        out.insert("meta".into(), meta);
        out.extend(json);
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    }
    Ok(())
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: sched_getaffinity writes one `cpu_set_t` we own; CPU_ISSET
    // only indexes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        if cpus.is_empty() {
            return Err("no CPU to run on".into());
        }
        Ok(cpus)
    }
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config> {
        Config::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    /// The message `args` are refused with; `None` if they are taken.
    fn refusal(args: &[&str]) -> Option<String> {
        parse(args).err().map(|e| e.to_string())
    }

    #[test]
    fn buffer_sets_every_bulk_call_and_defaults_to_64_kib() {
        assert_eq!(parse(&[]).unwrap().buf, 65536);
        assert_eq!(parse(&["--buffer", "1048576"]).unwrap().buf, 1 << 20);
        assert_eq!(parse(&["--buffer", "1"]).unwrap().buf, 1);
        assert_eq!(
            parse(&["--buffer", &MAX_BUFFER.to_string()]).unwrap().buf,
            MAX_BUFFER
        );
    }

    #[test]
    fn buffers_outside_what_one_recv_takes_are_refused_by_name() {
        let bounds = "--buffer must be 1 to 16777216 bytes";
        assert_eq!(refusal(&["--buffer", "0"]).as_deref(), Some(bounds));
        let over = (MAX_BUFFER + 1).to_string();
        assert_eq!(refusal(&["--buffer", &over]).as_deref(), Some(bounds));
        assert_eq!(
            refusal(&["--buffer", "64k"]).as_deref(),
            Some("--buffer takes a whole number, not \"64k\"")
        );
        assert_eq!(
            refusal(&["--reps", "-1"]).as_deref(),
            Some("--reps takes a whole number, not \"-1\"")
        );
        assert!(refusal(&["--buffer"]).is_some_and(|e| e.contains("needs a value")));
    }

    #[test]
    fn soak_takes_an_optional_number_of_seconds() {
        assert_eq!(parse(&[]).unwrap().soak, None);
        assert_eq!(parse(&["--soak"]).unwrap().soak, Some(180));
        assert_eq!(parse(&["--soak", "30"]).unwrap().soak, Some(30));
        let then_flag = parse(&["--soak", "--json"]).unwrap();
        assert_eq!((then_flag.soak, then_flag.json), (Some(180), true));
        assert_eq!(
            refusal(&["--soak", "0"]).as_deref(),
            Some("--soak takes at least 1 second")
        );
        assert!(
            refusal(&["--soak", "3m"]).is_some_and(|e| e.starts_with("unknown argument \"3m\""))
        );
    }

    #[test]
    fn manyconn_conns_keep_the_messages_of_a_run() {
        let full = parse(&[]).unwrap();
        assert_eq!((full.manyconn_conns, full.manyconn_rounds), (1000, 100));
        let ten = parse(&["--manyconn-conns", "10"]).unwrap();
        assert_eq!((ten.manyconn_conns, ten.manyconn_rounds), (10, 10_000));
        let quick_ten = parse(&["--quick", "--manyconn-conns", "10"]).unwrap();
        assert_eq!(quick_ten.manyconn_conns, 10);
        for bad in ["0", "1001"] {
            assert_eq!(
                refusal(&["--manyconn-conns", bad]).as_deref(),
                Some("--manyconn-conns must be 1 to 1000")
            );
        }
    }

    #[test]
    fn the_native_spin_is_in_ns_and_bounded() {
        assert_eq!(parse(&[]).unwrap().manyconn_native_spin, 0);
        let spun = parse(&["--manyconn-native-spin", "600"]).unwrap();
        assert_eq!(spun.manyconn_native_spin, 600);
        assert_eq!(
            refusal(&["--manyconn-native-spin", "100001"]).as_deref(),
            Some("--manyconn-native-spin must be at most 100000 ns")
        );
        assert!(parse(&["--manyconn-native-spin", "-1"]).is_err());
    }

    #[test]
    fn cpu_placements_exclude_each_other() {
        let split = parse(&["--split-cpus"]).unwrap();
        assert!(split.split_cpus && !split.one_cpu);
        let both = refusal(&["--one-cpu", "--split-cpus"]);
        assert_eq!(
            both.as_deref(),
            Some("--one-cpu and --split-cpus exclude each other")
        );
    }
}
