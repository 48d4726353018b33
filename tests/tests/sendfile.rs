//! `Socket::sendfile` from a file in a preopened directory to a native
//! peer: the bytes, the counts, the file position, the host's choice of
//! sendfile(2) or its fallback, and what timeouts and dead peers do.

use sockshim_host::{SockshimCtx, TransferStats};
use sockshim_tests::*;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

/// Where the tests' directories appear in the guest.
const GUEST_DIR: &str = "/data";

/// A context under the loopback policy, and its transfer counters.
fn counted() -> (SockshimCtx, Arc<TransferStats>) {
    let ctx = SockshimCtx::new(loopback());
    let stats = ctx.transfer_stats();
    (ctx, stats)
}

/// Runs `scenario` with `dir` preopened as [`GUEST_DIR`].
async fn run_with_dir(scenario: &str, args: &[&str], ctx: SockshimCtx, dir: &Path) -> Outcome {
    run_guest_in(scenario, args, ctx, &[(dir, GUEST_DIR)]).await
}

/// Reads a connection to its end and returns its length and FNV-1a, without
/// keeping the bytes.
fn hash_stream(mut stream: TcpStream) -> (u64, u64) {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = vec![0; 1 << 20];
    let (mut len, mut hash) = (0u64, fnv1a(&[]));
    loop {
        match stream.read(&mut buf).unwrap() {
            0 => return (len, hash),
            n => {
                len += n as u64;
                hash = fnv1a_continue(hash, &buf[..n]);
            }
        }
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A native peer that reads `chunk` bytes, sleeps `pause`, and so on, until
/// the end; returns how many bytes it read.
fn slow_reader(chunk: usize, pause: Duration) -> impl FnOnce(TcpStream) -> usize {
    move |mut s| {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0; chunk];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
            std::thread::sleep(pause);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_file_goes_by_sendfile_and_arrives_intact() {
    const LEN: usize = 256 << 20;
    let dir = TempDir::new("sendfile-big");
    let data = pattern(LEN);
    let expected = fnv1a(&data);
    dir.write("big.bin", &data);
    drop(data);
    let (addr, server) = serve_one(hash_stream);
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/big.bin");
    let out = run_with_dir("sendfile", &[&addr, &path], ctx, dir.path())
        .await
        .success();
    let (len, hash) = server.join().unwrap();
    assert_eq!(out.num("sent"), LEN as u64, "{out}");
    assert_eq!(out.num("position"), LEN as u64, "{out}");
    assert_eq!(len, LEN as u64);
    assert_eq!(hash, expected, "the bytes differ");
    assert_eq!(stats.sendfile_bytes(), LEN as u64, "not by sendfile(2)");
    assert_eq!(stats.fallback_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_counts_positions_and_refusals() {
    const N: usize = 100_000;
    let dir = TempDir::new("sendfile-slices");
    let data = pattern(N);
    dir.write("slices.bin", &data);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let (addr, server) = serve_one(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/slices.bin");
    let sub = format!("{GUEST_DIR}/sub");
    let out = run_with_dir("sendfile-slices", &[&addr, &path, &sub], ctx, dir.path())
        .await
        .success();
    let got = server.join().unwrap();

    assert_eq!(out.num("len"), N as u64);
    assert_eq!(out.get("is_file"), "true");
    // The peer got exactly the two slices, in order.
    let expected = [&data[1000..6000], &data[N - 100..]].concat();
    assert_eq!(got.len(), expected.len(), "{out}");
    assert!(got == expected, "the slices differ");

    assert_eq!(out.num("middle_sent"), 5000);
    assert_eq!(out.num("middle_position"), 6000);
    assert_eq!(out.num("middle_stream_position"), 6000);
    // Reading goes on where the socket stopped.
    assert_eq!(out.get("middle_next"), hex(&data[6000..6016]));

    // A count past the end: what exists, and the position at the end.
    assert_eq!(out.num("tail_sent"), 100);
    assert_eq!(out.num("tail_position"), N as u64);
    assert_eq!(out.get("tail_next"), "ok");
    assert_eq!(out.num("tail_next_len"), 0);

    assert_eq!(out.num("at_end"), 0);
    assert_eq!(out.num("past_end"), 0);
    assert_eq!(out.num("past_end_position"), N as u64 + 10);

    let zero = out.get("count_zero");
    assert!(zero.starts_with("InvalidInput: invalid argument"), "{out}");
    assert_eq!(out.get("count_zero_sent"), "0");
    assert_eq!(out.num("count_zero_position"), 20);

    let nonblocking = out.get("nonblocking");
    assert!(
        nonblocking.starts_with("InvalidInput") && nonblocking.contains("non-blocking"),
        "{out}"
    );

    assert_eq!(out.get("dir_is_dir"), "true");
    let directory = out.get("directory");
    assert!(
        directory.starts_with("InvalidInput") && directory.contains("directory"),
        "{out}"
    );

    assert!(out.get("outside").starts_with("NotFound"), "{out}");
    assert!(out.get("missing").starts_with("NotFound"), "{out}");
    assert!(out.get("closed").contains("(os error 8)"), "EBADF: {out}");
    assert_eq!(out.num("closed_position"), 3);

    assert_eq!(stats.sendfile_bytes(), 5100);
    assert_eq!(stats.fallback_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_not_opened_for_reading_is_refused() {
    let dir = TempDir::new("sendfile-write-only");
    dir.write("secret.txt", b"not for sending");
    let (addr, server) = serve_one(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let (ctx, stats) = counted();
    let out = run_with_dir(
        "sendfile-write-only",
        &[&addr, GUEST_DIR, "secret.txt"],
        ctx,
        dir.path(),
    )
    .await
    .success();
    let got = server.join().unwrap();
    let refused = out.get("write_only");
    assert!(
        refused.contains("InvalidArgument") && refused.contains("bytes-sent: 0"),
        "{out}"
    );
    assert_eq!(out.get("readable"), "Ok(15)");
    // Only the readable descriptor's bytes went.
    assert_eq!(got, b"not for sending");
    assert_eq!(stats.sendfile_bytes(), 15);
}

/// Makes a FIFO named `name` in `dir`.
fn make_fifo(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let fifo = dir.path().join(name);
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    fifo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_goes_by_the_fallback() {
    const LEN: usize = 8 << 20;
    let dir = TempDir::new("sendfile-fifo");
    let fifo = make_fifo(&dir, "fifo");
    // Opening for writing waits for the plugin to open it for reading.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        w.write_all(&pattern(LEN)).unwrap();
    });
    let (addr, server) = serve_one(hash_stream);
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/fifo");
    let out = run_with_dir("sendfile", &[&addr, &path], ctx, dir.path())
        .await
        .success();
    writer.join().unwrap();
    let (len, hash) = server.join().unwrap();
    assert_eq!(out.num("sent"), LEN as u64, "{out}");
    assert_eq!(len, LEN as u64);
    assert_eq!(hash, fnv1a(&pattern(LEN)), "the bytes differ");
    assert_eq!(stats.fallback_bytes(), LEN as u64, "not by the fallback");
    assert_eq!(stats.sendfile_bytes(), 0);
}

/// A FIFO whose writer stops writing but keeps it open: the fallback waits
/// for it to become readable within the socket's timeout, as it waits for
/// the socket, instead of blocking a thread of the host in read(2) for as
/// long as the writer likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_that_stops_giving_times_out_with_the_count() {
    const WRITTEN: usize = 1 << 20;
    let dir = TempDir::new("sendfile-fifo-stalled");
    let fifo = make_fifo(&dir, "fifo");
    let (done, wait) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        w.write_all(&pattern(WRITTEN)).unwrap();
        // Nothing more, and no end of file, until the plugin is done (if it
        // never gives up, the end of file after 20 s makes its call succeed
        // and the test fail).
        let _ = wait.recv_timeout(Duration::from_secs(20));
    });
    let (addr, server) = serve_one(hash_stream);
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/fifo");
    let out = run_with_dir(
        "sendfile-stalled",
        &[&addr, &path, "0", "500"],
        ctx,
        dir.path(),
    )
    .await
    .success();
    // The writer is gone already if the plugin waited for the end of file.
    let _ = done.send(());
    writer.join().unwrap();
    let (len, hash) = server.join().unwrap();
    assert_eq!(
        out.get("outcome"),
        format!("TimedOut: timed out after sending {WRITTEN} bytes"),
        "{out}"
    );
    assert_eq!(out.num("bytes_sent"), WRITTEN as u64);
    assert_eq!(len, WRITTEN as u64);
    assert_eq!(hash, fnv1a(&pattern(WRITTEN)), "the bytes differ");
    let ms = out.num("elapsed_ms");
    assert!(ms >= 500, "timed out early, after {ms} ms");
    assert!(ms < 10_000, "timed out late, after {ms} ms");
    assert_eq!(stats.fallback_bytes(), WRITTEN as u64);
}

/// A plugin dropped while its `sendfile` waits for a FIFO leaves nothing of
/// the host reading the FIFO: the wait was on the reactor, not a read(2)
/// blocked on a thread of the pool with the plugin's file in hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dropped_while_waiting_for_a_fifo_leaves_no_reader() {
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("sendfile-fifo-dropped");
    let fifo = make_fifo(&dir, "fifo");
    // Opening for writing waits for the plugin to open it for reading.
    let writer =
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).unwrap());
    let (addr, server) = serve_one(hash_stream);
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/fifo");
    let running = spawn_in(
        SOCKSHIM_TEST_GUEST,
        &["sendfile", &addr, &path],
        ctx,
        &[(dir.path(), GUEST_DIR)],
    );
    let writer = writer.join().unwrap();
    // The plugin has the FIFO open; give it time to connect and wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop();
    // poll(2) reports POLLERR on a FIFO's write end once it has no reader.
    let started = std::time::Instant::now();
    let no_reader = loop {
        let mut fd = libc::pollfd {
            fd: writer.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the descriptor is open (borrowed).
        unsafe { libc::poll(&mut fd, 1, 0) };
        if fd.revents & libc::POLLERR != 0 {
            break true;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        no_reader,
        "the FIFO still had a reader 5 s after the plugin was dropped"
    );
    drop(writer);
    let (len, _) = server.join().unwrap();
    assert_eq!(len, 0);
    assert_eq!(stats.fallback_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_times_out_with_the_count() {
    const LEN: usize = 64 << 20;
    const OFFSET: u64 = 4096;
    let dir = TempDir::new("sendfile-stalled");
    dir.write("big.bin", &pattern(LEN));
    // The peer accepts, never reads, and holds the connection until the
    // plugin is done.
    let (done, wait) = mpsc::channel::<()>();
    let (addr, server) = serve_one(move |s| {
        let _ = wait.recv_timeout(Duration::from_secs(60));
        drop(s);
    });
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/big.bin");
    let out = run_with_dir(
        "sendfile-stalled",
        &[&addr, &path, &OFFSET.to_string(), "500"],
        ctx,
        dir.path(),
    )
    .await
    .success();
    done.send(()).unwrap();
    server.join().unwrap();
    let sent = out.num("bytes_sent");
    assert_eq!(
        out.get("outcome"),
        format!("TimedOut: timed out after sending {sent} bytes")
    );
    assert!(sent > 0 && sent < LEN as u64 - OFFSET, "{out}");
    assert_eq!(out.num("position"), OFFSET + sent);
    let ms = out.num("elapsed_ms");
    assert!(ms >= 500, "timed out early, after {ms} ms");
    assert!(ms < 10_000, "timed out late, after {ms} ms");
    assert_eq!(stats.sendfile_bytes(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_timeout_bounds_each_wait_not_the_transfer() {
    // 4 MiB to a peer taking 64 KiB every 20 ms: about 1.3 s in all, far
    // longer than the 300 ms timeout, but no single wait is that long.
    const LEN: usize = 4 << 20;
    let dir = TempDir::new("sendfile-slow");
    dir.write("file.bin", &pattern(LEN));
    let (addr, server) = serve_one(slow_reader(64 << 10, Duration::from_millis(20)));
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/file.bin");
    let out = run_with_dir(
        "sendfile-stalled",
        &[&addr, &path, "0", "300"],
        ctx,
        dir.path(),
    )
    .await
    .success();
    assert_eq!(out.get("outcome"), "ok", "{out}");
    assert_eq!(out.num("position"), LEN as u64);
    assert_eq!(server.join().unwrap(), LEN);
    let ms = out.num("elapsed_ms");
    assert!(
        ms > 600,
        "the transfer did not outlast the timeout ({ms} ms)"
    );
    assert_eq!(stats.sendfile_bytes(), LEN as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_bounds_the_whole_call() {
    const LEN: usize = 64 << 20;
    let dir = TempDir::new("sendfile-deadline");
    dir.write("big.bin", &pattern(LEN));
    // Reads all the time, slowly: every wait is short, the whole would take
    // over a minute.
    let (addr, server) = serve_one(slow_reader(16 << 10, Duration::from_millis(20)));
    let (ctx, _stats) = counted();
    let path = format!("{GUEST_DIR}/big.bin");
    let out = run_with_dir(
        "sendfile-deadline",
        &[&addr, &path, "1000"],
        ctx,
        dir.path(),
    )
    .await
    .success();
    let received = server.join().unwrap();

    assert_eq!(out.get("past"), "TimedOut: timed out after sending 0 bytes");
    assert_eq!(out.get("past_bytes_sent"), "0");
    assert_eq!(out.num("past_position"), 10);

    let sent = out.num("bytes_sent");
    assert_eq!(
        out.get("outcome"),
        format!("TimedOut: timed out after sending {sent} bytes")
    );
    assert!(sent > 0 && sent < LEN as u64, "{out}");
    assert_eq!(out.num("position"), sent);
    let ms = out.num("elapsed_ms");
    assert!(ms >= 1000, "timed out early, after {ms} ms");
    assert!(ms < 6000, "the deadline did not bound the call: {ms} ms");
    assert!(
        received as u64 <= sent,
        "received {received}, reported {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_resets_fails_the_call_and_the_host_goes_on() {
    const LEN: usize = 64 << 20;
    const READ: usize = 1 << 20;
    let dir = TempDir::new("sendfile-reset");
    dir.write("big.bin", &pattern(LEN));
    dir.write("small.bin", &pattern(1000));
    let (addr, server) = serve_one(|mut s| {
        let mut buf = vec![0; READ];
        s.read_exact(&mut buf).unwrap();
        reset(s);
    });
    let (ctx, _stats) = counted();
    let path = format!("{GUEST_DIR}/big.bin");
    let out = run_with_dir("sendfile-reset", &[&addr, &path], ctx, dir.path())
        .await
        .success();
    server.join().unwrap();
    let outcome = out.get("outcome");
    assert!(
        outcome.starts_with("ConnectionReset") || outcome.starts_with("BrokenPipe"),
        "{out}"
    );
    let sent = out.num("bytes_sent");
    assert!(
        outcome.ends_with(&format!("after sending {sent} bytes")),
        "{out}"
    );
    assert!(sent >= READ as u64 && sent < LEN as u64, "{out}");
    assert_eq!(out.num("position"), sent);

    // The host is unharmed: another plugin sends a file.
    let (addr, server) = serve_one(hash_stream);
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/small.bin");
    let out = run_with_dir("sendfile", &[&addr, &path], ctx, dir.path())
        .await
        .success();
    assert_eq!(out.num("sent"), 1000);
    assert_eq!(server.join().unwrap(), (1000, fnv1a(&pattern(1000))));
    assert_eq!(stats.sendfile_bytes(), 1000);
}

/// Closes `s` with a reset (`SO_LINGER` of zero) instead of a FIN.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

/// Issue 26: sendfile(2) from a slow filesystem (NFS, FUSE) ran on the
/// runtime's thread, stalling every plugin there while the file was read.
/// On the reactor, a file fstatfs(2) does not place on a local filesystem
/// is sent with each sendfile(2) on tokio's blocking pool. No such
/// filesystem is mounted here, so the context takes every file as remote:
/// the bytes arrive intact through that path, waits included (the peer
/// reads slowly), while a local file keeps the path on the runtime's
/// thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_on_a_slow_filesystem_is_sent_from_the_blocking_pool() {
    const LEN: usize = 8 << 20;
    let dir = TempDir::new("sendfile-pool");
    dir.write("big.bin", &pattern(LEN));
    let path = format!("{GUEST_DIR}/big.bin");
    for remote in [true, false] {
        let (addr, server) = serve_one(|s| {
            // Nothing read at first, so the sender has to wait.
            std::thread::sleep(Duration::from_millis(300));
            hash_stream(s)
        });
        let (ctx, stats) = counted();
        let ctx = if remote {
            ctx.with_every_file_remote()
        } else {
            ctx
        };
        let out = run_with_dir("sendfile", &[&addr, &path], ctx, dir.path())
            .await
            .success();
        let (len, hash) = server.join().unwrap();
        assert_eq!(out.num("sent"), LEN as u64, "{out}");
        assert_eq!(len, LEN as u64);
        assert_eq!(hash, fnv1a(&pattern(LEN)), "the bytes differ");
        assert_eq!(stats.sendfile_bytes(), LEN as u64, "not by sendfile(2)");
        let pooled = if remote { LEN as u64 } else { 0 };
        assert_eq!(stats.pool_bytes(), pooled, "remote: {remote}");
    }
}

/// The pool's path keeps the socket's timeout and the count of what went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_times_out_with_the_count_from_the_blocking_pool() {
    const LEN: usize = 64 << 20;
    let dir = TempDir::new("sendfile-pool-stalled");
    dir.write("big.bin", &pattern(LEN));
    let (done, wait) = mpsc::channel::<()>();
    let (addr, server) = serve_one(move |s| {
        let _ = wait.recv_timeout(Duration::from_secs(60));
        drop(s);
    });
    let (ctx, stats) = counted();
    let path = format!("{GUEST_DIR}/big.bin");
    let args = [addr.as_str(), &path, "0", "500"];
    let out = run_with_dir(
        "sendfile-stalled",
        &args,
        ctx.with_every_file_remote(),
        dir.path(),
    )
    .await
    .success();
    done.send(()).unwrap();
    server.join().unwrap();
    let sent = out.num("bytes_sent");
    assert_eq!(
        out.get("outcome"),
        format!("TimedOut: timed out after sending {sent} bytes")
    );
    assert!(sent > 0 && sent < LEN as u64, "{out}");
    let ms = out.num("elapsed_ms");
    assert!((500..10_000).contains(&ms), "timed out after {ms} ms");
    assert_eq!(stats.pool_bytes(), sent);
}
