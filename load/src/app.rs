//! Runs one subcommand: resolves the server (given or spawned), turns the
//! arguments into a plan, runs it, prints and saves the report.

use std::time::Duration;

use crate::cli::{
    ChurnCommand, Command, IdleCommand, LoadCommand, ServerArgs, SpawnKind, Transport,
};
use crate::error::LoadError;
use crate::launch::{self, Cluster, ServerProcess, Spawned};
use crate::net::dial::Dial;
use crate::probe::Probe;
use crate::report::Report;
use crate::scenario::churn::{self, ChurnPlan};
use crate::scenario::crowd::CrowdPlan;
use crate::scenario::fanout::{self, FanoutPlan};
use crate::scenario::idle::{self, IdlePlan};
use crate::scenario::slow_reader;
use crate::setup::Setup;
use crate::target::{Scheme, Target};

/// The default in-flight window: 64 KiB of payload per room.
pub const DEFAULT_WINDOW_BYTES: u64 = 64 * 1024;

/// Defaults of a load subcommand where they differ by scenario.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    users: usize,
    rate: f64,
    duration: f64,
}

/// Fan-out and latency are one measurement with different defaults; the
/// label names the scenario in the report.
async fn run_fanout(
    c: LoadCommand,
    defaults: Defaults,
    label: &'static str,
) -> Result<Report, LoadError> {
    with_server(
        &c.server.clone(),
        |target, peers, probe, setup| async move {
            let plan = fanout_plan(&c, target, peers, setup, defaults);
            Ok(fanout::run(&plan, probe, label).await?.report)
        },
    )
    .await
}

/// Runs a scenario subcommand (not the suite) and returns its report.
pub async fn run(command: Command) -> Result<Report, LoadError> {
    match command {
        Command::Fanout(c) => {
            let defaults = Defaults {
                users: 100,
                rate: 0.0,
                duration: 5.0,
            };
            run_fanout(c, defaults, "fanout").await
        }
        Command::Latency(c) => {
            let defaults = Defaults {
                users: 100,
                rate: 1000.0,
                duration: 5.0,
            };
            run_fanout(c, defaults, "latency").await
        }
        Command::SlowReader(c) => {
            let defaults = Defaults {
                users: 10,
                rate: 0.0,
                duration: 5.0,
            };
            with_server(
                &c.server.clone(),
                |target, peers, probe, setup| async move {
                    let plan = fanout_plan(&c, target, peers, setup, defaults);
                    slow_reader::run(&plan, probe).await
                },
            )
            .await
        }
        Command::Idle(c) => {
            with_server(
                &c.server.clone(),
                |target, peers, probe, setup| async move {
                    single_node(&peers, "idle")?;
                    idle::run(&idle_plan(&c, target, setup), probe).await
                },
            )
            .await
        }
        Command::Churn(c) => {
            with_server(
                &c.server.clone(),
                |target, peers, probe, setup| async move {
                    single_node(&peers, "churn")?;
                    churn::run(&churn_plan(&c, target, setup), probe).await
                },
            )
            .await
        }
        Command::Suite(_) => Err(LoadError::Scenario(
            "the suite runs through suite::run".into(),
        )),
    }
}

/// Refuses the other nodes of a cluster in a scenario that uses one.
fn single_node(peers: &[Target], scenario: &str) -> Result<(), LoadError> {
    if peers.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Target(format!(
            "{scenario} takes one target; several are for the fan-out scenarios"
        )))
    }
}

/// Where a run goes and what it measures.
struct Resolved {
    target: Target,
    /// Further nodes of `target`'s cluster.
    peers: Vec<Target>,
    probe: Probe,
    spawned: Option<Spawned>,
}

/// Resolves the targets and probe, runs `scenario`, stops spawned servers,
/// prints the report and writes its JSON.
async fn with_server<F, Fut>(args: &ServerArgs, scenario: F) -> Result<Report, LoadError>
where
    F: FnOnce(Target, Vec<Target>, Probe, Setup) -> Fut,
    Fut: Future<Output = Result<Report, LoadError>>,
{
    let Resolved {
        mut target,
        mut peers,
        probe,
        mut spawned,
    } = resolve(args)?;
    if args.json_events {
        if !target.scheme.is_websocket() {
            return Err(LoadError::Target(
                "--json-events needs a ws:// or wss:// target (or --transport ws|wss)".into(),
            ));
        }
        for t in std::iter::once(&mut target).chain(peers.iter_mut()) {
            t.json = true;
        }
    }
    let setup = Setup {
        dial: Dial {
            sources: args.sources,
            recv_buffer: None,
        },
        concurrency: args.setup_concurrency,
        rate: (args.connect_rate > 0.0).then_some(args.connect_rate),
    };
    let result = scenario(target, peers, probe, setup).await;
    if let Some(server) = &mut spawned {
        server.stop();
    }
    let report = result?;
    print!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(report)
}

/// The targets, the probe, and the server processes if they were started.
fn resolve(args: &ServerArgs) -> Result<Resolved, LoadError> {
    if args.cluster {
        return resolve_cluster(args);
    }
    let one = |target, server: ServerProcess| Resolved {
        target,
        peers: Vec::new(),
        probe: Probe {
            server: Some(server.pid()),
            ..Probe::default()
        },
        spawned: Some(Spawned::Server(server)),
    };
    match args.spawn {
        None => {
            let mut targets = args
                .target
                .iter()
                .map(|url| url.parse::<Target>())
                .collect::<Result<Vec<_>, _>>()?;
            if targets.is_empty() {
                return Err(LoadError::Target("give --target or --spawn".into()));
            }
            if targets.len() > 1 && targets.iter().any(|t| t.scheme.is_nats()) {
                return Err(LoadError::Target(
                    "several targets are the nodes of one chatgate cluster, not nats://".into(),
                ));
            }
            let target = targets.remove(0);
            Ok(Resolved {
                target,
                peers: targets,
                probe: Probe {
                    server: args.server_pid,
                    ..Probe::default()
                },
                spawned: None,
            })
        }
        Some(SpawnKind::Nats) => {
            let bin = match &args.server_bin {
                Some(bin) => bin.clone(),
                None => nats_bin(None)?,
            };
            let server = launch::start_nats(&bin, args.server_core)?;
            let addr = server.addr("nats").expect("nats listener is known");
            Ok(one(Target::at(Scheme::Nats, addr), server))
        }
        Some(SpawnKind::Chatgate) => {
            let bin = chatgate_bin(args);
            let (kind, scheme, flag) = match args.transport {
                Transport::Tcp => ("tcp", Scheme::Tcp, "--tcp"),
                Transport::Tls => ("tls", Scheme::Tls, "--tls"),
                Transport::Ws => ("http", Scheme::Ws, "--http"),
                Transport::Wss => ("https", Scheme::Wss, "--https"),
            };
            let server =
                launch::start_chatgate(&bin, &spawn_args(args, &bin, flag), args.server_core)?;
            let addr = server
                .addr(kind)
                .ok_or_else(|| LoadError::Server(format!("chatgate has no {kind} listener")))?;
            Ok(one(Target::at(scheme, addr), server))
        }
    }
}

/// `--spawn chatgate --cluster`: nats-server with JetStream and two nodes.
fn resolve_cluster(args: &ServerArgs) -> Result<Resolved, LoadError> {
    if args.spawn != Some(SpawnKind::Chatgate) || args.transport != Transport::Tcp {
        return Err(LoadError::Target(
            "--cluster runs with --spawn chatgate --transport tcp".into(),
        ));
    }
    let bin = chatgate_bin(args);
    let nats = nats_bin(args.nats_bin.as_deref())?;
    let cluster = launch::start_cluster(
        &bin,
        &spawn_args(args, &bin, "--tcp"),
        &nats,
        args.server_core,
    )?;
    let mut targets = cluster
        .tcp_addrs()
        .into_iter()
        .map(|addr| Target::at(Scheme::Tcp, addr));
    let target = targets.next().expect("a cluster has nodes");
    let probe = cluster_probe(&cluster);
    Ok(Resolved {
        target,
        peers: targets.collect(),
        probe,
        spawned: Some(Spawned::Cluster(cluster)),
    })
}

/// A probe of a cluster: its two nodes as the server, nats-server apart.
pub fn cluster_probe(cluster: &Cluster) -> Probe {
    Probe {
        server: cluster.nodes.first().map(ServerProcess::pid),
        peer: cluster.nodes.get(1).map(ServerProcess::pid),
        broker: Some(cluster.nats.pid()),
    }
}

/// `--server-bin`, or the release build of this workspace.
fn chatgate_bin(args: &ServerArgs) -> std::path::PathBuf {
    args.server_bin
        .clone()
        .unwrap_or_else(|| launch::release_binary(&launch::workspace_root()))
}

/// The given nats-server, or the installed one.
fn nats_bin(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, LoadError> {
    match given {
        Some(bin) => Ok(bin.to_path_buf()),
        None => launch::find_nats_server().ok_or_else(|| {
            LoadError::Server("nats-server not found: apt-get install nats-server".into())
        }),
    }
}

/// [`chatgate_args`] and then the user's `--server-arg`s.
fn spawn_args(args: &ServerArgs, bin: &std::path::Path, wanted: &str) -> Vec<String> {
    let mut all = chatgate_args(bin, wanted);
    all.extend(args.server_args.iter().cloned());
    all
}

/// chatgate's benchmark flags: every listener it has on loopback port 0,
/// no rate or per-address limit (all load comes from one host).
pub fn chatgate_args(bin: &std::path::Path, wanted: &str) -> Vec<String> {
    let mut args: Vec<String> = ["--rate", "0", "--max-per-ip", "0"]
        .map(String::from)
        .into();
    for flag in ["--tcp", "--tls", "--http", "--https"] {
        if flag == "--tcp" || flag == wanted || launch::chatgate_has_flag(bin, flag) {
            let value = if flag == "--tcp" || flag == wanted {
                "127.0.0.1:0"
            } else {
                "off"
            };
            args.extend([flag.to_owned(), value.to_owned()]);
        }
    }
    args
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn fanout_plan(
    c: &LoadCommand,
    target: Target,
    peers: Vec<Target>,
    setup: Setup,
    d: Defaults,
) -> FanoutPlan {
    let payload = c.payload.unwrap_or(64).max(1);
    let window_bytes = c.window.unwrap_or(DEFAULT_WINDOW_BYTES);
    let rate = c.rate.unwrap_or(d.rate);
    FanoutPlan {
        crowd: CrowdPlan {
            target,
            peers,
            rooms: c.rooms.unwrap_or(1).max(1),
            users: c.users.unwrap_or(d.users).max(1),
            senders: c.senders.unwrap_or(1).max(1),
            payload,
            room_rate: (rate > 0.0).then_some(rate),
            window: (window_bytes / payload as u64).max(1),
            slow_reader: false,
            setup,
        },
        duration: secs(c.duration.unwrap_or(d.duration)),
    }
}

fn idle_plan(c: &IdleCommand, target: Target, setup: Setup) -> IdlePlan {
    IdlePlan {
        target,
        connections: c.connections.max(1),
        room_size: c.room_size,
        hold: secs(c.hold),
        setup,
    }
}

fn churn_plan(c: &ChurnCommand, target: Target, setup: Setup) -> ChurnPlan {
    ChurnPlan {
        target,
        workers: c.workers.max(1),
        rooms: c.rooms.max(1),
        messages: c.messages.max(1),
        payload: c.payload,
        duration: secs(c.duration),
        setup,
    }
}
