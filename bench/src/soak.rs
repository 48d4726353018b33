//! `sockshim-bench --soak [SECONDS]` (issue 26, "Soak"): several echo and
//! file-server plugins, on tokio's reactor and on threads of their own,
//! under concurrent native clients for a while. Every answer is checked;
//! the figures are the requests served, the errors (which must be none),
//! and the process's descriptors and resident memory before the clients
//! start and after they stop. The run fails when a request failed, when
//! none was served, or when descriptors are left over.
//!
//! The plugins run as `sockshim run` runs them, through sockshim's
//! `PluginHost`, in this process; the clients are threads of this process
//! on blocking `std::net` sockets, each request on a new connection.

use crate::{Result, guests, progress};
use sockshim_host::runner::PluginHost;
use sockshim_host::{Policy, SockshimCtx, StopWaits};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime_wasi::p2::pipe::{MemoryOutputPipe, SinkOutputStream};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// `--soak` without a number of seconds.
pub const DEFAULT_SECONDS: u64 = 180;
/// The file the file servers serve.
const FILE_LEN: usize = 64 << 10;
/// Echo clients; each sends 1 B to 256 KiB per connection.
const ECHO_CLIENTS: usize = 4;
/// File clients; each GETs the whole file per connection.
const FILE_CLIENTS: usize = 2;
/// How long a request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the descriptors of the last connections may take to close.
const SETTLE: Duration = Duration::from_secs(30);

/// What a soak did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub seconds: u64,
    pub echoes: u64,
    pub files: u64,
    pub errors: u64,
    pub fds_before: usize,
    pub fds_after: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl Figures {
    pub fn served(&self) -> u64 {
        self.echoes + self.files
    }

    /// Err when the soak failed: an error, nothing served, or descriptors
    /// left over.
    pub fn verdict(&self) -> Result<()> {
        if self.errors > 0 {
            return Err(format!("soak: {} requests failed", self.errors).into());
        }
        if self.served() == 0 {
            return Err("soak: no request was served".into());
        }
        if self.fds_after > self.fds_before {
            return Err(format!(
                "soak: descriptors leaked: {} before, {} after",
                self.fds_before, self.fds_after
            )
            .into());
        }
        Ok(())
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "soak of {} s: {} requests served ({} echoes, {} files), {} errors; \
             descriptors {} -> {}; resident {} -> {} MiB",
            self.seconds,
            self.served(),
            self.echoes,
            self.files,
            self.errors,
            self.fds_before,
            self.fds_after,
            self.rss_before_kib / 1024,
            self.rss_after_kib / 1024,
        )
    }
}

/// `sockshim-bench --soak SECONDS`: runs the soak, prints its figures on
/// stdout, and fails as [`Figures::verdict`] says.
pub fn main(seconds: u64) -> Result<()> {
    let figures = soak(seconds)?;
    let build = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    println!("{figures} ({build} build)");
    figures.verdict()
}

/// Runs the soak for `seconds`; progress and client errors on stderr.
pub fn soak(seconds: u64) -> Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(seconds))
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn loopback() -> Result<Policy> {
    let mut policy = Policy::deny_all();
    for spec in ["127.0.0.0/8:*", "[::1]:*"] {
        let rule = spec.parse().map_err(|e| format!("{spec}: {e}"))?;
        policy = policy.allow_connect(rule);
        policy = policy.allow_bind(spec.parse().map_err(|e| format!("{spec}: {e}"))?);
    }
    Ok(policy)
}

/// One echo exchange of `len` bytes on a new connection.
fn echo(addr: SocketAddr, len: usize) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    let data = pattern(len);
    let mut reader = s.try_clone().map_err(|e| format!("try_clone: {e}"))?;
    let reading = std::thread::spawn(move || {
        let mut back = vec![0; len];
        reader.read_exact(&mut back).map(|()| back)
    });
    s.write_all(&data).map_err(|e| format!("write: {e}"))?;
    let back = reading
        .join()
        .map_err(|_| "the reading thread panicked".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if back != data {
        return Err("echoed bytes differ".into());
    }
    Ok(())
}

/// One GET of `/file.bin` on a new connection; checks status and body.
fn get(addr: SocketAddr, body: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    s.write_all(b"GET /file.bin HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if !response.starts_with(b"HTTP/1.1 200") {
        let head = &response[..response.len().min(40)];
        return Err(format!("status: {}", String::from_utf8_lossy(head)));
    }
    if !response.ends_with(body) {
        return Err("body differs".into());
    }
    Ok(())
}

/// A plugin server running in this process.
struct Server {
    name: String,
    stdout: MemoryOutputPipe,
    task: tokio::task::JoinHandle<wasmtime::Result<i32>>,
    stop: StopWaits,
}

impl Server {
    /// Starts `component` with `args` under the loopback policy, waiting
    /// on its own thread (one of tokio's blocking pool, as `sockshim run`
    /// gives it one) or on the reactor, with `site` preopened as `/site`.
    fn start(
        host: &Arc<PluginHost>,
        component: &Component,
        args: &[&str],
        on_thread: bool,
        site: Option<&Path>,
    ) -> Result<Server> {
        let mut ctx = SockshimCtx::new(loopback()?);
        if on_thread {
            ctx = ctx.waiting_on_thread()?;
        }
        let stop = ctx.stop_waits();
        // Room for the start-up lines; a request log (the file server's, on
        // stderr) is let go.
        let stdout = MemoryOutputPipe::new(1 << 20);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(SinkOutputStream);
        wasi.args(args);
        if let Some(site) = site {
            wasi.preopened_dir(site, "/site", FsPerms::ReadWrite)
                .map_err(|e| format!("preopen {}: {e}", site.display()))?;
        }
        let (host, component) = (Arc::clone(host), component.clone());
        let run = async move { host.run(&component, wasi, ctx).await };
        let task = if on_thread {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(run))
        } else {
            tokio::spawn(run)
        };
        let name = format!(
            "{} ({})",
            args[0],
            if on_thread { "thread" } else { "reactor" }
        );
        Ok(Server {
            name,
            stdout,
            task,
            stop,
        })
    }

    async fn listening_on(&self) -> Result<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = String::from_utf8_lossy(&self.stdout.contents()).into_owned();
            if let Some(addr) = out.lines().find_map(|l| l.strip_prefix("listening on ")) {
                return Ok(addr.trim().parse()?);
            }
            if self.task.is_finished() || Instant::now() > deadline {
                return Err(format!("{} never listened: {out}", self.name).into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the plugin; Err if it had ended before, which a server must
    /// not.
    async fn stop(self) -> Result<()> {
        if self.task.is_finished() {
            let ended = self.task.await;
            return Err(format!("{} ended during the soak: {ended:?}", self.name).into());
        }
        self.stop.stop();
        self.task.abort();
        Ok(())
    }
}

/// The file servers' directory, removed when dropped.
struct Site(PathBuf);

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(seconds: u64) -> Result<Figures> {
    progress("soak: loading the plugins");
    let host = Arc::new(PluginHost::new().map_err(|e| format!("{e:#}"))?);
    let load = |path: &str| -> Result<Component> {
        let dir = Path::new(path)
            .parent()
            .unwrap_or(Path::new("."))
            .join("compiled");
        let cache = sockshim_host::compiled::CompileCache::open(dir).ok();
        host.load_with(Path::new(path), cache.as_ref())
            .map_err(|e| format!("{e:#}").into())
    };
    let (echo_server, file_server) = (load(guests::ECHO_SERVER)?, load(guests::FILE_SERVER)?);
    let site = Site(std::env::temp_dir().join(format!("sockshim-soak-{}", std::process::id())));
    std::fs::create_dir_all(&site.0)?;
    let body = pattern(FILE_LEN);
    std::fs::write(site.0.join("file.bin"), &body)?;

    let echo_args = ["echo-server", "127.0.0.1:0"];
    let file_args = ["file-server", "127.0.0.1:0", "/site"];
    let echoes = vec![
        Server::start(&host, &echo_server, &echo_args, false, None)?,
        Server::start(&host, &echo_server, &echo_args, false, None)?,
        Server::start(&host, &echo_server, &echo_args, true, None)?,
    ];
    let files = vec![
        Server::start(&host, &file_server, &file_args, false, Some(&site.0))?,
        Server::start(&host, &file_server, &file_args, true, Some(&site.0))?,
    ];
    let mut echo_addrs = Vec::new();
    for server in &echoes {
        echo_addrs.push(server.listening_on().await?);
    }
    let mut file_addrs = Vec::new();
    for server in &files {
        file_addrs.push(server.listening_on().await?);
    }
    // One request each first: whatever a first request sets up for good
    // (lazily built state, pools) is there before the count starts.
    for addr in &echo_addrs {
        echo(*addr, 1000)?;
    }
    for addr in &file_addrs {
        get(*addr, &body)?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fds_before, rss_before_kib) = (open_descriptors(), resident_kib());

    progress(&format!(
        "soak: {seconds} s, {} echo and {} file-server plugins, {ECHO_CLIENTS} echo and \
         {FILE_CLIENTS} file clients",
        echoes.len(),
        files.len()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let served_echoes = Arc::new(AtomicU64::new(0));
    let served_files = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..ECHO_CLIENTS + FILE_CLIENTS {
        let (stop, errors) = (stop.clone(), errors.clone());
        let served = if c < ECHO_CLIENTS {
            served_echoes.clone()
        } else {
            served_files.clone()
        };
        let (echo_addrs, file_addrs, body) = (echo_addrs.clone(), file_addrs.clone(), body.clone());
        clients.push(std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let result = if c < ECHO_CLIENTS {
                    // 1 B to 256 KiB.
                    let len = 1 + (i * 7919) % (256 << 10);
                    echo(echo_addrs[(c + i) % echo_addrs.len()], len)
                } else {
                    get(file_addrs[(c + i) % file_addrs.len()], &body)
                };
                match result {
                    Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("soak: client {c}: {e}");
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::task::spawn_blocking(move || client.join())
            .await?
            .map_err(|_| "a client thread panicked")?;
    }
    let deadline = Instant::now() + SETTLE;
    let mut fds_after = open_descriptors();
    while fds_after > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = open_descriptors();
    }
    let figures = Figures {
        seconds,
        echoes: served_echoes.load(Ordering::Relaxed),
        files: served_files.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        fds_before,
        fds_after,
        rss_before_kib,
        rss_after_kib: resident_kib(),
    };
    let mut ended = Vec::new();
    for server in echoes.into_iter().chain(files) {
        if let Err(e) = server.stop().await {
            ended.push(e.to_string());
        }
    }
    // The stopped plugins end at their next wait or epoch: before the
    // runtime shuts down, which their wasi clocks would otherwise find
    // gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if !ended.is_empty() {
        return Err(format!("{figures}\n{}", ended.join("\n")).into());
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The soak itself, for three seconds: both kinds of plugin serve on
    /// both wait modes, with no error and no descriptor left over.
    #[test]
    fn a_short_soak_serves_without_errors_or_leaks() {
        let figures = soak(3).unwrap();
        eprintln!("{figures}");
        figures.verdict().unwrap();
        assert!(figures.echoes > 0 && figures.files > 0, "{figures}");
    }

    #[test]
    fn the_verdict_fails_on_an_error_a_leak_or_nothing_served() {
        let good = Figures {
            seconds: 1,
            echoes: 1,
            files: 1,
            fds_before: 10,
            fds_after: 10,
            ..Figures::default()
        };
        assert!(good.verdict().is_ok());
        let failed = Figures {
            errors: 1,
            ..good.clone()
        };
        assert!(failed.verdict().is_err());
        let leaked = Figures {
            fds_after: 11,
            ..good.clone()
        };
        assert!(leaked.verdict().is_err());
        let idle = Figures {
            echoes: 0,
            files: 0,
            ..good
        };
        assert!(idle.verdict().is_err());
    }
}
