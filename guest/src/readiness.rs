//! Readiness: Python's `select.select` and `select.poll`, and the
//! [`Events`] they speak in.
//!
//! Both are one host call (the contract's `poll`) however many sockets they
//! are given. For many sockets watched across many waits, the
//! [`selectors`](crate::selectors) module keeps the set on the host instead.

use std::fmt;
use std::io;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bindings;
use crate::error::from_code;
use crate::socket::Socket;

/// Readiness of a socket: what to wait for (Python's `eventmask`, poll(2)'s
/// `events`) and what was found (`revents`), with `select.POLL*`'s meaning.
///
/// A small set of flags, combined with `|` and tested with
/// [`contains`](Events::contains) and [`intersects`](Events::intersects).
/// [`ERROR`](Events::ERROR) and [`HANG_UP`](Events::HANG_UP) are reported
/// whether asked for or not, as by poll(2).
///
/// ```
/// use sockshim::Events;
///
/// let interest = Events::READABLE | Events::WRITABLE;
/// assert!(interest.contains(Events::READABLE));
/// assert!(!interest.intersects(Events::ERROR | Events::HANG_UP));
/// assert_eq!(format!("{interest:?}"), "Events(READABLE | WRITABLE)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Events(pub(crate) u8);

impl Events {
    /// `POLLIN`: a receive would not block (bytes wait, the peer closed its
    /// side, or an error is pending); on a listening socket, an
    /// [`accept`](Socket::accept) would not block.
    pub const READABLE: Events = Events(1 << 0);
    /// `POLLPRI`: urgent (out-of-band) data waits; `select`'s "exceptional
    /// condition".
    pub const PRIORITY: Events = Events(1 << 1);
    /// `POLLOUT`: a send would take at least one byte; on a connecting
    /// socket, the connect has ended (read how with
    /// [`take_error`](Socket::take_error)).
    pub const WRITABLE: Events = Events(1 << 2);
    /// `POLLERR`: an error is pending. Reported whether asked for or not.
    pub const ERROR: Events = Events(1 << 3);
    /// `POLLHUP`: both directions are shut, or the socket is neither
    /// connected nor listening. Reported whether asked for or not.
    pub const HANG_UP: Events = Events(1 << 4);
    /// `POLLRDHUP`: the peer has shut its sending side; a receive returns
    /// the end of the stream once the bytes before it are read.
    pub const READ_HANG_UP: Events = Events(1 << 5);
    /// `EPOLLET`, for a selector's registration only (ignored elsewhere,
    /// never reported): report the socket when it turns ready, once,
    /// rather than for as long as it is ready; Python's `select.EPOLLET`.
    /// Whoever waits this way sends or receives until
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) before waiting again.
    pub const EDGE_TRIGGERED: Events = Events(1 << 6);

    /// Every flag, in the order their names are printed.
    const NAMED: [(Events, &'static str); 7] = [
        (Events::READABLE, "READABLE"),
        (Events::PRIORITY, "PRIORITY"),
        (Events::WRITABLE, "WRITABLE"),
        (Events::ERROR, "ERROR"),
        (Events::HANG_UP, "HANG_UP"),
        (Events::READ_HANG_UP, "READ_HANG_UP"),
        (Events::EDGE_TRIGGERED, "EDGE_TRIGGERED"),
    ];

    /// No flag.
    pub const fn empty() -> Events {
        Events(0)
    }

    /// Every flag.
    pub const fn all() -> Events {
        Events(0b111_1111)
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set in `self`.
    pub const fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Events) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: Events) {
        self.0 &= !other.0;
    }

    /// The flags as bits, `READABLE` the lowest, in the order of the
    /// contract's `events` flags.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The flags of `bits`, ignoring bits no flag has.
    pub const fn from_bits_truncate(bits: u8) -> Events {
        Events(bits & Events::all().0)
    }
}

impl BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Events {
    type Output = Events;
    fn bitand(self, rhs: Events) -> Events {
        Events(self.0 & rhs.0)
    }
}

impl BitAndAssign for Events {
    fn bitand_assign(&mut self, rhs: Events) {
        self.0 &= rhs.0;
    }
}

/// Every flag not in `self`.
impl Not for Events {
    type Output = Events;
    fn not(self) -> Events {
        Events(!self.0 & Events::all().0)
    }
}

/// Prints the names of the flags set, as `Events(READABLE | HANG_UP)`, or
/// `Events(empty)`.
impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Events(")?;
        if self.is_empty() {
            f.write_str("empty")?;
        }
        let mut first = true;
        for (flag, name) in Events::NAMED {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

impl From<bindings::Events> for Events {
    fn from(events: bindings::Events) -> Events {
        let pairs = [
            (bindings::Events::READABLE, Events::READABLE),
            (bindings::Events::PRIORITY, Events::PRIORITY),
            (bindings::Events::WRITABLE, Events::WRITABLE),
            (bindings::Events::ERROR, Events::ERROR),
            (bindings::Events::HANG_UP, Events::HANG_UP),
            (bindings::Events::READ_HANG_UP, Events::READ_HANG_UP),
            (bindings::Events::EDGE_TRIGGERED, Events::EDGE_TRIGGERED),
        ];
        pairs
            .into_iter()
            .filter(|(wit, _)| events.contains(*wit))
            .fold(Events::empty(), |acc, (_, ours)| acc | ours)
    }
}

impl From<Events> for bindings::Events {
    fn from(events: Events) -> bindings::Events {
        let pairs = [
            (Events::READABLE, bindings::Events::READABLE),
            (Events::PRIORITY, bindings::Events::PRIORITY),
            (Events::WRITABLE, bindings::Events::WRITABLE),
            (Events::ERROR, bindings::Events::ERROR),
            (Events::HANG_UP, bindings::Events::HANG_UP),
            (Events::READ_HANG_UP, bindings::Events::READ_HANG_UP),
            (Events::EDGE_TRIGGERED, bindings::Events::EDGE_TRIGGERED),
        ];
        pairs
            .into_iter()
            .filter(|(ours, _)| events.contains(*ours))
            .fold(bindings::Events::empty(), |acc, (_, wit)| acc | wit)
    }
}

/// `select`'s readable set: what the kernel's select(2) counts as readable.
const SELECT_READ: Events = Events(Events::READABLE.0 | Events::HANG_UP.0 | Events::ERROR.0);
/// `select`'s writable set.
const SELECT_WRITE: Events = Events(Events::WRITABLE.0 | Events::ERROR.0);
/// `select`'s exceptional set.
const SELECT_EXCEPT: Events = Events::PRIORITY;

/// A timeout as the contract takes it: nanoseconds, `None` for no limit.
pub(crate) fn timeout_nanos(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX))
}

/// Waits until some of the sockets are ready to read, to write, or have an
/// exceptional condition, or until `timeout` passes, and returns those that
/// are ready, in three lists in the order given; corresponds to Python's
/// `select.select(rlist, wlist, xlist, timeout)`.
///
/// A socket counts as readable when a receive (or, listening, an accept)
/// would not block, its peer closed its side, it hung up or it has an error
/// pending; as writable when a send would take a byte or it has an error
/// pending (a non-blocking [`connect`](Socket::connect) has ended, which
/// [`take_error`](Socket::take_error) tells how); as exceptional when
/// out-of-band data waits. Those are select(2)'s sets on Linux.
///
/// `timeout` `None` waits without limit; `Some(Duration::ZERO)` looks and
/// returns at once; otherwise the lists are all empty when it passes first,
/// never earlier (a signal on the host resumes the wait). Three empty lists
/// sleep for `timeout`; with `None` as well, nothing could end the wait, and
/// it fails with [`ErrorKind::InvalidInput`](io::ErrorKind::InvalidInput)
/// (CPython would block forever).
///
/// It is one host call, however many sockets are given (at most 65,536 in
/// all; more is `InvalidInput`). A closed socket in a list fails with
/// "socket is closed" (Python: `ValueError`).
///
/// ```no_run
/// use std::time::Duration;
///
/// let server = sockshim::create_server("127.0.0.1:0")?;
/// let mut clients: Vec<sockshim::Socket> = Vec::new();
/// loop {
///     let mut watched = vec![&server];
///     watched.extend(clients.iter());
///     let (readable, _, _) =
///         sockshim::select(&watched, &[], &[], Some(Duration::from_secs(5)))?;
///     if readable.is_empty() {
///         println!("five quiet seconds");
///         continue;
///     }
///     let (mut accepted, mut finished) = (Vec::new(), Vec::new());
///     for sock in readable {
///         if std::ptr::eq(sock, &server) {
///             accepted.push(server.accept()?.0);
///         } else {
///             let data = sock.recv(4096)?;
///             if data.is_empty() {
///                 finished.push(sock.fileno());
///             } else {
///                 sock.sendall(&data)?;
///             }
///         }
///     }
///     clients.retain(|c| !finished.contains(&c.fileno()));
///     clients.extend(accepted);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn select<'a>(
    read: &[&'a Socket],
    write: &[&'a Socket],
    except: &[&'a Socket],
    timeout: Option<Duration>,
) -> io::Result<(Vec<&'a Socket>, Vec<&'a Socket>, Vec<&'a Socket>)> {
    // One entry per socket and list: (which list, its position, interest).
    let mut watched: Vec<(usize, &'a Socket, Events)> = Vec::new();
    for (list, sockets, interest) in [
        (0, read, Events::READABLE),
        (1, write, Events::WRITABLE),
        (2, except, Events::PRIORITY),
    ] {
        watched.extend(sockets.iter().map(|sock| (list, *sock, interest)));
    }
    let hosts = watched
        .iter()
        .map(|(_, sock, _)| sock.host())
        .collect::<io::Result<Vec<_>>>()?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    // Positions in `watched` still waited on. The host reports an error and
    // a hang-up whether asked for or not; where that is not what the
    // socket's list counts (a hang-up alone in the exceptional list), the
    // entry is dropped and the wait resumed, as select(2) keeps sleeping.
    let mut live: Vec<usize> = (0..watched.len()).collect();
    loop {
        let left = match (timeout, deadline) {
            (None, _) => None,
            (Some(_), Some(deadline)) => Some(deadline.saturating_duration_since(Instant::now())),
            // A timeout so long that the deadline does not fit an Instant.
            (Some(t), None) => Some(t),
        };
        let ready = poll_hosts(
            live.iter()
                .map(|&i| (&*hosts[i], watched[i].2))
                .collect::<Vec<_>>()
                .as_slice(),
            timeout_nanos(left),
        )?;
        let mut result = (Vec::new(), Vec::new(), Vec::new());
        let mut unmatched = Vec::new();
        for (index, revents) in ready {
            let Some(&position) = live.get(index) else {
                continue;
            };
            let (list, sock, _) = watched[position];
            let (set, out) = match list {
                0 => (SELECT_READ, &mut result.0),
                1 => (SELECT_WRITE, &mut result.1),
                _ => (SELECT_EXCEPT, &mut result.2),
            };
            if revents.intersects(set) {
                out.push(sock);
            } else {
                unmatched.push(position);
            }
        }
        let found = !(result.0.is_empty() && result.1.is_empty() && result.2.is_empty());
        if found || unmatched.is_empty() {
            return Ok(result);
        }
        live.retain(|position| !unmatched.contains(position));
        if left.is_some_and(|left| left.is_zero()) {
            return Ok(result);
        }
    }
}

/// Waits until any of `entries` is ready for the events it asks for, or
/// until `timeout` passes, and returns the ready ones as (position in
/// `entries`, `revents`), in the order given; corresponds to Python's
/// `select.poll()` object's `poll(timeout)` with every socket registered.
///
/// `revents` has [`Events::ERROR`] and [`Events::HANG_UP`] whether asked for
/// or not, as poll(2) reports them. A socket may be listed more than once.
/// `timeout` is as [`select`]'s: `None` waits without limit,
/// `Some(Duration::ZERO)` looks and returns at once, otherwise the result
/// is empty when it passes first, never earlier. An empty `entries` sleeps
/// for `timeout`; with `None` it fails with
/// [`ErrorKind::InvalidInput`](io::ErrorKind::InvalidInput). One host call,
/// however many entries (at most 65,536).
///
/// ```no_run
/// use std::time::Duration;
/// use sockshim::Events;
///
/// let a = sockshim::create_connection("127.0.0.1:7000", None)?;
/// let b = sockshim::create_connection("127.0.0.1:7001", None)?;
/// let entries = [(&a, Events::READABLE), (&b, Events::READABLE | Events::WRITABLE)];
/// for (index, revents) in sockshim::poll(&entries, Some(Duration::from_millis(500)))? {
///     println!("socket {index}: {revents:?}");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn poll(
    entries: &[(&Socket, Events)],
    timeout: Option<Duration>,
) -> io::Result<Vec<(usize, Events)>> {
    let hosts = entries
        .iter()
        .map(|(sock, _)| sock.host())
        .collect::<io::Result<Vec<Rc<bindings::Socket>>>>()?;
    let borrowed: Vec<(&bindings::Socket, Events)> = hosts
        .iter()
        .zip(entries)
        .map(|(host, (_, events))| (&**host, *events))
        .collect();
    poll_hosts(&borrowed, timeout_nanos(timeout))
}

/// The contract's `poll` over host sockets.
fn poll_hosts(
    entries: &[(&bindings::Socket, Events)],
    timeout: Option<u64>,
) -> io::Result<Vec<(usize, Events)>> {
    let wit: Vec<bindings::PollEntry<'_>> = entries
        .iter()
        .map(|(socket, events)| bindings::PollEntry {
            socket,
            events: (*events).into(),
        })
        .collect();
    let ready = bindings::poll(&wit, timeout).map_err(from_code)?;
    Ok(ready
        .into_iter()
        .map(|entry| {
            let index = usize::try_from(entry.index).unwrap_or(usize::MAX);
            (index, Events::from(entry.events))
        })
        .filter(|(index, _)| *index < entries.len())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let mut e = Events::READABLE | Events::HANG_UP;
        assert!(e.contains(Events::READABLE));
        assert!(!e.contains(Events::READABLE | Events::WRITABLE));
        assert!(e.intersects(Events::READABLE | Events::WRITABLE));
        assert!(!Events::empty().intersects(Events::all()));
        assert!(Events::empty().is_empty());
        e |= Events::WRITABLE;
        assert_eq!(e & Events::WRITABLE, Events::WRITABLE);
        e.remove(Events::READABLE);
        assert_eq!(e, Events::WRITABLE | Events::HANG_UP);
        assert_eq!(Events::from_bits_truncate(0xff), Events::all());
        assert_eq!(!Events::READABLE & Events::READABLE, Events::empty());
        assert_eq!(!Events::empty(), Events::all());
    }

    #[test]
    fn debug_names_the_flags() {
        assert_eq!(format!("{:?}", Events::empty()), "Events(empty)");
        assert_eq!(
            format!("{:?}", Events::all()),
            "Events(READABLE | PRIORITY | WRITABLE | ERROR | HANG_UP | READ_HANG_UP | EDGE_TRIGGERED)"
        );
    }

    #[test]
    fn wit_flags_round_trip() {
        for bits in 0..=Events::all().bits() {
            let events = Events::from_bits_truncate(bits);
            let wit: bindings::Events = events.into();
            assert_eq!(Events::from(wit), events);
            assert_eq!(wit.bits(), bits, "the WIT's flag order");
        }
    }

    #[test]
    fn select_sets_are_the_kernels() {
        assert!(SELECT_READ.contains(Events::READABLE | Events::HANG_UP | Events::ERROR));
        assert!(!SELECT_READ.intersects(Events::WRITABLE));
        assert_eq!(SELECT_WRITE, Events::WRITABLE | Events::ERROR);
        assert_eq!(SELECT_EXCEPT, Events::PRIORITY);
    }

    #[test]
    fn timeouts_in_nanoseconds() {
        assert_eq!(timeout_nanos(None), None);
        assert_eq!(timeout_nanos(Some(Duration::ZERO)), Some(0));
        assert_eq!(
            timeout_nanos(Some(Duration::from_millis(3))),
            Some(3_000_000)
        );
        assert_eq!(timeout_nanos(Some(Duration::MAX)), Some(u64::MAX));
    }
}
