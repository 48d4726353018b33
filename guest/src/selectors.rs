//! High-level waiting on many sockets: Python's `selectors` module.
//!
//! A [`DefaultSelector`] keeps a set of registered sockets on the host (an
//! epoll(7) instance, Python's `EpollSelector`, the `DefaultSelector` on
//! Linux), each with the events it waits for and a value of the plugin's
//! choosing, and [`select`](DefaultSelector::select) returns those that are
//! ready. A wait costs the same whatever the number of registered sockets;
//! only the ready ones come back. Readiness is level-triggered: a socket
//! that stays ready is reported by every wait.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use sockshim::Socket;
//! use sockshim::selectors::{DefaultSelector, EVENT_READ};
//!
//! #[derive(Clone)]
//! enum Role {
//!     Listener,
//!     Client,
//! }
//!
//! let server = sockshim::create_server("127.0.0.1:0")?;
//! server.setblocking(false)?;
//! println!("listening on {}", server.getsockname()?);
//! let mut selector = DefaultSelector::new()?;
//! selector.register(&server, EVENT_READ, Role::Listener)?;
//! let mut clients: HashMap<u32, Socket> = HashMap::new();
//! loop {
//!     for (key, _events) in selector.select(None)? {
//!         match key.data {
//!             Role::Listener => {
//!                 let (conn, _) = server.accept()?;
//!                 conn.setblocking(false)?;
//!                 selector.register(&conn, EVENT_READ, Role::Client)?;
//!                 clients.insert(conn.fileno(), conn);
//!             }
//!             Role::Client => {
//!                 let conn = &clients[&key.fd];
//!                 let data = conn.recv(4096)?;
//!                 if data.is_empty() {
//!                     selector.unregister(conn)?;
//!                     clients.remove(&key.fd);
//!                 } else {
//!                     conn.sendall(&data)?; // a real server would buffer
//!                 }
//!             }
//!         }
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! (`select` returns copies of the keys, hence `Clone`, so that the
//! selector can be changed while they are handled.)

use std::io::{self, ErrorKind};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The map [`DefaultSelector::get_map`] returns: a
/// [`HashMap`](std::collections::HashMap) with `rustc_hash`'s hasher, since
/// its keys are the plugin's own socket numbers.
pub use rustc_hash::FxHashMap;

use wasip2::io::poll::Pollable;

use crate::bindings;
use crate::error::from_code;
use crate::readiness::{Events, timeout_nanos};
use crate::socket::Socket;

/// Waiting to read: Python's `selectors.EVENT_READ`, the same as
/// [`Events::READABLE`].
pub const EVENT_READ: Events = Events::READABLE;

/// Waiting to write: Python's `selectors.EVENT_WRITE`, the same as
/// [`Events::WRITABLE`].
pub const EVENT_WRITE: Events = Events::WRITABLE;

/// A registration: the socket's number, the events waited for and the
/// plugin's value; Python's `selectors.SelectorKey` (without `fileobj`: the
/// socket stays the plugin's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorKey<T> {
    /// The socket's [`fileno`](Socket::fileno).
    pub fd: u32,
    /// What is waited for: [`EVENT_READ`], [`EVENT_WRITE`] or both.
    pub events: Events,
    /// The value given to [`register`](DefaultSelector::register) or
    /// [`modify`](DefaultSelector::modify).
    pub data: T,
}

/// What the selector knows of a registration besides its key.
#[derive(Debug)]
struct Registration {
    /// The number the host reports it under.
    host_key: u64,
    /// The registered socket, to tell it from a later socket that got the
    /// same number after it was dropped.
    socket: Weak<bindings::Socket>,
}

/// Python's `selectors.DefaultSelector` (an `EpollSelector`), over the
/// host's `selector`: see [the module](self).
///
/// Sockets are registered by reference and stay the plugin's: the selector
/// keeps no socket open. A socket dropped (or closed) while registered
/// leaves the host's set, and its key is reported no more; its key stays in
/// [`get_map`](DefaultSelector::get_map) until
/// [`unregister_fd`](DefaultSelector::unregister_fd) removes it, or a new
/// socket with the same number is registered, which replaces it.
pub struct DefaultSelector<T> {
    host: bindings::Selector,
    keys: FxHashMap<u32, SelectorKey<T>>,
    registrations: FxHashMap<u32, Registration>,
    /// Host key to socket number.
    fds: FxHashMap<u64, u32>,
    next_key: u64,
}

impl<T> DefaultSelector<T> {
    /// A new, empty selector; Python's `selectors.DefaultSelector()`.
    ///
    /// A selector counts against the plugin's limit of open sockets: past
    /// it this fails with [`ErrorKind::QuotaExceeded`].
    pub fn new() -> io::Result<DefaultSelector<T>> {
        let host = bindings::Selector::create().map_err(from_code)?;
        Ok(DefaultSelector {
            host,
            keys: FxHashMap::default(),
            registrations: FxHashMap::default(),
            fds: FxHashMap::default(),
            next_key: 0,
        })
    }

    /// Registers `sock` for `events` ([`EVENT_READ`], [`EVENT_WRITE`] or
    /// both) with `data`, and returns its key; Python's
    /// `selector.register(fileobj, events, data)`.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] when `events` is empty or has
    /// other flags (Python's `ValueError`), with
    /// [`ErrorKind::AlreadyExists`] when `sock` is already registered
    /// (Python's `KeyError`), and with "socket is closed" for a closed
    /// socket.
    ///
    /// ```no_run
    /// use sockshim::selectors::{DefaultSelector, EVENT_READ, EVENT_WRITE};
    ///
    /// let sock = sockshim::create_connection("127.0.0.1:8000", None)?;
    /// let mut selector = DefaultSelector::new()?;
    /// let key = selector.register(&sock, EVENT_READ | EVENT_WRITE, "upstream")?;
    /// assert_eq!(key.fd, sock.fileno());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn register(
        &mut self,
        sock: &Socket,
        events: Events,
        data: T,
    ) -> io::Result<&SelectorKey<T>> {
        check_events(events)?;
        let host = sock.host()?;
        let fd = host.handle();
        if let Some(registration) = self.registrations.get(&fd) {
            if registration.socket.strong_count() > 0 {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("socket {fd} is already registered"),
                ));
            }
            // The registered socket is gone and its number was given to
            // this one: forget the old registration.
            self.forget(fd)?;
        }
        let host_key = self.next_key;
        self.host
            .register(&host, host_key, events.into())
            .map_err(from_code)?;
        self.next_key += 1;
        self.registrations.insert(
            fd,
            Registration {
                host_key,
                socket: Rc::downgrade(&host),
            },
        );
        self.fds.insert(host_key, fd);
        self.keys.insert(fd, SelectorKey { fd, events, data });
        Ok(&self.keys[&fd])
    }

    /// Changes the events and the data of a registered socket, and returns
    /// its new key; Python's `selector.modify(fileobj, events, data)`.
    ///
    /// Fails with [`ErrorKind::NotFound`] when `sock` is not registered
    /// (Python's `KeyError`), and as [`register`](Self::register) for
    /// `events`.
    pub fn modify(
        &mut self,
        sock: &Socket,
        events: Events,
        data: T,
    ) -> io::Result<&SelectorKey<T>> {
        check_events(events)?;
        let fd = self.registered(sock)?;
        let registration = &self.registrations[&fd];
        if self.keys[&fd].events != events {
            self.host
                .modify(registration.host_key, events.into())
                .map_err(from_code)?;
        }
        self.keys.insert(fd, SelectorKey { fd, events, data });
        Ok(&self.keys[&fd])
    }

    /// Stops watching `sock` and returns its key; Python's
    /// `selector.unregister(fileobj)`. Fails with [`ErrorKind::NotFound`]
    /// when `sock` is not registered. For a socket already closed or
    /// dropped, use [`unregister_fd`](Self::unregister_fd).
    pub fn unregister(&mut self, sock: &Socket) -> io::Result<SelectorKey<T>> {
        let fd = self.registered(sock)?;
        self.forget(fd)
    }

    /// Forgets the registration of the socket numbered `fd` (its
    /// [`fileno`](Socket::fileno) while it was open), and returns its key;
    /// Python's `selector.unregister(fd)`, for a socket that may already be
    /// closed or dropped. Fails with [`ErrorKind::NotFound`] when no socket
    /// is registered under `fd`.
    pub fn unregister_fd(&mut self, fd: u32) -> io::Result<SelectorKey<T>> {
        if !self.keys.contains_key(&fd) {
            return Err(not_registered(fd));
        }
        self.forget(fd)
    }

    /// Waits until a registered socket is ready, or `timeout` passes, and
    /// returns the ready ones with what they are ready for; Python's
    /// `selector.select(timeout)`.
    ///
    /// The events returned are within the key's: [`EVENT_READ`] when the
    /// socket is readable (bytes, a connection to accept, the peer's end of
    /// stream), [`EVENT_WRITE`] when it is writable (or a non-blocking
    /// connect has ended), and, as Python's `EpollSelector` does, both for
    /// an error or a hang-up, so that the next receive or send reports it.
    ///
    /// `timeout` `None` waits without limit; `Some(Duration::ZERO)` looks and
    /// returns at once; otherwise the result is empty when the timeout
    /// passes first, never earlier. With nothing registered and `None`,
    /// it fails with [`ErrorKind::InvalidInput`], as nothing could end the
    /// wait.
    ///
    /// The keys are copies, so the selector may be changed (sockets
    /// registered, modified, unregistered) while they are handled; a key
    /// unregistered meanwhile is simply stale.
    pub fn select(&mut self, timeout: Option<Duration>) -> io::Result<Vec<(SelectorKey<T>, Events)>>
    where
        T: Clone,
    {
        // Nothing registered: sleep, as the host's `poll` with no entries
        // does (an epoll_wait on an empty set sleeps too).
        if self.keys.is_empty() {
            bindings::poll(&[], timeout_nanos(timeout)).map_err(from_code)?;
            return Ok(Vec::new());
        }
        let ready = self
            .host
            .wait(timeout_nanos(timeout), 0)
            .map_err(from_code)?;
        let mut result = Vec::with_capacity(ready.len());
        for selected in ready {
            let Some(key) = self.fds.get(&selected.key).and_then(|fd| self.keys.get(fd)) else {
                continue;
            };
            let events = selector_events(Events::from(selected.events)) & key.events;
            if !events.is_empty() {
                result.push((key.clone(), events));
            }
        }
        Ok(result)
    }

    /// A `wasi:io/poll` pollable that is ready when [`select`] with a zero
    /// timeout would report a socket: one pollable for the whole set, to
    /// wait on it beside clocks, streams and other pollables in one
    /// `wasi:io/poll.poll` (or on an async runtime's reactor), at a cost
    /// that does not grow with the number of sockets registered.
    ///
    /// The pollable belongs to the selector: drop it first. Dropping the
    /// selector while the pollable lives traps, as a `wasi:io` stream's
    /// does.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sockshim::selectors::{DefaultSelector, EVENT_READ};
    /// use sockshim::wasip2::{clocks::monotonic_clock, io::poll};
    ///
    /// let server = sockshim::create_server("127.0.0.1:0")?;
    /// let mut selector = DefaultSelector::new()?;
    /// selector.register(&server, EVENT_READ, ())?;
    /// let any = selector.subscribe();
    /// let timer = monotonic_clock::subscribe_duration(Duration::from_secs(1).as_nanos() as u64);
    /// if poll::poll(&[&any, &timer]).contains(&0) {
    ///     for (key, _) in selector.select(Some(Duration::ZERO))? {
    ///         println!("socket {} is ready", key.fd);
    ///     }
    /// }
    /// drop(any);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// [`select`]: DefaultSelector::select
    pub fn subscribe(&self) -> Pollable {
        self.host.subscribe()
    }

    /// The key of a registered socket; Python's `selector.get_key(fileobj)`.
    /// Fails with [`ErrorKind::NotFound`] when `sock` is not registered.
    pub fn get_key(&self, sock: &Socket) -> io::Result<&SelectorKey<T>> {
        let fd = self.registered(sock)?;
        Ok(&self.keys[&fd])
    }

    /// Every registration, by socket number; Python's `selector.get_map()`.
    pub fn get_map(&self) -> &FxHashMap<u32, SelectorKey<T>> {
        &self.keys
    }

    /// How many sockets are registered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no socket is registered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Closes the selector, forgetting every registration; Python's
    /// `selector.close()`. Dropping it does the same. The sockets stay
    /// open.
    pub fn close(self) {}

    /// The number of `sock` if it is the socket registered under it.
    fn registered(&self, sock: &Socket) -> io::Result<u32> {
        let host = sock.host().map_err(|_| {
            io::Error::new(
                ErrorKind::NotFound,
                "the socket is closed: use unregister_fd",
            )
        })?;
        let fd = host.handle();
        match self.registrations.get(&fd) {
            Some(registration) if Weak::ptr_eq(&registration.socket, &Rc::downgrade(&host)) => {
                Ok(fd)
            }
            _ => Err(not_registered(fd)),
        }
    }

    /// Removes the registration under `fd`, which exists, from the host and
    /// from the maps.
    fn forget(&mut self, fd: u32) -> io::Result<SelectorKey<T>> {
        if let Some(registration) = self.registrations.remove(&fd) {
            self.fds.remove(&registration.host_key);
            // The host forgets the key even when the socket was dropped.
            self.host
                .unregister(registration.host_key)
                .map_err(from_code)?;
        }
        self.keys.remove(&fd).ok_or_else(|| not_registered(fd))
    }
}

impl<T> std::fmt::Debug for DefaultSelector<T>
where
    T: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultSelector")
            .field("keys", &self.keys)
            .finish()
    }
}

/// `events` is what a selector takes: not empty, only read and write.
fn check_events(events: Events) -> io::Result<()> {
    if events.is_empty() || !(EVENT_READ | EVENT_WRITE).contains(events) {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("invalid events: {events:?}"),
        ));
    }
    Ok(())
}

fn not_registered(fd: u32) -> io::Error {
    io::Error::new(
        ErrorKind::NotFound,
        format!("socket {fd} is not registered"),
    )
}

/// What Python's `EpollSelector` makes of epoll's `revents`: anything but
/// `EPOLLIN` counts as writable, anything but `EPOLLOUT` as readable.
fn selector_events(revents: Events) -> Events {
    let mut events = Events::empty();
    if !(revents & !EVENT_READ).is_empty() {
        events |= EVENT_WRITE;
    }
    if !(revents & !EVENT_WRITE).is_empty() {
        events |= EVENT_READ;
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_as_pythons_epoll_selector_reads_them() {
        assert_eq!(selector_events(Events::READABLE), EVENT_READ);
        assert_eq!(selector_events(Events::WRITABLE), EVENT_WRITE);
        assert_eq!(
            selector_events(Events::READABLE | Events::WRITABLE),
            EVENT_READ | EVENT_WRITE
        );
        for condition in [Events::ERROR, Events::HANG_UP] {
            assert_eq!(selector_events(condition), EVENT_READ | EVENT_WRITE);
        }
        assert_eq!(selector_events(Events::empty()), Events::empty());
    }

    #[test]
    fn only_read_and_write_are_registered() {
        assert!(check_events(EVENT_READ).is_ok());
        assert!(check_events(EVENT_READ | EVENT_WRITE).is_ok());
        for bad in [
            Events::empty(),
            Events::HANG_UP,
            EVENT_READ | Events::PRIORITY,
        ] {
            assert_eq!(
                check_events(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
