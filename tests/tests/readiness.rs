//! Readiness (issue 22), guest side against native peers: `select`,
//! `poll` and the selector with their timeouts, the readiness of listening,
//! connected, half-closed and reset sockets, non-blocking connects,
//! `sendfile_once` on a non-blocking socket, `sockshim::aio` under wstd,
//! and pollables and sockets dropped while waited on.

use sockshim_host::SockshimCtx;
use sockshim_tests::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// The flags of an `Events(A | B)` the guest printed.
fn flags(printed: &str) -> Vec<&str> {
    let inner = printed
        .strip_prefix("Events(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not an Events: {printed}"));
    inner.split(" | ").collect()
}

/// Asserts that `key` names a readiness with every flag of `with` and none
/// of `without`.
fn assert_flags(out: &Outcome, key: &str, with: &[&str], without: &[&str]) {
    let got = flags(out.get(key));
    for flag in with {
        assert!(got.contains(flag), "{key}: {flag} missing\n{out}");
    }
    for flag in without {
        assert!(!got.contains(flag), "{key}: {flag} unexpected\n{out}");
    }
}

/// A peer that connects, sends nothing and holds the connection until the
/// guest closes it.
fn silent_peer() -> (String, std::thread::JoinHandle<usize>) {
    serve_one(drain)
}

/// Asserts a wait that timed out after `key` milliseconds took at least
/// `at_least`, and not absurdly long (speed is not what is tested).
fn assert_waited(out: &Outcome, key: &str, at_least: u64) {
    let ms = out.num(key);
    assert!(ms >= at_least, "{key}: returned after {ms} ms\n{out}");
    assert!(ms < 10_000, "{key}: returned after {ms} ms\n{out}");
}

async fn check_select_timeouts(ctx: SockshimCtx) {
    let (addr, server) = silent_peer();
    let out = run_guest_in("select-timeouts", &[&addr], ctx, &[])
        .await
        .success();
    server.join().unwrap();

    assert_eq!(out.num("select_ready"), 0, "{out}");
    assert_waited(&out, "select_ms", 300);
    assert_eq!(out.num("select_zero_ready"), 0, "{out}");
    assert!(out.num("select_zero_ms") < 1000, "{out}");
    assert_eq!(out.get("select_writable"), "0 1 0", "{out}");
    assert_eq!(out.num("select_nothing_ready"), 0, "{out}");
    assert_waited(&out, "select_nothing_ms", 200);
    assert!(
        out.get("select_nothing_forever")
            .starts_with("InvalidInput"),
        "{out}"
    );
    assert_eq!(
        out.get("select_closed"),
        "Uncategorized: Bad file descriptor (os error 8)",
        "{out}"
    );

    assert_eq!(out.num("poll_ready"), 0, "{out}");
    assert_waited(&out, "poll_ms", 300);
    assert_eq!(out.get("poll_twice"), "[(1, Events(WRITABLE))]", "{out}");

    assert_eq!(out.num("selector_ready"), 0, "{out}");
    assert_waited(&out, "selector_ms", 300);
    assert_eq!(out.num("selector_zero_ready"), 0, "{out}");
    assert!(out.num("selector_zero_ms") < 1000, "{out}");
    assert_eq!(
        out.get("selector_writable"),
        r#"[("peer, writing", Events(WRITABLE))]"#,
        "{out}"
    );
    assert_eq!(out.num("selector_empty_ready"), 0, "{out}");
    assert_waited(&out, "selector_empty_ms", 300);
    assert!(
        out.get("selector_empty_forever")
            .starts_with("InvalidInput"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_poll_and_the_selector_time_out_empty_and_not_early() {
    check_select_timeouts(SockshimCtx::new(loopback())).await;
}

/// The same, with the plugin waiting in ppoll(2) on a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_poll_and_the_selector_time_out_waiting_on_the_thread() {
    check_select_timeouts(SockshimCtx::new(loopback()).waiting_on_thread().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_of_listening_connected_half_closed_and_reset_sockets() {
    let plugin = spawn(SOCKSHIM_TEST_GUEST, &["readiness-states"], loopback());
    let addr = plugin.listening_on().await;
    let peer = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut step = [0u8];
        conn.read_exact(&mut step).unwrap();
        assert_eq!(&step, b"1");
        conn.write_all(b"x").unwrap();
        conn.read_exact(&mut step).unwrap();
        assert_eq!(&step, b"2");
        conn.shutdown(Shutdown::Write).unwrap();
        conn.read_exact(&mut step).unwrap();
        assert_eq!(&step, b"3");
        let second = TcpStream::connect(addr).unwrap();
        conn.read_exact(&mut step).unwrap();
        assert_eq!(&step, b"4");
        // close(2) with SO_LINGER 0 sends a reset.
        socket2::SockRef::from(&second)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(second);
        drain(conn)
    });
    let out = plugin.finish().await.success();
    peer.join().unwrap();

    assert_eq!(out.get("listener_idle"), "none", "{out}");
    assert_eq!(out.num("listener_select"), 1, "{out}");
    assert_flags(&out, "listener_ready", &["READABLE"], &[]);
    assert_eq!(out.get("listener_after_accept"), "none", "{out}");
    // Connected and idle: writable only.
    assert_eq!(out.get("connected"), "Events(WRITABLE)", "{out}");

    assert_eq!(out.num("data_select"), 1, "{out}");
    assert_flags(
        &out,
        "data_revents",
        &["READABLE", "WRITABLE"],
        &["READ_HANG_UP", "HANG_UP", "ERROR"],
    );
    assert_eq!(out.get("data"), "x", "{out}");
    assert_eq!(out.get("drained"), "none", "{out}");

    // The peer shut its side: readable (the end of the stream) with
    // READ_HANG_UP, still writable, not hung up both ways.
    assert_flags(
        &out,
        "half_closed",
        &["READABLE", "WRITABLE", "READ_HANG_UP"],
        &["HANG_UP", "ERROR"],
    );
    assert_eq!(out.get("half_closed_select"), "1 1 0", "{out}");
    assert_eq!(
        out.get("half_closed_selector"),
        "[Events(READABLE)]",
        "{out}"
    );
    assert_eq!(out.num("half_closed_recv"), 0, "{out}");
    assert_eq!(out.num("half_closed_send"), 1, "{out}");
    assert_eq!(out.get("unregister"), "true", "{out}");

    assert_eq!(out.num("second_select"), 1, "{out}");
    // Reset: an error and a hang-up, which select counts as readable and
    // writable, and the selector as read (the key's events).
    assert_flags(&out, "reset", &["READABLE", "ERROR", "HANG_UP"], &[]);
    assert_eq!(out.get("reset_select"), "1 1 0", "{out}");
    assert_eq!(out.get("reset_selector"), "[Events(READABLE)]", "{out}");
    assert!(
        out.get("reset_recv").starts_with("ConnectionReset"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonblocking_connect_to_a_listening_and_to_a_refused_port() {
    // Nobody accepts: the kernel completes the handshakes on its own.
    let (listener, open) = native_listener();
    let refused = closed_port();
    let out = run_guest("nonblocking-connect", &[&open, &refused], loopback())
        .await
        .success();
    drop(listener);

    let einprogress = out.num("errno_einprogress") as i64;
    let econnrefused = out.num("errno_econnrefused") as i64;
    assert_eq!(einprogress, 26, "WASI's EINPROGRESS");
    // Loopback may complete the connect within the call.
    let code: i64 = out.get("open_connect_ex").parse().unwrap();
    assert!(code == einprogress || code == 0, "{out}");
    assert_eq!(out.num("open_writable"), 1, "{out}");
    assert_eq!(out.get("open_take_error"), "none", "{out}");
    assert_eq!(out.get("open_peer"), open, "{out}");
    let connect = out.get("open_connect");
    assert!(
        connect == "ok" || connect == format!("WouldBlock Some({einprogress})"),
        "connect on a non-blocking socket: {out}"
    );
    assert_eq!(out.get("open_connect_then"), "None", "{out}");

    let code: i64 = out.get("refused_connect_ex").parse().unwrap();
    assert!(code == einprogress || code == econnrefused, "{out}");
    if code == einprogress {
        // The ended connect is writable (select's writable set has
        // errors) and readable; take_error says refused, once.
        assert_eq!(out.get("refused_select"), "1 1", "{out}");
        assert_flags(&out, "refused_revents", &["ERROR"], &[]);
        assert_eq!(
            out.get("refused_take_error"),
            format!("ConnectionRefused Some({econnrefused})"),
            "{out}"
        );
        assert_eq!(out.get("refused_take_error_then"), "true", "{out}");
    }

    assert_eq!(
        out.num("denied_connect_ex"),
        out.num("errno_eacces"),
        "{out}"
    );
    assert_eq!(
        out.num("unparsable_connect_ex"),
        out.num("errno_einval"),
        "{out}"
    );
    assert_eq!(
        out.num("closed_connect_ex"),
        out.num("errno_ebadf"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendfile_once_on_a_non_blocking_socket_to_a_slow_reader() {
    const LEN: usize = 8 << 20;
    let dir = TempDir::new("sendfile-once");
    dir.write("file.bin", &pattern(LEN));
    let (addr, server) = serve_one(|mut s| {
        // Nothing read at first: the socket's buffers fill and the guest
        // sees would-block; then a slow drain.
        std::thread::sleep(Duration::from_millis(500));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::with_capacity(LEN);
        let mut buf = vec![0; 256 << 10];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return got,
                n => got.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let out = run_guest_in(
        "sendfile-once",
        &[&addr, "/data/file.bin", "/data"],
        SockshimCtx::new(loopback()),
        &[(dir.path(), "/data")],
    )
    .await
    .success();
    let got = server.join().unwrap();
    assert_eq!(out.num("sent"), LEN as u64, "{out}");
    assert_eq!(got.len(), LEN);
    assert_eq!(fnv1a(&got), fnv1a(&pattern(LEN)));
    assert!(out.num("would_block") >= 1, "{out}");
    assert!(out.num("calls") >= 2, "progress after waiting: {out}");
    // os.sendfile leaves the file's position alone.
    assert_eq!(out.num("position"), 0, "{out}");
    assert_eq!(out.get("at_end"), "0", "{out}");
    assert_eq!(out.get("past_end"), "0", "{out}");
    assert_eq!(out.get("count_zero"), "0", "{out}");
    assert!(out.get("directory").starts_with("InvalidInput"), "{out}");
    assert!(
        out.get("blocking_sendfile").starts_with("InvalidInput"),
        "{out}"
    );
}

async fn check_async_race(ctx: SockshimCtx) {
    let (addr, server) = serve_one(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut go = [0u8; 2];
        s.read_exact(&mut go).unwrap();
        assert_eq!(&go, b"go");
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"hello").unwrap();
        let mut two = [0u8; 3];
        s.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"two");
        s.write_all(b"a").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(b"b").unwrap();
        drain(s)
    });
    let out = run_guest_in("async-race", &[&addr], ctx, &[])
        .await
        .success();
    server.join().unwrap();
    assert_eq!(out.get("silent"), "timer TimedOut", "{out}");
    assert_waited(&out, "silent_ms", 300);
    assert_waited(&out, "timer_ms", 50);
    assert_eq!(out.get("answered"), "recv hello", "{out}");
    assert!(out.num("answered_ms") < 20_000, "{out}");
    assert_eq!(out.get("both_waiters"), "a,b", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_recv_races_a_wstd_timer() {
    check_async_race(SockshimCtx::new(loopback())).await;
}

/// The same with room for one socket only, so that `aio` cannot make the
/// selector its waits share (it counts against the limit): each wait falls
/// back to the socket's own pollable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_recv_races_a_wstd_timer_without_room_for_the_shared_selector() {
    check_async_race(SockshimCtx::new(loopback()).with_max_sockets(1)).await;
}

/// The same, with the plugin's socket pollables waited on in ppoll(2) on
/// a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_recv_races_a_wstd_timer_waiting_on_the_thread() {
    check_async_race(SockshimCtx::new(loopback()).waiting_on_thread().unwrap()).await;
}

/// A receive that comes back short makes `aio`'s next receive wait for the
/// shared selector's next report instead of trying first; when the bytes
/// and the end of the stream came in one report, there is no next one,
/// and the end of the stream must be returned at once all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_recv_after_a_short_one_sees_an_end_reported_with_the_bytes() {
    let (addr, server) = serve_one(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut go = [0u8; 2];
        s.read_exact(&mut go).unwrap();
        assert_eq!(&go, b"go");
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        drain(s)
    });
    let out = run_guest("async-end", &[&addr], loopback()).await.success();
    server.join().unwrap();
    assert_eq!(out.get("early"), "timer", "{out}");
    assert_eq!(out.get("first"), "hello", "{out}");
    assert_eq!(out.get("second"), "0", "{out}");
    assert!(out.num("both_ms") < 5_000, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_echo_through_async_read_and_write_is_byte_exact() {
    const LEN: usize = 8 << 20;
    let (addr, server) = serve_one(|s| {
        let mut reader = s.try_clone().unwrap();
        let mut writer = s;
        let copied = std::io::copy(&mut reader, &mut writer).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
        copied
    });
    let out = run_guest("async-echo", &[&addr, &LEN.to_string()], loopback())
        .await
        .success();
    assert_eq!(server.join().unwrap(), LEN as u64);
    assert_eq!(out.num("received"), LEN as u64, "{out}");
    assert_eq!(out.num("fnv"), fnv1a(&pattern(LEN)), "{out}");
}

/// `clients` native clients of an echo server in the guest, all connected
/// at once, the first of them silent until the others are done: each
/// gets its own bytes back, and the guest counts them all.
async fn check_echo_server(scenario: &str, clients: usize) {
    let plugin = spawn(
        SOCKSHIM_TEST_GUEST,
        &[scenario, &clients.to_string()],
        loopback(),
    );
    let addr = plugin.listening_on().await;
    let mut silent = TcpStream::connect(addr).unwrap();
    let talkers: Vec<_> = (1..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let data: Vec<u8> = pattern(64 << 10 | i).into_iter().rev().collect();
                let mut writer = conn.try_clone().unwrap();
                let sender = std::thread::spawn(move || {
                    writer.write_all(&data).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                    data
                });
                let mut echoed = Vec::new();
                conn.read_to_end(&mut echoed).unwrap();
                let data = sender.join().unwrap();
                assert!(echoed == data, "client {i}: the echo differs");
                data.len()
            })
        })
        .collect();
    // The silent client holds nobody up.
    let mut total: usize = talkers.into_iter().map(|t| t.join().unwrap()).sum();
    silent.write_all(b"last").unwrap();
    silent.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    silent.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"last");
    total += 4;
    let out = plugin.finish().await.success();
    assert_eq!(out.num("echoed"), total as u64, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_echo_server_serves_clients_at_once() {
    check_echo_server("async-echo-server", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_echo_server_serves_clients_at_once() {
    check_echo_server("selector-echo-server", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_selector_keeps_pythons_rules() {
    let out = run_guest("selector-api", &[], loopback()).await.success();
    assert_eq!(out.get("key"), "true Events(READABLE) a", "{out}");
    assert!(out.get("twice").starts_with("AlreadyExists"), "{out}");
    assert!(out.get("empty_events").starts_with("InvalidInput"), "{out}");
    assert!(out.get("other_events").starts_with("InvalidInput"), "{out}");
    for key in [
        "modify_unknown",
        "unregister_unknown",
        "get_key_unknown",
        "unregister_fd_unknown",
    ] {
        assert!(out.get(key).starts_with("NotFound"), "{key}: {out}");
    }
    assert_eq!(
        out.get("register_closed"),
        "Uncategorized: Bad file descriptor (os error 8)",
        "{out}"
    );
    assert_eq!(out.num("fileno_closed"), u32::MAX as u64, "{out}");
    assert_eq!(out.num("map"), 2, "{out}");
    assert_eq!(
        out.get("modified"),
        "Events(READABLE | WRITABLE) a2",
        "{out}"
    );
    assert_eq!(out.get("get_key"), "a2", "{out}");
    assert_eq!(
        out.get("ready"),
        r#"[("a2", Events(READABLE | WRITABLE)), ("b", Events(WRITABLE))]"#,
        "{out}"
    );
    assert_eq!(out.get("pollable_ready"), "true", "{out}");
    assert_eq!(out.num("after_unregister"), 0, "{out}");
    assert_eq!(out.num("unregistered_select"), 0, "{out}");
    assert_eq!(out.get("pollable_empty"), "false", "{out}");
}

async fn check_pollables_dropped(ctx: SockshimCtx) {
    let (addr, server) = silent_peer();
    let out = run_guest_in("pollables-dropped", &[&addr], ctx, &[])
        .await
        .success();
    server.join().unwrap();
    assert_eq!(out.num("subscribed"), 3000, "{out}");
    assert_eq!(out.num("timed_out"), 1500, "{out}");
    assert_eq!(out.get("still_usable"), "Events(WRITABLE)", "{out}");
    assert_eq!(out.get("pollable_before"), "false", "{out}");
    assert_eq!(out.get("pollable_after"), "true", "{out}");
    assert_eq!(
        out.get("closed_while_waiting"),
        "Uncategorized: Bad file descriptor (os error 8)",
        "{out}"
    );
    assert_eq!(out.num("dropped_ready"), 0, "{out}");
    assert_waited(&out, "dropped_ms", 200);
    assert_eq!(out.get("others_ready"), r#"["y"]"#, "{out}");
    assert_eq!(out.get("register_after_drop"), "ok", "{out}");
    assert_eq!(out.get("unregister_dropped"), "ok", "{out}");
    assert_eq!(out.get("then_ready"), r#"["y", "z"]"#, "{out}");
    assert_eq!(out.num("map_at_end"), 2, "{out}");
    assert_eq!(out.get("done"), "yes", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollables_and_sockets_dropped_while_waited_on() {
    check_pollables_dropped(SockshimCtx::new(loopback())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollables_and_sockets_dropped_while_waited_on_waiting_on_the_thread() {
    check_pollables_dropped(SockshimCtx::new(loopback()).waiting_on_thread().unwrap()).await;
}
