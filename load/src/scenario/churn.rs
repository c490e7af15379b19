//! Churn: workers connect, join, chat briefly and leave, over and over.
//!
//! Each visit uses a fresh connection and a fresh user name, sends a few
//! stamped messages and waits for their echoes (a chat room echoes a line to
//! its sender; a NATS subscriber receives what its own connection
//! publishes) before leaving. Reported: visits (joins) per second, loss and
//! order of the echoes, and whether server memory returns to its baseline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::idle::SETTLE;
use super::sampler::{self, Sampler};
use crate::client::conn::Conn;
use crate::client::encode::Encoder;
use crate::client::inbox::Inbox;
use crate::client::names;
use crate::clock::now_nanos;
use crate::error::LoadError;
use crate::latency::{Latencies, Percentiles};
use crate::probe::{CpuUse, Probe};
use crate::report::{ChurnStats, Memory, Report};
use crate::setup::{Pacer, Setup};
use crate::stamp::Stamp;
use crate::tally::Tally;
use crate::target::Target;

/// Longest wait for a visit's own echoes: far beyond any healthy delivery.
pub const VISIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory the server may keep above its baseline after churn and still
/// count as returned: allocator caches and the room table's capacity.
pub const RSS_SLACK_BYTES: u64 = 1024 * 1024;

/// A churn run.
#[derive(Debug, Clone)]
pub struct ChurnPlan {
    /// Where.
    pub target: Target,
    /// Visits in progress at once.
    pub workers: usize,
    /// Rooms the workers spread over.
    pub rooms: usize,
    /// Messages sent per visit.
    pub messages: usize,
    /// Payload bytes per message.
    pub payload: usize,
    /// How long new visits start.
    pub duration: Duration,
    /// Connection pace.
    pub setup: Setup,
}

struct Ctx {
    plan: ChurnPlan,
    run: u32,
    pacer: Pacer,
    deadline: Instant,
    latencies: Arc<Latencies>,
    /// Echoes received by every worker so far, for the sampler.
    delivered: AtomicU64,
}

#[derive(Debug, Default)]
struct WorkerOutcome {
    visits: u64,
    sent: u64,
    delivered: u64,
    lost: u64,
    reordered: u64,
    unexpected: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs churn until `duration` has passed and the last visits have ended.
pub async fn run(plan: &ChurnPlan, probe: Probe) -> Result<Report, LoadError> {
    let baseline = probe.snapshot();
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        run: names::next_run(),
        pacer: Pacer::new(&plan.setup),
        deadline: Instant::now() + plan.duration,
        latencies: Latencies::new(),
        delivered: AtomicU64::new(0),
    });
    let counter = ctx.clone();
    let sampler = Sampler::start(probe, move || counter.delivered.load(Ordering::Relaxed));
    let workers: Vec<_> = (0..plan.workers.max(1))
        .map(|w| tokio::spawn(worker(ctx.clone(), w)))
        .collect();
    let mut total = WorkerOutcome::default();
    for task in workers {
        let w = task.await.map_err(|e| LoadError::Scenario(e.to_string()))?;
        total.visits += w.visits;
        total.sent += w.sent;
        total.delivered += w.delivered;
        total.lost += w.lost;
        total.reordered += w.reordered;
        total.unexpected += w.unexpected;
        total.errors += w.errors;
        total.first_error = total.first_error.or(w.first_error);
    }
    let after = probe.snapshot();
    let samples = sampler.stop().await;
    tokio::time::sleep(SETTLE).await;
    let end = probe.snapshot();
    let cpu = CpuUse::between(&baseline, &after);
    let memory = baseline
        .server_rss
        .zip(end.server_rss)
        .map(|(base, end_rss)| Memory {
            baseline_bytes: base,
            loaded_bytes: sampler::peak_rss(&samples).unwrap_or(end_rss),
            peak_bytes: sampler::peak_rss(&samples).unwrap_or(end_rss),
            end_bytes: end_rss,
            per_connection_bytes: None,
        });
    let rss_returned = memory
        .map(|m| m.end_bytes <= m.baseline_bytes + RSS_SLACK_BYTES.max(m.baseline_bytes / 20));
    Ok(Report {
        scenario: "churn".into(),
        target: plan.target.to_string(),
        rooms: plan.rooms,
        senders_per_room: plan.workers.div_ceil(plan.rooms.max(1)),
        payload_bytes: plan.payload,
        duration_s: cpu.wall_s,
        connections: total.visits as usize,
        setup_s: cpu.wall_s,
        connects_per_s: total.visits as f64 / cpu.wall_s.max(1e-9),
        sent: total.sent,
        delivered: total.delivered,
        delivered_per_s: total.delivered as f64 / cpu.wall_s.max(1e-9),
        loss: total.lost,
        reordered: total.reordered,
        unexpected: total.unexpected,
        errors: total.errors,
        first_error: total.first_error,
        drained: true,
        latency: Percentiles::of(&ctx.latencies.merged()),
        cpu,
        memory,
        samples,
        churn: Some(ChurnStats {
            visits: total.visits,
            joins_per_s: total.visits as f64 / cpu.wall_s.max(1e-9),
            rss_returned,
        }),
        ..Report::default()
    })
}

async fn worker(ctx: Arc<Ctx>, w: usize) -> WorkerOutcome {
    let mut out = WorkerOutcome::default();
    let mut visit = 0usize;
    while Instant::now() < ctx.deadline {
        let k = ctx.plan.messages as u64;
        match visit_once(&ctx, w, visit).await {
            Ok(tally) => {
                out.visits += 1;
                out.delivered += tally.delivered;
                out.lost += tally.lost(&[k]);
                out.reordered += tally.reordered();
                out.unexpected += tally.unexpected;
                out.errors += tally.errors;
                out.first_error = out.first_error.or(tally.first_error);
            }
            Err(e) => {
                out.errors += 1;
                out.lost += k;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        out.sent += k;
        visit += 1;
    }
    out
}

/// One connect, join, chat, leave.
async fn visit_once(ctx: &Ctx, w: usize, visit: usize) -> Result<Tally, LoadError> {
    let plan = &ctx.plan;
    let index = w + visit * plan.workers;
    let user = format!("c{w}x{visit}");
    let room = w % plan.rooms.max(1);
    let sender = w as u32;
    let tally = Tally::new(sender, 1, Some(ctx.latencies.recorder(w)));
    let mut conn = {
        let _permit = ctx.pacer.admit().await;
        let mut conn = Conn::open(
            &plan.target,
            index,
            &plan.setup.dial,
            Inbox::new(&user, tally),
        )
        .await?;
        let subject = names::subject(ctx.run, room);
        conn.enter(&names::room(ctx.run, room), &user, Some(&subject))
            .await?;
        conn
    };
    let encoder = if plan.target.scheme.is_nats() {
        Encoder::Nats {
            subject: names::subject(ctx.run, room),
        }
    } else {
        Encoder::Chat
    };
    let mut batch = Vec::new();
    let nanos = now_nanos();
    for seq in 0..plan.messages as u64 {
        encoder.message(&Stamp { sender, seq, nanos }, plan.payload, &mut batch);
    }
    conn.writer().lock().await.send(&batch).await?;
    let want = plan.messages as u64;
    let echoes = async {
        while conn.inbox.tally.delivered < want {
            let before = conn.inbox.tally.delivered;
            let open = conn.receive().await?;
            ctx.delivered
                .fetch_add(conn.inbox.tally.delivered - before, Ordering::Relaxed);
            if !open {
                return Err(LoadError::Closed);
            }
        }
        Ok(())
    };
    let waited = tokio::time::timeout(VISIT_TIMEOUT, echoes).await;
    conn.leave().await;
    conn.inbox.tally.flush();
    match waited {
        Ok(Ok(())) => Ok(conn.inbox.tally),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(LoadError::Timeout(format!("waiting for {user}'s echoes"))),
    }
}
