//! errno values as numbered by WASI's `errno.h`, which wasi-libc and Rust's
//! standard library use on `wasm32-wasip2`; Python's `errno` module for the
//! values this crate returns.
//!
//! [`Socket::connect_ex`](crate::Socket::connect_ex) returns them, and
//! [`std::io::Error::raw_os_error`] of the errors that carry one. They
//! differ from Linux's numbers (`EINPROGRESS` is 26 here, 115 on Linux).
//!
//! ```no_run
//! use sockshim::errno;
//!
//! let sock = sockshim::Socket::new(sockshim::Family::Ipv4, sockshim::Kind::Stream)?;
//! sock.setblocking(false)?;
//! assert_eq!(sock.connect_ex("127.0.0.1:8000"), errno::EINPROGRESS);
//! # Ok::<(), std::io::Error>(())
//! ```

/// Permission denied (`PermissionError`).
pub const EACCES: i32 = 2;
/// Address in use.
pub const EADDRINUSE: i32 = 3;
/// Address not available.
pub const EADDRNOTAVAIL: i32 = 4;
/// Resource unavailable, try again: the operation would block (`BlockingIOError`).
pub const EAGAIN: i32 = 6;
/// Connection already in progress.
pub const EALREADY: i32 = 7;
/// Bad file descriptor: the socket is closed.
pub const EBADF: i32 = 8;
/// Device or resource busy.
pub const EBUSY: i32 = 10;
/// Connection aborted (`ConnectionAbortedError`).
pub const ECONNABORTED: i32 = 13;
/// Connection refused (`ConnectionRefusedError`).
pub const ECONNREFUSED: i32 = 14;
/// Connection reset (`ConnectionResetError`).
pub const ECONNRESET: i32 = 15;
/// Resource deadlock would occur.
pub const EDEADLK: i32 = 16;
/// Disk quota exceeded.
pub const EDQUOT: i32 = 19;
/// File exists.
pub const EEXIST: i32 = 20;
/// File too large.
pub const EFBIG: i32 = 22;
/// Illegal byte sequence.
pub const EILSEQ: i32 = 25;
/// Operation in progress: a non-blocking connect has started ([`Socket::connect_ex`](crate::Socket::connect_ex)).
pub const EINPROGRESS: i32 = 26;
/// Interrupted function.
pub const EINTR: i32 = 27;
/// Invalid argument.
pub const EINVAL: i32 = 28;
/// I/O error.
pub const EIO: i32 = 29;
/// Too many open files: the plugin has as many sockets open as its host allows.
pub const EMFILE: i32 = 33;
/// Is a directory.
pub const EISDIR: i32 = 31;
/// Too many levels of symbolic links.
pub const ELOOP: i32 = 32;
/// Too many links.
pub const EMLINK: i32 = 34;
/// Message too large.
pub const EMSGSIZE: i32 = 35;
/// Filename too long.
pub const ENAMETOOLONG: i32 = 37;
/// No such device.
pub const ENODEV: i32 = 43;
/// No such file or directory.
pub const ENOENT: i32 = 44;
/// No locks available.
pub const ENOLCK: i32 = 46;
/// Not enough space.
pub const ENOMEM: i32 = 48;
/// No space left on device.
pub const ENOSPC: i32 = 51;
/// The socket is not connected.
pub const ENOTCONN: i32 = 53;
/// Not a directory.
pub const ENOTDIR: i32 = 54;
/// Directory not empty.
pub const ENOTEMPTY: i32 = 55;
/// State not recoverable.
pub const ENOTRECOVERABLE: i32 = 56;
/// Not supported.
pub const ENOTSUP: i32 = 58;
/// Inappropriate I/O control operation.
pub const ENOTTY: i32 = 59;
/// No such device or address.
pub const ENXIO: i32 = 60;
/// Value too large to be stored in data type.
pub const EOVERFLOW: i32 = 61;
/// Operation not permitted.
pub const EPERM: i32 = 63;
/// Broken pipe (`BrokenPipeError`).
pub const EPIPE: i32 = 64;
/// Read-only file system.
pub const EROFS: i32 = 69;
/// Invalid seek.
pub const ESPIPE: i32 = 70;
/// Connection timed out (`TimeoutError`).
pub const ETIMEDOUT: i32 = 73;
/// Text file busy.
pub const ETXTBSY: i32 = 74;
/// Cross-device link.
pub const EXDEV: i32 = 75;

/// A name lookup's temporary failure (`socket.gaierror` with errno
/// `EAI_AGAIN`, "Temporary failure in name resolution"): netdb.h's number,
/// negative as in wasi-libc and glibc, apart from the errno values. Read it
/// with [`gai_errno`](crate::gai_errno).
pub const EAI_AGAIN: i32 = -3;
/// A name without addresses (`socket.gaierror` with errno `EAI_NONAME`,
/// "Name or service not known"). Read it with
/// [`gai_errno`](crate::gai_errno).
pub const EAI_NONAME: i32 = -2;
