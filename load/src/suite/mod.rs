//! The benchmark suite: every scenario against chatgate and nats-server,
//! several runs each, written up as `BENCHMARKS.md` with SVG plots.
//!
//! The suite builds chatgate in release mode, pins itself to the generator
//! core and each server to the server core, and starts a fresh server for
//! every run, so memory figures start from a clean baseline. Servers are
//! stopped by PID after each run. Plugin rows load plugins that
//! `plugins/build` made (the suite fails before its first row without
//! them), and `chatgate check-plugin` times their hooks after the rows.
//!
//! | module | owns |
//! |---|---|
//! | [`plan`] | the rows: scenarios, sizes, servers |
//! | [`plugins`] | the plugins of the plugin rows, and their time per hook call |
//! | [`stats`] | medians and ranges |
//! | [`machine`] | the machine and versions for the header |
//! | [`markdown`] | `BENCHMARKS.md` and its target verdicts |
//! | [`plot`] | the SVG plots |

pub mod machine;
pub mod markdown;
pub mod plan;
pub mod plot;
pub mod plugins;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::app::{chatgate_args, cluster_probe};
use crate::cli::{SuiteCommand, Transport};
use crate::error::LoadError;
use crate::launch::{self, ServerProcess, Spawned};
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
use plan::{PAYLOAD, RowPlan, Server, Shape, WINDOW_BYTES, Work};
use plugins::{HOOK_CALLS, PluginCheck, PluginDir, SuitePlugin};

/// Source addresses the suite spreads connections over: 10,000 idle
/// connections fit one address, but several keep `TIME_WAIT` from piling up
/// on one across runs.
pub const SOURCES: u32 = 8;

/// Seconds idle connections are held after settling.
const IDLE_HOLD: Duration = Duration::from_secs(2);

/// Pause between runs so the previous server's sockets are gone.
const BETWEEN_RUNS: Duration = Duration::from_millis(500);

/// Pins this process and all its threads to `core` with `taskset`.
pub fn pin_self(core: usize) -> Result<(), LoadError> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-cp",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(LoadError::Server(format!("taskset: {status}")))
    }
}

/// The binaries under test.
#[derive(Debug)]
pub struct Binaries {
    /// chatgate, release build.
    pub chatgate: PathBuf,
    /// nats-server.
    pub nats: PathBuf,
    /// The plugins' copies with their settings, when plugin rows run.
    pub plugins: Option<PluginDir>,
}

/// All runs of one row.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// The row's name.
    pub id: String,
    /// Its server's label.
    pub server: String,
    /// The CLI command that runs it once.
    pub command: String,
    /// One report per successful run.
    pub reports: Vec<Report>,
    /// Why other runs failed.
    pub errors: Vec<String>,
    /// The plan, for the writers.
    #[serde(skip)]
    pub plan: Option<RowPlan>,
}

/// Runs the suite and writes its report.
pub async fn run(args: &SuiteCommand) -> Result<(), LoadError> {
    let workspace = launch::workspace_root();
    // Before building or running anything: a missing plugin fails the
    // suite, not its rows. The plugin rows are over TCP, which every
    // chatgate has, so the transports do not change which are selected.
    let only = args.only.as_deref();
    let wanted = plan::plugins_of(&plan::select(
        plan::rows(&[Transport::Tcp], args.quick),
        only,
    ));
    let plugins = if wanted.is_empty() {
        None
    } else {
        Some(PluginDir::prepare(&workspace, &wanted)?)
    };
    let chatgate = match &args.chatgate_bin {
        Some(bin) => bin.clone(),
        None => launch::build_chatgate_release(&workspace)?,
    };
    let nats = match &args.nats_bin {
        Some(bin) => bin.clone(),
        None => launch::find_nats_server().ok_or_else(|| {
            LoadError::Server("nats-server not found: apt-get install -y nats-server".into())
        })?,
    };
    let transports = transports_of(&chatgate);
    let rows = plan::select(plan::rows(&transports, args.quick), only);
    debug_assert_eq!(plan::plugins_of(&rows), wanted);
    let bins = Binaries {
        chatgate,
        nats,
        plugins,
    };
    let machine = machine::describe(&workspace, &bins.nats);
    let total = rows.len() * args.runs;
    let mut results = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let mut result = RowResult {
            id: row.id.clone(),
            server: row.server.label().to_owned(),
            command: row.command(args.duration, args.server_core),
            reports: Vec::new(),
            errors: Vec::new(),
            plan: Some(row.clone()),
        };
        for n in 0..args.runs {
            eprint!(
                "[{}/{total}] {} on {} run {}: ",
                i * args.runs + n + 1,
                row.id,
                row.server.label(),
                n + 1
            );
            match run_once(row, &bins, args).await {
                Ok(report) => {
                    eprintln!("{}", one_line(&report));
                    result.reports.push(report);
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    result.errors.push(e.to_string());
                }
            }
            tokio::time::sleep(BETWEEN_RUNS).await;
        }
        results.push(result);
    }
    let checks = check_plugins(&wanted, &bins, args).await;
    write_outputs(args, &machine, &results, &checks)
}

/// Times every hook of each plugin with `chatgate check-plugin`, on the
/// server core, once per run.
async fn check_plugins(
    wanted: &[SuitePlugin],
    bins: &Binaries,
    args: &SuiteCommand,
) -> Vec<PluginCheck> {
    let Some(dir) = &bins.plugins else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    for &plugin in wanted {
        let mut check = PluginCheck {
            plugin,
            command: plugins::check_command(plugin, args.server_core),
            runs: Vec::new(),
            errors: Vec::new(),
        };
        for n in 0..args.runs {
            eprint!("[check-plugin] {} run {}: ", plugin.name(), n + 1);
            let run = plugins::check_plugin(
                &bins.chatgate,
                &dir.path(plugin),
                HOOK_CALLS,
                Some(args.server_core),
            )
            .await;
            match run {
                Ok(hooks) => {
                    let line: Vec<String> = hooks
                        .iter()
                        .map(|h| {
                            if h.asked {
                                format!("{} {}/{} ns", h.hook, h.median_ns, h.p99_ns)
                            } else {
                                format!("{} not asked for", h.hook)
                            }
                        })
                        .collect();
                    eprintln!("median/p99 {}", line.join(", "));
                    check.runs.push(hooks);
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    check.errors.push(e.to_string());
                }
            }
        }
        checks.push(check);
    }
    checks
}

/// A hand-written section in the assets directory that every report ends
/// with, if it exists.
const ANALYSIS: &str = "analysis.md";

/// Writes the Markdown, the plots and the raw JSON.
fn write_outputs(
    args: &SuiteCommand,
    machine: &machine::Machine,
    results: &[RowResult],
    checks: &[PluginCheck],
) -> Result<(), LoadError> {
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let assets = out_dir.join(&args.assets);
    std::fs::create_dir_all(&assets)?;
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    std::fs::write(assets.join("results.json"), json + "\n")?;
    let plots = plot::draw_all(&assets, results)?;
    let plots: Vec<(String, PathBuf)> = plots
        .into_iter()
        .map(|(title, path)| (title, args.assets.join(path)))
        .collect();
    let mut md = markdown::render(machine, args, results, checks, &plots);
    // The analysis of missed targets is written by hand (it rests on
    // profiles, not on these numbers alone) and kept across runs.
    if let Ok(analysis) = std::fs::read_to_string(assets.join(ANALYSIS)) {
        md.push('\n');
        md.push_str(&analysis);
    }
    std::fs::write(&args.out, md)?;
    eprintln!("wrote {} and {}", args.out.display(), assets.display());
    Ok(())
}

/// The chatgate transports the binary offers.
fn transports_of(chatgate: &Path) -> Vec<Transport> {
    let mut transports = vec![Transport::Tcp];
    for (flag, transport) in [
        ("--tls", Transport::Tls),
        ("--http", Transport::Ws),
        ("--https", Transport::Wss),
    ] {
        if launch::chatgate_has_flag(chatgate, flag) {
            transports.push(transport);
        }
    }
    transports
}

/// What a run was given: the servers, where to send, what to read.
struct Started {
    spawned: Spawned,
    target: Target,
    /// Further nodes of a cluster.
    peers: Vec<Target>,
    probe: Probe,
}

impl Started {
    fn one(process: ServerProcess, target: Target) -> Started {
        Started {
            probe: Probe {
                server: Some(process.pid()),
                ..Probe::default()
            },
            spawned: Spawned::Server(process),
            target,
            peers: Vec::new(),
        }
    }
}

/// Starts the row's servers pinned to the server core.
fn start(server: Server, bins: &Binaries, core: usize) -> Result<Started, LoadError> {
    match server {
        Server::Nats => {
            let process = launch::start_nats(&bins.nats, Some(core))?;
            let target = Target::at(
                Scheme::Nats,
                process.addr("nats").expect("nats listener is known"),
            );
            Ok(Started::one(process, target))
        }
        Server::Cluster => {
            let args = chatgate_args(&bins.chatgate, "--tcp");
            let cluster = launch::start_cluster(&bins.chatgate, &args, &bins.nats, Some(core))?;
            let mut targets = cluster
                .tcp_addrs()
                .into_iter()
                .map(|addr| Target::at(Scheme::Tcp, addr));
            let target = targets.next().expect("a cluster has nodes");
            Ok(Started {
                probe: cluster_probe(&cluster),
                peers: targets.collect(),
                target,
                spawned: Spawned::Cluster(cluster),
            })
        }
        Server::HistoryOff => {
            let mut args = chatgate_args(&bins.chatgate, "--tcp");
            args.extend(["--history".to_owned(), "0".to_owned()]);
            let process = launch::start_chatgate(&bins.chatgate, &args, Some(core))?;
            let addr = process
                .addr("tcp")
                .ok_or_else(|| LoadError::Server("chatgate printed no tcp listener".into()))?;
            Ok(Started::one(process, Target::at(Scheme::Tcp, addr)))
        }
        Server::Plugin(plugin) => {
            let dir = bins
                .plugins
                .as_ref()
                .ok_or_else(|| LoadError::Server("the plugins were not prepared".into()))?;
            let mut args = chatgate_args(&bins.chatgate, "--tcp");
            args.push("--plugin".to_owned());
            args.push(dir.path(plugin).to_string_lossy().into_owned());
            args.push("--state-dir".to_owned());
            args.push(dir.state_dir().to_string_lossy().into_owned());
            let process = launch::start_chatgate(&bins.chatgate, &args, Some(core))?;
            let addr = process
                .addr("tcp")
                .ok_or_else(|| LoadError::Server("chatgate printed no tcp listener".into()))?;
            Ok(Started::one(process, Target::at(Scheme::Tcp, addr)))
        }
        Server::JsonEvents => {
            let mut started = start(Server::Chatgate(Transport::Ws), bins, core)?;
            started.target.json = true;
            Ok(started)
        }
        Server::Chatgate(transport) => {
            let (flag, kind, scheme) = match transport {
                Transport::Tcp => ("--tcp", "tcp", Scheme::Tcp),
                Transport::Tls => ("--tls", "tls", Scheme::Tls),
                Transport::Ws => ("--http", "http", Scheme::Ws),
                Transport::Wss => ("--https", "https", Scheme::Wss),
            };
            let args = chatgate_args(&bins.chatgate, flag);
            let process = launch::start_chatgate(&bins.chatgate, &args, Some(core))?;
            let addr = process
                .addr(kind)
                .ok_or_else(|| LoadError::Server(format!("chatgate printed no {kind} listener")))?;
            Ok(Started::one(process, Target::at(scheme, addr)))
        }
    }
}

/// One run of one row on a fresh server.
async fn run_once(
    row: &RowPlan,
    bins: &Binaries,
    args: &SuiteCommand,
) -> Result<Report, LoadError> {
    let Started {
        mut spawned,
        target,
        peers,
        probe,
    } = start(row.server, bins, args.server_core)?;
    let setup = Setup {
        dial: Dial {
            sources: SOURCES,
            recv_buffer: None,
        },
        ..Setup::default()
    };
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let fanout_plan = |shape: &Shape| FanoutPlan {
        crowd: CrowdPlan {
            target: target.clone(),
            peers: peers.clone(),
            rooms: shape.rooms,
            users: shape.users,
            senders: shape.senders,
            payload: PAYLOAD,
            room_rate: shape.rate,
            window: (WINDOW_BYTES / PAYLOAD as u64).max(1),
            slow_reader: false,
            setup,
        },
        duration,
    };
    let result = match &row.work {
        Work::Fanout(shape) => {
            let scenario = if shape.rate.is_some() {
                "latency"
            } else {
                "fanout"
            };
            fanout::run(&fanout_plan(shape), probe, scenario)
                .await
                .map(|run| run.report)
        }
        Work::SlowReader(shape) => slow_reader::run(&fanout_plan(shape), probe).await,
        Work::Idle {
            connections,
            room_size,
        } => {
            let plan = IdlePlan {
                target: target.clone(),
                connections: *connections,
                room_size: *room_size,
                hold: IDLE_HOLD,
                setup,
            };
            idle::run(&plan, probe).await
        }
        Work::Churn {
            workers,
            rooms,
            messages,
        } => {
            let plan = ChurnPlan {
                target: target.clone(),
                workers: *workers,
                rooms: *rooms,
                messages: *messages,
                payload: PAYLOAD,
                duration,
                setup,
            };
            churn::run(&plan, probe).await
        }
    };
    spawned.stop();
    result
}

/// A progress line.
fn one_line(r: &Report) -> String {
    let generator = r
        .cpu
        .generator_pct()
        .map_or_else(|| "-".into(), |p| format!("{p:.0}%"));
    let srv = r
        .server_cpu_ns_per_msg
        .map_or_else(|| "-".into(), |n| format!("{n:.0} ns/msg"));
    let rss = r
        .memory
        .and_then(|m| m.per_connection_bytes)
        .map_or_else(|| "-".into(), |b| format!("{:.1} KiB/conn", b / 1024.0));
    let broker = r
        .cpu
        .broker_pct()
        .map_or_else(String::new, |p| format!(", nats-server {p:.0}%"));
    format!(
        "{:.0} msgs/s, server {srv}, p99 {:.0} us, loss {}, reordered {}, errors {}, generator {generator}{broker}, {rss}",
        r.delivered_per_s, r.latency.p99_us, r.loss, r.reordered, r.errors
    )
}
