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
    },
});

pub use sockshim::socket::socket::*;
