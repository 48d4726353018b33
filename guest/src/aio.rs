//! Async sockets for [wstd](https://docs.rs/wstd)'s executor: Python's
//! `asyncio` socket operations (`loop.sock_recv`, `sock_sendall`,
//! `sock_connect`, `sock_accept`, `sock_sendfile`) for async Rust on
//! `wasm32-wasip2`. Needs the crate feature `async`.
//!
//! An [`AsyncSocket`] is a non-blocking [`Socket`]. Each operation tries the
//! socket first; when it would block, it waits on wstd's reactor, which
//! lets other tasks run meanwhile, until the host reports the socket
//! ready, and tries again. So sockshim sockets, wstd's
//! timers ([`wstd::time`], [`wstd::future::FutureExt::timeout`]), its HTTP
//! client and anything else that waits on a `wasi:io` pollable share one
//! task set under [`wstd::runtime::block_on`]. An [`AsyncSocket`] also
//! implements wstd's [`AsyncRead`] and [`AsyncWrite`], so
//! [`wstd::io::copy`] and other code written against those traits take it.
//!
//! The name follows asyncio's: `aio` is asyncio's socket layer, not a
//! runtime of its own; the executor is wstd's.
//!
//! ```no_run
//! use sockshim::aio;
//! use wstd::future::FutureExt as _;
//! use wstd::time::Duration;
//!
//! wstd::runtime::block_on(async {
//!     let server = aio::create_server("127.0.0.1:0")?;
//!     # if false { return Ok::<(), std::io::Error>(()); }
//!     println!("listening on {}", server.getsockname()?);
//!     loop {
//!         let (conn, peer) = server.accept().await?;
//!         // Each connection is a task of its own.
//!         wstd::runtime::spawn(async move {
//!             let mut buf = vec![0; 4096];
//!             loop {
//!                 // Drop clients that stay silent for ten seconds.
//!                 match conn.recv_into(&mut buf).timeout(Duration::from_secs(10)).await {
//!                     Ok(Ok(0)) | Err(_) => break,
//!                     Ok(Ok(n)) => {
//!                         if conn.sendall(&buf[..n]).await.is_err() {
//!                             break;
//!                         }
//!                     }
//!                     Ok(Err(e)) => {
//!                         eprintln!("{peer}: {e}");
//!                         break;
//!                     }
//!                 }
//!             }
//!         })
//!         .detach();
//!     }
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Pollables across `wasip2` versions
//!
//! wstd 0.6 is built on `wasip2` 1.x, this crate on `wasip2` 2.x: their
//! `Pollable` types differ, though both name the one `wasi:io/poll@0.2.12`
//! import of the component. [`wait`] and [`async_pollable`] hand a
//! pollable from this crate's side to wstd's by its resource handle, which
//! moves ownership without a host call.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;

use wasip2::io::poll::Pollable;
use wstd::io::{AsyncRead, AsyncWrite};
use wstd::runtime::AsyncPollable;

use crate::address::ToAddress;
use crate::error::with_total_sent;
use crate::fs::File;
use crate::readiness::Events;
use crate::socket::{Family, Kind, MAX_TRANSFER, Socket};

mod hub;
use hub::{Direction, Registration};

/// A `wasi:io/poll` pollable of this crate's `wasip2` (such as
/// [`Socket::subscribe`] returns) as wstd's [`AsyncPollable`], registered
/// with the running reactor.
///
/// # Panics
///
/// Outside [`wstd::runtime::block_on`], as [`AsyncPollable::new`] does.
pub fn async_pollable(pollable: Pollable) -> AsyncPollable {
    let handle = pollable.take_handle();
    // SAFETY: `take_handle` gave up `pollable`'s ownership of the handle,
    // which now belongs to the new value alone. Both types are bindings of
    // the same `wasi:io/poll@0.2.12` resource `pollable`: the component has
    // one import of that interface, and one handle table for it.
    let theirs = unsafe { wstd_wasip2::io::poll::Pollable::from_handle(handle) };
    AsyncPollable::new(theirs)
}

/// Waits on wstd's reactor until `pollable` is ready, letting other tasks
/// run meanwhile, then drops it.
///
/// ```no_run
/// use sockshim::Events;
///
/// # async fn f() -> std::io::Result<()> {
/// let sock = sockshim::create_connection("127.0.0.1:8000", None)?;
/// sockshim::aio::wait(sock.subscribe(Events::READABLE)?).await;
/// # Ok(()) }
/// ```
///
/// # Panics
///
/// Outside [`wstd::runtime::block_on`].
pub async fn wait(pollable: Pollable) {
    async_pollable(pollable).wait_for().await
}

/// A non-blocking [`Socket`] whose operations are `async`: see
/// [the module](self). It dereferences to the [`Socket`] for everything
/// that does not wait ([`getsockname`](Socket::getsockname),
/// [`shutdown`](Socket::shutdown), [`setsockopt`](Socket::setsockopt), …).
///
/// Its futures wait only on wstd's reactor: await them inside
/// [`wstd::runtime::block_on`] (they panic elsewhere, as wstd's own do).
/// Dropping a future cancels its operation cleanly: what was sent or
/// received before stays sent or received, and the socket stays usable.
///
/// The first time an operation has to wait, the socket joins the
/// thread's one host selector (edge-triggered, for reading and writing),
/// and wstd waits on that selector's single pollable for every waiting
/// socket, so a wake-up costs the same however many tasks wait and wakes
/// only those whose sockets changed. The selector counts once against the
/// plugin's limit of open sockets; where it cannot be had, an operation
/// waits on the socket's own pollable ([`Socket::subscribe`]) instead.
/// Nothing of wstd's is kept between waits, so a socket moves freely from
/// one `block_on` to the next.
///
/// The socket must stay non-blocking: made blocking again
/// ([`settimeout`](Socket::settimeout)), its operations would block the
/// whole plugin, every task with it.
#[derive(Debug)]
pub struct AsyncSocket {
    // Declared first, so dropped first: the closed socket leaves the hub's
    // selector by itself, and the registration is then just forgotten.
    socket: Socket,
    registration: Registration,
}

/// Connects a new TCP socket to `addr`; asyncio's `sock_connect` on a new
/// socket, as Python's `socket.create_connection(address)` does it: a host
/// name is resolved (on the host, which blocks the plugin meanwhile), and
/// each address is tried in order until one connects; if none does, the
/// error of the last attempt.
///
/// ```no_run
/// use wstd::io::{AsyncRead, AsyncWrite};
///
/// wstd::runtime::block_on(async {
///     let mut sock = sockshim::aio::create_connection("example.com:80").await?;
///     sock.write_all(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n").await?;
///     let mut response = Vec::new();
///     sock.read_to_end(&mut response).await?;
///     println!("{}", String::from_utf8_lossy(&response));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn create_connection(addr: impl ToAddress) -> io::Result<AsyncSocket> {
    let addr = addr.to_address()?;
    let ips = match addr.host().parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => crate::resolve(addr.host())?,
    };
    let mut last_error = None;
    for ip in ips {
        let target = SocketAddr::new(ip, addr.port());
        let attempt = async {
            let sock = AsyncSocket::new(Family::of(ip), Kind::Stream)?;
            sock.connect(target).await?;
            Ok::<_, io::Error>(sock)
        };
        match attempt.await {
            Ok(sock) => return Ok(sock),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            ErrorKind::AddrNotAvailable,
            format!("{} resolves to no address", addr.host()),
        )
    }))
}

/// A listening socket, as [`crate::create_server`] makes it, ready for
/// [`AsyncSocket::accept`].
pub fn create_server(addr: impl ToAddress) -> io::Result<AsyncSocket> {
    AsyncSocket::from_socket(crate::create_server(addr)?)
}

impl AsyncSocket {
    /// A new non-blocking socket; Python's `socket.socket(family, type)`
    /// followed by `setblocking(False)`.
    pub fn new(family: Family, kind: Kind) -> io::Result<AsyncSocket> {
        AsyncSocket::from_socket(Socket::new(family, kind)?)
    }

    /// Makes `socket` non-blocking and async; a connected, listening or
    /// fresh socket alike.
    pub fn from_socket(socket: Socket) -> io::Result<AsyncSocket> {
        socket.setblocking(false)?;
        Ok(AsyncSocket {
            socket,
            registration: Registration::default(),
        })
    }

    /// The socket, for the operations that do not wait (also reached
    /// through `Deref`).
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Closes the socket; Python's `socket.close()`, as [`Socket::close`].
    /// A task waiting on it wakes, and its operation fails with "socket is
    /// closed".
    pub fn close(&self) {
        self.socket.close();
        self.registration.forget();
    }

    /// The socket back, still non-blocking.
    pub fn into_socket(self) -> Socket {
        let AsyncSocket {
            socket,
            registration,
        } = self;
        // Out of the hub's selector before the socket goes its own way.
        drop(registration);
        socket
    }

    /// Waits until the socket is ready for any of `interest`, or has an
    /// error or a hang-up to report.
    pub async fn ready(&self, interest: Events) -> io::Result<()> {
        wait(self.socket.subscribe(interest)?).await;
        Ok(())
    }

    /// Waits until a receive or an accept would not block (or the peer
    /// closed its side, or an error is pending).
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(Events::READABLE).await
    }

    /// Waits until a send would take a byte (or a connect has ended, or an
    /// error is pending).
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(Events::WRITABLE).await
    }

    /// Runs `op` until it does not fail with `WouldBlock`, waiting for
    /// `direction` in between. A result for which `uses_up` is true on a
    /// stream (a short receive or send) used up what the hub reported, and
    /// the next operation that way waits for its next report before it
    /// tries ([`Registration::use_up`]).
    async fn retry<R>(
        &self,
        direction: Direction,
        mut op: impl FnMut(&Socket) -> io::Result<R>,
        uses_up: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let mut own = None;
        let mut try_now = !self.registration.used_up(direction);
        loop {
            if try_now {
                match op(&self.socket) {
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                    Ok(done) => {
                        if self.socket.kind() == Kind::Stream && uses_up(&done) {
                            self.registration.use_up(direction);
                        }
                        return Ok(done);
                    }
                    Err(err) => return Err(err),
                }
            }
            try_now = true;
            self.wait_after_would_block(direction, &mut own).await?;
        }
    }

    /// Waits, after an operation failed with `WouldBlock`, until the socket
    /// may be ready for `direction` again: through the thread's hub (one
    /// host selector whose single pollable wstd waits on, however many
    /// sockets wait), or, where the hub cannot take the socket, on the
    /// socket's own pollable, made once into `own` and kept for the
    /// operation's later waits.
    async fn wait_after_would_block(
        &self,
        direction: Direction,
        own: &mut Option<AsyncPollable>,
    ) -> io::Result<()> {
        if own.is_none()
            && let Some(edge) = self.registration.wait(&self.socket, direction)
        {
            edge.await;
            return Ok(());
        }
        let pollable = match own {
            Some(pollable) => pollable,
            None => own.insert(async_pollable(self.socket.subscribe(direction.interest())?)),
        };
        pollable.wait_for().await;
        Ok(())
    }

    /// Connects to `addr`; asyncio's `loop.sock_connect(sock, address)`.
    ///
    /// The connect starts at once ([`Socket::connect_ex`]); unless it
    /// completes at once, this waits until the socket is writable and then
    /// reads the outcome with [`Socket::take_error`], e.g.
    /// [`ErrorKind::ConnectionRefused`]. Nothing bounds the wait but the
    /// kernel's own connect timeout: bound it with
    /// [`FutureExt::timeout`](wstd::future::FutureExt::timeout).
    pub async fn connect(&self, addr: impl ToAddress) -> io::Result<()> {
        if self.socket.start_connect(addr)? {
            return Ok(());
        }
        self.writable().await?;
        match self.socket.take_error()? {
            None => Ok(()),
            Some(err) => Err(err),
        }
    }

    /// Accepts a connection; asyncio's `loop.sock_accept(sock)`. The new
    /// socket is non-blocking too.
    pub async fn accept(&self) -> io::Result<(AsyncSocket, SocketAddr)> {
        let (socket, peer) = self
            .retry(Direction::Read, Socket::accept, |_| false)
            .await?;
        Ok((AsyncSocket::from_socket(socket)?, peer))
    }

    /// Receives up to `bufsize` bytes, empty at the end of the stream;
    /// asyncio's `loop.sock_recv(sock, nbytes)`. See [`Socket::recv`].
    pub async fn recv(&self, bufsize: usize) -> io::Result<Vec<u8>> {
        let asked = bufsize.min(MAX_TRANSFER);
        self.retry(
            Direction::Read,
            |sock| sock.recv(bufsize),
            |got| short(got.len(), asked),
        )
        .await
    }

    /// Receives into `buf` and returns how many bytes arrived, 0 at the end
    /// of the stream; asyncio's `loop.sock_recv_into(sock, buf)`. See
    /// [`Socket::recv_into`].
    pub async fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        let asked = buf.len().min(MAX_TRANSFER);
        self.retry(
            Direction::Read,
            |sock| sock.recv_into(buf),
            |&got| short(got, asked),
        )
        .await
    }

    /// Sends as much of `data` as the socket takes once it takes a byte,
    /// and returns how many bytes it took; Python's `send` on a socket that
    /// waits. See [`Socket::send`].
    pub async fn send(&self, data: &[u8]) -> io::Result<usize> {
        let asked = data.len().min(MAX_TRANSFER);
        self.retry(
            Direction::Write,
            |sock| sock.send(data),
            |&sent| short(sent, asked),
        )
        .await
    }

    /// Sends all of `data`; asyncio's `loop.sock_sendall(sock, data)`.
    ///
    /// On failure the error says how many bytes were sent in all before it
    /// ([`bytes_sent`](crate::bytes_sent)). Dropping the future stops the
    /// transfer between two sends.
    pub async fn sendall(&self, data: &[u8]) -> io::Result<()> {
        let mut sent = 0;
        let mut own = None;
        while sent < data.len() {
            match self.socket.sendall(&data[sent..]) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    let now = crate::bytes_sent(&err).unwrap_or(0);
                    sent += usize::try_from(now).unwrap_or(usize::MAX);
                }
                Err(err) => {
                    let now = crate::bytes_sent(&err).unwrap_or(0);
                    let total = u64::try_from(sent).unwrap_or(u64::MAX).saturating_add(now);
                    return Err(with_total_sent(err, total));
                }
            }
            if sent >= data.len() {
                break;
            }
            if let Err(err) = self
                .wait_after_would_block(Direction::Write, &mut own)
                .await
            {
                return Err(with_total_sent(
                    err,
                    u64::try_from(sent).unwrap_or(u64::MAX),
                ));
            }
        }
        Ok(())
    }

    /// Sends `count` bytes of `file` from `offset` (to the end of the file
    /// when `None`) and returns how many were sent; asyncio's
    /// `loop.sock_sendfile(sock, file, offset, count)`. The bytes go from
    /// the file to the socket inside the host ([`Socket::sendfile_once`],
    /// sendfile(2)), never through the plugin's memory; fewer than `count`
    /// are sent only when the file ends first.
    ///
    /// Afterwards, whether it succeeded or failed, the file's
    /// [position](File::position) is `offset` plus the bytes sent, as
    /// asyncio leaves it. A `count` of zero is
    /// [`ErrorKind::InvalidInput`] (asyncio: "count must be a positive
    /// integer"). On failure the error says how many bytes were sent
    /// ([`bytes_sent`](crate::bytes_sent)).
    ///
    /// ```no_run
    /// # async fn f(conn: sockshim::aio::AsyncSocket) -> std::io::Result<()> {
    /// let file = sockshim::fs::File::open("/site/index.html")?;
    /// let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", file.len()?);
    /// conn.sendall(head.as_bytes()).await?;
    /// conn.sendfile(&file, 0, None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn sendfile(&self, file: &File, offset: u64, count: Option<u64>) -> io::Result<u64> {
        let wanted = match count {
            Some(0) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    "count must be a positive integer",
                ));
            }
            Some(count) => count,
            None => file.len()?.saturating_sub(offset),
        };
        let mut sent: u64 = 0;
        let mut own = None;
        let result = loop {
            if sent >= wanted {
                break Ok(sent);
            }
            match self
                .socket
                .sendfile_once(file, offset.saturating_add(sent), wanted - sent)
            {
                // The end of the file.
                Ok(0) => break Ok(sent),
                Ok(n) => {
                    sent = sent.saturating_add(n);
                    continue;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => break Err(with_total_sent(err, sent)),
            }
            if let Err(err) = self
                .wait_after_would_block(Direction::Write, &mut own)
                .await
            {
                break Err(with_total_sent(err, sent));
            }
        };
        file.set_position(offset.saturating_add(sent));
        result
    }
}

/// Whether a transfer of `done` bytes of the `asked` the host was asked
/// for came back short: more than none (none is the end of the stream),
/// fewer than asked.
fn short(done: usize, asked: usize) -> bool {
    done > 0 && done < asked
}

impl Deref for AsyncSocket {
    type Target = Socket;

    fn deref(&self) -> &Socket {
        &self.socket
    }
}

/// Reads with [`AsyncSocket::recv_into`]; `Ok(0)` is end of stream.
impl AsyncRead for AsyncSocket {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf).await
    }
}

/// Reads with [`AsyncSocket::recv_into`]; `Ok(0)` is end of stream.
impl AsyncRead for &AsyncSocket {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf).await
    }
}

/// Writes with [`AsyncSocket::send`]; `write_all` is
/// [`AsyncSocket::sendall`]. `flush` does nothing: the socket has no
/// user-space buffer.
impl AsyncWrite for AsyncSocket {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.sendall(buf).await
    }
}

/// As for `AsyncSocket`.
impl AsyncWrite for &AsyncSocket {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.sendall(buf).await
    }
}
