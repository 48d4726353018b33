//! Datagram (UDP) sockets: the same socket as a stream's ([`TcpSocket`],
//! [`Shared`]), made with `SOCK_DGRAM`, whose receives take one datagram
//! each and drop those of senders the policy does not let the socket hear
//! from ([`Receives`]). Every operation goes through the one deadline loop,
//! so timeouts, non-blocking mode and both ways of waiting work as for
//! streams; readiness sets take the socket's [`Shared`] as they do a
//! stream's.
//!
//! CPython's datagram semantics are the kernel's, which the loop keeps: a
//! datagram longer than the buffer is truncated and the rest dropped (no
//! `MSG_TRUNC`); a zero-length receive consumes a datagram; an empty
//! datagram is a datagram; an ICMP port unreachable on a connected socket
//! comes back as `ECONNREFUSED` from the next receive or send.

use crate::bindings::{AddressFamily, ErrorCode};
use crate::deadline::{Deadline, Timeout, sock_call};
use crate::host::{Naming, addr_to_wit, address_for, literal_address};
use crate::placed::{Received, ReceivedFrom};
use crate::policy::{Operation, Policy, Receives};
use crate::socket::{MAX_RECV_SIZE, Shared, TcpSocket};
use crate::sys::{self, WaitOn};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::Interest;

/// The largest UDP payload: 65,535 bytes less the UDP header (IPv6 without
/// jumbograms); over IPv4, less the IP header too, 65,507. A receive never
/// needs a larger buffer, whatever `max-len` says.
pub const MAX_DATAGRAM: usize = 65_527;

/// How many of a socket's latest destinations it hears from whatever the
/// rules say of their addresses.
const REMEMBERED_DESTINATIONS: usize = 16;

/// What a datagram socket needs beyond a stream's: the policy its senders
/// are judged by, and whom its bind lets it hear.
pub(crate) struct Datagram {
    policy: Arc<Policy>,
    /// [`Receives::FromAnyone`] once bound under a bind rule; until then
    /// (and after an implicit bind) [`Receives::FromConnectRules`].
    from_anyone: AtomicBool,
    /// The socket's latest destinations, each allowed by a connect rule
    /// when it was sent to: a name rule allows the addresses its name
    /// resolved to, which no rule names, so the answers from them are
    /// heard by this memory (as a NAT lets answers in).
    destinations: Mutex<Vec<SocketAddr>>,
}

impl Datagram {
    /// Whether the socket may hear `sender`.
    fn hears(&self, receives: Receives, sender: SocketAddr) -> bool {
        self.policy.allows_datagram_from(receives, sender)
            || self
                .destinations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|d| {
                    d.ip().to_canonical() == sender.ip().to_canonical() && d.port() == sender.port()
                })
    }

    /// Remembers `to`, a destination the policy allowed.
    fn note_destination(&self, to: SocketAddr) {
        let mut destinations = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        if destinations.contains(&to) {
            return;
        }
        if destinations.len() == REMEMBERED_DESTINATIONS {
            destinations.remove(0);
        }
        destinations.push(to);
    }

    fn receives(&self) -> Receives {
        if self.from_anyone.load(Ordering::Relaxed) {
            Receives::FromAnyone
        } else {
            Receives::FromConnectRules
        }
    }
}

impl TcpSocket {
    /// A new datagram socket of `family`, with `timeout`, whose operations
    /// wait on `wait_on` and whose senders `policy` judges.
    pub(crate) fn new_datagram(
        family: AddressFamily,
        timeout: Timeout,
        wait_on: WaitOn,
        policy: Arc<Policy>,
    ) -> io::Result<TcpSocket> {
        let domain = match family {
            AddressFamily::Ipv4 => Domain::IPV4,
            AddressFamily::Ipv6 => Domain::IPV6,
        };
        let sock = Socket::new(domain, Type::DGRAM.nonblocking(), Some(Protocol::UDP))?;
        let datagram = Datagram {
            policy,
            from_anyone: AtomicBool::new(false),
            destinations: Mutex::new(Vec::new()),
        };
        Ok(TcpSocket::from_socket(sock, family, timeout, wait_on).with_datagram(datagram))
    }

    /// Is this a datagram socket?
    pub fn is_datagram(&self) -> bool {
        self.shared_ref().datagram.is_some()
    }

    /// Binds a datagram socket to `addr`, which the policy allowed as
    /// `receives` says.
    pub(crate) fn bind_datagram(
        &self,
        addr: SocketAddr,
        receives: Receives,
    ) -> Result<(), ErrorCode> {
        self.bind(addr)?;
        if let Some(datagram) = &self.shared_ref().datagram {
            let anyone = receives == Receives::FromAnyone;
            datagram.from_anyone.store(anyone, Ordering::Relaxed);
        }
        Ok(())
    }

    /// recvfrom(2) of one datagram of at most `max_len` bytes, within the
    /// socket's timeout, into a host buffer; with its sender.
    pub async fn recvfrom(&self, max_len: u64) -> Result<(Vec<u8>, SocketAddr), ErrorCode> {
        self.shared_ref().recvfrom(max_len).await
    }

    /// sendto(2) of `data` as one datagram to `to`, which the policy
    /// allowed, within the socket's timeout.
    pub async fn sendto(&self, data: &[u8], to: SocketAddr) -> Result<usize, ErrorCode> {
        let to = SockAddr::from(to);
        let shared = self.shared_ref();
        shared
            .send_with(data.len(), |s| sys::send_to(s, data, &to))
            .await
    }
}

impl Shared {
    /// [`Shared::receive`] on a datagram socket: one datagram, copied (a
    /// datagram is at most 64 KiB, and its length is known only once it is
    /// received).
    pub(crate) async fn receive_datagram(&self, datagram: &Datagram, max_len: u64) -> Received {
        match self.recvfrom_judged(datagram, max_len).await {
            Ok((bytes, _from)) => Received::Copied(bytes),
            Err(code) => Received::Failed(code),
        }
    }

    /// recvfrom(2) of one datagram a datagram socket may hear, within the
    /// socket's timeout.
    pub(crate) async fn recvfrom(&self, max_len: u64) -> Result<(Vec<u8>, SocketAddr), ErrorCode> {
        match &self.datagram {
            Some(datagram) => self.recvfrom_judged(datagram, max_len).await,
            None => Err(ErrorCode::invalid(
                "recvfrom needs a datagram socket (use recv on a stream)",
            )),
        }
    }

    /// `recvfrom-into`: waits (within the socket's timeout) until a
    /// datagram the socket may hear waits, dropping the others, and makes
    /// it ready to be received straight into the plugin's lent buffer of
    /// `max_len` bytes when the result is lowered ([`ReceivedFrom`]). The
    /// wait is a one-byte `MSG_PEEK` that also tells the sender.
    pub(crate) async fn receive_from_placed(self: &Arc<Self>, max_len: u64) -> ReceivedFrom {
        let Some(datagram) = &self.datagram else {
            return ReceivedFrom::Failed(ErrorCode::invalid(
                "recvfrom-into needs a datagram socket (use recv-into on a stream)",
            ));
        };
        if max_len > MAX_RECV_SIZE {
            return ReceivedFrom::Failed(ErrorCode::invalid(format!(
                "recv size {max_len} exceeds the maximum of {MAX_RECV_SIZE} bytes per call"
            )));
        }
        let receives = datagram.receives();
        let deadline = self.timeout.get().deadline();
        let peek = |s: &Socket| loop {
            let from = sys::peek_from(s)?.as_socket();
            match from {
                Some(from) if datagram.hears(receives, from) => return Ok(from),
                None => return Ok(no_sender(s)),
                // Dropped unseen: received into no buffer at all.
                Some(_) => sys::recv_from_to_spare(s, &mut Vec::new())?,
            };
        };
        match sock_call(&self.io, Interest::READABLE, deadline, peek).await {
            Ok(from) => ReceivedFrom::Ready {
                shared: Arc::clone(self),
                max_len: max_len as usize,
                from: addr_to_wit(from),
            },
            Err(code) => ReceivedFrom::Failed(code),
        }
    }

    async fn recvfrom_judged(
        &self,
        datagram: &Datagram,
        max_len: u64,
    ) -> Result<(Vec<u8>, SocketAddr), ErrorCode> {
        if max_len > MAX_RECV_SIZE {
            return Err(ErrorCode::invalid(format!(
                "recv size {max_len} exceeds the maximum of {MAX_RECV_SIZE} bytes per call"
            )));
        }
        let receives = datagram.receives();
        // Not zeroed: only what arrives is written.
        let mut buf = Vec::with_capacity((max_len as usize).min(MAX_DATAGRAM));
        let deadline = self.timeout.get().deadline();
        let recv = |s: &Socket| {
            // Datagrams the socket may not hear are dropped here, within
            // the one system call's turn, so that the loop waits only when
            // the queue is empty (a wait after a dropped datagram could
            // miss the next one, which raises no new wake-up).
            loop {
                buf.clear();
                let (n, from) = sys::recv_from_to_spare(s, &mut buf)?;
                match from.as_socket() {
                    Some(from) if datagram.hears(receives, from) => {
                        return Ok((n, from));
                    }
                    None => return Ok((n, no_sender(s))),
                    Some(_) => continue,
                }
            }
        };
        let (_, from) = sock_call(&self.io, Interest::READABLE, deadline, recv).await?;
        Ok((buf, from))
    }
}

/// The sender of what recvfrom(2) returns without one: nothing, because
/// the socket's receiving side is shut down (shutdown(2) with `SHUT_RD`,
/// which Linux applies to any datagram socket, connected or not), and every
/// receive returns 0 at once. That ends the receive as an empty datagram
/// from the unspecified address of the socket's family, port 0 (Python's
/// `recvfrom` gives `(b'', None)`); dropping it as a datagram the socket
/// may not hear would call recvfrom(2) again for good
/// (`tests::a_receive_after_shutdown_returns_at_once`).
fn no_sender(s: &Socket) -> SocketAddr {
    let ipv6 = s.local_addr().is_ok_and(|a| a.is_ipv6());
    SocketAddr::new(crate::policy::unspecified(ipv6), 0)
}

/// The destination of a datagram (`sendto`) or the peer of a datagram
/// socket (`connect`): `host` resolved under the connect rules, then held
/// to the datagram rules (broadcast and multicast need a rule naming them).
///
/// The socket `shared` remembers the address, and hears from it (see
/// [`Datagram`]).
pub(crate) async fn destination(
    shared: &Shared,
    naming: &Naming,
    family: AddressFamily,
    host: &str,
    port: u16,
    deadline: Deadline,
) -> Result<SocketAddr, ErrorCode> {
    let addr = address_for(naming, Operation::Connect, family, host, port, deadline).await?;
    if !naming.policy.allows_datagram_to_resolved(host, addr) {
        return Err(ErrorCode::AccessDenied(format!(
            "the host's policy does not allow this plugin to send datagrams to {host}:{port} \
             (broadcast and multicast need a rule that names the address)"
        )));
    }
    if let Some(datagram) = &shared.datagram {
        datagram.note_destination(addr);
    }
    Ok(addr)
}

/// The local address a datagram socket's `bind` asks for, and whom the
/// socket hears once bound there. A literal wildcard address with port 0
/// may be bound without a bind rule when a connect rule exists, as the
/// first `sendto` would bind it (see [`Policy::allows_datagram_bind`]).
pub(crate) async fn bind_address(
    naming: &Naming,
    family: AddressFamily,
    host: &str,
    port: u16,
    deadline: Deadline,
) -> Result<(SocketAddr, Receives), ErrorCode> {
    let addr = match literal_address(Operation::Bind, host, port, family == AddressFamily::Ipv6)? {
        Some(addr) => addr,
        None => address_for(naming, Operation::Bind, family, host, port, deadline).await?,
    };
    match naming.policy.allows_datagram_bind(addr) {
        Some(receives) => Ok((addr, receives)),
        None => Err(ErrorCode::AccessDenied(format!(
            "the host's policy does not allow this plugin to bind {addr} for datagrams"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placed::Lent;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// A datagram socket of ours bound on loopback under `policy` (as
    /// `receives` says), waiting `wait_on`, and its address.
    fn ours(policy: Policy, receives: Receives, wait_on: WaitOn) -> (TcpSocket, SocketAddr) {
        let sock = TcpSocket::new_datagram(
            AddressFamily::Ipv4,
            Timeout::Blocking,
            wait_on,
            policy.into(),
        )
        .unwrap();
        sock.bind_datagram("127.0.0.1:0".parse().unwrap(), receives)
            .unwrap();
        let addr = sock.local_address().unwrap();
        (sock, addr)
    }

    fn anyone() -> Policy {
        Policy::deny_all().allow_bind("127.0.0.1:*".parse().unwrap())
    }

    fn both_ways() -> [WaitOn; 2] {
        let stop = Arc::new(sys::StopSignal::new().unwrap());
        [WaitOn::reactor(), WaitOn::Thread(stop)]
    }

    #[tokio::test]
    async fn one_datagram_per_receive_truncated_empty_and_zero() {
        for wait_on in both_ways() {
            let (sock, addr) = ours(anyone(), Receives::FromAnyone, wait_on);
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            for datagram in [&b"hello world"[..], b"", b"dropped whole", b"after"] {
                peer.send_to(datagram, addr).unwrap();
            }
            let (bytes, from) = sock.recvfrom(5).await.unwrap();
            assert_eq!(
                (&bytes[..], from),
                (&b"hello"[..], peer.local_addr().unwrap())
            );
            // The rest of the first datagram is gone; the empty one is one.
            assert_eq!(sock.recvfrom(100).await.unwrap().0, b"");
            // recv(0) consumes a datagram.
            let received = sock.shared_ref().receive(0, Lent::No).await;
            assert_eq!(received.into_vec().unwrap(), b"");
            assert_eq!(sock.recv(100).await.unwrap(), b"after");
        }
    }

    /// Found by the operations fuzzer (`fuzz/corpus/operations/
    /// crash-udp-shutdown-spin`): a receive on a datagram socket after
    /// shutdown(SHUT_RD) (which Linux applies to any datagram socket, even
    /// an unconnected one, where it also says `ENOTCONN`) never returned,
    /// whatever its timeout. On Linux, recvfrom(2) then returns 0 at once
    /// with no sender, every time, and the receive loop dropped that as a
    /// datagram the socket may not hear and called again; on gVisor,
    /// recvfrom(2) says EAGAIN while the socket stays read-closed for
    /// tokio, whose `ready` then returns at once, so the deadline loop
    /// never reached its timeout. Now the first is an empty datagram from
    /// the unspecified address, and the second a timeout.
    #[test]
    fn a_receive_after_shutdown_returns_at_once() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for wait_on in both_ways() {
                    let on_thread = matches!(wait_on, WaitOn::Thread(_));
                    let mut sock = TcpSocket::new_datagram(
                        AddressFamily::Ipv4,
                        Timeout::After(Duration::from_millis(1)),
                        wait_on,
                        Policy::deny_all().into(),
                    )
                    .unwrap();
                    let _ = sock.shutdown(std::net::Shutdown::Read);
                    let nothing = |r: Result<(Vec<u8>, SocketAddr), ErrorCode>| match r {
                        Ok((bytes, from)) => {
                            bytes.is_empty() && from == "0.0.0.0:0".parse().unwrap()
                        }
                        Err(ErrorCode::Timeout) => true,
                        Err(_) => false,
                    };
                    assert!(nothing(sock.recvfrom(100).await));
                    assert!(nothing(
                        sock.recv(100)
                            .await
                            .map(|b| (b, "0.0.0.0:0".parse().unwrap()))
                    ));
                    match sock.shared_ref().receive_from_placed(100).await {
                        ReceivedFrom::Ready { .. } | ReceivedFrom::Failed(ErrorCode::Timeout) => {}
                        _ => panic!("receive_from_placed after shutdown"),
                    }
                    // A blocking receive ends as soon as it finds nothing to
                    // do, or yields so that its plugin can be dropped (here:
                    // a timeout around it).
                    if on_thread {
                        // Blocks its thread by design: ended by StopWaits.
                        continue;
                    }
                    sock.set_timeout(Timeout::Blocking);
                    let blocking = Duration::from_millis(100);
                    match tokio::time::timeout(blocking, sock.recvfrom(100)).await {
                        Ok(r) => assert!(nothing(r)),
                        Err(_elapsed) => {}
                    }
                }
            });
            let _ = done.send(());
        });
        // Without the fixes the thread loops: a failure, not a hung suite.
        finished
            .recv_timeout(Duration::from_secs(20))
            .expect("a receive after shutdown(SHUT_RD) did not return");
    }

    #[tokio::test]
    async fn senders_no_connect_rule_allows_are_dropped_unseen() {
        let allowed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rule = allowed.local_addr().unwrap().to_string().parse().unwrap();
        let policy = Policy::deny_all().allow_connect(rule);
        for wait_on in both_ways() {
            let (sock, addr) = ours(policy.clone(), Receives::FromConnectRules, wait_on);
            other.send_to(b"from the other", addr).unwrap();
            other.send_to(b"and again", addr).unwrap();
            allowed.send_to(b"from the allowed", addr).unwrap();
            let (bytes, from) = sock.recvfrom(100).await.unwrap();
            assert_eq!(bytes, b"from the allowed");
            assert_eq!(from, allowed.local_addr().unwrap());
            sock.shared_ref().timeout.set(Timeout::NonBlocking);
            assert!(matches!(
                sock.recvfrom(100).await,
                Err(ErrorCode::WouldBlock)
            ));
        }
    }

    /// A name rule allows the addresses its name resolves to, which no
    /// rule names: the socket hears the answers from the destinations it
    /// sent to, and still not other senders.
    #[tokio::test]
    async fn a_socket_hears_the_answers_of_a_name_it_sent_to() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let policy = Arc::new(
            Policy::deny_all().allow_connect(format!("localhost:{port}").parse().unwrap()),
        );
        let sock = TcpSocket::new_datagram(
            AddressFamily::Ipv4,
            Timeout::After(Duration::from_secs(10)),
            WaitOn::reactor(),
            Arc::clone(&policy),
        )
        .unwrap();
        let family = AddressFamily::Ipv4;
        let naming = Naming {
            policy: Arc::clone(&policy),
            resolver: crate::resolve::Resolver::new(4),
            wait_on: WaitOn::reactor(),
        };
        let to = destination(
            sock.shared_ref(),
            &naming,
            family,
            "localhost",
            port,
            Deadline::Never,
        )
        .await
        .unwrap();
        assert_eq!(to, server.local_addr().unwrap());
        sock.sendto(b"query", to).await.unwrap();
        let mut buf = [0u8; 16];
        let (_, plugin) = server.recv_from(&mut buf).unwrap();
        other.send_to(b"not an answer", plugin).unwrap();
        server.send_to(b"answer", plugin).unwrap();
        let (bytes, from) = sock.recvfrom(100).await.unwrap();
        assert_eq!((&bytes[..], from), (&b"answer"[..], to));
        // The address itself is no destination of its own.
        let denied = destination(
            sock.shared_ref(),
            &naming,
            family,
            "127.0.0.1",
            port,
            Deadline::Never,
        );
        assert!(matches!(denied.await, Err(ErrorCode::AccessDenied(_))));
    }

    #[tokio::test]
    async fn the_timeout_bounds_a_receive() {
        for wait_on in both_ways() {
            let (sock, _) = ours(anyone(), Receives::FromAnyone, wait_on);
            sock.shared_ref()
                .timeout
                .set(Timeout::After(Duration::from_millis(200)));
            let started = Instant::now();
            assert!(matches!(sock.recvfrom(100).await, Err(ErrorCode::Timeout)));
            let elapsed = started.elapsed();
            assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        }
    }

    /// A selector and a socket pollable over datagram sockets: quiet until
    /// a datagram waits, ready while it does, quiet once it is received;
    /// an unbound or merely bound datagram socket does not look hung up.
    #[tokio::test]
    async fn a_selector_over_datagram_sockets() {
        use crate::bindings::Events;
        use crate::readiness::Selector;
        for wait_on in both_ways() {
            let how = format!("{wait_on:?}");
            let (sock, addr) = ours(anyone(), Receives::FromAnyone, wait_on.clone());
            let unbound = TcpSocket::new_datagram(
                AddressFamily::Ipv4,
                Timeout::Blocking,
                wait_on.clone(),
                anyone().into(),
            )
            .unwrap();
            let mut selector = Selector::new(wait_on, 8, None).unwrap();
            selector
                .register(sock.shared_ref(), 1, Events::READABLE)
                .unwrap();
            selector
                .register(unbound.shared_ref(), 2, Events::READABLE)
                .unwrap();
            let after = Timeout::After(Duration::from_millis(200)).deadline();
            assert!(selector.wait(after, 0).await.unwrap().is_empty(), "{how}");

            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.send_to(b"one", addr).unwrap();
            let ready = selector.wait(Deadline::Never, 0).await.unwrap();
            assert_eq!(ready.len(), 1, "{how}: {ready:?}");
            assert_eq!(ready[0].key, 1, "{how}");
            assert!(ready[0].events.contains(Events::READABLE), "{how}");
            assert_eq!(sock.recvfrom(16).await.unwrap().0, b"one", "{how}");
            assert!(
                selector.wait(Deadline::Now, 0).await.unwrap().is_empty(),
                "{how}"
            );
            // Writable at once: a datagram socket's buffer has room.
            selector.modify(1, Events::WRITABLE).unwrap();
            let ready = selector.wait(Deadline::Now, 0).await.unwrap();
            assert_eq!(
                ready.iter().map(|r| r.key).collect::<Vec<_>>(),
                [1],
                "{how}"
            );
        }
    }

    /// An ICMP port unreachable for a datagram a connected socket sent
    /// comes back as `connection-refused` from the next receive.
    #[tokio::test]
    async fn a_closed_port_refuses_a_connected_socket_on_the_next_receive() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        for wait_on in both_ways() {
            let (mut sock, _) = ours(anyone(), Receives::FromAnyone, wait_on);
            sock.set_timeout(Timeout::After(Duration::from_secs(10)));
            sock.connect(closed_addr, Deadline::Never).await.unwrap();
            sock.send(b"anyone there?").await.unwrap();
            let got = sock.recvfrom(100).await;
            assert!(matches!(got, Err(ErrorCode::ConnectionRefused)), "{got:?}");
        }
    }
}
