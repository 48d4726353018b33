//! Bindings generated from `wit/socket.wit` (world `sockshim:socket/imports`).
//!
//! The `socket` resource is mapped to [`crate::TcpSocket`]; every import is
//! async (a guest waiting in `recv` holds no OS thread) and trappable (a bad
//! resource handle traps; an OS error is a value the guest sees).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sockshim:socket/imports",
    imports: { default: async | trappable },
    with: {
        "sockshim:socket/socket.socket": crate::socket::TcpSocket,
        "sockshim:socket/socket.selector": crate::readiness::Selector,
        // `sendfile` borrows the plugin's wasi:filesystem descriptor, the
        // entry wasmtime-wasi keeps in the shared resource table
        // (`wasmtime_wasi::filesystem::Descriptor`).
        "wasi:filesystem/types": wasmtime_wasi::p2::bindings::filesystem::types,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

pub use sockshim::socket::socket::*;
