//! Datagram (UDP) sockets against native peers on IPv4 and IPv6, and the
//! datagram policy for sockshim sockets and for `std::net::UdpSocket` in a
//! plugin (wasi:sockets). The guest side is tests/programs/src/udp.rs.

use sockshim_tests::*;
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

/// A native echo peer on `ip`: sends every datagram back to its sender,
/// until nothing comes for 30 s.
fn echo_peer(ip: &str) -> SocketAddr {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    addr
}

/// A native peer `a` on `ip` that waits for the plugin's first datagram,
/// then has a second socket `b` write to the plugin before `a` answers
/// twice: a plugin that hears only `a` gets `from-a` first. Returns `a`'s
/// address and what `b` is.
fn answer_after_another(ip: &str) -> (SocketAddr, JoinHandle<SocketAddr>) {
    let a = UdpSocket::bind((ip, 0)).unwrap();
    let b = UdpSocket::bind((ip, 0)).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let addr = a.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 100];
        let (_, plugin) = a.recv_from(&mut buf).unwrap();
        b.send_to(b"from-b", plugin).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        a.send_to(b"from-a", plugin).unwrap();
        a.send_to(b"again-a", plugin).unwrap();
        b.local_addr().unwrap()
    });
    (addr, handle)
}

/// A UDP port on `ip` nothing listens on.
fn closed_udp_port(ip: &str) -> SocketAddr {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    sock.local_addr().unwrap()
}

async fn basics(ip: &str, max: usize) {
    let peer = echo_peer(ip);
    let out = run_guest("udp-basics", &[&peer.to_string()], loopback())
        .await
        .success();
    assert_eq!(out.num("sent"), 5, "{out}");
    assert_eq!(out.get("echo"), "hello", "{out}");
    assert_eq!(out.get("from"), peer.to_string(), "{out}");
    assert_eq!(out.get("truncated"), "0123", "{out}");
    assert_eq!(out.num("empty"), 0, "{out}");
    assert_eq!(out.num("zero"), 0, "{out}");
    assert_eq!(
        out.get("after_zero"),
        "next",
        "recv(0) consumed no datagram: {out}"
    );
    assert_eq!(out.get("into"), "into", "{out}");
    assert_eq!(out.get("into_from"), peer.to_string(), "{out}");
    assert_eq!(out.get("into_short"), "short", "{out}");
    assert_eq!(out.get("into_truncated"), "truncated", "{out}");
    assert_eq!(out.num("in_place"), 3, "recvfrom_into copied: {out}");
    assert_eq!(out.num("max_sent"), max as u64, "{out}");
    assert_eq!(out.num("max_back"), max as u64, "{out}");
    assert_eq!(out.get("max_same"), "true", "{out}");
    assert!(out.get("over").contains("too large"), "EMSGSIZE: {out}");
    assert!(out.get("timeout").starts_with("TimedOut"), "{out}");
    let waited = out.num("timeout_ms");
    assert!((250..10_000).contains(&waited), "{out}");
    assert!(out.get("nonblocking").starts_with("WouldBlock"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_truncation_empty_datagrams_and_timeouts_over_ipv4() {
    basics("127.0.0.1", 65_507).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_truncation_empty_datagrams_and_timeouts_over_ipv6() {
    basics("::1", 65_527).await;
}

async fn connected(ip: &str) {
    let (a, b) = answer_after_another(ip);
    let out = run_guest("udp-connected", &[&a.to_string()], loopback())
        .await
        .success();
    b.join().unwrap();
    assert_eq!(out.get("peer"), a.to_string(), "{out}");
    assert_eq!(
        out.get("got"),
        "from-a",
        "a connected socket heard another: {out}"
    );
    assert_eq!(out.get("from"), a.to_string(), "{out}");
    assert_eq!(out.get("recv"), "again-a", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_socket_hears_only_its_peer_over_ipv4() {
    connected("127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_socket_hears_only_its_peer_over_ipv6() {
    connected("::1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_refuses_a_connected_socket_on_its_next_operation() {
    for ip in ["127.0.0.1", "::1"] {
        let closed = closed_udp_port(ip);
        let out = run_guest("udp-refused", &[&closed.to_string()], loopback())
            .await
            .success();
        assert_eq!(out.get("send"), "ok", "{out}");
        assert!(
            out.get("recv").starts_with("ConnectionRefused"),
            "{ip}: {out}"
        );
    }
}

/// With only a connect rule for the peer: other destinations, broadcast
/// and a specific bind are denied; the wildcard bind is allowed, and the
/// socket then hears only the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_rule_lets_a_socket_send_and_hear_only_its_peers() {
    let (a, b) = answer_after_another("127.0.0.1");
    let denied = closed_udp_port("127.0.0.1").to_string();
    let policy = policy(&[&a.to_string()], &[]);
    let out = run_guest("udp-policy", &[&a.to_string(), &denied], policy)
        .await
        .success();
    b.join().unwrap();
    assert!(out.get("denied").starts_with("PermissionDenied"), "{out}");
    assert!(
        out.get("broadcast").starts_with("PermissionDenied"),
        "{out}"
    );
    assert!(
        out.get("bind_specific").starts_with("PermissionDenied"),
        "{out}"
    );
    assert_eq!(out.get("bind_wildcard"), "ok", "{out}");
    assert_eq!(
        out.get("got"),
        "from-a",
        "heard a sender no rule allows: {out}"
    );
    assert_eq!(out.get("from"), a.to_string(), "{out}");
    assert_eq!(out.get("then"), "again-a", "{out}");
}

/// The case, as a new user would try it: with only
/// `--allow-connect` for one peer, std::net's `UdpSocket::bind("0.0.0.0:0")`
/// succeeds, but the socket hears only that peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_net_udp_is_held_to_the_same_rules() {
    let (a, b) = answer_after_another("127.0.0.1");
    let denied = closed_udp_port("127.0.0.1").to_string();
    let policy = policy(&[&a.to_string()], &[]);
    let out = run_guest("udp-std-policy", &[&a.to_string(), &denied], policy)
        .await
        .success();
    b.join().unwrap();
    assert!(
        out.get("bind_specific").starts_with("PermissionDenied"),
        "{out}"
    );
    assert_eq!(out.get("bind_wildcard"), "ok", "{out}");
    assert!(out.get("denied").starts_with("PermissionDenied"), "{out}");
    assert_eq!(
        out.get("got"),
        "from-a",
        "std::net heard a sender no rule allows: {out}"
    );
    assert_eq!(out.get("from"), a.to_string(), "{out}");
}

/// A server's policy: the socket bound under a bind rule hears anyone;
/// its answers go where the connect rules allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_udp_echo_example_answers_under_its_rules() {
    let server = spawn(
        UDP_ECHO,
        &["127.0.0.1:0"],
        policy(&["127.0.0.1:*"], &["127.0.0.1:*"]),
    );
    let addr = server.listening_on().await;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client.send_to(b"anyone", addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"anyone"[..], addr));
    server.stop();
}

/// A socket bound under a bind rule hears a sender no connect rule allows;
/// answering it is still denied. (udp-echo reports the denied answer on
/// stderr, which shows the datagram was heard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_rule_hears_anyone_but_answers_need_a_connect_rule() {
    let server = spawn(UDP_ECHO, &["127.0.0.1:0"], policy(&[], &["127.0.0.1:*"]));
    let addr = server.listening_on().await;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"heard?", addr).unwrap();
    let line = server.stderr_line_containing("reply to").await;
    assert!(
        line.contains(&client.local_addr().unwrap().to_string()),
        "{line}"
    );
    assert!(line.contains("access denied"), "{line}");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        client.recv_from(&mut [0u8; 16]).is_err(),
        "an answer went out"
    );
    server.stop();
}
