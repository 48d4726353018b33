//! The system calls socket2 leaves to us: the crate's only `unsafe` system
//! calls (wasmtime's own `unsafe` traits and loaders are used in `placed`
//! and `compiled`). Also the `send(2)` and `recv(2)` every transfer makes,
//! as rustix's raw system calls rather than through glibc (see
//! [`recv_uninit`]).

use rustix::net::{RecvFlags, SendFlags};
use socket2::{SockAddr, Socket};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// `recv(2)` into the spare capacity of `buf`, without zeroing it first;
/// returns the count received and grows `buf.len()` by it.
pub fn recv_to_spare(sock: &Socket, buf: &mut Vec<u8>) -> io::Result<usize> {
    let n = recv_uninit(sock, buf.spare_capacity_mut())?;
    // SAFETY: recv(2) initialised the first `n` bytes of the spare capacity,
    // and `n` is at most its length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `recvfrom(2)` into the spare capacity of `buf`, without zeroing it
/// first: one datagram, truncated to the spare capacity (zero consumes it);
/// returns the count received and the sender, and grows `buf.len()` by the
/// count.
pub fn recv_from_to_spare(sock: &Socket, buf: &mut Vec<u8>) -> io::Result<(usize, SockAddr)> {
    let (n, from) = sock.recv_from(buf.spare_capacity_mut())?;
    // SAFETY: recvfrom(2) initialised the first `n` bytes of the spare
    // capacity, and without MSG_TRUNC `n` is at most its length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok((n, from))
}

/// `recvfrom(2)` into `buf`: one datagram, truncated to `buf`.
pub fn recv_from(sock: &Socket, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
    // recvfrom(2) writes only initialised bytes into the buffer, so `buf`
    // holds valid `u8`s afterwards.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    sock.recv_from(uninit)
}

/// `recvfrom(2)` of one byte with `MSG_PEEK`: the sender of the datagram
/// that waits, which stays for the next receive.
pub fn peek_from(sock: &Socket) -> io::Result<SockAddr> {
    sock.peek_from(&mut [MaybeUninit::uninit(); 1])
        .map(|(_, from)| from)
}

/// `sendto(2)` with `MSG_NOSIGNAL`.
pub fn send_to(sock: &Socket, data: &[u8], to: &SockAddr) -> io::Result<usize> {
    sock.send_to_with_flags(data, to, libc::MSG_NOSIGNAL)
}

/// `recv(2)` into `buf`.
pub fn recv(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(sock, buf, RecvFlags::empty())?.0)
}

/// `recv(2)` without flags into `buf`, which it need not have
/// initialised; returns the count received, whose bytes it initialised at
/// the start of `buf`. A raw system call (rustix), as every `recv` and
/// `send` on the path of a transfer: glibc's wrappers are cancellation
/// points, which the host never uses and would pay for on every call.
fn recv_uninit(sock: &Socket, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    let ((received, _), _) = rustix::net::recv(sock, buf, RecvFlags::empty())?;
    Ok(received.len())
}

/// setsockopt(2) `TCP_INQ` (tcp(7), Linux 4.18): from now on, a
/// [`recv_telling_queued`] on the stream socket learns how many bytes its
/// receive queue still holds.
pub fn report_queued_on_receive(sock: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value points at a live int of the length passed;
    // the descriptor is open for the call (borrowed).
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INQ,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recv(2)` into `buf`: the count received and, when `tell` (on a stream
/// socket with [`report_queued_on_receive`] set), the bytes its receive
/// queue holds after this receive, which takes recvmsg(2) and its control
/// message; once the peer's FIN has come, an empty queue is said to hold
/// 1, so that the reader reads on. Without `tell`, a plain recv(2) that
/// says nothing of the queue.
pub fn recv_telling_queued(
    sock: &Socket,
    buf: &mut [u8],
    tell: bool,
) -> io::Result<(usize, Option<usize>)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
    // recv(2) and recvmsg(2) write only initialised bytes into the buffer,
    // so `buf` holds valid `u8`s afterwards.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    recv_maybe_telling_queued(sock, uninit, tell)
}

/// [`recv_telling_queued`] into the spare capacity of `buf`, without
/// zeroing it first; grows `buf.len()` by the count received.
pub fn recv_to_spare_telling_queued(
    sock: &Socket,
    buf: &mut Vec<u8>,
    tell: bool,
) -> io::Result<(usize, Option<usize>)> {
    let (n, queued) = recv_maybe_telling_queued(sock, buf.spare_capacity_mut(), tell)?;
    // SAFETY: the receive initialised the first `n` bytes of the spare
    // capacity, and `n` is at most its length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok((n, queued))
}

/// [`recvmsg_telling_queued`] when `tell`, else a plain recv(2).
fn recv_maybe_telling_queued(
    sock: &Socket,
    buf: &mut [MaybeUninit<u8>],
    tell: bool,
) -> io::Result<(usize, Option<usize>)> {
    if tell {
        recvmsg_telling_queued(sock, buf)
    } else {
        recv_uninit(sock, buf).map(|n| (n, None))
    }
}

/// recvmsg(2) into `buf` with room for the kernel's `TCP_CM_INQ` control
/// message, which it reads.
fn recvmsg_telling_queued(
    sock: &Socket,
    buf: &mut [MaybeUninit<u8>],
) -> io::Result<(usize, Option<usize>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one control message with an int (CMSG_SPACE(4) is 24 on
    // 64-bit Linux), aligned as a `cmsghdr`.
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec over `buf`, live and exclusively
    // borrowed, and at `control` with its true length; recvmsg(2) writes
    // at most those lengths. The descriptor is open for the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut queued = None;
    // SAFETY: the CMSG_* functions walk the control messages the kernel
    // wrote into `control`, within the `msg_controllen` it set; a message's
    // data is read unaligned, as an int only when its level and type say
    // it is `TCP_CM_INQ`'s.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_TCP && (*cmsg).cmsg_type == libc::TCP_CM_INQ {
                let left: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                queued = usize::try_from(left).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // recvmsg(2) returned a non-negative count of at most `buf.len()`.
    Ok((n as usize, queued))
}

/// `recv(2)` of one byte with `MSG_PEEK`: 1 when bytes wait, 0 at the end
/// of the stream; the byte stays for the next receive.
pub fn peek(sock: &Socket) -> io::Result<usize> {
    sock.peek(&mut [MaybeUninit::uninit(); 1])
}

/// `send(2)` with `MSG_NOSIGNAL`: a write to a connection the peer has closed
/// fails with `EPIPE` instead of raising `SIGPIPE` in the host process.
pub fn send(sock: &Socket, data: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(sock, data, SendFlags::NOSIGNAL)?)
}

/// `ioctl(SIOCOUTQ)` (tcp(7)): the bytes in the socket's send queue that
/// the peer has not yet acknowledged.
pub fn unacknowledged_bytes(sock: &Socket) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (the same request number as TIOCOUTQ) writes one int
    // through the pointer, which points at a live, exclusively borrowed int;
    // the descriptor is open for the call (borrowed).
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// `ioctl(SIOCINQ)` (tcp(7), the same request number as `FIONREAD`): the
/// bytes in a stream socket's receive queue, which a recv(2) of that many
/// takes whole, as no one else reads the socket.
pub fn queued_bytes(sock: &Socket) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at a
    // live, exclusively borrowed int; the descriptor is open for the call
    // (borrowed).
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// Why getaddrinfo(3) found no address.
#[derive(Debug)]
pub enum LookupFailure {
    /// `EAI_AGAIN`: the name server did not answer now; later may work.
    Again,
    /// `EAI_NONAME`, `EAI_NODATA`, `EAI_FAIL` and the rest: the name has
    /// no address (or the lookup cannot succeed).
    NoAddress,
    /// `EAI_SYSTEM`, `EAI_MEMORY`: the host failed.
    System(io::Error),
}

/// getaddrinfo(3) for `host` (stream sockets, both families): its
/// addresses, in the resolver's order, without repeats. Blocks.
pub fn getaddrinfo(host: &std::ffi::CStr) -> Result<Vec<std::net::IpAddr>, LookupFailure> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    // SAFETY: an all-zero addrinfo is a valid value for hints (null
    // pointers, no flags).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: `host` is NUL-terminated, the service may be null, `hints`
    // lives across the call and `list` receives a list we free below.
    let r = unsafe { libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut list) };
    match r {
        0 => {}
        libc::EAI_AGAIN => return Err(LookupFailure::Again),
        libc::EAI_SYSTEM => return Err(LookupFailure::System(io::Error::last_os_error())),
        libc::EAI_MEMORY => {
            return Err(LookupFailure::System(io::ErrorKind::OutOfMemory.into()));
        }
        _ => return Err(LookupFailure::NoAddress),
    }
    let mut ips = Vec::new();
    let mut next = list;
    while !next.is_null() {
        // SAFETY: a non-null node of the list getaddrinfo returned, alive
        // until freeaddrinfo below.
        let info = unsafe { &*next };
        let ip = match info.ai_family {
            libc::AF_INET if !info.ai_addr.is_null() => {
                // SAFETY: an AF_INET node's address is a sockaddr_in.
                let sin = unsafe { &*(info.ai_addr as *const libc::sockaddr_in) };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 if !info.ai_addr.is_null() => {
                // SAFETY: an AF_INET6 node's address is a sockaddr_in6.
                let sin6 = unsafe { &*(info.ai_addr as *const libc::sockaddr_in6) };
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        };
        if let Some(ip) = ip
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
        next = info.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once, not used after.
    unsafe { libc::freeaddrinfo(list) };
    Ok(ips)
}

/// poll(2) without waiting: `Ok` when a read of `file` would not block
/// (bytes wait, the writer is gone, or an error is pending), `WouldBlock`
/// otherwise.
pub fn poll_readable(file: &File) -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, exclusively borrowed; the descriptor is open
    // for the call (borrowed).
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Registers `file` (which it then owns) with the current tokio reactor
/// for readability. Fails instead of panicking outside a tokio runtime.
pub fn register_readable(file: File) -> io::Result<AsyncFd<File>> {
    in_runtime()?;
    // SAFETY: the `File` owns its descriptor, which stays open until the
    // `AsyncFd` drops it, and `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register_with_interest(file, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Tokio's registrations panic outside a runtime; this is the error instead.
fn in_runtime() -> io::Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(io::Error::other(
            "sockshim host functions must run inside a tokio runtime",
        )),
    }
}

/// `sendfile(2)` of at most `count` bytes of `file`, from `offset`, to
/// `sock`; returns the count sent (0 at the end of the file).
///
/// sendfile(2) has no `MSG_NOSIGNAL`: writing to a connection the peer has
/// closed raises `SIGPIPE` in the calling thread, whose default action ends
/// the host process. Rust programs ignore `SIGPIPE` from the start, and then
/// the call is made as it is; otherwise `SIGPIPE` is blocked in this thread
/// for the call and a signal it raised is taken back, as curl does, so that
/// the error is `EPIPE` and nothing else.
pub fn sendfile(sock: &Socket, file: &File, offset: u64, count: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    let mut call = || {
        // SAFETY: both descriptors are open for the duration of the call
        // (borrowed), and `off` is a valid, exclusively borrowed off_t.
        let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    };
    if sigpipe_ignored() {
        return call();
    }
    // SAFETY: plain signal-mask calls on properly initialised sigset_t
    // values owned by this frame.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let result = call();
        if !was_pending && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// poll(2) without waiting: `Ok` when the socket takes at least one byte
/// now (or has an error or a hang-up to report), `WouldBlock` otherwise.
pub fn poll_writable(sock: &Socket) -> io::Result<()> {
    let revents = poll_one_now(sock.as_raw_fd(), libc::POLLOUT)?;
    if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// fstatfs(2): whether `file` lies on a filesystem whose reads are served
/// by this machine (a disk, memory, the kernel), so that sendfile(2) from
/// it takes no longer than a local read. A network or user-space
/// filesystem (NFS, CIFS/SMB, FUSE, 9p, Ceph, AFS, ...), and any
/// filesystem not known here, is not.
pub fn is_on_local_filesystem(file: &File) -> io::Result<bool> {
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut info: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the call (borrowed), and `info` is
    // a valid, exclusively borrowed statfs.
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut info) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // `f_type` is a signed word whose value is a 32-bit magic number.
    Ok(is_local_filesystem_magic(info.f_type as u64 as u32))
}

/// Whether a filesystem magic number (statfs(2)'s `f_type`, from
/// `linux/magic.h`) names a local filesystem: an allow-list, so that a
/// filesystem nobody thought of counts as possibly slow.
pub fn is_local_filesystem_magic(magic: u32) -> bool {
    matches!(
        magic,
        0xEF53 // ext2, ext3, ext4
            | 0x5846_5342 // xfs
            | 0x9123_683E // btrfs
            | 0x0102_1994 // tmpfs (and devtmpfs)
            | 0x794C_7630 // overlayfs
            | 0x8584_58F6 // ramfs
            | 0x9584_58F6 // hugetlbfs
            | 0xF2F5_2010 // f2fs
            | 0x2FC1_2FC1 // zfs
            | 0xCA45_1A4E // bcachefs
            | 0x7371_7368 // squashfs
            | 0xE0F5_E1E2 // erofs
            | 0x9660 // iso9660
            | 0x4D44 // vfat, msdos
            | 0x2011_BAB0 // exfat
            | 0x5346_544E // ntfs3
            | 0x3153_464A // jfs
            | 0x5265_4973 // reiserfs
            | 0x3434 // nilfs2
            | 0x482B // hfsplus
            | 0x1501_3346 // udf
            | 0x9FA0 // proc
            | 0x6265_6572 // sysfs
            | 0x0027_E0EB // cgroup
            | 0x6367_7270 // cgroup2
    )
}

/// Is `SIGPIPE` ignored in this process (as every Rust program's `main`
/// arranges)? Asked once.
fn sigpipe_ignored() -> bool {
    static IGNORED: OnceLock<bool> = OnceLock::new();
    *IGNORED.get_or_init(|| {
        // SAFETY: sigaction with a null new action only reads the current
        // disposition into `old`.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        }
    })
}

/// What stops a plugin's waits, in either way of waiting ([`WaitOn`]):
/// once given, the wait in progress and every later one end at once with
/// `ECANCELED`. A wait on the plugin's thread polls the eventfd beside its
/// socket (it stays readable once signalled); a wait on tokio's reactor
/// races [`StopSignal::stopped`], which the signal wakes.
#[derive(Debug)]
pub struct StopSignal {
    /// Only for waits on the thread; a plugin on the reactor needs none.
    eventfd: Option<OwnedFd>,
    stopped: AtomicBool,
    woken: tokio::sync::Notify,
}

impl StopSignal {
    /// A signal not yet given, for a plugin that waits on its thread: with
    /// an eventfd for ppoll(2).
    pub fn new() -> io::Result<StopSignal> {
        // SAFETY: eventfd(2) with valid flags; a descriptor it returns is
        // new and owned by nothing else.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(StopSignal {
            // SAFETY: `fd` is open and ours alone (above).
            eventfd: Some(unsafe { OwnedFd::from_raw_fd(fd) }),
            stopped: AtomicBool::new(false),
            woken: tokio::sync::Notify::new(),
        })
    }

    /// A signal not yet given, for a plugin whose waits are all on tokio's
    /// reactor: no descriptor.
    pub fn on_reactor() -> StopSignal {
        StopSignal {
            eventfd: None,
            stopped: AtomicBool::new(false),
            woken: tokio::sync::Notify::new(),
        }
    }

    /// Gives the signal: the wait in progress ends, later ones do not start.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.woken.notify_waiters();
        if let Some(eventfd) = &self.eventfd {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to an open eventfd.
            // Its only failure, EAGAIN with the counter near 2^64, cannot
            // come from adding ones; the flag above is set in any case.
            unsafe { libc::write(eventfd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Whether the signal was given.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Ends once the signal is given (at once if it was): what an async
    /// wait races. Registers for the wake-up before looking at the flag,
    /// so a signal given in between is not missed.
    pub async fn stopped(&self) {
        let woken = self.woken.notified();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        if self.is_stopped() {
            return;
        }
        woken.await;
    }

    /// The eventfd as ppoll(2) takes it; -1 (ignored by ppoll(2)) without
    /// one.
    fn raw_eventfd(&self) -> RawFd {
        self.eventfd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }
}

/// ppoll(2) on this thread over `fds`, whose last entry is `stop`'s
/// eventfd, until one has events (in their `revents`), `timeout` passes
/// (`None`: no limit, and no kernel timer is armed), or `stop` is given. A
/// signal that interrupts the wait is [`Woken::Ready`].
fn ppoll_with_stop(
    fds: &mut [libc::pollfd],
    stop: &StopSignal,
    timeout: Option<Duration>,
) -> io::Result<Woken> {
    let timespec = timeout.map(timespec_of);
    let timespec_ptr = timespec
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfds of
    // the length given, whose descriptors are open for the call (borrowed);
    // the timespec, when given, lives on this frame; a null signal mask
    // leaves the thread's as it is.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timespec_ptr,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::Interrupted => Ok(Woken::Ready),
            _ => Err(err),
        };
    }
    let stopped = fds.last().is_some_and(|s| s.revents != 0) || stop.is_stopped();
    Ok(if stopped {
        Woken::Stopped
    } else if n == 0 {
        Woken::TimedOut
    } else {
        Woken::Ready
    })
}

/// `t` as ppoll(2)'s timeout; seconds past what `time_t` holds are as good
/// as never.
fn timespec_of(t: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    }
}

/// How a wait on the thread ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The socket is ready (or has an error or a hang-up to report), or a
    /// signal handler interrupted the wait: make the system call again.
    Ready,
    /// The timeout passed.
    TimedOut,
    /// The [`StopSignal`] was given.
    Stopped,
}

/// ppoll(2) on this thread until `sock` is readable (`readable`) or
/// writable, `timeout` passes (`None`: no limit, and no kernel timer is
/// armed), or `stop` is signalled.
pub fn wait_on_thread(
    sock: &Socket,
    readable: bool,
    stop: &StopSignal,
    timeout: Option<Duration>,
) -> io::Result<Woken> {
    if stop.is_stopped() {
        return Ok(Woken::Stopped);
    }
    let mut fds = [
        libc::pollfd {
            fd: sock.as_raw_fd(),
            events: if readable {
                libc::POLLIN
            } else {
                libc::POLLOUT
            },
            revents: 0,
        },
        libc::pollfd {
            fd: stop.raw_eventfd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    ppoll_with_stop(&mut fds, stop, timeout)
}

/// An epoll(7) instance: the set of descriptors a plugin's selector, or
/// one of its socket pollables, waits on. Level-triggered, as `select.epoll`
/// is by default. Closed when dropped.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

/// What one epoll_wait(2) reported: the `data` a descriptor was added with,
/// and its events (`EPOLLIN`, `EPOLLOUT`, ...).
pub type EpollEvent = (u64, u32);

impl Epoll {
    /// epoll_create1(2), close-on-exec.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1(2) with a valid flag; a descriptor it
        // returns is new and owned by nothing else.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is open and ours alone (above).
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: data };
        // SAFETY: a valid epoll descriptor, an operation epoll_ctl(2)
        // knows, and an event that lives on this frame. `fd` is only named
        // to the kernel, which checks it.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Adds `fd` with the events to watch (`EPOLL*` bits) and the `data` to
    /// report it by; `EEXIST` if it is in the set already.
    pub fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    /// Changes what `fd` is watched for, and its `data`.
    pub fn modify(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    /// Removes `fd` from the set.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Adds `stop`'s eventfd under `data`, so that a wait in this set
    /// ([`Epoll::wait`]) ends when the signal is given: the eventfd stays
    /// readable from then on. Nothing for a signal without an eventfd.
    pub fn add_stop(&self, stop: &StopSignal, data: u64) -> io::Result<()> {
        match &stop.eventfd {
            Some(eventfd) => self.add(eventfd.as_raw_fd(), libc::EPOLLIN as u32, data),
            None => Ok(()),
        }
    }

    /// epoll_wait(2) without waiting: what is ready now, at most `max`
    /// events (at least one), into `into` (whose earlier events are
    /// forgotten). `into` grows to `max` entries if it is smaller, and is
    /// kept for the next call, so a busy event loop allocates nothing here.
    pub fn ready_now(&self, into: &mut EpollEvents, max: usize) -> io::Result<()> {
        loop {
            match self.epoll_wait(into, max, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }

    /// epoll_wait(2) on this thread, into `into` as [`Epoll::ready_now`]
    /// fills it: until something in the set is ready or `timeout` passes
    /// (`None`: no limit). The timeout is rounded up to whole milliseconds,
    /// as Python's `epoll.poll` rounds it, so the wait never ends early. A
    /// signal that interrupts the wait returns with no events: the caller
    /// waits again with the time that is left.
    pub fn wait(
        &self,
        into: &mut EpollEvents,
        max: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let millis = timeout.map_or(-1, |t| {
            t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
        });
        match self.epoll_wait(into, max, millis) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            done => done,
        }
    }

    fn epoll_wait(&self, into: &mut EpollEvents, max: usize, millis: i32) -> io::Result<()> {
        into.len = 0;
        let max = max.clamp(1, i32::MAX as usize);
        if into.buf.len() < max {
            into.buf
                .resize(max, libc::epoll_event { events: 0, u64: 0 });
        }
        // SAFETY: `into.buf` holds at least `max` writable entries; the
        // kernel writes at most `max`.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                into.buf.as_mut_ptr(),
                max as i32,
                millis,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        into.len = (n as usize).min(max);
        Ok(())
    }
}

/// The buffer [`Epoll::ready_now`] and [`Epoll::wait`] fill, kept between
/// their calls: as many entries as the largest `max` they were given, no
/// more.
#[derive(Default)]
pub struct EpollEvents {
    buf: Vec<libc::epoll_event>,
    /// How many entries of `buf` the last call filled.
    len: usize,
}

impl EpollEvents {
    /// The events of the last [`Epoll::ready_now`] or [`Epoll::wait`].
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EpollEvent> + '_ {
        // `epoll_event` is packed on x86_64: copy its fields out, never
        // borrow them.
        self.buf[..self.len].iter().map(|e| {
            let (data, events) = (e.u64, e.events);
            (data, events)
        })
    }

    /// Whether the last wait found nothing ready.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many entries the last wait found ready.
    pub fn len(&self) -> usize {
        self.len
    }

    /// How many entries the buffer holds (its bound, for tests).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

impl std::fmt::Debug for EpollEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// poll(2) without waiting over `fds`, whose `revents` it fills in; returns
/// how many have any. `EINTR` is retried.
pub fn poll_now(fds: &mut [libc::pollfd]) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfds
        // of the length given; a zero timeout never blocks.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// ppoll(2) on this thread over `fds` and `stop`, until one of `fds` has
/// events (filled in their `revents`), `timeout` passes (`None`: no
/// limit), or `stop` is given. A signal that interrupts the wait is
/// [`Woken::Ready`] with no `revents`: the caller looks again and
/// recomputes its timeout.
pub fn poll_on_thread(
    fds: &mut Vec<libc::pollfd>,
    stop: &StopSignal,
    timeout: Option<Duration>,
) -> io::Result<Woken> {
    if stop.is_stopped() {
        return Ok(Woken::Stopped);
    }
    fds.push(libc::pollfd {
        fd: stop.raw_eventfd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let woken = ppoll_with_stop(fds, stop, timeout);
    fds.pop();
    woken
}

/// poll(2) of one descriptor without waiting: its `revents` for `events`
/// (and `POLLERR`/`POLLHUP`, which poll(2) reports unasked).
pub fn poll_one_now(fd: RawFd, events: i16) -> io::Result<i16> {
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    poll_now(&mut fds)?;
    Ok(fds[0].revents)
}

/// The raw descriptor of something that keeps it open longer than its
/// registration with tokio's reactor, as the reactor sees it.
#[derive(Debug)]
pub struct BorrowedRawFd(RawFd);

impl AsRawFd for BorrowedRawFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `fd` with the current tokio reactor for readability, for a
/// caller that keeps the descriptor open until the registration is dropped.
/// Fails instead of panicking outside a tokio runtime.
///
/// # Safety
///
/// `fd` must stay open, and the same descriptor, for as long as the
/// returned registration exists.
pub unsafe fn register_raw_readable(fd: RawFd) -> io::Result<AsyncFd<BorrowedRawFd>> {
    in_runtime()?;
    // SAFETY: the caller keeps `fd` open while the registration lives.
    unsafe { AsyncFd::register_with_interest(BorrowedRawFd(fd), tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Where a socket's operations wait when their system call would block.
#[derive(Clone, Debug)]
pub enum WaitOn {
    /// On tokio's reactor: a waiting plugin holds no thread. Each wait
    /// races the plugin's stop signal.
    Reactor(Arc<StopSignal>),
    /// In ppoll(2) on the thread that runs the plugin, which the wait
    /// blocks, until the socket is ready, the deadline passes, or the
    /// signal is given.
    Thread(Arc<StopSignal>),
}

impl WaitOn {
    /// On the reactor, with a stop signal of its own.
    pub fn reactor() -> WaitOn {
        WaitOn::Reactor(Arc::new(StopSignal::on_reactor()))
    }

    /// The plugin's stop signal.
    pub fn stop(&self) -> &Arc<StopSignal> {
        match self {
            WaitOn::Reactor(stop) | WaitOn::Thread(stop) => stop,
        }
    }
}

/// A non-blocking socket and its registration with tokio's reactor, made
/// the first time an operation has to wait (on the reactor: [`WaitOn`]).
///
/// Registering late matters: epoll reports a socket that is neither
/// connected nor listening as hung up (`EPOLLHUP`), and tokio keeps
/// "closed" readiness for good, so a socket registered when it was created
/// would look ready forever after `listen` or `connect`, and every wait
/// would spin. A socket has to wait only once it is connecting, connected or
/// listening.
#[derive(Debug)]
pub struct SocketIo {
    // Declared before `socket` so that it is dropped (deregistered) first.
    registration: OnceLock<AsyncFd<SocketFd>>,
    socket: Socket,
    wait_on: WaitOn,
}

/// The raw descriptor of a [`SocketIo`]'s socket, as tokio's reactor sees it.
#[derive(Debug)]
pub struct SocketFd(RawFd);

impl AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl SocketIo {
    /// Takes a socket that is already non-blocking, whose operations wait
    /// on `wait_on`.
    pub fn new(socket: Socket, wait_on: WaitOn) -> SocketIo {
        SocketIo {
            registration: OnceLock::new(),
            socket,
            wait_on,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Where the socket's operations wait.
    pub fn wait_on(&self) -> &WaitOn {
        &self.wait_on
    }

    /// The socket's registration with the current tokio reactor, made now if
    /// it was not yet. Fails (instead of panicking, as tokio would) outside
    /// a tokio runtime.
    pub fn registration(&self) -> io::Result<&AsyncFd<SocketFd>> {
        if let Some(registration) = self.registration.get() {
            return Ok(registration);
        }
        in_runtime()?;
        let fd = SocketFd(self.socket.as_raw_fd());
        // SAFETY: the descriptor belongs to `self.socket`, which stays open
        // for as long as the registration exists: the registration is
        // dropped before the socket (field order, `forget_registration`),
        // and `as_raw_fd` always returns the same number.
        let registration = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(self.registration.get_or_init(|| registration))
    }

    /// The socket's registration with tokio's reactor, if it has one yet.
    pub fn registered(&self) -> Option<&AsyncFd<SocketFd>> {
        self.registration.get()
    }

    /// Drops the registration and the readiness tokio remembered, e.g.
    /// before a new connect on a socket whose last one failed (and so looks
    /// hung up).
    pub fn forget_registration(&mut self) {
        self.registration.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    /// The filesystem classifier on real files: this machine's temporary
    /// directory (a disk or tmpfs), /dev/shm (tmpfs) and /proc are local;
    /// the magic numbers of network and user-space filesystems are not,
    /// nor is a number no filesystem has.
    #[test]
    fn local_and_remote_filesystems_are_told_apart() {
        let path = std::env::temp_dir().join(format!("sockshim-fs-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(is_on_local_filesystem(&file).unwrap(), "{}", path.display());
        for local in ["/dev/shm", "/proc/self/status"] {
            if let Ok(file) = File::open(local) {
                assert!(is_on_local_filesystem(&file).unwrap(), "{local}");
            }
        }
        for remote in [
            0x6969,      // nfs
            0xFF53_4D42, // cifs
            0xFE53_4D42, // smb2
            0x517B,      // smb
            0x6573_5546, // fuse
            0x0102_1997, // 9p
            0x00C3_6400, // ceph
            0x5346_414F, // afs
            0x1234_5678, // none
        ] {
            assert!(!is_local_filesystem_magic(remote), "{remote:#x}");
        }
    }

    /// recvmsg(2) with `TCP_INQ` on says what the queue still holds after
    /// each receive, into a buffer and into spare capacity alike; without
    /// it, it says nothing.
    #[test]
    fn a_receive_tells_what_is_left_once_asked() {
        let (ours, mut peer) = crate::testing::loopback_pair();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        peer.write_all(&data).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = vec![0u8; 1_000];
        assert_eq!(
            recv_telling_queued(&ours, &mut buf, true).unwrap(),
            (1_000, None)
        );
        report_queued_on_receive(&ours).unwrap();
        assert_eq!(
            recv_telling_queued(&ours, &mut buf, true).unwrap(),
            (1_000, Some(8_000))
        );
        let mut rest = Vec::with_capacity(20_000);
        assert_eq!(
            recv_to_spare_telling_queued(&ours, &mut rest, true).unwrap(),
            (8_000, Some(0))
        );
        assert_eq!(rest, data[2_000..]);
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        // The end of the stream: nothing received, and "1 left", which
        // Linux says after the peer's FIN so that a reader reads on.
        assert_eq!(
            recv_telling_queued(&ours, &mut buf, true).unwrap(),
            (0, Some(1))
        );
    }

    /// The name the child test runs under, for the parent to select it.
    const CHILD: &str = "sys::tests::sendfile_in_a_process_that_sigpipe_would_end";

    /// sendfile(2) to a connection the peer has closed, in a process where
    /// `SIGPIPE` keeps its default action (ending the process): the error is
    /// `EPIPE` and the process lives. The disposition is process-wide and
    /// asked once, so the check runs in a test process of its own.
    #[test]
    fn sendfile_to_a_closed_peer_fails_with_epipe_where_sigpipe_would_kill() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = Command::new(exe)
            .args([CHILD, "--exact", "--ignored", "--nocapture"])
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {out:?}");
        assert!(stdout.contains("sendfile failed with EPIPE"), "{stdout}");
    }

    #[test]
    #[ignore = "run in a process of its own by the test above"]
    fn sendfile_in_a_process_that_sigpipe_would_end() {
        // SAFETY: resets one signal's disposition; this process runs only
        // this test.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        assert!(!sigpipe_ignored());

        let path = std::env::temp_dir().join(format!("sockshim-sigpipe-{}", std::process::id()));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&[7u8; 64 << 10]))
            .expect("a scratch file");
        let file = File::open(&path).expect("the scratch file opens");
        let _ = std::fs::remove_file(&path);

        let (client, peer) = crate::testing::loopback_pair();
        drop(peer);
        // The first sends may still be taken; the peer answers them with a
        // reset, after which a send fails with EPIPE (and, unmasked, would
        // raise SIGPIPE).
        for _ in 0..200 {
            match sendfile(&client, &file, 0, 64 << 10) {
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {}
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    println!("sendfile failed with EPIPE");
                    return;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        panic!("sendfile to a closed peer never failed");
    }
}
