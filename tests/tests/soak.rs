//! Issue 26, Proof of the boundary, "Soak": several echo and file-server
//! plugins (on the reactor and on their own threads) under concurrent
//! native clients for a while; every answer checked, no error, and the
//! host's descriptors and resident memory at the end against the start.
//!
//! Ignored by default (it runs for minutes):
//!
//! ```sh
//! SOCKSHIM_SOAK_SECONDS=180 cargo test -p sockshim-tests --test soak -- --ignored --nocapture
//! ```

use sockshim_host::SockshimCtx;
use sockshim_test_artifacts::FILE_SERVER;
use sockshim_tests::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// One echo exchange of `len` bytes on a new connection.
fn echo(addr: SocketAddr, len: usize) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let data = pattern(len);
    let mut reader = s.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut back = vec![0; len];
        reader.read_exact(&mut back).map(|()| back)
    });
    s.write_all(&data).map_err(|e| format!("write: {e}"))?;
    let back = reading.join().unwrap().map_err(|e| format!("read: {e}"))?;
    if back != data {
        return Err("echoed bytes differ".into());
    }
    Ok(())
}

/// One GET of `/file.bin` on a new connection; checks status and body.
fn get(addr: SocketAddr, body: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /file.bin HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "status: {}",
            String::from_utf8_lossy(&response[..response.len().min(40)])
        ));
    }
    if !response.ends_with(body) {
        return Err("body differs".into());
    }
    Ok(())
}

/// The file server on a thread of its own, its request log (a line a
/// request, more than the harness's captured stderr holds in a soak) let go.
struct FileServer {
    stdout: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    task: tokio::task::JoinHandle<wasmtime::Result<i32>>,
    stop: sockshim_host::StopWaits,
}

impl FileServer {
    fn start(site: &std::path::Path) -> FileServer {
        let ctx = SockshimCtx::new(loopback()).waiting_on_thread().unwrap();
        let stop = ctx.stop_waits();
        let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(wasmtime_wasi::p2::pipe::SinkOutputStream);
        wasi.args(&["file-server", "127.0.0.1:0", "/site"]);
        wasi.preopened_dir(site, "/site", wasmtime_wasi::FsPerms::ReadWrite)
            .unwrap();
        let component = component(FILE_SERVER);
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            runtime.block_on(host().run(&component, wasi, ctx))
        });
        FileServer { stdout, task, stop }
    }

    async fn listening_on(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = String::from_utf8_lossy(&self.stdout.contents()).into_owned();
            if let Some(addr) = out.lines().find_map(|l| l.strip_prefix("listening on ")) {
                return addr.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "the file server never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of minutes: run it with --ignored"]
async fn soak() {
    let seconds: u64 = std::env::var("SOCKSHIM_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let site = TempDir::new("soak");
    let body = pattern(64 << 10);
    site.write("file.bin", &body);

    let on_thread = || SockshimCtx::new(loopback()).waiting_on_thread().unwrap();
    let servers = vec![
        spawn(ECHO_SERVER, &["127.0.0.1:0"], loopback()),
        spawn(ECHO_SERVER, &["127.0.0.1:0"], loopback()),
        spawn_with(ECHO_SERVER, &["127.0.0.1:0"], on_thread()),
    ];
    let mut echo_addrs = Vec::new();
    for server in &servers {
        echo_addrs.push(server.listening_on().await);
    }
    let file_server = FileServer::start(site.path());
    let file_addr = file_server.listening_on().await;
    for addr in &echo_addrs {
        echo(*addr, 1000).unwrap();
    }
    get(file_addr, &body).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fds_before, rss_before) = (open_descriptors(), resident_kib());

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..6usize {
        let (stop, served, errors) = (stop.clone(), served.clone(), errors.clone());
        let echo_addrs = echo_addrs.clone();
        let body = body.clone();
        clients.push(std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let result = if c < 4 {
                    // 1 B to 256 KiB.
                    let len = 1 + (i * 7919) % (256 << 10);
                    echo(echo_addrs[(c + i) % echo_addrs.len()], len)
                } else {
                    get(file_addr, &body)
                };
                match result {
                    Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("client {c}: {e}");
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
        tokio::task::spawn_blocking(move || client.join().unwrap())
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fds_after = open_descriptors();
    while fds_after > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = open_descriptors();
    }
    let rss_after = resident_kib();
    let (served, errors) = (
        served.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "soak of {seconds} s: {served} requests served, {errors} errors; \
         descriptors {fds_before} -> {fds_after}; resident {rss_before} KiB -> {rss_after} KiB"
    );
    if file_server.task.is_finished() {
        eprintln!("the file server ended: {:?}", file_server.task.await);
    } else {
        file_server.stop.stop();
        let _ = tokio::time::timeout(Duration::from_secs(10), file_server.task).await;
    }
    for server in servers {
        server.stop();
    }
    // The stopped plugins end at their next wait or epoch: before the
    // runtime shuts down, which their wasi clocks would otherwise find
    // gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(errors, 0);
    assert!(served > 0);
    assert!(fds_after <= fds_before, "{fds_before} -> {fds_after}");
    assert!(
        rss_after < rss_before + 256 * 1024,
        "{rss_before} -> {rss_after} KiB"
    );
}
