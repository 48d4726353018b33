//! CPython's `socket` API for `wasm32-wasip2` plugins.
//!
//! A sockshim host (a wasmtime embedding) implements real TCP sockets on
//! native OS sockets, within its network policy, and exposes them through
//! the `sockshim:socket/socket@0.1.0` WIT interface, and UDP datagram
//! sockets under the same policy. This crate is a thin, idiomatic layer
//! over that interface: Python's names, Rust's types.
//!
//! | Python                              | sockshim                              |
//! |-------------------------------------|---------------------------------------|
//! | `socket.socket(AF_INET, SOCK_STREAM)` | [`Socket::new`]`(Family::Ipv4, Kind::Stream)` |
//! | `socket.socket(AF_INET, SOCK_DGRAM)` | [`Socket::new`]`(Family::Ipv4, Kind::Datagram)` |
//! | `sock.sendto(data, addr)`           | [`Socket::sendto`]`(data, addr)`      |
//! | `sock.recvfrom(n)` / `recvfrom_into(buf)` | [`Socket::recvfrom`]`(n)` / [`Socket::recvfrom_into`]`(buf)` |
//! | `socket.create_connection(addr, t)` | [`create_connection`]`(addr, t)`      |
//! | `socket.create_server(addr)`        | [`create_server`]`(addr)`             |
//! | `socket.getaddrinfo(host, ...)`     | [`resolve`]`(host)`                   |
//! | `socket.setdefaulttimeout(t)`       | [`setdefaulttimeout`]`(t)`            |
//! | `sock.sendfile(open(p, "rb"), o, n)` | [`Socket::sendfile`]`(&`[`fs::File::open`]`(p)?, o, n)` |
//! | `sock.makefile("rb")`               | [`Socket::makefile`]`("rb")`, a [`SocketFile`] |
//! | `sock.fileno()`                     | [`Socket::fileno`]`()`                |
//! | `sock.connect_ex(addr)`             | [`Socket::connect_ex`]`(addr)`, an [`errno`] value |
//! | `sock.getsockopt(SOL_SOCKET, SO_ERROR)` | [`Socket::take_error`]`()`        |
//! | `os.sendfile(sock.fileno(), f.fileno(), o, n)` | [`Socket::sendfile_once`]`(&f, o, n)` |
//! | `select.select(r, w, x, t)`         | [`select()`]`(&r, &w, &x, t)`         |
//! | `select.poll()` … `.poll(t)`        | [`poll()`]`(&[(&sock, Events::READABLE)], t)` |
//! | `select.POLLIN`, `POLLOUT`, …       | [`Events::READABLE`], [`Events::WRITABLE`], … |
//! | `selectors.DefaultSelector()`       | [`selectors::DefaultSelector::new`]`()` |
//! | `loop.sock_recv(sock, n)` (asyncio) | `aio::AsyncSocket::recv(n).await` (feature `async`, on wstd) |
//! | —                                   | [`Socket::subscribe`]`(events)`, a `wasi:io/poll` pollable |
//! | `errno.EINPROGRESS`                 | [`errno::EINPROGRESS`]                |
//! | `OSError` subclasses                | [`std::io::Error`] with the matching [`std::io::ErrorKind`] |
//!
//! Addresses are anything that implements [`ToAddress`]: `("host", port)`,
//! a [`std::net::SocketAddr`], or a `"host:port"` string. Timeouts are
//! `Option<Duration>`: `None` blocks, `Some(Duration::ZERO)` is
//! non-blocking, anything else is a timeout; [`create_connection`]'s `None`
//! is CPython's omitted argument, the [default timeout](getdefaulttimeout).
//!
//! ```no_run
//! use std::io::{Read, Write};
//!
//! let server = sockshim::create_server("127.0.0.1:0")?;
//! println!("listening on {}", server.getsockname()?);
//! let (conn, peer) = server.accept()?;
//! println!("connection from {peer}");
//! let mut buf = [0; 4096];
//! loop {
//!     let n = (&conn).read(&mut buf)?;
//!     if n == 0 {
//!         break; // the peer closed its side
//!     }
//!     (&conn).write_all(&buf[..n])?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Errors
//!
//! Every failure is an [`std::io::Error`] whose [`ErrorKind`] matches the
//! exception CPython raises for the same condition:
//!
//! | Condition (WIT `error-code`)     | [`ErrorKind`]        | Python exception         |
//! |----------------------------------|----------------------|--------------------------|
//! | `timeout`                        | `TimedOut`, message "timed out" | `TimeoutError`  |
//! | `would-block`                    | `WouldBlock`         | `BlockingIOError`        |
//! | `connection-refused`             | `ConnectionRefused`  | `ConnectionRefusedError` |
//! | `connection-reset`               | `ConnectionReset`    | `ConnectionResetError`   |
//! | `connection-aborted`             | `ConnectionAborted`  | `ConnectionAbortedError` |
//! | `broken-pipe`                    | `BrokenPipe`         | `BrokenPipeError`        |
//! | `not-connected`                  | `NotConnected`       | `OSError` (`ENOTCONN`)   |
//! | `address-in-use`                 | `AddrInUse`          | `OSError` (`EADDRINUSE`) |
//! | `address-not-available`          | `AddrNotAvailable`   | `OSError` (`EADDRNOTAVAIL`) |
//! | a name that did not resolve      | `AddrNotAvailable`, message "the name `…` did not resolve to …", [`gai_errno`] `EAI_NONAME` | `socket.gaierror` (`EAI_NONAME`) |
//! | `temporary-lookup-failure`       | `Other`, message "temporary failure in name resolution …", [`gai_errno`] `EAI_AGAIN` | `socket.gaierror` (`EAI_AGAIN`) |
//! | `access-denied` (host policy)    | `PermissionDenied`, message "access denied: …" | `PermissionError` |
//! | `invalid-argument`               | `InvalidInput`, message "invalid argument: …" | `ValueError` / `OSError` (`EINVAL`) |
//! | `limit-reached` (sockets per plugin) | `EMFILE` (WASI 33), "No file descriptors available" | `OSError` (`EMFILE`) |
//! | `os(errno)`, anything else       | from the errno       | `OSError`                |
//! | the socket was closed            | `EBADF` (WASI 8), "Bad file descriptor" | `OSError` (`EBADF`) |
//!
//! On `wasm32-wasip2`, the errors from `would-block` to
//! `address-not-available`, `limit-reached` and a closed socket's also
//! carry their WASI errno ([`std::io::Error::raw_os_error`]), as `os(errno)`
//! errors do; for the last two, as for CPython's plain `OSError`, the kind
//! is none of the named ones, so match on `raw_os_error()`. WASI numbers
//! errno values its own way (wasi-libc's `errno.h`: `EBADF` is 8,
//! `ECONNREFUSED` 14, `EMFILE` 33), so a message reads "Connection refused
//! (os error 14)" where Linux would say 111.
//!
//! # How much one receive takes
//!
//! The host moves at most 16 MiB per receive. [`Socket::recv`]`(n)` with
//! `n` above that is an `InvalidInput` error, since it cannot return what
//! it promises to wait for; [`Socket::recv_into`] with a larger buffer
//! reads at most 16 MiB and returns the count, as any short read does. Errors from
//! [`Socket::sendall`] also say how many bytes were sent: see
//! [`PartialTransfer`] and [`bytes_sent`].
//!
//! [`ErrorKind`]: std::io::ErrorKind
//!
//! A connect on a non-blocking socket that goes on in the background
//! (`in-progress`) fails with kind `WouldBlock`, as CPython raises
//! `BlockingIOError`; its errno, `EINPROGRESS`, is on the inner error
//! (see [`Socket::connect`]), and [`Socket::connect_ex`] returns it.
//!
//! # Many connections at once
//!
//! One plugin serves many sockets from one thread by waiting for whichever
//! is ready, as Python programs do:
//!
//! - [`select()`] and [`poll()`]: Python's `select.select` and `select.poll`,
//!   one host call over a list of sockets;
//! - [`selectors::DefaultSelector`]: Python's `selectors`, a set kept on
//!   the host (epoll), for servers with many connections;
//! - [`Socket::subscribe`]: a `wasi:io/poll` pollable, to wait on sockshim
//!   sockets together with wasi clocks, streams and sockets in one
//!   `wasi:io/poll.poll`;
//! - `aio` (crate feature `async`): async sockets on
//!   [wstd](https://docs.rs/wstd)'s executor, asyncio's socket operations,
//!   mixing with wstd's timers and HTTP client.
//!
//! Sockets used this way are usually non-blocking
//! ([`Socket::setblocking`]`(false)`): [`Socket::connect_ex`] then returns
//! [`errno::EINPROGRESS`], the socket turns writable when the connect ends
//! and [`Socket::take_error`] says how, and [`Socket::sendfile_once`] sends
//! what the socket takes now from a file.
//!
//! # Targets
//!
//! Plugins are built for `wasm32-wasip2` and run by a sockshim host. The
//! crate also compiles for other targets (so that a workspace builds), but
//! there every call into the host panics.

#![deny(missing_docs)]

mod address;
#[cfg(feature = "async")]
pub mod aio;
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings;
mod create;
pub mod errno;
mod error;
pub mod fs;
mod makefile;
mod options;
mod placement;
mod readiness;
pub mod selectors;
mod socket;

pub use address::{Address, ToAddress};
pub use create::{DEFAULT_BACKLOG, create_connection, create_server, create_server_with, resolve};
pub use error::{PartialTransfer, bytes_sent, gai_errno};
pub use makefile::{DEFAULT_BUFFER_SIZE, SocketFile};
pub use options::{SockOpt, SockOptName};
pub use placement::receives_in_place;
pub use readiness::{Events, poll, select};
pub use socket::{Family, Kind, Socket, getdefaulttimeout, setdefaulttimeout};
/// The `wasip2` crate this crate's types come from ([`fs::File::descriptor`],
/// [`Socket::subscribe`]'s pollable): use it to wait on those pollables
/// with `wasi:io/poll` directly.
#[doc(no_inline)]
pub use wasip2;
