//! The benchmark's wasi:sockets 0.3 guest: a WASI 0.3 command
//! (component-model async) whose TCP sends and receives are `stream<u8>`s
//! that wasmtime-wasi moves directly between this guest's memory and the
//! socket. Built for wasm32-wasip2 as a cdylib (Rust has no wasm32-wasip3 std
//! yet); std is only used for arguments, allocation and error messages.
//!
//! The commands and their protocol with the native peer are those of the
//! wasi:sockets 0.2 guest (bench/guests/p2/src/main.rs): `noop`, `send`,
//! `recv`, `serve`, `pingpong`, `connrate`, `scale`. Each reuses one
//! buffer: a bulk send hands the same 64 KiB allocation to every stream
//! write, a receive reads into the same capacity.

#[path = "../../page_aligned.rs"]
mod page_aligned;

use page_aligned::page_aligned_spare;
use wasip3::sockets::types::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, TcpSocket,
};
use wasip3::wit_bindgen::{StreamReader, StreamResult, StreamWriter};

struct Bench;

wasip3::cli::command::export!(Bench);

impl wasip3::exports::cli::run::Guest for Bench {
    async fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = match args.as_slice() {
            ["noop"] => Ok(()),
            ["send", addr, bytes, buf] => send(addr, num(bytes)?, num(buf)?).await,
            ["recv", addr, bytes, buf] => recv(addr, num(bytes)?, num(buf)?).await,
            ["serve", port, bytes, buf] => serve(num(port)?, num(bytes)?, num(buf)?).await,
            ["pingpong", addr, iters] => pingpong(addr, num(iters)?).await,
            ["connrate", addr, count] => connrate(addr, num(count)?).await,
            ["scale", addr, idle, bytes, msg] => {
                scale(addr, num(idle)?, num(bytes)?, num(msg)?).await
            }
            _ => Err(format!("bad arguments: {args:?}")),
        };
        result.map_err(|e| eprintln!("bench-p3 {args:?}: {e}"))
    }
}

type Result<T, E = String> = std::result::Result<T, E>;

fn num<T: std::str::FromStr>(s: &str) -> Result<T, ()> {
    s.parse()
        .map_err(|_| eprintln!("bench-p3: not a number: {s:?}"))
}

fn err(what: &str) -> impl Fn(ErrorCode) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

fn wit_addr(ip: std::net::Ipv4Addr, port: u16) -> IpSocketAddress {
    let [a, b, c, d] = ip.octets();
    IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port,
        address: (a, b, c, d),
    })
}

async fn connect(addr: &str) -> Result<TcpSocket> {
    let addr: std::net::SocketAddrV4 = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let sock = TcpSocket::create(IpAddressFamily::Ipv4).map_err(err("create"))?;
    sock.connect(wit_addr(*addr.ip(), addr.port()))
        .await
        .map_err(err("connect"))?;
    Ok(sock)
}

fn check(what: &str, got: u64, expected: u64) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: {got} bytes, expected {expected}"))
    }
}

/// Reads `rx` until the peer closes, into `buf`'s spare capacity after its
/// first `at` bytes; returns the count.
async fn read_to_eof(rx: &mut StreamReader<u8>, mut buf: Vec<u8>, at: usize) -> u64 {
    let mut total = 0u64;
    loop {
        buf.truncate(at);
        let (status, back) = rx.read(buf).await;
        buf = back;
        total += (buf.len() - at) as u64;
        if let StreamResult::Dropped = status {
            return total;
        }
    }
}

async fn send(addr: &str, bytes: u64, bufsize: usize) -> Result<()> {
    let sock = connect(addr).await?;
    let (mut tx, rx) = wasip3::wit_stream::new::<u8>();
    let sent = sock.send(rx);
    let mut buf = vec![0xa5u8; bufsize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(bufsize as u64) as usize;
        // SAFETY: the allocation holds `bufsize` bytes, all initialised by
        // `vec!` above; a stream write only reads them, and `write_all`
        // hands the same allocation back, emptied.
        unsafe { buf.set_len(n) };
        buf = tx.write_all(buf).await;
        if !buf.is_empty() {
            return Err("the host dropped the send stream".into());
        }
        left -= n as u64;
    }
    // Ending the stream shuts down the sending side.
    drop(tx);
    sent.await.map_err(err("send"))?;
    let (rx, received) = sock.receive();
    let ack = rx.collect().await;
    received.await.map_err(err("receive"))?;
    let count = <[u8; 8]>::try_from(ack.as_slice())
        .map(u64::from_le_bytes)
        .map_err(|_| format!("bad acknowledgement {ack:?}"))?;
    check("the sink acknowledged", count, bytes)
}

async fn recv_all(sock: &TcpSocket, bytes: u64, bufsize: usize) -> Result<()> {
    let (mut rx, received) = sock.receive();
    // At a page boundary, as every bulk receiver's buffer.
    let (buf, at) = page_aligned_spare(bufsize)
        .ok_or("the allocator moved the receive buffer when shrinking it")?;
    let got = read_to_eof(&mut rx, buf, at).await;
    received.await.map_err(err("receive"))?;
    check("received", got, bytes)
}

async fn recv(addr: &str, bytes: u64, bufsize: usize) -> Result<()> {
    let sock = connect(addr).await?;
    recv_all(&sock, bytes, bufsize).await
}

async fn serve(port: u16, bytes: u64, bufsize: usize) -> Result<()> {
    let listener = TcpSocket::create(IpAddressFamily::Ipv4).map_err(err("create"))?;
    listener
        .bind(wit_addr(std::net::Ipv4Addr::LOCALHOST, port))
        .map_err(err("bind"))?;
    let mut incoming = listener.listen().map_err(err("listen"))?;
    let sock = incoming.next().await.ok_or("the listening stream ended")?;
    recv_all(&sock, bytes, bufsize).await
}

/// One connection's send and receive streams, for small exchanges.
struct Exchange {
    tx: StreamWriter<u8>,
    rx: StreamReader<u8>,
    out: Vec<u8>,
    back: Vec<u8>,
}

impl Exchange {
    fn new(sock: &TcpSocket) -> Exchange {
        let (tx, data) = wasip3::wit_stream::new::<u8>();
        // The send result is only an error report; a failed send also ends
        // the stream, which the write below sees.
        drop(sock.send(data));
        let (rx, received) = sock.receive();
        drop(received);
        Exchange {
            tx,
            rx,
            out: Vec::with_capacity(1),
            back: Vec::with_capacity(1),
        }
    }

    /// Sends all of `data`; returns its allocation, emptied.
    async fn send(&mut self, data: Vec<u8>) -> Result<Vec<u8>> {
        let data = self.tx.write_all(data).await;
        match data.is_empty() {
            true => Ok(data),
            false => Err("the host dropped the send stream".into()),
        }
    }

    /// Receives into `back` until it holds `expected` bytes. Each read is
    /// offered all of `back`'s spare capacity: the peer sends nothing
    /// unasked.
    async fn receive(&mut self, mut back: Vec<u8>, expected: usize) -> Result<Vec<u8>> {
        back.clear();
        while back.len() < expected {
            let (status, more) = self.rx.read(back).await;
            back = more;
            if let (StreamResult::Dropped, true) = (status, back.len() < expected) {
                return Err(format!("the peer closed after {} bytes", back.len()));
            }
        }
        Ok(back)
    }

    /// Sends one byte and waits for one byte back.
    async fn once(&mut self) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.push(1);
        self.out = self.send(out).await?;
        let back = std::mem::take(&mut self.back);
        self.back = self.receive(back, 1).await?;
        Ok(())
    }
}

async fn pingpong(addr: &str, iters: u64) -> Result<()> {
    // wasi:sockets 0.3 has no TCP_NODELAY; strict alternation does not wait
    // on Nagle's algorithm anyway (nothing is unacknowledged when sending).
    let sock = connect(addr).await?;
    let mut exchange = Exchange::new(&sock);
    for _ in 0..iters {
        exchange.once().await?;
    }
    Ok(())
}

async fn connrate(addr: &str, count: u64) -> Result<()> {
    for _ in 0..count {
        let sock = connect(addr).await?;
        let mut exchange = Exchange::new(&sock);
        exchange.once().await?;
        drop(exchange);
        drop(sock);
    }
    Ok(())
}

/// Receives one byte on `exchange` and checks it is `expected`.
async fn expect_byte(exchange: &mut Exchange, expected: u8) -> Result<()> {
    let back = exchange.receive(Vec::with_capacity(1), 1).await?;
    match back.as_slice() {
        [got] if *got == expected => Ok(()),
        got => Err(format!("expected {:?}, got {got:?}", expected as char)),
    }
}

/// One instance of the scale workload, as the sockshim guest's `scale` does
/// it: connect and say `M`; wait for `i`; open `idle` more connections, each
/// saying `I` and waiting for `k`; wait for `g`; then echo `bytes` through
/// the peer in messages of `msg` bytes.
async fn scale(addr: &str, idle: usize, bytes: u64, msg: usize) -> Result<()> {
    let main = connect(addr).await?;
    let mut exchange = Exchange::new(&main);
    exchange.send(b"M".to_vec()).await?;
    expect_byte(&mut exchange, b'i').await?;
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        let sock = connect(addr).await?;
        let mut idle_exchange = Exchange::new(&sock);
        idle_exchange.send(b"I".to_vec()).await?;
        expect_byte(&mut idle_exchange, b'k').await?;
        idle_conns.push((idle_exchange, sock));
    }
    expect_byte(&mut exchange, b'g').await?;
    let mut out = vec![0x5au8; msg];
    let mut back = Vec::with_capacity(msg);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(msg as u64) as usize;
        // SAFETY: the allocation holds `msg` bytes, all initialised by
        // `vec!` above; a stream write only reads them, and `send` hands
        // the same allocation back, emptied.
        unsafe { out.set_len(n) };
        out = exchange.send(out).await?;
        back = exchange.receive(back, n).await?;
        left -= n as u64;
    }
    Ok(())
}
