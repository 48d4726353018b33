//! Guests talking to guests in one host process, and native clients talking
//! to guest servers.

use sockshim_tests::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_echoes_10_mib_through_the_echo_server_plugin() {
    let server = spawn(ECHO_SERVER, &["127.0.0.1:0"], loopback());
    let addr = server.listening_on().await;
    const LEN: usize = 10 << 20;
    let echoed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut reader = s.try_clone().unwrap();
        let reading = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        s.write_all(&pattern(LEN)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        reading.join().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(echoed.len(), LEN);
    assert!(echoed == pattern(LEN), "the echo differs");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_client_and_guest_server_in_one_host() {
    let server = spawn(ECHO_SERVER, &["127.0.0.1:0"], loopback());
    let addr = server.listening_on().await.to_string();
    const LEN: usize = 8 << 20;
    let out = run_guest("echo-client", &[&addr, &LEN.to_string()], loopback())
        .await
        .success();
    assert_eq!(out.num("sent"), LEN as u64);
    assert_eq!(out.num("echoed"), LEN as u64);
    assert_eq!(out.get("equal"), "true");
    // The server goes on serving the next client.
    let out = run_guest("echo-client", &[&addr, "1000"], loopback())
        .await
        .success();
    assert_eq!(out.get("equal"), "true");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_gives_the_default_timeout_not_the_listeners() {
    let out = run_guest("accept-timeouts", &[], loopback())
        .await
        .success();
    assert_eq!(out.get("accepted_timeout"), "None");
    assert_eq!(out.get("peer_is_client"), "true");
    assert_eq!(out.get("accepted_with_default"), "Some(1.5s)");
    assert_eq!(out.get("new_with_default"), "Some(1.5s)");
    assert_eq!(out.get("getdefaulttimeout"), "Some(1.5s)");
    assert_eq!(out.get("looped"), "loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_plugins_share_one_host() {
    let server = spawn(ECHO_SERVER, &["127.0.0.1:0"], loopback());
    let addr = server.listening_on().await.to_string();
    // Clients take turns at the sequential echo server; all run at once in
    // one host process, each in its own store.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            spawn(
                SOCKSHIM_TEST_GUEST,
                &["echo-client", &addr, "100000"],
                loopback(),
            )
        })
        .collect();
    for client in clients {
        let out = client.finish().await.success();
        assert_eq!(out.get("equal"), "true");
    }
    server.stop();
}
