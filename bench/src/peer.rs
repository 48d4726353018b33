//! The native peer, run in its own process (`sockshim-bench peer ROLE ...`)
//! so that the benchmark process's CPU time is the measured side's alone.
//! Listening roles bind 127.0.0.1 on an ephemeral port and print
//! `port N` first; commands arrive as stdin lines. The peer exits when its
//! stdin closes, and gets SIGKILL when its parent dies.
//!
//! Roles (all buffers 64 KiB, connections served one after another):
//! - `sink`: read each connection until end of stream, then write the count
//!   as 8 little-endian bytes and close.
//! - `source BYTES`: write BYTES to each connection, then close.
//! - `echo`: echo each connection until end of stream (TCP_NODELAY).
//! - `once`: read one byte, write it back, close first (TCP_NODELAY), so the
//!   TIME_WAIT state stays on this side and the client's ports do not run out.
//! - `client`: on `send PORT BYTES`, connect to 127.0.0.1:PORT (retrying
//!   while refused), write BYTES, shut down, read until end of stream, print
//!   `done`.
//! - `scale MAINS IDLE`: the scale workload's coordinator, see [`scale`].
//! - `hold`: accept connections and keep them open without reading or
//!   writing (so they are never readable on the other side) until the
//!   `drop` command closes them all; for the readiness workload.
//! - `http PORT PATH CONNS SECS`: the static workload's load generator when
//!   wrk is missing, see [`crate::static_files::http_peer`]; does not listen.
//! - `manyconn CONNS MSG ROUNDS`: the many-connection echo's client, see
//!   [`crate::readiness::manyconn_peer`]; does not listen.

use crate::Result;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BUF: usize = 64 * 1024;
/// No single socket wait of a peer lasts longer than this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer never outlives this, whatever happens to its parent.
const LIFETIME: Duration = Duration::from_secs(3 * 3600);

pub fn main(args: &[String]) -> Result<()> {
    die_with_parent();
    std::thread::spawn(|| {
        std::thread::sleep(LIFETIME);
        std::process::exit(3);
    });
    let commands = stdin_commands();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["sink"] => serve(|conn| {
            let n = drain(conn)?;
            conn.write_all(&n.to_le_bytes())
        }),
        ["source", bytes] => {
            let bytes: u64 = bytes.parse()?;
            serve(move |conn| {
                fill(conn, bytes)?;
                conn.shutdown(Shutdown::Write)
            })
        }
        ["echo"] => serve(|conn| {
            conn.set_nodelay(true)?;
            let mut buf = vec![0u8; BUF];
            loop {
                match conn.read(&mut buf)? {
                    0 => return Ok(()),
                    n => conn.write_all(&buf[..n])?,
                }
            }
        }),
        ["once"] => serve(|conn| {
            conn.set_nodelay(true)?;
            let mut byte = [0u8];
            conn.read_exact(&mut byte)?;
            conn.write_all(&byte)
        }),
        ["client"] => client(commands),
        ["scale", mains, idle] => scale(mains.parse()?, idle.parse()?, commands),
        ["hold"] => hold(commands),
        ["http", port, path, conns, secs] => {
            crate::static_files::http_peer(port.parse()?, path, conns.parse()?, secs.parse()?)
        }
        ["manyconn", conns, msg, rounds] => {
            crate::readiness::manyconn_peer(conns.parse()?, msg.parse()?, rounds.parse()?, commands)
        }
        _ => Err(format!("peer: bad arguments {args:?}").into()),
    }
}

/// Asks the kernel to kill this process when its parent exits.
pub fn die_with_parent() {
    // SAFETY: prctl and getppid take no pointers here.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The parent may have died before the prctl.
        if libc::getppid() == 1 {
            std::process::exit(3);
        }
    }
}

/// Stdin lines as a channel; the process exits when stdin closes.
fn stdin_commands() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        std::process::exit(0);
    });
    rx
}

/// Binds 127.0.0.1:0 with a deep backlog and prints `port N`.
fn listen() -> Result<TcpListener> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    sock.listen(4096)?;
    let listener = TcpListener::from(sock);
    println!("port {}", listener.local_addr()?.port());
    io::stdout().flush()?;
    Ok(listener)
}

/// Serves connections one after another with `handle`; a failed connection
/// is reported and the next one served.
fn serve(mut handle: impl FnMut(&mut TcpStream) -> io::Result<()>) -> Result<()> {
    let listener = listen()?;
    loop {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        if let Err(e) = handle(&mut conn) {
            eprintln!("peer: a connection failed: {e}");
        }
    }
}

/// Reads until end of stream; returns the count.
fn drain(conn: &mut TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Writes `bytes` bytes.
fn fill(conn: &mut TcpStream, bytes: u64) -> io::Result<()> {
    let buf = vec![0x3cu8; BUF];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BUF as u64) as usize;
        conn.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// The `hold` role: see the module's documentation.
fn hold(commands: Receiver<String>) -> Result<()> {
    let listener = listen()?;
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = std::sync::Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => accepted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn),
                Err(e) => eprintln!("peer hold: accept failed: {e}"),
            }
        }
    });
    for line in commands {
        if line.trim() == "drop" {
            held.lock().unwrap_or_else(|e| e.into_inner()).clear();
            println!("dropped");
            io::stdout().flush()?;
        }
    }
    Ok(())
}

/// Connects to 127.0.0.1:`port`, retrying for 20 s while nobody listens.
pub fn connect_retrying(port: u16) -> Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(conn) => return Ok(conn),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if Instant::now() > deadline {
                    return Err(format!("peer: nobody listens on {port}").into());
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn client(commands: Receiver<String>) -> Result<()> {
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["send", port, bytes] = words.as_slice() else {
            return Err(format!("peer client: bad command {line:?}").into());
        };
        let (port, bytes): (u16, u64) = (port.parse()?, bytes.parse()?);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conn = loop {
            match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                Ok(conn) => break conn,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if Instant::now() > deadline {
                        return Err(format!("peer client: nobody listens on {port}").into());
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => return Err(e.into()),
            }
        };
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        fill(&mut conn, bytes)?;
        conn.shutdown(Shutdown::Write)?;
        drain(&mut conn)?;
        println!("done");
        io::stdout().flush()?;
    }
    Ok(())
}

/// The scale workload's peer. Each guest instance connects once and says
/// `M`; once MAINS have, this prints `ready1`. On the `idle` command every
/// main connection gets `i`, and its instance opens IDLE more connections,
/// each saying `I` and answered `k`; once all have, this prints `ready2`. On
/// `go` every main connection gets `g` and is echoed until it closes; once
/// all have closed, this prints `done`.
fn scale(mains: usize, idle: usize, commands: Receiver<String>) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, watch};

    enum Event {
        Main,
        Idle,
        MainDone,
        Phase(u8),
    }
    fn say(word: &str) {
        println!("{word}");
        let _ = io::stdout().flush();
    }

    let listener = listen()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (events, mut event_rx) = mpsc::unbounded_channel::<Event>();
    let (phase_tx, phase) = watch::channel(0u8);

    let command_events = events.clone();
    std::thread::spawn(move || {
        for line in commands {
            let phase = match line.trim() {
                "idle" => 1,
                "go" => 2,
                _ => continue,
            };
            if command_events.send(Event::Phase(phase)).is_err() {
                break;
            }
        }
    });

    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(async move {
            let (mut main_count, mut idle_count, mut current) = (0, 0, 0u8);
            let mut done_count = 0;
            while let Some(event) = event_rx.recv().await {
                match event {
                    Event::Main => main_count += 1,
                    Event::Idle => idle_count += 1,
                    Event::MainDone => {
                        done_count += 1;
                        if done_count == mains {
                            say("done");
                        }
                    }
                    Event::Phase(p) => {
                        current = p;
                        let _ = phase_tx.send(p);
                    }
                }
                if main_count == mains && matches!(event, Event::Main) {
                    say("ready1");
                }
                let idle_done = idle_count == mains * idle;
                let ready2 = match event {
                    Event::Idle => idle_done && current == 1,
                    Event::Phase(1) => idle_done,
                    _ => false,
                };
                if ready2 {
                    say("ready2");
                }
            }
        });
        loop {
            let (mut conn, _) = listener.accept().await?;
            let events = events.clone();
            let mut phase = phase.clone();
            tokio::spawn(async move {
                let result: io::Result<()> = async {
                    conn.set_nodelay(true)?;
                    let mut hello = [0u8];
                    conn.read_exact(&mut hello).await?;
                    if hello[0] == b'I' {
                        conn.write_all(b"k").await?;
                        let _ = events.send(Event::Idle);
                        let mut rest = Vec::new();
                        conn.read_to_end(&mut rest).await?;
                        return Ok(());
                    }
                    let _ = events.send(Event::Main);
                    phase
                        .wait_for(|p| *p >= 1)
                        .await
                        .map_err(io::Error::other)?;
                    conn.write_all(b"i").await?;
                    phase
                        .wait_for(|p| *p >= 2)
                        .await
                        .map_err(io::Error::other)?;
                    conn.write_all(b"g").await?;
                    let (mut rd, mut wr) = conn.split();
                    tokio::io::copy(&mut rd, &mut wr).await?;
                    let _ = events.send(Event::MainDone);
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    eprintln!("peer scale: a connection failed: {e}");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), io::Error>(())
    })?;
    Ok(())
}
