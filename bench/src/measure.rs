//! What one measured run yields, and the process figures the benchmark
//! reads: CPU time (getrusage), resident memory and thread count (/proc).

use crate::Result;
use std::time::{Duration, Instant};

/// One measured run: its wall time and the CPU time (user + system, every
/// thread) the benchmark process spent meanwhile. The peer runs in another
/// process, so the CPU time is the measured side's alone.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
    /// The user-mode part of `cpu`: wasm, wasmtime, the host's and the
    /// runtime's code, as opposed to the kernel's socket and TCP work.
    /// Linux splits a thread's exact run time between user and system in
    /// proportion to timer ticks (4 ms here), so this part is an estimate.
    pub user: Duration,
    /// The CPU time (user + system) of the peer process meanwhile, where the
    /// run had one ([`measure_with_peer`]). On one CPU the kernel's loopback
    /// work (the receive path runs in softirq context, charged to whichever
    /// process is running) moves between the two processes from run to run,
    /// so `cpu` alone can carry part of the peer's work; `cpu` plus this
    /// cannot. Read from `/proc/PID/stat`, in clock ticks (10 ms).
    pub peer: Option<Duration>,
}

/// CPU time of this process so far: (user + system, user).
pub fn cpu_times() -> (Duration, Duration) {
    // SAFETY: getrusage writes one `rusage` into the zeroed value we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime) + tv(usage.ru_stime), tv(usage.ru_utime))
}

/// User plus system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    cpu_times().0
}

/// Runs `f` and measures its wall and CPU time.
pub fn measure(f: impl FnOnce() -> Result<()>) -> Result<Sample> {
    let ((cpu, user), start) = (cpu_times(), Instant::now());
    f()?;
    let (cpu_after, user_after) = cpu_times();
    Ok(Sample {
        wall: start.elapsed(),
        cpu: cpu_after.saturating_sub(cpu),
        user: user_after.saturating_sub(user),
        peer: None,
    })
}

/// [`measure`], with the CPU time the peer process `peer_pid` spent
/// meanwhile ([`Sample::peer`]); none if its /proc entry cannot be read.
pub fn measure_with_peer(peer_pid: u32, f: impl FnOnce() -> Result<()>) -> Result<Sample> {
    let before = process_cpu_time(peer_pid);
    let sample = measure(f)?;
    let after = process_cpu_time(peer_pid);
    Ok(Sample {
        peer: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
        ..sample
    })
}

/// User plus system CPU time of process `pid` so far (all its threads),
/// from `/proc/PID/stat`.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    process_cpu_times(pid).map(|(all, _)| all)
}

/// The CPU time of process `pid` so far, as [`process_cpu_time`], and its
/// user-mode part: (user + system, user).
pub fn process_cpu_times(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let (utime, stime) = (ticks(14)?, ticks(15)?);
    // SAFETY: sysconf(3) takes no pointers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    let time = |ticks: u64| Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / per_second));
    Some((time(utime + stime), time(utime)))
}

/// A field of /proc/self/status, in its own unit (kB for memory).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    proc_status("VmRSS") * 1024
}

/// OS threads of this process.
pub fn threads() -> u64 {
    proc_status("Threads")
}

/// Median, minimum and maximum of `values` (which must not be empty).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Stats::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    }

    #[test]
    fn process_figures_are_read() {
        assert!(rss_bytes() > 0);
        assert!(threads() >= 1);
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > before);
    }

    #[test]
    fn another_process_cpu_time_is_read_from_proc() {
        // This process's own entry: its CPU time as getrusage counts it,
        // to the clock tick (10 ms), and more as it computes.
        let pid = std::process::id();
        // Computes until this process's CPU time grew by `ms`.
        let spin = |ms: u64| {
            let until = cpu_time() + Duration::from_millis(ms);
            while cpu_time() < until {
                std::hint::black_box(until);
            }
        };
        spin(50);
        let from_proc = process_cpu_time(pid).expect("our own /proc entry");
        let from_rusage = cpu_time();
        assert!(from_proc <= from_rusage + Duration::from_millis(20));
        assert!(from_proc + Duration::from_millis(50) >= from_rusage);
        spin(100);
        let later = process_cpu_time(pid).expect("our own /proc entry");
        assert!(
            later >= from_proc + Duration::from_millis(50),
            "{from_proc:?} → {later:?}"
        );
        // A process that does not exist has no entry.
        assert_eq!(process_cpu_time(u32::MAX), None);
    }
}
