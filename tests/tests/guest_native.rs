//! A guest talking to native peers: the Python semantics of the transfer
//! operations, end to end through wasmtime and the host's OS sockets.

use sockshim_host::SockshimCtx;
use sockshim_tests::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendall_64_mib_arrives_intact() {
    const LEN: usize = 64 << 20;
    let (addr, server) = serve_one(|mut s| {
        let mut got = Vec::with_capacity(LEN);
        s.read_to_end(&mut got).unwrap();
        got
    });
    let out = run_guest("sendall", &[&addr, &LEN.to_string()], loopback())
        .await
        .success();
    let got = server.join().unwrap();
    assert_eq!(out.num("sent"), LEN as u64);
    assert_eq!(got.len(), LEN);
    assert_eq!(fnv1a(&got), fnv1a(&pattern(LEN)));
    assert_eq!(out.num("fnv"), fnv1a(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_gets_every_byte_a_native_peer_sends() {
    const LEN: usize = 24 << 20;
    let (addr, server) = serve_one(|mut s| s.write_all(&pattern(LEN)).unwrap());
    let out = run_guest("recv-all", &[&addr], loopback()).await.success();
    server.join().unwrap();
    assert_eq!(out.num("received"), LEN as u64);
    assert_eq!(out.num("fnv"), fnv1a(&pattern(LEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_into_receives_straight_into_the_callers_buffer() {
    const LEN: usize = 24 << 20;
    // 64 KiB: the host receives into the plugin's memory; 100 bytes: the
    // host copies. The bytes are the same either way.
    for (bufsize, placed) in [(64 << 10, true), (100, false)] {
        let (addr, server) = serve_one(|mut s| s.write_all(&pattern(LEN)).unwrap());
        let out = run_guest("recv-into-all", &[&addr, &bufsize.to_string()], loopback())
            .await
            .success();
        server.join().unwrap();
        assert_eq!(out.num("received"), LEN as u64, "{out}");
        assert_eq!(out.num("fnv"), fnv1a(&pattern(LEN)), "{out}");
        // Every receive but the last (the end of the stream) of a placed
        // size lands in the buffer without a copy in the plugin.
        let calls = out.num("calls");
        if placed {
            assert_eq!(out.num("in_place"), calls - 1, "{out}");
        } else {
            assert!(out.num("in_place") <= calls, "{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_zero_returns_empty_at_once_even_when_blocking() {
    // The native side sends nothing and holds the connection until the
    // guest is done.
    let (addr, server) = serve_one(drain);
    let out = run_guest("recv-zero", &[&addr], loopback()).await.success();
    server.join().unwrap();
    assert_eq!(out.num("len"), 0);
    assert_eq!(out.num("recv_into_empty"), 0);
    assert!(out.num("elapsed_ms") < 1000, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_after_the_peer_closed_returns_empty() {
    let (addr, server) = serve_one(|mut s| {
        s.write_all(b"bye").unwrap();
        // Dropping `s` closes the connection.
    });
    let out = run_guest("recv-until-eof", &[&addr], loopback())
        .await
        .success();
    server.join().unwrap();
    assert_eq!(out.get("data"), "bye");
    assert_eq!(out.num("again"), 0);
    assert_eq!(out.num("again_placed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_on_a_reset_connection_is_connection_reset() {
    // Both ways the host receives: copied (up to 4 KiB) and placed.
    for size in ["100", "65536"] {
        let (addr, server) = serve_one(|s| {
            // Once the guest's connect has surely completed, close with
            // SO_LINGER 0: close(2) sends a reset.
            std::thread::sleep(Duration::from_millis(300));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        });
        let out = run_guest("recv-reset", &[&addr, size], loopback())
            .await
            .success();
        server.join().unwrap();
        assert!(
            out.get("first").starts_with("ConnectionReset"),
            "recv({size}): {out}"
        );
        // After the reset has been reported, the stream is at its end.
        assert_eq!(out.get("second"), "0 bytes", "recv({size}): {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_may_be_partial_and_then_would_block() {
    let (listener, addr) = native_listener();
    // The native side accepts but never reads.
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let out = run_guest("partial-send", &[&addr], loopback())
        .await
        .success();
    let first = out.num("first");
    assert!(first > 0 && first < out.num("len"), "{out}");
    assert!(out.get("then").starts_with("WouldBlock"), "{out}");
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_none_zero_and_positive() {
    check_timeouts(|addr| spawn(SOCKSHIM_TEST_GUEST, &["timeouts", addr], loopback())).await;
}

/// The same, with the plugin's sockets waiting in ppoll(2) on a thread of
/// its own instead of on the reactor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_none_zero_and_positive_waiting_on_the_thread() {
    check_timeouts(|addr| {
        let ctx = SockshimCtx::new(loopback()).waiting_on_thread().unwrap();
        spawn_with(SOCKSHIM_TEST_GUEST, &["timeouts", addr], ctx)
    })
    .await;
}

/// Runs the `timeouts` scenario, started by `start` with the peer's
/// address, and checks what it reports.
async fn check_timeouts(start: impl FnOnce(&str) -> Running) {
    let (addr, server) = serve_one(|mut s| {
        // The guest tries zero and three times 500 ms timeouts first; then
        // blocks until this arrives.
        std::thread::sleep(Duration::from_millis(3000));
        s.write_all(b"late").unwrap();
        // Then, once it answers, blocks in `recv_into` until more arrives.
        let mut answer = [0u8];
        s.read_exact(&mut answer).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"later").unwrap();
        drain(s);
    });
    let out = start(&addr).finish().await.success();
    server.join().unwrap();
    assert_eq!(out.get("default_timeout"), "None");

    assert_eq!(out.get("zero_blocking"), "false");
    assert!(out.get("zero").starts_with("WouldBlock"), "{out}");
    assert!(out.get("zero_placed").starts_with("WouldBlock"), "{out}");
    assert!(out.get("zero_into").starts_with("WouldBlock"), "{out}");
    assert!(out.num("zero_ms") < 300, "{out}");

    assert_eq!(out.get("positive_timeout"), "Some(500ms)");
    assert_eq!(out.get("positive"), "TimedOut: timed out");
    assert_eq!(out.get("positive_placed"), "TimedOut: timed out");
    assert_eq!(out.get("positive_into"), "TimedOut: timed out");
    for key in ["positive_ms", "positive_placed_ms", "positive_into_ms"] {
        let ms = out.num(key);
        assert!(ms >= 500, "{key}: timed out early, after {ms} ms");
        assert!(ms < 5000, "{key}: timed out late, after {ms} ms");
    }

    assert_eq!(out.get("none_blocking"), "true");
    assert_eq!(out.get("none"), "late");
    assert_eq!(out.get("none_into"), "later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendall_deadline_covers_the_whole_call() {
    // A reader that keeps draining slowly: each wait for writability is
    // short, but sending everything would take far longer than the timeout.
    let (addr, server) = serve_one(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0; 16 << 10];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    const LEN: usize = 64 << 20;
    let out = run_guest(
        "sendall-deadline",
        &[&addr, &LEN.to_string(), "1000"],
        loopback(),
    )
    .await
    .success();
    let received = server.join().unwrap();
    let sent = out.num("bytes_sent");
    // Python's message, plus what Python loses: how much went.
    assert_eq!(
        out.get("outcome"),
        format!("TimedOut: timed out after sending {sent} bytes")
    );
    let ms = out.num("elapsed_ms");
    assert!(ms >= 1000, "timed out early, after {ms} ms");
    assert!(ms < 6000, "the deadline did not bound the call: {ms} ms");
    assert!(sent > 0 && sent < LEN as u64, "{out}");
    // Everything reported sent was handed to the kernel; the reader got at
    // most that.
    assert!(
        received as u64 <= sent,
        "received {received}, reported {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_closed_port_is_refused() {
    let addr = closed_port();
    let out = run_guest("connect", &[&addr], loopback()).await.success();
    assert!(out.get("connect").starts_with("ConnectionRefused"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_honours_the_timeout() {
    // A listener whose accept queue is full drops new SYNs: a black hole on
    // loopback. Fill it with native connects until one hangs.
    let listener = socket_with_backlog(0);
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let out = run_guest("connect-timeout", &[&addr.to_string(), "1000"], loopback())
        .await
        .success();
    assert_eq!(out.get("connect"), "TimedOut: timed out", "{out}");
    let ms = out.num("elapsed_ms");
    assert!((1000..6000).contains(&ms), "connect gave up after {ms} ms");
    drop(fillers);
}

fn socket_with_backlog(backlog: i32) -> TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    // Re-listen with a tiny backlog (std uses 128).
    let fd = l.into_raw_fd();
    // SAFETY: fd is a valid listening socket we own.
    unsafe {
        assert_eq!(libc::listen(fd, backlog), 0);
        TcpListener::from_raw_fd(fd)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_after_close_is_an_error_not_a_trap() {
    let (addr, server) = serve_one(drain);
    let out = run_guest("use-after-close", &[&addr], loopback())
        .await
        .success();
    server.join().unwrap();
    // CPython's OSError(EBADF), with WASI's number for EBADF.
    for op in ["recv", "send", "getpeername"] {
        assert!(out.get(op).contains("(os error 8)"), "{op}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_recv_size_is_a_clear_error() {
    let (addr, server) = serve_one(|mut s| {
        let mut buf = [0; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    });
    let out = run_guest("huge-recv", &[&addr], loopback()).await.success();
    server.join().unwrap();
    for key in ["huge", "over_max"] {
        let v = out.get(key);
        assert!(v.starts_with("InvalidInput"), "{key}: {out}");
        assert!(
            v.contains("exceeds the maximum of 16777216"),
            "{key}: {out}"
        );
    }
    assert_eq!(out.get("after"), "ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_write_traits_run_buffered_readers() {
    let (addr, server) = serve_one(|mut s| {
        let mut got = [0; 23];
        s.read_exact(&mut got).unwrap();
        // Answer in pieces, so lines cross packet boundaries.
        for piece in [&b"first li"[..], b"ne\nsec", b"ond line\nthe rest\n"] {
            s.write_all(piece).unwrap();
            s.flush().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        got
    });
    let out = run_guest("read-write", &[&addr], loopback())
        .await
        .success();
    assert_eq!(&server.join().unwrap(), b"hello line\nsecond line\n");
    assert_eq!(out.get("line1"), "first line");
    assert_eq!(out.get("line2"), "second line");
    assert_eq!(out.get("rest"), "the rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_round_trip() {
    let (addr, server) = serve_one(drain);
    let out = run_guest("options", &[&addr], loopback()).await.success();
    server.join().unwrap();
    assert_eq!(out.get("TcpNoDelay"), "TcpNoDelay(true)");
    assert_eq!(out.get("KeepAlive"), "KeepAlive(true)");
    assert_eq!(out.get("ReuseAddr"), "ReuseAddr(true)");
    assert_eq!(out.get("Linger"), "Linger(Some(2s))");
    // Linux doubles the requested size for bookkeeping.
    let size: u64 = out
        .get("RecvBufSize")
        .trim_start_matches("RecvBufSize(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(size >= 128 << 10, "{out}");
    assert!(out.get("huge_buffer").starts_with("InvalidInput"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_both_ends() {
    let (addr, server) = serve_one(drain);
    let out = run_guest("addresses", &[&addr], loopback()).await.success();
    server.join().unwrap();
    assert_eq!(out.get("peer"), addr);
    assert_eq!(out.get("local_ip"), "127.0.0.1");
    assert!(
        out.get("unconnected_peer").starts_with("NotConnected"),
        "{out}"
    );
    assert_eq!(out.get("family"), "Ipv4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_sockets_connect_and_carry_bytes() {
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0; 3];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        drain(s);
    });
    let out = run_guest("ipv6", &[&addr], loopback()).await.success();
    server.join().unwrap();
    assert_eq!(out.get("peer"), addr);
    assert_eq!(out.get("local_ip"), "::1");
    assert_eq!(out.get("echo"), "six");
    let v4 = out.get("v4_on_v6");
    assert!(
        v4.starts_with("InvalidInput") && v4.contains("family"),
        "{out}"
    );
}
