//! `send` and `sendall` that read the plugin's `list<u8>` where it lies,
//! and `recv` that receives into the plugin's memory ([`crate::placed`]).
//!
//! Through `bindgen!`, a `list<u8>` argument arrives as a `Vec<u8>`: the
//! canonical ABI copies the plugin's bytes into host memory before the host
//! function runs, then the kernel copies them again. These definitions take
//! the list as a [`WasmList<u8>`] instead and give the kernel the plugin's
//! own memory, one send(2) at a time; each system call borrows the memory
//! anew, since the plugin's memory may move when it grows. While the plugin
//! is blocked in the call, nothing else writes to its memory.
//!
//! They replace the generated `recv`, `send` and `sendall` in the linker
//! (same names, same types) and go through the same deadline loop ([`Shared::send_with`],
//! [`Shared::sendall_with`]).
//!
//! [`Shared::send_with`]: crate::socket::Shared::send_with
//! [`Shared::sendall_with`]: crate::socket::Shared::sendall_with

use crate::bindings::TransferError;
use crate::socket::{Shared, TcpSocket};
use crate::{SockshimView, sys};
use std::io;
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, WasmList};

/// The instance the generated bindings define the socket functions in.
const INTERFACE: &str = "sockshim:socket/socket@0.1.0";

/// Replaces the generated `recv`, `send` and `sendall` in `linker` with
/// ones that use the plugin's memory in place.
pub fn add_to_linker<T: SockshimView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = define(linker);
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

fn define<T: SockshimView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut socket = linker.instance(INTERFACE)?;
    socket.func_wrap_async(
        "[method]socket.recv",
        |mut store: StoreContextMut<'_, T>, (res, max_len): (Resource<TcpSocket>, u64)| {
            Box::new(async move {
                let shared = socket_of(&mut store, &res)?;
                Ok((shared.receive(max_len).await,))
            })
        },
    )?;
    socket.func_wrap_async(
        "[method]socket.send",
        |mut store: StoreContextMut<'_, T>, (res, data): (Resource<TcpSocket>, WasmList<u8>)| {
            Box::new(async move {
                let shared = socket_of(&mut store, &res)?;
                // Held uniquely (`&mut`), so the future stays `Send`.
                let store = &mut store;
                let len = data.len();
                let sent = shared
                    .send_with(len, move |s| sys::send(s, data.as_le_slice(&*store)))
                    .await;
                Ok((sent.map(|n| n as u64),))
            })
        },
    )?;
    socket.func_wrap_async(
        "[method]socket.sendall",
        |mut store: StoreContextMut<'_, T>, (res, data): (Resource<TcpSocket>, WasmList<u8>)| {
            Box::new(async move {
                let shared = socket_of(&mut store, &res)?;
                let store = &mut store;
                let len = data.len();
                let result: Result<(), TransferError> = shared
                    .sendall_with(len, move |s, sent| {
                        match data.as_le_slice(&*store).get(sent..) {
                            Some(rest) => sys::send(s, rest),
                            // Cannot happen: the list's length is fixed.
                            None => Err(io::Error::other("sendall went past the end of its data")),
                        }
                    })
                    .await;
                Ok((result,))
            })
        },
    )?;
    Ok(())
}
