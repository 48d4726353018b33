//! The per-plugin limit on open host descriptors: sockets, selectors and
//! socket pollables. A [`Slot`] is one of them, given back when it drops,
//! so a socket closed late (a lingering close, finished on tokio's blocking
//! pool) counts until it is really closed.

use crate::bindings::ErrorCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many descriptors a plugin may hold, and how many it holds.
#[derive(Debug)]
pub(crate) struct Quota {
    max: AtomicUsize,
    open: AtomicUsize,
}

impl Quota {
    pub(crate) fn new(max: usize) -> Arc<Quota> {
        Arc::new(Quota {
            max: AtomicUsize::new(max),
            open: AtomicUsize::new(0),
        })
    }

    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes one slot, or `limit-reached` when every slot is taken.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn reserve(self: &Arc<Self>) -> Result<Slot, ErrorCode> {
        self.reserve_beside(0)
    }

    /// [`Quota::reserve`], with `others` descriptors of the plugin's that
    /// this quota does not hold (wasmtime-wasi's sockets) taking slots too.
    pub(crate) fn reserve_beside(self: &Arc<Self>, others: usize) -> Result<Slot, ErrorCode> {
        let max = self.max();
        let limit = max.saturating_sub(others);
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(Arc::clone(self))),
            Err(_) => Err(ErrorCode::LimitReached(format!(
                "this plugin may have at most {max} sockets open \
                 (selectors and socket pollables included)"
            ))),
        }
    }
}

/// One descriptor counted against a [`Quota`], until dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Quota>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_given_back_when_dropped() {
        let quota = Quota::new(2);
        let a = quota.reserve().unwrap();
        let b = quota.reserve().unwrap();
        assert!(matches!(quota.reserve(), Err(ErrorCode::LimitReached(_))));
        assert_eq!(quota.open(), 2);
        drop(a);
        let c = quota.reserve().unwrap();
        drop((b, c));
        assert_eq!(quota.open(), 0);
        quota.set_max(0);
        assert!(quota.reserve().is_err());
    }
}
