//! The benchmark's wasi:sockets 0.2 guest: what a plugin written against
//! Rust's `std::net` does on wasm32-wasip2 (wasi-libc over wasmtime-wasi's
//! wasi:sockets 0.2). Each command is one measured transfer; the first
//! argument names it, the others are its parameters. Exits 0 when the
//! transfer completed and checked out, 1 with a message on stderr otherwise.
//!
//! The commands and their protocol with the native peer (bench/src/peer.rs)
//! are the same in every guest of the benchmark:
//!
//! - `send ADDR BYTES BUF`: connect, send BYTES in writes of BUF bytes, shut
//!   down the sending side, read the sink's 8-byte count until end of stream.
//! - `recv ADDR BYTES BUF`: connect, read until end of stream in reads of BUF
//!   bytes, check that BYTES arrived.
//! - `serve PORT BYTES BUF`: listen on 127.0.0.1:PORT, accept one client,
//!   read until end of stream, check that BYTES arrived.
//! - `pingpong ADDR ITERS`: send one byte, receive one byte, ITERS times.
//! - `connrate ADDR COUNT`: COUNT times connect, send one byte, receive one
//!   byte, close.
//! - `filesend ADDR PATH BUF`: read the file at PATH (a preopened directory)
//!   in reads of BUF bytes, send each, then as `send`.
//! - `scale ADDR IDLE BYTES MSG`: one instance of the scale workload. Connect
//!   and say `M`; wait for `i`; open IDLE more connections, each saying `I`
//!   and waiting for `k`; wait for `g`; then echo BYTES through the peer in
//!   messages of MSG bytes; close everything.

#[path = "../../page_aligned.rs"]
mod page_aligned;

use page_aligned::PageAligned;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["noop"] => Ok(()),
        ["send", addr, bytes, buf] => send(addr, num(bytes), num(buf)),
        ["recv", addr, bytes, buf] => recv(addr, num(bytes), num(buf)),
        ["serve", port, bytes, buf] => serve(num(port), num(bytes), num(buf)),
        ["pingpong", addr, iters] => pingpong(addr, num(iters)),
        ["connrate", addr, count] => connrate(addr, num(count)),
        ["filesend", addr, path, buf] => filesend(addr, path, num(buf)),
        ["scale", addr, idle, bytes, msg] => scale(addr, num(idle), num(bytes), num(msg)),
        _ => Err(io::Error::other(format!("bad arguments: {args:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-p2 {args:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    TcpStream::connect(addr)
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
fn finish_send(sock: &mut TcpStream, sent: u64) -> io::Result<()> {
    sock.shutdown(Shutdown::Write)?;
    let mut ack = Vec::new();
    sock.read_to_end(&mut ack)?;
    let count = <[u8; 8]>::try_from(ack.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| io::Error::other(format!("bad acknowledgement {ack:?}")))?;
    check("the sink acknowledged", count, sent)
}

fn send(addr: &str, bytes: u64, bufsize: usize) -> io::Result<()> {
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

fn read_to_eof(sock: &mut TcpStream, bufsize: usize) -> io::Result<u64> {
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

fn recv(addr: &str, bytes: u64, bufsize: usize) -> io::Result<()> {
    let mut sock = connect(addr)?;
    let got = read_to_eof(&mut sock, bufsize)?;
    check("received", got, bytes)
}

fn serve(port: u16, bytes: u64, bufsize: usize) -> io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    let (mut sock, _) = listener.accept()?;
    let got = read_to_eof(&mut sock, bufsize)?;
    check("received", got, bytes)
}

fn exchange(sock: &mut TcpStream) -> io::Result<()> {
    sock.write_all(&[1])?;
    let mut byte = [0u8];
    sock.read_exact(&mut byte)
}

fn pingpong(addr: &str, iters: u64) -> io::Result<()> {
    // wasi:sockets 0.2 has no TCP_NODELAY; strict alternation does not wait
    // on Nagle's algorithm anyway (nothing is unacknowledged when sending).
    let mut sock = connect(addr)?;
    for _ in 0..iters {
        exchange(&mut sock)?;
    }
    Ok(())
}

fn connrate(addr: &str, count: u64) -> io::Result<()> {
    for _ in 0..count {
        let mut sock = connect(addr)?;
        exchange(&mut sock)?;
    }
    Ok(())
}

fn filesend(addr: &str, path: &str, bufsize: usize) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
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

fn expect_byte(sock: &mut TcpStream, expected: u8) -> io::Result<()> {
    let mut byte = [0u8];
    sock.read_exact(&mut byte)?;
    match byte[0] == expected {
        true => Ok(()),
        false => Err(io::Error::other(format!(
            "expected {:?}, got {:?}",
            expected as char, byte[0] as char
        ))),
    }
}

fn scale(addr: &str, idle: usize, bytes: u64, msg: usize) -> io::Result<()> {
    let mut main = connect(addr)?;
    main.write_all(b"M")?;
    expect_byte(&mut main, b'i')?;
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        let mut sock = connect(addr)?;
        sock.write_all(b"I")?;
        expect_byte(&mut sock, b'k')?;
        idle_conns.push(sock);
    }
    expect_byte(&mut main, b'g')?;
    let out = vec![0x5au8; msg];
    let mut back = vec![0u8; msg];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(msg as u64) as usize;
        main.write_all(&out[..n])?;
        main.read_exact(&mut back[..n])?;
        left -= n as u64;
    }
    Ok(())
}
