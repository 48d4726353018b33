//! One wait for every socket of the thread: the sockets that [`AsyncSocket`]s
//! wait on are registered, edge-triggered, in one host selector, and wstd's
//! reactor is handed that selector's single pollable instead of one pollable
//! per waiting socket.
//!
//! wstd hands every pollable with a waiting task to `wasi:io/poll.poll`
//! whenever it looks for work, and the host makes a future of each; with a
//! thousand connections waiting, every wake-up cost a thousand. Through the
//! hub it costs one pollable, and when that pollable turns ready the hub
//! reads the selector once (`wait` with a zero timeout, which returns only
//! the sockets that turned ready) and wakes only their tasks.
//!
//! The hub drains the selector inside the waker that wstd calls for the
//! selector's pollable: that waker is registered with wstd for as long as
//! any task waits through the hub (but while the hub is parked, below),
//! and dropped when the last one stops waiting, so that `block_on` can end
//! (and so that nothing the hub holds belongs to a reactor that has
//! ended).
//!
//! Readiness is edge-triggered, as mio's and tokio's is: a socket's bit is
//! set when the selector reports it and cleared by the waiter when an
//! operation fails with `WouldBlock`, right before it waits, or when a
//! stream's receive or send came back short ([`Registration::use_up`]): it
//! emptied the receive queue or filled the send buffer, so the next one
//! waits for the next report instead of first failing with `WouldBlock`,
//! one host call fewer per message, as tokio's streams do. The plugin has
//! one thread, and the selector is read only between tasks, so no report
//! can fall between that operation and the clearing: a report that comes
//! after it wakes the waiter, one from before it at worst wakes it once for
//! nothing. A hang-up or an error is final and never cleared, since no
//! report follows it.
//!
//! After every task it runs, wstd looks at its pollables (a
//! `wasi:io/poll.poll`, a host call) while other tasks are ready. A drain
//! that wakes tasks therefore takes the selector's pollable off wstd's
//! reactor (it "parks") and queues a [`Rearm`] task behind the woken ones,
//! which hands the pollable back once they have run: a batch of wake-ups
//! costs a few host calls instead of one per task, as one epoll_wait(2)
//! serves a native event loop's whole batch.
//!
//! Where the hub cannot be had (the selector would pass the plugin's limit
//! of open sockets), a wait falls back to the socket's own pollable.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use rustc_hash::FxHashMap;
use wstd::runtime::{AsyncPollable, WaitFor};

use crate::bindings;
use crate::readiness::Events;
use crate::socket::Socket;

/// A direction a task waits for: the bit it has in [`Slot::ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Read = 1,
    Write = 2,
}

impl Direction {
    /// What a socket's own pollable is asked for, to wait this way.
    pub(super) fn interest(self) -> Events {
        match self {
            Direction::Read => Events::READABLE,
            Direction::Write => Events::WRITABLE,
        }
    }
}

/// What the selector reports that wakes a reader, and a writer. An error or
/// a hang-up wakes both, so that their next operation reports it.
const WAKES_READER: Events = Events(
    Events::READABLE.0
        | Events::PRIORITY.0
        | Events::READ_HANG_UP.0
        | Events::ERROR.0
        | Events::HANG_UP.0,
);
const WAKES_WRITER: Events = Events(Events::WRITABLE.0 | Events::ERROR.0 | Events::HANG_UP.0);

/// What the selector reports that is final for a reader, and for a
/// writer: no later report follows it, so it is never cleared.
const CLOSES_READER: Events = Events(Events::READ_HANG_UP.0 | Events::ERROR.0 | Events::HANG_UP.0);
const CLOSES_WRITER: Events = Events(Events::ERROR.0 | Events::HANG_UP.0);

/// A registered socket: which directions the selector reported since they
/// were last cleared, which it reported closed, and who waits for each.
#[derive(Default)]
struct Slot {
    ready: u8,
    closed: u8,
    readers: Waiters,
    writers: Waiters,
}

impl Slot {
    fn waiters(&mut self, direction: Direction) -> &mut Waiters {
        match direction {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

/// The tasks that wait one way on a socket. Nearly always one, which is
/// kept in the slot itself: registering and waking it then touch no other
/// allocation. (With a buffer of its own per socket, each wait of a
/// thousand-connection server missed the cache on it: a third of the
/// samples of the waiting code.)
#[derive(Default)]
struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Waiters {
    /// Adds `waker` unless it is there already.
    fn add(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }

    /// Wakes and forgets every waiter; true if there was one.
    fn wake_all(&mut self) -> bool {
        let first = self.first.take();
        let woke = first.is_some();
        first
            .into_iter()
            .chain(self.more.drain(..))
            .for_each(Waker::wake);
        woke
    }
}

struct Hub {
    selector: bindings::Selector,
    slots: FxHashMap<u64, Slot>,
    next_key: u64,
    /// How many [`EdgeWait`]s are pending.
    waiting: usize,
    /// The selector's pollable on wstd's reactor, while `waiting` is not
    /// zero.
    pollable: Option<AsyncPollable>,
    /// wstd's wait on `pollable`, with [`DrainOnWake`] as its waker, while
    /// `waiting` is not zero and the hub is not parked.
    driver: Option<WaitFor>,
    /// A drain woke tasks and a [`Rearm`] is queued behind them: the
    /// driver is dropped by the first of them to touch the hub, and no one
    /// but the `Rearm` starts it again.
    parked: bool,
    /// [`DrainOnWake`], made once: the driver is armed again after every
    /// batch of wake-ups.
    drain_on_wake: Waker,
}

thread_local! {
    /// `None` until the first wait; `Some(None)` when the hub could not be
    /// made (then waits use each socket's own pollable).
    static HUB: RefCell<Option<Option<Hub>>> = const { RefCell::new(None) };
}

/// Runs `f` on the thread's hub, making it first if need be; `None` when
/// there is none (or it is in use, which only a waker woken inside the
/// hub's own code could find).
fn with_hub<R>(f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
    HUB.with(|cell| {
        let mut cell = cell.try_borrow_mut().ok()?;
        let hub = cell.get_or_insert_with(|| {
            bindings::Selector::create().ok().map(|selector| Hub {
                selector,
                slots: FxHashMap::default(),
                next_key: 0,
                waiting: 0,
                pollable: None,
                driver: None,
                parked: false,
                drain_on_wake: Waker::from(Arc::new(DrainOnWake)),
            })
        });
        hub.as_mut().map(f)
    })
}

/// An [`AsyncSocket`](super::AsyncSocket)'s place in the hub: registered
/// the first time it waits, unregistered when it is dropped.
#[derive(Debug, Default)]
pub(super) struct Registration {
    key: Cell<Option<u64>>,
}

impl Registration {
    /// Clears `direction` for `socket`, whose operation just failed with
    /// `WouldBlock`, and returns what waits for the selector to report it
    /// again; `None` when the hub cannot take the socket (then wait on its
    /// own pollable).
    pub(super) fn wait(&self, socket: &Socket, direction: Direction) -> Option<EdgeWait> {
        let key = match self.key.get() {
            Some(key) => key,
            None => {
                let host = socket.host().ok()?;
                let key = with_hub(|hub| {
                    let key = hub.next_key;
                    // The peer's hang-up is asked for too, so that data and
                    // the end of the stream that arrive together are reported
                    // as such, and the end stays known once the data is read.
                    let interest = Events::READABLE
                        | Events::WRITABLE
                        | Events::READ_HANG_UP
                        | Events::EDGE_TRIGGERED;
                    hub.selector.register(&host, key, interest.into()).ok()?;
                    hub.next_key += 1;
                    hub.slots.insert(key, Slot::default());
                    Some(key)
                })??;
                self.key.set(Some(key));
                key
            }
        };
        with_hub(|hub| {
            let slot = hub.slots.get_mut(&key)?;
            slot.ready &= !(direction as u8);
            Some(EdgeWait {
                key,
                direction,
                counted: false,
            })
        })?
    }

    /// Whether the socket is in the hub and the selector has reported
    /// nothing for `direction` since the last operation that way used up
    /// what there was: then trying before the next report would only fail
    /// with `WouldBlock`.
    pub(super) fn used_up(&self, direction: Direction) -> bool {
        let Some(key) = self.key.get() else {
            return false;
        };
        with_hub(|hub| {
            hub.slots
                .get(&key)
                .is_some_and(|slot| (slot.ready | slot.closed) & direction as u8 == 0)
        })
        .unwrap_or(false)
    }

    /// Records that an operation `direction` used up what the selector
    /// reported: a stream's receive that came back shorter than asked
    /// emptied the receive queue, a send that came back short filled the
    /// send buffer. The kernel reports the socket again when that changes.
    pub(super) fn use_up(&self, direction: Direction) {
        let Some(key) = self.key.get() else {
            return;
        };
        with_hub(|hub| {
            if let Some(slot) = hub.slots.get_mut(&key) {
                slot.ready &= !(direction as u8);
            }
        });
    }

    /// Takes the socket out of the hub, waking whoever waits on it: a
    /// closed socket is reported no more, and the waiters' next try fails.
    pub(super) fn forget(&self) {
        let Some(key) = self.key.take() else {
            return;
        };
        with_hub(|hub| {
            if let Some(mut slot) = hub.slots.remove(&key) {
                slot.readers.wake_all();
                slot.writers.wake_all();
            }
            // The socket may be closed already, which forgets it too.
            let _ = hub.selector.unregister(key);
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Until the selector reports the socket under `key` ready for
/// `direction` (or the socket leaves the hub).
#[must_use = "futures do nothing unless polled or .awaited"]
pub(super) struct EdgeWait {
    key: u64,
    direction: Direction,
    /// Whether this wait is counted in [`Hub::waiting`].
    counted: bool,
}

impl Future for EdgeWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let (key, direction) = (this.key, this.direction);
        let mut parked_driver = None;
        let outcome = with_hub(|hub| {
            if hub.parked {
                // A drain woke tasks, and wstd need not look at the
                // pollable until they have run: the `Rearm` behind them
                // hands it back.
                parked_driver = hub.driver.take();
            }
            let reported = |hub: &Hub| {
                hub.slots
                    .get(&key)
                    .is_none_or(|slot| (slot.ready | slot.closed) & direction as u8 != 0)
            };
            if reported(hub) {
                return true;
            }
            if hub.driver.is_none() && !hub.parked {
                hub.arm();
                if reported(hub) {
                    return true;
                }
            }
            if let Some(slot) = hub.slots.get_mut(&key) {
                slot.waiters(direction).add(cx.waker());
            }
            if !std::mem::replace(&mut this.counted, true) {
                hub.waiting += 1;
            }
            false
        });
        // Dropped outside the hub's borrow: it deregisters from wstd.
        drop(parked_driver);
        match outcome {
            // The hub is gone, or in use: look again on the next turn.
            None => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(true) => {
                this.uncount();
                Poll::Ready(())
            }
            Some(false) => Poll::Pending,
        }
    }
}

impl EdgeWait {
    /// Stops counting this wait; once none waits, takes the hub's pollable
    /// off wstd's reactor, which then no longer waits on it (a wait that
    /// started the pollable and found its report at once was never
    /// counted, but leaves none waiting all the same).
    fn uncount(&mut self) {
        let counted = std::mem::take(&mut self.counted);
        let off = with_hub(|hub| {
            if counted {
                hub.waiting = hub.waiting.saturating_sub(1);
            }
            if hub.waiting == 0 {
                (hub.driver.take(), hub.pollable.take())
            } else {
                (None, None)
            }
        });
        // Dropped outside the hub's borrow: they deregister from wstd.
        drop(off);
    }
}

impl Drop for EdgeWait {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl Hub {
    /// Has wstd wait on the selector's pollable with [`DrainOnWake`] as its
    /// waker; if the pollable is ready already, drains the selector
    /// instead, and parks if that woke a task.
    fn arm(&mut self) {
        let pollable = match &self.pollable {
            Some(pollable) => pollable.clone(),
            None => {
                let pollable = super::async_pollable(self.selector.subscribe());
                self.pollable.insert(pollable).clone()
            }
        };
        let waker = self.drain_on_wake.clone();
        let mut cx = Context::from_waker(&waker);
        // wstd keeps the waker only from a poll that finds the pollable not
        // ready: drain until one does. Each drain takes every report there
        // is, so this ends once no new one comes between a drain and the
        // look after it.
        loop {
            let mut driver = pollable.wait_for();
            if Pin::new(&mut driver).poll(&mut cx).is_pending() {
                self.driver = Some(driver);
                return;
            }
            if self.drain() {
                self.park();
                return;
            }
        }
    }

    /// Queues a [`Rearm`] behind the tasks a drain just woke (wstd's ready
    /// list is first in, first out), unless one is queued already.
    fn park(&mut self) {
        if !std::mem::replace(&mut self.parked, true) {
            wstd::runtime::spawn(Rearm).detach();
        }
    }

    /// Takes every report the selector has and wakes whoever waits for it;
    /// true if it woke anyone.
    fn drain(&mut self) -> bool {
        let Ok(reports) = self.selector.wait(Some(0), 0) else {
            // A failed wait (a stopped plugin) ends it at the next call.
            return false;
        };
        let mut woke = false;
        for report in reports {
            let Some(slot) = self.slots.get_mut(&report.key) else {
                continue;
            };
            let events = Events::from(report.events);
            if events.intersects(CLOSES_READER) {
                slot.closed |= Direction::Read as u8;
            }
            if events.intersects(CLOSES_WRITER) {
                slot.closed |= Direction::Write as u8;
            }
            if events.intersects(WAKES_READER) {
                slot.ready |= Direction::Read as u8;
                woke |= slot.readers.wake_all();
            }
            if events.intersects(WAKES_WRITER) {
                slot.ready |= Direction::Write as u8;
                woke |= slot.writers.wake_all();
            }
        }
        woke
    }
}

/// The task that hands the selector's pollable back to wstd after a drain
/// woke tasks: queued behind them, it runs once each has run, and has wstd
/// wait on the pollable again if anyone still waits.
struct Rearm;

impl Future for Rearm {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let stale = with_hub(|hub| {
            hub.parked = false;
            // Still registered if none of the woken tasks came back to
            // wait.
            let stale = hub.driver.take();
            if hub.waiting > 0 {
                hub.arm();
            }
            stale
        });
        // Dropped outside the hub's borrow: it deregisters from wstd.
        drop(stale);
        Poll::Ready(())
    }
}

/// The waker wstd calls when the hub's pollable is ready: it reads the
/// selector and wakes the tasks of the sockets it reports. wstd keeps it
/// registered until the hub drops its [`WaitFor`], and calls it at each
/// look that finds the pollable ready.
struct DrainOnWake;

impl Wake for DrainOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Skipped if the hub is in use, which cannot happen while wstd
        // looks: then the pollable stays ready and the next look drains.
        // The driver cannot be dropped here, inside wstd's look (it holds
        // the lock a deregistration takes): parking leaves that to a task.
        with_hub(|hub| {
            if hub.drain() {
                hub.park();
            }
        });
    }
}
