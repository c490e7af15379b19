//! Slow reader: one member of room 0 never reads while the others blast.
//!
//! The same fan-out runs twice, first without the slow member (the
//! baseline), then with it. Reported: whether and when the server dropped
//! it, the server's RSS growth, and the others' delivered rate second by
//! second against the baseline. The slow member is outside the window, or
//! it would stop the senders; its missing messages are not loss.

use super::fanout::{self, FanoutPlan};
use super::sampler::{self, per_second};
use crate::error::LoadError;
use crate::probe::Probe;
use crate::report::{Report, SlowStats};

/// Runs the baseline and the slow run; returns the slow run's report with
/// the comparison.
pub async fn run(plan: &FanoutPlan, probe: Probe) -> Result<Report, LoadError> {
    let mut without = plan.clone();
    without.crowd.slow_reader = false;
    let baseline = fanout::run(&without, probe, "slow-reader-baseline").await?;
    let mut with = plan.clone();
    with.crowd.slow_reader = true;
    let rss_before = probe.snapshot().server_rss;
    let slow = fanout::run(&with, probe, "slow-reader").await?;

    let baseline_per_s = per_second(&baseline.report.samples);
    let with_slow_per_s = per_second(&slow.report.samples);
    let worst_ratio = baseline_per_s
        .iter()
        .zip(&with_slow_per_s)
        .filter(|(base, _)| **base > 0.0)
        .map(|(base, with)| with / base)
        .reduce(f64::min);
    let outcome = slow.finished.slow.clone().unwrap_or_default();
    let dropped_after_s = slow
        .slow_left_at
        .map(|at| at.saturating_sub(slow.started_at) as f64 / 1e9);
    let rss_growth_bytes = rss_before
        .zip(sampler::peak_rss(&slow.report.samples))
        .map(|(before, peak)| peak.saturating_sub(before));
    let mut report = slow.report;
    // The slow member's own errors are the expected outcome, not a fault.
    report.slow = Some(SlowStats {
        // On chat the room's `has left` line is the evidence; NATS says
        // nothing to the others, so there the closed connection is.
        dropped: if plan.crowd.target.scheme.is_nats() {
            outcome.closed
        } else {
            dropped_after_s.is_some()
        },
        closed_by_end: outcome.closed,
        dropped_after_s,
        error: outcome.error,
        rss_growth_bytes,
        baseline_per_s,
        with_slow_per_s,
        worst_ratio,
    });
    Ok(report)
}
