//! Short runs against a real nats-server. Under `CI=true` a missing
//! nats-server fails; elsewhere these tests say they skipped.

mod common;

use std::time::Duration;

use chatgate_load::scenario::churn;
use chatgate_load::scenario::fanout;
use common::{assert_clean, small_churn, small_fanout, start_nats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_fanout_loses_and_reorders_nothing() {
    let Some((mut server, target, probe)) = start_nats() else {
        return;
    };
    let mut plan = small_fanout(target, 2, 4, None);
    plan.crowd.senders = 2;
    let report = fanout::run(&plan, probe, "fanout").await.unwrap().report;
    server.stop();
    assert_clean(&report);
    assert_eq!(report.delivered, report.sent * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_churn_sees_its_own_messages() {
    let Some((mut server, target, probe)) = start_nats() else {
        return;
    };
    let plan = small_churn(target, 3, Duration::from_millis(500));
    let report = churn::run(&plan, probe).await.unwrap();
    server.stop();
    assert_eq!(
        (report.loss, report.reordered, report.errors),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.churn.expect("churn figures").visits > 0);
}
