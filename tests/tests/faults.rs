//! Issue 26, Proof of the boundary, "Faults on the wire", against native
//! peers: a reset in the middle of `sendall` says how many bytes went, and
//! a storm of signals at the host (EINTR in every system call it makes) is
//! no error to the plugin. In a binary of its own: the storm's signals go
//! to the whole process. (A connect that is never answered ending at its
//! timeout: `guest_native.rs`, `connect_honours_the_timeout`; a reset in
//! the middle of `sendfile`: `sendfile.rs`.)

use sockshim_host::SockshimCtx;
use sockshim_tests::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Closes `s` with a reset (`SO_LINGER` of zero) instead of a FIN.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_the_middle_of_sendall_says_how_many_bytes_went() {
    const LEN: usize = 64 << 20;
    const READ: usize = 1 << 20;
    for on_thread in [false, true] {
        let (addr, server) = serve_one(|mut s| {
            let mut buf = vec![0; READ];
            s.read_exact(&mut buf).unwrap();
            reset(s);
        });
        let mut ctx = SockshimCtx::new(loopback());
        if on_thread {
            ctx = ctx.waiting_on_thread().unwrap();
        }
        let out = spawn_with(
            SOCKSHIM_TEST_GUEST,
            &["sendall-deadline", &addr, &LEN.to_string(), "60000"],
            ctx,
        )
        .finish()
        .await
        .success();
        server.join().unwrap();
        let outcome = out.get("outcome");
        assert!(
            outcome.starts_with("ConnectionReset") || outcome.starts_with("BrokenPipe"),
            "on thread {on_thread}: {out}"
        );
        let sent = out.num("bytes_sent");
        assert!(
            sent >= READ as u64 && sent < LEN as u64,
            "on thread {on_thread}: {out}"
        );
    }
}

extern "C" fn ignore(_: libc::c_int) {}

/// Sends SIGUSR1 to the process every 200 µs until dropped; the handler
/// does nothing and is installed without `SA_RESTART`, so a system call
/// the signal lands in fails with EINTR.
struct Storm {
    on: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Storm {
    fn start() -> Storm {
        // SAFETY: a handler that does nothing is async-signal-safe; the
        // sigaction struct is zeroed (no flags: no SA_RESTART) and lives
        // across the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                0
            );
        }
        let on = Arc::new(AtomicBool::new(true));
        let running = Arc::clone(&on);
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            while running.load(Ordering::Relaxed) {
                // SAFETY: kill(2) of our own process with a handled signal.
                unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
                sent += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        });
        Storm {
            on,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.on.store(false, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_signals_is_no_error_to_the_plugin() {
    const LEN: usize = 16 << 20;
    let storm = Storm::start();
    for on_thread in [false, true] {
        let ctx = || {
            let ctx = SockshimCtx::new(loopback());
            if on_thread {
                ctx.waiting_on_thread().unwrap()
            } else {
                ctx
            }
        };
        // A slow reader, so that sendall waits again and again.
        let (addr, server) = serve_one(|mut s| {
            let mut got = Vec::with_capacity(LEN);
            let mut buf = vec![0; 64 << 10];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            got
        });
        let out = spawn_with(
            SOCKSHIM_TEST_GUEST,
            &["sendall", &addr, &LEN.to_string()],
            ctx(),
        )
        .finish()
        .await;
        let got = server.join().unwrap();
        let out = out.success();
        assert_eq!(out.num("sent"), LEN as u64, "on thread {on_thread}");
        assert_eq!(fnv1a(&got), fnv1a(&pattern(LEN)), "on thread {on_thread}");

        // A slow writer, so that every recv waits.
        let (addr, server) = serve_one(|mut s| {
            for chunk in pattern(LEN).chunks(256 << 10) {
                loop {
                    match s.write_all(chunk) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let out = spawn_with(SOCKSHIM_TEST_GUEST, &["recv-all", &addr], ctx())
            .finish()
            .await
            .success();
        server.join().unwrap();
        assert_eq!(out.num("received"), LEN as u64, "on thread {on_thread}");
        assert_eq!(
            out.num("fnv"),
            fnv1a(&pattern(LEN)),
            "on thread {on_thread}"
        );
    }
    let signals = storm.stop();
    eprintln!("signals sent during the transfers: {signals}");
    assert!(signals > 100, "the storm hardly blew: {signals}");
}
