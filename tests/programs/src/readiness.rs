//! Readiness scenarios (issue 22): `select`, `poll`, the selector, the
//! non-blocking calls an event loop makes, and `sockshim::aio` under wstd.
//! tests/tests/readiness.rs runs them against native peers.

use crate::data::{fnv1a, pattern};
use crate::{Result, ms, outcome, report};
use sockshim::aio::{self, AsyncSocket};
use sockshim::fs::File;
use sockshim::selectors::{DefaultSelector, EVENT_READ, EVENT_WRITE};
use sockshim::{Events, Family, Kind, SockOpt, Socket, errno};
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};
use wstd::future::FutureExt as _;
use wstd::io::{AsyncRead as _, AsyncWrite as _};

/// Long enough for anything on loopback that is going to happen.
const LONG: Option<Duration> = Some(Duration::from_secs(30));
const ZERO: Option<Duration> = Some(Duration::ZERO);

/// `sock`'s `revents` for `interest` right now, `none` when not ready.
fn revents(sock: &Socket, interest: Events) -> io::Result<String> {
    let ready = sockshim::poll(&[(sock, interest)], ZERO)?;
    Ok(match ready.as_slice() {
        [] => "none".to_string(),
        [(_, events)] => format!("{events:?}"),
        more => format!("{more:?}"),
    })
}

/// The value of `result`, or its error as [`outcome`] shows it.
fn value<T: std::fmt::Display>(result: io::Result<T>) -> String {
    match result {
        Ok(value) => value.to_string(),
        Err(e) => outcome::<()>(&Err(e)),
    }
}

/// Waits until `sock` is ready for `interest`; fails if it does not get so
/// within [`LONG`].
fn wait_for(sock: &Socket, interest: Events) -> Result {
    if sockshim::poll(&[(sock, interest)], LONG)?.is_empty() {
        return Err(io::Error::new(ErrorKind::TimedOut, "never got ready"));
    }
    Ok(())
}

/// The errno inside an error: its own, or its inner error's.
fn inner_errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error()
        .or_else(|| err.get_ref()?.downcast_ref::<io::Error>()?.raw_os_error())
}

/// A connected pair within the plugin: (client, server side).
fn local_pair() -> io::Result<(Socket, Socket)> {
    let server = sockshim::create_server("127.0.0.1:0")?;
    let client = sockshim::create_connection(server.getsockname()?, None)?;
    let (accepted, _) = server.accept()?;
    Ok((client, accepted))
}

/// Timeouts of `select`, `poll` and the selector against a silent peer:
/// empty when they pass, never earlier; zero returns at once; `None` with
/// nothing to wait on is an error.
pub fn select_timeouts(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    let timeout = Some(Duration::from_millis(300));

    let started = Instant::now();
    let (r, w, x) = sockshim::select(&[&sock], &[], &[&sock], timeout)?;
    report("select_ready", r.len() + w.len() + x.len());
    report("select_ms", ms(started));

    let started = Instant::now();
    let (r, _, _) = sockshim::select(&[&sock], &[], &[], ZERO)?;
    report("select_zero_ready", r.len());
    report("select_zero_ms", ms(started));

    // Writable at once, even without a timeout; not readable.
    let (r, w, x) = sockshim::select(&[&sock], &[&sock], &[&sock], None)?;
    report(
        "select_writable",
        format!("{} {} {}", r.len(), w.len(), x.len()),
    );

    let started = Instant::now();
    let (r, w, x) = sockshim::select(&[], &[], &[], Some(Duration::from_millis(200)))?;
    report("select_nothing_ready", r.len() + w.len() + x.len());
    report("select_nothing_ms", ms(started));
    report(
        "select_nothing_forever",
        outcome(&sockshim::select(&[], &[], &[], None)),
    );

    let closed = Socket::new(Family::Ipv4, Kind::Stream)?;
    closed.close();
    report(
        "select_closed",
        outcome(&sockshim::select(&[&closed], &[], &[], ZERO)),
    );

    let started = Instant::now();
    let ready = sockshim::poll(&[(&sock, Events::READABLE)], timeout)?;
    report("poll_ready", ready.len());
    report("poll_ms", ms(started));
    // Listed twice: each entry answers for itself.
    let ready = sockshim::poll(
        &[(&sock, Events::READABLE), (&sock, Events::WRITABLE)],
        ZERO,
    )?;
    report("poll_twice", format!("{ready:?}"));

    let mut selector = DefaultSelector::new()?;
    selector.register(&sock, EVENT_READ, "peer")?;
    let started = Instant::now();
    let ready = selector.select(timeout)?;
    report("selector_ready", ready.len());
    report("selector_ms", ms(started));
    let started = Instant::now();
    let ready = selector.select(ZERO)?;
    report("selector_zero_ready", ready.len());
    report("selector_zero_ms", ms(started));
    selector.modify(&sock, EVENT_READ | EVENT_WRITE, "peer, writing")?;
    let ready: Vec<_> = selector
        .select(None)?
        .into_iter()
        .map(|(key, events)| (key.data, events))
        .collect();
    report("selector_writable", format!("{ready:?}"));
    selector.close();

    let mut empty: DefaultSelector<()> = DefaultSelector::new()?;
    let started = Instant::now();
    report("selector_empty_ready", empty.select(timeout)?.len());
    report("selector_empty_ms", ms(started));
    report("selector_empty_forever", outcome(&empty.select(None)));
    Ok(())
}

/// Readiness of a listening socket, then of a connection from a native
/// peer as it gets data, is half-closed by the peer, and of a second
/// connection the peer resets. Each step is requested from the peer with
/// one byte on the first connection: `1` send a byte, `2` shut your
/// sending side, `3` connect again, `4` reset that connection.
pub fn readiness_states() -> Result {
    let server = sockshim::create_server("127.0.0.1:0")?;
    server.setblocking(false)?;
    report("listener_idle", revents(&server, Events::READABLE)?);
    println!("listening on {}", server.getsockname()?);

    let (r, _, _) = sockshim::select(&[&server], &[], &[], LONG)?;
    report("listener_select", r.len());
    report("listener_ready", revents(&server, Events::READABLE)?);
    let (conn, _) = server.accept()?;
    report("listener_after_accept", revents(&server, Events::READABLE)?);
    let all = Events::READABLE | Events::WRITABLE | Events::READ_HANG_UP;
    report("connected", revents(&conn, all)?);

    conn.sendall(b"1")?;
    let (r, _, _) = sockshim::select(&[&conn], &[], &[], LONG)?;
    report("data_select", r.len());
    report("data_revents", revents(&conn, all)?);
    report("data", String::from_utf8_lossy(&conn.recv(16)?));
    report("drained", revents(&conn, Events::READABLE)?);

    conn.sendall(b"2")?;
    wait_for(&conn, Events::READ_HANG_UP)?;
    report("half_closed", revents(&conn, all)?);
    let (r, w, x) = sockshim::select(&[&conn], &[&conn], &[&conn], ZERO)?;
    report(
        "half_closed_select",
        format!("{} {} {}", r.len(), w.len(), x.len()),
    );
    let mut selector = DefaultSelector::new()?;
    selector.register(&conn, EVENT_READ, ())?;
    let ready: Vec<Events> = selector.select(ZERO)?.into_iter().map(|(_, e)| e).collect();
    report("half_closed_selector", format!("{ready:?}"));
    report("half_closed_recv", conn.recv(16)?.len());
    // Our side still sends.
    report("half_closed_send", conn.send(b"3")?);
    report(
        "unregister",
        selector.unregister(&conn)?.fd == conn.fileno(),
    );

    let (r, _, _) = sockshim::select(&[&server], &[], &[], LONG)?;
    report("second_select", r.len());
    let (reset, _) = server.accept()?;
    conn.sendall(b"4")?;
    wait_for(&reset, Events::READABLE)?;
    report(
        "reset",
        revents(&reset, Events::READABLE | Events::WRITABLE)?,
    );
    let (r, w, x) = sockshim::select(&[&reset], &[&reset], &[&reset], ZERO)?;
    report(
        "reset_select",
        format!("{} {} {}", r.len(), w.len(), x.len()),
    );
    selector.register(&reset, EVENT_READ, ())?;
    let ready: Vec<Events> = selector.select(ZERO)?.into_iter().map(|(_, e)| e).collect();
    report("reset_selector", format!("{ready:?}"));
    report("reset_recv", outcome(&reset.recv(16)));
    Ok(())
}

/// Non-blocking connects to `open` (a listening port) and `refused` (a
/// port nothing listens on): `connect_ex`'s numbers, writability when the
/// connect ends, and `take_error`'s verdict; then `connect_ex`'s numbers
/// for failures that are not the peer's.
pub fn nonblocking_connect(open: &str, refused: &str) -> Result {
    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    sock.setblocking(false)?;
    let code = sock.connect_ex(open);
    report("open_connect_ex", code);
    let (_, w, _) = sockshim::select(&[], &[&sock], &[], LONG)?;
    report("open_writable", w.len());
    report(
        "open_take_error",
        match sock.take_error()? {
            None => "none".to_string(),
            Some(e) => format!("{:?}", e.kind()),
        },
    );
    report("open_peer", sock.getpeername()?);

    let other = Socket::new(Family::Ipv4, Kind::Stream)?;
    other.setblocking(false)?;
    report(
        "open_connect",
        match other.connect(open) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{:?} {:?}", e.kind(), inner_errno(&e)),
        },
    );
    wait_for(&other, Events::WRITABLE)?;
    report(
        "open_connect_then",
        format!("{:?}", other.take_error()?.map(|e| e.kind())),
    );

    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    sock.setblocking(false)?;
    let code = sock.connect_ex(refused);
    report("refused_connect_ex", code);
    if code == errno::EINPROGRESS {
        let (r, w, _) = sockshim::select(&[&sock], &[&sock], &[], LONG)?;
        report("refused_select", format!("{} {}", r.len(), w.len()));
        report("refused_revents", revents(&sock, Events::WRITABLE)?);
        report(
            "refused_take_error",
            match sock.take_error()? {
                None => "none".to_string(),
                Some(e) => format!("{:?} {:?}", e.kind(), e.raw_os_error()),
            },
        );
        report(
            "refused_take_error_then",
            format!("{:?}", sock.take_error()?.is_none()),
        );
    }

    let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    report("denied_connect_ex", sock.connect_ex("10.255.255.1:80"));
    report("unparsable_connect_ex", sock.connect_ex("no port here"));
    sock.close();
    report("closed_connect_ex", sock.connect_ex(open));
    report("errno_einprogress", errno::EINPROGRESS);
    report("errno_econnrefused", errno::ECONNREFUSED);
    report("errno_eacces", errno::EACCES);
    report("errno_einval", errno::EINVAL);
    report("errno_ebadf", errno::EBADF);
    Ok(())
}

/// The file at `path` to `addr` with `sendfile_once` on a non-blocking
/// socket whose peer reads slowly: would-block, wait, progress, until all
/// of it has gone; then the edge cases, and a directory (`dir`).
pub fn sendfile_once(addr: &str, path: &str, dir: &str) -> Result {
    let file = File::open(path)?;
    let len = file.len()?;
    let sock = sockshim::create_connection(addr, None)?;
    sock.setsockopt(SockOpt::SendBufSize(64 << 10))?;
    sock.setblocking(false)?;
    let (mut offset, mut calls, mut would_block) = (0u64, 0u64, 0u64);
    while offset < len {
        match sock.sendfile_once(&file, offset, len - offset) {
            Ok(0) => break,
            Ok(n) => {
                offset += n;
                calls += 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                would_block += 1;
                wait_for(&sock, Events::WRITABLE)?;
            }
            Err(e) => return Err(e),
        }
    }
    report("sent", offset);
    report("calls", calls);
    report("would_block", would_block);
    report("position", file.position());
    report("at_end", value(sock.sendfile_once(&file, len, 10)));
    report("past_end", value(sock.sendfile_once(&file, len + 10, 10)));
    report("count_zero", value(sock.sendfile_once(&file, 0, 0)));
    let directory = File::open(dir)?;
    report("directory", outcome(&sock.sendfile_once(&directory, 0, 10)));
    // The blocking sendfile still refuses a non-blocking socket.
    report(
        "blocking_sendfile",
        outcome(&sock.sendfile(&file, 0, Some(10))),
    );
    sock.shutdown(Shutdown::Write)?;
    Ok(())
}

/// Under wstd: a recv racing a timer against a peer that stays silent (the
/// timer wins), then against one that answers (the recv wins).
pub fn async_race(addr: &str) -> Result {
    wstd::runtime::block_on(async {
        let sock = aio::create_connection(addr).await?;
        let started = Instant::now();
        let silent = sock
            .recv(100)
            .timeout(wstd::time::Duration::from_millis(300))
            .await;
        report("silent_ms", ms(started));
        report(
            "silent",
            match silent {
                Err(e) => format!("timer {:?}", e.kind()),
                Ok(received) => format!("recv {}", outcome(&received)),
            },
        );
        // A wstd timer alone, between two socket waits.
        let started = Instant::now();
        wstd::time::Timer::after(wstd::time::Duration::from_millis(50))
            .wait()
            .await;
        report("timer_ms", ms(started));

        sock.sendall(b"go").await?;
        let started = Instant::now();
        let answered = sock
            .recv(100)
            .timeout(wstd::time::Duration::from_secs(30))
            .await;
        report("answered_ms", ms(started));
        report(
            "answered",
            match answered {
                Err(e) => format!("timer {:?}", e.kind()),
                Ok(Ok(data)) => format!("recv {}", String::from_utf8_lossy(&data)),
                Ok(Err(e)) => format!("recv {e}"),
            },
        );

        // Two tasks wait to receive on the socket at once, then the peer
        // sends a byte, and later another: each task gets one.
        let sock = Rc::new(sock);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let sock = Rc::clone(&sock);
                wstd::runtime::spawn(async move { sock.recv(1).await })
            })
            .collect();
        wstd::time::Timer::after(wstd::time::Duration::from_millis(50))
            .wait()
            .await;
        sock.sendall(b"two").await?;
        let mut got = Vec::new();
        for waiter in waiters {
            got.push(String::from_utf8_lossy(&waiter.await?).into_owned());
        }
        got.sort();
        report("both_waiters", got.join(","));
        Ok(())
    })
}

/// Under wstd: a peer that sends a few bytes and closes while the plugin
/// waits on a timer, so that the bytes and the end of the stream are one
/// report of the shared selector. The receive of the bytes comes back
/// short, which tells `aio` that the queue is empty; the end of the stream
/// must still be seen (the hub keeps a reported hang-up), not waited for.
pub fn async_end_after_short_read(addr: &str) -> Result {
    wstd::runtime::block_on(async {
        let sock = aio::create_connection(addr).await?;
        // Joins the shared selector, then gives up.
        let early = sock
            .recv(100)
            .timeout(wstd::time::Duration::from_millis(50))
            .await;
        report("early", if early.is_err() { "timer" } else { "recv" });
        sock.sendall(b"go").await?;
        // The peer sends and closes meanwhile; nobody reads the selector.
        wstd::time::Timer::after(wstd::time::Duration::from_millis(500))
            .wait()
            .await;
        let mut buf = [0u8; 100];
        let limit = wstd::time::Duration::from_secs(10);
        let started = Instant::now();
        let first = sock.recv_into(&mut buf).timeout(limit).await;
        report(
            "first",
            match first {
                Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Ok(Err(e)) => format!("error {e}"),
                Err(_) => "timer".into(),
            },
        );
        let second = sock.recv_into(&mut buf).timeout(limit).await;
        report(
            "second",
            match second {
                Ok(Ok(n)) => n.to_string(),
                Ok(Err(e)) => format!("error {e}"),
                Err(_) => "timer".into(),
            },
        );
        report("both_ms", ms(started));
        Ok(())
    })
}

/// Under wstd: `len` bytes to a native echo peer from one task while
/// another reads the echo, through `AsyncWrite` and `AsyncRead`.
pub fn async_echo(addr: &str, len: usize) -> Result {
    wstd::runtime::block_on(async {
        let sock = Rc::new(aio::create_connection(addr).await?);
        let writer = {
            let sock = Rc::clone(&sock);
            wstd::runtime::spawn(async move {
                let data = pattern(len);
                (&*sock).write_all(&data).await?;
                sock.shutdown(Shutdown::Write)
            })
        };
        let mut echoed = Vec::new();
        (&*sock).read_to_end(&mut echoed).await?;
        writer.await?;
        report("received", echoed.len());
        report("fnv", fnv1a(&echoed));
        Ok(())
    })
}

/// Under wstd: an echo server for `clients` connections at once, one task
/// each, with async accept, `recv_into` and `sendall`; reports the bytes it
/// echoed.
pub fn async_echo_server(clients: usize) -> Result {
    wstd::runtime::block_on(async {
        let server = aio::create_server("127.0.0.1:0")?;
        println!("listening on {}", server.getsockname()?);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (conn, _) = server.accept().await?;
            tasks.push(wstd::runtime::spawn(async move {
                let mut buf = vec![0; 16 << 10];
                let mut echoed = 0;
                loop {
                    let n = conn.recv_into(&mut buf).await?;
                    if n == 0 {
                        conn.shutdown(Shutdown::Write)?;
                        return Ok::<usize, io::Error>(echoed);
                    }
                    conn.sendall(&buf[..n]).await?;
                    echoed += n;
                }
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await?;
        }
        report("echoed", total);
        Ok(())
    })
}

/// One connection of [`selector_echo_server`]: what is still to be sent.
#[derive(Default)]
struct Pending {
    out: Vec<u8>,
    eof: bool,
}

/// With the selector: an echo server for `clients` connections at once,
/// non-blocking, buffering what the peer does not take yet and watching
/// for writability only then (`modify`); reports the bytes it echoed.
pub fn selector_echo_server(clients: usize) -> Result {
    let server = sockshim::create_server("127.0.0.1:0")?;
    server.setblocking(false)?;
    println!("listening on {}", server.getsockname()?);
    let mut selector = DefaultSelector::new()?;
    let listener_fd = server.fileno();
    selector.register(&server, EVENT_READ, listener_fd)?;
    let mut conns: HashMap<u32, (Socket, Pending)> = HashMap::new();
    let (mut accepted, mut finished, mut echoed) = (0, 0, 0);
    let mut buf = vec![0; 16 << 10];
    while finished < clients {
        for (key, events) in selector.select(LONG)? {
            if key.fd == listener_fd {
                let (conn, _) = match server.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                };
                conn.setblocking(false)?;
                selector.register(&conn, EVENT_READ, conn.fileno())?;
                conns.insert(conn.fileno(), (conn, Pending::default()));
                accepted += 1;
                if accepted == clients {
                    selector.unregister(&server)?;
                }
                continue;
            }
            let Some((conn, pending)) = conns.get_mut(&key.fd) else {
                continue;
            };
            if events.contains(EVENT_READ) && pending.out.is_empty() && !pending.eof {
                match conn.recv_into(&mut buf) {
                    Ok(0) => pending.eof = true,
                    Ok(n) => pending.out.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if !pending.out.is_empty() {
                match conn.send(&pending.out) {
                    Ok(n) => {
                        pending.out.drain(..n);
                        echoed += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if pending.eof && pending.out.is_empty() {
                selector.unregister(conn)?;
                conn.shutdown(Shutdown::Write)?;
                conns.remove(&key.fd);
                finished += 1;
                continue;
            }
            // Read when nothing waits to go out, else wait to write.
            let want = if pending.out.is_empty() {
                EVENT_READ
            } else {
                EVENT_WRITE
            };
            if key.events != want {
                selector.modify(conn, want, key.fd)?;
            }
        }
    }
    report("echoed", echoed);
    report("registered_at_end", selector.len());
    Ok(())
}

/// The selector's rules, Python's: what `register`, `modify`,
/// `unregister` and `get_key` refuse, and what they return.
pub fn selector_api() -> Result {
    let (a, b) = local_pair()?;
    let mut selector = DefaultSelector::new()?;
    let key = selector.register(&a, EVENT_READ, "a")?.clone();
    report(
        "key",
        format!("{} {:?} {}", key.fd == a.fileno(), key.events, key.data),
    );
    report(
        "twice",
        outcome(&selector.register(&a, EVENT_WRITE, "again")),
    );
    report(
        "empty_events",
        outcome(&selector.register(&b, Events::empty(), "b")),
    );
    report(
        "other_events",
        outcome(&selector.register(&b, EVENT_READ | Events::PRIORITY, "b")),
    );
    report(
        "modify_unknown",
        outcome(&selector.modify(&b, EVENT_READ, "b")),
    );
    report("unregister_unknown", outcome(&selector.unregister(&b)));
    report("get_key_unknown", outcome(&selector.get_key(&b)));
    report(
        "unregister_fd_unknown",
        outcome(&selector.unregister_fd(u32::MAX - 1)),
    );
    let closed = Socket::new(Family::Ipv4, Kind::Stream)?;
    closed.close();
    report(
        "register_closed",
        outcome(&selector.register(&closed, EVENT_READ, "c")),
    );
    report("fileno_closed", closed.fileno());

    selector.register(&b, EVENT_WRITE, "b")?;
    report("map", selector.get_map().len());
    let key = selector.modify(&a, EVENT_READ | EVENT_WRITE, "a2")?;
    report("modified", format!("{:?} {}", key.events, key.data));
    report("get_key", selector.get_key(&a)?.data);
    // Both writable; a also readable once b sends.
    b.sendall(b"x")?;
    wait_for(&a, Events::READABLE)?;
    let mut ready: Vec<(&str, Events)> = selector
        .select(ZERO)?
        .into_iter()
        .map(|(key, events)| (key.data, events))
        .collect();
    ready.sort_by_key(|(data, _)| *data);
    report("ready", format!("{ready:?}"));
    // The set's one pollable: ready while a select would report.
    let any = selector.subscribe();
    report("pollable_ready", any.ready());
    drop(any);
    // Keys are copies: unregistering while handling them is fine.
    for (key, _) in selector.select(ZERO)? {
        selector.unregister_fd(key.fd)?;
    }
    report("after_unregister", selector.len());
    report("unregistered_select", selector.select(ZERO)?.len());
    let any = selector.subscribe();
    report("pollable_empty", any.ready());
    drop(any);
    Ok(())
}

/// Pollables dropped while waited on and sockets dropped while watched:
/// no trap, no leak (a live pollable counts against the plugin's limit of
/// open sockets, 1024 by default), and later waits work. `addr` is a
/// silent native peer.
pub fn pollables_dropped(addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    // Subscribed and dropped, far past the limit.
    for _ in 0..3000 {
        drop(sock.subscribe(Events::READABLE)?);
    }
    report("subscribed", 3000);

    // Dropped while wstd's reactor waits on them: each recv loses its race
    // with a 1 ms timer, which drops the recv's future and its pollable.
    let sock = wstd::runtime::block_on(async {
        let sock = AsyncSocket::from_socket(sock)?;
        let mut timed_out = 0;
        for _ in 0..1500 {
            if sock
                .recv(10)
                .timeout(wstd::time::Duration::from_millis(1))
                .await
                .is_err()
            {
                timed_out += 1;
            }
        }
        report("timed_out", timed_out);
        Ok::<_, io::Error>(sock.into_socket())
    })?;
    report("still_usable", revents(&sock, Events::WRITABLE)?);

    // A pollable outlives its socket: ready for good, `block` returns.
    let (client, accepted) = local_pair()?;
    let pollable = accepted.subscribe(Events::READABLE)?;
    report("pollable_before", pollable.ready());
    drop(accepted);
    report("pollable_after", pollable.ready());
    pollable.block();
    drop(pollable);
    drop(client);

    // Closed by one task while another waits on it.
    let (client, accepted) = local_pair()?;
    let waited = wstd::runtime::block_on(async {
        let sock = Rc::new(AsyncSocket::from_socket(accepted)?);
        let waiter = {
            let sock = Rc::clone(&sock);
            wstd::runtime::spawn(async move { sock.recv(10).await })
        };
        wstd::time::Timer::after(wstd::time::Duration::from_millis(100))
            .wait()
            .await;
        sock.close();
        Ok::<_, io::Error>(waiter.await)
    })?;
    report("closed_while_waiting", outcome(&waited));
    drop(client);

    // A socket dropped while registered: not reported, no trap; the others
    // are, and a new socket (maybe with the same number) registers.
    let (x_peer, x) = local_pair()?;
    let (y_peer, y) = local_pair()?;
    let mut selector = DefaultSelector::new()?;
    selector.register(&x, EVENT_READ, "x")?;
    selector.register(&y, EVENT_READ, "y")?;
    let x_fd = x.fileno();
    drop(x);
    x_peer.sendall(b"!")?;
    let started = Instant::now();
    report(
        "dropped_ready",
        selector.select(Some(Duration::from_millis(200)))?.len(),
    );
    report("dropped_ms", ms(started));
    y_peer.sendall(b"?")?;
    let ready: Vec<&str> = selector
        .select(LONG)?
        .into_iter()
        .map(|(key, _)| key.data)
        .collect();
    report("others_ready", format!("{ready:?}"));
    let (z_peer, z) = local_pair()?;
    let reused = z.fileno() == x_fd;
    report(
        "register_after_drop",
        outcome(&selector.register(&z, EVENT_READ, "z")),
    );
    if !reused {
        report("unregister_dropped", outcome(&selector.unregister_fd(x_fd)));
    } else {
        report("unregister_dropped", "ok");
    }
    z_peer.sendall(b"z")?;
    wait_for(&z, Events::READABLE)?;
    let mut ready: Vec<&str> = selector
        .select(LONG)?
        .into_iter()
        .map(|(key, _)| key.data)
        .collect();
    ready.sort();
    report("then_ready", format!("{ready:?}"));
    report("map_at_end", selector.len());
    // Dropped with registrations in it: no trap either.
    drop(selector);
    drop((y, y_peer, z, z_peer, x_peer));
    report("done", "yes");
    Ok(())
}

/// Waits without limit, in the readiness wait `how` names (`poll`,
/// `select`, `selector`, or `pollable`: a `subscribe` pollable blocked on
/// through wasi:io/poll), for bytes from `addr`, which sends none: only
/// the host stopping the plugin ends the wait.
pub fn wait_forever(how: &str, addr: &str) -> Result {
    let sock = sockshim::create_connection(addr, None)?;
    report("waiting", how);
    let woken = match how {
        "poll" => sockshim::poll(&[(&sock, Events::READABLE)], None).map(|r| r.len()),
        "select" => sockshim::select(&[&sock], &[], &[], None).map(|(r, _, _)| r.len()),
        "selector" => {
            let mut selector = DefaultSelector::new()?;
            selector.register(&sock, EVENT_READ, ())?;
            selector.select(None).map(|r| r.len())
        }
        "pollable" => {
            sock.subscribe(Events::READABLE)?.block();
            Ok(1)
        }
        _ => return Err(io::Error::new(ErrorKind::InvalidInput, "unknown wait")),
    };
    report("woken", outcome(&woken));
    Ok(())
}
