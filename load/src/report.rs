//! The result of one scenario run: printed for people, written as JSON for
//! the suite and other tools.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::error::LoadError;
use crate::latency::Percentiles;
use crate::probe::CpuUse;

/// One run's figures. Fields that a scenario does not measure stay empty.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `fanout`, `latency`, `idle`, `slow-reader` or `churn`.
    pub scenario: String,
    /// Where the load went.
    pub target: String,
    /// Rooms.
    pub rooms: usize,
    /// Receiving users per room.
    pub users_per_room: usize,
    /// Senders per room.
    pub senders_per_room: usize,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Offered messages per second per room; `None` at max rate.
    pub rate_per_room: Option<f64>,
    /// The in-flight window per room, in payload bytes.
    pub window_bytes: u64,
    /// The same window in messages.
    pub window_msgs: u64,
    /// Length of the measured phase.
    pub duration_s: f64,
    /// Connections opened.
    pub connections: usize,
    /// Seconds to open and join them all.
    pub setup_s: f64,
    /// Connections opened and joined per second.
    pub connects_per_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received by all receivers.
    pub delivered: u64,
    /// Deliveries per second in the measured phase.
    pub delivered_per_s: f64,
    /// Messages sent but never received.
    pub loss: u64,
    /// Messages received out of order.
    pub reordered: u64,
    /// Lines that were not from an expected sender.
    pub unexpected: u64,
    /// Errors of any kind.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
    /// Every receiver got everything sent before the drain time limit.
    pub drained: bool,
    /// End-to-end latency.
    pub latency: Percentiles,
    /// CPU used in the measured phase.
    pub cpu: CpuUse,
    /// Server CPU nanoseconds per delivered message.
    pub server_cpu_ns_per_msg: Option<f64>,
    /// Generator CPU nanoseconds per delivered message.
    pub generator_cpu_ns_per_msg: Option<f64>,
    /// Server memory.
    pub memory: Option<Memory>,
    /// Figures over time.
    pub samples: Vec<Sample>,
    /// The slow-reader scenario's findings.
    pub slow: Option<SlowStats>,
    /// The churn scenario's findings.
    pub churn: Option<ChurnStats>,
}

/// Server resident memory.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Before the run's connections.
    pub baseline_bytes: u64,
    /// With every connection joined.
    pub loaded_bytes: u64,
    /// Highest sampled.
    pub peak_bytes: u64,
    /// After the run's connections closed.
    pub end_bytes: u64,
    /// `(loaded - baseline) / connections`.
    pub per_connection_bytes: Option<f64>,
}

impl Memory {
    /// Memory of a run with `connections` connections: RSS before them,
    /// once they had joined, the highest sampled, and at the end.
    pub fn of_run(
        base: u64,
        loaded: u64,
        samples: &[Sample],
        end: Option<u64>,
        connections: usize,
    ) -> Memory {
        let peak = samples.iter().filter_map(|s| s.server_rss_bytes).max();
        Memory {
            baseline_bytes: base,
            loaded_bytes: loaded,
            peak_bytes: peak.unwrap_or(loaded).max(loaded),
            end_bytes: end.unwrap_or(0),
            per_connection_bytes: Some(
                loaded.saturating_sub(base) as f64 / connections.max(1) as f64,
            ),
        }
    }
}

/// Figures at one moment of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Seconds since the measured phase began.
    pub t_s: f64,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Server resident memory.
    pub server_rss_bytes: Option<u64>,
    /// Server CPU seconds so far.
    pub server_cpu_s: Option<f64>,
    /// Generator CPU seconds so far.
    pub generator_cpu_s: Option<f64>,
}

/// What the slow-reader scenario found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlowStats {
    /// The server dropped the slow member during the run: the room saw it
    /// leave (chat), or its connection was closed (NATS).
    pub dropped: bool,
    /// Its connection was closed by the time it read again after the run.
    pub closed_by_end: bool,
    /// Seconds from the start until the room saw it leave (chat only).
    pub dropped_after_s: Option<f64>,
    /// The first error line it was sent, if it read one.
    pub error: Option<String>,
    /// Peak server RSS growth over the pre-run baseline.
    pub rss_growth_bytes: Option<u64>,
    /// The others' deliveries per second, second by second, without the
    /// slow member.
    pub baseline_per_s: Vec<f64>,
    /// The same with it.
    pub with_slow_per_s: Vec<f64>,
    /// The lowest ratio of the two over the seconds both ran.
    pub worst_ratio: Option<f64>,
}

/// What the churn scenario found.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ChurnStats {
    /// Completed connect-join-chat-leave visits.
    pub visits: u64,
    /// Visits per second.
    pub joins_per_s: f64,
    /// Server RSS came back to within the slack of its baseline.
    pub rss_returned: Option<bool>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")?;
        Ok(())
    }

    /// True when nothing was lost, reordered or failed.
    pub fn is_clean(&self) -> bool {
        self.loss == 0 && self.reordered == 0 && self.errors == 0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self
            .rate_per_room
            .map_or_else(|| "max".to_owned(), |r| format!("{r:.0} msg/s/room"));
        writeln!(
            f,
            "{} -> {}: {} rooms x {} users, {} senders/room, {} B payload, rate {rate}, window {} B ({} msgs), {:.1} s",
            self.scenario,
            self.target,
            self.rooms,
            self.users_per_room,
            self.senders_per_room,
            self.payload_bytes,
            self.window_bytes,
            self.window_msgs,
            self.duration_s
        )?;
        writeln!(
            f,
            "  setup: {} connections in {:.2} s ({:.0}/s)",
            self.connections, self.setup_s, self.connects_per_s
        )?;
        if self.sent > 0 || self.delivered > 0 {
            writeln!(
                f,
                "  delivered: {:.0} msgs/s ({} of {} sent x receivers), loss {}, reordered {}, unexpected {}, drained {}",
                self.delivered_per_s,
                self.delivered,
                self.sent,
                self.loss,
                self.reordered,
                self.unexpected,
                self.drained
            )?;
            let l = &self.latency;
            writeln!(
                f,
                "  latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count
            )?;
        }
        writeln!(
            f,
            "  cpu: server {}% of a core, {} ns/msg; generator {}% of a core, {} ns/msg",
            opt(self.cpu.server_pct().map(|p| format!("{p:.0}"))),
            opt(self.server_cpu_ns_per_msg.map(|n| format!("{n:.0}"))),
            opt(self.cpu.generator_pct().map(|p| format!("{p:.0}"))),
            opt(self.generator_cpu_ns_per_msg.map(|n| format!("{n:.0}"))),
        )?;
        if let Some(pct) = self.cpu.broker_pct() {
            writeln!(
                f,
                "  cpu: nats-server between the nodes {pct:.0}% of a core (not in the server figures)"
            )?;
        }
        if let Some(m) = &self.memory {
            writeln!(
                f,
                "  server rss: baseline {:.1} MiB, loaded {:.1} MiB, peak {:.1} MiB, end {:.1} MiB, {} B per connection",
                mib(m.baseline_bytes),
                mib(m.loaded_bytes),
                mib(m.peak_bytes),
                mib(m.end_bytes),
                opt(m.per_connection_bytes.map(|b| format!("{b:.0}")))
            )?;
        }
        if let Some(s) = &self.slow {
            writeln!(
                f,
                "  slow reader: dropped {} after {} s, rss growth {} MiB, others' worst second {}",
                s.dropped,
                opt(s.dropped_after_s.map(|t| format!("{t:.2}"))),
                opt(s.rss_growth_bytes.map(|b| format!("{:.1}", mib(b)))),
                opt(s
                    .worst_ratio
                    .map(|r| format!("{:.0}% of baseline", r * 100.0)))
            )?;
        }
        if let Some(c) = &self.churn {
            writeln!(
                f,
                "  churn: {} visits, {:.0} joins/s, rss back to baseline: {}",
                c.visits,
                c.joins_per_s,
                opt(c.rss_returned)
            )?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  errors: {} (first: {e})", self.errors)?;
        }
        Ok(())
    }
}
