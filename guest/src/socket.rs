//! The [`Socket`] type and per-process socket defaults.

use std::cell::{Cell, Ref, RefCell};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::address::{ToAddress, socket_addr_from_wit};
use crate::bindings;
use crate::error::{closed, from_code, from_transfer};
use crate::options::{SockOpt, SockOptName};

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
    /// A UDP socket, `SOCK_DGRAM`. Not implemented by this version of the
    /// host: [`Socket::new`] fails with [`ErrorKind::InvalidInput`].
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
/// socket fails with an error of kind [`ErrorKind::Other`] and message
/// "socket is closed" (where Python raises `OSError` `EBADF`). Dropping a
/// socket closes it.
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
    /// The host's socket; `None` once closed.
    inner: RefCell<Option<bindings::Socket>>,
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
    /// Fails with [`ErrorKind::QuotaExceeded`] when the plugin already has
    /// as many sockets open as the host allows, and with
    /// [`ErrorKind::InvalidInput`] for [`Kind::Datagram`].
    pub fn new(family: Family, kind: Kind) -> io::Result<Socket> {
        let inner = bindings::Socket::create(family.to_wit(), kind.to_wit()).map_err(from_code)?;
        Ok(Socket::from_host(inner, family, kind))
    }

    fn from_host(inner: bindings::Socket, family: Family, kind: Kind) -> Socket {
        let timeout = timeout_from_wit(inner.get_timeout());
        Socket {
            inner: RefCell::new(Some(inner)),
            family,
            kind,
            timeout: Cell::new(timeout),
        }
    }

    /// The host's socket, or the "socket is closed" error.
    fn host(&self) -> io::Result<Ref<'_, bindings::Socket>> {
        let inner = self.inner.try_borrow().map_err(|_| closed())?;
        Ref::filter_map(inner, Option::as_ref).map_err(|_| closed())
    }

    /// Connects to a remote address; corresponds to Python's
    /// `socket.connect((host, port))`.
    ///
    /// A host name is resolved by the host, which uses the first address of
    /// this socket's family that its policy allows. The timeout bounds the
    /// whole connect. An address the policy does not allow fails with
    /// [`ErrorKind::PermissionDenied`].
    pub fn connect(&self, addr: impl ToAddress) -> io::Result<()> {
        let addr = addr.to_address()?;
        self.host()?
            .connect(addr.host(), addr.port())
            .map_err(from_code)
    }

    /// Binds the socket to a local address; corresponds to Python's
    /// `socket.bind((host, port))`. An empty host means every local address,
    /// port zero an ephemeral port (see [`getsockname`](Socket::getsockname)).
    pub fn bind(&self, addr: impl ToAddress) -> io::Result<()> {
        let addr = addr.to_address()?;
        self.host()?
            .bind(addr.host(), addr.port())
            .map_err(from_code)
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
    /// [`ErrorKind::InvalidInput`]; the host allocates at most what arrived.
    pub fn recv(&self, bufsize: usize) -> io::Result<Vec<u8>> {
        let max_len = u64::try_from(bufsize).unwrap_or(u64::MAX);
        self.host()?.recv(max_len).map_err(from_code)
    }

    /// Receives up to `buf.len()` bytes into `buf` and returns how many were
    /// received, zero at end of stream; corresponds to Python's
    /// `socket.recv_into(buffer)`. A buffer larger than the host's maximum
    /// per call receives at most that maximum.
    pub fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        let max_len = u64::try_from(buf.len())
            .unwrap_or(u64::MAX)
            .min(max_recv_size());
        let data = self.host()?.recv(max_len).map_err(from_code)?;
        let target = buf.get_mut(..data.len()).ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidData,
                "the host returned more bytes than requested",
            )
        })?;
        target.copy_from_slice(&data);
        Ok(data.len())
    }

    /// Sends as much of `data` as the socket takes at once, after waiting
    /// (within the timeout) until it takes at least one byte; returns how
    /// many bytes were sent, which may be fewer than `data.len()`;
    /// corresponds to Python's `socket.send(bytes)`.
    ///
    /// At most 16 MiB are handed to the host per call.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        let data = data.get(..MAX_TRANSFER).unwrap_or(data);
        let sent = self.host()?.send(data).map_err(from_code)?;
        Ok(usize::try_from(sent).unwrap_or(usize::MAX).min(data.len()))
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
    /// talks to the socket, through any reference, fails with an error of
    /// kind [`ErrorKind::Other`] and message "socket is closed".
    /// [`family`](Socket::family), [`kind`](Socket::kind),
    /// [`gettimeout`](Socket::gettimeout) and
    /// [`getblocking`](Socket::getblocking) keep working.
    pub fn close(&self) {
        // Other methods borrow the host's socket only for the duration of a
        // host call, which cannot overlap `close` on this single-threaded
        // type; the check merely avoids a panic path.
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            drop(inner.take());
        }
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
const MAX_TRANSFER: usize = 16 << 20;

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
