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
