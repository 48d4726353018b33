//! The socket operations' fuzz driver: an arbitrary sequence of operations,
//! with arbitrary arguments, applied to a real [`SockshimCtx`] and
//! [`ResourceTable`] through the host's implementations of the generated
//! traits (what wasmtime calls for a plugin), on real OS sockets, against a
//! native loopback peer that echoes, swallows or talks first.
//! `fuzz/fuzz_targets/operations.rs` runs it under libFuzzer (nightly,
//! outside the workspace); `host/tests/ops_fuzz.rs` replays the kept corpus
//! (`fuzz/corpus/operations`) on stable, in a process of its own (the
//! descriptor count is the process's).
//!
//! What must hold, for every input: no panic; a host call on a live handle
//! of the right type never traps, and one on a dropped, never-made or
//! wrong-typed handle always does (a trap, never a crash); every error
//! value says what it is about; results stay within what was asked (no more
//! bytes than `max-len`, `count` or the file has; ready entries in order
//! and in range); no call waits longer than [`STALL`]; under the deny
//! policy nothing connects, binds, listens or sends, and under the
//! loopback policy nothing reaches or hears from anything but loopback; the
//! plugin's socket count stays within its limit; and once every handle is
//! dropped, the table is empty, the count is zero and the process has the
//! descriptors it had before the input.
//!
//! Input: a mode byte (policy: loopback or deny; waits: on the reactor with
//! the plugin's own timeouts, cut short by cancelling the call as a dropped
//! plugin would be, or on the reactor or the plugin's thread with every
//! wait capped at [`CAP`]; the socket limit), then up to [`MAX_OPS`]
//! operations, each an opcode byte and its arguments; a missing byte reads
//! as zero. Values come from small tables of edge cases (0, 1, `max-len`'s
//! limit and one past it, `u32::MAX`, `u64::MAX`...) or straight from the
//! input. Under capping the setters still get the wild values (and must give
//! them back); the driver lowers a socket's timeout only around the calls
//! that wait, and restores it after.

use crate::bindings::{
    AddressFamily, ErrorCode, Events, Host, HostSelector, HostSocket, OptionName, PollEntry,
    ShutdownHow, SocketAddress, SocketOption, SocketType, Timeout as WitTimeout,
};
use crate::policy::Policy;
use crate::socket::{MAX_RECV_SIZE, TcpSocket};
use crate::{MAX_POLL_ENTRIES, SockshimCtx, SockshimCtxView, StopWaits};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, File};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::HostPollable;
use wasmtime_wasi::{FsPerms, OpenMode};

/// The longest any one wait of a capped input lasts, and how long a wild
/// input's call may run before it is cancelled.
pub const CAP: Duration = Duration::from_millis(2);
/// A call that takes longer than this has stalled: a failure.
pub const STALL: Duration = Duration::from_secs(10);
/// Operations per input.
pub const MAX_OPS: usize = 64;
/// The regular file `sendfile` sends from.
const FILE_LEN: u64 = 64 << 10;
/// The longest data one `send`, `sendall` or `sendto` gets.
const MAX_DATA: usize = 1 << 20;
/// How long the descriptors of the peer's side may take to close after the
/// input dropped its sockets.
const SETTLE: Duration = Duration::from_secs(5);

/// Runs one input; panics when an invariant does not hold.
pub fn drive(data: &[u8]) {
    drive_counting(data);
}

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Operations run.
    pub ops: usize,
    /// Bytes the plugin received (`recv`, `recvfrom`).
    pub received: u64,
    /// Bytes the plugin sent (`send`, `sendall`, `sendto`, `sendfile`,
    /// `sendfile-once`, counting what a failed transfer moved).
    pub sent: u64,
    /// Calls that trapped (on handles that were not live).
    pub traps: usize,
}

/// [`drive`], saying what the input did.
pub fn drive_counting(data: &[u8]) -> Summary {
    let env = env();
    env.rt.block_on(run(env, data))
}

/// What every input shares: the runtime, the native peer, the files.
struct Env {
    rt: tokio::runtime::Runtime,
    peer: PeerPorts,
    file: PathBuf,
    empty: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sockshim-ops-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzzer's directory");
        let file = dir.join("file");
        let bytes: Vec<u8> = (0..FILE_LEN).map(|i| i as u8).collect();
        std::fs::write(&file, bytes).expect("write the file sendfile sends");
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").expect("write the empty file");
        // The first lookup loads the resolver's modules: not a leak.
        let _ = std::net::ToSocketAddrs::to_socket_addrs("localhost:1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the driver's runtime");
        Env {
            rt,
            peer: start_peer(),
            file,
            empty,
        }
    })
}

/// The native peer's ports, IPv4 then IPv6 (0 where there is no IPv6).
#[derive(Clone, Copy, Debug, Default)]
struct PeerPorts {
    /// Sends back what it receives.
    echo: [u16; 2],
    /// Reads and forgets.
    sink: [u16; 2],
    /// Sends 64 KiB first, then reads and forgets.
    chatty: [u16; 2],
    /// A UDP socket that sends each datagram back.
    udp: [u16; 2],
}

#[derive(Clone, Copy)]
enum Role {
    Echo,
    Sink,
    Chatty,
}

/// Starts the peer on a thread and runtime of its own.
fn start_peer() -> PeerPorts {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ops-fuzz-peer".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build the peer's runtime");
            rt.block_on(async move {
                let mut ports = PeerPorts::default();
                let ips = [
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ];
                for (i, ip) in ips.into_iter().enumerate() {
                    for (role, port) in [
                        (Role::Echo, &mut ports.echo[i]),
                        (Role::Sink, &mut ports.sink[i]),
                        (Role::Chatty, &mut ports.chatty[i]),
                    ] {
                        if let Ok(listener) = tokio::net::TcpListener::bind((ip, 0)).await {
                            *port = listener.local_addr().map_or(0, |a| a.port());
                            tokio::spawn(serve(listener, role));
                        }
                    }
                    if let Ok(udp) = tokio::net::UdpSocket::bind((ip, 0)).await {
                        ports.udp[i] = udp.local_addr().map_or(0, |a| a.port());
                        tokio::spawn(echo_datagrams(udp));
                    }
                }
                tx.send(ports).expect("hand the ports over");
                std::future::pending::<()>().await
            })
        })
        .expect("start the peer's thread");
    rx.recv().expect("the peer's ports")
}

async fn serve(listener: tokio::net::TcpListener, role: Role) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            if let Role::Chatty = role
                && conn.write_all(&buf).await.is_err()
            {
                return;
            }
            loop {
                let n = match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if let Role::Echo = role
                    && conn.write_all(&buf[..n]).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

async fn echo_datagrams(udp: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&buf[..n], from).await;
        }
    }
}

/// The process's open descriptors.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn fd_targets() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Socket,
    Selector,
    Pollable,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waits {
    /// On the reactor, with the timeouts the input sets; a call still
    /// waiting after [`CAP`] is cancelled, and the input ends there, as a
    /// plugin dropped in a call does.
    Wild,
    /// On the reactor, every wait capped at [`CAP`].
    Capped,
    /// On the plugin's thread (ppoll), every wait capped at [`CAP`].
    Thread,
}

/// The input, read a byte at a time; zeros once it ends.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.u8();
        }
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A length, count, offset, key or timeout in nanoseconds.
    fn wild_u64(&mut self) -> u64 {
        match self.u8() % 16 {
            0 => 0,
            1 => 1,
            2 => self.u8().into(),
            3 => self.u16().into(),
            4 => 4096,
            5 => MAX_RECV_SIZE,
            6 => MAX_RECV_SIZE + 1,
            7 => u32::MAX.into(),
            8 => u64::from(u32::MAX) + 1,
            9 => i64::MAX as u64,
            10 => u64::MAX - 1,
            11 => u64::MAX,
            12 => 1_000_000,
            13 => FILE_LEN,
            14 => FILE_LEN - 1,
            _ => u64::from_le_bytes(self.bytes()),
        }
    }

    fn wild_u32(&mut self) -> u32 {
        match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => self.u8().into(),
            3 => 128,
            4 => i32::MAX as u32,
            5 => i32::MAX as u32 + 1,
            6 => u32::MAX,
            _ => self.u32(),
        }
    }

    fn timeout(&mut self) -> WitTimeout {
        match self.u8() % 3 {
            0 => WitTimeout::Blocking,
            1 => WitTimeout::NonBlocking,
            _ => WitTimeout::After(self.wild_u64()),
        }
    }

    fn option_u64(&mut self) -> Option<u64> {
        if self.bool() {
            None
        } else {
            Some(self.wild_u64())
        }
    }

    fn events(&mut self) -> Events {
        let bits = self.u8();
        let mut events = Events::empty();
        for (i, flag) in [
            Events::READABLE,
            Events::PRIORITY,
            Events::WRITABLE,
            Events::ERROR,
            Events::HANG_UP,
            Events::READ_HANG_UP,
            Events::EDGE_TRIGGERED,
        ]
        .into_iter()
        .enumerate()
        {
            if bits & (1 << i) != 0 {
                events |= flag;
            }
        }
        events
    }

    fn option(&mut self) -> SocketOption {
        match self.u8() % 6 {
            0 => SocketOption::ReuseAddress(self.bool()),
            1 => SocketOption::TcpNodelay(self.bool()),
            2 => SocketOption::KeepAlive(self.bool()),
            3 => SocketOption::ReceiveBufferSize(self.wild_u64()),
            4 => SocketOption::SendBufferSize(self.wild_u64()),
            _ => SocketOption::Linger(if self.bool() {
                None
            } else {
                Some(self.wild_u32())
            }),
        }
    }

    fn option_name(&mut self) -> OptionName {
        match self.u8() % 6 {
            0 => OptionName::ReuseAddress,
            1 => OptionName::TcpNodelay,
            2 => OptionName::KeepAlive,
            3 => OptionName::ReceiveBufferSize,
            4 => OptionName::SendBufferSize,
            _ => OptionName::Linger,
        }
    }

    fn data(&mut self) -> Vec<u8> {
        let len = match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => self.u8().into(),
            3 => self.u16().into(),
            4 => 65_507,
            5 => 65_508,
            6 => MAX_DATA,
            _ => 4096,
        };
        vec![self.u8(); len]
    }

    /// A host: the addresses and names a plugin might try, or text from the
    /// input.
    fn host(&mut self) -> String {
        const HOSTS: [&str; 24] = [
            "127.0.0.1",
            "::1",
            "",
            "localhost",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
            "127.0.0.2",
            "10.0.0.1",
            "169.254.169.254",
            "fe80::1%1",
            "fe80::1%lo",
            "::1%1",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "[::1]",
            "127.1",
            "::127.0.0.1",
            "LocalHost",
            "example.com",
            "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z",
            "1.2.3.4",
            "",
        ];
        let pick = self.u8();
        if pick < 232 {
            return HOSTS[usize::from(pick) % HOSTS.len()].to_string();
        }
        let len = usize::from(self.u8() % 64);
        let text: Vec<u8> = (0..len).map(|_| self.u8()).collect();
        let text = String::from_utf8_lossy(&text).into_owned();
        // A name the policy lets the host look up goes to the resolver:
        // keep those to the one the hosts file answers.
        if text.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
            "localhost".to_string()
        } else {
            text
        }
    }
}

/// One input's plugin: its context, its table, and what the driver knows of
/// the handles in the table.
struct Plugin<'e> {
    env: &'e Env,
    ctx: SockshimCtx,
    table: ResourceTable,
    deny: bool,
    waits: Waits,
    max_sockets: usize,
    stop: StopWaits,
    /// The live entries the driver made (each socket pollable's readiness
    /// entry aside), by rep.
    kinds: HashMap<u32, Kind>,
    /// The selector each selector pollable is a child of, by the
    /// pollable's rep: a selector with one alive traps when dropped.
    parents: HashMap<u32, u32>,
    /// Every rep ever handed out, live or dropped, in order.
    seen: Vec<u32>,
    /// The timeout the input gave each socket (what `get-timeout` must
    /// return).
    timeouts: HashMap<u32, WitTimeout>,
    /// The default timeout the input set.
    default_timeout: WitTimeout,
    /// A wild call was cancelled: the plugin is gone.
    cancelled: bool,
    /// The regular file's rep, for sendfile's bound.
    regular: u32,
    summary: Summary,
}

async fn run(env: &Env, data: &[u8]) -> Summary {
    let mut input = Input { data };
    let mode = input.u8();
    let deny = mode & 1 == 1;
    let waits = match (mode >> 1) % 3 {
        0 => Waits::Wild,
        1 => Waits::Capped,
        _ => Waits::Thread,
    };
    let max_sockets = match (mode >> 3) & 3 {
        0 => crate::DEFAULT_MAX_SOCKETS,
        1 => 1,
        2 => 3,
        _ => 8,
    };
    let fds_before = open_fds();
    let summary = {
        let policy = if deny {
            Policy::deny_all()
        } else {
            let rule = |s: &str| s.parse().expect("a loopback rule");
            let mut policy = Policy::deny_all();
            for spec in ["127.0.0.0/8:*", "[::1]:*", "localhost:*"] {
                policy = policy.allow_connect(rule(spec)).allow_bind(rule(spec));
            }
            policy
        };
        let mut ctx = SockshimCtx::new(policy).with_max_sockets(max_sockets);
        if waits == Waits::Thread {
            ctx = ctx
                .waiting_on_thread()
                .expect("a stop signal for the plugin's thread");
        }
        let stop = ctx.stop_waits();
        let mut plugin = Plugin {
            env,
            ctx,
            table: ResourceTable::new(),
            deny,
            waits,
            max_sockets,
            stop,
            kinds: HashMap::new(),
            parents: HashMap::new(),
            seen: Vec::new(),
            timeouts: HashMap::new(),
            default_timeout: WitTimeout::Blocking,
            cancelled: false,
            regular: 0,
            summary: Summary::default(),
        };
        plugin.open_files();
        for _ in 0..MAX_OPS {
            if input.is_empty() || plugin.cancelled {
                break;
            }
            let started = Instant::now();
            let op = input.u8();
            plugin.summary.ops += 1;
            plugin.step(op, &mut input).await;
            let took = started.elapsed();
            assert!(took < STALL, "operation {op} stalled for {took:?}");
            assert!(
                plugin.ctx.open_sockets() <= plugin.max_sockets,
                "{} sockets open past the limit of {}",
                plugin.ctx.open_sockets(),
                plugin.max_sockets
            );
        }
        plugin.drop_everything().await;
        plugin.summary
    };
    settle(fds_before).await;
    summary
}

/// Waits until the process has no more than the `before` descriptors
/// again (the peer closes its side of each connection once it sees the
/// end); panics past [`SETTLE`]. Fewer is no leak: the peer may have
/// accepted, then closed, a connection of an earlier input that was still
/// in its listener's backlog when that input ended.
async fn settle(before: usize) {
    let started = Instant::now();
    loop {
        let now = open_fds();
        if now <= before {
            return;
        }
        if started.elapsed() > SETTLE {
            panic!(
                "descriptors: {before} before the input, {now} after it: {:#?}",
                fd_targets()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The text an error value carries must say something.
fn check_code(code: &ErrorCode) {
    match code {
        ErrorCode::AccessDenied(msg)
        | ErrorCode::InvalidArgument(msg)
        | ErrorCode::LimitReached(msg) => {
            assert!(!msg.is_empty(), "an error without a message: {code:?}")
        }
        _ => {}
    }
}

fn check<T>(result: &Result<T, ErrorCode>) {
    if let Err(code) = result {
        check_code(code);
    }
}

fn is_loopback(addr: &SocketAddress) -> bool {
    match addr {
        SocketAddress::Ipv4(a) => a.address.0 == 127,
        SocketAddress::Ipv6(a) => {
            let (s0, s1, s2, s3, s4, s5, s6, s7) = a.address;
            let ip = Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7);
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a host call's result is a refusal (an error value).
trait Refusal {
    fn refused(&self) -> bool;
}

impl<T> Refusal for Result<T, ErrorCode> {
    fn refused(&self) -> bool {
        self.is_err()
    }
}

impl<T> Refusal for Result<T, crate::bindings::TransferError> {
    fn refused(&self) -> bool {
        self.is_err()
    }
}

macro_rules! never_refused {
    ($($t:ty),*) => {
        $(impl Refusal for $t {
            fn refused(&self) -> bool {
                false
            }
        })*
    };
}

never_refused!((), bool, WitTimeout, AddressFamily, Resource<DynPollable>);

/// A socket's timeout as `get-timeout` gives it back: zero is
/// non-blocking, and 2^64 - 1 nanoseconds reads back one shorter (the socket
/// keeps its timeout in one 64-bit atomic, where `u64::MAX` is blocking).
fn normalised(t: WitTimeout) -> WitTimeout {
    match t {
        WitTimeout::After(0) => WitTimeout::NonBlocking,
        WitTimeout::After(u64::MAX) => WitTimeout::After(u64::MAX - 1),
        t => t,
    }
}

fn capped(t: WitTimeout) -> WitTimeout {
    let cap = CAP.as_nanos() as u64;
    match t {
        WitTimeout::Blocking => WitTimeout::After(cap),
        WitTimeout::NonBlocking => WitTimeout::NonBlocking,
        WitTimeout::After(n) => WitTimeout::After(n.min(cap)),
    }
}

fn same_timeout(a: WitTimeout, b: WitTimeout) -> bool {
    matches!(
        (normalised(a), normalised(b)),
        (WitTimeout::Blocking, WitTimeout::Blocking)
            | (WitTimeout::NonBlocking, WitTimeout::NonBlocking)
    ) || matches!((normalised(a), normalised(b)), (WitTimeout::After(x), WitTimeout::After(y)) if x == y)
}

/// Runs a call that may wait, on a view of the plugin: capped (the caller
/// lowered the socket's timeout to [`CAP`]) or, for a wild input, cancelled
/// after [`CAP`], which ends the input (`return` from `step`) as a plugin
/// dropped in a call ends.
macro_rules! call {
    ($plugin:ident, |$view:ident| $call:expr) => {{
        let waits = $plugin.waits;
        let mut $view = SockshimCtxView {
            ctx: &mut $plugin.ctx,
            table: &mut $plugin.table,
        };
        match bounded(waits, $call).await {
            Some(out) => out,
            None => {
                $plugin.cancelled = true;
                return;
            }
        }
    }};
}

async fn bounded<T>(waits: Waits, fut: impl Future<Output = T>) -> Option<T> {
    match waits {
        Waits::Wild => tokio::time::timeout(CAP, fut).await.ok(),
        Waits::Capped | Waits::Thread => Some(fut.await),
    }
}

impl Plugin<'_> {
    fn view(&mut self) -> SockshimCtxView<'_> {
        SockshimCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    fn track(&mut self, rep: u32, kind: Kind) {
        self.kinds.insert(rep, kind);
        self.seen.push(rep);
    }

    fn open_files(&mut self) {
        let env = self.env;
        let files = [
            (&env.file, OpenMode::READ, true),
            (&env.file, OpenMode::WRITE, false),
            (&env.empty, OpenMode::READ, true),
        ];
        for (path, mode, read) in files {
            let file = std::fs::OpenOptions::new()
                .read(read)
                .write(!read)
                .open(path)
                .expect("open the fuzzer's file");
            let perms = if read {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            let desc = Descriptor::File(File::new(file, perms, mode, false));
            let res = self.table.push(desc).expect("push a descriptor");
            self.track(res.rep(), Kind::File);
        }
        self.regular = self.seen[0];
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        let desc = Descriptor::File(File::new(null, FsPerms::ReadOnly, OpenMode::READ, false));
        let res = self.table.push(desc).expect("push a descriptor");
        self.track(res.rep(), Kind::File);
    }

    /// A rep for a handle of `kind`: mostly a live one, sometimes any rep
    /// the plugin ever had (dropped, or of another type), or one it never
    /// had.
    fn pick(&mut self, input: &mut Input<'_>, kind: Kind) -> u32 {
        let b = input.u8();
        let live: Vec<u32> = self
            .seen
            .iter()
            .copied()
            .filter(|rep| self.kinds.get(rep) == Some(&kind))
            .collect();
        if b < 0xc0 && !live.is_empty() {
            return live[usize::from(b) % live.len()];
        }
        if b < 0xf0 && !self.seen.is_empty() {
            return self.seen[usize::from(b) % self.seen.len()];
        }
        self.seen.iter().copied().max().unwrap_or(0) + u32::from(b & 0xf) + 1
    }

    fn is(&self, rep: u32, kind: Kind) -> bool {
        self.kinds.get(&rep) == Some(&kind)
    }

    /// A call on handles `reps` never traps when they are all live handles
    /// of their types, and never succeeds when one is not: it traps, or,
    /// where the call checks another argument first (`sendfile` its file,
    /// `accept` the socket limit), fails with an error value. (The
    /// component model never lets a plugin pass a dropped or wrong-typed
    /// handle; what must not happen is a call on one that succeeds.)
    fn expect_trap<T: Refusal>(
        &mut self,
        reps: &[(u32, Kind)],
        result: &wasmtime::Result<T>,
        what: &str,
    ) {
        let live = reps.iter().all(|(rep, kind)| self.is(*rep, *kind));
        if result.is_err() {
            self.summary.traps += 1;
        }
        match result {
            Err(e) if live => panic!("{what} trapped on live handles {reps:?}: {e:?}"),
            Ok(v) if !live && !v.refused() => {
                panic!("{what} succeeded on handles {reps:?}, not all live")
            }
            _ => {}
        }
    }

    /// Lowers the socket's timeout for a call that may wait.
    async fn cap(&mut self, rep: u32) {
        if self.waits != Waits::Wild && self.is(rep, Kind::Socket) {
            let t = capped(self.timeouts[&rep]);
            let r = HostSocket::set_timeout(&mut self.view(), Resource::new_borrow(rep), t).await;
            r.expect("set-timeout on a live socket");
        }
    }

    /// Gives the socket back the timeout the input set.
    async fn uncap(&mut self, rep: u32) {
        if self.waits != Waits::Wild && self.is(rep, Kind::Socket) {
            let t = self.timeouts[&rep];
            let r = HostSocket::set_timeout(&mut self.view(), Resource::new_borrow(rep), t).await;
            r.expect("set-timeout on a live socket");
        }
    }

    fn capped_wait(&self, timeout: Option<u64>, nothing_to_wait_for: bool) -> Option<u64> {
        let cap = CAP.as_nanos() as u64;
        match (self.waits, timeout) {
            (Waits::Wild, t) => t,
            // Refused at once: nothing could end the wait.
            (_, None) if nothing_to_wait_for => None,
            (_, None) => Some(cap),
            (_, Some(n)) => Some(n.min(cap)),
        }
    }

    /// A port: 0, one of the peer's, a closed one, one of the plugin's own
    /// sockets' ports, or (under the deny policy, where nothing connects)
    /// any.
    fn port(&mut self, input: &mut Input<'_>) -> u16 {
        let p = self.env.peer;
        match input.u8() % 12 {
            0 => 0,
            1 => p.echo[0],
            2 => p.sink[0],
            3 => p.chatty[0],
            4 => p.udp[0],
            5 => p.echo[1],
            6 => p.sink[1],
            7 => p.chatty[1],
            8 => p.udp[1],
            9 => 1,
            10 => {
                let rep = self.pick(input, Kind::Socket);
                let local = self
                    .table
                    .get(&Resource::<TcpSocket>::new_borrow(rep))
                    .ok()
                    .and_then(|s| s.local_address().ok());
                local.map_or(0, |a| a.port())
            }
            _ if self.deny => input.u16(),
            _ => 1,
        }
    }

    async fn step(&mut self, op: u8, input: &mut Input<'_>) {
        // 37 operations, the last (`_`) reading the limits.
        let op = op % 37;
        match op {
            0 | 1 => {
                let family = if input.bool() {
                    AddressFamily::Ipv6
                } else {
                    AddressFamily::Ipv4
                };
                let kind = if input.bool() {
                    SocketType::Datagram
                } else {
                    SocketType::Stream
                };
                let r = HostSocket::create(&mut self.view(), family, kind).await;
                match r.expect("create never traps") {
                    Ok(res) => {
                        let rep = res.rep();
                        self.track(rep, Kind::Socket);
                        self.timeouts.insert(rep, self.default_timeout);
                    }
                    Err(ErrorCode::LimitReached(_)) => assert!(
                        self.ctx.open_sockets() >= self.max_sockets,
                        "limit-reached with {} of {} sockets open",
                        self.ctx.open_sockets(),
                        self.max_sockets
                    ),
                    Err(e) => check_code(&e),
                }
            }
            2 => {
                let s = self.pick(input, Kind::Socket);
                let (host, port) = (input.host(), self.port(input));
                self.cap(s).await;
                let r = call!(self, |view| HostSocket::connect(
                    &mut view,
                    Resource::new_borrow(s),
                    host.clone(),
                    port
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "connect");
                if let Ok(r) = r {
                    check(&r);
                    if r.is_ok() {
                        assert!(!self.deny, "connect to {host}:{port} under the deny policy");
                        self.check_peer(s).await;
                    }
                }
            }
            3 => {
                let s = self.pick(input, Kind::Socket);
                let (host, port) = (input.host(), self.port(input));
                let r = HostSocket::bind(
                    &mut self.view(),
                    Resource::new_borrow(s),
                    host.clone(),
                    port,
                )
                .await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "bind");
                if let Ok(r) = r {
                    check(&r);
                    assert!(
                        !(self.deny && r.is_ok()),
                        "bind {host}:{port} under the deny policy"
                    );
                }
            }
            4 => {
                let s = self.pick(input, Kind::Socket);
                let backlog = input.wild_u32();
                let r =
                    HostSocket::listen(&mut self.view(), Resource::new_borrow(s), backlog).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "listen");
                if let Ok(r) = r {
                    check(&r);
                    assert!(!(self.deny && r.is_ok()), "listen under the deny policy");
                }
            }
            5 => {
                let s = self.pick(input, Kind::Socket);
                self.cap(s).await;
                let r = call!(self, |view| HostSocket::accept(
                    &mut view,
                    Resource::new_borrow(s)
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "accept");
                match r {
                    Ok(Ok((res, from))) => {
                        assert!(!self.deny, "accept under the deny policy");
                        assert!(is_loopback(&from), "accepted from {from:?}");
                        let rep = res.rep();
                        self.track(rep, Kind::Socket);
                        self.timeouts.insert(rep, self.default_timeout);
                    }
                    Ok(Err(e)) => check_code(&e),
                    Err(_) => {}
                }
            }
            6 | 7 => {
                let s = self.pick(input, Kind::Socket);
                let len = input.wild_u64();
                self.cap(s).await;
                let res = Resource::new_borrow(s);
                let r = if op == 6 {
                    call!(self, |view| HostSocket::recv(&mut view, res, len))
                } else {
                    call!(self, |view| HostSocket::recv_into(&mut view, res, len))
                };
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "recv");
                if let Ok(r) = r {
                    check(&r);
                    match r {
                        Ok(bytes) => {
                            assert!(bytes.len() as u64 <= len, "{} > {len}", bytes.len());
                            self.summary.received += bytes.len() as u64;
                        }
                        Err(ErrorCode::InvalidArgument(_)) => {}
                        Err(_) => assert!(len <= MAX_RECV_SIZE, "recv({len}) not refused"),
                    }
                }
            }
            8 => {
                let s = self.pick(input, Kind::Socket);
                let data = input.data();
                self.cap(s).await;
                let len = data.len();
                let r = call!(self, |view| HostSocket::send(
                    &mut view,
                    Resource::new_borrow(s),
                    data
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "send");
                if let Ok(r) = r {
                    check(&r);
                    if let Ok(n) = r {
                        self.summary.sent += n;
                        assert!(n <= len as u64, "send took {n} of {len} bytes");
                        assert!(!self.deny || n == 0, "send under the deny policy");
                    }
                }
            }
            9 => {
                let s = self.pick(input, Kind::Socket);
                let data = input.data();
                self.cap(s).await;
                let len = data.len();
                let r = call!(self, |view| HostSocket::sendall(
                    &mut view,
                    Resource::new_borrow(s),
                    data
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "sendall");
                match r {
                    Ok(Err(e)) => {
                        check_code(&e.code);
                        self.summary.sent += e.bytes_sent;
                        assert!(
                            e.bytes_sent <= len as u64,
                            "sendall: {} of {len}",
                            e.bytes_sent
                        );
                    }
                    Ok(Ok(())) => {
                        assert!(!self.deny || len == 0, "sendall under the deny policy");
                        self.summary.sent += len as u64;
                    }
                    Err(_) => {}
                }
            }
            10 => {
                let s = self.pick(input, Kind::Socket);
                let data = input.data();
                let (host, port) = (input.host(), self.port(input));
                self.cap(s).await;
                let len = data.len();
                let r = call!(self, |view| HostSocket::sendto(
                    &mut view,
                    Resource::new_borrow(s),
                    data,
                    host.clone(),
                    port
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "sendto");
                if let Ok(r) = r {
                    check(&r);
                    if let Ok(n) = r {
                        self.summary.sent += n;
                        assert!(!self.deny, "sendto {host}:{port} under the deny policy");
                        assert_eq!(n, len as u64, "sendto sent part of a datagram");
                    }
                }
            }
            11 | 12 => {
                let s = self.pick(input, Kind::Socket);
                let len = input.wild_u64();
                self.cap(s).await;
                let res = Resource::new_borrow(s);
                let r = if op == 11 {
                    call!(self, |view| HostSocket::recvfrom(&mut view, res, len))
                } else {
                    call!(self, |view| HostSocket::recvfrom_into(&mut view, res, len))
                };
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "recvfrom");
                if let Ok(r) = r {
                    check(&r);
                    if let Ok((bytes, from)) = r {
                        self.summary.received += bytes.len() as u64;
                        assert!(bytes.len() as u64 <= len, "{} > {len}", bytes.len());
                        assert!(!self.deny, "recvfrom under the deny policy");
                        assert!(is_loopback(&from), "a datagram from {from:?}");
                    }
                }
            }
            13 => {
                let s = self.pick(input, Kind::Socket);
                let option = input.option();
                let r =
                    HostSocket::set_option(&mut self.view(), Resource::new_borrow(s), option).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "set-option");
                if let Ok(r) = r {
                    check(&r);
                }
            }
            14 => {
                let s = self.pick(input, Kind::Socket);
                let name = input.option_name();
                let r =
                    HostSocket::get_option(&mut self.view(), Resource::new_borrow(s), name).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "get-option");
                if let Ok(Ok(value)) = &r {
                    let same = matches!(
                        (name, value),
                        (OptionName::ReuseAddress, SocketOption::ReuseAddress(_))
                            | (OptionName::TcpNodelay, SocketOption::TcpNodelay(_))
                            | (OptionName::KeepAlive, SocketOption::KeepAlive(_))
                            | (
                                OptionName::ReceiveBufferSize,
                                SocketOption::ReceiveBufferSize(_)
                            )
                            | (OptionName::SendBufferSize, SocketOption::SendBufferSize(_))
                            | (OptionName::Linger, SocketOption::Linger(_))
                    );
                    assert!(same, "get-option({name:?}) gave {value:?}");
                }
                if let Ok(r) = r {
                    check(&r);
                }
            }
            15 => {
                let s = self.pick(input, Kind::Socket);
                let t = input.timeout();
                let r = HostSocket::set_timeout(&mut self.view(), Resource::new_borrow(s), t).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "set-timeout");
                let back = HostSocket::get_timeout(&mut self.view(), Resource::new_borrow(s)).await;
                self.expect_trap(&[(s, Kind::Socket)], &back, "get-timeout");
                if let Ok(back) = back {
                    assert!(
                        same_timeout(t, back),
                        "set-timeout({t:?}) gave back {back:?}"
                    );
                    self.timeouts.insert(s, t);
                }
            }
            16 => {
                let t = input.timeout();
                let r = Host::set_default_timeout(&mut self.view(), t).await;
                r.expect("set-default-timeout never traps");
                let back = Host::get_default_timeout(&mut self.view()).await;
                let back = back.expect("get-default-timeout never traps");
                assert!(
                    same_timeout(t, back),
                    "set-default-timeout({t:?}) gave back {back:?}"
                );
                self.default_timeout = t;
            }
            17 => {
                let s = self.pick(input, Kind::Socket);
                let how = match input.u8() % 3 {
                    0 => ShutdownHow::Read,
                    1 => ShutdownHow::Write,
                    _ => ShutdownHow::Both,
                };
                let r = HostSocket::shutdown(&mut self.view(), Resource::new_borrow(s), how).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "shutdown");
                if let Ok(r) = r {
                    check(&r);
                }
            }
            18 => {
                let s = self.pick(input, Kind::Socket);
                let mut view = self.view();
                let family = HostSocket::family(&mut view, Resource::new_borrow(s)).await;
                let local = HostSocket::local_address(&mut view, Resource::new_borrow(s)).await;
                let remote = HostSocket::remote_address(&mut view, Resource::new_borrow(s)).await;
                let error = HostSocket::take_error(&mut view, Resource::new_borrow(s)).await;
                let timeout = HostSocket::get_timeout(&mut view, Resource::new_borrow(s)).await;
                self.expect_trap(&[(s, Kind::Socket)], &family, "family");
                self.expect_trap(&[(s, Kind::Socket)], &local, "local-address");
                self.expect_trap(&[(s, Kind::Socket)], &remote, "remote-address");
                self.expect_trap(&[(s, Kind::Socket)], &error, "take-error");
                self.expect_trap(&[(s, Kind::Socket)], &timeout, "get-timeout");
                if let Ok(local) = local {
                    check(&local);
                }
                if let Ok(remote) = remote {
                    check(&remote);
                    if let Ok(addr) = remote {
                        assert!(!self.deny, "a peer under the deny policy: {addr:?}");
                        assert!(is_loopback(&addr), "a peer at {addr:?}");
                    }
                }
                if let Ok(Ok(Some(code))) = &error {
                    check_code(code);
                }
                if let Ok(t) = timeout {
                    let want = self.timeouts[&s];
                    assert!(
                        same_timeout(t, want),
                        "get-timeout gave {t:?}, not {want:?}"
                    );
                }
            }
            19 => {
                let s = self.pick(input, Kind::Socket);
                let f = self.pick(input, Kind::File);
                let (offset, count, total) =
                    (input.wild_u64(), input.option_u64(), input.option_u64());
                let bound = self.file_bound(f, offset);
                self.cap(s).await;
                let r = call!(self, |view| HostSocket::sendfile(
                    &mut view,
                    Resource::new_borrow(s),
                    Resource::new_borrow(f),
                    offset,
                    count,
                    total,
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket), (f, Kind::File)], &r, "sendfile");
                let most = bound.min(count.unwrap_or(u64::MAX));
                match r {
                    Ok(Ok(n)) => {
                        self.summary.sent += n;
                        assert!(n <= most, "sendfile sent {n}, at most {most}");
                        assert!(count != Some(0), "sendfile with a count of 0");
                        assert!(!self.deny || n == 0, "sendfile under the deny policy");
                    }
                    Ok(Err(e)) => {
                        check_code(&e.code);
                        self.summary.sent += e.bytes_sent;
                        assert!(e.bytes_sent <= most, "sendfile: {} of {most}", e.bytes_sent);
                    }
                    Err(_) => {}
                }
            }
            20 => {
                let s = self.pick(input, Kind::Socket);
                let f = self.pick(input, Kind::File);
                let (offset, count) = (input.wild_u64(), input.wild_u64());
                let bound = self.file_bound(f, offset);
                self.cap(s).await;
                let r = call!(self, |view| HostSocket::sendfile_once(
                    &mut view,
                    Resource::new_borrow(s),
                    Resource::new_borrow(f),
                    offset,
                    count,
                ));
                self.uncap(s).await;
                self.expect_trap(&[(s, Kind::Socket), (f, Kind::File)], &r, "sendfile-once");
                if let Ok(r) = r {
                    check(&r);
                    if let Ok(n) = r {
                        self.summary.sent += n;
                        let most = bound.min(count);
                        assert!(n <= most, "sendfile-once sent {n}, at most {most}");
                    }
                }
            }
            21 => {
                let n = match input.u8() {
                    255 => MAX_POLL_ENTRIES as usize + 1,
                    b => usize::from(b % 5),
                };
                let mut reps = Vec::new();
                for _ in 0..n.min(4) {
                    reps.push((self.pick(input, Kind::Socket), input.events()));
                }
                while reps.len() < n {
                    let first = reps[0];
                    reps.push(first);
                }
                let timeout = input.option_u64();
                let timeout = self.capped_wait(timeout, reps.is_empty());
                let entries: Vec<PollEntry> = reps
                    .iter()
                    .map(|(rep, events)| PollEntry {
                        socket: Resource::new_borrow(*rep),
                        events: *events,
                    })
                    .collect();
                let r = call!(self, |view| Host::poll(&mut view, entries, timeout));
                let handles: Vec<(u32, Kind)> = if n > MAX_POLL_ENTRIES as usize {
                    Vec::new() // refused before any handle is looked at
                } else {
                    reps.iter().map(|(rep, _)| (*rep, Kind::Socket)).collect()
                };
                self.expect_trap(&handles, &r, "poll");
                if let Ok(r) = r {
                    check(&r);
                    let failed = r.as_ref().err().cloned();
                    if let Ok(ready) = r {
                        let mut last = None;
                        for entry in ready {
                            assert!((entry.index as usize) < n, "poll: index {}", entry.index);
                            assert!(
                                last < Some(entry.index),
                                "poll: index {} again",
                                entry.index
                            );
                            assert!(entry.events != Events::empty(), "poll: no events");
                            last = Some(entry.index);
                        }
                    } else if n > MAX_POLL_ENTRIES as usize {
                    } else {
                        // Only `none` (nothing could end the wait) or a
                        // plugin stopped (`os(ECANCELED)`) fails it.
                        let stopped = self.stop.is_stopped();
                        assert!(
                            n > 0 || timeout.is_none() || stopped,
                            "poll of nothing for {timeout:?} failed: {failed:?}"
                        );
                    }
                }
            }
            22 => {
                let r = HostSelector::create(&mut self.view()).await;
                match r.expect("selector.create never traps") {
                    Ok(res) => self.track(res.rep(), Kind::Selector),
                    Err(e) => check_code(&e),
                }
            }
            23 => {
                let sel = self.pick(input, Kind::Selector);
                let s = self.pick(input, Kind::Socket);
                let (key, events) = (input.wild_u64(), input.events());
                let r = HostSelector::register(
                    &mut self.view(),
                    Resource::new_borrow(sel),
                    Resource::new_borrow(s),
                    key,
                    events,
                )
                .await;
                self.expect_trap(&[(sel, Kind::Selector), (s, Kind::Socket)], &r, "register");
                if let Ok(r) = r {
                    check(&r);
                }
            }
            24 => {
                let sel = self.pick(input, Kind::Selector);
                let (key, events) = (input.wild_u64(), input.events());
                let r =
                    HostSelector::modify(&mut self.view(), Resource::new_borrow(sel), key, events)
                        .await;
                self.expect_trap(&[(sel, Kind::Selector)], &r, "modify");
                if let Ok(r) = r {
                    check(&r);
                }
            }
            25 => {
                let sel = self.pick(input, Kind::Selector);
                let key = input.wild_u64();
                let r = HostSelector::unregister(&mut self.view(), Resource::new_borrow(sel), key)
                    .await;
                self.expect_trap(&[(sel, Kind::Selector)], &r, "unregister");
                if let Ok(r) = r {
                    check(&r);
                }
            }
            26 => {
                let sel = self.pick(input, Kind::Selector);
                let timeout = input.option_u64();
                let max_events = input.wild_u32();
                let timeout = self.capped_wait(timeout, false);
                let r = call!(self, |view| HostSelector::wait(
                    &mut view,
                    Resource::new_borrow(sel),
                    timeout,
                    max_events
                ));
                self.expect_trap(&[(sel, Kind::Selector)], &r, "selector.wait");
                if let Ok(r) = r {
                    check(&r);
                    if let Ok(ready) = r {
                        assert!(
                            max_events == 0 || ready.len() <= max_events as usize,
                            "selector.wait gave {} of at most {max_events}",
                            ready.len()
                        );
                    }
                }
            }
            27 => {
                let s = self.pick(input, Kind::Socket);
                let events = input.events();
                let r =
                    HostSocket::subscribe(&mut self.view(), Resource::new_borrow(s), events).await;
                self.expect_trap(&[(s, Kind::Socket)], &r, "subscribe");
                match r {
                    Ok(Ok(p)) => self.track(p.rep(), Kind::Pollable),
                    Ok(Err(e)) => check_code(&e),
                    Err(_) => {}
                }
            }
            28 => {
                let p = self.pick(input, Kind::Pollable);
                let r =
                    HostPollable::ready(&mut self.table, Resource::<DynPollable>::new_borrow(p))
                        .await;
                self.expect_trap(&[(p, Kind::Pollable)], &r, "pollable.ready");
            }
            29 => {
                let p = self.pick(input, Kind::Pollable);
                // A pollable has no timeout of its own: a wait on it is
                // always cut short (on the reactor, even for a plugin that
                // waits on its thread).
                let fut =
                    HostPollable::block(&mut self.table, Resource::<DynPollable>::new_borrow(p));
                if let Ok(r) = tokio::time::timeout(CAP, fut).await {
                    self.expect_trap(&[(p, Kind::Pollable)], &r, "pollable.block");
                }
            }
            30 => {
                let p = self.pick(input, Kind::Pollable);
                if self.droppable(p, Kind::Pollable) {
                    let r =
                        HostPollable::drop(&mut self.table, Resource::<DynPollable>::new_own(p));
                    self.expect_trap(&[(p, Kind::Pollable)], &r, "pollable drop");
                    self.kinds.remove(&p);
                    self.parents.remove(&p);
                }
            }
            31 => {
                let s = self.pick(input, Kind::Socket);
                if self.droppable(s, Kind::Socket) {
                    self.drop_socket(s).await;
                }
            }
            32 => {
                let sel = self.pick(input, Kind::Selector);
                if self.parents.values().any(|parent| *parent == sel) {
                    // A pollable of it is alive: the drop traps, and the
                    // selector stays.
                    let r = HostSelector::drop(&mut self.view(), Resource::new_own(sel)).await;
                    assert!(r.is_err(), "dropped selector {sel} with a pollable alive");
                    self.summary.traps += 1;
                } else if self.droppable(sel, Kind::Selector) {
                    let r = HostSelector::drop(&mut self.view(), Resource::new_own(sel)).await;
                    self.expect_trap(&[(sel, Kind::Selector)], &r, "selector drop");
                    self.kinds.remove(&sel);
                }
            }
            33 => {
                const NAMES: [&str; 6] = [
                    "localhost",
                    "127.0.0.1",
                    "::1",
                    "10.0.0.1",
                    "example.com",
                    "",
                ];
                let host = NAMES[usize::from(input.u8()) % NAMES.len()].to_string();
                let r = Host::resolve_addresses(&mut self.view(), host.clone()).await;
                let r = r.expect("resolve-addresses never traps");
                check(&r);
                if let Ok(ips) = r {
                    assert!(!self.deny, "{host} resolved under the deny policy");
                    for ip in ips {
                        let loopback = match ip {
                            crate::bindings::IpAddress::Ipv4(a) => a.0 == 127,
                            crate::bindings::IpAddress::Ipv6(a) => a == (0, 0, 0, 0, 0, 0, 0, 1),
                        };
                        assert!(loopback, "{host} resolved to {ip:?}");
                    }
                }
            }
            34 => self.stop.stop(),
            36 => {
                let sel = self.pick(input, Kind::Selector);
                let r = HostSelector::subscribe(&mut self.view(), Resource::new_borrow(sel)).await;
                self.expect_trap(&[(sel, Kind::Selector)], &r, "selector.subscribe");
                if let Ok(p) = r {
                    self.track(p.rep(), Kind::Pollable);
                    self.parents.insert(p.rep(), sel);
                }
            }
            _ => {
                let mut view = self.view();
                let max = Host::max_recv_size(&mut view).await.expect("max-recv-size");
                assert_eq!(max, MAX_RECV_SIZE);
                let max = Host::max_poll_entries(&mut view)
                    .await
                    .expect("max-poll-entries");
                assert_eq!(max, MAX_POLL_ENTRIES);
            }
        }
    }

    /// The most `sendfile` may send from file rep `f` at `offset`.
    fn file_bound(&self, f: u32, offset: u64) -> u64 {
        if f == self.regular {
            FILE_LEN.saturating_sub(offset)
        } else {
            0
        }
    }

    /// Whether the driver may drop `rep` as a `kind`: a live handle of that
    /// kind, or a free slot (which must trap). Never an entry of another
    /// type: the component model keeps a plugin from that.
    fn droppable(&mut self, rep: u32, kind: Kind) -> bool {
        self.is(rep, kind) || self.table.get_any_mut(rep).is_err()
    }

    /// Drops socket `rep` as a plugin does (the explicit close, which may
    /// linger); a close that lingers is cut short, as when the plugin's
    /// store goes.
    async fn drop_socket(&mut self, rep: u32) {
        let mut view = SockshimCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        };
        let fut = HostSocket::drop(&mut view, Resource::new_own(rep));
        let live = self.kinds.get(&rep) == Some(&Kind::Socket);
        match tokio::time::timeout(Duration::from_millis(20), fut).await {
            Ok(Err(e)) if live => panic!("dropping live socket {rep} trapped: {e:?}"),
            Ok(Ok(())) if !live => panic!("dropping free slot {rep} did not trap"),
            _ => {}
        }
        self.kinds.remove(&rep);
    }

    /// Drops every handle left, then checks that nothing is: no entry in
    /// the table, no socket counted.
    async fn drop_everything(&mut self) {
        let mut live: Vec<(u32, Kind)> = self.kinds.iter().map(|(r, k)| (*r, *k)).collect();
        // Pollables first: the table keeps a pollable's readiness until
        // the pollable goes.
        live.sort_by_key(|(rep, kind)| (*kind != Kind::Pollable, *rep));
        for (rep, kind) in live {
            match kind {
                Kind::Pollable => {
                    let r =
                        HostPollable::drop(&mut self.table, Resource::<DynPollable>::new_own(rep));
                    r.expect("drop a live pollable");
                }
                Kind::Socket => self.drop_socket(rep).await,
                Kind::Selector => {
                    let r = HostSelector::drop(&mut self.view(), Resource::new_own(rep)).await;
                    r.expect("drop a live selector");
                }
                Kind::File => {
                    self.table
                        .delete(Resource::<Descriptor>::new_own(rep))
                        .expect("delete a file");
                }
            }
            self.kinds.remove(&rep);
        }
        let left = self.table.iter_mut().count();
        assert_eq!(left, 0, "{left} entries left in the table");
        assert_eq!(self.ctx.open_sockets(), 0, "sockets still counted");
    }

    /// A connected stream socket's peer is on loopback.
    async fn check_peer(&mut self, s: u32) {
        let r = HostSocket::remote_address(&mut self.view(), Resource::new_borrow(s)).await;
        if let Ok(Ok(addr)) = r {
            assert!(is_loopback(&addr), "connected to {addr:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver itself: an input that creates, connects, sends and
    /// receives really moves bytes through the peer, and one of nothing
    /// runs.
    #[test]
    fn the_driver_runs_simple_inputs() {
        drive(&[]);
        drive(&[0xff; 3]);
    }
}
