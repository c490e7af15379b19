//! Snapshots of the server's and the generator's resource use.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procstat;

/// Reads a server process (when its PID is known) and this process.
///
/// A cluster is read as one server: its second node's CPU and memory are
/// added to the first's, and the broker between them is read apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// The server's PID.
    pub server: Option<u32>,
    /// A second node of the same cluster, counted with `server`.
    pub peer: Option<u32>,
    /// The broker the nodes talk through (nats-server), reported apart.
    pub broker: Option<u32>,
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
    /// Broker CPU time so far.
    pub broker_cpu: Option<Duration>,
}

impl Probe {
    /// Takes a snapshot; unreadable values are `None`.
    pub fn snapshot(&self) -> Snapshot {
        let cpu = |pid: Option<u32>| procstat::cpu_time(pid?).ok();
        let rss = |pid: Option<u32>| procstat::rss_bytes(pid?).ok();
        Snapshot {
            at: Instant::now(),
            server_cpu: with_peer(cpu(self.server), self.peer.map(|p| cpu(Some(p)))),
            server_rss: with_peer(rss(self.server), self.peer.map(|p| rss(Some(p)))),
            own_cpu: procstat::own_cpu_time().ok(),
            broker_cpu: cpu(self.broker),
        }
    }
}

/// The server's figure plus its peer's when there is a peer; unknown when
/// either is unreadable, so a sum never silently drops a node.
fn with_peer<T: std::ops::Add<Output = T>>(
    server: Option<T>,
    peer: Option<Option<T>>,
) -> Option<T> {
    match peer {
        None => server,
        Some(peer) => Some(server? + peer?),
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
    /// Broker CPU seconds (cluster runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_s: Option<f64>,
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
            broker_s: delta(before.broker_cpu, after.broker_cpu),
        }
    }

    /// Server CPU as a percentage of one core.
    pub fn server_pct(&self) -> Option<f64> {
        Some(100.0 * self.server_s? / self.wall_s.max(1e-9))
    }

    /// Broker CPU as a percentage of one core.
    pub fn broker_pct(&self) -> Option<f64> {
        Some(100.0 * self.broker_s? / self.wall_s.max(1e-9))
    }

    /// Generator CPU as a percentage of one core.
    pub fn generator_pct(&self) -> Option<f64> {
        Some(100.0 * self.generator_s? / self.wall_s.max(1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_adds_to_the_server_or_makes_it_unknown() {
        assert_eq!(with_peer(Some(3), None), Some(3));
        assert_eq!(with_peer(Some(3), Some(Some(4))), Some(7));
        assert_eq!(with_peer(Some(3), Some(None)), None);
        assert_eq!(with_peer(None::<u64>, Some(Some(4))), None);
    }

    #[test]
    fn a_probe_of_two_processes_sums_them() {
        let me = std::process::id();
        let probe = Probe {
            server: Some(me),
            peer: Some(me),
            broker: Some(me),
        };
        let snap = probe.snapshot();
        let one = procstat::rss_bytes(me).unwrap();
        assert!(snap.server_rss.unwrap() >= one);
        assert!(snap.broker_cpu.is_some());
    }
}
