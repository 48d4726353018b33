//! Issue 26, Proof of the boundary, "Faults on the wire": 10,000
//! connections opened and closed through one plugin (the echo server)
//! leave the host with the descriptors it had. In a binary of its own, so
//! that no other test's descriptors move the count.

use sockshim_tests::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn echo_once(addr: std::net::SocketAddr, i: u32) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let message = i.to_be_bytes();
    s.write_all(&message).unwrap();
    let mut back = [0; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_through_one_plugin_leave_no_descriptor() {
    let server = spawn(ECHO_SERVER, &["127.0.0.1:0"], loopback());
    let addr = server.listening_on().await;
    // One first, so that what is set up once is there before the count.
    tokio::task::spawn_blocking(move || echo_once(addr, 0))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = open_descriptors();

    const CONNECTIONS: u32 = 10_000;
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        for i in 1..=CONNECTIONS {
            echo_once(addr, i);
        }
    })
    .await
    .unwrap();
    let took = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = open_descriptors();
    while after > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = open_descriptors();
    }
    eprintln!("{CONNECTIONS} connections in {took:?}: descriptors {before} -> {after}");
    assert!(after <= before, "descriptors leaked: {before} -> {after}");
    server.stop();
}
