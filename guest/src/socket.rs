//! The [`Socket`] type and per-process socket defaults.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::address::{Address, ToAddress, socket_addr_from_wit};
use crate::bindings;
use crate::error::{closed, errno_of_code, from_code, from_transfer};
use crate::fs::File;
use crate::makefile::{Mode, SocketFile};
use crate::options::{SockOpt, SockOptName};
use crate::placement;
use crate::readiness::Events;
use wasip2::io::poll::Pollable;

/// Address family: Python's `AF_INET` / `AF_INET6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4, `AF_INET`.
    Ipv4,
    /// IPv6, `AF_INET6`.
    Ipv6,
}

impl Family {
    /// The family of an IP address.
    pub(crate) fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    fn to_wit(self) -> bindings::AddressFamily {
        match self {
            Family::Ipv4 => bindings::AddressFamily::Ipv4,
            Family::Ipv6 => bindings::AddressFamily::Ipv6,
        }
    }
}

/// Socket type: Python's `SOCK_STREAM` / `SOCK_DGRAM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A TCP socket, `SOCK_STREAM`.
    Stream,
    /// A UDP socket, `SOCK_DGRAM`: [`Socket::sendto`],
    /// [`Socket::recvfrom`], and [`Socket::send`] / [`Socket::recv`] once
    /// connected, each one datagram.
    Datagram,
}

impl Kind {
    fn to_wit(self) -> bindings::SocketType {
        match self {
            Kind::Stream => bindings::SocketType::Stream,
            Kind::Datagram => bindings::SocketType::Datagram,
        }
    }
}

/// A socket, with the semantics of a CPython `socket.socket` object; the
/// host implements it on a native OS socket, within its network policy.
///
/// Blocking calls wait according to the socket's timeout
/// ([`settimeout`](Socket::settimeout)): without limit (`None`, the initial
/// [default](getdefaulttimeout)), not at all (`Some(Duration::ZERO)`, which
/// fails with [`ErrorKind::WouldBlock`] instead), or at most the given
/// duration per call (failing with [`ErrorKind::TimedOut`], "timed out").
/// Errors have the [`ErrorKind`] that matches the exception CPython raises.
///
/// Every method takes `&self`, [`close`](Socket::close) included, so a
/// socket can be shared by reference; [`Read`] and [`Write`] are also
/// implemented for `&Socket`. After `close`, every method that talks to the
/// socket fails with `EBADF` ([`io::Error::raw_os_error`] is WASI's 8,
/// "Bad file descriptor"), as Python raises `OSError` `EBADF`. Dropping a
/// socket closes it.
///
/// The connection itself lives as long as the socket or any file object
/// from [`makefile`](Socket::makefile) does (CPython's `_io_refs`): closing
/// or dropping the socket while a file object is open leaves the connection
/// to the file object, and the host closes it when the last one goes.
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
/// use std::time::{Duration, Instant};
/// use sockshim::{Family, Kind, Socket};
///
/// fn main() -> std::io::Result<()> {
///     let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
///     sock.settimeout(Some(Duration::from_secs(10)))?;
///     sock.connect(("example.com", 80))?;
///     sock.sendall(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n")?;
///     let mut response = Vec::new();
///     (&sock).read_to_end(&mut response)?;
///     sock.close();
///     println!("{}", String::from_utf8_lossy(&response));
///     Ok(())
/// }
/// ```
pub struct Socket {
    /// The host's socket, shared with the file objects from `makefile`;
    /// `None` once this socket is closed. The host closes its socket when
    /// the last `Rc` goes.
    inner: RefCell<Option<Rc<bindings::Socket>>>,
    family: Family,
    kind: Kind,
    /// The timeout last set on the host's socket, kept so that
    /// `gettimeout` works without a host call, and after `close` as in
    /// Python.
    timeout: Cell<Option<Duration>>,
}

impl Socket {
    /// Creates a socket; corresponds to Python's
    /// `socket.socket(family, type)`. It starts with the
    /// [default timeout](getdefaulttimeout).
    ///
    /// Fails with `EMFILE` ([`io::Error::raw_os_error`] is WASI's 33, as
    /// CPython's `OSError(EMFILE)`) when the plugin already has as many
    /// sockets open as the host allows.
    pub fn new(family: Family, kind: Kind) -> io::Result<Socket> {
        let inner = bindings::Socket::create(family.to_wit(), kind.to_wit()).map_err(from_code)?;
        Ok(Socket::from_host(inner, family, kind))
    }

    fn from_host(inner: bindings::Socket, family: Family, kind: Kind) -> Socket {
        let timeout = timeout_from_wit(inner.get_timeout());
        Socket {
            inner: RefCell::new(Some(Rc::new(inner))),
            family,
            kind,
            timeout: Cell::new(timeout),
        }
    }

    /// The host's socket, or the "socket is closed" error.
    pub(crate) fn host(&self) -> io::Result<Rc<bindings::Socket>> {
        let inner = self.inner.try_borrow().map_err(|_| closed())?;
        inner.as_ref().map(Rc::clone).ok_or_else(closed)
    }

    /// Connects to a remote address; corresponds to Python's
    /// `socket.connect((host, port))`.
    ///
    /// A host name is resolved by the host, which uses the first address of
    /// this socket's family that its policy allows. The timeout bounds the
    /// whole connect. An address the policy does not allow fails with
    /// [`ErrorKind::PermissionDenied`].
    ///
    /// On a non-blocking socket (timeout zero) the connect starts and goes
    /// on in the background: unless it completes at once, this fails with
    /// [`ErrorKind::WouldBlock`] (Python raises `BlockingIOError` with
    /// `EINPROGRESS`; here the errno is on the inner error,
    /// `err.get_ref()` downcast to [`io::Error`], since an error carrying
    /// `EINPROGRESS` itself would not have kind `WouldBlock`).
    /// [`connect_ex`](Socket::connect_ex) returns
    /// [`errno::EINPROGRESS`](crate::errno::EINPROGRESS) instead. The socket
    /// turns writable when the connect ends; [`take_error`](Socket::take_error)
    /// then says whether it succeeded.
    pub fn connect(&self, addr: impl ToAddress) -> io::Result<()> {
        let addr = addr.to_address()?;
        self.host()?
            .connect(addr.host(), addr.port())
            .map_err(|code| self.by_name(&addr, from_code(code)))
    }

    /// Connects as [`connect`](Socket::connect) does, and returns 0 on
    /// success or the error's errno, numbered as in
    /// [`sockshim::errno`](crate::errno); corresponds to Python's
    /// `socket.connect_ex(address)`.
    ///
    /// On a non-blocking socket a connect that goes on in the background
    /// returns [`errno::EINPROGRESS`](crate::errno::EINPROGRESS): wait until
    /// the socket is writable ([`select`](crate::select),
    /// [`poll`](crate::poll), a [selector](crate::selectors) or
    /// [`subscribe`](Socket::subscribe)), then read the outcome with
    /// [`take_error`](Socket::take_error). Every failure is returned as a
    /// number, never raised: a refused connect is
    /// [`ECONNREFUSED`](crate::errno::ECONNREFUSED), an address the policy
    /// does not allow [`EACCES`](crate::errno::EACCES), a name that does not
    /// resolve [`EADDRNOTAVAIL`](crate::errno::EADDRNOTAVAIL), a timeout
    /// [`ETIMEDOUT`](crate::errno::ETIMEDOUT), an address that does not parse
    /// [`EINVAL`](crate::errno::EINVAL), a closed socket
    /// [`EBADF`](crate::errno::EBADF).
    ///
    /// ```no_run
    /// use sockshim::{Events, Family, Kind, Socket, errno};
    ///
    /// let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    /// sock.setblocking(false)?;
    /// match sock.connect_ex("127.0.0.1:8000") {
    ///     0 => println!("connected at once"),
    ///     errno::EINPROGRESS => {
    ///         // Wait for the connect to end, then ask how it ended.
    ///         sockshim::poll(&[(&sock, Events::WRITABLE)], None)?;
    ///         match sock.take_error()? {
    ///             None => println!("connected"),
    ///             Some(err) => println!("connect failed: {err}"),
    ///         }
    ///     }
    ///     code => println!("connect failed: {}", std::io::Error::from_raw_os_error(code)),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect_ex(&self, addr: impl ToAddress) -> i32 {
        let Ok(addr) = addr.to_address() else {
            return crate::errno::EINVAL;
        };
        let Ok(host) = self.host() else {
            return crate::errno::EBADF;
        };
        match host.connect(addr.host(), addr.port()) {
            Ok(()) => 0,
            Err(code) => errno_of_code(&code),
        }
    }

    /// Starts a connect on a non-blocking socket: `Ok(true)` if it
    /// completed at once, `Ok(false)` if it goes on in the background.
    #[cfg(feature = "async")]
    pub(crate) fn start_connect(&self, addr: impl ToAddress) -> io::Result<bool> {
        let addr = addr.to_address()?;
        match self.host()?.connect(addr.host(), addr.port()) {
            Ok(()) => Ok(true),
            Err(bindings::ErrorCode::InProgress) => Ok(false),
            Err(code) => Err(from_code(code)),
        }
    }

    /// Reads and clears the socket's pending error: `None` when there is
    /// none; corresponds to Python's
    /// `socket.getsockopt(SOL_SOCKET, SO_ERROR)` (which returns 0 or the
    /// errno).
    ///
    /// After a non-blocking [`connect`](Socket::connect) or
    /// [`connect_ex`](Socket::connect_ex) and a wait until the socket is
    /// writable, `None` means the connect succeeded and an error says why it
    /// failed, e.g. [`ErrorKind::ConnectionRefused`]. The pending error has
    /// the kind of the same error returned by any other call.
    ///
    /// ```no_run
    /// use sockshim::{Events, Family, Kind, Socket};
    ///
    /// let sock = Socket::new(Family::Ipv4, Kind::Stream)?;
    /// sock.setblocking(false)?;
    /// sock.connect_ex("127.0.0.1:8000");
    /// sockshim::poll(&[(&sock, Events::WRITABLE)], None)?;
    /// if let Some(err) = sock.take_error()? {
    ///     return Err(err);
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let pending = self.host()?.take_error().map_err(from_code)?;
        Ok(pending.map(from_code))
    }

    /// The socket's number: the handle of the host's socket in this plugin,
    /// unique among the plugin's open sockets; corresponds to Python's
    /// `socket.fileno()`. Selectors ([`selectors`](crate::selectors)) key
    /// their registrations by it.
    ///
    /// Once the socket is closed it is `u32::MAX` (Python returns -1), and
    /// the number may be given to a socket opened later, as a file
    /// descriptor number may.
    pub fn fileno(&self) -> u32 {
        self.host().map_or(u32::MAX, |host| host.handle())
    }

    /// Sends up to `count` bytes of `file` from `offset`, as much as the
    /// socket takes with one sendfile(2), and returns how many were sent;
    /// corresponds to Python's `os.sendfile(sock.fileno(), file.fileno(),
    /// offset, count)`, which asyncio's `loop.sock_sendfile` calls in a loop.
    /// The bytes never pass through the plugin's memory.
    ///
    /// Unlike [`sendfile`](Socket::sendfile) it works on a non-blocking
    /// socket: when the socket takes nothing now it fails with
    /// [`ErrorKind::WouldBlock`], to be tried again once it is writable. On
    /// a socket with a timeout it waits, within that timeout, until the
    /// socket takes at least one byte, as [`send`](Socket::send) does. It
    /// returns 0 when `offset` is at or past the end of the file (or `count`
    /// is 0). The file's [position](File::position) is left as it is, as
    /// `os.sendfile` leaves it.
    ///
    /// `file` must be a regular file: anything else (a directory, a FIFO) is
    /// [`ErrorKind::InvalidInput`].
    ///
    /// ```no_run
    /// use sockshim::Events;
    ///
    /// let file = sockshim::fs::File::open("/site/big.iso")?;
    /// let sock = sockshim::create_connection("127.0.0.1:8000", None)?;
    /// sock.setblocking(false)?;
    /// let (len, mut offset) = (file.len()?, 0);
    /// while offset < len {
    ///     match sock.sendfile_once(&file, offset, len - offset) {
    ///         Ok(sent) => offset += sent,
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
    ///             // Serve other sockets until this one is writable again.
    ///             sockshim::poll(&[(&sock, Events::WRITABLE)], None)?;
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sendfile_once(&self, file: &File, offset: u64, count: u64) -> io::Result<u64> {
        self.host()?
            .sendfile_once(file.descriptor(), offset, count)
            .map_err(from_code)
    }

    /// A `wasi:io/poll` pollable that is ready while the socket is ready for
    /// any of `interest`, or has an error or a hang-up to report; with it a
    /// plugin waits on sockshim sockets together with wasi:sockets, wasi
    /// streams and wasi clocks in one `wasi:io/poll.poll`, and async
    /// runtimes over `wasi:io` wait on sockshim sockets (the `aio` module,
    /// with feature `async`, does so for wstd).
    ///
    /// Readiness is level-triggered: the pollable stays ready for as long as
    /// the socket is, and each `ready` or `block` looks again, so one
    /// pollable serves any number of waits. It does not keep the socket
    /// open: once the socket is closed the pollable is ready for good. It
    /// holds no host descriptor and does not count against the plugin's
    /// limit of open sockets, so subscribing for every wait is cheap.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sockshim::Events;
    /// use sockshim::wasip2::{clocks::monotonic_clock, io::poll};
    ///
    /// let sock = sockshim::create_connection("127.0.0.1:8000", None)?;
    /// let readable = sock.subscribe(Events::READABLE)?;
    /// let timer = monotonic_clock::subscribe_duration(Duration::from_secs(1).as_nanos() as u64);
    /// let ready = poll::poll(&[&readable, &timer]);
    /// if ready.contains(&0) {
    ///     println!("{} bytes", sock.recv(4096)?.len());
    /// } else {
    ///     println!("nothing within a second");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn subscribe(&self, interest: Events) -> io::Result<Pollable> {
        self.host()?.subscribe(interest.into()).map_err(from_code)
    }

    /// Binds the socket to a local address; corresponds to Python's
    /// `socket.bind((host, port))`. An empty host means every local address,
    /// port zero an ephemeral port (see [`getsockname`](Socket::getsockname)).
    pub fn bind(&self, addr: impl ToAddress) -> io::Result<()> {
        let addr = addr.to_address()?;
        self.host()?
            .bind(addr.host(), addr.port())
            .map_err(|code| self.by_name(&addr, from_code(code)))
    }

    /// `error` of a connect or bind to `addr`: when `addr`'s host is a
    /// name that did not resolve to an address of this socket's family,
    /// says so instead of "address not available".
    fn by_name(&self, addr: &Address, error: io::Error) -> io::Error {
        let host = addr.host();
        if host.is_empty() || host.contains(':') || host.parse::<IpAddr>().is_ok() {
            return error;
        }
        let what = match self.family {
            Family::Ipv4 => "an IPv4 address",
            Family::Ipv6 => "an IPv6 address",
        };
        crate::create::unresolved(host, what, error)
    }

    /// Puts the socket in listening mode; corresponds to Python's
    /// `socket.listen(backlog)`. An unbound socket is first bound to an
    /// ephemeral port on every address. The host clamps the backlog to the
    /// kernel's maximum.
    pub fn listen(&self, backlog: u32) -> io::Result<()> {
        self.host()?.listen(backlog).map_err(from_code)
    }

    /// Waits for an incoming connection and returns a new socket for it with
    /// the peer's address; corresponds to Python's `socket.accept()`.
    ///
    /// The new socket has this socket's family and kind, and starts with the
    /// [default timeout](getdefaulttimeout), not this socket's timeout.
    pub fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        let (inner, peer) = self.host()?.accept().map_err(from_code)?;
        let socket = Socket::from_host(inner, self.family, self.kind);
        Ok((socket, socket_addr_from_wit(peer)))
    }

    /// Receives up to `bufsize` bytes; corresponds to Python's
    /// `socket.recv(bufsize)`.
    ///
    /// An empty result means the peer has closed its side (end of stream);
    /// `recv(0)` returns an empty result at once. A `bufsize` above the
    /// host's maximum per call (16 MiB) fails with
    /// [`ErrorKind::InvalidInput`], while [`recv_into`](Socket::recv_into)
    /// with a larger buffer reads at most 16 MiB (see the crate's
    /// "How much one receive takes"); the host allocates at most what
    /// arrived.
    ///
    /// On a datagram socket it receives one datagram, as
    /// [`recvfrom`](Socket::recvfrom) does: an empty result is an empty
    /// datagram, and `recv(0)` waits for a datagram and consumes it.
    pub fn recv(&self, bufsize: usize) -> io::Result<Vec<u8>> {
        let max_len = u64::try_from(bufsize).unwrap_or(u64::MAX);
        self.host()?.recv(max_len).map_err(from_code)
    }

    /// Receives up to `buf.len()` bytes into `buf` and returns how many were
    /// received, zero at end of stream; corresponds to Python's
    /// `socket.recv_into(buffer)`. A buffer larger than the host's maximum
    /// per call (16 MiB) receives at most that maximum, as a short read; a
    /// [`recv`](Socket::recv) asking for more is an error instead.
    ///
    /// The host receives straight into `buf`: the kernel's copy is the only
    /// one (see [`receives_in_place`](crate::receives_in_place)).
    pub fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        let host = self.host()?;
        recv_into(&host, buf)
    }

    /// Sends as much of `data` as the socket takes at once, after waiting
    /// (within the timeout) until it takes at least one byte; returns how
    /// many bytes were sent, which may be fewer than `data.len()`;
    /// corresponds to Python's `socket.send(bytes)`.
    ///
    /// At most 16 MiB are handed to the host per call.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        let host = self.host()?;
        send(&host, data)
    }

    /// Sends all of `data`; corresponds to Python's `socket.sendall(bytes)`.
    ///
    /// The timeout bounds the whole call, not each partial send (as in
    /// CPython since 3.5). On failure the error's inner error is a
    /// [`PartialTransfer`](crate::PartialTransfer) that says how many bytes
    /// were sent before it; read it with [`bytes_sent`](crate::bytes_sent).
    ///
    /// Data larger than 16 MiB is handed to the host in pieces of that size
    /// (hosts bound how much a single call may copy), still within one
    /// deadline for the whole call.
    pub fn sendall(&self, data: &[u8]) -> io::Result<()> {
        let host = self.host()?;
        if data.len() <= MAX_TRANSFER {
            return host.sendall(data).map_err(from_transfer);
        }
        let timeout = self.timeout.get();
        let deadline = timeout
            .filter(|timeout| !timeout.is_zero())
            .and_then(|timeout| Instant::now().checked_add(timeout));
        let result = sendall_pieces(&host, data, deadline);
        if deadline.is_some() {
            host.set_timeout(timeout_to_wit(timeout));
        }
        result
    }

    /// Sends `data` as one datagram to `addr` and returns its length;
    /// corresponds to Python's `socket.sendto(bytes, address)`.
    ///
    /// A host name is resolved by the host under its policy, as for
    /// [`connect`](Socket::connect); the destination must be allowed by a
    /// connect rule, and a broadcast or multicast address by a rule that
    /// names it, or this fails with [`ErrorKind::PermissionDenied`]. An
    /// unbound socket is bound to an ephemeral port first, and then
    /// receives only from senders a connect rule allows (binding under a
    /// bind rule hears anyone). The host sends `data` from the plugin's
    /// memory, without a copy. Data longer than a datagram holds (65,507
    /// bytes over IPv4) fails with the OS error `EMSGSIZE`; a stream socket
    /// with [`ErrorKind::InvalidInput`].
    ///
    /// ```no_run
    /// use sockshim::{Family, Kind, Socket};
    ///
    /// let sock = Socket::new(Family::Ipv4, Kind::Datagram)?;
    /// sock.sendto(b"ping", ("127.0.0.1", 9000))?;
    /// let (reply, from) = sock.recvfrom(1500)?;
    /// println!("{from} answered {} bytes", reply.len());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sendto(&self, data: &[u8], addr: impl ToAddress) -> io::Result<usize> {
        let addr = addr.to_address()?;
        let sent = self
            .host()?
            .sendto(data, addr.host(), addr.port())
            .map_err(from_code)?;
        Ok(usize::try_from(sent).unwrap_or(usize::MAX).min(data.len()))
    }

    /// Receives one datagram of at most `bufsize` bytes and returns it with
    /// its sender's address; corresponds to Python's
    /// `socket.recvfrom(bufsize)`.
    ///
    /// As in CPython, a longer datagram is truncated and the rest of it
    /// lost, an empty result is an empty datagram, and `recvfrom(0)`
    /// consumes a datagram. On a connected socket only the peer's datagrams
    /// arrive, and an ICMP port unreachable for an earlier datagram fails
    /// the next receive with [`ErrorKind::ConnectionRefused`]. Datagrams of
    /// senders the host's policy does not let this socket hear are dropped
    /// by the host unseen. A stream socket fails with
    /// [`ErrorKind::InvalidInput`].
    pub fn recvfrom(&self, bufsize: usize) -> io::Result<(Vec<u8>, SocketAddr)> {
        let max_len = u64::try_from(bufsize).unwrap_or(u64::MAX);
        let (bytes, from) = self.host()?.recvfrom(max_len).map_err(from_code)?;
        Ok((bytes, socket_addr_from_wit(from)))
    }

    /// Receives one datagram into `buf` and returns its length (truncated
    /// to `buf.len()`, the rest lost) and its sender's address; corresponds
    /// to Python's `socket.recvfrom_into(buffer)`. Otherwise as
    /// [`recvfrom`](Socket::recvfrom). The host receives the datagram
    /// straight into `buf` (see
    /// [`receives_in_place`](crate::receives_in_place)).
    pub fn recvfrom_into(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let host = self.host()?;
        let max_len = u64::try_from(buf.len())
            .unwrap_or(u64::MAX)
            .min(max_recv_size());
        let len = usize::try_from(max_len).map_or(buf.len(), |n| n.min(buf.len()));
        let mut from = None;
        let received = placement::receive_into(&mut buf[..len], || {
            // `recvfrom-into` only where this crate's allocator lends the
            // buffer (see `placement::recv_lent`).
            let (bytes, addr) = if cfg!(all(target_arch = "wasm32", feature = "in-place-recv")) {
                host.recvfrom_into(max_len)?
            } else {
                host.recvfrom(max_len)?
            };
            from = Some(addr);
            Ok(bytes)
        });
        let n = received.map_err(|err| match err {
            placement::ReceiveError::Failed(code) => from_code(code),
            placement::ReceiveError::TooLong(len) => io::Error::new(
                ErrorKind::InvalidData,
                format!("the host returned {len} bytes for a receive of at most {max_len}"),
            ),
        })?;
        let from = from.ok_or_else(|| io::Error::other("the host returned no sender"))?;
        Ok((n, socket_addr_from_wit(from)))
    }

    /// Sets the timeout of blocking operations; corresponds to Python's
    /// `socket.settimeout(value)`.
    ///
    /// `None` blocks without limit (`settimeout(None)`);
    /// `Some(Duration::ZERO)` makes the socket non-blocking
    /// (`settimeout(0.0)`): operations that would block fail with
    /// [`ErrorKind::WouldBlock`]; `Some(duration)` lets each operation wait
    /// at most that long before failing with [`ErrorKind::TimedOut`].
    pub fn settimeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let wit = timeout_to_wit(timeout);
        self.host()?.set_timeout(wit);
        self.timeout.set(timeout_from_wit(wit));
        Ok(())
    }

    /// Returns the socket's timeout as [`settimeout`](Socket::settimeout)
    /// takes it: `None` when blocking, `Some(Duration::ZERO)` when
    /// non-blocking (Python returns `0.0`); corresponds to Python's
    /// `socket.gettimeout()`. Works after `close`, as in Python.
    pub fn gettimeout(&self) -> Option<Duration> {
        self.timeout.get()
    }

    /// Makes the socket blocking (`true`, the same as `settimeout(None)`)
    /// or non-blocking (`false`, the same as
    /// `settimeout(Some(Duration::ZERO))`); corresponds to Python's
    /// `socket.setblocking(flag)`.
    pub fn setblocking(&self, blocking: bool) -> io::Result<()> {
        self.settimeout(if blocking { None } else { Some(Duration::ZERO) })
    }

    /// Whether the socket is in blocking mode, which is the case unless its
    /// timeout is zero (a socket with a timeout counts as blocking);
    /// corresponds to Python's `socket.getblocking()`.
    pub fn getblocking(&self) -> bool {
        self.gettimeout() != Some(Duration::ZERO)
    }

    /// Shuts down the reading side, the writing side, or both, of the
    /// connection; corresponds to Python's `socket.shutdown(how)` with
    /// `SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => bindings::ShutdownHow::Read,
            Shutdown::Write => bindings::ShutdownHow::Write,
            Shutdown::Both => bindings::ShutdownHow::Both,
        };
        self.host()?.shutdown(how).map_err(from_code)
    }

    /// Closes the socket; corresponds to Python's `socket.close()`.
    ///
    /// Closing twice does nothing. It takes `&self` so that any holder of a
    /// shared reference can close the socket; afterwards every method that
    /// talks to the socket, through any reference, fails with `EBADF`
    /// ([`io::Error::raw_os_error`] is WASI's 8), as in CPython.
    /// [`family`](Socket::family), [`kind`](Socket::kind),
    /// [`gettimeout`](Socket::gettimeout) and
    /// [`getblocking`](Socket::getblocking) keep working.
    ///
    /// While a file object from [`makefile`](Socket::makefile) is open, the
    /// connection stays open for it, as in CPython: the host closes the
    /// connection when the last of the socket and its file objects is
    /// closed or dropped.
    pub fn close(&self) {
        // Methods hold the `RefCell` borrowed only while cloning the `Rc`,
        // which cannot overlap `close` on this single-threaded type; the
        // check merely avoids a panic path.
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            drop(inner.take());
        }
    }

    /// Sends `count` bytes of `file` starting at `offset` (to the end of the
    /// file when `count` is `None`) and returns how many were sent;
    /// corresponds to Python's `socket.sendfile(file, offset, count)`.
    ///
    /// The data goes from the file to the socket inside the host
    /// (sendfile(2) where the kernel can, reads and sends where it cannot,
    /// e.g. from a FIFO), never through the plugin's memory. Fewer than
    /// `count` bytes are sent only when the file ends first; an `offset` at
    /// or past the end sends nothing and returns 0.
    ///
    /// As in CPython, the socket's timeout bounds each wait for the peer to
    /// take more data, not the whole transfer: a large file is not cut off
    /// by a short timeout while the peer keeps reading. It bounds each wait
    /// for a FIFO to have more bytes as well (CPython reads a FIFO
    /// blocking, without limit). To bound the whole call, use
    /// [`sendfile_until`](Socket::sendfile_until).
    ///
    /// After the call, whether it succeeded or failed, the file's position
    /// ([`File::position`]) is `offset` plus the bytes sent, so that reading
    /// the file goes on where the socket stopped (CPython's
    /// `file.seek(offset + total_sent)`; unlike CPython, also when nothing
    /// was sent). Only on a closed socket, which fails before anything is
    /// tried, is the position left as it was.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidInput`]: a `count` of zero (CPython: "count
    ///   must be a positive integer"), a non-blocking socket (timeout zero;
    ///   CPython: "non-blocking sockets are not supported"), or a `file` that
    ///   is a directory.
    /// - [`ErrorKind::TimedOut`]: the peer took nothing for a whole timeout.
    /// - [`ErrorKind::ConnectionReset`], [`ErrorKind::BrokenPipe`], …: the
    ///   connection failed.
    ///
    /// Every error from the host says how many bytes were sent before it:
    /// [`bytes_sent`](crate::bytes_sent) reads the count, and the message
    /// ends with "after sending N bytes", as for [`sendall`](Socket::sendall).
    pub fn sendfile(&self, file: &File, offset: u64, count: Option<u64>) -> io::Result<u64> {
        self.sendfile_with(file, offset, count, None)
    }

    /// [`sendfile`](Socket::sendfile), with `deadline` bounding the whole
    /// call (Go's `SetWriteDeadline`); the socket's timeout still bounds
    /// each wait. Past the deadline the call fails with
    /// [`ErrorKind::TimedOut`] and says how many bytes were sent, and the
    /// file's position is `offset` plus that count.
    ///
    /// A deadline that has already passed fails at once with
    /// [`ErrorKind::TimedOut`], "timed out after sending 0 bytes", without
    /// asking the host (the file's position is then `offset`).
    pub fn sendfile_until(
        &self,
        file: &File,
        offset: u64,
        count: Option<u64>,
        deadline: Instant,
    ) -> io::Result<u64> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.sendfile_with(file, offset, count, Some(left))
    }

    /// `sendfile` with an optional bound on the whole call.
    fn sendfile_with(
        &self,
        file: &File,
        offset: u64,
        count: Option<u64>,
        total: Option<Duration>,
    ) -> io::Result<u64> {
        let host = self.host()?;
        let total_timeout = match total {
            None => None,
            Some(left) if left.is_zero() => {
                file.set_position(offset);
                return Err(from_transfer(bindings::TransferError {
                    code: bindings::ErrorCode::Timeout,
                    bytes_sent: 0,
                }));
            }
            // Rounded up: a sub-nanosecond rest is still time left, not zero.
            Some(left) => Some(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX).max(1)),
        };
        let result = host.sendfile(file.descriptor(), offset, count, total_timeout);
        let sent = match &result {
            Ok(sent) => *sent,
            Err(err) => err.bytes_sent,
        };
        file.set_position(offset.saturating_add(sent));
        result.map_err(from_transfer)
    }

    /// A buffered file object on the connection; corresponds to Python's
    /// `socket.makefile(mode)` with the default buffer size (8 KiB, Python's
    /// `io.DEFAULT_BUFFER_SIZE`). See
    /// [`makefile_with_buffer`](Socket::makefile_with_buffer).
    pub fn makefile(&self, mode: &str) -> io::Result<SocketFile> {
        self.makefile_with_buffer(mode, crate::makefile::DEFAULT_BUFFER_SIZE)
    }

    /// A file object on the connection, with buffers of `buffering` bytes;
    /// corresponds to Python's `socket.makefile(mode, buffering)`.
    ///
    /// `mode` is made of the characters `r`, `w` and `b`, as in CPython:
    /// `"rb"` gives a readable file ([`Read`], [`BufRead`](std::io::BufRead):
    /// `read_line`, `lines`, `read_until`), `"wb"` a writable one ([`Write`],
    /// with `flush`), `"rwb"` both. Text mode (a mode without `b`, which
    /// CPython wraps in a `TextIOWrapper` with newline translation) is not
    /// supported: it fails with [`ErrorKind::InvalidInput`]; `BufRead`'s
    /// `read_line` and `lines` already decode UTF-8 lines. Any other
    /// character also fails with [`ErrorKind::InvalidInput`].
    ///
    /// `buffering` zero is unbuffered: writes go to the socket at once, and
    /// reads through `BufRead` receive one byte at a time (as CPython's
    /// unbuffered `SocketIO.readline` does).
    ///
    /// The file object shares the connection: reads and writes use the
    /// socket's timeout (as it is when they run), and the connection stays
    /// open while the file object lives, even after this socket is closed.
    /// See [`SocketFile`].
    pub fn makefile_with_buffer(&self, mode: &str, buffering: usize) -> io::Result<SocketFile> {
        let parsed = Mode::parse(mode)?;
        let host = self.host()?;
        Ok(SocketFile::new(host, parsed, buffering))
    }

    /// The address the socket is bound to; corresponds to Python's
    /// `socket.getsockname()`.
    pub fn getsockname(&self) -> io::Result<SocketAddr> {
        self.host()?
            .local_address()
            .map_err(from_code)
            .map(socket_addr_from_wit)
    }

    /// The address of the connected peer; corresponds to Python's
    /// `socket.getpeername()`. Fails with [`ErrorKind::NotConnected`] if
    /// there is none.
    pub fn getpeername(&self) -> io::Result<SocketAddr> {
        self.host()?
            .remote_address()
            .map_err(from_code)
            .map(socket_addr_from_wit)
    }

    /// The socket's address family; corresponds to Python's `socket.family`.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The socket's type; corresponds to Python's `socket.type`.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sets a socket option; corresponds to Python's
    /// `socket.setsockopt(level, optname, value)`.
    pub fn setsockopt(&self, option: SockOpt) -> io::Result<()> {
        let option = option.to_wit();
        self.host()?.set_option(option).map_err(from_code)
    }

    /// Reads a socket option; corresponds to Python's
    /// `socket.getsockopt(level, optname)`.
    pub fn getsockopt(&self, name: SockOptName) -> io::Result<SockOpt> {
        let name = name.to_wit();
        self.host()?
            .get_option(name)
            .map_err(from_code)
            .map(SockOpt::from_wit)
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let closed = !matches!(self.inner.try_borrow().as_deref(), Ok(Some(_)));
        f.debug_struct("Socket")
            .field("family", &self.family)
            .field("kind", &self.kind)
            .field("timeout", &self.timeout.get())
            .field("closed", &closed)
            .finish()
    }
}

/// Reads with [`Socket::recv_into`]; `Ok(0)` is end of stream.
impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf)
    }
}

/// Reads with [`Socket::recv_into`]; `Ok(0)` is end of stream.
impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf)
    }
}

/// Writes with [`Socket::send`]; `write_all` is [`Socket::sendall`], so a
/// failure says how many bytes were sent ([`bytes_sent`](crate::bytes_sent)).
/// `flush` does nothing: the socket has no user-space buffer.
impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.sendall(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// As for `&Socket`.
impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

/// Sets the timeout that new sockets start with, both those from
/// [`Socket::new`] and those from [`Socket::accept`]; corresponds to
/// Python's `socket.setdefaulttimeout(timeout)`. The values mean what they
/// mean for [`Socket::settimeout`]. Initially `None` (blocking).
pub fn setdefaulttimeout(timeout: Option<Duration>) {
    bindings::set_default_timeout(timeout_to_wit(timeout));
}

/// Returns the timeout that new sockets start with; corresponds to Python's
/// `socket.getdefaulttimeout()`.
pub fn getdefaulttimeout() -> Option<Duration> {
    timeout_from_wit(bindings::get_default_timeout())
}

/// The most bytes handed to the host in one `send` or `sendall` call.
/// wasmtime bounds what one host call may copy out of the guest (by default
/// 128 MiB); past that the call traps instead of failing.
pub(crate) const MAX_TRANSFER: usize = 16 << 20;

/// `sendall` of `data` in pieces of [`MAX_TRANSFER`] bytes, each given the
/// time left until `deadline`, if there is one; the error counts the bytes
/// of all pieces.
fn sendall_pieces(
    host: &bindings::Socket,
    data: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    let mut sent: u64 = 0;
    for piece in data.chunks(MAX_TRANSFER) {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(from_transfer(bindings::TransferError {
                    code: bindings::ErrorCode::Timeout,
                    bytes_sent: sent,
                }));
            }
            host.set_timeout(timeout_to_wit(Some(left)));
        }
        host.sendall(piece).map_err(|err| {
            from_transfer(bindings::TransferError {
                code: err.code,
                bytes_sent: sent.saturating_add(err.bytes_sent),
            })
        })?;
        sent = sent.saturating_add(u64::try_from(piece.len()).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// [`Socket::recv_into`] on the host's socket; also the raw reads of
/// [`SocketFile`].
pub(crate) fn recv_into(host: &bindings::Socket, buf: &mut [u8]) -> io::Result<usize> {
    let max_len = u64::try_from(buf.len())
        .unwrap_or(u64::MAX)
        .min(max_recv_size());
    // `max_len` is at most `buf.len()`, so it fits a usize.
    let len = usize::try_from(max_len).map_or(buf.len(), |n| n.min(buf.len()));
    let buf = &mut buf[..len];
    placement::receive_into(buf, || placement::recv_lent(host, max_len)).map_err(|err| match err {
        placement::ReceiveError::Failed(code) => from_code(code),
        placement::ReceiveError::TooLong(len) => io::Error::new(
            ErrorKind::InvalidData,
            format!("the host returned {len} bytes for a receive of at most {max_len}"),
        ),
    })
}

/// [`Socket::send`] on the host's socket; also the raw writes of
/// [`SocketFile`].
pub(crate) fn send(host: &bindings::Socket, data: &[u8]) -> io::Result<usize> {
    let data = data.get(..MAX_TRANSFER).unwrap_or(data);
    let sent = host.send(data).map_err(from_code)?;
    Ok(usize::try_from(sent).unwrap_or(usize::MAX).min(data.len()))
}

/// The largest `recv` the host accepts, asked once.
fn max_recv_size() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(bindings::max_recv_size)
}

fn timeout_to_wit(timeout: Option<Duration>) -> bindings::Timeout {
    match timeout {
        None => bindings::Timeout::Blocking,
        Some(Duration::ZERO) => bindings::Timeout::NonBlocking,
        Some(duration) => {
            bindings::Timeout::After(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
        }
    }
}

fn timeout_from_wit(timeout: bindings::Timeout) -> Option<Duration> {
    match timeout {
        bindings::Timeout::Blocking => None,
        bindings::Timeout::NonBlocking => Some(Duration::ZERO),
        bindings::Timeout::After(nanos) => Some(Duration::from_nanos(nanos)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_trip() {
        for timeout in [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_nanos(1)),
            Some(Duration::from_millis(1500)),
        ] {
            assert_eq!(timeout_from_wit(timeout_to_wit(timeout)), timeout);
        }
        assert!(matches!(
            timeout_to_wit(Some(Duration::ZERO)),
            bindings::Timeout::NonBlocking
        ));
        assert!(matches!(
            timeout_to_wit(Some(Duration::MAX)),
            bindings::Timeout::After(u64::MAX)
        ));
        assert_eq!(
            timeout_from_wit(bindings::Timeout::After(0)),
            Some(Duration::ZERO)
        );
    }
}
