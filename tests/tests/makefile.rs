//! `Socket::makefile` against native peers: buffered line reading across
//! packet boundaries, buffered writes that go on flush, the connection
//! outliving its socket while a file object lives, and the file object a
//! timeout poisons.

use sockshim_tests::*;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Writes `pieces` one by one, each its own segment, with pauses between.
fn write_in_pieces(s: &mut TcpStream, pieces: &[&[u8]]) {
    s.set_nodelay(true).unwrap();
    for piece in pieces {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_across_packet_boundaries_mixed_with_reads() {
    let (addr, server) = serve_one(|mut s| {
        write_in_pieces(
            &mut s,
            &[
                b"first li",
                b"ne\nsec",
                b"ond line\n12",
                b"345third",
                b" line\nkey=val",
                b"ue;abc",
                b"\nx\ny\n",
            ],
        );
        // Dropping `s` ends the stream.
    });
    let out = run_guest("makefile-lines", &[&addr], loopback())
        .await
        .success();
    server.join().unwrap();
    assert_eq!(out.get("mode"), "rb");
    assert_eq!(out.get("writable"), "false");
    assert_eq!(out.get("line1"), "first line");
    assert_eq!(out.get("line2"), "second line");
    assert_eq!(out.get("exact5"), "12345");
    assert_eq!(out.get("line3"), "third line");
    assert_eq!(out.get("until"), "key=value;");
    // A read takes what the buffer holds first.
    assert_eq!(out.get("read3"), "abc");
    assert_eq!(out.get("lines"), "|x|y");
    assert_eq!(out.num("eof_read"), 0);
    assert_eq!(
        out.get("write_to_rb"),
        "Unsupported: File not open for writing"
    );
    assert_eq!(
        out.get("flush_rb"),
        "Unsupported: File not open for writing"
    );
    assert_eq!(out.get("closed"), "true");
    assert_eq!(
        out.get("read_closed"),
        "InvalidInput: I/O operation on closed file"
    );
    assert_eq!(out.get("close_again"), "ok");
    assert!(
        out.get("text_mode").starts_with("InvalidInput: text mode"),
        "{out}"
    );
    assert!(
        out.get("bad_mode")
            .starts_with("InvalidInput: invalid mode"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_peer_on_flush_drop_and_close() {
    let (addr, server) = serve_one(|mut s| {
        // The plugin writes at once and flushes 1.5 s later: nothing may
        // arrive in the first half second.
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut early = [0; 64];
        let before_flush = s.read(&mut early).map_err(|e| e.kind());
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        (before_flush, all)
    });
    let out = run_guest("makefile-write", &[&addr], loopback())
        .await
        .success();
    let (before_flush, all) = server.join().unwrap();
    assert!(
        matches!(
            before_flush,
            Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)
        ),
        "bytes arrived before the flush: {before_flush:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&all),
        "hello world\n0123456789\ndropped\nclosed\nraw\n"
    );
    assert_eq!(out.get("mode"), "wb");
    assert_eq!(
        out.get("read_from_wb"),
        "Unsupported: File not open for reading"
    );
    assert_eq!(
        out.get("read_line_from_wb"),
        "Unsupported: File not open for reading"
    );
    assert_eq!(out.get("flushed"), "yes");
    assert_eq!(out.get("close"), "ok");
    assert_eq!(
        out.get("write_closed"),
        "InvalidInput: I/O operation on closed file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_lives_until_the_last_file_object_goes() {
    let (addr, server) = serve_one(|s| {
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut writer = s;
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "ping\n");
        writer.write_all(b"pong\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "still here\n");
        // The plugin sleeps 1.5 s holding only the writer: no end yet.
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0; 16];
        let while_open = reader.read(&mut buf).map_err(|e| e.kind());
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let at_close = reader.read(&mut buf).map_err(|e| e.kind());
        (while_open, at_close, Instant::now())
    });
    let out = run_guest("makefile-outlives-socket", &[&addr], loopback())
        .await
        .success();
    let finished = Instant::now();
    let (while_open, at_close, eof_at) = server.join().unwrap();
    assert!(
        matches!(while_open, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the connection ended while a file object held it: {while_open:?}"
    );
    assert_eq!(at_close, Ok(0), "no end of stream after the last close");
    // The plugin sleeps 3 s after closing the last file object: the end of
    // stream came from that close, not from the plugin's exit.
    let early = finished.duration_since(eof_at);
    assert!(
        early >= Duration::from_millis(1500),
        "the end of stream came only {early:?} before the plugin ended"
    );
    assert!(out.get("socket_recv").contains("(os error 8)"), "{out}");
    assert!(out.get("socket_makefile").contains("(os error 8)"), "{out}");
    assert_eq!(out.get("reply"), "pong");
    assert_eq!(out.get("still"), "written");
    assert_eq!(out.get("closed"), "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_file_object_refuses_further_reads() {
    let (addr, server) = serve_one(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut go = [0; 3];
        s.read_exact(&mut go).unwrap();
        assert_eq!(&go, b"go\n");
        s.write_all(b"late\n").unwrap();
        let mut ok = [0; 3];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"ok\n");
        drain(s);
    });
    let out = run_guest("makefile-timeout", &[&addr], loopback())
        .await
        .success();
    server.join().unwrap();
    assert_eq!(out.get("first"), "TimedOut: timed out");
    let ms = out.num("first_ms");
    assert!((300..5000).contains(&ms), "timed out after {ms} ms");
    // "late\n" had arrived: the file refuses it anyway.
    assert_eq!(
        out.get("second"),
        "Other: cannot read from timed out object"
    );
    assert_eq!(
        out.get("read_after"),
        "Other: cannot read from timed out object"
    );
    assert_eq!(out.get("write_after"), "ok");
    // The socket itself still reads, and gets what the file refused.
    assert_eq!(out.get("socket_recv"), "late");
}
