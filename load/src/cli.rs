//! The command line: one subcommand per scenario, and the suite.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for chatgate and nats-server: fan-out, latency, idle
/// memory, slow readers and churn, over TCP, TLS, WebSocket or NATS.
#[derive(Debug, Parser)]
#[command(name = "chatgate-load", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads [default: the cores this process may run on]
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// R rooms x U users, S senders per room, at a given or max rate
    Fanout(LoadCommand),
    /// Fan-out at a fixed low rate, for latency percentiles
    Latency(LoadCommand),
    /// C joined connections held open: server memory per connection
    Idle(IdleCommand),
    /// One member never reads while the others blast
    SlowReader(LoadCommand),
    /// Connect, join, chat and leave in a loop
    Churn(ChurnCommand),
    /// Every scenario against chatgate and nats-server; writes BENCHMARKS.md
    Suite(SuiteCommand),
}

/// Which server `--spawn` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SpawnKind {
    /// chatgate (release build by default)
    Chatgate,
    /// nats-server
    Nats,
}

/// A chatgate transport for `--spawn chatgate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Plain TCP
    Tcp,
    /// TLS
    Tls,
    /// WebSocket
    Ws,
    /// WebSocket over TLS
    Wss,
}

/// Where the load goes and what is measured.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Target: tcp://H:P, tls://H:P, ws://H:P/ws, wss://H:P/ws or nats://H:P.
    /// Repeat it for the nodes of one chatgate cluster (fan-out scenarios):
    /// a room's users alternate between them, its senders on the first
    #[arg(long, short, required_unless_present = "spawn")]
    pub target: Vec<String>,

    /// Start this server on loopback, measure it, stop it
    #[arg(long, value_enum, conflicts_with = "target")]
    pub spawn: Option<SpawnKind>,

    /// With --spawn chatgate: start nats-server with JetStream and two
    /// chatgate nodes joined through it (TCP); a room's users alternate
    /// between the nodes, its senders on the first. Server CPU and memory
    /// are both nodes'; nats-server's CPU is reported apart
    #[arg(long, requires = "spawn")]
    pub cluster: bool,

    /// nats-server binary for --cluster [default: nats-server on PATH or /usr/sbin]
    #[arg(long, requires = "cluster")]
    pub nats_bin: Option<PathBuf>,

    /// Transport for --spawn chatgate
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,

    /// Over WebSocket: ask chatgate for JSON events (subprotocol
    /// chatgate.v2.json) instead of lines
    #[arg(long)]
    pub json_events: bool,

    /// Server binary for --spawn [default: target/release/chatgate or nats-server]
    #[arg(long)]
    pub server_bin: Option<PathBuf>,

    /// One more argument for a spawned chatgate, after the generator's own
    /// (repeatable; e.g. --server-arg=--history --server-arg=0)
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,

    /// Pin a spawned server to this core
    #[arg(long)]
    pub server_core: Option<usize>,

    /// PID of the server at --target, for its CPU and memory
    #[arg(long, conflicts_with = "spawn")]
    pub server_pid: Option<u32>,

    /// Also write the report as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Spread connections over this many source addresses in 127.0.0.0/8 (0: one)
    #[arg(long, default_value_t = 0)]
    pub sources: u32,

    /// Connections connecting and joining at once
    #[arg(long, default_value_t = crate::setup::DEFAULT_CONCURRENCY)]
    pub setup_concurrency: usize,

    /// Most new connections per second (0: no limit)
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
}

/// Rooms, users, senders and rate.
#[derive(Debug, Clone, Args)]
pub struct LoadCommand {
    /// Server and measurement.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Rooms (NATS subjects)
    #[arg(long, short = 'r')]
    pub rooms: Option<usize>,

    /// Receiving users per room
    #[arg(long, short = 'u')]
    pub users: Option<usize>,

    /// Senders per room
    #[arg(long, short = 's')]
    pub senders: Option<usize>,

    /// Payload bytes per message (at least the stamp, about 30)
    #[arg(long, short = 'p')]
    pub payload: Option<usize>,

    /// Messages per second into each room (0: as fast as the window allows)
    #[arg(long)]
    pub rate: Option<f64>,

    /// In-flight window per room: bytes of payload not yet received by its slowest member
    #[arg(long)]
    pub window: Option<u64>,

    /// Seconds of measured sending
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
}

/// Idle connections.
#[derive(Debug, Clone, Args)]
pub struct IdleCommand {
    /// Server and measurement.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Connections to hold
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub connections: usize,

    /// Users per room (joins are announced to the whole room)
    #[arg(long, default_value_t = 100)]
    pub room_size: usize,

    /// Seconds to hold them once settled
    #[arg(long, default_value_t = 2.0)]
    pub hold: f64,
}

/// Churn.
#[derive(Debug, Clone, Args)]
pub struct ChurnCommand {
    /// Server and measurement.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Visits in progress at once
    #[arg(long, short = 'w', default_value_t = 50)]
    pub workers: usize,

    /// Rooms the workers share
    #[arg(long, short = 'r', default_value_t = 10)]
    pub rooms: usize,

    /// Messages per visit
    #[arg(long, short = 'm', default_value_t = 5)]
    pub messages: usize,

    /// Payload bytes per message
    #[arg(long, short = 'p', default_value_t = 64)]
    pub payload: usize,

    /// Seconds during which new visits start
    #[arg(long, short = 'd', default_value_t = 5.0)]
    pub duration: f64,
}

/// The full benchmark.
#[derive(Debug, Clone, Args)]
pub struct SuiteCommand {
    /// Runs of every row (the median is reported)
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    /// Seconds of measured sending per fan-out run
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,

    /// Smaller sizes for a quick look (not for publishing)
    #[arg(long)]
    pub quick: bool,

    /// Only rows whose name contains this
    #[arg(long)]
    pub only: Option<String>,

    /// Core for the servers
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,

    /// Core for the generator
    #[arg(long, default_value_t = 1)]
    pub generator_core: usize,

    /// The Markdown report
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,

    /// Directory for the SVG plots and raw JSON, relative to --out's directory
    #[arg(long, default_value = "bench")]
    pub assets: PathBuf,

    /// chatgate binary [default: build it with cargo build --release -p chatgate]
    #[arg(long)]
    pub chatgate_bin: Option<PathBuf>,

    /// nats-server binary [default: nats-server on PATH or /usr/sbin]
    #[arg(long)]
    pub nats_bin: Option<PathBuf>,
}
