//! The readiness workloads of issue 22: what one readiness wait costs over
//! many registered sockets (`readiness`), and one single-threaded plugin
//! echoing on many connections through its selector (`manyconn`), each
//! against the same thing done natively in this process.

use crate::child::Peer;
use crate::measure::{Sample, Stats, measure_with_peer};
use crate::report::{System, Table, Unit, num};
use crate::wasm::{Guest, Wasm};
use crate::workloads::{args, bound, free_port, paired};
use crate::{Config, Result, progress};
use serde_json::{Map, Value, json};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Per-wait times of one run, in ns: (selector or epoll_wait, poll).
type WaitNs = (f64, f64);

/// Opens `n` - 1 connections to the `hold` peer and one to the `echo` peer,
/// sends one byte on the last and waits for it to come back: `n` sockets,
/// exactly one of them readable, for as long as nobody reads it.
fn one_ready_of(n: usize, hold: &str, echo: &str) -> Result<Vec<TcpStream>> {
    let mut socks = (1..n)
        .map(|_| TcpStream::connect(hold))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ready = TcpStream::connect(echo)?;
    ready.set_nodelay(true)?;
    ready.write_all(b"r")?;
    let mut pfd = [libc::pollfd {
        fd: ready.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one pollfd we own.
    if unsafe { libc::poll(pfd.as_mut_ptr(), 1, 60_000) } != 1 {
        return Err("readiness: the echo peer did not answer in 60 s".into());
    }
    socks.push(ready);
    Ok(socks)
}

/// Times `iters` epoll_wait(2) and then `iters` poll(2) calls over `n`
/// connections with one readable, each with no timeout, and checks that
/// each reports the one.
fn native_waits(n: usize, iters: u32, hold: &str, echo: &str) -> Result<WaitNs> {
    let socks = one_ready_of(n, hold, echo)?;
    let check = |what: &str, got: i32| match got {
        1 => Ok(()),
        -1 => Err(format!("{what}: {}", io::Error::last_os_error())),
        k => Err(format!("{what}: {k} sockets ready, expected 1")),
    };
    // SAFETY: epoll_create1 takes no pointers; the fd is closed below.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error().into());
    }
    let result = (|| -> Result<WaitNs> {
        for (i, sock) in socks.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: one epoll_event we own; fds of ours.
            let rc =
                unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut ev) };
            if rc != 0 {
                return Err(io::Error::last_os_error().into());
            }
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n];
        let mut epoll_wait = || {
            // SAFETY: `events` holds `n` entries.
            let got = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), n as i32, -1) };
            check("epoll_wait", got)
        };
        for _ in 0..iters / 10 {
            epoll_wait()?;
        }
        let started = Instant::now();
        for _ in 0..iters {
            epoll_wait()?;
        }
        let epoll_ns = started.elapsed().as_nanos() as f64 / f64::from(iters);

        let mut pfds: Vec<libc::pollfd> = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut poll = || {
            // SAFETY: `pfds` holds `n` entries.
            let got = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, -1) };
            check("poll", got)
        };
        for _ in 0..iters / 10 {
            poll()?;
        }
        let started = Instant::now();
        for _ in 0..iters {
            poll()?;
        }
        let poll_ns = started.elapsed().as_nanos() as f64 / f64::from(iters);
        // Take the echoed byte, so that the close is not a reset for the
        // peer.
        (&socks[n - 1]).read_exact(&mut [0u8])?;
        Ok((epoll_ns, poll_ns))
    })();
    // SAFETY: our epoll fd, closed once.
    unsafe { libc::close(epfd) };
    result
}

/// The sockshim guest's `readiness` output: `selector_wait NS`, `poll NS`.
fn parse_waits(out: &str) -> Result<WaitNs> {
    let mut selector = None;
    let mut poll = None;
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(ns), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("readiness: a guest line that does not parse: {line:?}").into());
        };
        let ns: f64 = ns
            .parse()
            .map_err(|_| format!("readiness: not a number in {line:?}"))?;
        match key {
            "selector_wait" => selector = Some(ns),
            "poll" => poll = Some(ns),
            _ => return Err(format!("readiness: unknown guest figure {key:?}").into()),
        }
    }
    match (selector, poll) {
        (Some(s), Some(p)) => Ok((s, p)),
        _ => Err(format!("readiness: the guest printed {out:?}").into()),
    }
}

/// Has the `hold` peer close the connections it holds, and waits until it
/// has.
fn release(hold: &mut Peer) -> Result<()> {
    hold.proc.send("drop")?;
    hold.proc
        .expect("dropped", Duration::from_secs(60))
        .map(drop)
}

/// One native run of the readiness workload.
fn native_run(hold: &mut Peer, n: usize, iters: u32, echo: &str) -> Result<WaitNs> {
    let waits = native_waits(n, iters, &hold.addr(), echo)?;
    release(hold)?;
    Ok(waits)
}

/// One run of the sockshim guest's `readiness`.
fn guest_run(wasm: &Wasm, hold: &mut Peer, n: usize, iters: u32, echo: &str) -> Result<WaitNs> {
    let guest_args = args(&[&"readiness", &hold.addr(), &echo, &n, &iters]);
    let out = wasm.output(Guest::Sockshim, &guest_args, bound(0, u64::from(iters)))?;
    let waits = parse_waits(&out)?;
    release(hold)?;
    Ok(waits)
}

/// The rows of the readiness table: (label, JSON key, ns per wait per
/// repetition).
struct WaitRows {
    native_epoll: Vec<f64>,
    native_poll: Vec<f64>,
    selector: Vec<f64>,
    poll: Vec<f64>,
}

/// Per-repetition ratios `a[i] / b[i]`.
fn ratios(a: &[f64], b: &[f64]) -> Stats {
    Stats::of(&a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>())
}

/// The `readiness` workload: for each N, the cost of one wait over N
/// registered sockets of which one is ready, for sockshim's
/// `selector.wait` (through `DefaultSelector::select`) and its `poll`
/// (through `sockshim::poll`, the list passed on every call), timed in the
/// guest, beside native epoll_wait(2) and poll(2) timed in this process, in
/// alternating order per repetition.
pub fn readiness(wasm: &Wasm, cfg: &Config) -> Result<(String, Value)> {
    let iters = cfg.readiness_waits;
    let mut hold = Peer::start("hold", &[])?;
    let echo = Peer::start("echo", &[])?;
    let echo_addr = echo.addr();
    let mut text = format!(
        "readiness: one wait over N registered sockets with exactly one ready (level-triggered, \
         no timeout), {iters} waits per run, {} repetitions (ns per wait: median (min–max))\n",
        cfg.reps
    );
    text.push_str(&format!(
        "  {:>7}  {:>24} {:>24} {:>18}   {:>24} {:>24} {:>18}\n",
        "sockets",
        "native epoll_wait",
        "sockshim selector.wait",
        "÷ epoll_wait",
        "native poll(2)",
        "sockshim poll",
        "÷ poll(2)",
    ));
    let mut json = Map::new();
    json.insert("waits_per_run".into(), json!(iters));
    let native = cfg.selects("native");
    let guest = cfg.selects("sockshim");
    for &n in &cfg.readiness_sockets {
        let mut rows = WaitRows {
            native_epoll: vec![],
            native_poll: vec![],
            selector: vec![],
            poll: vec![],
        };
        let warm = (iters / 10).max(10);
        progress(&format!("readiness {n}: warm-up"));
        if native {
            native_run(&mut hold, n, warm, &echo_addr)?;
        }
        if guest {
            guest_run(wasm, &mut hold, n, warm, &echo_addr)?;
        }
        for r in 0..cfg.reps {
            progress(&format!("readiness {n}: repetition {}/{}", r + 1, cfg.reps));
            // Alternate which goes first.
            for native_turn in [r % 2 == 0, r % 2 != 0] {
                if native_turn && native {
                    let (e, p) = native_run(&mut hold, n, iters, &echo_addr)?;
                    rows.native_epoll.push(e);
                    rows.native_poll.push(p);
                } else if !native_turn && guest {
                    let (s, p) = guest_run(wasm, &mut hold, n, iters, &echo_addr)?;
                    rows.selector.push(s);
                    rows.poll.push(p);
                }
            }
        }
        let cell = |v: &[f64]| match v.is_empty() {
            true => "n/a".to_string(),
            false => {
                let s = Stats::of(v);
                format!("{} ({}–{})", num(s.median), num(s.min), num(s.max))
            }
        };
        let both = native && guest;
        let ratio_cell = |a: &[f64], b: &[f64]| match both {
            true => {
                let s = ratios(a, b);
                format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
            }
            false => "n/a".to_string(),
        };
        text.push_str(&format!(
            "  {:>7}  {:>24} {:>24} {:>18}   {:>24} {:>24} {:>18}\n",
            n,
            cell(&rows.native_epoll),
            cell(&rows.selector),
            ratio_cell(&rows.selector, &rows.native_epoll),
            cell(&rows.native_poll),
            cell(&rows.poll),
            ratio_cell(&rows.poll, &rows.native_poll),
        ));
        let (mut figures, mut spread) = (Map::new(), Map::new());
        for (key, v) in [
            ("native_epoll_wait_ns", &rows.native_epoll),
            ("sockshim_selector_wait_ns", &rows.selector),
            ("native_poll_ns", &rows.native_poll),
            ("sockshim_poll_ns", &rows.poll),
        ] {
            let s = (!v.is_empty()).then(|| Stats::of(v));
            figures.insert(key.into(), json!(s.map(|s| s.median)));
            spread.insert(key.into(), json!(s.map(|s| [s.min, s.max])));
        }
        if both {
            for (key, a, b) in [
                ("selector_vs_epoll_wait", &rows.selector, &rows.native_epoll),
                ("poll_vs_poll", &rows.poll, &rows.native_poll),
            ] {
                let s = ratios(a, b);
                figures.insert(key.into(), json!(s.median));
                spread.insert(key.into(), json!([s.min, s.max]));
            }
        }
        figures.insert("spread".into(), Value::Object(spread));
        json.insert(format!("sockets_{n}"), Value::Object(figures));
    }
    text.push_str(
        "  (N - 1 connections to a peer that never writes and one that has echoed a byte, \
         unread; sockshim's waits are timed in the guest with its clock: \
         DefaultSelector::select, one host selector.wait (epoll_wait), and sockshim::poll \
         over the list of N, one host poll call; ÷: sockshim ÷ native per repetition, \
         below 1 is faster)\n",
    );
    drop(echo);
    Ok((text, Value::Object(json)))
}

/// The systems of the manyconn workload, in this order: they run in turn
/// in every repetition. The selector plugin's table compares it with the
/// native mio loop, its like; the async plugin's with that loop and with
/// tokio's current-thread runtime, whose task per connection with a buffer
/// of its own is the async plugin's like.
const MANYCONN_SYSTEMS: [System; 4] = [
    System {
        label: "native (mio, one thread, epoll)",
        key: "native",
    },
    System {
        label: "native async (tokio current-thread, a task per connection)",
        key: "native_async",
    },
    System {
        label: "sockshim (one plugin, selector)",
        key: "sockshim",
    },
    System {
        label: "sockshim async (one plugin, wstd tasks on sockshim::aio)",
        key: "sockshim_async",
    },
];

/// The sockshim guest's command for each plugin system of
/// [`MANYCONN_SYSTEMS`].
const MANYCONN_COMMANDS: [&str; 4] = ["", "", "manyconn", "manyconn-async"];

/// The bytes each message of the manyconn workload carries.
const MANYCONN_MSG: usize = 64;

/// The `manyconn` workload: a single-threaded echo server for
/// `cfg.manyconn_conns` connections at once, each driven by the peer (one
/// process, all connections) through `cfg.manyconn_rounds` exchanges of a
/// 64-byte message: native on mio and on tokio's current-thread runtime in
/// this process, one sockshim plugin through its `DefaultSelector`, and one
/// as wstd tasks on `sockshim::aio`. A run starts when the peer has
/// connected every connection and ends when every connection has closed.
/// One table per plugin (`manyconn`, `manyconn_async`), each beside the
/// same native runs.
pub fn manyconn(wasm: &Wasm, cfg: &Config) -> Result<Vec<Table>> {
    let (conns, rounds) = (cfg.manyconn_conns, cfg.manyconn_rounds);
    let spin = Duration::from_nanos(cfg.manyconn_native_spin);
    let warm_rounds = (rounds / 10).max(1);
    let mut peer = Peer::start("manyconn", &args(&[&conns, &MANYCONN_MSG, &rounds]))?;
    let mut warm_peer = Peer::start("manyconn", &args(&[&conns, &MANYCONN_MSG, &warm_rounds]))?;
    let messages = conns as u64 * rounds;
    let samples = paired(
        "manyconn",
        &MANYCONN_SYSTEMS,
        cfg,
        |i, warm| -> Result<Option<Sample>> {
            let (peer, n) = if warm {
                (&mut warm_peer, conns as u64 * warm_rounds)
            } else {
                (&mut peer, messages)
            };
            let pid = peer.pid();
            let limit = bound(0, n);
            Ok(Some(if i < 2 {
                let listener = listener_4096()?;
                let port = listener.local_addr()?.port();
                let server = std::thread::spawn(move || {
                    if i == 0 {
                        native_echo(listener, conns, spin, limit)
                    } else {
                        native_async_echo(listener, conns, limit)
                    }
                });
                peer.proc.send(&format!("connect {port}"))?;
                peer.proc.expect("connected", limit)?;
                measure_with_peer(pid, || {
                    peer.proc.send("go")?;
                    peer.proc.expect("done", limit)?;
                    server
                        .join()
                        .map_err(|_| "manyconn: the native server panicked")??;
                    Ok(())
                })?
            } else {
                let port = free_port()?;
                let command = MANYCONN_COMMANDS[i];
                let server = wasm.start(Guest::Sockshim, &args(&[&command, &port, &conns]), None);
                peer.proc.send(&format!("connect {port}"))?;
                peer.proc.expect("connected", limit)?;
                measure_with_peer(pid, || {
                    peer.proc.send("go")?;
                    peer.proc.expect("done", limit)?;
                    wasm.wait(server, limit)
                })?
            }))
        },
    )?;
    let spun = (!spin.is_zero()).then(|| {
        format!(
            "(the native mio echo busy-waits {} ns after each read: --manyconn-native-spin)",
            spin.as_nanos()
        )
    });
    let table = |key: &str, systems: &[usize]| Table {
        key: key.into(),
        title: format!(
            "{key}: one single-threaded server echoing {conns} connections at once, \
             {rounds} exchanges of {MANYCONN_MSG} bytes on each ({messages} messages) per run, \
             {} paired repetitions",
            cfg.reps
        ),
        unit: Unit::Messages,
        amount: messages as f64,
        systems: systems.iter().map(|&i| MANYCONN_SYSTEMS[i]).collect(),
        subject: Some(systems.len() - 1),
        samples: samples
            .iter()
            .map(|rep| systems.iter().map(|&i| rep[i]).collect())
            .collect(),
        notes: vec![
            "(the peer, one process on mio, connects every connection first, then each sends a \
             message, waits for its echo and sends again; a run is from its start to the last \
             close; the four servers run in turn in each repetition; targets in issue 22: \
             rate ≥ 0.8×, CPU ≤ 1.25× a native single-threaded epoll echo, mio or tokio \
             current-thread)"
                .into(),
        ]
        .into_iter()
        .chain(spun.clone())
        .collect(),
    };
    Ok(vec![
        table("manyconn", &[0, 2]),
        table("manyconn_async", &[0, 1, 3]),
    ])
}

/// A std listener on 127.0.0.1:0 with a backlog deep enough for every
/// connection of the peer at once.
fn listener_4096() -> Result<std::net::TcpListener> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    sock.listen(4096)?;
    Ok(sock.into())
}

const LISTENER: mio::Token = mio::Token(usize::MAX);

/// The native single-threaded epoll echo (mio): accepts `conns`
/// connections, echoes each until it closes, returns when all have. After
/// each read it busy-waits `spin` (`--manyconn-native-spin`; zero by
/// default), as a server that costs that much more per message would.
fn native_echo(
    listener: std::net::TcpListener,
    conns: usize,
    spin: Duration,
    limit: Duration,
) -> Result<()> {
    use mio::{Events, Interest, Poll};
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    // A connection and what it could not send yet.
    let mut slots: Vec<Option<(mio::net::TcpStream, Vec<u8>)>> = Vec::with_capacity(conns);
    let (mut accepted, mut open) = (0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    while accepted < conns || open > 0 {
        if Instant::now() > deadline {
            return Err("manyconn: the native server ran past its time limit".into());
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))?;
        for event in events.iter() {
            if event.token() == LISTENER {
                while accepted < conns {
                    let mut sock = match listener.accept() {
                        Ok((sock, _)) => sock,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    };
                    sock.set_nodelay(true)?;
                    let token = mio::Token(slots.len());
                    poll.registry()
                        .register(&mut sock, token, Interest::READABLE)?;
                    slots.push(Some((sock, Vec::new())));
                    accepted += 1;
                    open += 1;
                }
                continue;
            }
            let slot = event.token().0;
            let Some((sock, pending)) = slots[slot].as_mut() else {
                continue;
            };
            // Edge-triggered: read until the socket has nothing more.
            let mut closed = flush(sock, pending)?;
            while !closed && pending.is_empty() {
                match sock.read(&mut buf) {
                    Ok(0) => closed = true,
                    Ok(k) => {
                        busy_wait(spin);
                        pending.extend_from_slice(&buf[..k]);
                        closed = flush(sock, pending)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closed = true,
                    Err(e) => return Err(e.into()),
                }
            }
            if closed {
                if let Some((mut sock, _)) = slots[slot].take() {
                    poll.registry().deregister(&mut sock)?;
                }
                open -= 1;
            } else if !pending.is_empty() {
                poll.registry().reregister(
                    sock,
                    event.token(),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
            }
        }
    }
    Ok(())
}

/// Spins for `spin` without giving up the CPU.
fn busy_wait(spin: Duration) {
    if spin.is_zero() {
        return;
    }
    let started = Instant::now();
    while started.elapsed() < spin {
        std::hint::spin_loop();
    }
}

/// The native async echo: tokio's current-thread runtime on this thread,
/// one task per connection reading into a 4 KiB buffer of its own and
/// writing back what it read, as the async plugin's tasks do; returns when
/// every connection has closed.
fn native_async_echo(listener: std::net::TcpListener, conns: usize, limit: Duration) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let serve = async {
            let mut tasks = Vec::with_capacity(conns);
            for _ in 0..conns {
                let (mut sock, _) = listener.accept().await?;
                sock.set_nodelay(true)?;
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) => return Ok(()),
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                            Err(e) => return Err(e),
                        };
                        sock.write_all(&buf[..n]).await?;
                    }
                }));
            }
            for task in tasks {
                task.await
                    .map_err(|_| "manyconn: a native async task panicked")??;
            }
            Ok(())
        };
        tokio::time::timeout(limit, serve)
            .await
            .map_err(|_| "manyconn: the native async server ran past its time limit")?
    })
}

/// Writes what the socket takes of `pending`; true if the peer is gone.
fn flush(sock: &mut impl Write, pending: &mut Vec<u8>) -> Result<bool> {
    while !pending.is_empty() {
        match sock.write(pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// The manyconn workload's peer (`peer manyconn CONNS MSG ROUNDS`), one
/// thread on mio. On `connect PORT` it opens CONNS connections to
/// 127.0.0.1:PORT (TCP_NODELAY) and prints `connected`; on `go` every
/// connection sends MSG bytes, waits for all of them to come back and sends
/// again, ROUNDS times; then it closes them all and prints `done`.
pub fn manyconn_peer(
    conns: usize,
    msg: usize,
    rounds: u64,
    commands: Receiver<String>,
) -> Result<()> {
    use mio::{Events, Interest, Poll, Token};
    let say = |word: &str| -> Result<()> {
        println!("{word}");
        io::stdout().flush()?;
        Ok(())
    };
    let message = vec![0x6du8; msg];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(line) = commands.recv() else {
            return Ok(());
        };
        let Some(port) = line.strip_prefix("connect ") else {
            return Err(format!("peer manyconn: bad command {line:?}").into());
        };
        let port: u16 = port.trim().parse()?;
        let mut socks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let sock = crate::peer::connect_retrying(port)?;
            sock.set_nodelay(true)?;
            sock.set_nonblocking(true)?;
            socks.push(mio::net::TcpStream::from_std(sock));
        }
        say("connected")?;
        match commands.recv() {
            Ok(line) if line.trim() == "go" => {}
            other => return Err(format!("peer manyconn: expected go, got {other:?}").into()),
        }
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(1024);
        // Per connection: rounds left and bytes of the echo still to come.
        let mut left = vec![rounds; conns];
        let mut owed = vec![0usize; conns];
        let mut done = 0usize;
        for (i, sock) in socks.iter_mut().enumerate() {
            poll.registry()
                .register(sock, Token(i), Interest::READABLE)?;
            if rounds == 0 {
                done += 1;
                continue;
            }
            // A fresh connection's buffer takes a small message whole.
            sock.write_all(&message)?;
            owed[i] = msg;
        }
        while done < conns {
            poll.poll(&mut events, Some(crate::peer::IO_TIMEOUT))?;
            if events.is_empty() {
                return Err("peer manyconn: no echo for 120 s".into());
            }
            for event in events.iter() {
                let i = event.token().0;
                loop {
                    if left[i] == 0 {
                        break;
                    }
                    match socks[i].read(&mut buf) {
                        Ok(0) => return Err("peer manyconn: the server closed early".into()),
                        Ok(k) => {
                            owed[i] = owed[i].saturating_sub(k);
                            if owed[i] == 0 {
                                left[i] -= 1;
                                if left[i] == 0 {
                                    done += 1;
                                } else {
                                    socks[i].write_all(&message)?;
                                    owed[i] = msg;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        drop(socks);
        say("done")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_wait_lines_parse() {
        assert_eq!(
            parse_waits("selector_wait 812.5\npoll 90210.0\n").unwrap(),
            (812.5, 90210.0)
        );
        assert!(parse_waits("selector_wait 812.5\n").is_err());
        assert!(parse_waits("selector_wait x\npoll 1\n").is_err());
        assert!(parse_waits("epoll 1\npoll 1\n").is_err());
    }

    #[test]
    fn wait_ratios_pair_the_runs_of_one_repetition() {
        let s = ratios(&[200.0, 900.0], &[100.0, 900.0]);
        assert_eq!((s.min, s.max, s.median), (1.0, 2.0, 1.5));
    }
}
