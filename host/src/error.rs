//! How OS errors become the contract's `error-code`.
//!
//! The exact errno is mapped first, so that the conditions a program must tell
//! apart (Python's exception classes) get their own case; everything else is
//! `os(errno)` with the errno renumbered the way WASI numbers it, because the
//! guest interprets it with its own libc (wasi-libc), whose numbers differ from
//! the host's.

use crate::bindings::{ErrorCode, TransferError};
use std::io;

impl From<io::Error> for ErrorCode {
    fn from(err: io::Error) -> Self {
        ErrorCode::from(&err)
    }
}

impl From<&io::Error> for ErrorCode {
    fn from(err: &io::Error) -> Self {
        let Some(errno) = err.raw_os_error() else {
            return match err.kind() {
                io::ErrorKind::TimedOut => ErrorCode::Timeout,
                io::ErrorKind::WouldBlock => ErrorCode::WouldBlock,
                io::ErrorKind::InvalidInput => ErrorCode::InvalidArgument(err.to_string()),
                _ => ErrorCode::Os(wasi_errno::EIO),
            };
        };
        match errno {
            libc::ETIMEDOUT => ErrorCode::Timeout,
            libc::EAGAIN => ErrorCode::WouldBlock,
            // A non-blocking connect that has started (CPython's `connect_ex`
            // returns it); a second connect while it goes on is `EALREADY`,
            // which `os` carries as it is.
            libc::EINPROGRESS => ErrorCode::InProgress,
            libc::ECONNREFUSED => ErrorCode::ConnectionRefused,
            libc::ECONNRESET => ErrorCode::ConnectionReset,
            libc::ECONNABORTED => ErrorCode::ConnectionAborted,
            libc::EPIPE => ErrorCode::BrokenPipe,
            libc::ENOTCONN => ErrorCode::NotConnected,
            libc::EADDRINUSE => ErrorCode::AddressInUse,
            libc::EADDRNOTAVAIL => ErrorCode::AddressNotAvailable,
            libc::EACCES | libc::EPERM => {
                ErrorCode::AccessDenied(format!("the host's operating system refused: {err}"))
            }
            libc::EINVAL => ErrorCode::InvalidArgument(format!("{err}")),
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                ErrorCode::LimitReached(format!("host resources exhausted: {err}"))
            }
            other => ErrorCode::Os(wasi_errno::from_host(other)),
        }
    }
}

impl ErrorCode {
    /// `invalid-argument` with a message.
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ErrorCode::InvalidArgument(msg.into())
    }
}

impl TransferError {
    pub(crate) fn new(code: ErrorCode, bytes_sent: usize) -> Self {
        TransferError {
            code,
            bytes_sent: bytes_sent as u64,
        }
    }
}

/// errno values as WASI (and so wasi-libc, the guest's libc) numbers them.
/// Internal: public for the crate's own binaries and benchmarks.
#[doc(hidden)]
pub mod wasi_errno {
    /// `EIO`, for what has no better number.
    pub const EIO: i32 = 29;

    /// Host (Linux) errno → WASI errno. The host's own constants come from
    /// `libc`; the WASI numbers are those of `wasi-libc`'s `errno.h`.
    pub fn from_host(errno: i32) -> i32 {
        const TABLE: &[(i32, i32)] = &[
            (libc::E2BIG, 1),
            (libc::EACCES, 2),
            (libc::EADDRINUSE, 3),
            (libc::EADDRNOTAVAIL, 4),
            (libc::EAFNOSUPPORT, 5),
            (libc::EAGAIN, 6),
            (libc::EALREADY, 7),
            (libc::EBADF, 8),
            (libc::EBADMSG, 9),
            (libc::EBUSY, 10),
            (libc::ECANCELED, 11),
            (libc::ECHILD, 12),
            (libc::ECONNABORTED, 13),
            (libc::ECONNREFUSED, 14),
            (libc::ECONNRESET, 15),
            (libc::EDEADLK, 16),
            (libc::EDESTADDRREQ, 17),
            (libc::EDOM, 18),
            (libc::EDQUOT, 19),
            (libc::EEXIST, 20),
            (libc::EFAULT, 21),
            (libc::EFBIG, 22),
            (libc::EHOSTUNREACH, 23),
            (libc::EIDRM, 24),
            (libc::EILSEQ, 25),
            (libc::EINPROGRESS, 26),
            (libc::EINTR, 27),
            (libc::EINVAL, 28),
            (libc::EIO, 29),
            (libc::EISCONN, 30),
            (libc::EISDIR, 31),
            (libc::ELOOP, 32),
            (libc::EMFILE, 33),
            (libc::EMLINK, 34),
            (libc::EMSGSIZE, 35),
            (libc::EMULTIHOP, 36),
            (libc::ENAMETOOLONG, 37),
            (libc::ENETDOWN, 38),
            (libc::ENETRESET, 39),
            (libc::ENETUNREACH, 40),
            (libc::ENFILE, 41),
            (libc::ENOBUFS, 42),
            (libc::ENODEV, 43),
            (libc::ENOENT, 44),
            (libc::ENOEXEC, 45),
            (libc::ENOLCK, 46),
            (libc::ENOLINK, 47),
            (libc::ENOMEM, 48),
            (libc::ENOMSG, 49),
            (libc::ENOPROTOOPT, 50),
            (libc::ENOSPC, 51),
            (libc::ENOSYS, 52),
            (libc::ENOTCONN, 53),
            (libc::ENOTDIR, 54),
            (libc::ENOTEMPTY, 55),
            (libc::ENOTRECOVERABLE, 56),
            (libc::ENOTSOCK, 57),
            (libc::ENOTSUP, 58),
            (libc::ENOTTY, 59),
            (libc::ENXIO, 60),
            (libc::EOVERFLOW, 61),
            (libc::EOWNERDEAD, 62),
            (libc::EPERM, 63),
            (libc::EPIPE, 64),
            (libc::EPROTO, 65),
            (libc::EPROTONOSUPPORT, 66),
            (libc::EPROTOTYPE, 67),
            (libc::ERANGE, 68),
            (libc::EROFS, 69),
            (libc::ESPIPE, 70),
            (libc::ESRCH, 71),
            (libc::ESTALE, 72),
            (libc::ETIMEDOUT, 73),
            (libc::ETXTBSY, 74),
            (libc::EXDEV, 75),
        ];
        TABLE
            .iter()
            .find(|(host, _)| *host == errno)
            .map(|(_, wasi)| *wasi)
            .unwrap_or(EIO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_a_program_tells_apart_get_their_own_case() {
        let code = |errno| ErrorCode::from(io::Error::from_raw_os_error(errno));
        assert!(matches!(
            code(libc::ECONNREFUSED),
            ErrorCode::ConnectionRefused
        ));
        assert!(matches!(code(libc::ECONNRESET), ErrorCode::ConnectionReset));
        assert!(matches!(code(libc::EPIPE), ErrorCode::BrokenPipe));
        assert!(matches!(code(libc::ETIMEDOUT), ErrorCode::Timeout));
        assert!(matches!(code(libc::EAGAIN), ErrorCode::WouldBlock));
        assert!(matches!(code(libc::EACCES), ErrorCode::AccessDenied(_)));
        assert!(matches!(code(libc::EMFILE), ErrorCode::LimitReached(_)));
    }

    #[test]
    fn other_errnos_are_renumbered_for_the_guest() {
        let code = |errno| ErrorCode::from(io::Error::from_raw_os_error(errno));
        assert!(matches!(code(libc::ENETUNREACH), ErrorCode::Os(40)));
        assert!(matches!(code(libc::EHOSTUNREACH), ErrorCode::Os(23)));
        assert!(matches!(code(libc::ENOPROTOOPT), ErrorCode::Os(50)));
        // An errno WASI has no number for becomes EIO rather than a wrong name.
        assert!(matches!(
            code(libc::ENOMEDIUM),
            ErrorCode::Os(wasi_errno::EIO)
        ));
    }
}
