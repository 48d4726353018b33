//! The glue between the generated bindings and the native sockets: resource
//! handles, the policy, the per-plugin socket limit, address conversions.

use crate::SockshimCtxView;
use crate::bindings::{
    AddressFamily, ErrorCode, Events, Host, HostSelector, HostSocket, IpAddress, Ipv4SocketAddress,
    Ipv6SocketAddress, OptionName, PollEntry, ReadyEntry, Selected, ShutdownHow, SocketAddress,
    SocketOption, SocketType, Timeout as WitTimeout, TransferError,
};
use crate::datagram;
use crate::deadline::{Deadline, Timeout};
use crate::policy::{Operation, Policy, unspecified};
use crate::quota::Slot;
use crate::readiness::{self, MAX_POLL_ENTRIES, Selector, SocketReadiness};
use crate::resolve::Resolver;
use crate::socket::{MAX_RECV_SIZE, SendfileRequest, TcpSocket};
use crate::sys::WaitOn;
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Resource;
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::DynPollable;

type Res<T> = wasmtime::Result<Result<T, ErrorCode>>;

impl SockshimCtxView<'_> {
    fn socket(&self, res: &Resource<TcpSocket>) -> wasmtime::Result<&TcpSocket> {
        Ok(self.table.get(res)?)
    }

    fn socket_mut(&mut self, res: &Resource<TcpSocket>) -> wasmtime::Result<&mut TcpSocket> {
        Ok(self.table.get_mut(res)?)
    }

    /// Counts a new socket (or selector, or pollable) against the plugin's
    /// limit, until the slot drops.
    fn reserve_socket(&mut self) -> Result<Slot, ErrorCode> {
        // wasi:sockets sockets the plugin holds count too.
        let wasi = crate::wasi_count::wasi_sockets_in(self.table);
        self.ctx.quota.reserve_beside(wasi)
    }

    fn file_for_reading(
        &self,
        file: &Resource<Descriptor>,
        op: &str,
    ) -> wasmtime::Result<Result<Arc<std::fs::File>, ErrorCode>> {
        // Reaching the file behind the descriptor steps around
        // wasmtime-wasi's own checks, so make them here: the plugin must not
        // send what it could not read through wasi:filesystem.
        Ok(match self.table.get(file)? {
            Descriptor::File(f) if f.open_mode.contains(OpenMode::READ) => Ok(f.file.clone()),
            Descriptor::File(_) => Err(ErrorCode::invalid(format!(
                "{op} needs a file opened for reading"
            ))),
            Descriptor::Dir(_) => Err(ErrorCode::invalid(format!("{op} cannot send a directory"))),
        })
    }
}

/// What turning a plugin's host and port into a checked address needs:
/// its policy, its resolver (which bounds its lookups) and where its waits
/// happen. Cheap to clone, for the calls that cannot borrow the plugin's
/// context across their waits (`in_place`'s `sendto`).
#[derive(Clone, Debug)]
pub(crate) struct Naming {
    pub(crate) policy: Arc<Policy>,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) wait_on: WaitOn,
}

impl crate::SockshimCtx {
    pub(crate) fn naming(&self) -> Naming {
        Naming {
            policy: Arc::clone(&self.policy),
            resolver: Arc::clone(&self.resolver),
            wait_on: self.wait_on.clone(),
        }
    }
}

/// Resolves `host` (a literal address, a name, or empty for the wildcard
/// address) to the address `op` will use on a socket of `family`, checking
/// it against the policy.
pub(crate) async fn address_for(
    naming: &Naming,
    op: Operation,
    family: AddressFamily,
    host: &str,
    port: u16,
    deadline: Deadline,
) -> Result<SocketAddr, ErrorCode> {
    let (policy, resolver, wait_on) = (&*naming.policy, &*naming.resolver, &naming.wait_on);
    let ipv6 = family == AddressFamily::Ipv6;
    let verb = match op {
        Operation::Connect => "connect to",
        Operation::Bind => "bind",
    };
    let denied = |what: &str| {
        ErrorCode::AccessDenied(format!(
            "the host's policy does not allow this plugin to {verb} {what}"
        ))
    };
    if let Some(addr) = literal_address(op, host, port, ipv6)? {
        if !policy.allows(op, addr) && !resolver.granted(policy, op, addr) {
            return Err(denied(&addr.to_string()));
        }
        return Ok(addr);
    }
    if !policy.may_resolve(op, host, port) {
        return Err(denied(&format!("{host}:{port}")));
    }
    let resolved = resolver.lookup(host, deadline, wait_on).await?;
    let of_family: Vec<IpAddr> = resolved
        .into_iter()
        .filter(|ip| ip.is_ipv6() == ipv6)
        .collect();
    if of_family.is_empty() {
        return Err(ErrorCode::AddressNotAvailable);
    }
    match policy.permitted(op, host, port, &of_family).first() {
        Some(ip) => Ok(SocketAddr::new(*ip, port)),
        // Not which addresses: that would map the host's internal names
        // for the plugin.
        None => Err(denied(&format!(
            "{host}:{port} (none of its addresses is allowed)"
        ))),
    }
}

/// `host` as a literal address for a socket of the given family: an IP
/// address, an IPv6 address with a zone (`fe80::1%2`), or empty for the
/// wildcard address of a bind. `None` when it is a name.
pub(crate) fn literal_address(
    op: Operation,
    host: &str,
    port: u16,
    ipv6: bool,
) -> Result<Option<SocketAddr>, ErrorCode> {
    if host.is_empty() && op == Operation::Bind {
        return Ok(Some(SocketAddr::new(unspecified(ipv6), port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(for_family(ip, ipv6)?, port)));
    }
    if host.contains('%') {
        // Rust parses a zone only inside a socket address; a numeric zone is
        // the scope id (interface index).
        return match format!("[{host}]:{port}").parse::<SocketAddrV6>() {
            Ok(addr) if ipv6 => Ok(Some(SocketAddr::V6(addr))),
            Ok(_) => Err(ErrorCode::invalid(format!(
                "address {host} is not of the socket's family"
            ))),
            Err(_) => Err(ErrorCode::invalid(format!(
                "`{host}` is not an address (zones must be numeric interface indexes)"
            ))),
        };
    }
    Ok(None)
}

/// An address of the other family is an error, as in Python (an IPv4
/// address on an IPv6 socket must be written IPv4-mapped, `::ffff:a.b.c.d`).
fn for_family(ip: IpAddr, ipv6: bool) -> Result<IpAddr, ErrorCode> {
    match (ip, ipv6) {
        (IpAddr::V4(_), false) | (IpAddr::V6(_), true) => Ok(ip),
        (IpAddr::V4(_), true) | (IpAddr::V6(_), false) => Err(ErrorCode::invalid(format!(
            "address {ip} is not of the socket's family"
        ))),
    }
}

impl Host for SockshimCtxView<'_> {
    async fn max_recv_size(&mut self) -> wasmtime::Result<u64> {
        Ok(MAX_RECV_SIZE)
    }

    async fn resolve_addresses(&mut self, host: String) -> Res<Vec<IpAddress>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            let allowed = self.ctx.policy.permitted_any_port(&host, &[ip]);
            return Ok(match allowed.first() {
                Some(ip) => Ok(vec![ip_to_wit(*ip)]),
                None => Err(ErrorCode::AccessDenied(format!(
                    "the host's policy allows no connection to or bind on {ip}"
                ))),
            });
        }
        if !self.ctx.policy.may_resolve_any_port(&host) {
            return Ok(Err(ErrorCode::AccessDenied(format!(
                "the host's policy does not allow this plugin to resolve `{host}`"
            ))));
        }
        let resolver = Arc::clone(&self.ctx.resolver);
        let resolved = match resolver
            .lookup(&host, Deadline::Never, &self.ctx.wait_on)
            .await
        {
            Ok(resolved) => resolved,
            Err(e) => return Ok(Err(e)),
        };
        let allowed = self.ctx.policy.permitted_any_port(&host, &resolved);
        if allowed.is_empty() {
            return Ok(Err(ErrorCode::AccessDenied(format!(
                "the host's policy allows none of the addresses of `{host}`"
            ))));
        }
        // What a name rule allowed, its addresses are allowed too when the
        // plugin connects to or binds them next (`create_connection`).
        resolver.grant(&host, &allowed);
        Ok(Ok(allowed.into_iter().map(ip_to_wit).collect()))
    }

    async fn set_default_timeout(&mut self, timeout: WitTimeout) -> wasmtime::Result<()> {
        self.ctx.default_timeout = timeout.into();
        Ok(())
    }

    async fn get_default_timeout(&mut self) -> wasmtime::Result<WitTimeout> {
        Ok(self.ctx.default_timeout.into())
    }

    async fn max_poll_entries(&mut self) -> wasmtime::Result<u32> {
        Ok(MAX_POLL_ENTRIES)
    }

    async fn poll(
        &mut self,
        entries: Vec<PollEntry>,
        timeout: Option<u64>,
    ) -> Res<Vec<ReadyEntry>> {
        if entries.len() > MAX_POLL_ENTRIES as usize {
            return Ok(Err(ErrorCode::invalid(format!(
                "poll takes at most {MAX_POLL_ENTRIES} entries, not {}",
                entries.len()
            ))));
        }
        let mut fds = Vec::with_capacity(entries.len());
        for entry in &entries {
            // The sockets stay open for the call: the plugin is in it.
            let fd = self
                .socket(&entry.socket)?
                .shared_ref()
                .io
                .socket()
                .as_raw_fd();
            fds.push(libc::pollfd {
                fd,
                events: readiness::to_bits(entry.events) as u16 as i16,
                revents: 0,
            });
        }
        let ready = readiness::poll(&mut fds, readiness::deadline_of(timeout), &self.ctx.wait_on);
        Ok(ready.await.map(|ready| {
            ready
                .into_iter()
                .map(|(index, bits)| ReadyEntry {
                    index,
                    events: readiness::from_bits(bits),
                })
                .collect()
        }))
    }
}

impl HostSocket for SockshimCtxView<'_> {
    async fn create(
        &mut self,
        family: AddressFamily,
        kind: SocketType,
    ) -> Res<Resource<TcpSocket>> {
        let slot = match self.reserve_socket() {
            Ok(slot) => slot,
            Err(e) => return Ok(Err(e)),
        };
        let (timeout, wait_on) = (self.ctx.default_timeout, self.ctx.wait_on.clone());
        let created = match kind {
            SocketType::Stream => TcpSocket::new(family, timeout, wait_on),
            SocketType::Datagram => {
                let policy = Arc::clone(&self.ctx.policy);
                TcpSocket::new_datagram(family, timeout, wait_on, policy)
            }
        };
        match created {
            Ok(sock) => Ok(Ok(self.table.push(sock.hold(slot))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn family(&mut self, res: Resource<TcpSocket>) -> wasmtime::Result<AddressFamily> {
        Ok(self.socket(&res)?.family())
    }

    async fn connect(&mut self, res: Resource<TcpSocket>, host: String, port: u16) -> Res<()> {
        let sock = self.table.get_mut(&res)?;
        // One deadline for resolution and connection together.
        let deadline = sock.deadline();
        let naming = self.ctx.naming();
        let addr = if sock.is_datagram() {
            let shared = sock.shared_ref();
            datagram::destination(shared, &naming, sock.family(), &host, port, deadline).await
        } else {
            address_for(
                &naming,
                Operation::Connect,
                sock.family(),
                &host,
                port,
                deadline,
            )
            .await
        };
        let addr = match addr {
            Ok(addr) => addr,
            Err(e) => return Ok(Err(e)),
        };
        Ok(sock.connect(addr, deadline).await)
    }

    async fn bind(&mut self, res: Resource<TcpSocket>, host: String, port: u16) -> Res<()> {
        let sock = self.socket(&res)?;
        if sock.is_datagram() {
            let (family, deadline) = (sock.family(), sock.deadline());
            let naming = self.ctx.naming();
            let bound = datagram::bind_address(&naming, family, &host, port, deadline);
            return Ok(match bound.await {
                Ok((addr, receives)) => sock.bind_datagram(addr, receives),
                Err(e) => Err(e),
            });
        }
        let addr = match address_for(
            &self.ctx.naming(),
            Operation::Bind,
            sock.family(),
            &host,
            port,
            sock.deadline(),
        )
        .await
        {
            Ok(addr) => addr,
            Err(e) => return Ok(Err(e)),
        };
        Ok(sock.bind(addr))
    }

    async fn listen(&mut self, res: Resource<TcpSocket>, backlog: u32) -> Res<()> {
        let sock = self.socket(&res)?;
        if !sock.is_bound() {
            // listen(2) would bind an ephemeral port on every address.
            let wildcard = SocketAddr::new(unspecified(sock.family() == AddressFamily::Ipv6), 0);
            if !self.ctx.policy.allows(Operation::Bind, wildcard) {
                return Ok(Err(ErrorCode::AccessDenied(format!(
                    "the host's policy does not allow this plugin to listen on an \
                     ephemeral port of every address ({wildcard}); bind first"
                ))));
            }
        }
        Ok(sock.listen(backlog))
    }

    async fn accept(
        &mut self,
        res: Resource<TcpSocket>,
    ) -> Res<(Resource<TcpSocket>, SocketAddress)> {
        // Check the limit before taking the connection off the backlog.
        let slot = match self.reserve_socket() {
            Ok(slot) => slot,
            Err(e) => return Ok(Err(e)),
        };
        let default_timeout = self.ctx.default_timeout;
        let accepted = self.socket(&res)?.accept(default_timeout).await;
        match accepted {
            Ok((sock, peer)) => Ok(Ok((self.table.push(sock.hold(slot))?, addr_to_wit(peer)))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn recv(&mut self, res: Resource<TcpSocket>, max_len: u64) -> Res<Vec<u8>> {
        Ok(self.socket(&res)?.recv(max_len).await)
    }

    // `recv` (`in_place`'s definition in the linker receives into the lent
    // buffer).
    async fn recv_into(&mut self, res: Resource<TcpSocket>, max_len: u64) -> Res<Vec<u8>> {
        self.recv(res, max_len).await
    }

    // `send` and `sendall` are what the generated bindings would call; the
    // linker has `in_place`'s instead, which read the plugin's list where it
    // lies rather than from this copy.
    async fn send(&mut self, res: Resource<TcpSocket>, data: Vec<u8>) -> Res<u64> {
        Ok(self.socket(&res)?.send(&data).await.map(|n| n as u64))
    }

    async fn sendall(
        &mut self,
        res: Resource<TcpSocket>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), TransferError>> {
        Ok(self.socket(&res)?.sendall(&data).await)
    }

    async fn sendfile(
        &mut self,
        res: Resource<TcpSocket>,
        file: Resource<Descriptor>,
        offset: u64,
        count: Option<u64>,
        total_timeout: Option<u64>,
    ) -> wasmtime::Result<Result<u64, TransferError>> {
        let file = match self.file_for_reading(&file, "sendfile")? {
            Ok(file) => file,
            Err(code) => return Ok(Err(TransferError::new(code, 0))),
        };
        // Zero is a deadline that has passed, not "non-blocking".
        let total = total_timeout.map_or(Deadline::Never, |nanos| {
            Timeout::After(Duration::from_nanos(nanos)).deadline()
        });
        let req = SendfileRequest {
            file,
            offset,
            count,
            total,
            every_file_remote: self.ctx.every_file_remote,
        };
        let stats = self.ctx.transfer_stats.clone();
        Ok(self.socket(&res)?.sendfile(req, &stats).await)
    }

    async fn shutdown(&mut self, res: Resource<TcpSocket>, how: ShutdownHow) -> Res<()> {
        let how = match how {
            ShutdownHow::Read => Shutdown::Read,
            ShutdownHow::Write => Shutdown::Write,
            ShutdownHow::Both => Shutdown::Both,
        };
        Ok(self.socket(&res)?.shutdown(how))
    }

    async fn set_timeout(
        &mut self,
        res: Resource<TcpSocket>,
        timeout: WitTimeout,
    ) -> wasmtime::Result<()> {
        self.socket_mut(&res)?.set_timeout(timeout.into());
        Ok(())
    }

    async fn get_timeout(&mut self, res: Resource<TcpSocket>) -> wasmtime::Result<WitTimeout> {
        Ok(self.socket(&res)?.timeout().into())
    }

    async fn local_address(&mut self, res: Resource<TcpSocket>) -> Res<SocketAddress> {
        Ok(self.socket(&res)?.local_address().map(addr_to_wit))
    }

    async fn remote_address(&mut self, res: Resource<TcpSocket>) -> Res<SocketAddress> {
        Ok(self.socket(&res)?.remote_address().map(addr_to_wit))
    }

    async fn set_option(&mut self, res: Resource<TcpSocket>, option: SocketOption) -> Res<()> {
        Ok(self.socket_mut(&res)?.set_option(option))
    }

    async fn get_option(
        &mut self,
        res: Resource<TcpSocket>,
        name: OptionName,
    ) -> Res<SocketOption> {
        Ok(self.socket(&res)?.get_option(name))
    }

    async fn take_error(&mut self, res: Resource<TcpSocket>) -> Res<Option<ErrorCode>> {
        Ok(self.socket(&res)?.take_error())
    }

    async fn sendfile_once(
        &mut self,
        res: Resource<TcpSocket>,
        file: Resource<Descriptor>,
        offset: u64,
        count: u64,
    ) -> Res<u64> {
        let file = match self.file_for_reading(&file, "sendfile-once")? {
            Ok(file) => file,
            Err(code) => return Ok(Err(code)),
        };
        let stats = self.ctx.transfer_stats.clone();
        let remote = self.ctx.every_file_remote;
        Ok(self
            .socket(&res)?
            .sendfile_once(&file, offset, count, remote, &stats)
            .await)
    }

    // What the generated bindings would call; the linker has `in_place`'s,
    // which reads the plugin's list where it lies.
    async fn sendto(
        &mut self,
        res: Resource<TcpSocket>,
        data: Vec<u8>,
        host: String,
        port: u16,
    ) -> Res<u64> {
        let sock = self.socket(&res)?;
        if !sock.is_datagram() {
            return Ok(Err(ErrorCode::invalid(
                "sendto needs a datagram socket (use send on a stream)",
            )));
        }
        let naming = self.ctx.naming();
        let to = datagram::destination(
            sock.shared_ref(),
            &naming,
            sock.family(),
            &host,
            port,
            sock.deadline(),
        );
        Ok(match to.await {
            Ok(to) => sock.sendto(&data, to).await.map(|n| n as u64),
            Err(e) => Err(e),
        })
    }

    async fn recvfrom(
        &mut self,
        res: Resource<TcpSocket>,
        max_len: u64,
    ) -> Res<(Vec<u8>, SocketAddress)> {
        let received = self.socket(&res)?.recvfrom(max_len).await;
        Ok(received.map(|(bytes, from)| (bytes, addr_to_wit(from))))
    }

    // `recvfrom` (`in_place`'s definition in the linker receives into the
    // lent buffer).
    async fn recvfrom_into(
        &mut self,
        res: Resource<TcpSocket>,
        max_len: u64,
    ) -> Res<(Vec<u8>, SocketAddress)> {
        self.recvfrom(res, max_len).await
    }

    async fn subscribe(
        &mut self,
        res: Resource<TcpSocket>,
        interest: Events,
    ) -> Res<Resource<DynPollable>> {
        let stop = Arc::clone(self.ctx.wait_on.stop());
        let readiness = SocketReadiness::new(self.socket(&res)?.shared_ref(), interest, stop);
        let readiness = self.table.push(readiness)?;
        // Owned: dropping the pollable drops the readiness with it.
        Ok(Ok(wasmtime_wasi::p2::subscribe(self.table, readiness)?))
    }

    async fn drop(&mut self, res: Resource<TcpSocket>) -> wasmtime::Result<()> {
        let sock = self.table.delete(res)?;
        sock.close().await;
        Ok(())
    }
}

impl HostSelector for SockshimCtxView<'_> {
    async fn create(&mut self) -> Res<Resource<Selector>> {
        let slot = match self.reserve_socket() {
            Ok(slot) => slot,
            Err(e) => return Ok(Err(e)),
        };
        let max = self.ctx.quota.max();
        match Selector::new(self.ctx.wait_on.clone(), max, Some(slot)) {
            Ok(selector) => Ok(Ok(self.table.push(selector)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn register(
        &mut self,
        res: Resource<Selector>,
        socket: Resource<TcpSocket>,
        key: u64,
        events: Events,
    ) -> Res<()> {
        let shared = Arc::clone(self.socket(&socket)?.shared_ref());
        Ok(self.table.get_mut(&res)?.register(&shared, key, events))
    }

    async fn modify(&mut self, res: Resource<Selector>, key: u64, events: Events) -> Res<()> {
        Ok(self.table.get_mut(&res)?.modify(key, events))
    }

    async fn unregister(&mut self, res: Resource<Selector>, key: u64) -> Res<()> {
        Ok(self.table.get_mut(&res)?.unregister(key))
    }

    async fn wait(
        &mut self,
        res: Resource<Selector>,
        timeout: Option<u64>,
        max_events: u32,
    ) -> Res<Vec<Selected>> {
        let selector = self.table.get_mut(&res)?;
        Ok(selector
            .wait(readiness::deadline_of(timeout), max_events as usize)
            .await)
    }

    async fn subscribe(
        &mut self,
        res: Resource<Selector>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        // `subscribe` takes the parent's type on trust; the pollable would
        // panic on a handle of another type. (The component model never
        // passes one, but a host call should not rely on it.)
        self.table.get(&res)?;
        // A child of the selector: `drop` of a selector with a pollable
        // alive traps, as a stream's does.
        wasmtime_wasi::p2::subscribe(self.table, res)
    }

    async fn drop(&mut self, res: Resource<Selector>) -> wasmtime::Result<()> {
        self.table.delete(res)?;
        Ok(())
    }
}

impl From<WitTimeout> for Timeout {
    fn from(t: WitTimeout) -> Timeout {
        match t {
            WitTimeout::Blocking => Timeout::Blocking,
            WitTimeout::NonBlocking => Timeout::NonBlocking,
            WitTimeout::After(nanos) => Timeout::from_nanos(nanos),
        }
    }
}

impl From<Timeout> for WitTimeout {
    fn from(t: Timeout) -> WitTimeout {
        match t {
            Timeout::Blocking => WitTimeout::Blocking,
            Timeout::NonBlocking => WitTimeout::NonBlocking,
            Timeout::After(d) => WitTimeout::After(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }
}

fn ip_to_wit(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            IpAddress::Ipv4((a, b, c, d))
        }
        IpAddr::V6(v6) => IpAddress::Ipv6(v6_segments(&v6)),
    }
}

fn v6_segments(v6: &Ipv6Addr) -> (u16, u16, u16, u16, u16, u16, u16, u16) {
    let [a, b, c, d, e, f, g, h] = v6.segments();
    (a, b, c, d, e, f, g, h)
}

pub(crate) fn addr_to_wit(addr: SocketAddr) -> SocketAddress {
    match addr {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            SocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (a, b, c, d),
            })
        }
        SocketAddr::V6(v6) => SocketAddress::Ipv6(Ipv6SocketAddress {
            port: v6.port(),
            flow_info: v6.flowinfo(),
            address: v6_segments(v6.ip()),
            scope_id: v6.scope_id(),
        }),
    }
}
