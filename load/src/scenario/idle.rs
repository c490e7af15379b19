//! Idle: joined connections held open, to measure what the server pays for
//! each and how fast it admits them.

use std::time::Duration;

use super::crowd::{self, CrowdPlan};
use super::sampler::Sampler;
use crate::error::LoadError;
use crate::probe::{CpuUse, Probe};
use crate::report::{Memory, Report};
use crate::setup::Setup;
use crate::target::Target;

/// Pause after the last join before reading memory: lets the server finish
/// the join broadcasts and free their buffers.
pub const SETTLE: Duration = Duration::from_secs(1);

/// An idle run.
#[derive(Debug, Clone)]
pub struct IdlePlan {
    /// Where.
    pub target: Target,
    /// Connections to hold.
    pub connections: usize,
    /// Users per room: every join is announced to the whole room, so one
    /// room of 10,000 would cost 50 million join lines before any
    /// measurement.
    pub room_size: usize,
    /// How long to hold them after they have settled.
    pub hold: Duration,
    /// Connection pace.
    pub setup: Setup,
}

/// Runs an idle scenario.
pub async fn run(plan: &IdlePlan, probe: Probe) -> Result<Report, LoadError> {
    let room_size = plan.room_size.clamp(1, plan.connections.max(1));
    let rooms = plan.connections.div_ceil(room_size).max(1);
    let users = plan.connections / rooms;
    let crowd_plan = CrowdPlan {
        target: plan.target.clone(),
        peers: Vec::new(),
        rooms,
        users,
        senders: 0,
        payload: 0,
        room_rate: None,
        window: 1,
        slow_reader: false,
        setup: plan.setup,
    };
    let connections = crowd_plan.connections();
    let baseline = probe.snapshot();
    let crowd = crowd::assemble(crowd_plan).await?;
    tokio::time::sleep(SETTLE).await;
    let loaded = probe.snapshot();
    let sampler = Sampler::start(probe, || 0);
    tokio::time::sleep(plan.hold).await;
    let held = probe.snapshot();
    let setup_time = crowd.setup_time;
    let finished = crowd.finish().await;
    let samples = sampler.stop().await;
    tokio::time::sleep(SETTLE).await;
    let end = probe.snapshot();
    let (errors, first_error) = finished.errors();
    let memory = baseline
        .server_rss
        .zip(loaded.server_rss)
        .map(|(base, loaded)| Memory::of_run(base, loaded, &samples, end.server_rss, connections));
    Ok(Report {
        scenario: "idle".into(),
        target: plan.target.to_string(),
        rooms,
        users_per_room: users,
        duration_s: plan.hold.as_secs_f64(),
        connections,
        setup_s: setup_time.as_secs_f64(),
        connects_per_s: connections as f64 / setup_time.as_secs_f64().max(1e-9),
        errors,
        first_error,
        drained: finished.drained,
        cpu: CpuUse::between(&loaded, &held),
        memory,
        samples,
        ..Report::default()
    })
}
