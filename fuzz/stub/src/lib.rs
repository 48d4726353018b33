//! Stands in for `wasmtime_wasi` in the policy fuzzer: `host/src/policy.rs`
//! names `wasmtime_wasi::sockets::SocketAddrUse` and nothing else of it,
//! and building wasmtime with libFuzzer's instrumentation would take most
//! of an hour on two cores. Keep the variants in step with wasmtime-wasi's.

pub mod sockets {
    /// wasmtime-wasi 48's `SocketAddrUse`, variant for variant.
    #[allow(missing_docs)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum SocketAddrUse {
        TcpBind,
        TcpListen,
        TcpAccept,
        TcpConnect,
        UdpBind,
        UdpSend,
        UdpReceive,
    }
}
