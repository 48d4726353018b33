//! Turning paired repetitions into figures and ratios: one table per
//! workload for people, one JSON object per workload for machines.
//!
//! Every repetition runs the compared systems back to back (rotating the
//! order), so a ratio is computed within each repetition, and the table
//! shows the median ratio with its spread (min–max) over repetitions.
//! Ratios are always the subject (sockshim) over the other system, for
//! throughput as for CPU and time.

use crate::measure::{Sample, Stats};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// How a run's amount and time become a figure.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// `amount` bytes: MB/s (10^6 bytes per second), CPU seconds per GiB.
    Throughput,
    /// `amount` round trips: µs per round trip, CPU µs per round trip.
    RoundTrip,
    /// `amount` connections: connections per second, CPU µs per connection.
    Rate,
    /// `amount` messages echoed: messages per second, CPU µs per message.
    Messages,
    /// `amount` HTTP requests answered: requests per second, CPU µs per
    /// request.
    Requests,
    /// `amount` starts of a program: ms per start, CPU ms per start.
    Start,
}

impl Unit {
    fn figure(self, s: &Sample, amount: f64) -> f64 {
        let wall = s.wall.as_secs_f64();
        match self {
            Unit::Throughput => amount / wall / 1e6,
            Unit::RoundTrip => wall / amount * 1e6,
            Unit::Rate | Unit::Messages | Unit::Requests => amount / wall,
            Unit::Start => wall / amount * 1e3,
        }
    }

    fn cpu(self, cpu: std::time::Duration, amount: f64) -> f64 {
        let cpu = cpu.as_secs_f64();
        match self {
            Unit::Throughput => cpu / (amount / (1u64 << 30) as f64),
            Unit::RoundTrip | Unit::Rate | Unit::Messages | Unit::Requests => cpu / amount * 1e6,
            Unit::Start => cpu / amount * 1e3,
        }
    }

    /// (JSON suffix of the figure, JSON key of the CPU figures, headings)
    fn names(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Unit::Throughput => ("mbps", "cpu_s_per_gib", "MB/s", "CPU s/GiB"),
            Unit::RoundTrip => ("us_per_rt", "cpu_us_per_rt", "µs/round trip", "CPU µs/rt"),
            Unit::Rate => ("conn_per_s", "cpu_us_per_conn", "conn/s", "CPU µs/conn"),
            Unit::Messages => ("msg_per_s", "cpu_us_per_msg", "msg/s", "CPU µs/msg"),
            Unit::Requests => ("req_per_s", "cpu_us_per_req", "req/s", "CPU µs/req"),
            Unit::Start => (
                "ms_per_start",
                "cpu_ms_per_start",
                "ms/start",
                "CPU ms/start",
            ),
        }
    }

    /// The value of `what` for one run; none for a peer figure of a run
    /// without its peer's CPU time.
    fn value(self, what: Figure, s: &Sample, amount: f64) -> Option<f64> {
        Some(match what {
            Figure::Main => self.figure(s, amount),
            Figure::Cpu => self.cpu(s.cpu, amount),
            Figure::UserCpu => self.cpu(s.user, amount),
            Figure::PeerCpu => self.cpu(s.peer?, amount),
            Figure::CpuWithPeer => self.cpu(s.cpu + s.peer?, amount),
        })
    }

    fn ratio_heading(self) -> &'static str {
        match self {
            Unit::Throughput => "throughput",
            Unit::RoundTrip | Unit::Start => "time",
            Unit::Rate | Unit::Messages | Unit::Requests => "rate",
        }
    }
}

/// Which figure of a run a statistic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    /// Throughput, round-trip time or rate.
    Main,
    /// CPU time (user + system) per unit.
    Cpu,
    /// The user-mode part of it.
    UserCpu,
    /// The peer process's CPU time per unit.
    PeerCpu,
    /// Both processes' CPU time per unit: on one CPU, where the kernel
    /// charges the loopback's work to either, the fairer comparison.
    CpuWithPeer,
}

/// A compared system: its name in tables and its JSON key.
#[derive(Debug, Clone, Copy)]
pub struct System {
    pub label: &'static str,
    pub key: &'static str,
}

/// The outcome of one workload.
pub struct Table {
    pub key: String,
    pub title: String,
    pub unit: Unit,
    /// Bytes, round trips or connections per run.
    pub amount: f64,
    pub systems: Vec<System>,
    /// The system the ratios are about (sockshim); `None` when it could not
    /// run, and then there are no ratios.
    pub subject: Option<usize>,
    /// `samples[rep][system]`; `None` for a system that could not run.
    pub samples: Vec<Vec<Option<Sample>>>,
    /// Extra lines under the table.
    pub notes: Vec<String>,
}

impl Table {
    fn figures(&self, sys: usize, what: Figure) -> Option<Stats> {
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|rep| self.unit.value(what, rep[sys].as_ref()?, self.amount))
            .collect();
        (!values.is_empty()).then(|| Stats::of(&values))
    }

    /// Per-repetition ratios subject / `other`.
    fn ratios(&self, other: usize, what: Figure) -> Option<Stats> {
        let subject = self.subject?;
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|rep| {
                let (s, o) = (rep[subject].as_ref()?, rep[other].as_ref()?);
                let f = |x: &Sample| self.unit.value(what, x, self.amount);
                Some(f(s)? / f(o)?)
            })
            .collect();
        (!values.is_empty()).then(|| Stats::of(&values))
    }

    /// Whether the runs measured their peer's CPU time.
    fn has_peer(&self) -> bool {
        self.samples
            .iter()
            .flatten()
            .flatten()
            .any(|s| s.peer.is_some())
    }

    fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.systems.len()).filter(move |&i| Some(i) != self.subject)
    }

    pub fn to_text(&self) -> String {
        let (_, _, fig_head, cpu_head) = self.unit.names();
        let peer = self.has_peer();
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let _ = write!(
            out,
            "  {:<36} {:>24}  {:>22}  {:>22}",
            "system",
            format!("{fig_head} (min–max)"),
            format!("{cpu_head} (min–max)"),
            "of it user (min–max)"
        );
        end_line(&mut out, peer.then(|| format!("peer {cpu_head} (min–max)")));
        for (i, sys) in self.systems.iter().enumerate() {
            let cell = |s: Option<Stats>| match s {
                Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
                None => "n/a".to_string(),
            };
            let _ = write!(
                out,
                "  {:<36} {:>24}  {:>22}  {:>22}",
                sys.label,
                cell(self.figures(i, Figure::Main)),
                cell(self.figures(i, Figure::Cpu)),
                cell(self.figures(i, Figure::UserCpu))
            );
            end_line(
                &mut out,
                peer.then(|| cell(self.figures(i, Figure::PeerCpu))),
            );
        }
        match self.subject {
            Some(subject) => {
                let _ = write!(
                    out,
                    "  {:<36} {:>24}  {:>22}",
                    format!("{} ÷ …", self.systems[subject].label),
                    format!("{} (min–max)", self.unit.ratio_heading()),
                    "CPU (min–max)"
                );
                end_line(&mut out, peer.then(|| "CPU with peer (min–max)".into()));
                for other in self.others() {
                    let cell = |s: Option<Stats>| match s {
                        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
                        None => "n/a".to_string(),
                    };
                    let _ = write!(
                        out,
                        "    {:<34} {:>24}  {:>22}",
                        format!("÷ {}", self.systems[other].label),
                        cell(self.ratios(other, Figure::Main)),
                        cell(self.ratios(other, Figure::Cpu))
                    );
                    let with_peer = || cell(self.ratios(other, Figure::CpuWithPeer));
                    end_line(&mut out, peer.then(with_peer));
                }
            }
            None => {
                let _ = writeln!(out, "  (no ratios: the subject system did not run)");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  {note}");
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let (fig_suffix, cpu_key, _, _) = self.unit.names();
        let mut obj = Map::new();
        let mut spread = Map::new();
        let mut cpu = Map::new();
        let mut user = Map::new();
        let mut peer_cpu = Map::new();
        let peer = self.has_peer();
        let amount_key = match self.unit {
            Unit::Throughput => "bytes",
            Unit::RoundTrip => "round_trips",
            Unit::Rate => "connections",
            Unit::Messages => "messages",
            Unit::Requests => "requests",
            Unit::Start => "starts",
        };
        obj.insert(amount_key.into(), json!(self.amount as u64));
        obj.insert("repetitions".into(), json!(self.samples.len()));
        for (i, sys) in self.systems.iter().enumerate() {
            let key = format!("{}_{fig_suffix}", sys.key);
            let fig = self.figures(i, Figure::Main);
            obj.insert(key.clone(), json!(fig.map(|s| s.median)));
            spread.insert(key, json!(fig.map(|s| [s.min, s.max])));
            for (map, prefix, what) in [
                (&mut cpu, "", Figure::Cpu),
                (&mut user, "user_", Figure::UserCpu),
                (&mut peer_cpu, "peer_", Figure::PeerCpu),
            ] {
                if what == Figure::PeerCpu && !peer {
                    continue;
                }
                let c = self.figures(i, what);
                map.insert(sys.key.into(), json!(c.map(|s| s.median)));
                spread.insert(
                    format!("{prefix}{cpu_key}.{}", sys.key),
                    json!(c.map(|s| [s.min, s.max])),
                );
            }
        }
        obj.insert(cpu_key.into(), Value::Object(cpu));
        obj.insert(format!("user_{cpu_key}"), Value::Object(user));
        if peer {
            obj.insert(format!("peer_{cpu_key}"), Value::Object(peer_cpu));
        }
        if let Some(subject) = self.subject {
            obj.insert("subject".into(), json!(self.systems[subject].key));
        }
        for other in self.others() {
            let with_peer = peer.then_some(("cpu_with_peer_vs_", Figure::CpuWithPeer));
            let ratios = [("vs_", Figure::Main), ("cpu_vs_", Figure::Cpu)];
            for (prefix, what) in ratios.into_iter().chain(with_peer) {
                let key = format!("{prefix}{}", self.systems[other].key);
                let r = self.ratios(other, what);
                obj.insert(key.clone(), json!(r.map(|s| s.median)));
                spread.insert(key, json!(r.map(|s| [s.min, s.max])));
            }
        }
        obj.insert("spread".into(), Value::Object(spread));
        Value::Object(obj)
    }
}

/// One Markdown table of every workload's ratios, for `docs/benchmarks.md`
/// (`--markdown`): per workload, sockshim's own figure, then a row per
/// other system with sockshim ÷ it, the median and its spread (min–max),
/// for the workload's figure (throughput, time or rate) and for CPU time.
/// The workload's name is its title up to the first colon.
pub fn markdown(tables: &[Table]) -> String {
    let mut out = String::from(
        "| workload | sockshim | sockshim ÷ | throughput, time or rate | CPU |\n|---|---|---|---|---|\n",
    );
    for table in tables {
        let (_, _, fig_head, _) = table.unit.names();
        let name = table.title.split(':').next().unwrap_or_default();
        let own = table
            .subject
            .and_then(|s| table.figures(s, Figure::Main))
            .map_or("n/a".to_string(), |s| {
                format!("{} {fig_head}", num(s.median))
            });
        let ratio = |other, what| match table.ratios(other, what) {
            Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
            None => "n/a".to_string(),
        };
        for (row, other) in table.others().enumerate() {
            let (name, own) = if row == 0 {
                (name, own.as_str())
            } else {
                ("", "")
            };
            let _ = writeln!(
                out,
                "| {name} | {own} | {} | {} | {} |",
                table.systems[other].label,
                ratio(other, Figure::Main),
                ratio(other, Figure::Cpu)
            );
        }
    }
    out
}

/// Ends a table line, with one more column if `last` is given.
fn end_line(out: &mut String, last: Option<String>) {
    let _ = match last {
        Some(cell) => writeln!(out, "  {cell:>22}"),
        None => writeln!(out),
    };
}

/// A figure with about four significant digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else if a >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(wall_ms: u64, cpu_ms: u64) -> Option<Sample> {
        Some(Sample {
            wall: Duration::from_millis(wall_ms),
            cpu: Duration::from_millis(cpu_ms),
            user: Duration::from_millis(cpu_ms / 5),
            peer: None,
        })
    }

    fn sample_with_peer(wall_ms: u64, cpu_ms: u64, peer_ms: u64) -> Option<Sample> {
        sample(wall_ms, cpu_ms).map(|s| Sample {
            peer: Some(Duration::from_millis(peer_ms)),
            ..s
        })
    }

    fn table(unit: Unit, samples: Vec<Vec<Option<Sample>>>) -> Table {
        Table {
            key: "t".into(),
            title: "t".into(),
            unit,
            amount: (1u64 << 30) as f64,
            systems: vec![
                System {
                    label: "native",
                    key: "native",
                },
                System {
                    label: "sockshim",
                    key: "sockshim",
                },
            ],
            subject: Some(1),
            samples,
            notes: vec![],
        }
    }

    #[test]
    fn ratios_are_subject_over_other_per_repetition() {
        // Repetition 1: sockshim twice as slow; repetition 2: as fast.
        let t = table(
            Unit::Throughput,
            vec![
                vec![sample(1000, 500), sample(2000, 1000)],
                vec![sample(500, 500), sample(500, 250)],
            ],
        );
        let json = t.to_json();
        assert_eq!(json["vs_native"], json!(0.75)); // median of 0.5 and 1.0
        assert_eq!(json["cpu_vs_native"], json!(1.25)); // median of 2.0 and 0.5
        assert_eq!(json["spread"]["vs_native"], json!([0.5, 1.0]));
        assert_eq!(json["cpu_s_per_gib"]["native"], json!(0.5));
        assert_eq!(json["user_cpu_s_per_gib"]["native"], json!(0.1));
        assert_eq!(
            json["spread"]["user_cpu_s_per_gib.sockshim"],
            json!([0.05, 0.2])
        );
        assert!(json["native_mbps"].as_f64().unwrap() > 1000.0);
        assert_eq!(json["subject"], json!("sockshim"));
    }

    #[test]
    fn the_peers_cpu_is_reported_when_measured() {
        // sockshim's process used twice native's CPU, its peer a third as
        // much: together the same.
        let t = table(
            Unit::Throughput,
            vec![vec![
                sample_with_peer(1000, 300, 900),
                sample_with_peer(1000, 600, 600),
            ]],
        );
        let json = t.to_json();
        assert_eq!(json["cpu_vs_native"], json!(2.0));
        assert_eq!(json["peer_cpu_s_per_gib"]["native"], json!(0.9));
        assert_eq!(json["peer_cpu_s_per_gib"]["sockshim"], json!(0.6));
        assert_eq!(json["cpu_with_peer_vs_native"], json!(1.0));
        assert_eq!(
            json["spread"]["peer_cpu_s_per_gib.sockshim"],
            json!([0.6, 0.6])
        );
        let text = t.to_text();
        assert!(text.contains("peer CPU s/GiB"), "{text}");
        assert!(text.contains("CPU with peer"), "{text}");
        // Without the peer's CPU time, none of it.
        let t = table(
            Unit::Throughput,
            vec![vec![sample(1000, 300), sample(1000, 600)]],
        );
        let json = t.to_json();
        assert!(json.get("peer_cpu_s_per_gib").is_none());
        assert!(json.get("cpu_with_peer_vs_native").is_none());
        assert!(!t.to_text().contains("peer"));
    }

    #[test]
    fn markdown_has_a_row_per_other_system_with_both_ratios() {
        let mut t = table(
            Unit::Throughput,
            vec![
                vec![sample(1000, 500), sample(2000, 1000)],
                vec![sample(500, 500), sample(500, 250)],
            ],
        );
        t.title = "bulk: 1 GiB per run".into();
        let md = markdown(&[t]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 3, "{md}");
        assert!(lines[0].starts_with("| workload | sockshim |"), "{md}");
        assert!(lines[2].starts_with("| bulk | "), "{md}");
        assert!(
            lines[2].ends_with(" | native | 0.75 (0.50–1.00) | 1.25 (0.50–2.00) |"),
            "{md}"
        );
    }

    #[test]
    fn a_missing_system_gives_nulls() {
        let t = table(Unit::RoundTrip, vec![vec![sample(1000, 500), None]]);
        let json = t.to_json();
        assert!(json["sockshim_us_per_rt"].is_null());
        assert!(json["vs_native"].is_null());
        assert!(t.to_text().contains("n/a"));
    }
}
