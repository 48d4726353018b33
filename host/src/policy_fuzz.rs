//! The policy's fuzz driver: arbitrary rules, names and addresses through
//! the matcher, checking what must always hold. `fuzz/fuzz_targets/policy.rs`
//! runs it under libFuzzer (nightly, outside the workspace); the unit test
//! below replays the kept corpus (`fuzz/corpus/policy`) on stable, so CI
//! runs every input the fuzzer found interesting.
//!
//! Input: text up to the first NUL, one item a line: `c SPEC` a connect
//! rule, `b SPEC` a bind rule, `r SPEC` a resolve rule, `n NAME` a name to
//! ask about. After the NUL, 20-byte records: a flags byte, 16 address
//! bytes (the first 4 for IPv4), a port (2 bytes), and a prefix length for
//! a CIDR rule built in code, unchecked, with that address as network.

use crate::policy::{
    HostPattern, Operation, Policy, PortRange, Rule, is_connect_destination, is_special,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Runs one input; panics when an invariant does not hold.
pub fn drive(data: &[u8]) {
    let (text, binary) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let mut policy = Policy::deny_all();
    let mut names = Vec::new();
    for line in text.lines().take(64) {
        let (kind, spec) = line.split_at(line.char_indices().nth(1).map_or(line.len(), |(i, _)| i));
        let spec = spec.trim_start();
        match kind {
            "n" => names.push(spec.to_string()),
            "c" | "b" | "r" => {
                let Ok(rule) = spec.parse::<Rule>() else {
                    continue;
                };
                policy = match kind {
                    "c" => policy.allow_connect(rule),
                    "b" => policy.allow_bind(rule),
                    _ => policy.allow_resolve(rule),
                };
            }
            _ => {}
        }
    }
    let mut addrs = Vec::new();
    for record in binary.chunks_exact(20).take(256) {
        let flags = record[0];
        let ip = if flags & 1 == 0 {
            IpAddr::V4(Ipv4Addr::new(record[1], record[2], record[3], record[4]))
        } else {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&record[1..17]);
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        let port = u16::from_be_bytes([record[17], record[18]]);
        if flags & 2 != 0 {
            // A block built in code: any prefix, checked by nothing but the
            // matcher itself.
            let rule = Rule {
                host: HostPattern::Cidr {
                    network: ip,
                    prefix: record[19],
                },
                ports: PortRange::ANY,
            };
            policy = if flags & 4 == 0 {
                policy.allow_connect(rule)
            } else {
                policy.allow_bind(rule)
            };
        }
        addrs.push(SocketAddr::new(ip, port));
    }
    check(&policy, &names, &addrs);
}

fn check(policy: &Policy, names: &[String], addrs: &[SocketAddr]) {
    let nothing = Policy::deny_all();
    for addr in addrs {
        for op in [Operation::Connect, Operation::Bind] {
            let allowed = policy.allows(op, *addr);
            assert!(!nothing.allows(op, *addr));
            if op == Operation::Connect && allowed {
                assert!(is_connect_destination(*addr), "connect allowed to {addr}");
            }
            // An IPv4 address and its IPv4-mapped form are one host.
            if let IpAddr::V4(v4) = addr.ip() {
                let mapped = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port());
                assert_eq!(allowed, policy.allows(op, mapped), "{addr} vs {mapped}");
            }
        }
        let wasi = policy.allows_wasi(*addr, wasmtime_wasi::sockets::SocketAddrUse::TcpConnect);
        assert_eq!(wasi, policy.allows(Operation::Connect, *addr));
    }
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    for name in names {
        let _ = policy.may_resolve_any_port(name);
        for addr in addrs.iter().take(8) {
            for op in [Operation::Connect, Operation::Bind] {
                let port = addr.port();
                let _ = policy.may_resolve(op, name, port);
                let by_name = policy.allows_name(op, name, port);
                for ip in policy.permitted(op, name, port, &ips) {
                    assert!(ips.contains(&ip));
                    let by_address = policy.allows(op, SocketAddr::new(ip, port));
                    assert!(
                        by_address || (by_name && !is_special(ip)),
                        "{name} gave {ip} for {op:?} on {port}"
                    );
                }
            }
        }
        for ip in policy.permitted_any_port(name, &ips) {
            assert!(ips.contains(&ip));
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every input of the kept corpus, through the driver, on stable: the
    /// bounded fuzz run CI gets.
    #[test]
    fn replays_the_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/policy");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            super::drive(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
        assert!(replayed > 0, "no corpus in {}", dir.display());
    }
}
