//! `recv`'s result, received straight into the plugin's memory.
//!
//! A host function that returns a `Vec<u8>` makes two copies of received
//! bytes: the kernel's into the host's buffer, then the canonical ABI's from
//! there into a buffer it allocates in the plugin. [`Received`] is lowered
//! instead of `result<list<u8>, error-code>`: its lowering allocates the
//! plugin's buffer (the plugin's `realloc`) and calls recv(2) into it, so
//! the kernel's copy is the only one.
//!
//! The allocation is never shrunk afterwards (a `realloc` to a smaller
//! size): componentize-py's `cabi_realloc` panics on a shrink, so a Python
//! plugin trapped on every receive above 4 KiB, and a plugin's `free` may
//! take the list's length for the allocation's size. `recv` allocates
//! exactly the bytes the socket's receive queue holds (`FIONREAD`, at most
//! `max-len`), all of which the recv(2) then takes; `recv-into` allocates
//! the whole lent buffer, which the plugin owns whatever the length of the
//! list at its start. Lowering cannot wait, so the host function first
//! waits, through the deadline loop, until a look at the queue finds bytes:
//! `FIONREAD`, whose count `recv` then allocates, or when that says none a
//! one-byte `MSG_PEEK`, which tells the end of the stream and a pending
//! error from a socket to wait for (this whole look is "the peek" below).
//! The recv(2) during lowering then finds the bytes the peek saw, as no one
//! else reads this socket, and (through [`call_now_draining`]) clears the
//! readiness tokio remembers when it drains the socket, so the next `recv`
//! waits instead of making a peek bound to fail. Small receives skip the
//! peek and copy: for a few bytes a second system call costs more than the
//! copy saves. Not so a small `recv-into` that needs no peek (below: on a
//! non-blocking socket, or one that waits on its plugin's thread): it is
//! placed, as a large one is, and spares the host buffer, the plugin's
//! allocation of the list and the copy out of it.
//!
//! A non-blocking socket never waits, so it skips the peek: the receive
//! during lowering answers `would-block` itself, into a lent buffer, or,
//! for `recv`, after `FIONREAD` found the queue empty and before anything
//! is allocated in the plugin.
//!
//! The receive during lowering can be a recvmsg(2) that also learns how
//! many bytes the queue still holds (`TCP_INQ`, asked for with a stream
//! socket's first large receive that can use it, which a non-blocking
//! `recv-into` cannot; Linux 4.18 and later). When some are left, which a
//! bulk receiver finds nearly every time, the next large receive skips the
//! peek ([`KnownQueued`]): nothing else reads the socket, so those bytes
//! are there for it. Then a receive costs one system call, as it does in
//! wasi:sockets 0.3. recvmsg(2) costs about 0.4 µs more than recv(2) here,
//! so the kernel is asked only by a receive that may take all the bytes
//! known to wait: while more are known than a receive takes, it is a plain
//! recv(2), and what it leaves is known without asking. The figure is
//! forgotten by every other receive and by `shutdown`, so it is never
//! stale; a kernel that does not report it just leaves every receive to
//! peek.
//!
//! A socket that waits on its plugin's thread peeks too for `recv`, though
//! the receive during lowering could wait there itself: lowering allocates
//! the buffer before the receive, and a receive that then failed
//! (`would-block`, `timeout`, a stopped wait) or found the end of the stream
//! would leave a buffer in the plugin that nothing owns, once per call.
//! `recv-into` is `recv` for a plugin that lends the buffer (its import
//! allocator answers with a buffer it owns, Python's `recv_into`), so
//! nothing is lost when that happens: on such a socket it skips the peek,
//! one system call in two of a bulk receive, and waits during lowering
//! ([`Received::OnThread`]). On the reactor it is `recv`.
//!
//! This needs wasmtime's `ComponentType`/`Lower` traits, whose lowering
//! methods are hidden from wasmtime's documentation: they are what
//! `bindgen!` and the derive macros generate, pinned here by the exact
//! wasmtime version in Cargo.toml.

use crate::bindings::{ErrorCode, SocketAddress};
use crate::deadline::{Deadline, call_now_draining, call_waiting_on_thread};
use crate::socket::Shared;
use crate::sys::{self, StopSignal};
use socket2::Socket;
use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use tokio::io::Interest;
use wasmtime::ValRaw;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

/// Receives of at most this many bytes are copied from a host buffer
/// rather than placed, unless into a lent buffer without a peek first.
pub const PLACE_ABOVE: u64 = 4 << 10;

/// Whether the plugin lends the buffer a receive's result is allocated in
/// (`recv-into`), so that an allocation made before the outcome is known
/// is not lost when the receive fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lent {
    /// `recv-into`: the plugin's import allocator answers with a buffer
    /// the plugin owns.
    Yes,
    /// `recv`: the allocation is a new buffer the plugin will own.
    No,
}

/// How many bytes at least a stream socket's receive queue holds after a
/// receive into the plugin's memory: what the kernel last said (`TCP_INQ`,
/// tcp(7)) or counted (`FIONREAD`), less what was received since. The next
/// receive finds them without waiting, as no one else reads the socket, so
/// it need not peek first. A count from `TCP_INQ` is kept only when more
/// than one: after the peer's FIN, Linux says 1 for an empty queue.
#[derive(Debug, Default)]
pub(crate) struct KnownQueued {
    /// 0 until the kernel is asked to report; 1 when it does; 2 when it
    /// cannot (not a TCP socket, an old kernel).
    reporting: AtomicU8,
    bytes: AtomicUsize,
}

impl KnownQueued {
    /// The bytes known to wait, forgotten: whatever the caller receives
    /// next makes the figure stale.
    pub(crate) fn take(&self) -> usize {
        self.bytes.swap(0, Ordering::Relaxed)
    }

    /// The bytes known to wait, kept.
    #[cfg(test)]
    pub(crate) fn known(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Asks the kernel (once per socket) to report the queue with each
    /// receive into the plugin's memory.
    pub(crate) fn ask(&self, sock: &Socket) {
        if self.reporting.load(Ordering::Relaxed) == 0 {
            let on = sys::report_queued_on_receive(sock).is_ok();
            self.reporting
                .store(if on { 1 } else { 2 }, Ordering::Relaxed);
        }
    }

    /// Whether the kernel reports the queue with each receive: then a
    /// receive reads it, with recvmsg(2) and its control message, else it
    /// is a plain recv(2).
    fn reporting(&self) -> bool {
        self.reporting.load(Ordering::Relaxed) == 1
    }
}

/// The outcome of a `recv` before it is lowered into the plugin.
pub enum Received {
    /// Bytes wait on the socket: receive up to this many into the plugin's
    /// memory during lowering, into a buffer the plugin lends or not; the
    /// last field is how many the kernel said wait, 0 if it did not say.
    Ready(Arc<Shared>, usize, Lent, usize),
    /// A receive into a lent buffer on a socket that waits on its thread:
    /// during lowering, wait (ppoll(2), until `deadline` or `stop`) and
    /// receive up to `max_len` bytes into the plugin's memory.
    OnThread {
        shared: Arc<Shared>,
        stop: Arc<StopSignal>,
        max_len: usize,
        deadline: Deadline,
    },
    /// Bytes already received (a small receive, the end of the stream).
    Copied(Vec<u8>),
    /// The receive failed.
    Failed(ErrorCode),
}

impl Received {
    /// The outcome as a host buffer: what is ready is received into one.
    pub fn into_vec(self) -> Result<Vec<u8>, ErrorCode> {
        match self {
            Received::Copied(bytes) => Ok(bytes),
            Received::Failed(code) => Err(code),
            Received::Ready(shared, max_len, _, known) => receive_copied(&shared, max_len, known),
            Received::OnThread {
                shared,
                stop,
                max_len,
                deadline,
            } => {
                let mut buf = Vec::with_capacity(max_len);
                let recv = |s: &Socket| sys::recv_to_spare(s, &mut buf);
                let sock = shared.io.socket();
                call_waiting_on_thread(sock, &stop, Interest::READABLE, deadline, recv)?;
                Ok(buf)
            }
        }
    }
}

/// Up to `max_len` bytes that are ready on `shared`, received into a host
/// buffer (not zeroed: only what arrives is written); `known` bytes at
/// least wait ([`KnownQueued`]).
fn receive_copied(shared: &Shared, max_len: usize, known: usize) -> Result<Vec<u8>, ErrorCode> {
    let mut buf = Vec::with_capacity(max_len);
    receive_now(
        shared,
        known,
        max_len,
        |s, tell| sys::recv_to_spare_telling_queued(s, &mut buf, tell),
        |n| n < max_len,
    )?;
    Ok(buf)
}

/// One receive of at most `len` bytes, now, where nothing can be awaited
/// ([`call_now_draining`]), when at least `known` bytes wait; notes how
/// many wait after it ([`KnownQueued`]).
///
/// While more than `len` bytes are known to wait, at least the difference
/// still waits after the receive, as no one else takes them: the receive is
/// a plain recv(2). Only one that may take all that is known asks the
/// kernel what is left (`recv(socket, tell)` with `tell`: recvmsg(2) and
/// its control message, about 0.4 µs more per call here). A bulk receiver
/// whose queue holds many buffers' worth then asks once per that many
/// receives. The queue is empty after it as the kernel says, or, where it
/// does not say, as `drained_unsaid` guesses from the count received.
fn receive_now(
    shared: &Shared,
    known: usize,
    len: usize,
    mut recv: impl FnMut(&Socket, bool) -> io::Result<(usize, Option<usize>)>,
    drained_unsaid: impl Fn(usize) -> bool,
) -> io::Result<usize> {
    let tell = known <= len && shared.queued.reporting();
    let said = Cell::new(None);
    let op = |s: &Socket| {
        let (n, queued) = recv(s, tell)?;
        said.set(queued);
        Ok(n)
    };
    // Linux says 1 for an empty queue after the peer's FIN: a single byte
    // left is not told from the end of the stream, which the next receive
    // then peeks for.
    let left = |n: usize| match said.get() {
        Some(queued) => (queued > 1).then_some(queued),
        None => known.checked_sub(n).filter(|left| *left > 0),
    };
    // Emptied as the kernel says, or, where it did not say, when no bytes
    // are known left and the count received suggests so.
    let drained = |n: &usize| {
        *n > 0
            && match said.get() {
                Some(queued) => queued == 0,
                None => left(*n).is_none() && drained_unsaid(*n),
            }
    };
    let n = call_now_draining(&shared.io, Interest::READABLE, op, drained)?;
    if n > 0 {
        shared
            .queued
            .bytes
            .store(left(n).unwrap_or(0), Ordering::Relaxed);
    }
    Ok(n)
}

/// Whether a receive of `n` bytes into a buffer of `max_len` drained the
/// socket: fewer bytes than asked for, and not the end of the stream.
pub fn drains(max_len: usize) -> impl Fn(&usize) -> bool {
    move |n| *n > 0 && *n < max_len
}

/// The lowered type: what the WIT says `recv` returns.
type Wit = Result<PlacedList, ErrorCode>;

impl Received {
    /// Turns `self` into the value the plugin gets, receiving into (or
    /// copying to) a buffer allocated in its memory.
    fn place<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<Wit> {
        match self {
            Received::Failed(code) => Ok(Err(code.clone())),
            Received::Copied(bytes) => copy(cx, Ok(bytes)),
            Received::Ready(shared, max_len, lent, known) => {
                let (len, known) = match lent {
                    Lent::Yes => (*max_len, *known),
                    // What waits, which the recv(2) takes whole.
                    Lent::No if *known > 0 => ((*known).min(*max_len), *known),
                    // Not counted (a non-blocking socket, or a byte the
                    // peek saw arrive after `FIONREAD`): counted now; when
                    // nothing waits (a non-blocking socket's queue is
                    // empty, an error came in between), through a host
                    // buffer, then copied.
                    Lent::No => match sys::queued_bytes(shared.io.socket()) {
                        Ok(0) | Err(_) => {
                            let bytes = receive_copied(shared, *max_len, 0);
                            return copy(cx, bytes.as_deref().map_err(Clone::clone));
                        }
                        Ok(queued) => (queued.min(*max_len), queued),
                    },
                };
                let max_len = *max_len;
                place_received(cx, len, |buf| {
                    // Where the kernel does not say what is left: fewer
                    // bytes than asked for, or all that waited when that
                    // was less than the plugin asked for, empty the queue.
                    let drained_unsaid = |n| n < len || len < max_len;
                    // The peek saw bytes (or the end) that recv(2) then did
                    // not find: nothing else reads this socket, so an error
                    // here is one the kernel reported in between.
                    let recv = |s: &Socket, tell| sys::recv_telling_queued(s, buf, tell);
                    receive_now(shared, known, len, recv, drained_unsaid).map_err(ErrorCode::from)
                })
            }
            Received::OnThread {
                shared,
                stop,
                max_len,
                deadline,
            } => place_received(cx, *max_len, |buf| {
                let recv = |s: &Socket| sys::recv(s, buf);
                let sock = shared.io.socket();
                call_waiting_on_thread(sock, stop, Interest::READABLE, *deadline, recv)
            }),
        }
    }
}

/// Allocates `len` bytes in the plugin and has `receive` fill them; the
/// list is what it received, at the allocation's start. The allocation is
/// not shrunk (see the module's documentation): the caller allocates what
/// will be filled, or a buffer the plugin lends.
pub(crate) fn place_received<T>(
    cx: &mut LowerContext<'_, T>,
    len: usize,
    receive: impl FnOnce(&mut [u8]) -> Result<usize, ErrorCode>,
) -> wasmtime::Result<Wit> {
    let ptr = alloc(cx, len)?;
    let received = receive(guest_bytes(cx, ptr, len)?);
    Ok(received.map(|len| PlacedList { ptr, len }))
}

/// `bytes` (or the error) copied into an allocation of exactly their length
/// in the plugin.
fn copy<T>(cx: &mut LowerContext<'_, T>, bytes: Result<&[u8], ErrorCode>) -> wasmtime::Result<Wit> {
    match bytes {
        Err(code) => Ok(Err(code)),
        Ok(bytes) => {
            let ptr = alloc(cx, bytes.len())?;
            guest_bytes(cx, ptr, bytes.len())?.copy_from_slice(bytes);
            Ok(Ok(PlacedList {
                ptr,
                len: bytes.len(),
            }))
        }
    }
}

/// Allocates `len` bytes in the plugin. An empty list is allocated too
/// (`realloc` of size zero), as wasmtime's own lowering of a list does: a
/// plugin may free every list it is given, and componentize-py's Python
/// runtime does, so a made-up pointer for an empty list (the end of a
/// stream) made it free memory it never allocated.
fn alloc<T>(cx: &mut LowerContext<'_, T>, len: usize) -> wasmtime::Result<usize> {
    cx.realloc(0, 0, 1, len)
}

/// The plugin's memory at `ptr..ptr + len`, checked: a `realloc` that
/// returns a buffer outside memory is the plugin's bug, and a trap.
fn guest_bytes<'a, T>(
    cx: &'a mut LowerContext<'_, T>,
    ptr: usize,
    len: usize,
) -> wasmtime::Result<&'a mut [u8]> {
    ptr.checked_add(len)
        .and_then(|end| cx.as_slice_mut().get_mut(ptr..end))
        .ok_or_else(|| wasmtime::format_err!("the plugin's realloc returned memory out of bounds"))
}

/// Makes `$received`, whose `place` receives into the plugin's memory and
/// returns a `$wit`, lower exactly as `$wit` does.
macro_rules! lowers_as {
    ($received:ty, $wit:ty) => {
        // SAFETY: `$received` lowers exactly as `$wit`: its `Lower`
        // representation, ABI and type check are that type's, and lowering
        // delegates to the `$wit` that `place` returns.
        unsafe impl ComponentType for $received {
            type Lower = <$wit as ComponentType>::Lower;
            const ABI: CanonicalAbiInfo = <$wit as ComponentType>::ABI;

            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <$wit as ComponentType>::typecheck(ty, types)
            }
        }

        // SAFETY: as for `ComponentType`; the lowering writes what `$wit`
        // writes.
        unsafe impl Lower for $received {
            fn linear_lower_to_flat<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                dst: &mut MaybeUninit<Self::Lower>,
            ) -> wasmtime::Result<()> {
                self.place(cx)?.linear_lower_to_flat(cx, ty, dst)
            }

            fn linear_lower_to_memory<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                offset: usize,
            ) -> wasmtime::Result<()> {
                self.place(cx)?.linear_lower_to_memory(cx, ty, offset)
            }
        }
    };
}

// `result<list<u8>, error-code>`.
lowers_as!(Received, Wit);

/// A `list<u8>` already in the plugin's memory: lowering writes its
/// pointer and length.
pub struct PlacedList {
    ptr: usize,
    len: usize,
}

// SAFETY: a `list<u8>` is a pointer pair, as for `[u8]`.
unsafe impl ComponentType for PlacedList {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes the pair as wasmtime writes a list's: two i64 flat values
// (wasmtime's "WRITEPTR64"), or two little-endian u32 in memory.
unsafe impl Lower for PlacedList {
    fn linear_lower_to_flat<T>(
        &self,
        _cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        dst.write([ValRaw::i64(self.ptr as i64), ValRaw::i64(self.len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let ptr = u32::try_from(self.ptr)?;
        let len = u32::try_from(self.len)?;
        *cx.get::<4>(offset) = ptr.to_le_bytes();
        *cx.get::<4>(offset + 4) = len.to_le_bytes();
        Ok(())
    }
}

/// `recvfrom-into`'s outcome before it is lowered: a datagram from `from`
/// that the socket may hear waits (a peek saw it), to be received into the
/// plugin's lent buffer of `max_len` bytes during lowering, or an error.
pub enum ReceivedFrom {
    /// A datagram waits; its sender is known from the peek.
    Ready {
        /// The socket.
        shared: Arc<Shared>,
        /// The plugin's buffer size.
        max_len: usize,
        /// The datagram's sender.
        from: SocketAddress,
    },
    /// The receive failed.
    Failed(ErrorCode),
}

/// The lowered type: what the WIT says `recvfrom-into` returns.
type WitFrom = Result<(PlacedList, SocketAddress), ErrorCode>;

impl ReceivedFrom {
    fn place<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<WitFrom> {
        match self {
            ReceivedFrom::Failed(code) => Ok(Err(code.clone())),
            ReceivedFrom::Ready {
                shared,
                max_len,
                from,
            } => {
                let placed = place_received(cx, *max_len, |buf| {
                    let recv = |s: &Socket| sys::recv_from(s, buf).map(|(n, _)| n);
                    // A datagram does not tell whether another waits: the
                    // readiness tokio remembers stays, and the next receive
                    // tries first.
                    call_now_draining(&shared.io, Interest::READABLE, recv, |_| false)
                        .map_err(ErrorCode::from)
                })?;
                Ok(placed.map(|list| (list, *from)))
            }
        }
    }
}

// `result<tuple<list<u8>, socket-address>, error-code>`, as `Received`
// lowers as its type.
lowers_as!(ReceivedFrom, WitFrom);
