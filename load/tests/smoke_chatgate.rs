//! One short run of every scenario against a real chatgate over TCP, and
//! fan-out over TLS, WebSocket and WebSocket over TLS. Correctness only:
//! zero loss, zero reordering. Never speed.

mod common;

use std::time::Duration;

use chatgate_load::Scheme;
use chatgate_load::scenario::churn;
use chatgate_load::scenario::idle::{self, IdlePlan};
use chatgate_load::scenario::{fanout, slow_reader};
use chatgate_load::setup::Setup;
use common::{assert_clean, small_churn, small_fanout, start_chatgate, start_chatgate_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_at_max_rate_loses_and_reorders_nothing() {
    let (mut server, target, probe) = start_chatgate(&[]);
    let mut plan = small_fanout(target, 2, 4, None);
    plan.crowd.senders = 2;
    let run = fanout::run(&plan, probe, "fanout").await.unwrap();
    server.stop();
    assert_clean(&run.report);
    assert_eq!(run.report.delivered, run.report.sent * 4);
    assert!(run.report.server_cpu_ns_per_msg.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_at_a_fixed_rate_measures_every_message() {
    let (mut server, target, probe) = start_chatgate(&[]);
    let plan = small_fanout(target, 1, 5, Some(200.0));
    let report = fanout::run(&plan, probe, "latency").await.unwrap().report;
    server.stop();
    assert_clean(&report);
    assert_eq!(report.latency.count, report.delivered);
    assert!(report.latency.p50_us <= report.latency.max_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_held_and_measured() {
    let (mut server, target, probe) = start_chatgate(&[]);
    let plan = IdlePlan {
        target,
        connections: 40,
        room_size: 8,
        hold: Duration::from_millis(200),
        setup: Setup::default(),
    };
    let report = idle::run(&plan, probe).await.unwrap();
    server.stop();
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.connections, 40);
    let memory = report.memory.expect("server memory is read");
    assert!(memory.per_connection_bytes.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_closed_and_others_lose_nothing() {
    let (mut server, target, probe) = start_chatgate(&["--max-queue-bytes", "65536"]);
    let mut plan = small_fanout(target, 1, 3, None);
    plan.duration = Duration::from_millis(1500);
    let report = slow_reader::run(&plan, probe).await.unwrap();
    server.stop();
    assert_clean(&report);
    let slow = report.slow.clone().expect("slow-reader figures");
    assert!(slow.closed_by_end, "{report}");
    assert!(!slow.baseline_per_s.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_visits_see_all_their_echoes_in_order() {
    let (mut server, target, probe) = start_chatgate(&[]);
    let plan = small_churn(target, 4, Duration::from_millis(800));
    let report = churn::run(&plan, probe).await.unwrap();
    server.stop();
    assert_eq!(
        (report.loss, report.reordered, report.errors),
        (0, 0, 0),
        "{report}"
    );
    let churn = report.churn.expect("churn figures");
    assert!(churn.visits > 0);
    assert_eq!(report.delivered, churn.visits * 3);
}

/// Fan-out at the maximum rate through `scheme`, for `duration`, with the
/// server's `extra` flags.
async fn fanout_through(scheme: Scheme, extra: &[&str], duration: Duration) {
    let (mut server, target, probe) = start_chatgate_for(scheme, extra);
    let mut plan = small_fanout(target, 2, 4, None);
    plan.crowd.senders = 2;
    plan.duration = duration;
    let run = fanout::run(&plan, probe, "fanout").await.unwrap();
    server.stop();
    assert_clean(&run.report);
    assert_eq!(run.report.delivered, run.report.sent * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_tls_loses_nothing() {
    fanout_through(Scheme::Tls, &[], Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_websocket_loses_nothing() {
    fanout_through(Scheme::Ws, &[], Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_websocket_with_tls_loses_nothing() {
    fanout_through(Scheme::Wss, &[], Duration::from_millis(800)).await;
}

/// The server pings every second and drops a client that has not answered
/// by the next ping: a run over three intervals needs every pong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_are_answered() {
    let extra = ["--ws-ping-interval", "1"];
    fanout_through(Scheme::Ws, &extra, Duration::from_millis(3200)).await;
}
