//! Readiness: waiting on many sockets at once, so that one single-threaded
//! plugin serves many connections.
//!
//! Three ways in, one mechanism underneath:
//! - [`Selector`], the contract's `selector` resource: an epoll(7) set kept
//!   on the host between waits (Python's `select.epoll`), so a wait costs
//!   the same however many sockets are registered and returns only the
//!   ready ones.
//! - [`SocketReadiness`], behind a socket's `subscribe`: a `wasi:io/poll`
//!   pollable that lets a plugin wait on sockshim sockets beside wasi
//!   streams, wasi:sockets and clocks in one `poll`; it waits through the
//!   socket's own registration with tokio's reactor, checked by poll(2).
//! - [`poll`], the contract's `poll`: a list of sockets looked at with one
//!   poll(2) (Python's `select.poll`/`select.select`), waiting, when none is
//!   ready, on a set made for the call.
//!
//! Readiness is level-triggered and exact: what is reported is what epoll
//! or poll(2) says the kernel has now, never tokio's memory of an earlier
//! wake-up, so a socket is reported for as long as it is ready and no
//! longer. Waiting follows the plugin's [`WaitOn`]: on its thread beside
//! its stop signal (a selector holds the signal's eventfd in its set, so a
//! wait is one epoll_wait(2); `poll` ppoll(2)s it beside the sockets), or
//! on tokio's reactor, where the set itself (an epoll descriptor is
//! pollable) is registered and each wait races the stop signal. A pollable
//! always waits on the reactor, since `wasi:io/poll` waits on several
//! things at once; it too ends when the plugin is stopped, in either way of
//! waiting.
//!
//! None of them keeps a socket open: a set holds the socket's descriptor
//! number and a weak reference, and the kernel drops a closed descriptor
//! from every epoll set by itself; a pollable holds a weak reference.

use crate::bindings::{ErrorCode, Events, Selected};
use crate::deadline::Deadline;
use crate::quota::Slot;
use crate::socket::Shared;
use crate::sys::{self, BorrowedRawFd, Epoll, EpollEvents, StopSignal, WaitOn, Woken};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The most entries one `poll` takes.
pub const MAX_POLL_ENTRIES: u32 = 1 << 16;

/// The contract's `events` as poll(2)/epoll(7) bits (the same numbers on
/// Linux: `POLLIN` is `EPOLLIN`, and so on). `edge-triggered` is `EPOLLET`,
/// the top bit, which the 16 bits of a pollfd's `events` leave out.
pub(crate) fn to_bits(events: Events) -> u32 {
    const MAP: [(Events, i32); 7] = [
        (Events::READABLE, libc::POLLIN as i32),
        (Events::PRIORITY, libc::POLLPRI as i32),
        (Events::WRITABLE, libc::POLLOUT as i32),
        (Events::ERROR, libc::POLLERR as i32),
        (Events::HANG_UP, libc::POLLHUP as i32),
        (Events::READ_HANG_UP, libc::POLLRDHUP as i32),
        (Events::EDGE_TRIGGERED, libc::EPOLLET),
    ];
    MAP.iter()
        .filter(|(flag, _)| events.contains(*flag))
        .fold(0, |bits, (_, bit)| bits | *bit as u32)
}

/// poll(2)/epoll(7) bits as the contract's `events`; bits it has no name
/// for (`POLLNVAL`, which a borrowed socket cannot have) are dropped.
pub(crate) fn from_bits(bits: u32) -> Events {
    let mut events = Events::empty();
    for (bit, flag) in [
        (libc::POLLIN, Events::READABLE),
        (libc::POLLPRI, Events::PRIORITY),
        (libc::POLLOUT, Events::WRITABLE),
        (libc::POLLERR, Events::ERROR),
        (libc::POLLHUP, Events::HANG_UP),
        (libc::POLLRDHUP, Events::READ_HANG_UP),
    ] {
        if bits & bit as u32 != 0 {
            events |= flag;
        }
    }
    events
}

/// A `timeout` in nanoseconds as the contract gives it to `poll` and
/// `selector.wait`: `None` waits without limit, zero does not wait.
pub(crate) fn deadline_of(timeout: Option<u64>) -> Deadline {
    match timeout {
        None => Deadline::Never,
        Some(0) => Deadline::Now,
        Some(nanos) => Instant::now()
            .checked_add(Duration::from_nanos(nanos))
            .map_or(Deadline::Never, Deadline::At),
    }
}

/// What is left of the time until `deadline`: `Ok(None)` without limit,
/// `Err(())` once it has passed (or for `Now`).
fn time_left(deadline: Deadline) -> Result<Option<Duration>, ()> {
    match deadline {
        Deadline::Never => Ok(None),
        Deadline::Now => Err(()),
        Deadline::At(at) => match at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(()),
        },
    }
}

fn stopped() -> ErrorCode {
    io::Error::from_raw_os_error(libc::ECANCELED).into()
}

/// What a set that waits on the plugin's thread holds its stop signal's
/// eventfd under, so that one epoll_wait(2) waits for both. Not kept from
/// the plugin: the eventfd is readable only once the signal is given, and
/// from then on every wait ends with `ECANCELED`, so an event under this
/// key while the signal is not given is a member's.
const STOP_KEY: u64 = u64::MAX;

/// A socket in a set: its descriptor number, valid while `socket` lives.
#[derive(Debug)]
struct Member {
    socket: Weak<Shared>,
    fd: RawFd,
    /// Registered `edge-triggered`.
    edge: bool,
}

impl Member {
    fn alive(&self) -> bool {
        self.socket.strong_count() > 0
    }
}

/// An epoll set of a plugin's sockets, and how to wait on it. The
/// contract's `selector`; also what a socket pollable and a waiting `poll`
/// wait on.
#[derive(Debug)]
pub struct Selector {
    // Declared before `epoll`, so that it is dropped (deregistered) first.
    reactor: OnceLock<AsyncFd<BorrowedRawFd>>,
    epoll: Epoll,
    /// What the last epoll_wait(2) reported, kept between waits: at most
    /// as many entries as the set has held members at once, so at most
    /// `max_members`.
    events: EpollEvents,
    members: HashMap<u64, Member>,
    /// How many members are level-triggered (dropped ones included, until
    /// their keys are forgotten).
    level: usize,
    wait_on: WaitOn,
    /// The most members at once (the plugin's socket limit).
    max_members: usize,
    _slot: Option<Slot>,
}

impl Selector {
    /// An empty set, waiting as `wait_on` says, counted by `slot`.
    pub(crate) fn new(
        wait_on: WaitOn,
        max_members: usize,
        slot: Option<Slot>,
    ) -> io::Result<Selector> {
        let epoll = Epoll::new()?;
        if let WaitOn::Thread(stop) = &wait_on {
            epoll.add_stop(stop, STOP_KEY)?;
        }
        Ok(Selector {
            reactor: OnceLock::new(),
            epoll,
            events: EpollEvents::default(),
            members: HashMap::new(),
            level: 0,
            wait_on,
            max_members,
            _slot: slot,
        })
    }

    /// Adds `socket`, watched for `events`, under `key`.
    pub(crate) fn register(
        &mut self,
        socket: &Arc<Shared>,
        key: u64,
        events: Events,
    ) -> Result<(), ErrorCode> {
        if self.members.contains_key(&key) {
            return Err(ErrorCode::invalid(format!(
                "key {key} is already registered in this selector"
            )));
        }
        if self.members.len() >= self.max_members {
            // Keys of sockets dropped without `unregister` hold no
            // descriptor any more; forget them before refusing.
            self.members.retain(|_, member| member.alive());
            self.level = self.members.values().filter(|m| !m.edge).count();
            if self.members.len() >= self.max_members {
                return Err(ErrorCode::LimitReached(format!(
                    "a selector holds at most {} sockets",
                    self.max_members
                )));
            }
        }
        let fd = socket.io.socket().as_raw_fd();
        match self.epoll.add(fd, to_bits(events), key) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                return Err(ErrorCode::invalid(
                    "the socket is already registered in this selector (under another key)",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let socket = Arc::downgrade(socket);
        let edge = events.contains(Events::EDGE_TRIGGERED);
        self.level += usize::from(!edge);
        self.members.insert(key, Member { socket, fd, edge });
        Ok(())
    }

    /// Watches the socket under `key` for `events` instead.
    pub(crate) fn modify(&mut self, key: u64, events: Events) -> Result<(), ErrorCode> {
        let member = self.member(key)?;
        if !member.alive() {
            // Its descriptor number may be another socket's by now.
            self.forget(key);
            return Err(closed(key));
        }
        self.epoll.modify(member.fd, to_bits(events), key)?;
        let edge = events.contains(Events::EDGE_TRIGGERED);
        if let Some(member) = self.members.get_mut(&key)
            && member.edge != edge
        {
            member.edge = edge;
            if edge {
                self.level -= 1;
            } else {
                self.level += 1;
            }
        }
        Ok(())
    }

    /// Removes `key` from the members, keeping the count of
    /// level-triggered ones.
    fn forget(&mut self, key: u64) -> Option<Member> {
        let member = self.members.remove(&key)?;
        self.level -= usize::from(!member.edge);
        Some(member)
    }

    /// Stops watching the socket under `key`; a socket dropped meanwhile
    /// has left the set already, and its key is just forgotten.
    pub(crate) fn unregister(&mut self, key: u64) -> Result<(), ErrorCode> {
        let member = self.forget(key).ok_or_else(|| unknown_key(key))?;
        if member.alive() {
            match self.epoll.delete(member.fd) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn member(&self, key: u64) -> Result<&Member, ErrorCode> {
        self.members.get(&key).ok_or_else(|| unknown_key(key))
    }

    /// Waits until a member is ready or `deadline` passes; returns at most
    /// `max_events` ready members (0: as many as there are), by key with
    /// their events, or none when the deadline passed first.
    pub(crate) async fn wait(
        &mut self,
        deadline: Deadline,
        max_events: usize,
    ) -> Result<Vec<Selected>, ErrorCode> {
        let max = match max_events {
            0 => self.members.len(),
            n => n.min(self.members.len()),
        }
        .max(1);
        match &self.wait_on {
            _ if deadline == Deadline::Now => self.look(max)?,
            WaitOn::Thread(_) => self.wait_on_thread(deadline, max)?,
            WaitOn::Reactor(stop) => {
                let stop = Arc::clone(stop);
                tokio::select! {
                    waited = self.wait_on_reactor(deadline, max) => waited?,
                    () = stop.stopped() => return Err(stopped()),
                }
            }
        }
        // Stopped on its thread: the stop signal's eventfd may be among the
        // events, and is no member to report.
        if let WaitOn::Thread(stop) = &self.wait_on
            && stop.is_stopped()
        {
            return Err(stopped());
        }
        Ok(self
            .events
            .iter()
            .map(|(key, bits)| Selected {
                key,
                events: from_bits(bits),
            })
            .collect())
    }

    /// [`Selector::wait`] in epoll_wait(2) on this thread, into
    /// `self.events`: one system call, however long it waits, since the
    /// set holds the stop signal's eventfd (under [`STOP_KEY`]). A stopped
    /// plugin's wait returns at once, with that event; [`Selector::wait`]
    /// turns it into `ECANCELED`.
    fn wait_on_thread(&mut self, deadline: Deadline, max: usize) -> Result<(), ErrorCode> {
        loop {
            // Once the deadline has passed, one last look.
            let timeout = time_left(deadline).unwrap_or(Some(Duration::ZERO));
            self.epoll.wait(&mut self.events, max, timeout)?;
            // Nothing, and time left: a signal interrupted the wait, which
            // goes on with the time that is left.
            if !self.events.is_empty() || time_left(deadline).is_err() {
                return Ok(());
            }
        }
    }

    /// [`Selector::wait`] on tokio's reactor, where the epoll descriptor
    /// is registered the first time a wait needs it, into `self.events`.
    ///
    /// A busy server waits again as soon as it has handled what the last
    /// wait returned, and each epoll_wait(2) counts: a wait that has to
    /// sleep makes two (one look, one after the wake-up) beside tokio's
    /// own. tokio keeps the wake-up that ended the last wait; taken before
    /// the first look, it is forgotten when that look finds nothing (only
    /// it: tokio keeps a wake-up that comes after it was taken), so that
    /// the sleep does not begin with a second, useless look. And when tokio
    /// has heard of nothing since a look found the set empty, the set has
    /// had nothing new since, and a wait that may sleep sleeps at once:
    /// tokio's own look on sleeping sees an event it has not taken in yet.
    async fn wait_on_reactor(&mut self, deadline: Deadline, max: usize) -> Result<(), ErrorCode> {
        let registration = registration(&self.reactor, &self.epoll)?;
        if let Some(mut guard) = known_readable(registration)? {
            self.epoll.ready_now(&mut self.events, max)?;
            if !self.events.is_empty() {
                return Ok(());
            }
            guard.clear_ready();
        }
        loop {
            let woken = match deadline {
                Deadline::Never | Deadline::Now => registration.readable().await,
                Deadline::At(at) => {
                    match tokio::time::timeout_at(at, registration.readable()).await {
                        Ok(woken) => woken,
                        Err(_elapsed) => return Ok(self.epoll.ready_now(&mut self.events, max)?),
                    }
                }
            };
            let mut guard = woken?;
            self.epoll.ready_now(&mut self.events, max)?;
            if !self.events.is_empty() {
                return Ok(());
            }
            // Woken for nothing that is still ready: wait for the next
            // wake-up.
            guard.clear_ready();
        }
    }
}

/// The selector's own `wasi:io/poll` pollable (`selector.subscribe`):
/// ready when a wait that does not wait would report a member. It waits
/// through the epoll descriptor's registration with tokio's reactor in
/// either way of waiting, since `wasi:io/poll` waits on several things at
/// once, and checks each wake-up with poll(2) on the descriptor. While
/// tokio knows of nothing new since the last look found the set empty, a
/// look costs no system call: an async plugin hands this pollable to every
/// `wasi:io/poll` call, ready or not. A member that turns ready wakes the
/// epoll descriptor's own waiters, so nothing new goes unseen by a wait;
/// one that stays ready (level-triggered) keeps poll(2) saying so. A look
/// that does not wait (`pollable.ready`) can miss only a change of the
/// last moment that tokio's reactor has not taken in yet, as a socket's
/// pollable can.
#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Selector {
    async fn ready(&mut self) {
        let stop = Arc::clone(self.wait_on.stop());
        let this = &*self;
        // An error (a reactor that failed) ends the wait too: the plugin's
        // next `wait` reports it.
        tokio::select! {
            _ = this.any_ready() => {}
            () = stop.stopped() => {}
        }
    }
}

impl Selector {
    /// Until a member is ready (for a wait that does not wait).
    async fn any_ready(&self) -> io::Result<()> {
        let epoll = self.epoll.as_raw_fd();
        // Before the first registration tokio knows nothing yet: look.
        if self.reactor.get().is_none() && sys::poll_one_now(epoll, libc::POLLIN)? != 0 {
            return Ok(());
        }
        let registration = registration(&self.reactor, &self.epoll)?;
        loop {
            let mut guard = registration.readable().await?;
            if sys::poll_one_now(epoll, libc::POLLIN)? != 0 {
                return Ok(());
            }
            guard.clear_ready();
        }
    }

    /// [`Selector::wait`] that does not wait, into `self.events`, in
    /// either way of waiting.
    ///
    /// An async plugin reads its selector this way each time the
    /// selector's pollable is ready. When every member is edge-triggered
    /// and the look took every report (fewer than `max`), the set has
    /// nothing left to report, and the wake-up tokio keeps for the
    /// pollable is forgotten here (if it came before the look), sparing
    /// the pollable's next look a poll(2) that would find nothing.
    fn look(&mut self, max: usize) -> Result<(), ErrorCode> {
        let known = match self.reactor.get() {
            Some(registration) if self.level == 0 => known_readable(registration)?,
            _ => None,
        };
        self.epoll.ready_now(&mut self.events, max)?;
        if let Some(mut guard) = known
            && self.events.len() < max
        {
            guard.clear_ready();
        }
        Ok(())
    }
}

/// The readiness tokio keeps for `registration`, without waiting: `None`
/// when it has heard of nothing since it was last forgotten.
fn known_readable(
    registration: &AsyncFd<BorrowedRawFd>,
) -> io::Result<Option<tokio::io::unix::AsyncFdReadyGuard<'_, BorrowedRawFd>>> {
    let mut readable = std::pin::pin!(registration.readable());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match readable.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(guard) => guard.map(Some),
        std::task::Poll::Pending => Ok(None),
    }
}

/// `epoll`'s registration with tokio's reactor, kept in `reactor`, made
/// the first time a wait needs it.
fn registration<'a>(
    reactor: &'a OnceLock<AsyncFd<BorrowedRawFd>>,
    epoll: &Epoll,
) -> io::Result<&'a AsyncFd<BorrowedRawFd>> {
    if let Some(registration) = reactor.get() {
        return Ok(registration);
    }
    // SAFETY: the epoll descriptor stays open for as long as the
    // registration exists: a selector's `reactor` is dropped before its
    // `epoll` (field order), and neither is replaced.
    let registration = unsafe { sys::register_raw_readable(epoll.as_raw_fd()) }?;
    Ok(reactor.get_or_init(|| registration))
}

/// `modify` or `unregister` of a key the selector does not hold.
fn unknown_key(key: u64) -> ErrorCode {
    ErrorCode::invalid(format!("no socket is registered under key {key}"))
}

/// `modify` of a key whose socket was dropped: Python's `OSError(EBADF)`.
fn closed(_key: u64) -> ErrorCode {
    io::Error::from_raw_os_error(libc::EBADF).into()
}

/// What a socket's `wasi:io/poll` pollable waits on. Ready when the socket
/// is ready for what was asked, has an error or a hang-up, or is gone.
///
/// It holds no descriptor of its own: an async plugin subscribes on every
/// operation that has to wait, so the pollable costs nothing until it
/// waits. It looks first with poll(2), and only when the socket is not ready
/// waits through the socket's own registration with tokio's reactor (made
/// then, if the socket had none), checking each wake-up with poll(2), so
/// that tokio's memory of an earlier wake-up never makes it ready early. A
/// socket that is neither connected, connecting nor listening is always
/// ready (poll(2) reports it hung up), so it is never registered in that
/// state, whose hang-up tokio would remember for good.
#[derive(Debug)]
pub struct SocketReadiness {
    socket: Weak<Shared>,
    /// The poll(2) events asked for.
    interest: i16,
    /// The plugin's stop signal: stopping the plugin makes the pollable
    /// ready, so that the plugin runs into the trap that ends it.
    stop: Arc<StopSignal>,
}

impl SocketReadiness {
    /// Watches `socket` for `interest`; `stop` is the plugin's stop
    /// signal.
    pub(crate) fn new(
        socket: &Arc<Shared>,
        interest: Events,
        stop: Arc<StopSignal>,
    ) -> SocketReadiness {
        SocketReadiness {
            socket: Arc::downgrade(socket),
            interest: to_bits(interest) as u16 as i16,
            stop,
        }
    }

    fn ready_now(&self, shared: &Shared) -> io::Result<bool> {
        let fd = shared.io.socket().as_raw_fd();
        Ok(sys::poll_one_now(fd, self.interest)? != 0)
    }

    /// Until the socket is ready (or gone).
    async fn wait_for_socket(&self) -> io::Result<()> {
        let Some(shared) = self.socket.upgrade() else {
            return Ok(());
        };
        // A socket registered with tokio's reactor already (so connecting,
        // connected or listening) is not looked at first: epoll has told
        // tokio of every change since the registration, and tokio forgets
        // readiness only when an operation or a look below found the socket
        // not ready (and only what it knew then), so when tokio knows of
        // none the socket has none; an event the reactor has not taken in
        // yet wakes the wait below. That spares one poll(2) per socket in
        // every `wasi:io/poll` call of an async plugin, which hands all its
        // waiting sockets' pollables to each. Urgent data (`POLLPRI`) is
        // not among what tokio is told of, so a wait for it looks first.
        let told = shared.io.registered().is_some() && self.interest & libc::POLLPRI == 0;
        if !told && self.ready_now(&shared)? {
            return Ok(());
        }
        let registration = shared.io.registration()?;
        let reads = libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP;
        let interest = match (
            self.interest & reads != 0,
            self.interest & libc::POLLOUT != 0,
        ) {
            (_, false) => Interest::READABLE, // a hang-up is read-closed
            (false, true) => Interest::WRITABLE,
            (true, true) => Interest::READABLE | Interest::WRITABLE,
        };
        let mut stale = 0u32;
        loop {
            let mut guard = registration.ready(interest).await?;
            if self.ready_now(&shared)? {
                return Ok(());
            }
            // tokio remembered a wake-up that no longer holds (the socket's
            // operations on the plugin's thread do not tell it): forget it
            // and wait for the next. "Closed" readiness is never forgotten,
            // and poll(2) agrees with it but for a socket that connected
            // again after a failed connect; should they ever disagree, look
            // again every millisecond rather than spin.
            guard.clear_ready();
            stale += 1;
            if stale > 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for SocketReadiness {
    async fn ready(&mut self) {
        let this = &*self;
        // An error (a reactor that failed) ends the wait too: the plugin's
        // next operation on the socket reports it.
        tokio::select! {
            _ = this.wait_for_socket() => {}
            () = this.stop.stopped() => {}
        }
    }
}

/// The contract's `poll`: which of `fds` (pollfds whose `events` are set)
/// are ready, by index, with their `revents`, waiting until `deadline` for
/// one to be.
pub(crate) async fn poll(
    fds: &mut [libc::pollfd],
    deadline: Deadline,
    wait_on: &WaitOn,
) -> Result<Vec<(u32, u32)>, ErrorCode> {
    if fds.is_empty() {
        return sleep(deadline, wait_on).await.map(|()| Vec::new());
    }
    let ready = |fds: &[libc::pollfd]| -> Vec<(u32, u32)> {
        fds.iter()
            .enumerate()
            .filter(|(_, fd)| fd.revents != 0)
            .map(|(i, fd)| (i as u32, fd.revents as u16 as u32))
            .collect()
    };
    // Most calls of a busy event loop end here: something is ready now.
    if sys::poll_now(fds)? > 0 || deadline == Deadline::Now {
        return Ok(ready(fds));
    }
    match wait_on {
        WaitOn::Thread(stop) => {
            let mut waited = fds.to_vec();
            loop {
                let Ok(timeout) = time_left(deadline) else {
                    return Ok(Vec::new());
                };
                for fd in &mut waited {
                    fd.revents = 0;
                }
                match sys::poll_on_thread(&mut waited, stop, timeout)? {
                    Woken::Stopped => return Err(stopped()),
                    Woken::TimedOut => return Ok(Vec::new()),
                    // Ready, or a signal: then nothing is, and the wait
                    // goes on with the time that is left.
                    Woken::Ready => {
                        let found = ready(&waited);
                        if !found.is_empty() {
                            return Ok(found);
                        }
                    }
                }
            }
        }
        WaitOn::Reactor(_) => {
            // A set for this call: each socket once, for what any entry
            // asks of it. Woken by it, poll(2) says exactly what is ready.
            let mut set = Selector::new(wait_on.clone(), fds.len(), None)?;
            let mut asked: HashMap<RawFd, u32> = HashMap::new();
            for fd in fds.iter() {
                *asked.entry(fd.fd).or_default() |= fd.events as u16 as u32;
            }
            for (fd, events) in asked {
                set.epoll.add(fd, events, 0)?;
            }
            loop {
                // The set's wait races the stop signal.
                if set.wait(deadline, 1).await?.is_empty() {
                    return Ok(Vec::new()); // the deadline passed
                }
                for fd in fds.iter_mut() {
                    fd.revents = 0;
                }
                if sys::poll_now(fds)? > 0 {
                    return Ok(ready(fds));
                }
            }
        }
    }
}

/// `poll` of no sockets: a sleep until `deadline`, which must be a time.
async fn sleep(deadline: Deadline, wait_on: &WaitOn) -> Result<(), ErrorCode> {
    let Deadline::At(at) = deadline else {
        if deadline == Deadline::Now {
            return Ok(());
        }
        return Err(ErrorCode::invalid(
            "poll of no sockets without a timeout would never return",
        ));
    };
    match wait_on {
        WaitOn::Reactor(stop) => {
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = stop.stopped() => return Err(stopped()),
            }
        }
        WaitOn::Thread(stop) => {
            let mut none = Vec::with_capacity(1);
            while let Ok(timeout) = time_left(deadline) {
                if sys::poll_on_thread(&mut none, stop, timeout)? == Woken::Stopped {
                    return Err(stopped());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::AddressFamily;
    use crate::deadline::Timeout;
    use crate::socket::TcpSocket;
    use std::io::Write;
    use std::net::TcpStream;

    /// A connected socket of ours, waiting as `wait_on` says, and its peer.
    fn pair(wait_on: WaitOn) -> (TcpSocket, TcpStream) {
        let (ours, peer) = crate::testing::loopback_pair();
        ours.set_nonblocking(true).unwrap();
        let sock = TcpSocket::from_socket(ours, AddressFamily::Ipv4, Timeout::Blocking, wait_on);
        (sock, peer)
    }

    fn both_ways() -> [WaitOn; 2] {
        [
            WaitOn::reactor(),
            WaitOn::Thread(Arc::new(StopSignal::new().unwrap())),
        ]
    }

    fn after(ms: u64) -> Deadline {
        Timeout::After(Duration::from_millis(ms)).deadline()
    }

    /// The selector reports nothing until the deadline, then a socket as
    /// long as it is readable (level-triggered), by its key.
    #[tokio::test]
    async fn a_selector_reports_ready_sockets_by_key_for_as_long_as_they_are() {
        for wait_on in both_ways() {
            let how = format!("{wait_on:?}");
            let (quiet, _quiet_peer) = pair(wait_on.clone());
            let (busy, mut busy_peer) = pair(wait_on.clone());
            let mut selector = Selector::new(wait_on, 16, None).unwrap();
            selector
                .register(quiet.shared_ref(), 7, Events::READABLE)
                .unwrap();
            selector
                .register(busy.shared_ref(), 9, Events::READABLE)
                .unwrap();

            let started = std::time::Instant::now();
            let ready = selector.wait(after(200), 0).await.unwrap();
            assert!(ready.is_empty(), "{how}: {ready:?}");
            assert!(started.elapsed() >= Duration::from_millis(200), "{how}");

            busy_peer.write_all(b"x").unwrap();
            let ready = selector.wait(Deadline::Never, 0).await.unwrap();
            assert_eq!(ready.len(), 1, "{how}: {ready:?}");
            assert_eq!(ready[0].key, 9, "{how}");
            assert!(ready[0].events.contains(Events::READABLE), "{how}");
            // Not read: still ready, at once.
            let again = selector.wait(Deadline::Now, 0).await.unwrap();
            assert_eq!(again.len(), 1, "{how}");
            // Read: no longer.
            assert_eq!(busy.recv(16).await.unwrap(), b"x");
            assert!(
                selector.wait(Deadline::Now, 0).await.unwrap().is_empty(),
                "{how}"
            );

            // Writable is asked for, and a connected socket is.
            selector.modify(7, Events::WRITABLE).unwrap();
            let ready = selector.wait(after(5_000), 0).await.unwrap();
            assert_eq!(
                ready.iter().map(|r| r.key).collect::<Vec<_>>(),
                [7],
                "{how}"
            );

            selector.unregister(7).unwrap();
            assert!(
                selector.wait(Deadline::Now, 0).await.unwrap().is_empty(),
                "{how}"
            );
            assert!(matches!(
                selector.unregister(7),
                Err(ErrorCode::InvalidArgument(_))
            ));
            assert!(matches!(
                selector.register(busy.shared_ref(), 9, Events::READABLE),
                Err(ErrorCode::InvalidArgument(_))
            ));
            assert!(matches!(
                selector.register(busy.shared_ref(), 10, Events::READABLE),
                Err(ErrorCode::InvalidArgument(_))
            ));
        }
    }

    /// A socket dropped while registered leaves the set by itself: a hang
    /// up of its peer is never reported for it, its key can be forgotten,
    /// and a socket that takes its descriptor number is not disturbed.
    #[tokio::test]
    async fn a_socket_dropped_while_registered_leaves_the_set() {
        for wait_on in both_ways() {
            let how = format!("{wait_on:?}");
            let (sock, peer) = pair(wait_on.clone());
            let mut selector = Selector::new(wait_on.clone(), 16, None).unwrap();
            selector
                .register(sock.shared_ref(), 1, Events::READABLE)
                .unwrap();
            drop(sock);
            drop(peer);
            assert!(
                selector.wait(after(100), 0).await.unwrap().is_empty(),
                "{how}"
            );
            assert!(selector.modify(1, Events::WRITABLE).is_err(), "{how}");
            // `modify` forgot it already; a new socket (likely on the same
            // descriptor number) registers afresh and is reported.
            let (next, mut next_peer) = pair(wait_on);
            selector
                .register(next.shared_ref(), 1, Events::READABLE)
                .unwrap();
            next_peer.write_all(b"y").unwrap();
            let ready = selector.wait(after(5_000), 0).await.unwrap();
            assert_eq!(ready.len(), 1, "{how}");
        }
    }

    /// A selector never holds more than its limit of sockets, but keys of
    /// dropped sockets make room.
    #[tokio::test]
    async fn a_selector_is_bounded_and_dropped_sockets_make_room() {
        let mut selector = Selector::new(WaitOn::reactor(), 2, None).unwrap();
        let (a, _pa) = pair(WaitOn::reactor());
        let (b, _pb) = pair(WaitOn::reactor());
        let (c, _pc) = pair(WaitOn::reactor());
        selector
            .register(a.shared_ref(), 1, Events::READABLE)
            .unwrap();
        selector
            .register(b.shared_ref(), 2, Events::READABLE)
            .unwrap();
        assert!(matches!(
            selector.register(c.shared_ref(), 3, Events::READABLE),
            Err(ErrorCode::LimitReached(_))
        ));
        // The buffer a wait fills holds no more entries than the set has
        // members, whatever the plugin asks for.
        for max_events in [0, 1, 1_000_000] {
            selector.wait(Deadline::Now, max_events).await.unwrap();
            assert!(selector.events.capacity() <= 2, "{max_events}");
        }
        drop(a);
        selector
            .register(c.shared_ref(), 3, Events::READABLE)
            .unwrap();
    }

    /// `poll` reports the ready entries by index, each with its revents,
    /// waits for one otherwise, and returns empty at its deadline.
    #[tokio::test]
    async fn poll_reports_ready_entries_by_index() {
        for wait_on in both_ways() {
            let how = format!("{wait_on:?}");
            let (a, _pa) = pair(wait_on.clone());
            let (b, mut pb) = pair(wait_on.clone());
            let entry = |sock: &TcpSocket, events| libc::pollfd {
                fd: sock.shared_ref().io.socket().as_raw_fd(),
                events: to_bits(events) as i16,
                revents: 0,
            };
            let mut fds = [entry(&a, Events::READABLE), entry(&b, Events::READABLE)];
            let started = std::time::Instant::now();
            let ready = poll(&mut fds, after(200), &wait_on).await.unwrap();
            assert!(ready.is_empty(), "{how}: {ready:?}");
            let elapsed = started.elapsed();
            assert!(elapsed >= Duration::from_millis(200), "{how}: {elapsed:?}");

            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                pb.write_all(b"z").unwrap();
                pb
            });
            let ready = poll(&mut fds, Deadline::Never, &wait_on).await.unwrap();
            assert_eq!(ready.len(), 1, "{how}: {ready:?}");
            assert_eq!(ready[0].0, 1, "{how}");
            assert!(from_bits(ready[0].1).contains(Events::READABLE), "{how}");
            let _pb = writer.join().unwrap();

            // Both writable, asked for with readable on the same socket.
            let mut fds = [
                entry(&a, Events::WRITABLE),
                entry(&b, Events::READABLE | Events::WRITABLE),
            ];
            let ready = poll(&mut fds, Deadline::Now, &wait_on).await.unwrap();
            assert_eq!(ready.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1]);
            assert_eq!(
                from_bits(ready[1].1),
                Events::READABLE | Events::WRITABLE,
                "{how}"
            );
        }
    }

    /// A peer's reset and a peer's close are reported whether asked for or
    /// not (`hang-up`/`error` as poll(2) does), and as readable.
    #[tokio::test]
    async fn reset_and_half_closed_sockets_are_readable() {
        let (sock, peer) = pair(WaitOn::reactor());
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let fd = sock.shared_ref().io.socket().as_raw_fd();
        let mut fds = [libc::pollfd {
            fd,
            events: to_bits(Events::READABLE | Events::READ_HANG_UP) as i16,
            revents: 0,
        }];
        let ready = poll(&mut fds, after(5_000), &WaitOn::reactor())
            .await
            .unwrap();
        let events = from_bits(ready[0].1);
        assert!(
            events.contains(Events::READABLE | Events::READ_HANG_UP),
            "{events:?}"
        );

        let (sock, peer) = pair(WaitOn::reactor());
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer); // RST
        let mut fds = [libc::pollfd {
            fd: sock.shared_ref().io.socket().as_raw_fd(),
            events: 0,
            revents: 0,
        }];
        let ready = poll(&mut fds, after(5_000), &WaitOn::reactor())
            .await
            .unwrap();
        let events = from_bits(ready[0].1);
        assert!(events.contains(Events::HANG_UP), "{events:?}");
        assert!(matches!(
            sock.recv(16).await,
            Err(ErrorCode::ConnectionReset)
        ));
    }

    /// Stopping a plugin that waits on its thread ends its selector and
    /// poll waits, and its pollables, at once; so does stopping one that
    /// waits on the reactor (issue 26: there nothing but dropping the
    /// plugin's future ended them). The selector's wait is stopped in
    /// progress, the others after.
    #[tokio::test]
    async fn the_stop_signal_ends_readiness_waits() {
        for wait_on in both_ways() {
            stop_ends_readiness_waits(wait_on).await;
        }
    }

    async fn stop_ends_readiness_waits(wait_on: WaitOn) {
        let stop = Arc::clone(wait_on.stop());
        let (sock, _peer) = pair(wait_on.clone());
        let mut selector = Selector::new(wait_on.clone(), 4, None).unwrap();
        selector
            .register(sock.shared_ref(), 1, Events::READABLE)
            .unwrap();
        let mut pollable =
            SocketReadiness::new(sock.shared_ref(), Events::READABLE, Arc::clone(&stop));
        let stopper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                stop.stop();
            })
        };
        let ecanceled = crate::error::wasi_errno::from_host(libc::ECANCELED);
        let started = std::time::Instant::now();
        let err = selector.wait(after(10_000), 0).await.unwrap_err();
        assert!(matches!(err, ErrorCode::Os(n) if n == ecanceled), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{wait_on:?}");
        let mut fds = [libc::pollfd {
            fd: sock.shared_ref().io.socket().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let err = poll(&mut fds, after(10_000), &wait_on).await.unwrap_err();
        assert!(matches!(err, ErrorCode::Os(n) if n == ecanceled), "{err:?}");
        // `poll` of no sockets: a sleep.
        let err = poll(&mut [], after(10_000), &wait_on).await.unwrap_err();
        assert!(matches!(err, ErrorCode::Os(n) if n == ecanceled), "{err:?}");
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            wasmtime_wasi::p2::Pollable::ready(&mut pollable),
        );
        assert!(waited.await.is_ok(), "the pollable did not see the stop");
        stopper.join().unwrap();
    }

    /// A set that waits on the plugin's thread holds the stop signal's
    /// eventfd under `u64::MAX`, a key the plugin may use too: a member
    /// under it is reported as the member, and once the signal is given
    /// every wait, a look included, ends with `ECANCELED` instead of
    /// reporting the eventfd.
    #[tokio::test]
    async fn a_member_under_the_stop_signals_key_is_the_members_until_the_stop() {
        let wait_on = WaitOn::Thread(Arc::new(StopSignal::new().unwrap()));
        let (sock, mut peer) = pair(wait_on.clone());
        let mut selector = Selector::new(wait_on.clone(), 4, None).unwrap();
        selector
            .register(sock.shared_ref(), u64::MAX, Events::READABLE)
            .unwrap();
        assert!(selector.wait(after(50), 0).await.unwrap().is_empty());
        peer.write_all(b"x").unwrap();
        let ready = selector.wait(after(5_000), 0).await.unwrap();
        assert_eq!(ready.len(), 1, "{ready:?}");
        assert_eq!(ready[0].key, u64::MAX);
        assert!(ready[0].events.contains(Events::READABLE));

        assert_eq!(sock.recv(16).await.unwrap(), b"x");
        wait_on.stop().stop();
        let ecanceled = crate::error::wasi_errno::from_host(libc::ECANCELED);
        for deadline in [Deadline::Now, after(5_000), Deadline::Never] {
            let err = selector.wait(deadline, 0).await.unwrap_err();
            assert!(matches!(err, ErrorCode::Os(n) if n == ecanceled), "{err:?}");
        }
    }

    /// A selector's own pollable is ready exactly when a wait that does
    /// not wait would report a member, in both wait modes: level-triggered
    /// members for as long as they are ready, edge-triggered ones once per
    /// change; and it turns ready when the plugin is stopped.
    #[tokio::test]
    async fn a_selectors_pollable_is_ready_when_a_wait_would_report() {
        use wasmtime_wasi::p2::Pollable;
        async fn ready_within(selector: &mut Selector, ms: u64) -> bool {
            tokio::time::timeout(Duration::from_millis(ms), selector.ready())
                .await
                .is_ok()
        }
        for wait_on in both_ways() {
            let how = format!("{wait_on:?}");
            let (level, mut level_peer) = pair(wait_on.clone());
            let (edge, mut edge_peer) = pair(wait_on.clone());
            let mut selector = Selector::new(wait_on.clone(), 16, None).unwrap();
            assert!(!ready_within(&mut selector, 100).await, "{how}: empty set");
            selector
                .register(level.shared_ref(), 1, Events::READABLE)
                .unwrap();
            selector
                .register(
                    edge.shared_ref(),
                    2,
                    Events::READABLE | Events::EDGE_TRIGGERED,
                )
                .unwrap();
            assert!(!ready_within(&mut selector, 100).await, "{how}: quiet");

            // Edge-triggered: reported once, though its byte is not read.
            edge_peer.write_all(b"e").unwrap();
            assert!(ready_within(&mut selector, 5_000).await, "{how}: edge");
            let got = selector.wait(Deadline::Now, 0).await.unwrap();
            assert_eq!(got.iter().map(|s| s.key).collect::<Vec<_>>(), [2], "{how}");
            assert!(
                !(got[0].events.contains(Events::EDGE_TRIGGERED)),
                "{how}: edge-triggered is never reported"
            );
            assert!(!ready_within(&mut selector, 100).await, "{how}: edge again");
            assert!(selector.wait(Deadline::Now, 0).await.unwrap().is_empty());
            // A new byte is a new edge.
            edge_peer.write_all(b"f").unwrap();
            assert!(ready_within(&mut selector, 5_000).await, "{how}: 2nd edge");
            assert_eq!(selector.wait(Deadline::Now, 0).await.unwrap().len(), 1);

            // Level-triggered: ready until its byte is read.
            level_peer.write_all(b"l").unwrap();
            for round in 0..3 {
                assert!(ready_within(&mut selector, 5_000).await, "{how}: {round}");
                let got = selector.wait(Deadline::Now, 0).await.unwrap();
                assert_eq!(got.iter().map(|s| s.key).collect::<Vec<_>>(), [1]);
            }
            assert_eq!(level.recv(16).await.unwrap(), b"l", "{how}");
            assert!(!ready_within(&mut selector, 100).await, "{how}: read");

            // Edge-triggered alone: a look that takes every report lets the
            // pollable forget its wake-up, and the next change still wakes.
            selector.unregister(1).unwrap();
            for round in 0..3 {
                edge_peer.write_all(b"g").unwrap();
                assert!(ready_within(&mut selector, 5_000).await, "{how}: {round}");
                let got = selector.wait(Deadline::Now, 0).await.unwrap();
                assert_eq!(got.len(), 1, "{how}: {round}");
                assert!(!ready_within(&mut selector, 100).await, "{how}: {round}");
                assert!(selector.wait(Deadline::Now, 0).await.unwrap().is_empty());
            }

            // Stopping the plugin ends the wait.
            wait_on.stop().stop();
            assert!(ready_within(&mut selector, 5_000).await, "{how}: stop");
        }
    }

    /// A socket's pollable is ready when bytes come, and for good once the
    /// socket is gone.
    #[tokio::test]
    async fn a_pollable_waits_for_its_socket() {
        use wasmtime_wasi::p2::Pollable;
        let (sock, mut peer) = pair(WaitOn::reactor());
        let mut pollable = SocketReadiness::new(
            sock.shared_ref(),
            Events::READABLE,
            Arc::clone(WaitOn::reactor().stop()),
        );
        let early = tokio::time::timeout(Duration::from_millis(100), pollable.ready()).await;
        assert!(early.is_err(), "ready before any byte came");
        peer.write_all(b"q").unwrap();
        tokio::time::timeout(Duration::from_secs(5), pollable.ready())
            .await
            .expect("not ready after a byte came");
        drop(sock);
        tokio::time::timeout(Duration::from_secs(5), pollable.ready())
            .await
            .expect("not ready once the socket is gone");
    }

    /// A pollable is exact in both wait modes: once the bytes that made it
    /// ready are read (on the plugin's thread, where tokio is not told),
    /// it waits again instead of trusting tokio's memory of the wake-up.
    #[tokio::test]
    async fn a_pollable_is_not_ready_after_its_bytes_are_read() {
        use wasmtime_wasi::p2::Pollable;
        for wait_on in both_ways() {
            let how = format!("{wait_on:?}");
            let (sock, mut peer) = pair(wait_on);
            let mut pollable = SocketReadiness::new(
                sock.shared_ref(),
                Events::READABLE,
                Arc::clone(WaitOn::reactor().stop()),
            );
            for round in 0..3u8 {
                peer.write_all(&[round]).unwrap();
                tokio::time::timeout(Duration::from_secs(5), pollable.ready())
                    .await
                    .unwrap_or_else(|_| panic!("{how}: not ready in round {round}"));
                assert_eq!(sock.recv(16).await.unwrap(), [round], "{how}");
                let early =
                    tokio::time::timeout(Duration::from_millis(100), pollable.ready()).await;
                assert!(early.is_err(), "{how}: ready with nothing to read");
            }
        }
    }

    /// CPython's non-blocking connect: `in-progress`, then writable, then
    /// `SO_ERROR` says how it went, to a listening port and a closed one.
    #[tokio::test]
    async fn a_non_blocking_connect_is_in_progress_then_writable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        for (addr, refused) in [(open, false), (closed, true)] {
            let mut sock =
                TcpSocket::new(AddressFamily::Ipv4, Timeout::NonBlocking, WaitOn::reactor())
                    .unwrap();
            match sock.connect(addr, Deadline::Now).await {
                Err(ErrorCode::InProgress) => {}
                // Loopback may refuse at once.
                Err(ErrorCode::ConnectionRefused) if refused => continue,
                other => panic!("{addr}: {other:?}"),
            }
            let mut selector = Selector::new(WaitOn::reactor(), 4, None).unwrap();
            selector
                .register(sock.shared_ref(), 0, Events::WRITABLE)
                .unwrap();
            let ready = selector.wait(after(5_000), 0).await.unwrap();
            assert_eq!(ready.len(), 1, "{addr}");
            let outcome = sock.take_error().unwrap();
            if refused {
                assert!(
                    matches!(outcome, Some(ErrorCode::ConnectionRefused)),
                    "{outcome:?}"
                );
            } else {
                assert!(outcome.is_none(), "{outcome:?}");
                assert!(sock.remote_address().is_ok());
            }
        }
    }
}
