//! Snapshots of the server's and the generator's resource use.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procstat;

/// Reads a server process (when its PID is known) and this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// The server's PID.
    pub server: Option<u32>,
}

/// Resource use at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Instant,
    /// Server CPU time so far.
    pub server_cpu: Option<Duration>,
    /// Server resident memory.
    pub server_rss: Option<u64>,
    /// Generator CPU time so far.
    pub own_cpu: Option<Duration>,
}

impl Probe {
    /// Takes a snapshot; unreadable values are `None`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            server_cpu: self.server.and_then(|pid| procstat::cpu_time(pid).ok()),
            server_rss: self.server.and_then(|pid| procstat::rss_bytes(pid).ok()),
            own_cpu: procstat::own_cpu_time().ok(),
        }
    }
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// Wall-clock seconds between the snapshots.
    pub wall_s: f64,
    /// Server CPU seconds.
    pub server_s: Option<f64>,
    /// Generator CPU seconds.
    pub generator_s: Option<f64>,
}

impl CpuUse {
    /// The use between `before` and `after`.
    pub fn between(before: &Snapshot, after: &Snapshot) -> CpuUse {
        let delta =
            |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?).as_secs_f64());
        CpuUse {
            wall_s: after.at.duration_since(before.at).as_secs_f64(),
            server_s: delta(before.server_cpu, after.server_cpu),
            generator_s: delta(before.own_cpu, after.own_cpu),
        }
    }

    /// Server CPU as a percentage of one core.
    pub fn server_pct(&self) -> Option<f64> {
        Some(100.0 * self.server_s? / self.wall_s.max(1e-9))
    }

    /// Generator CPU as a percentage of one core.
    pub fn generator_pct(&self) -> Option<f64> {
        Some(100.0 * self.generator_s? / self.wall_s.max(1e-9))
    }
}
