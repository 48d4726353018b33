//! The benchmark's sockshim guest: what a plugin written against the
//! `sockshim` crate does. The commands and their protocol with the native
//! peer are those of the wasi:sockets 0.2 guest (bench/guests/p2), plus:
//!
//! - `sendfile ADDR PATH`: `Socket::sendfile` of the whole file at PATH (a
//!   preopened directory), then as `send` (needs the `sendfile` feature).
//! - `scale ADDR IDLE BYTES MSG`: one instance of the scale workload. Connect
//!   and say `M`; wait for `i`; open IDLE more connections, each saying `I`
//!   and waiting for `k`; wait for `g`; then echo BYTES through the peer in
//!   messages of MSG bytes; close everything.
//!
//! - `calls N`: N calls of each of five contract functions, timed in the
//!   guest, one line each: `KEY NS description`, NS in ns per call. One
//!   without a resource (`max-recv-size`), one that borrows a socket
//!   (`family`), the transfer calls on an unconnected socket with nothing to
//!   move, so with no system call (`recv` of 0 bytes, `sendall` of an empty
//!   list), and one that borrows the socket and makes a system call
//!   (`get-option`, getsockopt(2)). Then, N/10 times each, a write of
//!   256 KiB in the guest, alone and followed by a `sendall` of an empty
//!   list: the call with cold caches, as after a bulk send. The bench's
//!   `hostcalls` workload runs it; `sockshim run` can too.
//!
//! - `readiness HOLD ECHO N ITERS`, `manyconn PORT CONNS` and
//!   `manyconn-async PORT CONNS`: the cost of one readiness wait over N
//!   sockets, and a single-threaded echo server for many connections
//!   through the selector, or as wstd tasks on `sockshim::aio`; see
//!   [`readiness`].
//!
//! `recv_into` and `sendall` are the calls a Python program moving bulk data
//! would make (`sock.recv_into(buf)`, `sock.sendall(buf)`); `recv` and
//! `serve` take an optional last argument, `recv` (Python's
//! `sock.recv(bufsize)`) or `recv_into` (the default).

#[path = "../../page_aligned.rs"]
mod page_aligned;
mod readiness;

use page_aligned::PageAligned;
use sockshim::{SockOpt, Socket};
use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["noop"] => Ok(()),
        ["send", addr, bytes, buf] => send(addr, num(bytes), num(buf)),
        ["recv", addr, bytes, buf] => recv(addr, num(bytes), num(buf), "recv_into"),
        ["recv", addr, bytes, buf, how] => recv(addr, num(bytes), num(buf), how),
        ["serve", port, bytes, buf] => serve(num(port), num(bytes), num(buf), "recv_into"),
        ["serve", port, bytes, buf, how] => serve(num(port), num(bytes), num(buf), how),
        ["pingpong", addr, iters] => pingpong(addr, num(iters)),
        ["connrate", addr, count] => connrate(addr, num(count)),
        ["filesend", addr, path, buf] => filesend(addr, path, num(buf)),
        #[cfg(feature = "sendfile")]
        ["sendfile", addr, path] => sendfile(addr, path),
        ["scale", addr, idle, bytes, msg] => scale(addr, num(idle), num(bytes), num(msg)),
        ["calls", n] => calls(num(n)),
        ["readiness", hold, echo, n, iters] => readiness::readiness(hold, echo, num(n), num(iters)),
        ["manyconn", port, conns] => readiness::manyconn(num(port), num(conns)),
        ["manyconn-async", port, conns] => readiness::manyconn_async(num(port), num(conns)),
        _ => Err(io::Error::other(format!("bad arguments: {args:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-sockshim {args:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// See `calls N` in the module's documentation.
fn calls(n: u32) -> io::Result<()> {
    use sockshim::bindings as wit;
    fn time(key: &str, what: &str, n: u32, mut call: impl FnMut()) {
        for _ in 0..n / 10 {
            call(); // warm-up
        }
        let started = std::time::Instant::now();
        for _ in 0..n {
            call();
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(n.max(1));
        println!("{key} {ns:.1} {what}");
    }
    time("max_recv_size", "max-recv-size (no resource)", n, || {
        std::hint::black_box(wit::max_recv_size());
    });
    let sock = wit::Socket::create(wit::AddressFamily::Ipv4, wit::SocketType::Stream)
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    time("family", "family (borrows the socket)", n, || {
        std::hint::black_box(sock.family());
    });
    let check = |what: &str, ok: bool| match ok {
        true => Ok(()),
        false => Err(io::Error::other(format!("{what} did not succeed"))),
    };
    check("recv(0)", sock.recv(0).is_ok_and(|b| b.is_empty()))?;
    check("sendall([])", sock.sendall(&[]).is_ok())?;
    time("recv_empty", "recv of 0 bytes (no system call)", n, || {
        let _ = std::hint::black_box(sock.recv(0));
    });
    time(
        "sendall_empty",
        "sendall of an empty list (no system call)",
        n,
        || {
            let _ = std::hint::black_box(sock.sendall(&[]));
        },
    );
    // The same call with cold caches, as after a 64 KiB send: the write
    // alone, then the write and the call.
    let mut memory = vec![0u8; 256 << 10];
    let mut fill = 0u8;
    let mut write = move || {
        fill = fill.wrapping_add(1);
        memory.fill(fill);
        std::hint::black_box(&memory);
    };
    time(
        "write_256k",
        "write 256 KiB in the guest",
        n / 10,
        &mut write,
    );
    time(
        "write_256k_then_sendall_empty",
        "write 256 KiB, then sendall of an empty list",
        n / 10,
        || {
            write();
            let _ = std::hint::black_box(sock.sendall(&[]));
        },
    );
    time(
        "get_option",
        "get-option (a borrow and getsockopt(2))",
        n,
        || {
            let _ = std::hint::black_box(sock.get_option(wit::OptionName::ReceiveBufferSize));
        },
    );
    Ok(())
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

fn connect(addr: &str) -> io::Result<Socket> {
    sockshim::create_connection(addr, None)
}

fn check(what: &str, got: u64, expected: u64) -> io::Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what}: {got} bytes, expected {expected}"
        )))
    }
}

/// Shuts down the sending side and reads the sink's count of what it got.
fn finish_send(sock: &Socket, sent: u64) -> io::Result<()> {
    sock.shutdown(Shutdown::Write)?;
    let mut ack = Vec::new();
    let mut reader: &Socket = sock;
    reader.read_to_end(&mut ack)?;
    let count = <[u8; 8]>::try_from(ack.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| io::Error::other(format!("bad acknowledgement {ack:?}")))?;
    check("the sink acknowledged", count, sent)
}

fn send(addr: &str, bytes: u64, bufsize: usize) -> io::Result<()> {
    let sock = connect(addr)?;
    let buf = vec![0xa5u8; bufsize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(bufsize as u64) as usize;
        sock.sendall(&buf[..n])?;
        left -= n as u64;
    }
    finish_send(&sock, bytes)
}

/// Reads until end of stream with `how`: `recv_into` (Python's
/// `sock.recv_into(buf)`, one buffer reused, at a page boundary as every
/// bulk receiver's) or `recv` (Python's `sock.recv(bufsize)`, a new buffer
/// each time).
fn read_to_eof(sock: &Socket, bufsize: usize, how: &str) -> io::Result<u64> {
    let mut total = 0u64;
    match how {
        "recv_into" => {
            let mut buf = PageAligned::new(bufsize);
            let buf = buf.as_mut_slice();
            loop {
                match sock.recv_into(buf)? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        }
        "recv" => loop {
            match sock.recv(bufsize)?.len() {
                0 => return Ok(total),
                n => total += n as u64,
            }
        },
        _ => Err(io::Error::other(format!("no receive call {how:?}"))),
    }
}

fn recv(addr: &str, bytes: u64, bufsize: usize, how: &str) -> io::Result<()> {
    let sock = connect(addr)?;
    let got = read_to_eof(&sock, bufsize, how)?;
    check("received", got, bytes)
}

fn serve(port: u16, bytes: u64, bufsize: usize, how: &str) -> io::Result<()> {
    let listener = sockshim::create_server((Ipv4Addr::LOCALHOST, port))?;
    let (sock, _) = listener.accept()?;
    let got = read_to_eof(&sock, bufsize, how)?;
    check("received", got, bytes)
}

/// Sends `byte` and receives exactly one byte back.
fn exchange(sock: &Socket, byte: u8) -> io::Result<u8> {
    sock.sendall(&[byte])?;
    let mut reply = [0u8];
    match sock.recv_into(&mut reply)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(reply[0]),
    }
}

fn pingpong(addr: &str, iters: u64) -> io::Result<()> {
    let sock = connect(addr)?;
    sock.setsockopt(SockOpt::TcpNoDelay(true))?;
    for _ in 0..iters {
        exchange(&sock, 1)?;
    }
    Ok(())
}

fn connrate(addr: &str, count: u64) -> io::Result<()> {
    for _ in 0..count {
        let sock = connect(addr)?;
        sock.setsockopt(SockOpt::TcpNoDelay(true))?;
        exchange(&sock, 1)?;
        sock.close();
    }
    Ok(())
}

fn filesend(addr: &str, path: &str, bufsize: usize) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let sock = connect(addr)?;
    let mut buf = vec![0u8; bufsize];
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sock.sendall(&buf[..n])?;
        sent += n as u64;
    }
    finish_send(&sock, sent)
}

#[cfg(feature = "sendfile")]
fn sendfile(addr: &str, path: &str) -> io::Result<()> {
    let file = sockshim::fs::File::open(path)?;
    let sock = connect(addr)?;
    let sent = sock.sendfile(&file, 0, None)?;
    finish_send(&sock, sent)
}

/// Waits for one byte and checks that it is `expected`.
fn expect_byte(sock: &Socket, expected: u8) -> io::Result<()> {
    let mut byte = [0u8];
    match sock.recv_into(&mut byte)? {
        1 if byte[0] == expected => Ok(()),
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Err(io::Error::other(format!(
            "expected {:?}, got {:?}",
            expected as char, byte[0] as char
        ))),
    }
}

fn scale(addr: &str, idle: usize, bytes: u64, msg: usize) -> io::Result<()> {
    let main = connect(addr)?;
    main.sendall(b"M")?;
    expect_byte(&main, b'i')?;
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        let sock = connect(addr)?;
        if exchange(&sock, b'I')? != b'k' {
            return Err(io::Error::other("bad reply to an idle connection's hello"));
        }
        idle_conns.push(sock);
    }
    expect_byte(&main, b'g')?;
    let out = vec![0x5au8; msg];
    let mut back = vec![0u8; msg];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(msg as u64) as usize;
        main.sendall(&out[..n])?;
        let mut got = 0;
        while got < n {
            match main.recv_into(&mut back[got..n])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                k => got += k,
            }
        }
        left -= n as u64;
    }
    Ok(())
}
