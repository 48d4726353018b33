//! Typed socket options: Python's `setsockopt` / `getsockopt` for the
//! options the contract supports.

use std::time::Duration;

use crate::bindings::{OptionName, SocketOption};

/// A socket option with its value, for [`Socket::setsockopt`] and as the
/// result of [`Socket::getsockopt`].
///
/// [`Socket::setsockopt`]: crate::Socket::setsockopt
/// [`Socket::getsockopt`]: crate::Socket::getsockopt
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SockOpt {
    /// `SO_REUSEADDR`.
    ReuseAddr(bool),
    /// `TCP_NODELAY`: send small segments at once instead of coalescing them
    /// (Nagle's algorithm off).
    TcpNoDelay(bool),
    /// `SO_KEEPALIVE`.
    KeepAlive(bool),
    /// `SO_RCVBUF`, in bytes. The kernel may round or double the value;
    /// reading the option returns what the kernel reports.
    RecvBufSize(usize),
    /// `SO_SNDBUF`, in bytes, as for [`SockOpt::RecvBufSize`].
    SendBufSize(usize),
    /// `SO_LINGER`: `None` turns lingering off; `Some(duration)` makes
    /// closing wait up to that long for unsent data, and
    /// `Some(Duration::ZERO)` resets the connection on close. The kernel
    /// counts whole seconds: a duration with a fraction of a second is
    /// rounded up (so only an exact zero resets the connection).
    Linger(Option<Duration>),
}

/// The name of a socket option, for [`Socket::getsockopt`].
///
/// [`Socket::getsockopt`]: crate::Socket::getsockopt
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SockOptName {
    /// `SO_REUSEADDR`, read as [`SockOpt::ReuseAddr`].
    ReuseAddr,
    /// `TCP_NODELAY`, read as [`SockOpt::TcpNoDelay`].
    TcpNoDelay,
    /// `SO_KEEPALIVE`, read as [`SockOpt::KeepAlive`].
    KeepAlive,
    /// `SO_RCVBUF`, read as [`SockOpt::RecvBufSize`].
    RecvBufSize,
    /// `SO_SNDBUF`, read as [`SockOpt::SendBufSize`].
    SendBufSize,
    /// `SO_LINGER`, read as [`SockOpt::Linger`].
    Linger,
}

impl SockOpt {
    pub(crate) fn to_wit(self) -> SocketOption {
        match self {
            SockOpt::ReuseAddr(on) => SocketOption::ReuseAddress(on),
            SockOpt::TcpNoDelay(on) => SocketOption::TcpNodelay(on),
            SockOpt::KeepAlive(on) => SocketOption::KeepAlive(on),
            SockOpt::RecvBufSize(size) => SocketOption::ReceiveBufferSize(to_u64(size)),
            SockOpt::SendBufSize(size) => SocketOption::SendBufferSize(to_u64(size)),
            SockOpt::Linger(linger) => SocketOption::Linger(linger.map(linger_seconds)),
        }
    }

    pub(crate) fn from_wit(option: SocketOption) -> SockOpt {
        match option {
            SocketOption::ReuseAddress(on) => SockOpt::ReuseAddr(on),
            SocketOption::TcpNodelay(on) => SockOpt::TcpNoDelay(on),
            SocketOption::KeepAlive(on) => SockOpt::KeepAlive(on),
            SocketOption::ReceiveBufferSize(size) => SockOpt::RecvBufSize(to_usize(size)),
            SocketOption::SendBufferSize(size) => SockOpt::SendBufSize(to_usize(size)),
            SocketOption::Linger(linger) => {
                SockOpt::Linger(linger.map(|secs| Duration::from_secs(u64::from(secs))))
            }
        }
    }
}

impl SockOptName {
    pub(crate) fn to_wit(self) -> OptionName {
        match self {
            SockOptName::ReuseAddr => OptionName::ReuseAddress,
            SockOptName::TcpNoDelay => OptionName::TcpNodelay,
            SockOptName::KeepAlive => OptionName::KeepAlive,
            SockOptName::RecvBufSize => OptionName::ReceiveBufferSize,
            SockOptName::SendBufSize => OptionName::SendBufferSize,
            SockOptName::Linger => OptionName::Linger,
        }
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whole seconds for `SO_LINGER`, rounding a fraction up and saturating.
fn linger_seconds(linger: Duration) -> u32 {
    let secs = linger
        .as_secs()
        .saturating_add(u64::from(linger.subsec_nanos() > 0));
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_rounds_up_whole_seconds() {
        assert_eq!(linger_seconds(Duration::ZERO), 0);
        assert_eq!(linger_seconds(Duration::from_millis(1)), 1);
        assert_eq!(linger_seconds(Duration::from_secs(5)), 5);
        assert_eq!(linger_seconds(Duration::from_millis(5500)), 6);
        assert_eq!(linger_seconds(Duration::MAX), u32::MAX);
    }

    #[test]
    fn round_trips() {
        let options = [
            SockOpt::ReuseAddr(true),
            SockOpt::TcpNoDelay(false),
            SockOpt::KeepAlive(true),
            SockOpt::RecvBufSize(65536),
            SockOpt::SendBufSize(1),
            SockOpt::Linger(None),
            SockOpt::Linger(Some(Duration::ZERO)),
            SockOpt::Linger(Some(Duration::from_secs(30))),
        ];
        for option in options {
            assert_eq!(SockOpt::from_wit(option.to_wit()), option);
        }
    }
}
