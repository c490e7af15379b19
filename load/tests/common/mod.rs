//! Test plumbing: a real chatgate or nats-server on a loopback port, plans
//! small enough to finish in seconds.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use chatgate_load::launch::{self, Cluster, ServerProcess};
use chatgate_load::probe::Probe;
use chatgate_load::report::Report;
use chatgate_load::scenario::churn::ChurnPlan;
use chatgate_load::scenario::crowd::CrowdPlan;
use chatgate_load::scenario::fanout::FanoutPlan;
use chatgate_load::setup::Setup;
use chatgate_load::{Scheme, Target};

/// The chatgate binary: `CHATGATE_BIN`, or a debug build made once with the
/// cargo that builds these tests.
pub fn chatgate_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CHATGATE_BIN") {
            return PathBuf::from(bin);
        }
        let workspace = launch::workspace_root();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "chatgate", "--bin", "chatgate"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building chatgate failed: {status}");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace.join("target"), PathBuf::from);
        target.join("debug").join("chatgate")
    })
    .clone()
}

/// A chatgate on `127.0.0.1:0` with benchmark limits and `extra` flags.
pub fn start_chatgate(extra: &[&str]) -> (ServerProcess, Target, Probe) {
    start_chatgate_for(Scheme::Tcp, extra)
}

/// A chatgate like [`start_chatgate`] that also listens for `scheme` (TCP,
/// TLS, WebSocket or WebSocket over TLS) and is targeted through it.
pub fn start_chatgate_for(scheme: Scheme, extra: &[&str]) -> (ServerProcess, Target, Probe) {
    let (flag, kind) = match scheme {
        Scheme::Tcp => ("--tcp", "tcp"),
        Scheme::Tls => ("--tls", "tls"),
        Scheme::Ws => ("--http", "http"),
        Scheme::Wss => ("--https", "https"),
        Scheme::Nats => panic!("chatgate does not speak NATS"),
    };
    let bin = chatgate_bin();
    let mut args = chatgate_load::app::chatgate_args(&bin, flag);
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = launch::start_chatgate(&bin, &args, None).expect("chatgate starts");
    let addr = server.addr(kind).expect("the listener of the scheme");
    let target = Target::at(scheme, addr);
    let probe = Probe {
        server: Some(server.pid()),
        ..Probe::default()
    };
    (server, target, probe)
}

/// The installed nats-server, or `None` outside CI when there is none.
/// Under `CI=true` a missing nats-server fails the test.
pub fn nats_server_bin() -> Option<PathBuf> {
    let bin = launch::find_nats_server();
    if bin.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "nats-server is not installed (apt-get install nats-server); CI must run this test"
        );
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    bin
}

/// A nats-server on a free loopback port, or `None` outside CI when it is
/// not installed. Under `CI=true` a missing nats-server fails the test.
pub fn start_nats() -> Option<(ServerProcess, Target, Probe)> {
    let bin = nats_server_bin()?;
    let server = launch::start_nats(&bin, None).expect("nats-server starts");
    let target = Target::at(Scheme::Nats, server.addr("nats").expect("nats listener"));
    let probe = Probe {
        server: Some(server.pid()),
        ..Probe::default()
    };
    Some((server, target, probe))
}

/// A nats-server with JetStream and two chatgate nodes on it, with the
/// nodes' TCP targets (node `a` first) and a probe of all three; `None`
/// outside CI when nats-server is not installed.
pub fn start_cluster() -> Option<(Cluster, Vec<Target>, Probe)> {
    let nats = nats_server_bin()?;
    let bin = chatgate_bin();
    let args = chatgate_load::app::chatgate_args(&bin, "--tcp");
    let cluster = launch::start_cluster(&bin, &args, &nats, None).expect("the cluster starts");
    let targets = cluster
        .tcp_addrs()
        .into_iter()
        .map(|addr| Target::at(Scheme::Tcp, addr))
        .collect();
    let probe = chatgate_load::app::cluster_probe(&cluster);
    Some((cluster, targets, probe))
}

/// A short fan-out plan.
pub fn small_fanout(target: Target, rooms: usize, users: usize, rate: Option<f64>) -> FanoutPlan {
    FanoutPlan {
        crowd: CrowdPlan {
            target,
            peers: Vec::new(),
            rooms,
            users,
            senders: 1,
            payload: 48,
            room_rate: rate,
            window: 256,
            slow_reader: false,
            setup: Setup::default(),
        },
        duration: Duration::from_millis(800),
    }
}

/// A short churn plan: `workers` loops over two rooms, three messages a visit.
pub fn small_churn(target: Target, workers: usize, duration: Duration) -> ChurnPlan {
    ChurnPlan {
        target,
        workers,
        rooms: 2,
        messages: 3,
        payload: 40,
        duration,
        setup: Setup::default(),
    }
}

/// Asserts what every smoke run must show: messages went through, none lost,
/// none reordered, no errors.
pub fn assert_clean(report: &Report) {
    assert!(report.delivered > 0, "nothing delivered:\n{report}");
    assert_eq!(report.loss, 0, "loss:\n{report}");
    assert_eq!(report.reordered, 0, "reordering:\n{report}");
    assert_eq!(report.unexpected, 0, "unexpected lines:\n{report}");
    assert_eq!(report.errors, 0, "errors:\n{report}");
    assert!(report.drained, "not drained:\n{report}");
}
