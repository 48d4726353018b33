//! What the tests that run the `sockshim` command as a real process share:
//! the command itself, and a plugin that listens, with its stderr
//! collected while it runs. Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The command, with its cache of compiled plugins in the build's scratch
/// directory (kept between test runs) rather than the user's.
pub fn sockshim() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sockshim"));
    command.env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"));
    command
}

/// A process that says `listening on IP:PORT` first on stdout (a server
/// plugin under `sockshim run`): that address, and its stderr, collected
/// by a thread and readable while it runs. Killed on drop, so a failed
/// test leaves no server behind.
pub struct Listening {
    child: Option<Child>,
    /// The address from the `listening on` line.
    pub addr: String,
    log: Arc<Mutex<String>>,
    stderr: Option<JoinHandle<()>>,
}

impl Listening {
    /// Starts `command` with stdout and stderr piped and reads its first
    /// line; panics, with the process's stderr, if that line is not
    /// `listening on …`.
    pub fn start(command: &mut Command) -> Listening {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run sockshim");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&log);
        let stderr = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let mut log = collected.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut listening = Listening {
            child: Some(child),
            addr: String::new(),
            log,
            stderr: Some(stderr),
        };
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        match line.trim().strip_prefix("listening on ") {
            Some(addr) => listening.addr = addr.to_string(),
            None => {
                let (_, log) = listening.kill();
                panic!("unexpected first line {line:?}; stderr:\n{log}");
            }
        }
        listening
    }

    /// The stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (up to `patience`) until stderr satisfies `logged`; returns
    /// it, satisfied or not.
    pub fn wait_for_log(&self, patience: Duration, logged: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if logged(&log) || start.elapsed() > patience {
                return log;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's id, while it has not been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process and waits for it; returns its exit status and its
    /// whole stderr.
    pub fn kill(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("the process was already stopped");
        let _ = child.kill();
        let status = child.wait().unwrap();
        (status, self.finish_log())
    }

    /// Waits (up to `patience`) for the process to exit on its own; returns
    /// its exit status and its whole stderr, or panics with the stderr
    /// after killing it.
    pub fn wait_for_exit(&mut self, patience: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("the process was already stopped");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > patience {
                let _ = child.kill();
                let _ = child.wait();
                let log = self.finish_log();
                panic!("the process did not exit; stderr:\n{log}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        (status, self.finish_log())
    }

    /// The whole stderr, once the process's stderr has closed.
    fn finish_log(&mut self) -> String {
        if let Some(thread) = self.stderr.take() {
            let _ = thread.join();
        }
        self.log()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
