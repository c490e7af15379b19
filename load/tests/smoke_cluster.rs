//! Fan-out over a cluster: a real nats-server with JetStream and two
//! chatgate nodes, a room's members alternating between them, the senders
//! on the first. Correctness only: zero loss, zero reordering. Never speed.

mod common;

use std::time::Duration;

use chatgate_load::scenario::fanout;
use common::{assert_clean, small_fanout, start_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fanout_at_max_rate_loses_and_reorders_nothing() {
    let Some((mut cluster, mut targets, probe)) = start_cluster() else {
        return;
    };
    let mut plan = small_fanout(targets.remove(0), 2, 5, None);
    plan.crowd.peers = targets;
    plan.crowd.senders = 2;
    plan.duration = Duration::from_millis(1000);
    let run = fanout::run(&plan, probe, "fanout").await.unwrap();
    cluster.stop();
    let report = &run.report;
    assert_clean(report);
    assert_eq!(report.delivered, report.sent * 5, "{report}");
    assert!(report.target.contains(" + "), "{}", report.target);
    assert!(report.cpu.server_s.is_some(), "both nodes are read");
    assert!(report.cpu.broker_s.is_some(), "nats-server is read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_latency_at_a_fixed_rate_measures_every_message() {
    let Some((mut cluster, mut targets, probe)) = start_cluster() else {
        return;
    };
    let mut plan = small_fanout(targets.remove(0), 1, 4, Some(200.0));
    plan.crowd.peers = targets;
    let report = fanout::run(&plan, probe, "latency").await.unwrap().report;
    cluster.stop();
    assert_clean(&report);
    assert_eq!(report.latency.count, report.delivered);
    assert_eq!(report.delivered, report.sent * 4, "{report}");
}
