//! The workloads of issue 6: bulk transfer in three directions, 1-byte
//! ping-pong, sending a file, connection rate, and many instances in one
//! host process; and what one host call costs.

use crate::child::{Peer, Proc};
use crate::measure::{Sample, Stats, cpu_time, measure_with_peer, rss_bytes, threads};
use crate::report::{System, Table, Unit, num};
use crate::wasm::{GUEST_DATA_DIR, Guest, Wasm};
use crate::{Config, Result, guests, native, native_async, progress};
use serde_json::{Map, Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The systems compared in the socket workloads, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sys {
    Native,
    /// Native on tokio: the floor of an async host (see `native_async`).
    NativeAsync,
    Guest(Guest),
}

const SOCKET_SYSTEMS: [Sys; 5] = [
    Sys::Native,
    Sys::NativeAsync,
    Sys::Guest(Guest::P2),
    Sys::Guest(Guest::P3),
    Sys::Guest(Guest::Sockshim),
];

fn system(sys: Sys) -> System {
    match sys {
        Sys::Native => System {
            label: "native (Rust std::net)",
            key: "native",
        },
        Sys::NativeAsync => System {
            label: "native async (tokio, reference)",
            key: "native_async",
        },
        Sys::Guest(Guest::P2) => System {
            label: "wasi:sockets 0.2 (guest std::net)",
            key: "wasi_sockets",
        },
        Sys::Guest(Guest::P3) => System {
            label: "wasi:sockets 0.3 (guest wasip3)",
            key: "wasi_sockets_p3",
        },
        Sys::Guest(Guest::Sockshim) => System {
            label: "sockshim",
            key: "sockshim",
        },
        Sys::Guest(Guest::FileServer) => System {
            label: "file-server plugin",
            key: "file_server",
        },
        Sys::Guest(Guest::Python) => System {
            label: "Python plugin",
            key: "python_plugin",
        },
    }
}

/// A generous bound on one run: a minute plus 10 MB/s (or 1 ms per
/// operation); nothing measured here comes near it unless it is stuck.
pub(crate) fn bound(bytes: u64, ops: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(bytes / 10_000_000 * 1000 + ops)
}

/// Runs `run(i, warm_up)` for every system `i` (those `--system` selects),
/// first once as a warm-up, then `cfg.reps` times in rotating order over
/// the selected systems: repetition r starts with the (r mod m)th of the
/// m selected, so with two systems each goes first in every other
/// repetition. `run` returns `None` for a system that cannot run.
pub(crate) fn paired(
    what: &str,
    names: &[System],
    cfg: &Config,
    mut run: impl FnMut(usize, bool) -> Result<Option<Sample>>,
) -> Result<Vec<Vec<Option<Sample>>>> {
    let selected: Vec<usize> = (0..names.len())
        .filter(|&i| cfg.selects(names[i].key))
        .collect();
    progress(&format!("{what}: warm-up"));
    for &i in &selected {
        run(i, true)?;
    }
    let mut samples = vec![vec![None; names.len()]; cfg.reps];
    for (r, rep) in samples.iter_mut().enumerate() {
        progress(&format!("{what}: repetition {}/{}", r + 1, cfg.reps));
        for k in 0..selected.len() {
            let i = selected[(r + k) % selected.len()];
            rep[i] = run(i, false)?;
        }
    }
    Ok(samples)
}

pub(crate) fn args(words: &[&dyn std::fmt::Display]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A guest's `recv`/`serve` arguments; the sockshim guest's receive call
/// is `--sockshim-recv`.
fn recv_args(
    guest: Guest,
    command: &str,
    target: &dyn std::fmt::Display,
    bytes: u64,
    buf: usize,
    cfg: &Config,
) -> Vec<String> {
    let mut argv = args(&[&command, target, &bytes, &buf]);
    if guest == Guest::Sockshim {
        argv.push(cfg.sockshim_recv.clone());
    }
    argv
}

/// A port nobody listens on now (bound and released), for guest servers.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

const WARMUP_BYTES: u64 = 16 << 20;

fn subject_of(systems: &[Sys]) -> Option<usize> {
    systems
        .iter()
        .position(|s| *s == Sys::Guest(Guest::Sockshim))
}

/// A buffer's size in the tables' titles: KiB when it is whole KiB.
fn buffer_size(buf: usize) -> String {
    if buf.is_multiple_of(1024) {
        format!("{} KiB", buf / 1024)
    } else {
        format!("{buf} B")
    }
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// Workload 1: bulk transfer in three directions.
pub fn bulk(wasm: &Wasm, cfg: &Config) -> Result<Vec<Table>> {
    let (bytes, buf) = (cfg.bulk_bytes, cfg.buf);
    let names: Vec<System> = SOCKET_SYSTEMS.iter().copied().map(system).collect();
    let title = |dir: &str| {
        format!(
            "bulk, {dir}: {} per run, {} buffers, {} paired repetitions",
            mib(bytes),
            buffer_size(buf),
            cfg.reps
        )
    };
    let table = |key: &str, dir: &str, samples| Table {
        key: key.into(),
        title: title(dir),
        unit: Unit::Throughput,
        amount: bytes as f64,
        systems: names.clone(),
        subject: subject_of(&SOCKET_SYSTEMS),
        samples,
        notes: vec![],
    };
    let recv_note = format!(
        "(the sockshim guest receives with {})",
        if cfg.sockshim_recv == "recv" {
            "recv(bufsize), a new buffer per call"
        } else {
            "recv_into(buf), one buffer reused"
        }
    );
    let mut tables = Vec::new();

    // Guest → native sink.
    let sink = Peer::start("sink", &[])?;
    let (addr, pid) = (sink.addr(), sink.pid());
    let samples = paired("bulk guest→native", &names, cfg, |i, warm| {
        let n = if warm { WARMUP_BYTES } else { bytes };
        Ok(Some(match SOCKET_SYSTEMS[i] {
            Sys::Native => measure_with_peer(pid, || native::send(&addr, n, buf))?,
            Sys::NativeAsync => measure_with_peer(pid, || {
                native_async::run(wasm.runtime(), native_async::send(addr.clone(), n, buf))
            })?,
            Sys::Guest(g) => measure_with_peer(pid, || {
                wasm.run(g, &args(&[&"send", &addr, &n, &buf]), None, bound(n, 0))
            })?,
        }))
    })?;
    let mut t = table("bulk_guest_to_native", "guest → native sink", samples);
    if cfg.one_cpu {
        t.notes.push(
            "(on one CPU the kernel charges the loopback's receive work to whichever process \
             runs, the sender or its sink, so the senders' CPU moves from run to run: read it \
             with the CPU with peer, or run with --split-cpus, where it is always the sender's)"
                .into(),
        );
    }
    tables.push(t);
    drop(sink);

    // Native source → guest client.
    let source = Peer::start("source", &[bytes.to_string()])?;
    let warm_source = Peer::start("source", &[WARMUP_BYTES.to_string()])?;
    let samples = paired("bulk native→guest client", &names, cfg, |i, warm| {
        let (peer, n) = if warm {
            (&warm_source, WARMUP_BYTES)
        } else {
            (&source, bytes)
        };
        let (addr, pid) = (peer.addr(), peer.pid());
        Ok(Some(match SOCKET_SYSTEMS[i] {
            Sys::Native => measure_with_peer(pid, || native::recv(&addr, n, buf))?,
            Sys::NativeAsync => measure_with_peer(pid, || {
                native_async::run(wasm.runtime(), native_async::recv(addr.clone(), n, buf))
            })?,
            Sys::Guest(g) => measure_with_peer(pid, || {
                wasm.run(
                    g,
                    &recv_args(g, "recv", &addr, n, buf, cfg),
                    None,
                    bound(n, 0),
                )
            })?,
        }))
    })?;
    let mut t = table(
        "bulk_native_to_guest",
        "native source → guest (guest connects)",
        samples,
    );
    t.notes.push(recv_note.clone());
    tables.push(t);
    drop((source, warm_source));

    // Native client → guest server.
    let mut client = Peer::start("client", &[])?;
    let pid = client.pid();
    let samples = paired(
        "bulk native client→guest server",
        &names,
        cfg,
        |i, warm| {
            let n = if warm { WARMUP_BYTES } else { bytes };
            let sample = match SOCKET_SYSTEMS[i] {
                Sys::Native => {
                    let listener = TcpListener::bind("127.0.0.1:0")?;
                    let port = listener.local_addr()?.port();
                    measure_with_peer(pid, || {
                        client.proc.send(&format!("send {port} {n}"))?;
                        native::serve(&listener, n, buf)?;
                        client.proc.expect("done", bound(n, 0)).map(drop)
                    })?
                }
                Sys::NativeAsync => {
                    let listener = TcpListener::bind("127.0.0.1:0")?;
                    let port = listener.local_addr()?.port();
                    measure_with_peer(pid, || {
                        client.proc.send(&format!("send {port} {n}"))?;
                        native_async::run(wasm.runtime(), native_async::serve(listener, n, buf))?;
                        client.proc.expect("done", bound(n, 0)).map(drop)
                    })?
                }
                Sys::Guest(g) => {
                    let port = free_port()?;
                    measure_with_peer(pid, || {
                        let server =
                            wasm.start(g, &recv_args(g, "serve", &port, n, buf, cfg), None);
                        client.proc.send(&format!("send {port} {n}"))?;
                        wasm.wait(server, bound(n, 0))?;
                        client.proc.expect("done", bound(n, 0)).map(drop)
                    })?
                }
            };
            Ok(Some(sample))
        },
    )?;
    let mut t = table(
        "bulk_native_client_to_guest_server",
        "native client → guest server (guest listens)",
        samples,
    );
    t.notes.push(recv_note);
    t.notes.push(
        "(a run includes the guest's start and the client's connect retries until it listens)"
            .into(),
    );
    tables.push(t);
    Ok(tables)
}

/// Workload 2: 1-byte ping-pong.
pub fn pingpong(wasm: &Wasm, cfg: &Config) -> Result<Vec<Table>> {
    let iters = cfg.pingpong;
    let names: Vec<System> = SOCKET_SYSTEMS.iter().copied().map(system).collect();
    let echo = Peer::start("echo", &[])?;
    let (addr, pid) = (echo.addr(), echo.pid());
    let samples = paired("ping-pong", &names, cfg, |i, warm| {
        let n = if warm { iters / 10 } else { iters };
        Ok(Some(match SOCKET_SYSTEMS[i] {
            Sys::Native => measure_with_peer(pid, || native::pingpong(&addr, n))?,
            Sys::NativeAsync => measure_with_peer(pid, || {
                native_async::run(wasm.runtime(), native_async::pingpong(addr.clone(), n))
            })?,
            Sys::Guest(g) => measure_with_peer(pid, || {
                wasm.run(g, &args(&[&"pingpong", &addr, &n]), None, bound(0, n))
            })?,
        }))
    })?;
    Ok(vec![Table {
        key: "pingpong".into(),
        title: format!(
            "ping-pong: 1 byte each way, {iters} round trips per run, {} paired repetitions",
            cfg.reps
        ),
        unit: Unit::RoundTrip,
        amount: iters as f64,
        systems: names,
        subject: subject_of(&SOCKET_SYSTEMS),
        samples,
        notes: vec![
            "(native and sockshim set TCP_NODELAY, wasi:sockets 0.2/0.3 cannot; the peer sets it)"
                .into(),
        ],
    }])
}

/// Workload 4: connect, exchange one byte each way, close.
pub fn connrate(wasm: &Wasm, cfg: &Config) -> Result<Vec<Table>> {
    let count = cfg.connections;
    let names: Vec<System> = SOCKET_SYSTEMS.iter().copied().map(system).collect();
    let once = Peer::start("once", &[])?;
    let (addr, pid) = (once.addr(), once.pid());
    let samples = paired("connection rate", &names, cfg, |i, warm| {
        let n = if warm { count / 10 } else { count };
        Ok(Some(match SOCKET_SYSTEMS[i] {
            Sys::Native => measure_with_peer(pid, || native::connrate(&addr, n))?,
            Sys::NativeAsync => measure_with_peer(pid, || {
                native_async::run(wasm.runtime(), native_async::connrate(addr.clone(), n))
            })?,
            Sys::Guest(g) => measure_with_peer(pid, || {
                wasm.run(g, &args(&[&"connrate", &addr, &n]), None, bound(0, n * 5))
            })?,
        }))
    })?;
    Ok(vec![Table {
        key: "connection_rate".into(),
        title: format!(
            "connection rate: connect + 1-byte exchange + close, {count} per run, {} paired repetitions",
            cfg.reps
        ),
        unit: Unit::Rate,
        amount: count as f64,
        systems: names,
        subject: subject_of(&SOCKET_SYSTEMS),
        samples,
        notes: vec!["(the peer closes first, so TIME_WAIT stays on its side)".into()],
    }])
}

/// What one call from the sockshim guest to the host costs, by kind: the
/// guest's `calls N` command, which times N calls of each kind (see its
/// module documentation), beside the system call one of them makes
/// (getsockopt(2)) timed natively in this process, in alternating order.
/// These are the per-call costs that the CPU figures of the other workloads
/// add up; they are not compared with other systems.
pub fn hostcalls(wasm: &Wasm, cfg: &Config) -> Result<(String, Value)> {
    let n: u32 = if cfg.quick { 200_000 } else { 1_000_000 };
    let calls = || {
        wasm.output(
            Guest::Sockshim,
            &args(&[&"calls", &n]),
            bound(0, u64::from(n) / 100),
        )
    };
    progress("host calls: warm-up");
    calls()?;
    // (key, description) in the guest's order, then ns per call per
    // repetition.
    let mut kinds: Vec<(String, String)> = Vec::new();
    let mut values: Vec<Vec<f64>> = Vec::new();
    let mut native_ns = Vec::new();
    for r in 0..cfg.reps {
        progress(&format!("host calls: repetition {}/{}", r + 1, cfg.reps));
        // Alternate which goes first.
        let lines = if r % 2 == 0 {
            native_ns.push(native::getsockopt_ns(n)?);
            calls()?
        } else {
            let lines = calls()?;
            native_ns.push(native::getsockopt_ns(n)?);
            lines
        };
        let parsed = parse_calls(&lines)?;
        if kinds.is_empty() {
            kinds = parsed
                .iter()
                .map(|(k, d, _)| (k.clone(), d.clone()))
                .collect();
            values = vec![Vec::new(); kinds.len()];
        }
        if parsed.len() != kinds.len() || parsed.iter().zip(&kinds).any(|(p, k)| p.0 != k.0) {
            return Err(format!("the guest's calls changed between repetitions: {lines}").into());
        }
        for (v, (_, _, ns)) in values.iter_mut().zip(parsed) {
            v.push(ns);
        }
    }
    let kind = |key: &str| {
        kinds
            .iter()
            .position(|(k, _)| k == key)
            .ok_or_else(|| format!("the guest timed no {key}"))
    };
    let minus =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a - b).collect() };
    // The host's part of get-option: the call minus its system call; and
    // sendall's, cold: the write and the call minus the write; per
    // repetition.
    let overhead = minus(&values[kind("get_option")?], &native_ns);
    let cold = minus(
        &values[kind("write_256k_then_sendall_empty")?],
        &values[kind("write_256k")?],
    );

    let mut text = format!(
        "host calls: what one call from the sockshim guest costs, {n} calls per kind, {} \
         repetitions (ns per call: median (min–max))\n",
        cfg.reps
    );
    let mut json = Map::new();
    json.insert("calls_per_kind".into(), json!(n));
    let mut spread = Map::new();
    // (label, JSON key, ns per call per repetition)
    let mut rows: Vec<(String, String, &[f64])> = kinds
        .iter()
        .zip(&values)
        .map(|((key, what), v)| (format!("sockshim: {what}"), key.clone(), v.as_slice()))
        .collect();
    rows.push((
        "native: getsockopt(2) alone".into(),
        "native_getsockopt".into(),
        &native_ns,
    ));
    rows.push((
        "get-option's host part (get-option minus getsockopt(2))".into(),
        "get_option_host_part".into(),
        &overhead,
    ));
    rows.push((
        "sendall of an empty list after a 256 KiB write (minus the write)".into(),
        "sendall_empty_cold".into(),
        &cold,
    ));
    let width = rows
        .iter()
        .map(|(label, _, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    for (label, key, v) in rows {
        let st = Stats::of(v);
        text.push_str(&format!(
            "  {label:<width$} {:>7} ({}–{})\n",
            num(st.median),
            num(st.min),
            num(st.max)
        ));
        json.insert(format!("{key}_ns"), json!(st.median));
        spread.insert(format!("{key}_ns"), json!([st.min, st.max]));
    }
    json.insert("spread".into(), Value::Object(spread));
    text.push_str(
        "  (timed in the guest with its clock; the transfer calls are made on an unconnected \
         socket with nothing to move, so they measure the host-call path of recv and sendall \
         without their system calls)\n",
    );
    Ok((text, Value::Object(json)))
}

/// The guest's `calls` lines, `KEY NS DESCRIPTION`, as (key, description,
/// ns per call).
fn parse_calls(out: &str) -> Result<Vec<(String, String, f64)>> {
    let parsed: Vec<_> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            match (
                words.next(),
                words.next().map(str::parse::<f64>),
                words.next(),
            ) {
                (Some(key), Some(Ok(ns)), Some(what)) => {
                    Ok((key.to_string(), what.to_string(), ns))
                }
                _ => Err(format!(
                    "a line of the guest's calls that does not parse: {line:?}"
                )),
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    if parsed.is_empty() {
        return Err("the guest's calls printed nothing".into());
    }
    Ok(parsed)
}

/// A file of `bytes` bytes in a directory of its own, removed on drop.
pub struct DataFile {
    dir: PathBuf,
    pub path: PathBuf,
}

pub const DATA_FILE: &str = "data.bin";

impl DataFile {
    pub fn create(bytes: u64) -> Result<DataFile> {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("sockshim-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        crate::set_temp_dir(Some(dir.clone()));
        let path = dir.join(DATA_FILE);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(DataFile { dir, path })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        crate::set_temp_dir(None);
    }
}

/// Workload 3: sending a file.
pub fn sendfile(wasm: &Wasm, cfg: &Config) -> Result<Vec<Table>> {
    #[derive(Clone, Copy)]
    enum Way {
        NativeSendfile,
        NativeReadWrite,
        GuestReadWrite(Guest),
        SockshimSendfile,
    }
    let ways = [
        Way::NativeSendfile,
        Way::NativeReadWrite,
        Way::GuestReadWrite(Guest::P2),
        Way::GuestReadWrite(Guest::Sockshim),
        Way::SockshimSendfile,
    ];
    let names = vec![
        System {
            label: "native sendfile(2)",
            key: "native_sendfile",
        },
        System {
            label: "native read+write loop",
            key: "native_read_write",
        },
        System {
            label: "guest std::fs + wasi:sockets 0.2",
            key: "wasi_sockets_read_write",
        },
        System {
            label: "guest std::fs + sockshim sendall",
            key: "guest_read_sendall",
        },
        System {
            label: "guest sockshim sendfile",
            key: "sockshim_sendfile",
        },
    ];
    let (bytes, buf) = (cfg.sendfile_bytes, cfg.buf);
    progress(&format!("sendfile: writing a {} file", mib(bytes)));
    let data = DataFile::create(bytes)?;
    let warm = DataFile::create_warm(&data)?;
    let sink = Peer::start("sink", &[])?;
    let (addr, pid) = (sink.addr(), sink.pid());
    let samples = paired("sendfile", &names, cfg, |i, is_warm| {
        let (host_path, n) = if is_warm {
            (warm.clone(), WARMUP_BYTES)
        } else {
            (data.path.clone(), bytes)
        };
        let name = host_path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(DATA_FILE);
        let guest_path = format!("{GUEST_DATA_DIR}/{name}");
        let dir = Some(data.dir());
        let sample = match ways[i] {
            Way::NativeSendfile => measure_with_peer(pid, || native::sendfile(&addr, &host_path))?,
            Way::NativeReadWrite => {
                measure_with_peer(pid, || native::read_write(&addr, &host_path, buf))?
            }
            Way::GuestReadWrite(g) => measure_with_peer(pid, || {
                wasm.run(
                    g,
                    &args(&[&"filesend", &addr, &guest_path, &buf]),
                    dir,
                    bound(n, 0),
                )
            })?,
            Way::SockshimSendfile if !guests::SOCKSHIM_SENDFILE => return Ok(None),
            Way::SockshimSendfile => measure_with_peer(pid, || {
                wasm.run(
                    Guest::Sockshim,
                    &args(&[&"sendfile", &addr, &guest_path]),
                    dir,
                    bound(n, 0),
                )
            })?,
        };
        Ok(Some(sample))
    })?;
    let mut notes = vec![
        "(the file is in the page cache; guests read it through a preopened directory)".into(),
    ];
    if !guests::SOCKSHIM_SENDFILE {
        notes.push(
            "(guest sockshim sendfile: n/a, the guest crate has no Socket::sendfile yet)".into(),
        );
    }
    Ok(vec![Table {
        key: "sendfile".into(),
        title: format!(
            "sendfile: a {} file to a native sink, {} buffers for the loops, {} paired repetitions",
            mib(bytes),
            buffer_size(buf),
            cfg.reps
        ),
        unit: Unit::Throughput,
        amount: bytes as f64,
        systems: names,
        subject: guests::SOCKSHIM_SENDFILE.then_some(4),
        samples,
        notes,
    }])
}

impl DataFile {
    /// A small file beside `data` for warm-up runs.
    fn create_warm(data: &DataFile) -> Result<PathBuf> {
        let path = data.dir.join("warm.bin");
        std::fs::write(&path, vec![0x77u8; WARMUP_BYTES as usize])?;
        Ok(path)
    }
}

/// What one scale run measured, as the `scale-child` process reports it.
struct ScaleRun {
    mbps: f64,
    cpu_s_per_gib: f64,
    threads_before: f64,
    threads: f64,
    kib_per_instance: f64,
    kib_per_idle: f64,
    setup_ms: f64,
    exit_ms: f64,
}

/// Who runs the instances of the scale workload, in this order: the same
/// instances as native tasks (`native_async::scale`) on a runtime built as
/// the host's ([`crate::wasm::host_runtime`]), what the kernel and the
/// runtime cost at that scale without wasm; then the three kinds of guest,
/// each on the host's runtime and waiting on its reactor.
const SCALE_SYSTEMS: [Sys; 4] = [
    Sys::NativeAsync,
    Sys::Guest(Guest::P2),
    Sys::Guest(Guest::P3),
    Sys::Guest(Guest::Sockshim),
];

/// sockshim's place in [`SCALE_SYSTEMS`]: the subject of the ratios.
const SCALE_SUBJECT: usize = 3;

/// One N of the scale workload: `runs[i]` holds the repetitions of
/// `SCALE_SYSTEMS[i]` (none if `--system` left it out). Each repetition
/// runs the systems back to back in rotating order, and the ratios are
/// taken per repetition.
struct ScalePoint {
    runs: Vec<Vec<ScaleRun>>,
}

impl ScalePoint {
    fn stats(&self, system: usize, f: fn(&ScaleRun) -> f64) -> Stats {
        Stats::of(&self.runs[system].iter().map(f).collect::<Vec<_>>())
    }

    /// sockshim ÷ `other` of `f`, per repetition.
    fn ratio(&self, other: usize, f: fn(&ScaleRun) -> f64) -> Stats {
        let ratios: Vec<f64> = self.runs[SCALE_SUBJECT]
            .iter()
            .zip(&self.runs[other])
            .map(|(s, o)| f(s) / f(o))
            .collect();
        Stats::of(&ratios)
    }
}

/// Workload 5: N instances in one host process, for each kind of guest,
/// beside the same number of native tasks in one process. Each point is
/// measured in a fresh process (`scale-child`), so memory and thread counts
/// are not those left behind by earlier workloads.
pub fn scale(cfg: &Config) -> Result<(String, Value)> {
    let selected: Vec<usize> = (0..SCALE_SYSTEMS.len())
        .filter(|&i| cfg.selects(system(SCALE_SYSTEMS[i]).key))
        .collect();
    if selected.is_empty() {
        return Err("scale: --system selects none of its systems".into());
    }
    let mut text = format!(
        "scale: N instances in one process per system (sockshim, wasi:sockets 0.2 and 0.3 \
         guests on the host's runtime; native tokio tasks), each echoing through a native peer \
         on one connection and holding {} idle ones; {} echoed in all per run, {} KiB \
         messages; {} repetitions; {} allocator\n",
        cfg.scale_idle,
        mib(cfg.scale_bytes),
        cfg.scale_msg / 1024,
        cfg.reps,
        if cfg.pooling { "pooling" } else { "on-demand" },
    );
    text.push_str(&format!(
        "  {:>9}  {:<34} {:>7} {:>9} {:>11} {:>10} {:>9} {:>7} {:>7}\n",
        "instances",
        "system",
        "MB/s",
        "CPU s/GiB",
        "threads",
        "KiB/inst.",
        "KiB/idle",
        "setup",
        "exit",
    ));
    let mut json = Map::new();
    json.insert("pooling_allocator".into(), json!(cfg.pooling));
    json.insert(
        "idle_connections_per_instance".into(),
        json!(cfg.scale_idle),
    );
    json.insert("bytes_echoed_per_run".into(), json!(cfg.scale_bytes));
    let pair = |s: Stats| json!([s.min, s.max]);
    for &n in &cfg.scale {
        let mut point = ScalePoint {
            runs: SCALE_SYSTEMS.iter().map(|_| Vec::new()).collect(),
        };
        for r in 0..cfg.reps {
            progress(&format!("scale {n}: repetition {}/{}", r + 1, cfg.reps));
            let mut order = selected.clone();
            order.rotate_left(r % selected.len());
            for i in order {
                point.runs[i].push(scale_run(cfg, n, SCALE_SYSTEMS[i])?);
            }
        }
        let (mut figures, mut spread) = (Map::new(), Map::new());
        for (row, &i) in selected.iter().enumerate() {
            let System { label, key } = system(SCALE_SYSTEMS[i]);
            // sockshim's figures keep the unprefixed keys they always had.
            let name = |figure: &str| match i == SCALE_SUBJECT {
                true => figure.to_string(),
                false => format!("{key}_{figure}"),
            };
            let stats = |f: fn(&ScaleRun) -> f64| point.stats(i, f);
            let (mbps, cpu) = (stats(|r| r.mbps), stats(|r| r.cpu_s_per_gib));
            let (threads, threads_before) = (stats(|r| r.threads), stats(|r| r.threads_before));
            let (per_inst, per_idle) = (stats(|r| r.kib_per_instance), stats(|r| r.kib_per_idle));
            let (setup, exit) = (stats(|r| r.setup_ms), stats(|r| r.exit_ms));
            text.push_str(&format!(
                "  {:>9}  {:<34} {:>7.0} {:>9.3} {:>11} {:>10.1} {:>9.2} {:>7} {:>7}\n",
                if row == 0 {
                    n.to_string()
                } else {
                    String::new()
                },
                label,
                mbps.median,
                cpu.median,
                format!("{} (max {})", threads.median, threads.max),
                per_inst.median,
                per_idle.median,
                format!("{:.0} ms", setup.median),
                format!("{:.0} ms", exit.median),
            ));
            let mbps_key = match i == SCALE_SUBJECT {
                true => "aggregate_mbps".to_string(),
                false => name("mbps"),
            };
            let figure_stats = [
                (mbps_key, mbps),
                (name("cpu_s_per_gib"), cpu),
                (name("threads"), threads),
                (name("threads_before"), threads_before),
                (name("rss_kib_per_instance"), per_inst),
                (name("rss_kib_per_idle_connection"), per_idle),
                (name("setup_ms"), setup),
                (name("exit_ms"), exit),
            ];
            for (k, s) in figure_stats {
                figures.insert(k.clone(), json!(s.median));
                spread.insert(k, pair(s));
            }
        }
        if selected.contains(&SCALE_SUBJECT) {
            for &i in selected.iter().filter(|&&i| i != SCALE_SUBJECT) {
                let other = system(SCALE_SYSTEMS[i]);
                let throughput = point.ratio(i, |r| r.mbps);
                let cpu = point.ratio(i, |r| r.cpu_s_per_gib);
                let spread_of = |s: Stats| format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max);
                text.push_str(&format!(
                    "  {:>9}  sockshim ÷ {}: throughput {}, CPU {}\n",
                    "",
                    other.label,
                    spread_of(throughput),
                    spread_of(cpu),
                ));
                for (k, s) in [
                    (format!("vs_{}", other.key), throughput),
                    (format!("cpu_vs_{}", other.key), cpu),
                ] {
                    figures.insert(k.clone(), json!(s.median));
                    spread.insert(k, pair(s));
                }
            }
        }
        figures.insert("spread".into(), Value::Object(spread));
        json.insert(format!("instances_{n}"), Value::Object(figures));
    }
    text.push_str(
        "  (MB/s: the echo's aggregate throughput, until the peer saw every instance close its \
         connection; each system in a process of its own, run back to back in rotating order; \
         sockshim ÷ …: per repetition, median (min–max). threads: the process's OS threads with \
         every instance connected and idle; KiB/inst.: resident memory added per instance with \
         its connection; KiB/idle: added per further idle connection; setup: until every \
         instance is connected; exit: from the echo's end until every instance has exited and \
         been dropped)\n",
    );
    Ok((text, Value::Object(json)))
}

fn scale_run(cfg: &Config, n: u32, sys: Sys) -> Result<ScaleRun> {
    let per_instance = (cfg.scale_bytes / u64::from(n)).max(cfg.scale_msg as u64);
    let proc = Proc::spawn(&args(&[
        &"scale-child",
        &system(sys).key,
        &n,
        &cfg.scale_idle,
        &per_instance,
        &cfg.scale_msg,
        &cfg.pooling,
    ]))?;
    let line = proc.expect("result", Duration::from_secs(600))?;
    let v: Value = serde_json::from_str(&line)?;
    let f = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("scale-child: no {k} in {line}"))
    };
    let (rss0, rss1, rss2) = (f("rss_before")?, f("rss_ready")?, f("rss_idle")?);
    let idle = (u64::from(n) * cfg.scale_idle as u64).max(1) as f64;
    let bytes = per_instance as f64 * f64::from(n);
    Ok(ScaleRun {
        mbps: bytes / f("echo_s")? / 1e6,
        cpu_s_per_gib: f("echo_cpu_s")? / (bytes / (1u64 << 30) as f64),
        threads_before: f("threads_before")?,
        threads: f("threads_idle")?.max(f("threads_ready")?),
        kib_per_instance: (rss1 - rss0) / 1024.0 / f64::from(n),
        kib_per_idle: (rss2 - rss1) / 1024.0 / idle,
        setup_ms: f("setup_s")? * 1e3,
        exit_ms: f("exit_s")? * 1e3,
    })
}

/// The process that runs the instances of one scale run, and those it
/// started.
enum ScaleHost {
    Guests {
        wasm: Box<Wasm>,
        guest: Guest,
        tasks: Vec<crate::wasm::Started>,
    },
    /// On [`crate::wasm::host_runtime`], as the guests run.
    NativeAsync {
        runtime: tokio::runtime::Runtime,
        tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    },
}

impl ScaleHost {
    fn new(sys: Sys, n: u32, pooling: bool) -> Result<ScaleHost> {
        Ok(match sys {
            Sys::Guest(guest) => {
                let wasm = Wasm::new(pooling, n)?;
                // Fault in the code and the instantiation path before the
                // baseline.
                wasm.run(guest, &args(&[&"noop"]), None, bound(0, 0))?;
                ScaleHost::Guests {
                    wasm: Box::new(wasm),
                    guest,
                    tasks: Vec::new(),
                }
            }
            Sys::NativeAsync => ScaleHost::NativeAsync {
                runtime: crate::wasm::host_runtime()?,
                tasks: Vec::new(),
            },
            Sys::Native => return Err("scale: native std::net has no scale run".into()),
        })
    }

    /// Starts `n` instances echoing `bytes` each through the peer at `addr`.
    fn start(&mut self, n: u32, addr: &str, idle: usize, bytes: u64, msg: usize) {
        match self {
            ScaleHost::Guests { wasm, guest, tasks } => {
                let guest_args = args(&[&"scale", &addr, &idle, &bytes, &msg]);
                tasks.extend((0..n).map(|_| wasm.start(*guest, &guest_args, None)));
            }
            ScaleHost::NativeAsync { runtime, tasks } => {
                tasks
                    .extend((0..n).map(|_| {
                        runtime.spawn(native_async::scale(addr.into(), idle, bytes, msg))
                    }));
            }
        }
    }

    /// Waits at most `timeout` for each instance started.
    fn wait(self, timeout: Duration) -> Result<()> {
        match self {
            ScaleHost::Guests { wasm, tasks, .. } => {
                for task in tasks {
                    wasm.wait(task, timeout)?;
                }
            }
            ScaleHost::NativeAsync { runtime, tasks } => {
                for task in tasks {
                    crate::wasm::wait_for(&runtime, task, timeout)?;
                }
            }
        }
        Ok(())
    }
}

/// `sockshim-bench scale-child SYSTEM N IDLE BYTES MSG POOLING`: one scale
/// run in this process, SYSTEM the JSON key of one of [`SCALE_SYSTEMS`];
/// prints `result {json}`.
pub fn scale_child(argv: &[String]) -> Result<()> {
    let [system, n, idle, bytes, msg, pooling] = argv else {
        return Err(format!("scale-child: bad arguments {argv:?}").into());
    };
    let sys = SCALE_SYSTEMS
        .into_iter()
        .find(|&s| self::system(s).key == system)
        .ok_or_else(|| format!("scale-child: no system {system:?}"))?;
    let n: u32 = n.parse()?;
    let (idle_n, bytes, msg): (usize, u64, usize) = (idle.parse()?, bytes.parse()?, msg.parse()?);
    let mut host = ScaleHost::new(sys, n, pooling.parse()?)?;
    let mut peer = Peer::start("scale", &args(&[&n, idle]))?;
    let (rss_before, threads_before) = (rss_bytes(), threads());
    let start = Instant::now();
    host.start(n, &peer.addr(), idle_n, bytes, msg);
    let setup_bound = Duration::from_secs(120);
    peer.proc.expect("ready1", setup_bound)?;
    let setup_s = start.elapsed().as_secs_f64();
    let (rss_ready, threads_ready) = (rss_bytes(), threads());
    peer.proc.send("idle")?;
    peer.proc.expect("ready2", setup_bound)?;
    let (rss_idle, threads_idle) = (rss_bytes(), threads());
    let (cpu0, t0) = (cpu_time(), Instant::now());
    peer.proc.send("go")?;
    // The echo ends when the peer has seen every main connection close;
    // the instances' exit (for sockshim, dropping each store: its memory,
    // tables and idle sockets) is timed apart.
    let bound = bound(u64::from(n) * bytes, 0);
    let echoed = peer.proc.expect("done", bound);
    let echo_s = t0.elapsed().as_secs_f64();
    let echo_cpu_s = (cpu_time() - cpu0).as_secs_f64();
    let t1 = Instant::now();
    // A failed instance's error says more than the peer's silence.
    host.wait(bound)?;
    echoed?;
    let exit_s = t1.elapsed().as_secs_f64();
    let result = json!({
        "rss_before": rss_before, "rss_ready": rss_ready, "rss_idle": rss_idle,
        "threads_before": threads_before, "threads_ready": threads_ready,
        "threads_idle": threads_idle, "threads_after": threads(),
        "setup_s": setup_s, "echo_s": echo_s, "echo_cpu_s": echo_cpu_s, "exit_s": exit_s,
    });
    println!("result {result}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mbps: f64, cpu_s_per_gib: f64) -> ScaleRun {
        ScaleRun {
            mbps,
            cpu_s_per_gib,
            threads_before: 0.0,
            threads: 0.0,
            kib_per_instance: 0.0,
            kib_per_idle: 0.0,
            setup_ms: 0.0,
            exit_ms: 0.0,
        }
    }

    #[test]
    fn two_selected_systems_take_turns_going_first() {
        // Five systems, two selected (p3 and sockshim): before, the
        // rotation was over all five, and p3 went first in four
        // repetitions of every five.
        let names: Vec<System> = SOCKET_SYSTEMS.iter().copied().map(system).collect();
        let argv = ["--system", "wasi_sockets_p3,sockshim", "--reps", "4"];
        let cfg = crate::Config::parse(&argv.map(String::from)).unwrap();
        let mut order = Vec::new();
        let samples = paired("order", &names, &cfg, |i, warm| {
            if !warm {
                order.push(names[i].key);
            }
            Ok(None)
        })
        .unwrap();
        assert_eq!(samples.len(), 4);
        let firsts: Vec<&str> = order.chunks(2).map(|pair| pair[0]).collect();
        assert_eq!(
            firsts,
            ["wasi_sockets_p3", "sockshim", "wasi_sockets_p3", "sockshim"]
        );
        assert!(order.chunks(2).all(|pair| pair[0] != pair[1]));
    }

    #[test]
    fn scale_ratios_pair_the_runs_of_one_repetition() {
        // Repetition 1 ran fast for every system, repetition 2 slow:
        // sockshim is 0.5x native in each, though its fast run beats
        // native's slow one.
        let mut runs: Vec<Vec<ScaleRun>> = SCALE_SYSTEMS.iter().map(|_| Vec::new()).collect();
        runs[0] = vec![run(400.0, 1.0), run(100.0, 4.0)];
        runs[SCALE_SUBJECT] = vec![run(200.0, 2.0), run(50.0, 8.0)];
        let point = ScalePoint { runs };
        let throughput = point.ratio(0, |r| r.mbps);
        assert_eq!((throughput.min, throughput.max), (0.5, 0.5));
        assert_eq!(point.ratio(0, |r| r.cpu_s_per_gib).median, 2.0);
    }

    #[test]
    fn the_scale_subject_is_sockshim() {
        assert_eq!(system(SCALE_SYSTEMS[SCALE_SUBJECT]).key, "sockshim");
    }

    #[test]
    fn buffer_sizes_are_named_in_kib_when_whole() {
        assert_eq!(buffer_size(65536), "64 KiB");
        assert_eq!(buffer_size(1 << 20), "1024 KiB");
        assert_eq!(buffer_size(1000), "1000 B");
    }

    #[test]
    fn the_guests_call_lines_parse_in_order() {
        let out = "max_recv_size 136.2 max-recv-size (no resource)\n\
                   get_option 1021.0 get-option (a borrow and getsockopt(2))\n";
        let parsed = parse_calls(out).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "max_recv_size");
        assert_eq!(parsed[0].1, "max-recv-size (no resource)");
        assert_eq!(parsed[0].2, 136.2);
        assert_eq!(parsed[1].2, 1021.0);
    }

    #[test]
    fn calls_output_that_does_not_parse_is_an_error() {
        assert!(parse_calls("").is_err());
        assert!(parse_calls("max-recv-size (no resource): 136 ns per call\n").is_err());
        assert!(parse_calls("family 12.5\n").is_err());
    }
}
