//! `send`, `sendall` and `sendto` that read the plugin's `list<u8>` where
//! it lies, and `recv`, `recv-into` and `recvfrom-into` that receive into
//! the plugin's memory ([`crate::placed`]).
//!
//! Through `bindgen!`, a `list<u8>` argument arrives as a `Vec<u8>`: the
//! canonical ABI copies the plugin's bytes into host memory before the host
//! function runs, then the kernel copies them again. These definitions take
//! the list as a [`WasmList<u8>`] instead and give the kernel the plugin's
//! own memory, one send(2) at a time; each system call borrows the memory
//! anew, since the plugin's memory may move when it grows. While the plugin
//! is blocked in the call, nothing else writes to its memory.
//!
//! They replace the generated `recv`, `recv-into`, `send` and `sendall` in
//! the linker (same names, same types) and go through the same deadline
//! loop ([`Shared::send_with`], [`Shared::sendall_with`]).
//!
//! They are defined one of two ways ([`Calls`]). As async host functions,
//! like the generated ones, for plugins whose sockets wait on tokio's
//! reactor (or either way). Or, for a linker whose plugins' sockets all
//! wait on their own thread, as plain host functions: such a socket's
//! deadline loop never suspends, so the call finishes in one poll of its
//! future, without wasmtime's async call path (a boxed future per call, the
//! fiber's poll context). In alternated one-CPU benchmark pairs that took
//! the ping-pong round trip (two calls) from 1.17× to 1.14× native and the
//! bulk send's CPU from 1.19× to 1.14× (medians; the measurement is in
//! git's history of README.md, before docs/benchmarks.md).
//!
//! [`Shared::send_with`]: crate::socket::Shared::send_with
//! [`Shared::sendall_with`]: crate::socket::Shared::sendall_with

use crate::bindings::{ErrorCode, TransferError};
use crate::datagram::destination;
use crate::placed::Lent;
use crate::socket::{Shared, TcpSocket};
use crate::sys::WaitOn;
use crate::{SockshimView, sys};
use socket2::{SockAddr, Socket};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, WasmList};

/// The instance the generated bindings define the socket functions in.
const INTERFACE: &str = "sockshim:socket/socket@0.1.0";
const RECV: &str = "[method]socket.recv";
const RECV_INTO: &str = "[method]socket.recv-into";
const SEND: &str = "[method]socket.send";
const SENDALL: &str = "[method]socket.sendall";
const SENDTO: &str = "[method]socket.sendto";
const RECVFROM_INTO: &str = "[method]socket.recvfrom-into";

/// How [`add_to_linker`] defines the functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    /// Async host functions, for sockets that wait either way.
    Async,
    /// Plain host functions, for sockets that wait on their plugin's
    /// thread only; a socket that waits on the reactor makes them trap.
    OnThread,
}

/// Replaces the generated `recv`, `recv-into`, `send` and `sendall` in
/// `linker` with ones that use the plugin's memory in place, defined as
/// `calls` says.
pub fn add_to_linker<T: SockshimView + 'static>(
    linker: &mut Linker<T>,
    calls: Calls,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = match calls {
        Calls::Async => define_async(linker),
        Calls::OnThread => define_on_thread(linker),
    }
    .and_then(|()| define_sendto(linker));
    linker.allow_shadowing(false);
    defined
}

/// What the plugin's socket `res` shares with a transfer; a bad handle is a
/// trap, as in the generated bindings.
fn socket_of<T: SockshimView>(
    store: &mut StoreContextMut<'_, T>,
    res: &Resource<TcpSocket>,
) -> wasmtime::Result<Arc<Shared>> {
    Ok(store.data_mut().sockshim().table.get(res)?.shared())
}

/// [`socket_of`] for a function defined [`Calls::OnThread`]: a socket that
/// waits on the reactor would need to suspend the plugin, which a plain
/// host function cannot, so the embedder's mix-up is a trap that says so.
fn socket_waiting_on_thread<T: SockshimView>(
    store: &mut StoreContextMut<'_, T>,
    res: &Resource<TcpSocket>,
    function: &str,
) -> wasmtime::Result<Arc<Shared>> {
    let shared = socket_of(store, res)?;
    match shared.io.wait_on() {
        WaitOn::Thread(_) => Ok(shared),
        WaitOn::Reactor(_) => Err(wasmtime::format_err!(
            "sockshim: `{function}` was linked for sockets that wait on the plugin's thread \
             (`add_to_linker_waiting_on_thread`), but this plugin's sockets wait on the \
             reactor: give its store a `SockshimCtx::waiting_on_thread()`, or link it with \
             `add_to_linker`"
        )),
    }
}

/// The outcome of a transfer on a socket that waits on its thread, whose
/// future is ready the first time it is polled: its waits are ppoll(2)
/// calls, not awaits.
fn finish_on_thread<F: Future>(transfer: F) -> wasmtime::Result<F::Output> {
    let mut transfer = pin!(transfer);
    match transfer
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(outcome) => Ok(outcome),
        Poll::Pending => Err(wasmtime::format_err!(
            "sockshim: internal error: a transfer on a socket that waits on its thread was suspended"
        )),
    }
}

/// One send(2) of the plugin's `data`, read where it lies.
fn send_list<T: 'static>(
    store: &mut StoreContextMut<'_, T>,
    data: WasmList<u8>,
) -> impl FnMut(&Socket) -> io::Result<usize> {
    // Held uniquely (`&mut`), so the async function's future stays `Send`.
    move |s| sys::send(s, data.as_le_slice(&*store))
}

/// One send(2) of what is left of the plugin's `data` after the first
/// `sent` bytes.
fn send_rest<T: 'static>(
    store: &mut StoreContextMut<'_, T>,
    data: WasmList<u8>,
) -> impl FnMut(&Socket, usize) -> io::Result<usize> {
    move |s, sent| match data.as_le_slice(&*store).get(sent..) {
        Some(rest) => sys::send(s, rest),
        // Cannot happen: the list's length is fixed.
        None => Err(io::Error::other("sendall went past the end of its data")),
    }
}

fn define_async<T: SockshimView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut socket = linker.instance(INTERFACE)?;
    for (name, lent) in [(RECV, Lent::No), (RECV_INTO, Lent::Yes)] {
        socket.func_wrap_async(
            name,
            move |mut store: StoreContextMut<'_, T>, (res, max_len): (Resource<TcpSocket>, u64)| {
                Box::new(async move {
                    let shared = socket_of(&mut store, &res)?;
                    Ok((shared.receive(max_len, lent).await,))
                })
            },
        )?;
    }
    socket.func_wrap_async(
        SEND,
        |mut store: StoreContextMut<'_, T>, (res, data): (Resource<TcpSocket>, WasmList<u8>)| {
            Box::new(async move {
                let shared = socket_of(&mut store, &res)?;
                let len = data.len();
                let sent = shared.send_with(len, send_list(&mut store, data)).await;
                Ok((sent.map(|n| n as u64),))
            })
        },
    )?;
    socket.func_wrap_async(
        SENDALL,
        |mut store: StoreContextMut<'_, T>, (res, data): (Resource<TcpSocket>, WasmList<u8>)| {
            Box::new(async move {
                let shared = socket_of(&mut store, &res)?;
                let len = data.len();
                let result: Result<(), TransferError> =
                    shared.sendall_with(len, send_rest(&mut store, data)).await;
                Ok((result,))
            })
        },
    )?;
    Ok(())
}

/// `sendto`, which reads the plugin's list in place, and `recvfrom-into`,
/// which receives into the plugin's lent buffer ([`ReceivedFrom`]); async
/// in either linker (resolving a name waits for the host's resolver,
/// whichever way the socket waits).
///
/// [`ReceivedFrom`]: crate::placed::ReceivedFrom
fn define_sendto<T: SockshimView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    type Args = (Resource<TcpSocket>, WasmList<u8>, String, u16);
    let mut socket = linker.instance(INTERFACE)?;
    socket.func_wrap_async(
        SENDTO,
        |mut store: StoreContextMut<'_, T>, (res, data, host, port): Args| {
            Box::new(async move {
                let view = store.data_mut().sockshim();
                let naming = view.ctx.naming();
                let sock = view.table.get(&res)?;
                if !sock.is_datagram() {
                    let code = ErrorCode::invalid("sendto needs a datagram socket (use send)");
                    return Ok((Err(code),));
                }
                let (family, deadline) = (sock.family(), sock.deadline());
                let shared = sock.shared();
                let to = match destination(&shared, &naming, family, &host, port, deadline).await {
                    Ok(to) => SockAddr::from(to),
                    Err(code) => return Ok((Err(code),)),
                };
                let len = data.len();
                let sent = shared
                    .send_with(len, move |s| sys::send_to(s, data.as_le_slice(&store), &to))
                    .await;
                Ok((sent.map(|n| n as u64),))
            })
        },
    )?;
    socket.func_wrap_async(
        RECVFROM_INTO,
        |mut store: StoreContextMut<'_, T>, (res, max_len): (Resource<TcpSocket>, u64)| {
            Box::new(async move {
                let shared = socket_of(&mut store, &res)?;
                Ok((shared.receive_from_placed(max_len).await,))
            })
        },
    )?;
    Ok(())
}

fn define_on_thread<T: SockshimView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut socket = linker.instance(INTERFACE)?;
    for (name, lent) in [(RECV, Lent::No), (RECV_INTO, Lent::Yes)] {
        socket.func_wrap(
            name,
            move |mut store: StoreContextMut<'_, T>, (res, max_len): (Resource<TcpSocket>, u64)| {
                let shared = socket_waiting_on_thread(&mut store, &res, name)?;
                Ok((finish_on_thread(shared.receive(max_len, lent))?,))
            },
        )?;
    }
    socket.func_wrap(
        SEND,
        |mut store: StoreContextMut<'_, T>, (res, data): (Resource<TcpSocket>, WasmList<u8>)| {
            let shared = socket_waiting_on_thread(&mut store, &res, SEND)?;
            let len = data.len();
            let sent = finish_on_thread(shared.send_with(len, send_list(&mut store, data)))?;
            Ok((sent.map(|n| n as u64),))
        },
    )?;
    socket.func_wrap(
        SENDALL,
        |mut store: StoreContextMut<'_, T>, (res, data): (Resource<TcpSocket>, WasmList<u8>)| {
            let shared = socket_waiting_on_thread(&mut store, &res, SENDALL)?;
            let len = data.len();
            let result: Result<(), TransferError> =
                finish_on_thread(shared.sendall_with(len, send_rest(&mut store, data)))?;
            Ok((result,))
        },
    )?;
    Ok(())
}
