//! System (a): the same transfers as the guests' commands, in Rust std::net
//! (blocking sockets) in the benchmark process.

use crate::Result;
use crate::page_aligned::PageAligned;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(120);

fn connect(addr: &str) -> Result<TcpStream> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(sock)
}

fn check(what: &str, got: u64, expected: u64) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("native {what}: {got} bytes, expected {expected}").into())
    }
}

/// Shuts down the sending side and reads the sink's count.
fn finish_send(sock: &mut TcpStream, sent: u64) -> Result<()> {
    sock.shutdown(Shutdown::Write)?;
    let mut ack = Vec::new();
    sock.read_to_end(&mut ack)?;
    let count = <[u8; 8]>::try_from(ack.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| format!("bad acknowledgement {ack:?}"))?;
    check("sink acknowledged", count, sent)
}

pub fn send(addr: &str, bytes: u64, bufsize: usize) -> Result<()> {
    let mut sock = connect(addr)?;
    let buf = vec![0xa5u8; bufsize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(bufsize as u64) as usize;
        sock.write_all(&buf[..n])?;
        left -= n as u64;
    }
    finish_send(&mut sock, bytes)
}

fn read_to_eof(sock: &mut TcpStream, bufsize: usize) -> Result<u64> {
    let mut buf = PageAligned::new(bufsize);
    let buf = buf.as_mut_slice();
    let mut total = 0u64;
    loop {
        match sock.read(buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

pub fn recv(addr: &str, bytes: u64, bufsize: usize) -> Result<()> {
    let mut sock = connect(addr)?;
    let got = read_to_eof(&mut sock, bufsize)?;
    check("received", got, bytes)
}

/// Accepts one client on `listener` and reads until end of stream.
pub fn serve(listener: &TcpListener, bytes: u64, bufsize: usize) -> Result<()> {
    let mut pollfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pollfd, 1, IO_TIMEOUT.as_millis() as libc::c_int) };
    if ready <= 0 {
        return Err(format!("native serve: no client within {IO_TIMEOUT:?}").into());
    }
    let (mut sock, _) = listener.accept()?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    let got = read_to_eof(&mut sock, bufsize)?;
    check("received", got, bytes)
}

fn exchange(sock: &mut TcpStream) -> Result<()> {
    sock.write_all(&[1])?;
    let mut byte = [0u8];
    sock.read_exact(&mut byte)?;
    Ok(())
}

pub fn pingpong(addr: &str, iters: u64) -> Result<()> {
    let mut sock = connect(addr)?;
    sock.set_nodelay(true)?;
    for _ in 0..iters {
        exchange(&mut sock)?;
    }
    Ok(())
}

pub fn connrate(addr: &str, count: u64) -> Result<()> {
    for _ in 0..count {
        let mut sock = connect(addr)?;
        sock.set_nodelay(true)?;
        exchange(&mut sock)?;
    }
    Ok(())
}

/// sendfile(2) of the whole file, then the sink's acknowledgement.
pub fn sendfile(addr: &str, path: &std::path::Path) -> Result<()> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut sock = connect(addr)?;
    let mut offset: libc::off_t = 0;
    while (offset as u64) < len {
        let count = (len - offset as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the duration of the call and
        // `offset` is a valid `off_t` the kernel updates.
        let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if n == 0 {
            break;
        }
    }
    finish_send(&mut sock, offset as u64)
}

/// read(2) + write(2) of the whole file in pieces of `bufsize`.
pub fn read_write(addr: &str, path: &std::path::Path, bufsize: usize) -> Result<()> {
    let mut file = File::open(path)?;
    let mut sock = connect(addr)?;
    let mut buf = vec![0u8; bufsize];
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sock.write_all(&buf[..n])?;
        sent += n as u64;
    }
    finish_send(&mut sock, sent)
}

/// ns per getsockopt(2) call (`SO_RCVBUF` of an unconnected TCP socket),
/// over `n` calls after a tenth as many to warm up: the system call that
/// the guest's `get-option` makes.
pub fn getsockopt_ns(n: u32) -> Result<f64> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    for _ in 0..n / 10 {
        std::hint::black_box(sock.recv_buffer_size()?);
    }
    let started = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(sock.recv_buffer_size()?);
    }
    Ok(started.elapsed().as_nanos() as f64 / f64::from(n.max(1)))
}
