//! A socket's receive side as a component-model `stream<u8>` whose reads
//! land in the reader's own buffer.
//!
//! `recv` returns a `list<u8>`: the host receives into a buffer of its own,
//! and the canonical ABI then copies that buffer into the plugin's memory.
//! A read of this stream is one recv(2) straight into the plugin's buffer
//! instead ([`Destination::as_direct`], as wasmtime-wasi's WASI 0.3 TCP
//! does), so received bytes are copied once, by the kernel.
//!
//! Each read with room for at least one byte is a `recv` with the same
//! deadline rules as every other operation (see [`crate::deadline`]): try
//! the system call, wait for readability only when it would block, and give
//! up at the socket's timeout. The stream has no error channel, so a read
//! that gives up completes with no bytes and leaves its reason (`timeout`,
//! `would-block`) for `take-receive-error`; the end of the connection, or a
//! connection error, ends the stream, and `take-receive-error` then says
//! which (nothing for a clean end).

use crate::bindings::ErrorCode;
use crate::deadline::Timeout;
use crate::socket::Shared;
use crate::sys;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime::component::{Destination, StreamProducer, StreamResult};
use wasmtime::{AsContextMut, StoreContextMut};

/// How many bytes a host reader (not a plugin) gets per read.
const HOST_READ_CAPACITY: usize = 64 << 10;

/// The producer of a socket's receive stream.
pub struct ReceiveStream {
    shared: Arc<Shared>,
    /// The timer of the read in progress, started when it first had to
    /// wait; `None` between reads.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ReceiveStream {
    /// The receive stream of the socket behind `shared`; a socket has at
    /// most one open at a time.
    pub(crate) fn open(shared: &Arc<Shared>) -> Result<ReceiveStream, ErrorCode> {
        let mut state = shared.receive_state();
        if state.open {
            return Err(ErrorCode::invalid(
                "the socket already has an open receive stream",
            ));
        }
        state.open = true;
        state.error = None;
        Ok(ReceiveStream {
            shared: Arc::clone(shared),
            wait: None,
        })
    }
}

/// Ends the read in progress with nothing delivered, for `reason`.
fn give_up(
    shared: &Shared,
    wait: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    reason: ErrorCode,
) -> Poll<wasmtime::Result<StreamResult>> {
    *wait = None;
    shared.receive_state().error = Some(reason);
    Poll::Ready(Ok(StreamResult::Completed))
}

/// Ends the stream: the peer closed its side (`None`) or `error`.
fn end(
    shared: &Shared,
    wait: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    error: Option<ErrorCode>,
) -> Poll<wasmtime::Result<StreamResult>> {
    *wait = None;
    shared.receive_state().error = error;
    Poll::Ready(Ok(StreamResult::Dropped))
}

/// Has the read in progress waited past `timeout`? Starts its timer on the
/// first wait, and arms `cx` to wake at the deadline.
fn timed_out(
    wait: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Timeout,
    cx: &mut Context<'_>,
) -> bool {
    let Timeout::After(timeout) = timeout else {
        *wait = None;
        return false;
    };
    let wait = wait.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    wait.as_mut().poll(cx).is_ready()
}

impl Drop for ReceiveStream {
    fn drop(&mut self) {
        self.shared.receive_state().open = false;
    }
}

impl<D> StreamProducer<D> for ReceiveStream {
    type Item = u8;
    type Buffer = Option<u8>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        dst: Destination<'a, u8, Option<u8>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let ReceiveStream { shared, wait } = &mut *self;
        let registration = match shared.io.registration() {
            Ok(registration) => registration,
            Err(e) => return end(shared, wait, Some(e.into())),
        };
        // A zero-length read asks whether the socket is readable.
        if dst.remaining(store.as_context_mut()) == Some(0) {
            return match registration.poll_read_ready(cx) {
                Poll::Ready(_) => Poll::Ready(Ok(StreamResult::Completed)),
                Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
                Poll::Pending => Poll::Pending,
            };
        }
        let mut dst = dst.as_direct(store, HOST_READ_CAPACITY);
        loop {
            match sys::recv(shared.io.socket(), dst.remaining()) {
                Ok(0) => return end(shared, wait, None),
                Ok(n) => {
                    dst.mark_written(n);
                    *wait = None;
                    return Poll::Ready(Ok(StreamResult::Completed));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return end(shared, wait, Some(e.into())),
            }
            if finish {
                // The plugin cancels its read: nothing was delivered.
                *wait = None;
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            let timeout = shared.timeout.get();
            if timeout == Timeout::NonBlocking {
                return give_up(shared, wait, ErrorCode::WouldBlock);
            }
            if timed_out(wait, timeout, cx) {
                return give_up(shared, wait, ErrorCode::Timeout);
            }
            match registration.poll_read_ready(cx) {
                // Readiness tokio remembered from before; the recv above
                // found nothing, so forget it and try again.
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => return end(shared, wait, Some(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
