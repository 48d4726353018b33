//! Mapping of the contract's `error-code` to [`std::io::Error`].
//!
//! The [`ErrorKind`] of every error mirrors the Python exception class the
//! same condition raises in CPython's `socket` module; errors with a
//! conventional errno also carry it as [`io::Error::raw_os_error`].

use std::error::Error;
use std::fmt;
use std::io::{self, ErrorKind};

use wasip2::filesystem::types::ErrorCode as FsErrorCode;

use crate::bindings::{ErrorCode, TransferError};

use crate::errno as wasi_errno;

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
        // CPython's `OSError(EMFILE)`: the host's text (which limit) is
        // dropped, since only an OS error carries `raw_os_error`.
        ErrorCode::LimitReached(text) => {
            os_error(EMFILE, || format!("too many open sockets: {text}"))
        }
        // CPython raises `BlockingIOError` with `EINPROGRESS`.
        ErrorCode::InProgress => in_progress(),
        ErrorCode::Os(errno) => io::Error::from_raw_os_error(errno),
        // Not `EAGAIN`, which reads as would-block (`BlockingIOError`).
        ErrorCode::TemporaryLookupFailure => lookup_error(
            ErrorKind::Other,
            EAI_AGAIN,
            "temporary failure in name resolution".into(),
        ),
    }
}

/// A failed name lookup, as CPython's `socket.gaierror`: its `EAI_*` code
/// ([`gai_errno`]) and message.
#[derive(Debug)]
struct LookupError {
    code: i32,
    message: String,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for LookupError {}

/// The error of a failed name lookup with the `EAI_*` `code`
/// ([`wasi_errno::EAI_AGAIN`], [`wasi_errno::EAI_NONAME`]).
pub(crate) fn lookup_error(kind: ErrorKind, code: i32, message: String) -> io::Error {
    io::Error::new(kind, LookupError { code, message })
}

/// The `EAI_*` code of a failed name lookup, as CPython's
/// `socket.gaierror.errno`: [`errno::EAI_AGAIN`](crate::errno::EAI_AGAIN)
/// when the resolver could not answer now (the error's kind is
/// [`ErrorKind::Other`], never [`ErrorKind::WouldBlock`]),
/// [`errno::EAI_NONAME`](crate::errno::EAI_NONAME) for a name without
/// addresses (kind [`ErrorKind::AddrNotAvailable`]); `None` for any other
/// error.
pub fn gai_errno(err: &io::Error) -> Option<i32> {
    err.get_ref()?
        .downcast_ref::<LookupError>()
        .map(|lookup| lookup.code)
}

/// The error of a connect that goes on in the background: kind
/// [`ErrorKind::WouldBlock`], as CPython raises `BlockingIOError` for it.
///
/// Its errno, `EINPROGRESS`, is on the inner error
/// (`err.get_ref()` downcast to [`io::Error`], whose `raw_os_error` is
/// `EINPROGRESS`): an [`io::Error`] made from that errno alone would have
/// the kind the standard library gives `EINPROGRESS`, the unstable
/// `InProgress`, which stable code cannot match.
pub(crate) fn in_progress() -> io::Error {
    // Not `errno`: the standard library decodes EINPROGRESS as
    // `InProgress`, so the kind check there would drop the errno.
    #[cfg(target_os = "wasi")]
    let inner = io::Error::from_raw_os_error(wasi_errno::EINPROGRESS);
    // Elsewhere errno numbers differ: the message alone.
    #[cfg(not(target_os = "wasi"))]
    let inner = io::Error::other("operation in progress");
    io::Error::new(ErrorKind::WouldBlock, inner)
}

/// The WASI errno of an `error-code` (the numbering of `errno.h` in a
/// wasm32-wasip2 guest's libc): what CPython's `connect_ex` returns.
pub(crate) fn errno_of_code(code: &ErrorCode) -> i32 {
    use wasi_errno::*;
    match code {
        ErrorCode::Timeout => ETIMEDOUT,
        ErrorCode::WouldBlock => EAGAIN,
        ErrorCode::ConnectionRefused => ECONNREFUSED,
        ErrorCode::ConnectionReset => ECONNRESET,
        ErrorCode::ConnectionAborted => ECONNABORTED,
        ErrorCode::BrokenPipe => EPIPE,
        ErrorCode::NotConnected => ENOTCONN,
        ErrorCode::AddressInUse => EADDRINUSE,
        ErrorCode::AddressNotAvailable => EADDRNOTAVAIL,
        ErrorCode::AccessDenied(_) => EACCES,
        ErrorCode::InvalidArgument(_) => EINVAL,
        ErrorCode::LimitReached(_) => EMFILE,
        ErrorCode::InProgress => EINPROGRESS,
        ErrorCode::Os(errno) => *errno,
        ErrorCode::TemporaryLookupFailure => EAI_AGAIN,
    }
}

/// Converts a `wasi:filesystem` error into an [`io::Error`] with the errno
/// wasi-libc gives the same code (so that, on `wasm32-wasip2`, it has the
/// kind and message Rust's `std::fs` would give) and the matching
/// [`ErrorKind`] everywhere.
pub(crate) fn from_fs(code: FsErrorCode) -> io::Error {
    use wasi_errno::*;
    let (code, kind, message) = match code {
        FsErrorCode::Access => (EACCES, ErrorKind::PermissionDenied, "permission denied"),
        FsErrorCode::WouldBlock => (EAGAIN, ErrorKind::WouldBlock, "operation would block"),
        FsErrorCode::Already => (EALREADY, ErrorKind::Other, "operation already in progress"),
        FsErrorCode::BadDescriptor => (EBADF, ErrorKind::Other, "bad file descriptor"),
        FsErrorCode::Busy => (EBUSY, ErrorKind::ResourceBusy, "resource busy"),
        FsErrorCode::Deadlock => (EDEADLK, ErrorKind::Deadlock, "deadlock would occur"),
        FsErrorCode::Quota => (EDQUOT, ErrorKind::QuotaExceeded, "storage quota exceeded"),
        FsErrorCode::Exist => (EEXIST, ErrorKind::AlreadyExists, "file exists"),
        FsErrorCode::FileTooLarge => (EFBIG, ErrorKind::FileTooLarge, "file too large"),
        FsErrorCode::IllegalByteSequence => {
            (EILSEQ, ErrorKind::InvalidData, "illegal byte sequence")
        }
        FsErrorCode::InProgress => (EINPROGRESS, ErrorKind::Other, "operation in progress"),
        FsErrorCode::Interrupted => (EINTR, ErrorKind::Interrupted, "interrupted"),
        FsErrorCode::Invalid => (EINVAL, ErrorKind::InvalidInput, "invalid argument"),
        FsErrorCode::Io => (EIO, ErrorKind::Other, "I/O error"),
        FsErrorCode::IsDirectory => (EISDIR, ErrorKind::IsADirectory, "is a directory"),
        FsErrorCode::Loop => (ELOOP, ErrorKind::Other, "too many levels of symbolic links"),
        FsErrorCode::TooManyLinks => (EMLINK, ErrorKind::TooManyLinks, "too many links"),
        FsErrorCode::MessageSize => (EMSGSIZE, ErrorKind::InvalidInput, "message too large"),
        FsErrorCode::NameTooLong => (
            ENAMETOOLONG,
            ErrorKind::InvalidFilename,
            "file name too long",
        ),
        FsErrorCode::NoDevice => (ENODEV, ErrorKind::NotFound, "no such device"),
        FsErrorCode::NoEntry => (ENOENT, ErrorKind::NotFound, "no such file or directory"),
        FsErrorCode::NoLock => (ENOLCK, ErrorKind::Other, "no locks available"),
        FsErrorCode::InsufficientMemory => (ENOMEM, ErrorKind::OutOfMemory, "out of memory"),
        FsErrorCode::InsufficientSpace => {
            (ENOSPC, ErrorKind::StorageFull, "no space left on device")
        }
        FsErrorCode::NotDirectory => (ENOTDIR, ErrorKind::NotADirectory, "not a directory"),
        FsErrorCode::NotEmpty => (
            ENOTEMPTY,
            ErrorKind::DirectoryNotEmpty,
            "directory not empty",
        ),
        FsErrorCode::NotRecoverable => (ENOTRECOVERABLE, ErrorKind::Other, "state not recoverable"),
        FsErrorCode::Unsupported => (ENOTSUP, ErrorKind::Unsupported, "not supported"),
        FsErrorCode::NoTty => (ENOTTY, ErrorKind::Other, "not a terminal"),
        FsErrorCode::NoSuchDevice => (ENXIO, ErrorKind::NotFound, "no such device or address"),
        FsErrorCode::Overflow => (EOVERFLOW, ErrorKind::InvalidInput, "value too large"),
        FsErrorCode::NotPermitted => (
            EPERM,
            ErrorKind::PermissionDenied,
            "operation not permitted",
        ),
        FsErrorCode::Pipe => (EPIPE, ErrorKind::BrokenPipe, "broken pipe"),
        FsErrorCode::ReadOnly => (
            EROFS,
            ErrorKind::ReadOnlyFilesystem,
            "read-only file system",
        ),
        FsErrorCode::InvalidSeek => (ESPIPE, ErrorKind::NotSeekable, "invalid seek"),
        FsErrorCode::TextFileBusy => (ETXTBSY, ErrorKind::ExecutableFileBusy, "text file busy"),
        FsErrorCode::CrossDevice => (EXDEV, ErrorKind::CrossesDevices, "cross-device link"),
    };
    errno(code, kind, message)
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

/// An error whose `raw_os_error` is the WASI errno `code` on
/// `wasm32-wasip2`, with the kind and message the standard library gives
/// that errno (for `EBADF` and `EMFILE`, kind `Uncategorized`: CPython's
/// plain `OSError`). Elsewhere, where errno numbers differ, an
/// [`ErrorKind::Other`] error with `message`.
fn os_error(code: i32, message: impl FnOnce() -> String) -> io::Error {
    if cfg!(target_os = "wasi") {
        io::Error::from_raw_os_error(code)
    } else {
        io::Error::other(message())
    }
}

/// The error every method of a closed [`Socket`](crate::Socket) returns:
/// `EBADF`, "Bad file descriptor (os error 8)", as CPython raises
/// `OSError: [Errno 9] Bad file descriptor` (9 is Linux's number).
pub(crate) fn closed() -> io::Error {
    os_error(wasi_errno::EBADF, || "socket is closed".to_string())
}

/// Converts the error of a `sendall` or `sendfile` into an [`io::Error`] whose kind is that
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

/// `err` (a [`PartialTransfer`] or any error) as the error of a transfer
/// that sent `total` bytes in all before it: its kind and underlying
/// error, with the count replaced.
#[cfg(feature = "async")]
pub(crate) fn with_total_sent(err: io::Error, total: u64) -> io::Error {
    let kind = err.kind();
    let error = if err
        .get_ref()
        .is_some_and(|inner| inner.is::<PartialTransfer>())
    {
        match err
            .into_inner()
            .map(|inner| inner.downcast::<PartialTransfer>())
        {
            Some(Ok(partial)) => partial.error,
            _ => io::Error::from(kind),
        }
    } else {
        err
    };
    io::Error::new(
        kind,
        PartialTransfer {
            bytes_sent: total,
            error,
        },
    )
}

/// The inner error of an [`io::Error`] returned by
/// [`Socket::sendall`](crate::Socket::sendall) (and by `write_all` on a
/// socket) or by [`Socket::sendfile`](crate::Socket::sendfile): says how
/// many bytes reached the socket before the failure, so that nothing is lost
/// silently. CPython's `sendall` does not report this.
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

/// How many bytes a failed [`Socket::sendall`](crate::Socket::sendall) or
/// [`Socket::sendfile`](crate::Socket::sendfile) sent before it failed:
/// `Some` for an error returned by `sendall` (or `write_all` on a socket),
/// `sendfile` or `sendfile_until`, `None` for any other error.
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
            (ErrorCode::InProgress, ErrorKind::WouldBlock),
            (ErrorCode::TemporaryLookupFailure, ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let shown = format!("{code:?}");
            assert_eq!(from_code(code).kind(), kind, "{shown}");
        }
    }

    /// Issue 26: a temporary resolver failure reached plugins as
    /// `os(EAGAIN)`, that is as would-block (`BlockingIOError`).
    #[test]
    fn a_temporary_lookup_failure_is_no_would_block() {
        let err = from_code(ErrorCode::TemporaryLookupFailure);
        assert_ne!(err.kind(), ErrorKind::WouldBlock);
        assert_eq!(gai_errno(&err), Some(wasi_errno::EAI_AGAIN));
        assert_eq!(err.to_string(), "temporary failure in name resolution");
        assert_eq!(gai_errno(&from_code(ErrorCode::WouldBlock)), None);
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
    fn connect_ex_numbers_are_wasis() {
        assert_eq!(errno_of_code(&ErrorCode::InProgress), 26);
        assert_eq!(errno_of_code(&ErrorCode::ConnectionRefused), 14);
        assert_eq!(errno_of_code(&ErrorCode::Timeout), 73);
        assert_eq!(errno_of_code(&ErrorCode::AccessDenied("x".into())), 2);
        assert_eq!(errno_of_code(&ErrorCode::LimitReached("x".into())), 33);
        assert_eq!(errno_of_code(&ErrorCode::Os(42)), 42);
    }

    #[cfg(target_os = "wasi")]
    #[test]
    fn in_progress_carries_einprogress_inside() {
        let err = from_code(ErrorCode::InProgress);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<io::Error>());
        assert_eq!(
            inner.and_then(io::Error::raw_os_error),
            Some(wasi_errno::EINPROGRESS)
        );
    }

    #[test]
    fn os_errors_keep_their_errno() {
        assert_eq!(from_code(ErrorCode::Os(42)).raw_os_error(), Some(42));
    }

    #[cfg(target_os = "wasi")]
    #[test]
    fn closed_sockets_and_the_socket_limit_carry_ebadf_and_emfile() {
        assert_eq!(closed().raw_os_error(), Some(wasi_errno::EBADF));
        assert_eq!(
            from_code(ErrorCode::LimitReached("x".into())).raw_os_error(),
            Some(wasi_errno::EMFILE)
        );
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
    fn filesystem_errors_have_std_kinds() {
        let cases = [
            (FsErrorCode::NoEntry, ErrorKind::NotFound),
            (FsErrorCode::Access, ErrorKind::PermissionDenied),
            (FsErrorCode::NotPermitted, ErrorKind::PermissionDenied),
            (FsErrorCode::IsDirectory, ErrorKind::IsADirectory),
            (FsErrorCode::NotDirectory, ErrorKind::NotADirectory),
            (FsErrorCode::Invalid, ErrorKind::InvalidInput),
            (FsErrorCode::Exist, ErrorKind::AlreadyExists),
            (FsErrorCode::ReadOnly, ErrorKind::ReadOnlyFilesystem),
            (FsErrorCode::InvalidSeek, ErrorKind::NotSeekable),
            (FsErrorCode::Unsupported, ErrorKind::Unsupported),
        ];
        for (code, kind) in cases {
            assert_eq!(from_fs(code).kind(), kind, "{code:?}");
        }
    }

    #[cfg(target_os = "wasi")]
    #[test]
    fn filesystem_errors_carry_wasi_errno() {
        assert_eq!(
            from_fs(FsErrorCode::NoEntry).raw_os_error(),
            Some(wasi_errno::ENOENT)
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
