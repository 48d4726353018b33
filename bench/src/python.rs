//! The python workload (issue 24, `--only python`): `bench/python/net_bench.py`
//! three ways, in paired repetitions: as a plugin on sockshim (the stdlib's
//! `socket` over `sockshim.install()`), the same plugin on CPython's own C
//! `_socket` over wasmtime-wasi's wasi:sockets 0.2, and native CPython
//! (`python3` on the host). Bulk send to a native sink and 1-byte
//! ping-pong with a native echo, both the benchmark's peers; and the
//! plugin's start time from its compiled cache against native CPython's.
//!
//! The plugin is built by `scripts/python-plugin.sh` (componentize-py
//! 0.25.1) into `target/bench-wasm/python/`, named by a hash of its inputs,
//! so a run whose inputs have not changed builds nothing; the engine's
//! compiled form is kept in `compiled/` beside it, as for the other guests.
//!
//! The script marks the start and end of its workload through a "gate"
//! connection to this process (see the script), so that neither the
//! interpreter's start nor its exit is in the figures: wall and CPU time
//! are read at the marks; native CPython sends its own getrusage with them.

use crate::child;
use crate::measure::{Sample, cpu_times, process_cpu_time};
use crate::report::{System, Table, Unit};
use crate::wasm::{Guest, Wasm};
use crate::workloads::{args, bound, paired};
use crate::{Config, Result, progress};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Exit status of `scripts/python-plugin.sh --install` when componentize-py
/// cannot be installed.
const CANNOT_INSTALL: i32 = 3;

/// The systems, in table order; the last (sockshim) is the subject.
const SYSTEMS: [System; 3] = [
    System {
        label: "native CPython (host python3)",
        key: "native_cpython",
    },
    System {
        label: "plugin on wasi:sockets 0.2 (_socket)",
        key: "builtin_wasi_sockets",
    },
    System {
        label: "plugin on sockshim",
        key: "sockshim",
    },
];

/// The script's MODE argument for each system.
const MODES: [&str; 3] = ["native", "builtin", "sockshim"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate is in the workspace")
        .to_path_buf()
}

fn script() -> PathBuf {
    root().join("bench/python/net_bench.py")
}

/// Runs the python workload; `Ok(Err(reason))` when it cannot run here
/// (no python3, or componentize-py cannot be installed).
pub fn python(wasm: &Wasm, cfg: &Config) -> Result<std::result::Result<Vec<Table>, String>> {
    let python = match native_python() {
        Ok(python) => python,
        Err(why) => return Ok(Err(format!("python: skipped, {why}"))),
    };
    progress("python: building the plugin (cached by its inputs)");
    let plugin = match build_plugin()? {
        Ok(plugin) => plugin,
        Err(why) => return Ok(Err(format!("python: skipped, {why}"))),
    };
    progress("python: loading the plugin (compiled once, then cached)");
    let first_load = wasm.load_python(&plugin)?;
    // A second load is what a `sockshim run` with a warm cache pays.
    let warm_load = wasm.load_python(&plugin)?;
    let (bulk_bytes, round_trips, starts): (u64, u64, u64) = if cfg.quick {
        (64 << 20, 2_000, 3)
    } else {
        (512 << 20, 20_000, 10)
    };
    let version = python_version(&python);
    let gate = Gate::new()?;
    let mut tables = Vec::new();

    let sink = child::Peer::start("sink", &[])?;
    let samples = paired("python bulk", &SYSTEMS, cfg, |i, warm| {
        let n = if warm { bulk_bytes / 8 } else { bulk_bytes };
        gate.run(i, &python, wasm, "bulk", sink.port, sink.pid(), n)
            .map(Some)
    })?;
    drop(sink);
    tables.push(table(
        &SYSTEMS,
        "python_bulk",
        format!(
            "python bulk, plugin → native sink: {} MiB by sendall in 64 KiB calls, {} paired \
             repetitions",
            bulk_bytes >> 20,
            cfg.reps
        ),
        Unit::Throughput,
        bulk_bytes as f64,
        samples,
        vec![format!("(native: {version})")],
    ));

    let echo = child::Peer::start("echo", &[])?;
    let samples = paired("python ping-pong", &SYSTEMS, cfg, |i, warm| {
        let n = if warm { round_trips / 10 } else { round_trips };
        gate.run(i, &python, wasm, "pingpong", echo.port, echo.pid(), n)
            .map(Some)
    })?;
    drop(echo);
    tables.push(table(
        &SYSTEMS,
        "python_pingpong",
        format!(
            "python ping-pong: {round_trips} round trips of 1 byte (sendall, recv(1)), {} paired \
             repetitions",
            cfg.reps
        ),
        Unit::RoundTrip,
        round_trips as f64,
        samples,
        vec![
            "(sockshim and native set TCP_NODELAY; wasi:sockets 0.2 cannot, the echo sets it)"
                .into(),
        ],
    ));

    let start_systems = [SYSTEMS[0], SYSTEMS[2]];
    let samples = paired("python start", &start_systems, cfg, |i, _| {
        start(i == 1, &python, wasm, starts).map(Some)
    })?;
    tables.push(table(
        &start_systems,
        "python_start",
        format!(
            "python start: run to exit of a script that prints one line, {starts} starts per run, \
             {} paired repetitions",
            cfg.reps
        ),
        Unit::Start,
        starts as f64,
        samples,
        vec![
            "(the plugin: instantiate from its pre-instantiated compiled form, run, exit; \
             native: spawn python3 to exit)"
                .into(),
            format!(
                "(loading the plugin's compiled form: {:.1} ms from the warm cache; the first \
                 load of this run took {:.1} ms)",
                warm_load.as_secs_f64() * 1e3,
                first_load.as_secs_f64() * 1e3
            ),
        ],
    ));
    Ok(Ok(tables))
}

/// A table of `systems`, the last of which (sockshim) is the subject.
fn table(
    systems: &[System],
    key: &str,
    title: String,
    unit: Unit,
    amount: f64,
    samples: Vec<Vec<Option<Sample>>>,
    notes: Vec<String>,
) -> Table {
    let systems = systems.to_vec();
    Table {
        key: key.into(),
        title,
        unit,
        amount,
        subject: Some(systems.len() - 1),
        systems,
        samples,
        notes,
    }
}

/// The host's CPython interpreter itself (`sys.executable` of `python3`),
/// so that a wrapper such as pyenv's shim is not in the start figures.
fn native_python() -> std::result::Result<PathBuf, String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("python3 cannot be run ({e})"))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Err("python3 does not say where it is".into());
    }
    Ok(PathBuf::from(path))
}

fn python_version(python: &Path) -> String {
    Command::new(python)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "python3".into())
}

/// The plugin built from `net_bench.py`: the one built before from the same
/// inputs if there is one; `Ok(Err(reason))` when componentize-py cannot be
/// installed. Any other failure to build is an error.
fn build_plugin() -> Result<std::result::Result<PathBuf, String>> {
    let builder = root().join("scripts/python-plugin.sh");
    let installed = Command::new(&builder)
        .arg("--install")
        .stdout(Stdio::null())
        .status();
    match installed {
        Err(e) => return Ok(Err(format!("scripts/python-plugin.sh cannot run ({e})"))),
        Ok(s) if s.code() == Some(CANNOT_INSTALL) => {
            return Ok(Err("componentize-py 0.25.1 cannot be installed".into()));
        }
        Ok(s) if !s.success() => {
            return Err(format!("scripts/python-plugin.sh --install failed ({s})").into());
        }
        Ok(_) => {}
    }
    let dir = root().join("target/bench-wasm/python");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("net_bench-{:016x}.wasm", inputs_hash()?));
    if out.is_file() {
        return Ok(Ok(out));
    }
    progress("python: componentize-py builds the plugin (about half a minute)");
    let partial = out.with_extension("partial");
    let built = Command::new(&builder)
        .arg(script())
        .arg(&partial)
        .stdout(Stdio::null())
        .status()?;
    if !built.success() {
        return Err(format!("building {} failed ({built})", script().display()).into());
    }
    std::fs::rename(&partial, &out)?;
    Ok(Ok(out))
}

/// A hash of everything the plugin is built from.
fn inputs_hash() -> Result<u64> {
    let mut inputs = vec![
        script(),
        root().join("guest/python/run_app.py"),
        root().join("scripts/python-plugin.sh"),
        root().join("wit/socket.wit"),
    ];
    for entry in std::fs::read_dir(root().join("guest/python/sockshim"))? {
        inputs.push(entry?.path());
    }
    inputs.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in inputs.iter().filter(|p| p.is_file()) {
        path.file_name().hash(&mut hasher);
        std::fs::read(path)?.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

/// Where the script marks the start and end of its workload.
struct Gate {
    listener: TcpListener,
    port: u16,
}

/// What this process reads at a mark: when, its own CPU time (all, user),
/// the peer's, and the CPU time (all, user) a native script sent.
struct Mark {
    at: Instant,
    cpu: (Duration, Duration),
    peer: Option<Duration>,
    native: Option<(Duration, Duration)>,
}

impl Gate {
    fn new() -> Result<Gate> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        Ok(Gate { listener, port })
    }

    /// Runs `workload` of `amount` under system `sys` (an index into
    /// [`SYSTEMS`]) against the peer on `port`, and measures it between its
    /// marks.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        sys: usize,
        python: &Path,
        wasm: &Wasm,
        workload: &str,
        port: u16,
        peer_pid: u32,
        amount: u64,
    ) -> Result<Sample> {
        let argv = args(&[
            &MODES[sys],
            &workload,
            &"127.0.0.1",
            &self.port,
            &port,
            &amount,
        ]);
        let listener = self.listener.try_clone()?;
        let (tx, marks) = mpsc::channel();
        std::thread::Builder::new()
            .name("python-gate".into())
            .spawn(move || {
                let _ = tx.send(two_marks(&listener, peer_pid));
            })?;
        let limit = bound(amount, amount);
        if sys == 0 {
            let mut script = Command::new(python);
            script.arg(self::script()).args(&argv).stdin(Stdio::null());
            let status = run_child(script, limit)?.0;
            if !status.success() {
                return Err(format!("native CPython {argv:?} failed ({status})").into());
            }
        } else {
            wasm.run(Guest::Python, &argv, None, limit)?;
        }
        let (begin, end) = marks
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("{argv:?} ended without marking its workload"))??;
        let (cpu, user) = match (begin.native, end.native) {
            (Some(b), Some(e)) => (e.0.saturating_sub(b.0), e.1.saturating_sub(b.1)),
            _ => (
                end.cpu.0.saturating_sub(begin.cpu.0),
                end.cpu.1.saturating_sub(begin.cpu.1),
            ),
        };
        Ok(Sample {
            wall: end.at - begin.at,
            cpu,
            user,
            peer: begin.peer.zip(end.peer).map(|(b, e)| e.saturating_sub(b)),
        })
    }
}

/// Accepts the script's gate connection and reads its two marks,
/// answering each once it is read.
fn two_marks(listener: &TcpListener, peer_pid: u32) -> Result<(Mark, Mark)> {
    let (mut conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(crate::peer::IO_TIMEOUT))?;
    let mut lines = BufReader::new(conn.try_clone()?);
    let mut mark = |word: &str| -> Result<Mark> {
        let mut line = String::new();
        lines.read_line(&mut line)?;
        let mark = Mark {
            at: Instant::now(),
            cpu: cpu_times(),
            peer: process_cpu_time(peer_pid),
            native: native_cpu(&line),
        };
        if line.split_whitespace().next() != Some(word) {
            return Err(format!("the gate expected {word:?}, got {line:?}").into());
        }
        conn.write_all(b"k")?;
        Ok(mark)
    };
    let begin = mark("begin")?;
    let end = mark("end")?;
    Ok((begin, end))
}

/// `WORD USER SYS` (seconds) as (user + sys, user).
fn native_cpu(line: &str) -> Option<(Duration, Duration)> {
    let mut fields = line.split_whitespace().skip(1);
    let mut secs = || Duration::try_from_secs_f64(fields.next()?.parse().ok()?).ok();
    let (user, sys) = (secs()?, secs()?);
    Some((user + sys, user))
}

/// Runs `command` to its exit (killed past `limit`): its status and CPU
/// time (all, user) from wait4(2).
fn run_child(
    mut command: Command,
    limit: Duration,
) -> Result<(std::process::ExitStatus, (Duration, Duration))> {
    use std::os::unix::process::ExitStatusExt;
    let child = command.spawn()?;
    let pid = child.id();
    child::track(pid);
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) takes no pointers; `pid` is our unreaped
            // child, so the number cannot have been reused.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let mut status = 0;
    // SAFETY: wait4 writes the status and one `rusage` we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid as i32, &mut status, 0, &mut usage);
        usage
    };
    drop(done);
    let _ = watchdog.join();
    child::untrack(pid);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = (tv(usage.ru_utime) + tv(usage.ru_stime), tv(usage.ru_utime));
    Ok((std::process::ExitStatus::from_raw(status), cpu))
}

/// `starts` starts of the script's `start` workload, one after another, as
/// the plugin (`plugin`) or native CPython: wall and CPU time in all.
fn start(plugin: bool, python: &Path, wasm: &Wasm, starts: u64) -> Result<Sample> {
    let argv = args(&[&"sockshim", &"start"]);
    let (mut cpu, mut user) = (Duration::ZERO, Duration::ZERO);
    let began = Instant::now();
    for _ in 0..starts {
        if plugin {
            let before = cpu_times();
            let out = wasm.output(Guest::Python, &argv, Duration::from_secs(60))?;
            let after = cpu_times();
            cpu += after.0.saturating_sub(before.0);
            user += after.1.saturating_sub(before.1);
            if out.trim() != "ready" {
                return Err(format!("the plugin's start printed {out:?}").into());
            }
        } else {
            let mut script = Command::new(python);
            script
                .arg(self::script())
                .args(["native", "start"])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let (status, used) = run_child(script, Duration::from_secs(60))?;
            if !status.success() {
                return Err(format!("native CPython's start failed ({status})").into());
            }
            cpu += used.0;
            user += used.1;
        }
    }
    Ok(Sample {
        wall: began.elapsed(),
        cpu,
        user,
        peer: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_mark_carries_its_cpu_time() {
        let (all, user) = native_cpu("begin 1.250000 0.500000\n").unwrap();
        assert_eq!(all, Duration::from_millis(1750));
        assert_eq!(user, Duration::from_millis(1250));
        assert!(native_cpu("begin\n").is_none());
        assert!(native_cpu("end x y\n").is_none());
    }
}
