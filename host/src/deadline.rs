//! The one deadline loop every blocking socket operation goes through.
//!
//! This is CPython's `sock_call_ex` (Modules/socketmodule.c) on tokio: the
//! deadline is computed once, when the operation starts, from the socket's
//! timeout; the system call is tried first; only when it reports
//! `EWOULDBLOCK`/`EAGAIN` does the loop wait for readiness, until the
//! deadline; `EINTR` retries at once; past the deadline the operation fails
//! with `timeout`. A non-blocking socket never waits: it fails with
//! `would-block`. Waiting is an `await` on tokio's reactor, so a guest blocked
//! in `recv` holds no OS thread; each wait races the plugin's stop signal
//! (`StopWaits`), which ends it with `ECANCELED`.
//!
//! A socket can instead wait on the thread that runs its plugin
//! ([`WaitOn::Thread`], for an embedder that gives each plugin a thread of
//! its own): then the wait is ppoll(2) on the socket and a stop signal, and
//! the loop is CPython's to the letter.
//!
//! One refinement on the reactor, from tokio's own streams: once the socket
//! is registered, the readiness the reactor remembers stands for the
//! kernel's answer, so a system call that would fail with `EAGAIN` (after an
//! earlier `EAGAIN`, or after a receive or send(2) shorter than asked) is not
//! made; the loop waits for the next wake-up instead.

use crate::bindings::ErrorCode;
use crate::sys::{self, SocketIo, StopSignal, WaitOn, Woken};
use socket2::Socket;
use std::io;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// How long a socket's blocking operations may wait: Python's
/// `settimeout(None | 0.0 | seconds)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Timeout {
    /// Wait without limit.
    #[default]
    Blocking,
    /// Never wait.
    NonBlocking,
    /// Wait at most this long per operation (never zero: zero is
    /// `NonBlocking`).
    After(Duration),
}

impl Timeout {
    /// A timeout of `nanos` nanoseconds; zero means non-blocking, as
    /// `settimeout(0.0)` does.
    pub fn from_nanos(nanos: u64) -> Timeout {
        match nanos {
            0 => Timeout::NonBlocking,
            n => Timeout::After(Duration::from_nanos(n)),
        }
    }

    /// The deadline of an operation that starts now.
    pub fn deadline(self) -> Deadline {
        match self {
            Timeout::Blocking => Deadline::Never,
            Timeout::NonBlocking => Deadline::Now,
            // An instant too far away to represent is as good as never.
            Timeout::After(d) => Instant::now()
                .checked_add(d)
                .map_or(Deadline::Never, Deadline::At),
        }
    }
}

/// When an operation gives up waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Never: wait for readiness without limit.
    Never,
    /// At once: do not wait at all (non-blocking socket).
    Now,
    /// At this instant. tokio's timer rounds up to the next millisecond, so a
    /// sub-millisecond timeout still waits instead of spinning.
    At(Instant),
}

/// Runs `op` on the socket until it succeeds, fails with an error other than
/// `EAGAIN`/`EINTR`, or the deadline passes; `interest` is the readiness to
/// wait for when `op` would block.
///
/// `op` must be a single non-blocking system call (or a few that are safe to
/// repeat). It is tried before any wait, unless tokio's reactor already
/// knows that it would fail: once the socket is registered, what it
/// remembers of the socket's readiness (set by the kernel's wake-ups,
/// cleared by an `EAGAIN` or a draining result, see [`sock_call_draining`])
/// decides whether to try at once or to wait first, as tokio's own streams
/// do. A non-blocking socket (`Deadline::Now`) always makes the system call.
pub async fn sock_call<R>(
    io: &SocketIo,
    interest: Interest,
    deadline: Deadline,
    op: impl FnMut(&Socket) -> io::Result<R>,
) -> Result<R, ErrorCode> {
    sock_call_draining(io, interest, deadline, op, |_| false).await
}

/// [`sock_call`] for an operation whose result can show that it used up the
/// readiness it was tried on: a receive shorter than its buffer drained the
/// socket, a send shorter than its data filled the socket's buffer. Then
/// `drained` says so, and the readiness tokio remembers is cleared, so that
/// the next operation waits for the kernel's next wake-up instead of first
/// making a system call bound to fail with `EAGAIN`. (Only where the kernel
/// wakes the socket up again: after a short receive or a short send(2) on a
/// stream, not after a send cut short by the end of a file.)
pub async fn sock_call_draining<R>(
    io: &SocketIo,
    interest: Interest,
    deadline: Deadline,
    mut op: impl FnMut(&Socket) -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> Result<R, ErrorCode> {
    if let WaitOn::Thread(stop) = io.wait_on() {
        return call_waiting_on_thread(io.socket(), stop, interest, deadline, op);
    }
    let fd = match io.registered() {
        Some(fd) if deadline != Deadline::Now => fd,
        Some(_) => {
            // Registered, and never to wait (a non-blocking socket, as an
            // event loop's are): the system call now, keeping what tokio
            // remembers of the socket true for a later wait.
            return call_now_draining(io, interest, op, drained).map_err(ErrorCode::from);
        }
        None => {
            // Not registered yet (or never to wait): try the system call
            // first; only a wait needs the reactor.
            match retry_interrupted(|| op(io.socket())) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other.map_err(ErrorCode::from),
            }
            if deadline == Deadline::Now {
                return Err(ErrorCode::WouldBlock);
            }
            io.registration()?
        }
    };
    let stop = io.wait_on().stop();
    // Boxed: the wait's state (tokio's readiness, timer and stop futures)
    // is most of a host call's future, which wasmtime boxes and moves on
    // every call, though most calls of a busy socket never wait.
    Box::pin(wait_and_retry(
        fd,
        interest,
        deadline,
        stop,
        || op(io.socket()),
        drained,
    ))
    .await
}

/// [`sock_call_draining`] for a socket that waits on the thread running the
/// plugin ([`WaitOn::Thread`]): CPython's `sock_call_ex` as it is. The
/// system call first; on `EWOULDBLOCK`, ppoll(2) until the socket is ready,
/// the deadline passes (`timeout`) or `stop` is given (`os(ECANCELED)`, for
/// this wait and every later one); then the system call again. Nothing is
/// remembered between operations, so nothing needs clearing. Being plain
/// code, it also runs where nothing can be awaited: `recv-into`'s receive
/// waits here while its result is lowered ([`crate::placed`]).
pub fn call_waiting_on_thread<R>(
    sock: &Socket,
    stop: &StopSignal,
    interest: Interest,
    deadline: Deadline,
    mut op: impl FnMut(&Socket) -> io::Result<R>,
) -> Result<R, ErrorCode> {
    let mut woken = false;
    loop {
        match retry_interrupted(|| op(sock)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other.map_err(ErrorCode::from),
        }
        if woken {
            // Ready, yet the call would block: a socket ppoll(2) reports
            // ready for good (gVisor's datagram socket shut for reading,
            // see `wait_and_retry`) would make this loop spin; look again
            // in a millisecond instead.
            std::thread::sleep(SPURIOUS_PAUSE);
        }
        let timeout = match deadline {
            Deadline::Now => return Err(ErrorCode::WouldBlock),
            Deadline::Never => None,
            Deadline::At(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(ErrorCode::Timeout),
            },
        };
        match sys::wait_on_thread(sock, interest.is_readable(), stop, timeout)? {
            Woken::Ready => woken = true,
            Woken::TimedOut => return Err(ErrorCode::Timeout),
            Woken::Stopped => return Err(io::Error::from_raw_os_error(libc::ECANCELED).into()),
        }
    }
}

/// How long a wait that woke up to nothing (readiness the socket keeps
/// reporting while its system call would block) pauses before it looks
/// again.
const SPURIOUS_PAUSE: Duration = Duration::from_millis(1);

/// The waiting half of [`sock_call`], for any descriptor on tokio's reactor:
/// until `deadline`, waits for `interest` (at once when the reactor
/// remembers the descriptor as ready) and runs `op`, again and again until
/// it does not report `EWOULDBLOCK`. A wait ends early, with
/// `os(ECANCELED)`, when `stop` is given (the plugin's [`StopWaits`]);
/// a stop given earlier ends the first wait at once.
///
/// [`StopWaits`]: crate::StopWaits
pub async fn wait_and_retry<T: AsRawFd, R>(
    fd: &AsyncFd<T>,
    interest: Interest,
    deadline: Deadline,
    stop: &StopSignal,
    mut op: impl FnMut() -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> Result<R, ErrorCode> {
    let until = match deadline {
        // No waiting: whatever the reactor already knows, or a timeout.
        Deadline::Now => Some(Instant::now()),
        Deadline::Never => None,
        Deadline::At(at) => Some(at),
    };
    loop {
        let wait = async {
            match until {
                None => Some(fd.ready(interest).await),
                Some(at) => tokio::time::timeout_at(at, fd.ready(interest)).await.ok(),
            }
        };
        let ready = tokio::select! {
            // A stop given before the wait ends it before readiness the
            // reactor remembers could let the loop go on.
            biased;
            () = stop.stopped() => return Err(io::Error::from_raw_os_error(libc::ECANCELED).into()),
            waited = wait => match waited {
                Some(ready) => ready,
                None => return Err(ErrorCode::Timeout),
            },
        };
        let mut guard = ready.map_err(ErrorCode::from)?;
        let kept = guard.ready().is_read_closed() || guard.ready().is_write_closed();
        // `try_io` clears the readiness tokio cached when `op` reports
        // EWOULDBLOCK, so the next `ready` really waits for the kernel.
        // Clearing after a draining result is as safe: the guard's
        // readiness predates `op`, and tokio clears only if no wake-up
        // came in between.
        match guard.try_io(|_| retry_interrupted(&mut op)) {
            Ok(Ok(result)) => {
                if drained(&result) {
                    guard.clear_ready();
                }
                return Ok(result);
            }
            Ok(Err(e)) => return Err(ErrorCode::from(e)),
            Err(_would_block) => {
                // A wake-up with nothing to do: the deadline still holds.
                // Readiness tokio keeps for good (a read-closed socket's)
                // makes every `ready` return at once, so the timeout
                // around it never fires: gVisor reports a datagram socket
                // whose receiving side is shut down as read-closed while
                // its recvfrom(2) says EAGAIN, and the operations fuzzer
                // found a `recv` looping there for good
                // (`datagram::tests::a_receive_after_shutdown_returns_at_once`).
                let now = Instant::now();
                if until.is_some_and(|at| now >= at) {
                    return Err(ErrorCode::Timeout);
                }
                if kept {
                    // ... and without a pause this loop would never yield:
                    // no timeout around it, and no other task of the
                    // runtime's thread, would run again.
                    let pause = now + SPURIOUS_PAUSE;
                    tokio::time::sleep_until(until.map_or(pause, |at| at.min(pause))).await;
                }
            }
        }
    }
}

/// Makes `op` once, now, where nothing can be awaited: the receive into the
/// plugin's memory that runs while `recv`'s result is lowered
/// ([`crate::placed`]), after [`sock_call`] has waited for the bytes. A
/// socket that waits on its thread is never registered: `op` just runs.
///
/// On the reactor it keeps what tokio remembers of the socket's readiness
/// as true as [`sock_call_draining`] does: the readiness is taken before
/// `op` runs and cleared after an `EWOULDBLOCK` or a result that `drained`
/// calls draining, so the next operation waits for the kernel's wake-up
/// instead of first making a system call bound to fail. Taking it needs a
/// poll with a waker
/// that does nothing: readiness tokio remembers is returned at once, and
/// no one else waits through that waker slot (the loop waits through
/// [`AsyncFd::ready`], which has its own).
pub fn call_now_draining<R>(
    io: &SocketIo,
    interest: Interest,
    mut op: impl FnMut(&Socket) -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> io::Result<R> {
    let Some(fd) = io.registered() else {
        return retry_interrupted(|| op(io.socket()));
    };
    let mut cx = Context::from_waker(Waker::noop());
    let ready = if interest.is_readable() {
        fd.poll_read_ready(&mut cx)
    } else {
        fd.poll_write_ready(&mut cx)
    };
    let mut guard = match ready {
        Poll::Ready(Ok(guard)) => guard,
        // Nothing remembered (or a reactor error): nothing to keep true.
        Poll::Ready(Err(_)) | Poll::Pending => return retry_interrupted(|| op(io.socket())),
    };
    match guard.try_io(|_| retry_interrupted(|| op(io.socket()))) {
        Ok(Ok(result)) => {
            if drained(&result) {
                guard.clear_ready();
            }
            Ok(result)
        }
        Ok(Err(e)) => Err(e),
        // `try_io` has cleared the readiness.
        Err(_would_block) => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Retries `op` while it fails with `EINTR`, as CPython does after running
/// signal handlers.
pub(crate) fn retry_interrupted<R>(mut op: impl FnMut() -> io::Result<R>) -> io::Result<R> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Type};
    use std::io::{Read, Write};
    use std::sync::Arc;

    /// A connected pair: a non-blocking socket registered with tokio, and a
    /// plain blocking std stream as its peer.
    fn pair() -> (SocketIo, std::net::TcpStream) {
        let (ours, peer) = crate::testing::loopback_pair();
        ours.set_nonblocking(true).unwrap();
        (SocketIo::new(ours, WaitOn::reactor()), peer)
    }

    /// Writes `byte` to `peer` 100 ms from now, on a thread that hands the
    /// peer back.
    fn write_later(
        mut peer: std::net::TcpStream,
        byte: u8,
    ) -> std::thread::JoinHandle<std::net::TcpStream> {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            peer.write_all(&[byte]).unwrap();
            peer
        })
    }

    fn recv(mut s: &Socket, buf: &mut [u8]) -> io::Result<usize> {
        // socket2's `Read for &Socket` is recv(2).
        s.read(buf)
    }

    /// [`call_now_draining`] of a recv(2) into `buf`.
    fn recv_now(
        io: &SocketIo,
        buf: &mut [u8],
        drained: impl Fn(&usize) -> bool,
    ) -> io::Result<usize> {
        call_now_draining(io, Interest::READABLE, |s| recv(s, buf), drained)
    }

    #[tokio::test]
    async fn data_already_there_is_read_without_waiting() {
        let (fd, mut peer) = pair();
        peer.write_all(b"hello").unwrap();
        // Give loopback a moment to deliver.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0; 16];
        let n = sock_call(&fd, Interest::READABLE, Deadline::Now, |s| {
            recv(s, &mut buf)
        })
        .await
        .unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    /// On either way of waiting, the try up front fails with EAGAIN, the
    /// wait (the reactor, or ppoll(2) on the thread, which never registers
    /// the socket) ends when the bytes come, and one more call gets them.
    #[tokio::test]
    async fn eagain_waits_for_readiness_then_retries() {
        for (io, peer) in both_ways() {
            let how = io.wait_on().clone();
            let writer = write_later(peer, 42);
            let mut calls = 0;
            let mut buf = [0; 16];
            let started = std::time::Instant::now();
            let n = sock_call(&io, Interest::READABLE, Deadline::Never, |s| {
                calls += 1;
                recv(s, &mut buf)
            })
            .await
            .unwrap();
            assert_eq!(&buf[..n], &[42]);
            assert!(started.elapsed() >= Duration::from_millis(80), "{how:?}");
            // One try up front (EAGAIN), one after the wake-up; a spurious
            // wake-up or an EINTR may add one, a busy loop would add
            // thousands.
            assert!((2..=4).contains(&calls), "{how:?}: {calls} calls");
            if let WaitOn::Thread(_) = how {
                assert!(io.registered().is_none(), "registered with the reactor");
            }
            drop(writer.join().unwrap());
        }
    }

    /// A request/response exchange: once a receive shorter than its buffer
    /// has drained the socket, the next receive waits for the kernel's
    /// wake-up and then makes the one system call that succeeds, instead of
    /// trying (and failing with EAGAIN) before and after the remembered,
    /// stale readiness.
    #[tokio::test]
    async fn after_a_draining_receive_the_next_waits_without_failed_calls() {
        let (fd, mut peer) = pair();
        let mut buf = [0; 16];
        let drained = crate::placed::drains(buf.len());
        for round in 0..3u8 {
            let writer = write_later(peer, round);
            let mut calls = 0;
            let n = sock_call_draining(
                &fd,
                Interest::READABLE,
                Deadline::Never,
                |s| {
                    calls += 1;
                    recv(s, &mut buf)
                },
                &drained,
            )
            .await
            .unwrap();
            assert_eq!(&buf[..n], &[round]);
            peer = writer.join().unwrap();
            // The first round tries before the socket is registered (EAGAIN)
            // and after the wake-up; the later ones know it is drained.
            let expected = if round == 0 { 2 } else { 1 };
            assert_eq!(calls, expected, "round {round}");
        }
    }

    /// The same exchange with the large receive's two halves: a peek
    /// through the loop, then the receive made while the result is lowered
    /// ([`call_now_draining`]). A short receive there clears the readiness
    /// too, so the next peek waits instead of failing first.
    #[tokio::test]
    async fn a_draining_receive_made_outside_the_loop_also_clears_readiness() {
        let (fd, mut peer) = pair();
        let mut buf = [0; 16];
        for round in 0..3u8 {
            let writer = write_later(peer, round);
            let mut peeks = 0;
            sock_call(&fd, Interest::READABLE, Deadline::Never, |s| {
                peeks += 1;
                crate::sys::peek(s)
            })
            .await
            .unwrap();
            let drained = crate::placed::drains(buf.len());
            let n = recv_now(&fd, &mut buf, drained).unwrap();
            assert_eq!(&buf[..n], &[round]);
            peer = writer.join().unwrap();
            let expected = if round == 0 { 2 } else { 1 };
            assert_eq!(peeks, expected, "round {round}");
        }
    }

    #[tokio::test]
    async fn a_call_made_now_on_a_drained_socket_reports_would_block() {
        let (fd, mut peer) = pair();
        peer.write_all(b"x").unwrap();
        let mut buf = [0; 16];
        fd.registration().unwrap();
        // Registered and ready: the peek sees the byte.
        sock_call(&fd, Interest::READABLE, Deadline::Never, crate::sys::peek)
            .await
            .unwrap();
        let whole = |_: &usize| false;
        let n = recv_now(&fd, &mut buf, whole).unwrap();
        assert_eq!(&buf[..n], b"x");
        let err = recv_now(&fd, &mut buf, whole).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // The EWOULDBLOCK cleared the readiness: a non-waiting check sees none.
        let registration = fd.registered().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(registration.poll_read_ready(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn eintr_is_retried_at_once() {
        let (fd, mut peer) = pair();
        peer.write_all(b"x").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut interrupts = 3;
        let mut buf = [0; 4];
        let n = sock_call(&fd, Interest::READABLE, Deadline::Now, |s| {
            if interrupts > 0 {
                interrupts -= 1;
                return Err(io::Error::from_raw_os_error(libc::EINTR));
            }
            recv(s, &mut buf)
        })
        .await
        .unwrap();
        assert_eq!((n, interrupts), (1, 0));
    }

    /// A socket waiting on the reactor and one waiting on the thread, each
    /// with its peer.
    fn both_ways() -> [(SocketIo, std::net::TcpStream); 2] {
        let (on_thread, peer, _stop) = pair_on_thread();
        [pair(), (on_thread, peer)]
    }

    #[tokio::test]
    async fn non_blocking_fails_at_once_with_would_block() {
        for (io, _peer) in both_ways() {
            let mut buf = [0; 4];
            let err = sock_call(&io, Interest::READABLE, Deadline::Now, |s| {
                recv(s, &mut buf)
            })
            .await
            .unwrap_err();
            assert!(
                matches!(err, ErrorCode::WouldBlock),
                "{:?}: {err:?}",
                io.wait_on()
            );
        }
    }

    #[tokio::test]
    async fn the_deadline_bounds_the_wait() {
        for (io, _peer) in both_ways() {
            let mut buf = [0; 4];
            let started = std::time::Instant::now();
            let deadline = Timeout::After(Duration::from_millis(300)).deadline();
            let err = sock_call(&io, Interest::READABLE, deadline, |s| recv(s, &mut buf))
                .await
                .unwrap_err();
            let elapsed = started.elapsed();
            let how = io.wait_on();
            assert!(matches!(err, ErrorCode::Timeout), "{how:?}: {err:?}");
            assert!(
                elapsed >= Duration::from_millis(300),
                "{how:?}: {elapsed:?}"
            );
            assert!(elapsed < Duration::from_secs(5), "{how:?}: {elapsed:?}");
        }
    }

    #[tokio::test]
    async fn other_errors_end_the_call() {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let fd = SocketIo::new(s, WaitOn::reactor());
        let mut buf = [0; 4];
        let err = sock_call(&fd, Interest::READABLE, Deadline::Never, |s| {
            recv(s, &mut buf)
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ErrorCode::NotConnected), "{err:?}");
    }

    #[tokio::test]
    async fn waiting_to_accept_does_not_spin() {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        s.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        s.listen(8).unwrap();
        let io = SocketIo::new(s, WaitOn::reactor());
        let mut calls = 0;
        let deadline = Timeout::After(Duration::from_millis(300)).deadline();
        let err = sock_call(&io, Interest::READABLE, deadline, |s| {
            calls += 1;
            s.accept()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ErrorCode::Timeout));
        assert!(calls <= 3, "accept ran {calls} times while waiting");
    }

    #[test]
    fn zero_timeout_is_non_blocking() {
        assert_eq!(Timeout::from_nanos(0), Timeout::NonBlocking);
        assert_eq!(
            Timeout::from_nanos(1_500_000_000),
            Timeout::After(Duration::from_millis(1500))
        );
    }

    #[tokio::test]
    async fn a_deadline_beyond_representable_time_is_never() {
        assert_eq!(Timeout::After(Duration::MAX).deadline(), Deadline::Never);
    }

    /// A connected pair as [`pair`] makes, whose socket waits on the thread,
    /// and its stop signal.
    fn pair_on_thread() -> (SocketIo, std::net::TcpStream, Arc<StopSignal>) {
        let (ours, peer) = crate::testing::loopback_pair();
        ours.set_nonblocking(true).unwrap();
        let stop = Arc::new(StopSignal::new().unwrap());
        let io = SocketIo::new(ours, WaitOn::Thread(Arc::clone(&stop)));
        (io, peer, stop)
    }

    /// The stop signal, given from another thread, ends a wait without
    /// limit with `os(ECANCELED)`, and every later wait at once: on the
    /// thread, and on the reactor (issue 26: there only dropping the
    /// future ended a wait).
    #[tokio::test]
    async fn the_stop_signal_ends_waits_on_the_thread_and_the_reactor() {
        for (io, peer) in both_ways() {
            stop_ends_waits(io, peer).await;
        }
    }

    async fn stop_ends_waits(io: SocketIo, mut peer: std::net::TcpStream) {
        let stop = Arc::clone(io.wait_on().stop());
        // A backstop, so that a stop signal that does not work fails the
        // test (too late) instead of hanging it.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            let _ = peer.write_all(b"late");
        });
        let stopper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                stop.stop();
            })
        };
        let ecanceled = crate::error::wasi_errno::from_host(libc::ECANCELED);
        let mut buf = [0; 4];
        for round in ["the wait in progress", "a later wait"] {
            let started = std::time::Instant::now();
            let err = sock_call(&io, Interest::READABLE, Deadline::Never, |s| {
                recv(s, &mut buf)
            })
            .await
            .unwrap_err();
            let elapsed = started.elapsed();
            assert!(
                matches!(err, ErrorCode::Os(n) if n == ecanceled),
                "{round}: {err:?}"
            );
            if round == "a later wait" {
                assert!(elapsed < Duration::from_secs(1), "{round}: {elapsed:?}");
            } else {
                assert!(elapsed >= Duration::from_millis(80), "{round}: {elapsed:?}");
                assert!(elapsed < Duration::from_secs(5), "{round}: {elapsed:?}");
            }
        }
        stopper.join().unwrap();
    }
}
