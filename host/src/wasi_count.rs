//! wasmtime-wasi's own sockets (wasi:sockets, which Rust's `std::net` uses
//! in a plugin) counted against the plugin's socket limit, with sockshim's.
//!
//! wasmtime-wasi 48 has no hook for socket creation (its
//! `socket_addr_check` sees addresses, not sockets), so
//! [`count_wasi_sockets`] shadows the two functions that create them,
//! `wasi:sockets/tcp-create-socket.create-tcp-socket` and
//! `udp-create-socket.create-udp-socket`, with ones that check the limit
//! and then call wasmtime-wasi's. There is no release to hook either: the
//! count is of the wasi sockets in the store's resource table at the time,
//! so a socket counts exactly while the plugin holds it.

use crate::SockshimView;
use crate::quota::Quota;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

/// wasmtime-wasi's socket state, with the plugin's limit beside it.
struct Counted<'a> {
    wasi: WasiSocketsCtxView<'a>,
    quota: Arc<Quota>,
}

struct CountedSockets;

impl HasData for CountedSockets {
    type Data<'a> = Counted<'a>;
}

impl Counted<'_> {
    /// `new-socket-limit` when the plugin holds as many sockets as it may,
    /// sockshim's and wasi's together.
    fn check(&mut self) -> SocketResult<()> {
        let open = wasi_sockets_in(self.wasi.table) + self.quota.open();
        if open >= self.quota.max() {
            return Err(ErrorCode::NewSocketLimit.into());
        }
        Ok(())
    }
}

// What the bindings ask of every sockets interface's host: wasmtime-wasi's.
impl network::Host for Counted<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        self.wasi.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime_wasi::p2::bindings::sockets::network::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.wasi.network_error_code(err)
    }
}

impl network::HostNetwork for Counted<'_> {
    fn drop(&mut self, this: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.wasi, this)
    }
}

impl tcp_create_socket::Host for Counted<'_> {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        self.check()?;
        self.wasi.create_tcp_socket(family)
    }
}

impl udp_create_socket::Host for Counted<'_> {
    async fn create_udp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
        self.check()?;
        self.wasi.create_udp_socket(family).await
    }
}

/// How many wasmtime-wasi sockets `table` holds.
pub(crate) fn wasi_sockets_in(table: &mut ResourceTable) -> usize {
    table
        .iter_mut()
        .filter(|entry| entry.is::<TcpSocket>() || entry.is::<UdpSocket>())
        .count()
}

fn counted<T: WasiView + SockshimView>(state: &mut T) -> Counted<'_> {
    let quota = Arc::clone(&state.sockshim().ctx.quota);
    Counted {
        wasi: state.sockets(),
        quota,
    }
}

/// Counts the plugin's wasi:sockets sockets against its sockshim socket
/// limit ([`SockshimCtx::with_max_sockets`]): creating one past the limit
/// fails with wasi's `new-socket-limit`, and sockshim's `create` and
/// `accept` count the wasi sockets the plugin holds. Call it after
/// `wasmtime_wasi::p2::add_to_linker_async`, whose two socket-creating
/// functions it replaces; [`runner::PluginHost`] does.
///
/// [`SockshimCtx::with_max_sockets`]: crate::SockshimCtx::with_max_sockets
/// [`runner::PluginHost`]: crate::runner::PluginHost
pub fn count_wasi_sockets<T: WasiView + SockshimView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    tcp_create_socket::add_to_linker::<T, CountedSockets>(linker, counted::<T>)?;
    udp_create_socket::add_to_linker::<T, CountedSockets>(linker, counted::<T>)?;
    linker.allow_shadowing(false);
    Ok(())
}
