//! The `dns-query` example against a small native DNS responder on
//! loopback, which answers A queries for one name and NXDOMAIN for the
//! rest, and can be told to ignore the first query (so the plugin's retry
//! is what gets the answer).

use sockshim_tests::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The one name the responder knows, and its two addresses.
const NAME: &str = "sockshim.test";
const ADDRESSES: [[u8; 4]; 2] = [[192, 0, 2, 7], [192, 0, 2, 8]];
const TTL: u32 = 300;

/// Starts the responder on 127.0.0.1; it ignores the first `ignore`
/// queries, and stops after 30 s without one.
fn responder(ignore: usize) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut seen = 0;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            seen += 1;
            if seen <= ignore {
                continue;
            }
            if let Some(reply) = answer(&buf[..n]) {
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    addr
}

/// The response to `query`: the question echoed, with the A records of
/// [`NAME`] (names compressed by a pointer to the question), or NXDOMAIN.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    while query[at] != 0 {
        let len = usize::from(query[at]);
        labels.push(String::from_utf8_lossy(&query[at + 1..at + 1 + len]).to_lowercase());
        at += 1 + len;
    }
    let question_end = at + 1 + 4;
    let known = labels.join(".") == NAME;
    let mut reply = Vec::new();
    reply.extend_from_slice(&query[..2]); // the ID
    reply.push(0x81); // QR, RD
    reply.push(if known { 0x80 } else { 0x83 }); // RA, and NOERROR or NXDOMAIN
    reply.extend_from_slice(&1u16.to_be_bytes());
    let count = if known { ADDRESSES.len() as u16 } else { 0 };
    reply.extend_from_slice(&count.to_be_bytes());
    reply.extend_from_slice(&[0; 4]);
    reply.extend_from_slice(&query[12..question_end]);
    if known {
        for ip in ADDRESSES {
            reply.extend_from_slice(&[0xc0, 12]); // the question's name
            reply.extend_from_slice(&1u16.to_be_bytes()); // A
            reply.extend_from_slice(&1u16.to_be_bytes()); // IN
            reply.extend_from_slice(&TTL.to_be_bytes());
            reply.extend_from_slice(&4u16.to_be_bytes());
            reply.extend_from_slice(&ip);
        }
    }
    Some(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_query_prints_the_a_records() {
    let server = responder(0).to_string();
    let out = spawn(DNS_QUERY, &[&server, NAME], policy(&[&server], &[]))
        .finish()
        .await
        .success();
    assert_eq!(
        out.stdout,
        format!("{NAME} A 192.0.2.7 {TTL}\n{NAME} A 192.0.2.8 {TTL}\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_query_asks_again_when_the_first_query_goes_unanswered() {
    let server = responder(1).to_string();
    let out = spawn(DNS_QUERY, &[&server, NAME], policy(&[&server], &[]))
        .finish()
        .await
        .success();
    assert!(out.stdout.contains("A 192.0.2.7"), "{out}");
    assert!(out.stderr.contains("asking again"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_query_reports_an_unknown_name() {
    let server = responder(0).to_string();
    let out = spawn(
        DNS_QUERY,
        &[&server, "nowhere.test"],
        policy(&[&server], &[]),
    )
    .finish()
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.stdout, "nowhere.test: NXDOMAIN\n", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_query_to_a_server_the_policy_denies_fails() {
    let server = responder(0).to_string();
    let out = spawn(
        DNS_QUERY,
        &[&server, NAME],
        sockshim_host::Policy::deny_all(),
    )
    .finish()
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("access denied"), "{out}");
}
