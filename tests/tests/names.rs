//! Names reach the host wherever a plugin uses one, so that a name rule
//! alone (`--allow-connect localhost:PORT`) allows it; the errno values
//! CPython gives for a closed socket and the socket limit; the default
//! timeout of `create_connection`.

use sockshim_host::{Policy, SockshimCtx};
use sockshim_tests::*;
use std::io::Read;

/// The port of a `127.0.0.1:PORT` address.
fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

/// Nothing reached `listener`: the plugin was refused before any packet.
fn nothing_reached(listener: &std::net::TcpListener) {
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a connection got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_connection_by_name_is_allowed_by_a_name_rule_alone() {
    let (addr, server) = serve_one(|mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let by_name = format!("localhost:{}", port_of(&addr));
    let out = run_guest("create-connection", &[&by_name], policy(&[&by_name], &[]))
        .await
        .success();
    assert_eq!(out.get("create_connection"), "ok", "{out}");
    assert_eq!(out.get("peer"), addr, "{out}");
    assert_eq!(server.join().unwrap(), b"by name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_connection_by_name_is_denied_by_a_name_rule_for_another_port() {
    let (listener, addr) = native_listener();
    let port = port_of(&addr);
    let by_name = format!("localhost:{port}");
    let other = closed_port();
    let rule = format!("localhost:{}", port_of(&other));
    let out = run_guest("create-connection", &[&by_name], policy(&[&rule], &[]))
        .await
        .success();
    let denied = out.get("create_connection");
    assert!(denied.starts_with("PermissionDenied"), "{out}");
    assert!(
        denied.contains(&by_name),
        "the message names the name: {out}"
    );
    nothing_reached(&listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_by_name_is_denied_by_a_name_rule_for_another_port() {
    let (listener, addr) = native_listener();
    let by_name = format!("localhost:{}", port_of(&addr));
    let rule = format!("localhost:{}", port_of(&closed_port()));
    let out = run_guest("connect", &[&by_name], policy(&[&rule], &[]))
        .await
        .success();
    assert!(out.get("connect").starts_with("PermissionDenied"), "{out}");
    nothing_reached(&listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_server_by_name_is_allowed_by_a_name_rule_alone() {
    let port = port_of(&closed_port()).to_string();
    let by_name = format!("localhost:{port}");
    let out = run_guest("create-server", &[&by_name], policy(&[], &[&by_name]))
        .await
        .success();
    assert_eq!(out.get("create_server"), "ok", "{out}");
    assert_eq!(out.get("bound"), format!("127.0.0.1:{port}"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_server_by_name_is_denied_by_a_name_rule_for_another_port() {
    let port = port_of(&closed_port()).to_string();
    let by_name = format!("localhost:{port}");
    let rule = format!("localhost:{}", port_of(&closed_port()));
    let out = run_guest("create-server", &[&by_name], policy(&[], &[&rule]))
        .await
        .success();
    let denied = out.get("create_server");
    assert!(denied.starts_with("PermissionDenied"), "{out}");
    assert!(denied.contains(&by_name), "{out}");
    // A connect rule for the name does not let the plugin serve on it.
    let out = run_guest("create-server", &[&by_name], policy(&[&by_name], &[]))
        .await
        .success();
    assert!(
        out.get("create_server").starts_with("PermissionDenied"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_by_name_is_governed_by_a_name_rule() {
    let port = port_of(&closed_port()).to_string();
    let by_name = format!("localhost:{port}");
    let out = run_guest("bind", &[&by_name], policy(&[], &[&by_name]))
        .await
        .success();
    assert_eq!(out.get("bind"), "ok", "{out}");
    let rule = format!("localhost:{}", port_of(&closed_port()));
    let out = run_guest("bind", &[&by_name], policy(&[], &[&rule]))
        .await
        .success();
    assert!(out.get("bind").starts_with("PermissionDenied"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_says_so() {
    // `.invalid` never resolves (RFC 2606).
    let out = run_guest(
        "unresolvable",
        &["nosuch.invalid:80"],
        policy(&["*:*"], &["*:*"]),
    )
    .await
    .success();
    for op in ["create_connection", "connect", "create_server"] {
        let message = out.get(op);
        assert!(message.starts_with("AddrNotAvailable"), "{op}: {out}");
        assert!(
            message.contains("the name `nosuch.invalid` did not resolve"),
            "{op}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_connection_without_a_timeout_takes_the_default_timeout() {
    // The connections complete in the listener's backlog.
    let (_listener, addr) = native_listener();
    let out = run_guest("default-timeout", &[&addr], loopback())
        .await
        .success();
    assert_eq!(out.get("before_default"), "None", "{out}");
    assert_eq!(out.get("with_default"), "Some(1.5s)", "{out}");
    assert_eq!(out.get("explicit"), "Some(7s)", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_is_ebadf_and_the_socket_limit_emfile() {
    // WASI numbers EBADF 8 and EMFILE 33 (Linux: 9 and 24).
    let ctx = SockshimCtx::new(Policy::deny_all()).with_max_sockets(3);
    let out = spawn_with(SOCKSHIM_TEST_GUEST, &["errnos", "3"], ctx)
        .finish()
        .await
        .success();
    assert!(out.get("closed_recv").ends_with("errno=8"), "{out}");
    assert!(out.get("closed_listen").ends_with("errno=8"), "{out}");
    assert!(out.get("over_limit").ends_with("errno=33"), "{out}");
}

/// The name the child test runs under, for the parent to select it.
const LOOKUP_CHILD: &str = "a_resolver_failure_seen_from_a_plugin";

/// Issue 26: a temporary resolver failure (`EAI_AGAIN`) reached plugins
/// as `os(EAGAIN)`, which the guest crate reads as would-block
/// (`BlockingIOError`). Through a real resolver (glibc's, asking a DNS
/// responder this test starts, which answers SERVFAIL for one name and
/// NXDOMAIN for another), a plugin now tells a temporary failure
/// (`gaierror` `EAI_AGAIN`) from a name without addresses (`EAI_NONAME`),
/// and neither is would-block. The host's resolver reads
/// `/etc/resolv.conf`, so the check runs in a child process with a mount
/// and network namespace of its own (unshare(1), as root), where a
/// resolv.conf naming the responder is mounted over the real one.
#[test]
fn a_temporary_resolver_failure_is_told_apart_from_a_missing_name() {
    let dir = TempDir::new("resolv");
    let conf = dir.write(
        "resolv.conf",
        b"nameserver 127.0.0.1\noptions timeout:2 attempts:2\n",
    );
    let exe = std::env::current_exe().expect("the test binary's path");
    let script = format!(
        "ip link set lo up && mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
        conf.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--net", "sh", "-c", &script])
        .arg(&exe)
        .args([LOOKUP_CHILD, "--exact", "--ignored", "--nocapture"])
        .output()
        .expect("unshare(1) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed (it needs root for unshare --mount --net):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("lookup errors checked"),
        "{stdout}\n{stderr}"
    );
}

/// A DNS responder on 127.0.0.1:53 (UDP): SERVFAIL for names that start
/// with `flaky`, NXDOMAIN for the others, no answers ever.
fn dns_responder() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:53").expect("port 53 in the namespace");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let query = &buf[..n];
            // The header, then the question: labels up to a zero, then the
            // type and the class.
            let mut at = 12;
            let mut name = Vec::new();
            while at < n && query[at] != 0 {
                let len = query[at] as usize;
                name.extend_from_slice(query.get(at + 1..at + 1 + len).unwrap_or_default());
                name.push(b'.');
                at += 1 + len;
            }
            let end = (at + 5).min(n);
            let mut answer = query[..end].to_vec();
            let rcode = if name.starts_with(b"flaky") { 2 } else { 3 };
            answer[2] = 0x80 | (query[2] & 0x01); // a response; RD as asked
            answer[3] = 0x80 | rcode; // RA, SERVFAIL or NXDOMAIN
            answer[6..12].fill(0); // no answer, authority or additional
            let _ = sock.send_to(&answer, from);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in namespaces of its own by the test above"]
async fn a_resolver_failure_seen_from_a_plugin() {
    dns_responder();
    let policy = policy(&["flaky.test:80", "missing.test:80"], &[]);
    let flaky = run_guest("lookup-errors", &["flaky.test", "80"], policy.clone())
        .await
        .success();
    println!("{flaky}");
    let again = "Other gai=Some(-3): temporary failure in name resolution of `flaky.test`";
    assert_eq!(flaky.get("resolve"), again, "{flaky}");
    assert_eq!(flaky.get("create_connection"), again, "{flaky}");
    assert!(
        flaky.get("connect").starts_with("Other gai=Some(-3)"),
        "{flaky}"
    );
    let missing = run_guest("lookup-errors", &["missing.test", "80"], policy)
        .await
        .success();
    println!("{missing}");
    assert!(
        missing
            .get("resolve")
            .starts_with("AddrNotAvailable gai=Some(-2): the name `missing.test` did not resolve"),
        "{missing}"
    );
    assert!(
        missing
            .get("create_connection")
            .starts_with("AddrNotAvailable gai=Some(-2)"),
        "{missing}"
    );
    println!("lookup errors checked");
}
