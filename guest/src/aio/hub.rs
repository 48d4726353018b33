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
//! any task waits through the hub, and dropped when the last one stops
//! waiting, so that `block_on` can end (and so that nothing the hub holds
//! belongs to a reactor that has ended).
//!
//! Readiness is edge-triggered, as mio's and tokio's is: a socket's bit is
//! set when the selector reports it and cleared by the waiter when an
//! operation fails with `WouldBlock`, right before it waits. The plugin has
//! one thread, and the selector is read only between tasks, so no report
//! can fall between that failure and the clearing: a report that comes
//! after it wakes the waiter, one from before it at worst wakes it once for
//! nothing.
//!
//! Where the hub cannot be had (the selector would pass the plugin's limit
//! of open sockets), a wait falls back to the socket's own pollable.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use wstd::runtime::WaitFor;

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

/// A registered socket: which directions the selector reported since they
/// were last cleared, and who waits for each.
#[derive(Default)]
struct Slot {
    ready: u8,
    readers: Vec<Waker>,
    writers: Vec<Waker>,
}

impl Slot {
    fn waiters(&mut self, direction: Direction) -> &mut Vec<Waker> {
        match direction {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

struct Hub {
    selector: bindings::Selector,
    slots: HashMap<u64, Slot>,
    next_key: u64,
    /// How many [`EdgeWait`]s are pending.
    waiting: usize,
    /// The selector's pollable as wstd waits on it, with [`DrainOnWake`]
    /// as its waker, while `waiting` is not zero.
    driver: Option<WaitFor>,
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
                slots: HashMap::new(),
                next_key: 0,
                waiting: 0,
                driver: None,
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
                    let interest = Events::READABLE | Events::WRITABLE | Events::EDGE_TRIGGERED;
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

    /// Takes the socket out of the hub, waking whoever waits on it: a
    /// closed socket is reported no more, and the waiters' next try fails.
    pub(super) fn forget(&self) {
        let Some(key) = self.key.take() else {
            return;
        };
        with_hub(|hub| {
            if let Some(slot) = hub.slots.remove(&key) {
                slot.readers
                    .into_iter()
                    .chain(slot.writers)
                    .for_each(Waker::wake);
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
        let outcome = with_hub(|hub| {
            let reported = |hub: &Hub| {
                hub.slots
                    .get(&key)
                    .is_none_or(|slot| slot.ready & direction as u8 != 0)
            };
            if reported(hub) {
                return true;
            }
            if hub.driver.is_none() {
                hub.start_driver();
                if reported(hub) {
                    return true;
                }
            }
            if let Some(slot) = hub.slots.get_mut(&key) {
                let waiters = slot.waiters(direction);
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
            }
            if !std::mem::replace(&mut this.counted, true) {
                hub.waiting += 1;
            }
            false
        });
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
        let driver = with_hub(|hub| {
            if counted {
                hub.waiting = hub.waiting.saturating_sub(1);
            }
            if hub.waiting == 0 {
                hub.driver.take()
            } else {
                None
            }
        });
        // Dropped outside the hub's borrow: it deregisters from wstd.
        drop(driver);
    }
}

impl Drop for EdgeWait {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl Hub {
    /// Hands the selector's pollable to wstd with [`DrainOnWake`] as its
    /// waker, reading the selector for as long as the pollable is ready.
    fn start_driver(&mut self) {
        let pollable = self.selector.subscribe();
        let mut driver = super::async_pollable(pollable).wait_for();
        let waker = Waker::from(Arc::new(DrainOnWake));
        let mut cx = Context::from_waker(&waker);
        // wstd keeps the waker only from a poll that found the pollable not
        // ready: drain until one does. Each drain takes every report there
        // is, so this ends once no new one comes between a drain and the
        // look after it.
        while Pin::new(&mut driver).poll(&mut cx).is_ready() {
            self.drain();
        }
        self.driver = Some(driver);
    }

    /// Takes every report the selector has and wakes whoever waits for it.
    fn drain(&mut self) {
        let Ok(reports) = self.selector.wait(Some(0), 0) else {
            // A failed wait (a stopped plugin) ends it at the next call.
            return;
        };
        for report in reports {
            let Some(slot) = self.slots.get_mut(&report.key) else {
                continue;
            };
            let events = Events::from(report.events);
            if events.intersects(WAKES_READER) {
                slot.ready |= Direction::Read as u8;
                slot.readers.drain(..).for_each(Waker::wake);
            }
            if events.intersects(WAKES_WRITER) {
                slot.ready |= Direction::Write as u8;
                slot.writers.drain(..).for_each(Waker::wake);
            }
        }
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
        with_hub(Hub::drain);
    }
}
