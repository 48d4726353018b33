//! The system calls socket2 leaves to us, and the only `unsafe` of the crate.

use socket2::Socket;
use std::io;
use tokio::io::unix::AsyncFd;

/// `recv(2)` into the spare capacity of `buf`, without zeroing it first;
/// returns the count received and grows `buf.len()` by it.
pub fn recv_to_spare(sock: &Socket, buf: &mut Vec<u8>) -> io::Result<usize> {
    let n = sock.recv(buf.spare_capacity_mut())?;
    // SAFETY: recv(2) initialised the first `n` bytes of the spare capacity,
    // and `n` is at most its length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `send(2)` with `MSG_NOSIGNAL`: a write to a connection the peer has closed
/// fails with `EPIPE` instead of raising `SIGPIPE` in the host process.
pub fn send(sock: &Socket, data: &[u8]) -> io::Result<usize> {
    sock.send_with_flags(data, libc::MSG_NOSIGNAL)
}

/// Registers `sock` with the current tokio reactor. Fails (instead of
/// panicking, as tokio would) when called outside a tokio runtime.
pub fn register(sock: Socket) -> io::Result<AsyncFd<Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "sockshim host functions must run inside a tokio runtime",
        ));
    }
    // SAFETY: `Socket` owns its file descriptor: it stays open, and
    // `as_raw_fd` returns the same one, until the `Socket` is dropped, which
    // happens only when the `AsyncFd` is dropped or `into_inner` gives it back.
    unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)
}
