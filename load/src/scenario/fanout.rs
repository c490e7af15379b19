//! Fan-out: senders publish into rooms and every member receives.
//!
//! The measured phase starts once every user has entered its room and lasts
//! `duration`; delivered msgs/s and CPU per message are taken over exactly
//! that phase. Loss, reordering and latency cover every message, including
//! those drained after the senders stop.

use std::time::Duration;

use super::crowd::{self, CrowdPlan, Finished};
use super::sampler::Sampler;
use crate::clock::now_nanos;
use crate::error::LoadError;
use crate::latency::Percentiles;
use crate::probe::{CpuUse, Probe};
use crate::report::{Memory, Report};

/// A fan-out run.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    /// Who connects and sends.
    pub crowd: CrowdPlan,
    /// Length of the measured phase.
    pub duration: Duration,
}

/// What a fan-out run yields besides its report, for scenarios built on it.
#[derive(Debug)]
pub struct FanoutRun {
    /// The report.
    pub report: Report,
    /// Generator clock when the senders were released.
    pub started_at: u64,
    /// When room 0 saw the slow reader leave (generator clock).
    pub slow_left_at: Option<u64>,
    /// What the receivers counted.
    pub finished: Finished,
}

/// Runs a fan-out and reports it as `scenario`.
pub async fn run(plan: &FanoutPlan, probe: Probe, scenario: &str) -> Result<FanoutRun, LoadError> {
    let baseline = probe.snapshot();
    let crowd = crowd::assemble(plan.crowd.clone()).await?;
    let loaded = probe.snapshot();
    let flows = crowd.flows.clone();
    let sampler = Sampler::start(probe, move || crowd::delivered(&flows));
    let before = probe.snapshot();
    let started_at = now_nanos();
    crowd.start();
    tokio::time::sleep(plan.duration).await;
    let delivered_in_phase = crowd.delivered_now();
    let after = probe.snapshot();
    let latencies = crowd.latencies.clone();
    let watch = crowd.watch.clone();
    let setup_time = crowd.setup_time;
    let finished = crowd.finish().await;
    let samples = sampler.stop().await;
    let end = probe.snapshot();

    let c = &plan.crowd;
    let cpu = CpuUse::between(&before, &after);
    let per_msg = |secs: Option<f64>| {
        let secs = secs?;
        (delivered_in_phase > 0).then(|| secs * 1e9 / delivered_in_phase as f64)
    };
    let (errors, first_error) = finished.errors();
    let connections = c.connections();
    let memory = baseline
        .server_rss
        .zip(loaded.server_rss)
        .map(|(base, loaded)| Memory::of_run(base, loaded, &samples, end.server_rss, connections));
    let report = Report {
        scenario: scenario.to_owned(),
        target: c.targets(),
        rooms: c.rooms,
        users_per_room: c.users,
        senders_per_room: c.senders,
        payload_bytes: c.payload,
        rate_per_room: c.room_rate,
        window_bytes: c.window * c.payload as u64,
        window_msgs: c.window,
        duration_s: cpu.wall_s,
        connections,
        setup_s: setup_time.as_secs_f64(),
        connects_per_s: connections as f64 / setup_time.as_secs_f64().max(1e-9),
        sent: finished.sent.iter().sum(),
        delivered: finished.delivered(),
        delivered_per_s: delivered_in_phase as f64 / cpu.wall_s.max(1e-9),
        loss: finished.lost(c.senders),
        reordered: finished.reordered(),
        unexpected: finished.unexpected(),
        errors,
        first_error,
        drained: finished.drained,
        latency: Percentiles::of(&latencies.merged()),
        cpu,
        server_cpu_ns_per_msg: per_msg(cpu.server_s),
        generator_cpu_ns_per_msg: per_msg(cpu.generator_s),
        memory,
        samples,
        slow: None,
        churn: None,
    };
    Ok(FanoutRun {
        report,
        started_at,
        slow_left_at: watch.and_then(|w| w.seen_at()),
        finished,
    })
}
