//! The network policy: which addresses a plugin may connect to and bind.
//!
//! Deny by default. A [`Policy`] is a list of [`Rule`]s for each
//! [`Operation`]; an address is allowed when some rule of that operation
//! matches it. The matcher is a pure function of the policy and the address,
//! with no I/O: resolving names is the caller's business (see
//! [`Policy::permitted`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// What a plugin wants to do with an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Connect to a remote address (TCP connect, UDP send).
    Connect,
    /// Bind a local address (and so listen or receive on it).
    Bind,
}

/// Which hosts a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Every address and every name (`*`).
    Any,
    /// A host name, matched case-insensitively without a trailing dot;
    /// `*.example.com` matches every name below `example.com`.
    Name(String),
    /// The addresses of a CIDR block; a single address is a block of one.
    Cidr {
        /// The block's first address.
        network: IpAddr,
        /// How many leading bits must match.
        prefix: u8,
    },
}

/// Which ports a rule covers: `*`, `N` or `LOW-HIGH` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port covered.
    pub low: u16,
    /// Highest port covered.
    pub high: u16,
}

impl PortRange {
    /// Every port, including 0 (an ephemeral port for bind).
    pub const ANY: PortRange = PortRange {
        low: 0,
        high: u16::MAX,
    };

    fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// One permission: a host pattern and a port range, written `HOST:PORTS`.
///
/// `HOST` is a host name (`example.com`, `*.example.com`), an IP address
/// (`127.0.0.1`, `[::1]`), a CIDR block (`10.0.0.0/8`, `[fd00::/8]`) or `*`;
/// `PORTS` is a port, a range `LOW-HIGH`, or `*`. IPv6 addresses and blocks
/// are written in brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The hosts covered.
    pub host: HostPattern,
    /// The ports covered.
    pub ports: PortRange,
}

impl Rule {
    /// Does the rule cover this address?
    pub fn matches_addr(&self, addr: SocketAddr) -> bool {
        self.ports.contains(addr.port()) && self.matches_ip(addr.ip())
    }

    /// Does the rule cover this IP address, on some port?
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address reaches the IPv4 host: judge it as one.
        let ip = ip.to_canonical();
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Name(_) => false,
            HostPattern::Cidr { network, prefix } => in_block(ip, *network, *prefix),
        }
    }

    /// Does the rule cover this host name (on `port`, or on some port when
    /// `port` is `None`)?
    pub fn matches_name(&self, name: &str, port: Option<u16>) -> bool {
        if port.is_some_and(|p| !self.ports.contains(p)) {
            return false;
        }
        let name = normalize_name(name);
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Name(pattern) => match pattern.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.ends_with('.') && head.len() > 1),
                None => name == *pattern,
            },
            HostPattern::Cidr { .. } => false,
        }
    }

    fn is_name_rule(&self) -> bool {
        matches!(self.host, HostPattern::Name(_) | HostPattern::Any)
    }
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn in_block(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    // A block built in code may carry any prefix: one longer than the
    // family's address matches nothing (rather than underflowing the shift).
    let Some((network, prefix)) = canonical_block(network, prefix) else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A CIDR block as it is matched: `None` when the prefix is longer than the
/// family's address; an IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) as
/// the IPv4 block it names (`10.0.0.0/8`), since addresses are judged in
/// their canonical form (`Rule::matches_ip`) and would never match it.
fn canonical_block(network: IpAddr, prefix: u8) -> Option<(IpAddr, u8)> {
    let max = if network.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return None;
    }
    match network.to_canonical() {
        v4 @ IpAddr::V4(_) if network.is_ipv6() && prefix >= 96 => Some((v4, prefix - 96)),
        _ => Some((network, prefix)),
    }
}

/// May a connection go to `addr` at all, whatever the rules say? Not to port
/// 0, not to an unspecified address (`0.0.0.0`, `::`, the whole of
/// `0.0.0.0/8`) and not to a deprecated IPv4-compatible IPv6 address
/// (`::a.b.c.d`): Linux sends a connect to the unspecified address to
/// loopback (`ip4_datagram_connect`, `tcp_v6_connect`: "connect() to
/// INADDR_ANY means loopback (BSD'ism)"), so a rule like `0.0.0.0/0:*`
/// or a careless `[::/0]` would reach the host's own services.
pub fn is_connect_destination(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] != 0,
        IpAddr::V6(v6) => {
            let ipv4_compatible = v6.segments()[..6].iter().all(|s| *s == 0);
            // `::1` is loopback proper, not IPv4-compatible.
            !(v6.is_unspecified() || (ipv4_compatible && !v6.is_loopback()))
        }
    }
}

/// Is `ip` in a range a host name should not lead to unless an address rule
/// names it: the host itself (loopback, unspecified), link-local (which
/// holds cloud metadata services, `169.254.169.254`), private and shared
/// address space, multicast and reserved blocks. A name rule trusts the
/// name's DNS; these ranges keep that DNS (or a rebinding attack on it)
/// from steering a plugin into the host's own networks.
pub fn is_special(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_unspecified()
                || a == 0
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (b & 0xc0) == 64) // shared address space 100.64/10
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
                || v4.is_multicast()
                || a >= 240 // reserved and broadcast
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || s[..6].iter().all(|s| *s == 0) // IPv4-compatible
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
                || (s[0] & 0xff00) == 0xff00 // multicast
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, embeds IPv4
                || (s[0] == 0x2002) // 6to4, embeds IPv4
        }
    }
}

/// Is `ip` one that a name rule for `name` may not lead to ([`is_special`]),
/// `localhost` aside: `localhost` and the names under it mean loopback by
/// definition (RFC 6761) and never reach DNS, so a rule naming them (such as
/// `--allow-connect localhost:8000`) states that the plugin may reach the
/// host's loopback, and it does.
pub fn is_special_for_name(name: &str, ip: IpAddr) -> bool {
    is_special(ip) && !(names_loopback(name) && ip.to_canonical().is_loopback())
}

/// `localhost` or a name under it (`*.localhost`), in any case.
fn names_loopback(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// A rule that could not be parsed; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address rule `{spec}`: {why}")]
pub struct RuleParseError {
    spec: String,
    why: String,
}

impl FromStr for Rule {
    type Err = RuleParseError;

    fn from_str(spec: &str) -> Result<Rule, RuleParseError> {
        let fail = |why: &str| RuleParseError {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        if let Some(instead) = url_as_rule(spec) {
            return Err(fail(&format!(
                "a rule is HOST:PORT, not a URL; for this URL write `{instead}`"
            )));
        }
        let (host, ports) = if let Some(rest) = spec.strip_prefix('[') {
            let (host, rest) = rest
                .split_once(']')
                .ok_or_else(|| fail("missing `]` after an IPv6 address"))?;
            let ports = rest
                .strip_prefix(':')
                .ok_or_else(|| fail("expected `:PORT` after `]`"))?;
            (host, ports)
        } else {
            let (host, ports) = spec
                .rsplit_once(':')
                .ok_or_else(|| fail("expected HOST:PORT, with `*` or LOW-HIGH for the port"))?;
            if host.contains(':') {
                return Err(fail("write IPv6 addresses in brackets, as [::1]:PORT"));
            }
            (host, ports)
        };
        let host = parse_host(host).map_err(|why| fail(&why))?;
        let ports = parse_ports(ports).map_err(|why| fail(&why))?;
        Ok(Rule { host, ports })
    }
}

/// The rule a user who wrote the URL `spec` (`http://localhost:8000/x`)
/// meant: its host and port, the scheme's default port if it names none.
/// `None` when `spec` is not a URL.
fn url_as_rule(spec: &str) -> Option<String> {
    let (scheme, rest) = spec.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let port = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:").map(|(_, port)| port),
        None => authority.rsplit_once(':').map(|(_, port)| port),
    };
    let has_port = port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        return Some(authority.to_string());
    }
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => "PORT",
    };
    Some(format!("{authority}:{port}"))
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some((addr, prefix)) = host.split_once('/') {
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix length `{prefix}` is not between 0 and {max}"))?;
        let (network, prefix) = canonical_block(network, prefix).unwrap_or((network, prefix));
        return Ok(HostPattern::Cidr { network, prefix });
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let (network, prefix) = canonical_block(ip, prefix).unwrap_or((ip, prefix));
        return Ok(HostPattern::Cidr { network, prefix });
    }
    // A fully qualified name may end in a dot.
    let name = host
        .strip_prefix("*.")
        .unwrap_or(host)
        .trim_end_matches('.');
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!(
            "`{host}` is not a host name, an IP address or a CIDR block"
        ));
    }
    Ok(HostPattern::Name(normalize_name(host)))
}

fn parse_ports(ports: &str) -> Result<PortRange, String> {
    if ports == "*" {
        return Ok(PortRange::ANY);
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port number (0-65535)"))
    };
    match ports.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(format!("port range `{ports}` is empty"));
            }
            Ok(PortRange { low, high })
        }
        None => {
            let p = port(ports)?;
            Ok(PortRange { low: p, high: p })
        }
    }
}

/// Which addresses a plugin may connect to and bind. Denies everything until
/// rules are added.
///
/// ```
/// use sockshim_host::policy::{Operation, Policy};
/// let policy = Policy::deny_all()
///     .allow_connect("127.0.0.1:8000-8999".parse().unwrap())
///     .allow_bind("127.0.0.1:*".parse().unwrap());
/// assert!(policy.allows(Operation::Connect, "127.0.0.1:8080".parse().unwrap()));
/// assert!(!policy.allows(Operation::Connect, "10.0.0.1:8080".parse().unwrap()));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    connect: Vec<Rule>,
    bind: Vec<Rule>,
    /// Names the host may look up although no connect or bind rule names
    /// them (their addresses must then match address rules); ports ignored.
    resolve: Vec<Rule>,
}

impl Policy {
    /// A policy that allows nothing.
    pub fn deny_all() -> Policy {
        Policy::default()
    }

    /// Adds a rule for connecting.
    pub fn allow_connect(mut self, rule: Rule) -> Policy {
        self.connect.push(rule);
        self
    }

    /// Adds a rule for binding.
    pub fn allow_bind(mut self, rule: Rule) -> Policy {
        self.bind.push(rule);
        self
    }

    /// Lets the host look up the names `rule` covers (its port range is
    /// ignored) on the plugin's behalf, although no connect or bind rule
    /// names them: for a policy of address rules whose plugins connect by
    /// name (`--allow-resolve localhost` with `--allow-connect
    /// 127.0.0.1:8080`). The addresses found must still match an address
    /// rule. Without such a rule, or a connect or bind rule naming the host,
    /// a name is refused without a DNS lookup: the host's resolver is not a
    /// channel out of the sandbox (`<secret>.attacker.example`).
    pub fn allow_resolve(mut self, rule: Rule) -> Policy {
        self.resolve.push(rule);
        self
    }

    /// The rules of one operation.
    pub fn rules(&self, op: Operation) -> &[Rule] {
        match op {
            Operation::Connect => &self.connect,
            Operation::Bind => &self.bind,
        }
    }

    /// May the plugin `op` this address? Never a connection to port 0 or to
    /// an unspecified or IPv4-compatible address ([`is_connect_destination`]).
    pub fn allows(&self, op: Operation, addr: SocketAddr) -> bool {
        if op == Operation::Connect && !is_connect_destination(addr) {
            return false;
        }
        self.rules(op).iter().any(|r| r.matches_addr(addr))
    }

    /// Does a rule of `op` name this host (on this port)? Then every address
    /// the name resolves to is allowed, except those in special ranges
    /// ([`is_special`]), which need an address rule.
    pub fn allows_name(&self, op: Operation, name: &str, port: u16) -> bool {
        self.rules(op)
            .iter()
            .any(|r| r.matches_name(name, Some(port)))
    }

    /// Does an `allow_resolve` rule cover `name`?
    fn resolve_rule_covers(&self, name: &str) -> bool {
        self.resolve.iter().any(|r| r.matches_name(name, None))
    }

    /// May the host look `name` up for `op` on `port`: does a rule of `op`
    /// name it, or an [`allow_resolve`](Policy::allow_resolve) rule? When
    /// neither, the name is denied without a lookup, so a plugin cannot use
    /// the host's resolver as a side channel.
    pub fn may_resolve(&self, op: Operation, name: &str, port: u16) -> bool {
        self.allows_name(op, name, port) || self.resolve_rule_covers(name)
    }

    /// The addresses, out of those `name` resolved to, that the plugin may
    /// `op` on `port`, in the resolver's order.
    pub fn permitted(
        &self,
        op: Operation,
        name: &str,
        port: u16,
        resolved: &[IpAddr],
    ) -> Vec<IpAddr> {
        let by_name = self.allows_name(op, name, port);
        resolved
            .iter()
            .copied()
            .filter(|ip| {
                let addr = SocketAddr::new(*ip, port);
                if op == Operation::Connect && !is_connect_destination(addr) {
                    return false;
                }
                (by_name && !is_special_for_name(name, *ip)) || self.allows(op, addr)
            })
            .collect()
    }

    /// The addresses, out of those `name` resolved to, that the plugin may
    /// connect to or bind on some port: what `resolve-addresses` returns.
    pub fn permitted_any_port(&self, name: &str, resolved: &[IpAddr]) -> Vec<IpAddr> {
        let rules = || self.connect.iter().chain(&self.bind);
        let by_name = rules().any(|r| r.matches_name(name, None));
        resolved
            .iter()
            .copied()
            .filter(|ip| {
                (by_name && !is_special_for_name(name, *ip)) || rules().any(|r| r.matches_ip(*ip))
            })
            .collect()
    }

    /// Should `resolve-addresses` look `name` up at all?
    pub fn may_resolve_any_port(&self, name: &str) -> bool {
        self.connect
            .iter()
            .chain(&self.bind)
            .any(|r| r.matches_name(name, None))
            || self.resolve_rule_covers(name)
    }

    /// Does any rule name a host (so plugins need name lookups)?
    pub fn has_name_rules(&self) -> bool {
        self.connect
            .iter()
            .chain(&self.bind)
            .chain(&self.resolve)
            .any(Rule::is_name_rule)
    }

    /// May the host look up every name for the plugin (a `*` rule of some
    /// operation)? wasi:sockets' name lookup cannot be checked name by name
    /// (wasmtime-wasi 48 has no hook for it), so it is open only then.
    pub fn resolves_every_name(&self) -> bool {
        self.connect
            .iter()
            .chain(&self.bind)
            .chain(&self.resolve)
            .any(|r| r.host == HostPattern::Any)
    }

    /// The check wasmtime-wasi runs for wasi:sockets, so that a plugin using
    /// Rust's `std::net` (wasi:sockets) is held to the same policy.
    ///
    /// wasmtime-wasi checks a connect or listen without an explicit bind as
    /// an implicit bind of the wildcard address with port 0 first. That bind
    /// is let through when the plugin may connect somewhere; the listen that
    /// may follow is checked on its own, with its real local address, against
    /// the bind rules, so the wildcard bind cannot be used to serve. UDP
    /// follows the datagram rules ([`Policy::allows_wasi_udp`]).
    pub fn allows_wasi(
        &self,
        addr: SocketAddr,
        use_: wasmtime_wasi::sockets::SocketAddrUse,
    ) -> bool {
        use wasmtime_wasi::sockets::SocketAddrUse as Use;
        let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
        match use_ {
            Use::UdpBind | Use::UdpSend | Use::UdpReceive => self.allows_wasi_udp(addr, use_),
            Use::TcpBind => {
                self.allows(Operation::Bind, addr) || (implicit_bind && !self.connect.is_empty())
            }
            Use::TcpListen => self.allows(Operation::Bind, addr),
            Use::TcpConnect => self.allows(Operation::Connect, addr),
            // A bound socket takes connections from anyone, as sockshim's
            // own accept does.
            Use::TcpAccept => true,
        }
    }
}

/// Who a datagram socket receives from, as its bind decided
/// ([`Policy::allows_datagram_bind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receives {
    /// Anyone: the socket was bound under a bind rule.
    FromAnyone,
    /// Only senders a connect rule allows: the socket was bound to an
    /// ephemeral port of the wildcard address because the plugin may send
    /// somewhere (explicitly, or implicitly by its first `sendto` or
    /// `connect`); the host drops the others' datagrams, but for those of
    /// the socket's latest destinations (which a rule naming their host
    /// allowed; `crate::datagram` keeps them).
    FromConnectRules,
}

/// The rules for datagrams (UDP), apart from the stream rules above so
/// that each stays readable:
///
/// - a destination (`sendto`, `connect`) needs a connect rule, and a
///   broadcast or multicast destination one that names such an address
///   ([`Policy::allows_datagram_to`]);
/// - a bind needs a bind rule and then receives from anyone; without one,
///   the wildcard address with port 0 (what the kernel binds implicitly
///   on the first send) is allowed when a connect rule exists, and the
///   socket then receives only from senders a connect rule allows
///   ([`Policy::allows_datagram_bind`], [`Policy::allows_datagram_from`]).
impl Policy {
    /// May a datagram go to `addr`?
    pub fn allows_datagram_to(&self, addr: SocketAddr) -> bool {
        self.allows(Operation::Connect, addr)
            && (!is_broadcast_or_multicast(addr.ip())
                || self.names_special(Operation::Connect, addr))
    }

    /// May a datagram go to `addr`, which `host` (a name, or a literal
    /// address) resolved to? A rule naming the host allows every address
    /// it resolves to, as for streams, but for broadcast and multicast.
    pub fn allows_datagram_to_resolved(&self, host: &str, addr: SocketAddr) -> bool {
        self.allows_datagram_to(addr)
            || (self.allows_name(Operation::Connect, host, addr.port())
                && !is_broadcast_or_multicast(addr.ip()))
    }

    /// May a datagram socket bind `addr`, and whom does it receive from
    /// then? `None` when the bind is denied.
    pub fn allows_datagram_bind(&self, addr: SocketAddr) -> Option<Receives> {
        let special = is_broadcast_or_multicast(addr.ip());
        if self.allows(Operation::Bind, addr)
            && (!special || self.names_special(Operation::Bind, addr))
        {
            return Some(Receives::FromAnyone);
        }
        let implicit = addr.ip().is_unspecified() && addr.port() == 0;
        (implicit && !self.connect.is_empty()).then_some(Receives::FromConnectRules)
    }

    /// May a datagram socket that receives as `receives` says take a
    /// datagram from `sender`?
    pub fn allows_datagram_from(&self, receives: Receives, sender: SocketAddr) -> bool {
        match receives {
            Receives::FromAnyone => true,
            Receives::FromConnectRules => self.allows_datagram_to(sender),
        }
    }

    /// [`Policy::allows_wasi`] for UDP. wasmtime-wasi asks about a
    /// received datagram with its sender alone, not the socket it arrived
    /// on, so the host cannot tell a socket bound under a bind rule from one
    /// bound implicitly. What cannot be told apart is held to the stricter
    /// rule: a datagram from a sender no connect rule allows is dropped
    /// unless every UDP socket of its family the plugin can bind receives
    /// from anyone, that is, unless no connect rule exists (no implicit
    /// bind) or a bind rule covers the wildcard address with port 0. So a
    /// `std::net::UdpSocket` server bound under a bind rule of a plugin
    /// that also has connect rules receives only from those; sockshim's
    /// own datagram sockets, which know how they were bound, do not have
    /// this limit.
    pub fn allows_wasi_udp(
        &self,
        addr: SocketAddr,
        use_: wasmtime_wasi::sockets::SocketAddrUse,
    ) -> bool {
        use wasmtime_wasi::sockets::SocketAddrUse as Use;
        match use_ {
            Use::UdpBind => self.allows_datagram_bind(addr).is_some(),
            Use::UdpSend => self.allows_datagram_to(addr),
            Use::UdpReceive => {
                let wildcard = SocketAddr::new(unspecified(addr.is_ipv6()), 0);
                let anyone = self.connect.is_empty()
                    || self.allows_datagram_bind(wildcard) == Some(Receives::FromAnyone);
                anyone || self.allows_datagram_to(addr)
            }
            _ => false,
        }
    }

    /// Does a rule of `op` that matches `addr` name a broadcast or
    /// multicast address itself (a block inside those ranges), rather than
    /// cover it by a wider block or `*`?
    fn names_special(&self, op: Operation, addr: SocketAddr) -> bool {
        self.rules(op).iter().any(|r| {
            matches!(r.host, HostPattern::Cidr { network, .. } if is_broadcast_or_multicast(network))
                && r.matches_addr(addr)
        })
    }
}

/// Is `ip` the limited broadcast address or a multicast address (IPv4 or
/// IPv6, an IPv4-mapped one judged as IPv4)?
fn is_broadcast_or_multicast(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// The unspecified address of a family, for `bind("", port)`.
pub(crate) fn unspecified(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_refused_with_the_rule_it_meant() {
        for (url, meant) in [
            ("http://localhost:8000/", "localhost:8000"),
            ("https://example.com/path?q", "example.com:443"),
            ("http://example.com", "example.com:80"),
            ("http://[::1]:8080/x", "[::1]:8080"),
            ("http://[::1]/", "[::1]:80"),
        ] {
            let err = url.parse::<Rule>().unwrap_err().to_string();
            assert!(err.contains("not a URL"), "{url}: {err}");
            assert!(err.contains(&format!("`{meant}`")), "{url}: {err}");
            // What it suggests is itself a rule.
            assert!(meant.parse::<Rule>().is_ok(), "{meant}");
        }
    }

    fn rule(spec: &str) -> Rule {
        spec.parse().unwrap()
    }
    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_by_default() {
        let p = Policy::deny_all();
        assert!(!p.allows(Operation::Connect, addr("127.0.0.1:80")));
        assert!(!p.allows(Operation::Bind, addr("127.0.0.1:0")));
        assert!(!p.may_resolve(Operation::Connect, "localhost", 80));
    }

    #[test]
    fn parses_every_form_of_spec() {
        assert_eq!(
            rule("127.0.0.1:8080"),
            Rule {
                host: HostPattern::Cidr {
                    network: "127.0.0.1".parse().unwrap(),
                    prefix: 32
                },
                ports: PortRange {
                    low: 8080,
                    high: 8080
                }
            }
        );
        assert_eq!(rule("10.0.0.0/8:*").ports, PortRange::ANY);
        assert_eq!(rule("[::1]:1-1024").ports, PortRange { low: 1, high: 1024 });
        assert_eq!(
            rule("[fd00::/8]:443").host,
            HostPattern::Cidr {
                network: "fd00::".parse().unwrap(),
                prefix: 8
            }
        );
        assert_eq!(
            rule("Example.COM.:443").host,
            HostPattern::Name("example.com".into())
        );
        assert_eq!(rule("*:*").host, HostPattern::Any);
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:65536",
            "127.0.0.1:9-1",
            "::1:80",
            "[::1]80",
            "10.0.0.0/33:*",
            "bad host:80",
            ":80",
        ] {
            let err = bad.parse::<Rule>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn address_port_and_range_matching() {
        let p = Policy::deny_all()
            .allow_connect(rule("127.0.0.1:8080"))
            .allow_connect(rule("10.1.0.0/16:1000-2000"))
            .allow_connect(rule("[::1]:*"));
        assert!(p.allows(Operation::Connect, addr("127.0.0.1:8080")));
        assert!(!p.allows(Operation::Connect, addr("127.0.0.1:8081")));
        assert!(!p.allows(Operation::Connect, addr("127.0.0.2:8080")));
        assert!(p.allows(Operation::Connect, addr("10.1.255.3:1000")));
        assert!(p.allows(Operation::Connect, addr("10.1.0.1:2000")));
        assert!(!p.allows(Operation::Connect, addr("10.1.0.1:2001")));
        assert!(!p.allows(Operation::Connect, addr("10.2.0.1:1500")));
        assert!(p.allows(Operation::Connect, addr("[::1]:1")));
        // Rules are per operation.
        assert!(!p.allows(Operation::Bind, addr("127.0.0.1:8080")));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_judged_as_ipv4() {
        let p = Policy::deny_all().allow_connect(rule("127.0.0.1:80"));
        assert!(p.allows(Operation::Connect, addr("[::ffff:127.0.0.1]:80")));
        assert!(!p.allows(Operation::Connect, addr("[::ffff:10.0.0.1]:80")));
        let v6_only = Policy::deny_all().allow_connect(rule("[::1]:80"));
        assert!(!v6_only.allows(Operation::Connect, addr("127.0.0.1:80")));
    }

    #[test]
    fn zero_prefix_covers_the_family() {
        let p = Policy::deny_all().allow_connect(rule("0.0.0.0/0:443"));
        assert!(p.allows(Operation::Connect, addr("203.0.113.9:443")));
        assert!(!p.allows(Operation::Connect, addr("[2001:db8::1]:443")));
    }

    #[test]
    fn names_and_wildcard_names() {
        let p = Policy::deny_all()
            .allow_connect(rule("localhost:80"))
            .allow_connect(rule("*.example.com:443"));
        assert!(p.allows_name(Operation::Connect, "LOCALHOST.", 80));
        assert!(!p.allows_name(Operation::Connect, "localhost", 81));
        assert!(p.allows_name(Operation::Connect, "api.example.com", 443));
        assert!(!p.allows_name(Operation::Connect, "example.com", 443));
        assert!(!p.allows_name(Operation::Connect, "evilexample.com", 443));
        // A name rule allows every address the name resolves to, outside
        // the special ranges.
        let resolved = [
            "203.0.113.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ];
        assert_eq!(
            p.permitted(Operation::Connect, "localhost", 80, &resolved),
            resolved
        );
        // Names are not resolved when no rule could allow them.
        assert!(!p.may_resolve(Operation::Connect, "other.org", 80));
    }

    #[test]
    fn names_are_filtered_through_address_rules() {
        let p = Policy::deny_all()
            .allow_connect(rule("127.0.0.0/8:*"))
            .allow_resolve(rule("localhost:*"));
        assert!(p.may_resolve(Operation::Connect, "localhost", 80));
        let resolved = ["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        assert_eq!(
            p.permitted(Operation::Connect, "localhost", 80, &resolved),
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            p.permitted_any_port("localhost", &resolved),
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn wasi_sockets_follow_the_same_rules() {
        use wasmtime_wasi::sockets::SocketAddrUse as Use;
        let p = Policy::deny_all().allow_connect(rule("127.0.0.1:8080"));
        assert!(p.allows_wasi(addr("127.0.0.1:8080"), Use::TcpConnect));
        assert!(!p.allows_wasi(addr("127.0.0.1:8081"), Use::TcpConnect));
        // The implicit bind before a connect passes, but the listen it could
        // lead to does not.
        assert!(p.allows_wasi(addr("0.0.0.0:0"), Use::TcpBind));
        assert!(!p.allows_wasi(addr("0.0.0.0:41234"), Use::TcpListen));
        assert!(!p.allows_wasi(addr("0.0.0.0:8080"), Use::TcpBind));
        // With no connect rule even the implicit bind is refused.
        assert!(!Policy::deny_all().allows_wasi(addr("0.0.0.0:0"), Use::TcpBind));
    }

    #[test]
    fn datagram_destinations_need_a_connect_rule_and_special_ones_a_name() {
        let p = Policy::deny_all()
            .allow_connect(rule("*:53"))
            .allow_connect(rule("0.0.0.0/0:5000"))
            .allow_connect(rule("239.1.2.3:5353"));
        assert!(p.allows_datagram_to(addr("10.0.0.1:53")));
        assert!(!p.allows_datagram_to(addr("10.0.0.1:54")));
        // `*` and /0 cover broadcast and multicast, but do not name them.
        assert!(!p.allows_datagram_to(addr("255.255.255.255:53")));
        assert!(!p.allows_datagram_to(addr("224.0.0.251:5000")));
        assert!(!p.allows_datagram_to(addr("[ff02::fb]:53")));
        assert!(!p.allows_datagram_to(addr("[::ffff:255.255.255.255]:53")));
        assert!(p.allows_datagram_to(addr("239.1.2.3:5353")));
        let broadcast = Policy::deny_all().allow_connect(rule("255.255.255.255:67"));
        assert!(broadcast.allows_datagram_to(addr("255.255.255.255:67")));
        // A name rule allows what the name resolved to, but for broadcast
        // and multicast.
        let named = Policy::deny_all().allow_connect(rule("dns.example:53"));
        assert!(named.allows_datagram_to_resolved("dns.example", addr("192.0.2.1:53")));
        assert!(!named.allows_datagram_to_resolved("dns.example", addr("192.0.2.1:54")));
        assert!(!named.allows_datagram_to_resolved("other.example", addr("192.0.2.1:53")));
        assert!(!named.allows_datagram_to_resolved("dns.example", addr("224.0.0.1:53")));
        assert!(!named.allows_datagram_to("192.0.2.1:53".parse().unwrap()));
    }

    #[test]
    fn a_datagram_bind_receives_from_anyone_only_under_a_bind_rule() {
        let connect_only = Policy::deny_all().allow_connect(rule("127.0.0.1:9"));
        let wildcard = addr("0.0.0.0:0");
        assert_eq!(
            connect_only.allows_datagram_bind(wildcard),
            Some(Receives::FromConnectRules)
        );
        assert_eq!(
            connect_only.allows_datagram_bind(addr("[::]:0")),
            Some(Receives::FromConnectRules)
        );
        assert_eq!(
            connect_only.allows_datagram_bind(addr("0.0.0.0:5000")),
            None
        );
        assert_eq!(connect_only.allows_datagram_bind(addr("127.0.0.1:0")), None);
        assert_eq!(Policy::deny_all().allows_datagram_bind(wildcard), None);
        let from = Receives::FromConnectRules;
        assert!(connect_only.allows_datagram_from(from, addr("127.0.0.1:9")));
        assert!(!connect_only.allows_datagram_from(from, addr("127.0.0.1:10")));
        assert!(!connect_only.allows_datagram_from(from, addr("10.0.0.1:9")));

        let server = Policy::deny_all().allow_bind(rule("127.0.0.1:*"));
        assert_eq!(
            server.allows_datagram_bind(addr("127.0.0.1:5353")),
            Some(Receives::FromAnyone)
        );
        assert!(server.allows_datagram_from(Receives::FromAnyone, addr("10.9.8.7:1234")));
        // A multicast group is bound only when a rule names it.
        let any = Policy::deny_all().allow_bind(rule("*:*"));
        assert_eq!(any.allows_datagram_bind(addr("224.0.0.251:5353")), None);
    }

    #[test]
    fn wasi_udp_is_held_to_the_datagram_rules() {
        use wasmtime_wasi::sockets::SocketAddrUse as Use;
        // The case of the issue: only a connect rule; std::net binds
        // 0.0.0.0:0, which passes, and then hears only from 127.0.0.1:9.
        let p = Policy::deny_all().allow_connect(rule("127.0.0.1:9"));
        assert!(p.allows_wasi(addr("0.0.0.0:0"), Use::UdpBind));
        assert!(!p.allows_wasi(addr("127.0.0.1:0"), Use::UdpBind));
        assert!(p.allows_wasi(addr("127.0.0.1:9"), Use::UdpSend));
        assert!(!p.allows_wasi(addr("127.0.0.1:10"), Use::UdpSend));
        assert!(p.allows_wasi(addr("127.0.0.1:9"), Use::UdpReceive));
        assert!(!p.allows_wasi(addr("127.0.0.1:40000"), Use::UdpReceive));
        assert!(!p.allows_wasi(addr("10.0.0.1:9"), Use::UdpReceive));
        // A server's policy: bind rules only, so every socket was bound
        // under one and hears from anyone.
        let server = Policy::deny_all().allow_bind(rule("127.0.0.1:*"));
        assert!(server.allows_wasi(addr("127.0.0.1:0"), Use::UdpBind));
        assert!(!server.allows_wasi(addr("0.0.0.0:0"), Use::UdpBind));
        assert!(server.allows_wasi(addr("10.0.0.1:4000"), Use::UdpReceive));
        // Both kinds of rule, the bind rule short of the wildcard: what
        // cannot be told apart is held to the connect rules.
        let both = server.clone().allow_connect(rule("127.0.0.1:9"));
        assert!(!both.allows_wasi(addr("10.0.0.1:4000"), Use::UdpReceive));
        let wide = both.allow_bind(rule("0.0.0.0:*"));
        assert!(wide.allows_wasi(addr("10.0.0.1:4000"), Use::UdpReceive));
        assert!(!wide.allows_wasi(addr("[2001:db8::1]:4000"), Use::UdpReceive));
    }

    /// Defect 4 of issue 26: an address rule alone let a plugin look up any
    /// name, so `<secret>.attacker.example` reached the attacker's name
    /// server. Now only a name rule or an allow-resolve rule opens a lookup.
    #[test]
    fn an_address_rule_alone_opens_no_lookup() {
        let p = Policy::deny_all().allow_connect(rule("10.0.0.0/8:*"));
        assert!(!p.may_resolve(Operation::Connect, "secret.attacker.example", 443));
        assert!(!p.may_resolve_any_port("secret.attacker.example"));
        assert!(!p.resolves_every_name());
        let p = p.allow_resolve(rule("*.corp.example:*"));
        assert!(p.may_resolve(Operation::Connect, "db.corp.example", 443));
        assert!(p.may_resolve_any_port("db.corp.example"));
        assert!(!p.may_resolve(Operation::Connect, "corp.example.attacker.example", 443));
        // What it resolves to must still match an address rule.
        let resolved = ["10.1.2.3".parse().unwrap(), "203.0.113.1".parse().unwrap()];
        assert_eq!(
            p.permitted(Operation::Connect, "db.corp.example", 443, &resolved),
            ["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        // wasi:sockets' lookup, which cannot be checked by name, opens only
        // to a rule that allows every name.
        assert!(!p.resolves_every_name());
        assert!(
            Policy::deny_all()
                .allow_connect(rule("*:443"))
                .resolves_every_name()
        );
    }

    /// Defect 6 of issue 26: Linux sends a connect to `0.0.0.0` or `::` to
    /// loopback, and to an IPv4-compatible `::a.b.c.d` as IPv4; port 0 is
    /// no destination. A broad rule must not let them through.
    #[test]
    fn unspecified_compatible_and_port_zero_destinations_are_refused() {
        let p = Policy::deny_all()
            .allow_connect(rule("0.0.0.0/0:*"))
            .allow_connect(rule("[::/0]:*"));
        for bad in [
            "0.0.0.0:80",
            "0.1.2.3:80",
            "[::]:80",
            "[::ffff:0.0.0.0]:80",
            "[::127.0.0.1]:80",
            "[::10.0.0.1]:80",
            "203.0.113.9:0",
        ] {
            assert!(!p.allows(Operation::Connect, addr(bad)), "{bad}");
        }
        assert!(p.allows(Operation::Connect, addr("203.0.113.9:80")));
        assert!(p.allows(Operation::Connect, addr("[::1]:80")));
        // Binding the wildcard address, port 0 included, is a bind's business.
        let b = Policy::deny_all().allow_bind(rule("0.0.0.0:*"));
        assert!(b.allows(Operation::Bind, addr("0.0.0.0:0")));
        // Resolved addresses get the same treatment.
        let n = Policy::deny_all()
            .allow_connect(rule("example.com:*"))
            .allow_connect(rule("0.0.0.0/0:*"));
        let resolved = ["0.0.0.0".parse().unwrap()];
        assert!(
            n.permitted(Operation::Connect, "example.com", 80, &resolved)
                .is_empty()
        );
    }

    /// Defect 6: a rule written IPv4-mapped never matched, since addresses
    /// are judged in their canonical (IPv4) form.
    #[test]
    fn ipv4_mapped_rules_are_canonical() {
        let p = Policy::deny_all()
            .allow_connect(rule("[::ffff:203.0.113.9]:80"))
            .allow_connect(rule("[::ffff:10.0.0.0/104]:*"));
        assert!(p.allows(Operation::Connect, addr("203.0.113.9:80")));
        assert!(p.allows(Operation::Connect, addr("[::ffff:203.0.113.9]:80")));
        assert!(p.allows(Operation::Connect, addr("10.200.0.1:443")));
        assert!(!p.allows(Operation::Connect, addr("11.0.0.1:443")));
        assert_eq!(
            rule("[::ffff:10.0.0.0/104]:*").host,
            HostPattern::Cidr {
                network: "10.0.0.0".parse().unwrap(),
                prefix: 8
            }
        );
        // Built in code, not parsed: matched the same way.
        let by_hand = Rule {
            host: HostPattern::Cidr {
                network: "::ffff:203.0.113.0".parse().unwrap(),
                prefix: 120,
            },
            ports: PortRange::ANY,
        };
        assert!(by_hand.matches_addr(addr("203.0.113.200:1")));
    }

    /// Defect 6: a `Cidr` built in code with a prefix over 32 (or 128)
    /// underflowed `32 - prefix`: a panic in debug builds, a rule that
    /// matched everything in release builds. It matches nothing.
    #[test]
    fn an_overlong_prefix_matches_nothing() {
        for (network, prefix) in [
            ("10.0.0.0", 33u8),
            ("10.0.0.0", 255),
            ("::", 129),
            ("::", 255),
        ] {
            let r = Rule {
                host: HostPattern::Cidr {
                    network: network.parse().unwrap(),
                    prefix,
                },
                ports: PortRange::ANY,
            };
            assert!(!r.matches_addr(addr("10.0.0.1:80")), "{network}/{prefix}");
            assert!(!r.matches_addr(addr("[::1]:80")), "{network}/{prefix}");
        }
    }

    /// Defect 6: a name rule trusts the name's DNS, which may answer with
    /// loopback, link-local (the metadata service at 169.254.169.254) or
    /// private addresses; those need an address rule of their own.
    #[test]
    fn localhost_rules_reach_loopback_and_nothing_else_special() {
        let p = Policy::deny_all().allow_connect(rule("localhost:8000"));
        let loopback: Vec<IpAddr> = ["127.0.0.1", "::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            p.permitted(Operation::Connect, "localhost", 8000, &loopback),
            loopback
        );
        assert_eq!(
            p.permitted(Operation::Connect, "LocalHost.", 8000, &loopback),
            loopback
        );
        assert!(
            p.permitted(Operation::Connect, "localhost", 8001, &loopback)
                .is_empty()
        );
        // A localhost name that resolved elsewhere special gets no further.
        let odd: Vec<IpAddr> = ["169.254.169.254", "10.0.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(
            p.permitted(Operation::Connect, "localhost", 8000, &odd)
                .is_empty()
        );
        // Another name that resolves to loopback does not.
        let q = Policy::deny_all().allow_connect(rule("rebind.example:8000"));
        assert!(
            q.permitted(Operation::Connect, "rebind.example", 8000, &loopback)
                .is_empty()
        );
        let b = Policy::deny_all().allow_bind(rule("app.localhost:*"));
        assert_eq!(b.permitted_any_port("app.localhost", &loopback), loopback);
    }

    #[test]
    fn a_name_rule_does_not_reach_special_ranges() {
        let p = Policy::deny_all().allow_connect(rule("api.example.com:443"));
        let special: Vec<IpAddr> = [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert!(
            p.permitted(Operation::Connect, "api.example.com", 443, &special)
                .is_empty()
        );
        assert!(p.permitted_any_port("api.example.com", &special).is_empty());
        let public: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(
            p.permitted(Operation::Connect, "api.example.com", 443, &[public]),
            [public]
        );
        // An address rule lets a special range back in.
        let p = p.allow_connect(rule("10.0.0.0/8:443"));
        assert_eq!(
            p.permitted(Operation::Connect, "api.example.com", 443, &special),
            ["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
    }
}
