//! A reference system beside (a): the same transfers natively on tokio's
//! non-blocking sockets, on the runtime the guests run on. sockshim is an
//! async host (a waiting guest holds no thread), so this is the floor an
//! async design reaches: what separates it from blocking `std::net` is the
//! reactor (a try that fails with EAGAIN, epoll, a wake-up), not wasm.

use crate::Result;
use crate::page_aligned::PageAligned;
use std::net::TcpListener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `transfer` as a task on `runtime`'s workers, where the guests run,
/// and waits for it.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    transfer: impl Future<Output = Result<()>> + Send + 'static,
) -> Result<()> {
    runtime
        .block_on(runtime.spawn(transfer))
        .map_err(|e| format!("native async task failed: {e}"))?
}

async fn connect(addr: &str) -> Result<TcpStream> {
    Ok(TcpStream::connect(addr).await?)
}

fn check(what: &str, got: u64, expected: u64) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("native async {what}: {got} bytes, expected {expected}").into())
    }
}

pub async fn send(addr: String, bytes: u64, bufsize: usize) -> Result<()> {
    let mut sock = connect(&addr).await?;
    let buf = vec![0xa5u8; bufsize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(bufsize as u64) as usize;
        sock.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    sock.shutdown().await?;
    let mut ack = Vec::new();
    sock.read_to_end(&mut ack).await?;
    let count = <[u8; 8]>::try_from(ack.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| format!("bad acknowledgement {ack:?}"))?;
    check("sink acknowledged", count, bytes)
}

async fn read_to_eof(sock: &mut TcpStream, bufsize: usize) -> Result<u64> {
    let mut buf = PageAligned::new(bufsize);
    let buf = buf.as_mut_slice();
    let mut total = 0u64;
    loop {
        match sock.read(buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

pub async fn recv(addr: String, bytes: u64, bufsize: usize) -> Result<()> {
    let mut sock = connect(&addr).await?;
    let got = read_to_eof(&mut sock, bufsize).await?;
    check("received", got, bytes)
}

/// Accepts one client on `listener` and reads until end of stream.
pub async fn serve(listener: TcpListener, bytes: u64, bufsize: usize) -> Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (mut sock, _) = listener.accept().await?;
    let got = read_to_eof(&mut sock, bufsize).await?;
    check("received", got, bytes)
}

async fn exchange(sock: &mut TcpStream) -> Result<()> {
    sock.write_all(&[1]).await?;
    let mut byte = [0u8];
    sock.read_exact(&mut byte).await?;
    Ok(())
}

pub async fn pingpong(addr: String, iters: u64) -> Result<()> {
    let mut sock = connect(&addr).await?;
    sock.set_nodelay(true)?;
    for _ in 0..iters {
        exchange(&mut sock).await?;
    }
    Ok(())
}

pub async fn connrate(addr: String, count: u64) -> Result<()> {
    for _ in 0..count {
        let mut sock = connect(&addr).await?;
        sock.set_nodelay(true)?;
        exchange(&mut sock).await?;
    }
    Ok(())
}

async fn expect_byte(sock: &mut TcpStream, expected: u8) -> Result<()> {
    let mut byte = [0u8];
    sock.read_exact(&mut byte).await?;
    match byte[0] == expected {
        true => Ok(()),
        false => Err(format!(
            "native async scale: expected {:?}, got {:?}",
            expected as char, byte[0] as char
        )
        .into()),
    }
}

/// One instance of the scale workload, as the sockshim guest's `scale` does
/// it: connect and say `M`; wait for `i`; open `idle` more connections, each
/// saying `I` and waiting for `k`; wait for `g`; then echo `bytes` through
/// the peer in messages of `msg` bytes.
pub async fn scale(addr: String, idle: usize, bytes: u64, msg: usize) -> Result<()> {
    let mut main = connect(&addr).await?;
    main.write_all(b"M").await?;
    expect_byte(&mut main, b'i').await?;
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        let mut sock = connect(&addr).await?;
        sock.write_all(b"I").await?;
        expect_byte(&mut sock, b'k').await?;
        idle_conns.push(sock);
    }
    expect_byte(&mut main, b'g').await?;
    let out = vec![0x5au8; msg];
    let mut back = vec![0u8; msg];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(msg as u64) as usize;
        main.write_all(&out[..n]).await?;
        main.read_exact(&mut back[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}
