//! The native side of a plugin's socket: a non-blocking socket2 socket on
//! tokio's reactor and the operations of the contract, each through
//! [`sock_call`]. Nothing here knows about resource tables or policy names;
//! addresses arrive resolved and checked.

use crate::bindings::{AddressFamily, ErrorCode, OptionName, SocketOption, TransferError};
use crate::deadline::{Deadline, Timeout, sock_call};
use crate::sys::{self, SocketIo};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;
use tokio::io::Interest;

/// The largest `max-len` one `recv` accepts, and so the most one call makes
/// the host allocate: 16 MiB.
pub const MAX_RECV_SIZE: u64 = 16 << 20;

/// A plugin's TCP socket.
pub struct TcpSocket {
    io: SocketIo,
    family: AddressFamily,
    timeout: Timeout,
    /// `SO_LINGER` with a non-zero time makes close(2) block, even on a
    /// non-blocking socket; such a socket is closed on tokio's blocking pool.
    lingers: bool,
}

impl TcpSocket {
    /// A new stream socket of `family`, with `timeout`.
    pub fn new(family: AddressFamily, timeout: Timeout) -> io::Result<TcpSocket> {
        let domain = match family {
            AddressFamily::Ipv4 => Domain::IPV4,
            AddressFamily::Ipv6 => Domain::IPV6,
        };
        let sock = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
        TcpSocket::from_socket(sock, family, timeout)
    }

    fn from_socket(sock: Socket, family: AddressFamily, timeout: Timeout) -> io::Result<TcpSocket> {
        sock.set_nonblocking(true)?;
        Ok(TcpSocket {
            io: SocketIo::new(sock),
            family,
            timeout,
            lingers: false,
        })
    }

    /// The socket's address family.
    pub fn family(&self) -> AddressFamily {
        self.family
    }

    /// The socket's timeout.
    pub fn timeout(&self) -> Timeout {
        self.timeout
    }

    /// Sets the socket's timeout.
    pub fn set_timeout(&mut self, timeout: Timeout) {
        self.timeout = timeout;
    }

    /// The deadline of an operation starting now.
    pub fn deadline(&self) -> Deadline {
        self.timeout.deadline()
    }

    /// connect(2), bounded by `deadline` as CPython's `internal_connect`: a
    /// non-blocking connect, then a wait for writability, then `SO_ERROR`.
    pub async fn connect(&mut self, addr: SocketAddr, deadline: Deadline) -> Result<(), ErrorCode> {
        // What a failed earlier connect left in tokio's readiness must not
        // wake this one.
        self.io.forget_registration();
        match self.io.socket().connect(&SockAddr::from(addr)) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            // EINTR: the connection goes on in the background, as EINPROGRESS.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        sock_call(&self.io, Interest::WRITABLE, deadline, |s| {
            if let Some(err) = s.take_error()? {
                return Err(err);
            }
            match s.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// bind(2).
    pub fn bind(&self, addr: SocketAddr) -> Result<(), ErrorCode> {
        Ok(self.io.socket().bind(&SockAddr::from(addr))?)
    }

    /// Has the socket a local address yet (bound explicitly or by connect)?
    pub fn is_bound(&self) -> bool {
        self.local_address().is_ok_and(|a| a.port() != 0)
    }

    /// listen(2); the backlog is clamped to what the kernel takes.
    pub fn listen(&self, backlog: u32) -> Result<(), ErrorCode> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        Ok(self.io.socket().listen(backlog)?)
    }

    /// accept(2); the new socket starts with `timeout`.
    pub async fn accept(&self, timeout: Timeout) -> Result<(TcpSocket, SocketAddr), ErrorCode> {
        let (sock, peer) = sock_call(&self.io, Interest::READABLE, self.deadline(), |s| {
            s.accept()
        })
        .await?;
        let peer = peer
            .as_socket()
            .ok_or_else(|| ErrorCode::invalid("accepted a connection without an IP address"))?;
        let sock = TcpSocket::from_socket(sock, self.family, timeout)?;
        Ok((sock, peer))
    }

    /// recv(2) of at most `max_len` bytes. Zero returns empty at once,
    /// without a system call.
    pub async fn recv(&self, max_len: u64) -> Result<Vec<u8>, ErrorCode> {
        if max_len == 0 {
            return Ok(Vec::new());
        }
        if max_len > MAX_RECV_SIZE {
            return Err(ErrorCode::invalid(format!(
                "recv size {max_len} exceeds the maximum of {MAX_RECV_SIZE} bytes per call"
            )));
        }
        // At most MAX_RECV_SIZE; not zeroed, only what arrives is written.
        let mut buf = Vec::with_capacity(max_len as usize);
        sock_call(&self.io, Interest::READABLE, self.deadline(), |s| {
            sys::recv_to_spare(s, &mut buf)
        })
        .await?;
        Ok(buf)
    }

    /// One send(2) of as much of `data` as the socket takes.
    pub async fn send(&self, data: &[u8]) -> Result<usize, ErrorCode> {
        sock_call(&self.io, Interest::WRITABLE, self.deadline(), |s| {
            sys::send(s, data)
        })
        .await
    }

    /// send(2) until all of `data` went, under one deadline for the whole
    /// call; on failure says how much went.
    pub async fn sendall(&self, data: &[u8]) -> Result<(), TransferError> {
        let deadline = self.deadline();
        let mut sent = 0;
        while sent < data.len() {
            match sock_call(&self.io, Interest::WRITABLE, deadline, |s| {
                sys::send(s, &data[sent..])
            })
            .await
            {
                Ok(n) => sent += n,
                Err(code) => return Err(TransferError::new(code, sent)),
            }
        }
        Ok(())
    }

    /// shutdown(2).
    pub fn shutdown(&self, how: Shutdown) -> Result<(), ErrorCode> {
        Ok(self.io.socket().shutdown(how)?)
    }

    /// getsockname(2).
    pub fn local_address(&self) -> Result<SocketAddr, ErrorCode> {
        socket_addr(self.io.socket().local_addr()?)
    }

    /// getpeername(2).
    pub fn remote_address(&self) -> Result<SocketAddr, ErrorCode> {
        socket_addr(self.io.socket().peer_addr()?)
    }

    /// setsockopt(2).
    pub fn set_option(&mut self, option: SocketOption) -> Result<(), ErrorCode> {
        let s = self.io.socket();
        match option {
            SocketOption::ReuseAddress(on) => s.set_reuse_address(on)?,
            SocketOption::TcpNodelay(on) => s.set_tcp_nodelay(on)?,
            SocketOption::KeepAlive(on) => s.set_keepalive(on)?,
            SocketOption::ReceiveBufferSize(size) => s.set_recv_buffer_size(buffer_size(size)?)?,
            SocketOption::SendBufferSize(size) => s.set_send_buffer_size(buffer_size(size)?)?,
            SocketOption::Linger(secs) => {
                s.set_linger(secs.map(|secs| Duration::from_secs(secs.into())))?;
                self.lingers = secs.is_some_and(|secs| secs > 0);
            }
        }
        Ok(())
    }

    /// getsockopt(2).
    pub fn get_option(&self, name: OptionName) -> Result<SocketOption, ErrorCode> {
        let s = self.io.socket();
        Ok(match name {
            OptionName::ReuseAddress => SocketOption::ReuseAddress(s.reuse_address()?),
            OptionName::TcpNodelay => SocketOption::TcpNodelay(s.tcp_nodelay()?),
            OptionName::KeepAlive => SocketOption::KeepAlive(s.keepalive()?),
            OptionName::ReceiveBufferSize => {
                SocketOption::ReceiveBufferSize(s.recv_buffer_size()? as u64)
            }
            OptionName::SendBufferSize => {
                SocketOption::SendBufferSize(s.send_buffer_size()? as u64)
            }
            OptionName::Linger => SocketOption::Linger(
                s.linger()?
                    .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            ),
        })
    }

    /// Closes the socket without blocking the calling thread, even when
    /// `SO_LINGER` makes close(2) wait for unsent data.
    pub fn close(self) {
        if !self.lingers {
            return; // dropping `fd` deregisters and closes it
        }
        let sock = self.io.into_socket();
        tokio::task::spawn_blocking(move || drop(sock));
    }
}

/// Buffer sizes are C ints in the kernel.
fn buffer_size(size: u64) -> Result<usize, ErrorCode> {
    if size > i32::MAX as u64 {
        return Err(ErrorCode::invalid(format!(
            "buffer size {size} exceeds the maximum of {}",
            i32::MAX
        )));
    }
    Ok(size as usize)
}

fn socket_addr(addr: SockAddr) -> Result<SocketAddr, ErrorCode> {
    addr.as_socket()
        .ok_or_else(|| ErrorCode::invalid("the socket has no IP address"))
}
