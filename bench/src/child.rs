//! Child processes of the benchmark (peers, scale runs): spawned from this
//! same executable, talked to over stdin/stdout lines, waited for with
//! timeouts, and killed when dropped, on a panic, on a signal or when the
//! time limit strikes. A child also dies with us: peers ask for SIGKILL when
//! their parent exits (PR_SET_PDEATHSIG) and exit when their stdin closes.

use crate::Result;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Process ids of the children alive now, for [`kill_all`].
static ALIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The CPU every peer runs on (`--split-cpus`), if not this process's.
static PEER_CPU: OnceLock<usize> = OnceLock::new();

/// Starts every later peer on `cpu` alone.
pub fn put_peers_on(cpu: usize) {
    let _ = PEER_CPU.set(cpu);
}

/// The CPU set holding `cpu` alone.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: an all-zero `cpu_set_t` is the empty set; CPU_SET indexes
    // into the set we own and ignores CPUs beyond CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// sched_setaffinity(2) of the calling thread to `set`.
fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: reads one `cpu_set_t` we own.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `command`'s process start on `cpu` alone.
fn run_on(command: &mut Command, cpu: usize) {
    let set = only(cpu);
    // SAFETY: between fork and exec the closure makes one system call on a
    // set copied in, and allocates nothing.
    unsafe { command.pre_exec(move || set_affinity(&set)) };
}

/// Makes `command`'s process start on the peers' CPU under
/// `--split-cpus` (a load generator that is not one of our peers, wrk);
/// otherwise it runs where this process does.
pub fn on_peer_cpu(command: &mut Command) {
    if let Some(&cpu) = PEER_CPU.get() {
        run_on(command, cpu);
    }
}

/// Restricts the calling thread (and every thread and child it starts
/// after) to `cpu`.
pub fn pin_this_thread(cpu: usize) -> std::io::Result<()> {
    set_affinity(&only(cpu))
}

/// Counts `pid`, a child not started through [`Proc`] (nginx), among
/// those [`kill_all`] kills.
pub fn track(pid: u32) {
    ALIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Forgets a child [`track`]ed, once it has been waited for.
pub fn untrack(pid: u32) {
    ALIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Kills every child still alive (used before a forced exit).
pub fn kill_all() {
    let pids = std::mem::take(&mut *ALIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in pids {
        // SAFETY: kill(2) on a pid of ours; no memory involved.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// A running child: its stdin for commands and its stdout lines.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts `<this executable> ARGS...` with piped stdin and stdout.
    pub fn spawn(args: &[String]) -> Result<Proc> {
        Proc::spawn_on(args, None)
    }

    /// [`Proc::spawn`], on `cpu` alone if given (else on this process's).
    fn spawn_on(args: &[String], cpu: Option<usize>) -> Result<Proc> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = cpu {
            run_on(&mut command, cpu);
        }
        let mut child = command.spawn()?;
        ALIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("child-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Proc {
            name: args.join(" "),
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits at most `timeout` for the next stdout line.
    pub fn line(&self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("`{}` said nothing for {timeout:?}", self.name).into())
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("`{}` exited early", self.name).into())
            }
        }
    }

    /// Waits for the next line, which must start with `word`; returns the rest.
    pub fn expect(&self, word: &str, timeout: Duration) -> Result<String> {
        let line = self.line(timeout)?;
        match line.strip_prefix(word) {
            Some(rest) => Ok(rest.trim().to_string()),
            None => Err(format!("`{}` said {line:?}, expected {word:?}", self.name).into()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        ALIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
    }
}

/// A peer process (`sockshim-bench peer ROLE ARGS...`).
pub struct Peer {
    pub proc: Proc,
    /// The port it listens on, for the roles that listen.
    pub port: u16,
}

impl Peer {
    /// Starts a peer; a listening role reports its port first.
    pub fn start(role: &str, args: &[String]) -> Result<Peer> {
        let mut argv = vec!["peer".to_string(), role.to_string()];
        argv.extend_from_slice(args);
        let proc = Proc::spawn_on(&argv, PEER_CPU.get().copied())?;
        // The roles that only connect report no port.
        let port = if ["client", "manyconn", "http"].contains(&role) {
            0
        } else {
            proc.expect("port", Duration::from_secs(20))?.parse()?
        };
        Ok(Peer { proc, port })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUs `pid` may run on, as /proc says (`Cpus_allowed_list`).
    fn cpus_allowed(pid: u32) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        line.trim().to_string()
    }

    #[test]
    fn a_child_started_on_a_cpu_runs_there_alone() {
        let ours = cpus_allowed(std::process::id());
        // The last CPU we may use: another one where there are two.
        let last: usize = ours
            .rsplit([',', '-'])
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap();
        let mut command = Command::new("sleep");
        command.arg("10");
        run_on(&mut command, last);
        let mut child = command.spawn().unwrap();
        let theirs = cpus_allowed(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(theirs, last.to_string(), "we may use {ours}");
    }
}
