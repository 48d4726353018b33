//! The `static` workload of issue 22: static files over keep-alive HTTP/1.1
//! from nginx (nginx-light, one worker, `sendfile on`, started here from a
//! config written to a temporary directory) and from the `file-server`
//! example plugin run in this process as `sockshim run` runs it (a thread
//! of its own, sockets and file operations waiting there), under the same load generator: wrk
//! when it is installed, else the benchmark's own (`peer http`, a child
//! process). Without nginx the rows are skipped with the reason.

use crate::child::Peer;
use crate::measure::{Sample, cpu_times, process_cpu_times};
use crate::report::{System, Table, Unit};
use crate::wasm::{GUEST_DATA_DIR, Guest, Wasm};
use crate::workloads::{args, free_port};
use crate::{Config, Result, progress};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SYSTEMS: [System; 2] = [
    System {
        label: "nginx (1 worker, sendfile on)",
        key: "nginx",
    },
    System {
        label: "file-server (as sockshim run)",
        key: "file_server",
    },
];

/// One case: the file, its size, the connections.
struct Case {
    key: &'static str,
    file: &'static str,
    bytes: u64,
    conns: u32,
    target: &'static str,
}

const CASES: [Case; 3] = [
    Case {
        key: "static_4k_1_conn",
        file: "4k.bin",
        bytes: 4096,
        conns: 1,
        target: "≥ 0.8× nginx's requests/s",
    },
    Case {
        key: "static_4k_16_conns",
        file: "4k.bin",
        bytes: 4096,
        conns: 16,
        target: "≥ 0.8× nginx's requests/s",
    },
    Case {
        key: "static_64m_4_conns",
        file: "64m.bin",
        bytes: 64 << 20,
        conns: 4,
        target: "≥ 0.95× nginx's throughput",
    },
];

/// Where an executable is on PATH (or in /usr/sbin, where Debian puts
/// nginx and which a user's PATH may lack).
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The temporary directory of the workload: the files under `www/`, nginx's
/// config, pid and logs beside them. Removed on drop.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn create() -> Result<Site> {
        let dir =
            std::env::temp_dir().join(format!("sockshim-bench-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("www"))?;
        crate::set_temp_dir(Some(dir.clone()));
        let site = Site { dir };
        let mut seen = Vec::new();
        for case in &CASES {
            if seen.contains(&case.file) {
                continue;
            }
            seen.push(case.file);
            let mut file = io::BufWriter::new(std::fs::File::create(site.www().join(case.file))?);
            let chunk: Vec<u8> = (0..1u32 << 16).map(|i| (i * 13 + i / 241) as u8).collect();
            let mut left = case.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            file.flush()?;
        }
        Ok(site)
    }

    fn www(&self) -> PathBuf {
        self.dir.join("www")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        crate::set_temp_dir(None);
    }
}

/// nginx's configuration: one worker, sendfile, keep-alive without a limit
/// on requests per connection (the file server has none), no access log
/// (the file server runs with `--no-access-log`), listening on
/// 127.0.0.1:`port`.
fn nginx_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   sendfile on;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   keepalive_timeout 60s;\n\
         \x20   default_type application/octet-stream;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       root {d}/www;\n\
         \x20   }}\n\
         }}\n"
    )
}

/// A running nginx, killed on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(nginx: &Path, dir: &Path) -> Result<Nginx> {
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_config(dir, port))?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        crate::child::track(child.id());
        let nginx = Nginx { child, port };
        wait_listening(port)
            .map_err(|e| format!("nginx did not start: {e} (see {}/error.log)", dir.display()))?;
        Ok(nginx)
    }

    /// The CPU time of nginx's processes (master and worker) so far: (user
    /// + system, user).
    fn cpu(&self) -> (Duration, Duration) {
        let master = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        std::iter::once(master)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .filter_map(process_cpu_times)
            .fold((Duration::ZERO, Duration::ZERO), |(a, u), (b, v)| {
                (a + b, u + v)
            })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, which ends the worker too.
        // SAFETY: kill(2) on our child; no memory involved.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::child::untrack(self.child.id());
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
fn wait_listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("nothing listens on port {port}: {e}").into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// What one load run measured: requests answered, the seconds it took,
/// and, from wrk, the bytes it read (answers cut off at the end included).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Load {
    requests: f64,
    secs: f64,
    bytes: Option<f64>,
}

impl Load {
    /// In files of `size` bytes: wrk stops at its deadline in the middle of
    /// answers, which for a 64 MiB file is much of what was sent, so for
    /// large files what it read counts, not the requests it completed.
    fn in_files_of(self, size: u64) -> Load {
        match self.bytes {
            Some(bytes) if size >= 1 << 20 => Load {
                requests: bytes / size as f64,
                ..self
            },
            _ => self,
        }
    }
}

/// wrk's amount read (`260.00MB`; wrk's units are powers of 1024).
fn wrk_bytes(amount: &str) -> Option<f64> {
    let split = amount.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = amount.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The load generator: wrk, or the benchmark's own.
enum Loader {
    Wrk(PathBuf),
    Own,
}

impl Loader {
    fn name(&self) -> &'static str {
        match self {
            Loader::Wrk(_) => "wrk",
            Loader::Own => "the benchmark's own load generator (wrk is not installed)",
        }
    }

    /// `conns` keep-alive connections asking for `path` on `port` for
    /// `secs` seconds.
    fn run(&self, port: u16, path: &str, conns: u32, secs: u64) -> Result<Load> {
        let url = format!("http://127.0.0.1:{port}/{path}");
        match self {
            Loader::Wrk(wrk) => {
                let mut command = Command::new(wrk);
                command
                    .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), &url])
                    .stdin(Stdio::null());
                crate::child::on_peer_cpu(&mut command);
                let out = command.output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    return Err(format!(
                        "wrk failed: {text}{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
                parse_wrk(&text)
            }
            Loader::Own => {
                let peer = Peer::start("http", &args(&[&port, &path, &conns, &secs]))?;
                let line = peer
                    .proc
                    .expect("result", Duration::from_secs(secs + 120))?;
                parse_own(&line)
            }
        }
    }
}

/// wrk's report: `N requests in 5.00s, …` and `Requests/sec: R`; an error
/// if any answer was not 2xx or any socket error happened.
fn parse_wrk(out: &str) -> Result<Load> {
    if let Some(bad) = out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        return Err(format!("wrk: {}", bad.trim()).into());
    }
    let requests: f64 = out
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .ok_or_else(|| format!("wrk printed no request count: {out}"))?;
    let rate: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())
        .ok_or_else(|| format!("wrk printed no Requests/sec: {out}"))?;
    if requests <= 0.0 || rate <= 0.0 {
        return Err(format!("wrk completed no request: {out}").into());
    }
    // `N requests in 2.00s, 260.00MB read`
    let bytes = out.lines().find_map(|l| {
        let read = l.trim().strip_suffix(" read")?;
        wrk_bytes(read.rsplit_once(", ")?.1)
    });
    Ok(Load {
        requests,
        secs: requests / rate,
        bytes,
    })
}

/// The own load generator's `result REQUESTS SECS` (after `result`).
fn parse_own(rest: &str) -> Result<Load> {
    let mut words = rest.split_whitespace();
    match (
        words.next().map(str::parse::<f64>),
        words.next().map(str::parse::<f64>),
    ) {
        (Some(Ok(requests)), Some(Ok(secs))) if requests > 0.0 && secs > 0.0 => Ok(Load {
            requests,
            secs,
            bytes: None,
        }),
        _ => Err(format!("the load generator said {rest:?}").into()),
    }
}

/// A run as a [`Sample`] per request: wall and CPU time divided by the
/// requests answered (the load runs for a fixed time, not a fixed count).
fn per_request(load: Load, cpu: Duration, user: Duration) -> Sample {
    let per = |d: Duration| d.div_f64(load.requests);
    Sample {
        wall: Duration::from_secs_f64(load.secs / load.requests),
        cpu: per(cpu),
        user: per(user),
        peer: None,
    }
}

/// The `static` workload; `Err(reason)` when it cannot run here.
pub fn static_files(wasm: &Wasm, cfg: &Config) -> Result<std::result::Result<Vec<Table>, String>> {
    let Some(nginx) = find("nginx") else {
        return Ok(Err(
            "static: skipped, nginx is not installed (apt-get install nginx-light wrk)".into(),
        ));
    };
    let loader = find("wrk").map_or(Loader::Own, Loader::Wrk);
    let secs = cfg.static_secs;
    progress("static: writing the files");
    let site = Site::create()?;
    let mut tables = Vec::new();
    for case in &CASES {
        let run = |i: usize, secs: u64| -> Result<Sample> {
            if i == 0 {
                let server = Nginx::start(&nginx, &site.dir)?;
                let (cpu0, user0) = server.cpu();
                let load = loader
                    .run(server.port, case.file, case.conns, secs)?
                    .in_files_of(case.bytes);
                let (cpu1, user1) = server.cpu();
                Ok(per_request(
                    load,
                    cpu1.saturating_sub(cpu0),
                    user1.saturating_sub(user0),
                ))
            } else {
                let port = free_port()?;
                let server = wasm.start(
                    Guest::FileServer,
                    &args(&[
                        &"--no-access-log",
                        &format!("127.0.0.1:{port}"),
                        &GUEST_DATA_DIR,
                    ]),
                    Some(&site.www()),
                );
                if let Err(e) = wait_listening(port) {
                    wasm.stop(server, Duration::from_secs(10));
                    return Err(format!("the file-server plugin did not start: {e}").into());
                }
                let (cpu0, user0) = cpu_times();
                let load = loader
                    .run(port, case.file, case.conns, secs)
                    .map(|l| l.in_files_of(case.bytes));
                let (cpu1, user1) = cpu_times();
                wasm.stop(server, Duration::from_secs(10));
                Ok(per_request(
                    load?,
                    cpu1.saturating_sub(cpu0),
                    user1.saturating_sub(user0),
                ))
            }
        };
        let what = format!("static {}", case.key);
        let samples = crate::workloads::paired(&what, &SYSTEMS, cfg, |i, warm| {
            run(i, if warm { 1 } else { secs }).map(Some)
        })?;
        let big = case.bytes >= 1 << 20;
        let size = if big {
            format!("{} MiB", case.bytes >> 20)
        } else {
            format!("{} KiB", case.bytes >> 10)
        };
        tables.push(Table {
            key: case.key.into(),
            // The part before the colon names the row in `--markdown`.
            title: format!(
                "static, {size} over {conns} connection{plural}: a {size} file over {conns} \
                 keep-alive connection{plural}, {secs} s per run under {loader}, {reps} paired \
                 repetitions",
                conns = case.conns,
                plural = if case.conns == 1 { "" } else { "s" },
                loader = loader.name(),
                reps = cfg.reps
            ),
            unit: if big {
                Unit::Throughput
            } else {
                Unit::Requests
            },
            amount: if big { case.bytes as f64 } else { 1.0 },
            systems: SYSTEMS.to_vec(),
            subject: Some(1),
            samples,
            notes: vec![format!(
                "(figures per request over a fixed time; CPU: nginx's processes from /proc \
                     (in 10 ms ticks), the file server's this process's getrusage; target in \
                     issue 22: {})",
                case.target
            )],
        });
    }
    drop(site);
    Ok(Ok(tables))
}

/// The benchmark's own load generator (`peer http PORT PATH CONNS SECS`):
/// CONNS threads, each with one keep-alive HTTP/1.1 connection asking for
/// /PATH again and again for SECS seconds, reading each whole answer (by its
/// Content-Length); prints `result REQUESTS SECS`.
pub fn http_peer(port: u16, path: &str, conns: u32, secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || -> io::Result<u64> {
                let conn = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
                conn.set_nodelay(true)?;
                conn.set_read_timeout(Some(Duration::from_secs(60)))?;
                let mut writer = conn.try_clone()?;
                let mut reader = BufReader::with_capacity(64 << 10, conn);
                let mut body = vec![0u8; 64 << 10];
                let mut count = 0u64;
                while Instant::now() < deadline {
                    writer.write_all(request.as_bytes())?;
                    let mut length = None;
                    let mut line = String::new();
                    let mut status = true;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line)? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        if status {
                            if !line
                                .split_whitespace()
                                .nth(1)
                                .is_some_and(|c| c.starts_with('2'))
                            {
                                return Err(io::Error::other(format!("answer {line:?}")));
                            }
                            status = false;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse::<u64>().ok();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut left = length.ok_or_else(|| io::Error::other("no Content-Length"))?;
                    while left > 0 {
                        let n = left.min(body.len() as u64) as usize;
                        reader.read_exact(&mut body[..n])?;
                        left -= n as u64;
                    }
                    count += 1;
                }
                Ok(count)
            })
        })
        .collect();
    let mut total = 0u64;
    for t in threads {
        total += t.join().map_err(|_| "a load thread panicked")??;
    }
    println!("result {total} {}", started.elapsed().as_secs_f64());
    io::stdout().flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_parse_into_requests_and_time() {
        let out = "Running 2s test @ http://127.0.0.1:8080/4k.bin\n\
                   \x20 1 threads and 1 connections\n\
                   \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
                   \x20   Latency    32.11us   10.00us   1.00ms   90.00%\n\
                   \x20 62000 requests in 2.00s, 260.00MB read\n\
                   Requests/sec:  31000.00\n\
                   Transfer/sec:    130.00MB\n";
        assert_eq!(
            parse_wrk(out).unwrap(),
            Load {
                requests: 62000.0,
                secs: 2.0,
                bytes: Some(260.0 * 1024.0 * 1024.0),
            }
        );
        // A large file counts what was read, cut-off answers included.
        let big = Load {
            requests: 10.0,
            secs: 1.0,
            bytes: Some(704.0 * 1024.0 * 1024.0),
        };
        assert_eq!(big.in_files_of(64 << 20).requests, 11.0);
        assert_eq!(big.in_files_of(4096).requests, 10.0);
        assert_eq!(wrk_bytes("1.50GB"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(wrk_bytes("12.00KB"), Some(12.0 * 1024.0));
        assert_eq!(wrk_bytes("lots"), None);
        let errors = format!("{out}  Non-2xx or 3xx responses: 12\n");
        assert!(parse_wrk(&errors).is_err());
        assert!(parse_wrk("Requests/sec: 0\n").is_err());
    }

    #[test]
    fn figures_are_per_request() {
        let s = per_request(
            Load {
                requests: 1000.0,
                secs: 2.0,
                bytes: None,
            },
            Duration::from_millis(500),
            Duration::from_millis(100),
        );
        assert_eq!(s.wall, Duration::from_millis(2));
        assert_eq!(s.cpu, Duration::from_micros(500));
        assert_eq!(s.user, Duration::from_micros(100));
        assert_eq!(
            parse_own("2000 1.5").unwrap(),
            Load {
                requests: 2000.0,
                secs: 1.5,
                bytes: None,
            }
        );
        assert!(parse_own("0 1.5").is_err());
    }

    #[test]
    fn the_nginx_config_listens_where_asked_with_one_worker() {
        let conf = nginx_config(Path::new("/tmp/x"), 18080);
        assert!(conf.contains("listen 127.0.0.1:18080;"));
        assert!(conf.contains("worker_processes 1;"));
        assert!(conf.contains("sendfile on;"));
        assert!(conf.contains("root /tmp/x/www;"));
    }
}
