//! Name lookups for a plugin: getaddrinfo(3) on tokio's blocking pool, at
//! most [`MAX_LOOKUPS`] of one plugin's at a time, and the addresses its
//! name rules granted.
//!
//! A lookup cannot be cancelled: one the plugin stopped waiting for (its
//! timeout passed, its future was dropped) goes on in the pool until the
//! resolver answers. Each holds one of its plugin's lookup permits until
//! then, so a plugin looping on `connect(name, timeout=1ms)` against a slow
//! resolver waits for its own permits instead of filling the pool.

use crate::bindings::ErrorCode;
use crate::deadline::Deadline;
use crate::error::wasi_errno;
use crate::policy::{Operation, Policy, is_connect_destination, is_special_for_name};
use crate::sys::{self, LookupFailure, WaitOn};
use std::collections::HashMap;
use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// How many name lookups of one plugin may be in progress at once.
pub const MAX_LOOKUPS: usize = 4;

/// How many addresses a plugin's name rules may have granted at once
/// (beyond it, the oldest grants are forgotten, all together).
const MAX_GRANTS: usize = 4096;

/// One plugin's lookups in progress and the grants of its name rules.
#[derive(Debug)]
pub(crate) struct Resolver {
    lookups: Arc<Semaphore>,
    /// Addresses a name resolved to under a name rule, with the names:
    /// `create_connection(("example.com", 443))` resolves, then connects to
    /// an address, which a policy of name rules alone must allow as well.
    granted: Mutex<HashMap<IpAddr, Vec<String>>>,
}

impl Resolver {
    pub(crate) fn new(max_lookups: usize) -> Arc<Resolver> {
        Arc::new(Resolver {
            lookups: Arc::new(Semaphore::new(max_lookups)),
            granted: Mutex::default(),
        })
    }

    /// getaddrinfo(3) of `host` on the blocking pool, once one of the
    /// plugin's lookup permits is free, bounded as a whole by `deadline`
    /// (`Now` is taken as `Never`: a non-blocking connect by name looks the
    /// name up first, as CPython's does).
    pub(crate) async fn lookup(
        &self,
        host: &str,
        deadline: Deadline,
        wait_on: &WaitOn,
    ) -> Result<Vec<IpAddr>, ErrorCode> {
        tokio::select! {
            found = self.lookup_until(host, deadline) => found,
            () = wait_on.stop().stopped() => {
                Err(ErrorCode::Os(wasi_errno::from_host(libc::ECANCELED)))
            }
        }
    }

    async fn lookup_until(&self, host: &str, deadline: Deadline) -> Result<Vec<IpAddr>, ErrorCode> {
        let name = match CString::new(host) {
            Ok(name) if !host.is_empty() && host.len() <= 253 => name,
            _ => return Err(ErrorCode::invalid(format!("`{host}` is not a host name"))),
        };
        let at = match deadline {
            Deadline::At(at) => Some(at),
            Deadline::Now | Deadline::Never => None,
        };
        let permit = Arc::clone(&self.lookups).acquire_owned();
        let permit = match at {
            None => permit.await,
            Some(at) => match tokio::time::timeout_at(at, permit).await {
                Ok(permit) => permit,
                Err(_) => return Err(ErrorCode::Timeout),
            },
        };
        let Ok(permit) = permit else {
            return Err(ErrorCode::invalid("name lookups are closed"));
        };
        let task = tokio::task::spawn_blocking(move || {
            let found = sys::getaddrinfo(&name);
            drop(permit); // only now: the lookup is over
            found
        });
        let joined = match at {
            None => task.await,
            Some(at) => match tokio::time::timeout_at(at, task).await {
                Ok(joined) => joined,
                Err(_) => return Err(ErrorCode::Timeout),
            },
        };
        match joined {
            Ok(found) => found.map_err(lookup_error),
            Err(_) => Err(ErrorCode::Os(wasi_errno::EIO)),
        }
    }

    /// Remembers that `name`, which a name rule covers, resolved to `ips`.
    pub(crate) fn grant(&self, name: &str, ips: &[IpAddr]) {
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        if granted.len() + ips.len() > MAX_GRANTS {
            granted.clear();
        }
        let name = name.to_ascii_lowercase();
        for ip in ips {
            let names = granted.entry(ip.to_canonical()).or_default();
            if !names.contains(&name) {
                names.push(name.clone());
            }
        }
    }

    /// May the plugin `op` `addr` because a name a rule of `op` covers (on
    /// that port) resolved to it earlier? Never for a special address
    /// ([`is_special_for_name`]), which needs an address rule.
    pub(crate) fn granted(&self, policy: &Policy, op: Operation, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        if op == Operation::Connect && !is_connect_destination(addr) {
            return false;
        }
        let granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        granted.get(&ip).is_some_and(|names| {
            names
                .iter()
                .any(|n| !is_special_for_name(n, ip) && policy.allows_name(op, n, addr.port()))
        })
    }
}

/// What the plugin sees of a failed lookup: `EAI_AGAIN` (try again later)
/// as `temporary-lookup-failure`, told apart from a name without addresses
/// (`address-not-available`) and from `would-block` (`os(EAGAIN)` read as
/// `BlockingIOError` in a plugin).
fn lookup_error(failure: LookupFailure) -> ErrorCode {
    match failure {
        LookupFailure::Again => ErrorCode::TemporaryLookupFailure,
        LookupFailure::NoAddress => ErrorCode::AddressNotAvailable,
        LookupFailure::System(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::StopSignal;
    use std::time::Duration;

    /// Issue 26, defect 5: lookups the plugin stopped waiting for went on
    /// in the blocking pool without bound. A plugin's lookups beyond
    /// `MAX_LOOKUPS` wait for a permit (within their deadline), and a
    /// permit is held until getaddrinfo returns.
    #[tokio::test]
    async fn lookups_beyond_the_bound_wait_for_a_permit() {
        let resolver = Resolver::new(2);
        // Two lookups in progress, as held by slow resolutions.
        let a = Arc::clone(&resolver.lookups).acquire_owned().await.unwrap();
        let _b = Arc::clone(&resolver.lookups).acquire_owned().await.unwrap();
        let soon = Deadline::At(tokio::time::Instant::now() + Duration::from_millis(200));
        assert!(matches!(
            resolver.lookup("localhost", soon, &WaitOn::reactor()).await,
            Err(ErrorCode::Timeout)
        ));
        drop(a);
        let found = resolver
            .lookup("localhost", Deadline::Never, &WaitOn::reactor())
            .await
            .unwrap();
        assert!(found.iter().any(|ip| ip.is_loopback()), "{found:?}");
        // Every permit back once the lookups are over.
        assert_eq!(resolver.lookups.available_permits(), 1);
    }

    /// Issue 26, defect 8: every resolver failure was
    /// `address-not-available`; then `EAI_AGAIN` was `os(EAGAIN)`, which a
    /// plugin reads as would-block; now it is `temporary-lookup-failure`
    /// (tests/names.rs sees it through a real resolver).
    #[tokio::test]
    async fn a_temporary_failure_is_told_apart() {
        assert!(matches!(
            lookup_error(LookupFailure::Again),
            ErrorCode::TemporaryLookupFailure
        ));
        assert!(matches!(
            lookup_error(LookupFailure::NoAddress),
            ErrorCode::AddressNotAvailable
        ));
        // A name that cannot exist (RFC 6761), looked up for real: no
        // address, or no answer at all where no name server is reachable.
        let resolver = Resolver::new(1);
        match resolver
            .lookup("no-such-host.invalid", Deadline::Never, &WaitOn::reactor())
            .await
        {
            Err(ErrorCode::AddressNotAvailable) | Err(ErrorCode::TemporaryLookupFailure) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolver
                .lookup("nul\0name", Deadline::Never, &WaitOn::reactor())
                .await,
            Err(ErrorCode::InvalidArgument(_))
        ));
    }

    /// Issue 26, defect 8: with only name rules, `create_connection(name)`
    /// resolved the name and was then denied the address it got. The
    /// addresses a name rule's name resolved to are granted on its ports,
    /// never special ones.
    #[test]
    fn a_name_rule_grants_what_its_name_resolved_to() {
        let policy = Policy::deny_all().allow_connect("api.example.com:443".parse().unwrap());
        let resolver = Resolver::new(1);
        let public: IpAddr = "203.0.113.5".parse().unwrap();
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        let addr = |ip, port| SocketAddr::new(ip, port);
        assert!(!resolver.granted(&policy, Operation::Connect, addr(public, 443)));
        resolver.grant("API.example.com", &[public, private]);
        assert!(resolver.granted(&policy, Operation::Connect, addr(public, 443)));
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert!(resolver.granted(&policy, Operation::Connect, addr(mapped, 443)));
        assert!(!resolver.granted(&policy, Operation::Connect, addr(public, 80)));
        assert!(!resolver.granted(&policy, Operation::Bind, addr(public, 443)));
        assert!(!resolver.granted(&policy, Operation::Connect, addr(private, 443)));
    }

    /// Issue 26, defect 7: `StopWaits` could not end a name lookup. A
    /// plugin on its thread waiting for a lookup (here for a permit, all
    /// of them held as by slow resolutions) ends with `ECANCELED` when
    /// stopped.
    #[tokio::test]
    async fn stop_waits_ends_a_lookup() {
        let resolver = Resolver::new(1);
        let _held = Arc::clone(&resolver.lookups).acquire_owned().await.unwrap();
        let stop = Arc::new(StopSignal::new().unwrap());
        let wait_on = WaitOn::Thread(Arc::clone(&stop));
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.stop();
        });
        let found = tokio::time::timeout(
            Duration::from_secs(30),
            resolver.lookup("localhost", Deadline::Never, &wait_on),
        )
        .await
        .expect("the stop did not end the lookup");
        assert!(matches!(found, Err(ErrorCode::Os(11))), "{found:?}"); // WASI's ECANCELED
        stopper.await.unwrap();
    }
}
