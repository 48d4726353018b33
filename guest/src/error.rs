//! Mapping of the contract's `error-code` to [`std::io::Error`].
//!
//! The [`ErrorKind`] of every error mirrors the Python exception class the
//! same condition raises in CPython's `socket` module; errors with a
//! conventional errno also carry it as [`io::Error::raw_os_error`].

use std::error::Error;
use std::fmt;
use std::io::{self, ErrorKind};

use crate::bindings::{ErrorCode, TransferError};

/// errno values as numbered by WASI's `errno.h`, which wasi-libc and Rust's
/// standard library use on `wasm32-wasip2`.
mod wasi_errno {
    pub const EADDRINUSE: i32 = 3;
    pub const EADDRNOTAVAIL: i32 = 4;
    pub const EAGAIN: i32 = 6;
    pub const ECONNABORTED: i32 = 13;
    pub const ECONNREFUSED: i32 = 14;
    pub const ECONNRESET: i32 = 15;
    pub const ENOTCONN: i32 = 53;
    pub const EPIPE: i32 = 64;
}

/// Converts an `error-code` from the host into an [`io::Error`], as the
/// table in the crate documentation describes.
pub(crate) fn from_code(code: ErrorCode) -> io::Error {
    use wasi_errno::*;
    match code {
        // CPython's message; wasi-libc's strerror(ETIMEDOUT) would say
        // "Operation timed out".
        ErrorCode::Timeout => io::Error::new(ErrorKind::TimedOut, "timed out"),
        ErrorCode::WouldBlock => errno(EAGAIN, ErrorKind::WouldBlock, "operation would block"),
        ErrorCode::ConnectionRefused => errno(
            ECONNREFUSED,
            ErrorKind::ConnectionRefused,
            "connection refused",
        ),
        ErrorCode::ConnectionReset => {
            errno(ECONNRESET, ErrorKind::ConnectionReset, "connection reset")
        }
        ErrorCode::ConnectionAborted => errno(
            ECONNABORTED,
            ErrorKind::ConnectionAborted,
            "connection aborted",
        ),
        ErrorCode::BrokenPipe => errno(EPIPE, ErrorKind::BrokenPipe, "broken pipe"),
        ErrorCode::NotConnected => {
            errno(ENOTCONN, ErrorKind::NotConnected, "socket is not connected")
        }
        ErrorCode::AddressInUse => errno(EADDRINUSE, ErrorKind::AddrInUse, "address in use"),
        ErrorCode::AddressNotAvailable => errno(
            EADDRNOTAVAIL,
            ErrorKind::AddrNotAvailable,
            "address not available",
        ),
        ErrorCode::AccessDenied(text) => io::Error::new(
            ErrorKind::PermissionDenied,
            format!("access denied: {text}"),
        ),
        ErrorCode::InvalidArgument(text) => {
            io::Error::new(ErrorKind::InvalidInput, format!("invalid argument: {text}"))
        }
        ErrorCode::LimitReached(text) => {
            io::Error::new(ErrorKind::QuotaExceeded, format!("limit reached: {text}"))
        }
        ErrorCode::Os(errno) => io::Error::from_raw_os_error(errno),
    }
}

/// An error carrying the WASI errno `code`, so that `raw_os_error` returns
/// it, provided the standard library decodes that errno as `kind` (it does
/// on `wasm32-wasip2`). Elsewhere, where errno numbers differ, the error is
/// built from `kind` and `message` instead, so the kind is always right.
fn errno(code: i32, kind: ErrorKind, message: &'static str) -> io::Error {
    let error = io::Error::from_raw_os_error(code);
    if error.kind() == kind {
        error
    } else {
        io::Error::new(kind, message)
    }
}

/// The error every method of a closed [`Socket`](crate::Socket) returns:
/// kind [`ErrorKind::Other`], message "socket is closed" (Python raises
/// `OSError: [Errno 9] Bad file descriptor`).
pub(crate) fn closed() -> io::Error {
    io::Error::other("socket is closed")
}

/// Converts the error of a `sendall` into an [`io::Error`] whose kind is that
/// of its code and whose inner error is a [`PartialTransfer`].
pub(crate) fn from_transfer(error: TransferError) -> io::Error {
    let inner = from_code(error.code);
    io::Error::new(
        inner.kind(),
        PartialTransfer {
            bytes_sent: error.bytes_sent,
            error: inner,
        },
    )
}

/// The inner error of an [`io::Error`] returned by
/// [`Socket::sendall`](crate::Socket::sendall) (and by `write_all` on a
/// socket): says how many bytes reached the socket before the failure, so
/// that nothing is lost silently. CPython's `sendall` does not report this.
///
/// The outer [`io::Error`] has the kind of the underlying error; use
/// [`bytes_sent`] to read the count from it, or downcast it with
/// [`io::Error::get_ref`]. It displays as the underlying error followed by
/// the count, e.g. "timed out after sending 1234 bytes".
#[derive(Debug)]
pub struct PartialTransfer {
    /// How many bytes were sent before the error (possibly zero).
    pub bytes_sent: u64,
    error: io::Error,
}

impl PartialTransfer {
    /// The error that stopped the transfer, with its own kind and, where it
    /// has one, its errno.
    pub fn error(&self) -> &io::Error {
        &self.error
    }
}

impl fmt::Display for PartialTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.bytes_sent == 1 {
            "byte"
        } else {
            "bytes"
        };
        write!(f, "{} after sending {} {unit}", self.error, self.bytes_sent)
    }
}

/// [`Error::source`] is `None`: the display already includes the underlying
/// error, which [`PartialTransfer::error`] returns.
impl Error for PartialTransfer {}

/// How many bytes a failed [`Socket::sendall`](crate::Socket::sendall) sent
/// before it failed: `Some` for an error returned by `sendall` (or
/// `write_all` on a socket), `None` for any other error.
pub fn bytes_sent(err: &io::Error) -> Option<u64> {
    err.get_ref()?
        .downcast_ref::<PartialTransfer>()
        .map(|partial| partial.bytes_sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_mirror_python_exceptions() {
        let cases = [
            (ErrorCode::Timeout, ErrorKind::TimedOut),
            (ErrorCode::WouldBlock, ErrorKind::WouldBlock),
            (ErrorCode::ConnectionRefused, ErrorKind::ConnectionRefused),
            (ErrorCode::ConnectionReset, ErrorKind::ConnectionReset),
            (ErrorCode::ConnectionAborted, ErrorKind::ConnectionAborted),
            (ErrorCode::BrokenPipe, ErrorKind::BrokenPipe),
            (ErrorCode::NotConnected, ErrorKind::NotConnected),
            (ErrorCode::AddressInUse, ErrorKind::AddrInUse),
            (ErrorCode::AddressNotAvailable, ErrorKind::AddrNotAvailable),
            (
                ErrorCode::AccessDenied("x".into()),
                ErrorKind::PermissionDenied,
            ),
            (
                ErrorCode::InvalidArgument("x".into()),
                ErrorKind::InvalidInput,
            ),
            (
                ErrorCode::LimitReached("x".into()),
                ErrorKind::QuotaExceeded,
            ),
        ];
        for (code, kind) in cases {
            let shown = format!("{code:?}");
            assert_eq!(from_code(code).kind(), kind, "{shown}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(from_code(ErrorCode::Timeout).to_string(), "timed out");
        let denied = from_code(ErrorCode::AccessDenied(
            "connect to 10.0.0.1:80 is not allowed".into(),
        ));
        assert_eq!(
            denied.to_string(),
            "access denied: connect to 10.0.0.1:80 is not allowed"
        );
        assert_eq!(
            from_code(ErrorCode::InvalidArgument("backlog".into())).to_string(),
            "invalid argument: backlog"
        );
    }

    #[test]
    fn os_errors_keep_their_errno() {
        assert_eq!(from_code(ErrorCode::Os(42)).raw_os_error(), Some(42));
    }

    #[cfg(target_os = "wasi")]
    #[test]
    fn wasi_errors_carry_errno() {
        assert_eq!(
            from_code(ErrorCode::ConnectionRefused).raw_os_error(),
            Some(wasi_errno::ECONNREFUSED)
        );
        assert_eq!(
            from_code(ErrorCode::WouldBlock).raw_os_error(),
            Some(wasi_errno::EAGAIN)
        );
    }

    #[test]
    fn partial_transfer() {
        let err = from_transfer(TransferError {
            code: ErrorCode::Timeout,
            bytes_sent: 1234,
        });
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "timed out after sending 1234 bytes");
        assert_eq!(bytes_sent(&err), Some(1234));
        assert_eq!(bytes_sent(&from_code(ErrorCode::Timeout)), None);
        assert_eq!(bytes_sent(&closed()), None);
    }
}
