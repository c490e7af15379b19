//! Every setting: each listener and limit, its default, and why.
//!
//! The clap [`Config`] is the one definition of every setting. The
//! configuration file and the environment ([`load`]), the effective and the
//! default configuration files ([`render`]), `--help`, the shell
//! completions and the man page are all derived from it, so none of them
//! can disagree with another.
//!
//! Each limit is a named constant whose comment gives the reason for its
//! default; `0` turns a limit off, as the protocol says.

pub mod load;
pub mod render;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

/// Most chat connections at once, of every transport. High enough that the
/// open-file limit (raised at start) is usually met first on a small box,
/// low enough that a flood cannot take all the memory of a large one: at a
/// few KiB per idle connection, 50,000 cost a few hundred MiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;

/// Connections from one address. Enough for a classroom or an office behind
/// one NAT, far too few for one host to take the whole server.
pub const DEFAULT_MAX_PER_IP: usize = 100;

/// Page connections (HTTP and HTTPS, not yet upgraded to WebSocket) open
/// at once. They do not count as chat connections, so they get a cap of
/// their own: enough for a crowd loading the page, small enough that idle
/// keep-alive connections cannot use up the server's file descriptors.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 4096;

/// Lines per second per connection (burst twice that). Faster than anyone
/// types or pastes line by line; slower than a script flooding a room.
pub const DEFAULT_RATE: u32 = 20;

/// Bytes waiting to be written to one connection before it is dropped as too
/// slow: a few seconds of a very busy room, yet small enough that thousands
/// of stalled readers cannot exhaust memory.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 256 * 1024;

/// Seconds to send a valid JOIN. Plenty for a person at a telnet prompt;
/// connections that never join cannot hold slots for long.
pub const DEFAULT_LOGIN_TIMEOUT: u64 = 30;

/// Message lines each room keeps for `/history` (PROTOCOL.md, History):
/// enough to show someone who joins what the room is talking about.
pub const DEFAULT_HISTORY: usize = 100;

/// Seconds a room's history outlives the room: a day, so that a room
/// everyone left overnight still has its conversation in the morning.
pub const DEFAULT_HISTORY_TTL: u64 = 86_400;

/// Bytes of line text all rooms' history holds together: 64 MiB, a
/// fixed ceiling on history's memory however many rooms there are.
pub const DEFAULT_HISTORY_BYTES: u64 = 64 << 20;

/// Seconds between WebSocket pings. Well under the idle timeouts of common
/// proxies and load balancers (60 s), so a quiet chat is not cut, and rare
/// enough to cost nothing.
pub const DEFAULT_WS_PING_INTERVAL: u64 = 30;

/// Where the server keeps what must outlive it (bans, and the generated
/// certificate unless `--cert-dir` says otherwise), relative to the
/// working directory unless given, and created only when something is
/// first kept. A service gives an absolute one (`/var/lib/chatgate`), so
/// that the working directory may be read-only.
pub const DEFAULT_STATE_DIR: &str = "state";

/// Seconds a drain spreads closing connections over: long enough that a
/// load balancer's clients do not all reconnect in the same second, short
/// enough for a rolling restart of a few nodes to take minutes.
pub const DEFAULT_DRAIN_PERIOD: u64 = 30;

/// Milliseconds one plugin call may run: a word filter or a dice roll takes
/// microseconds, a plugin in an interpreted language some hundreds of
/// them; 5 ms leaves room for both while a stuck plugin stalls its caller
/// (and nobody else) for no longer than a network hiccup.
pub const DEFAULT_PLUGIN_BUDGET_MS: u64 = 5;

/// Mebibytes one plugin instance may have, all its memories together: a
/// compiled plugin needs one or two, an interpreter with its standard
/// library some tens; 64 MiB fits both while a runaway plugin cannot take
/// the host's memory.
pub const DEFAULT_PLUGIN_MEMORY_MIB: u64 = 64;

/// Longest drain, in seconds: an hour. A node that drains stops accepting
/// at once, so a longer one would only keep it half there.
pub const MAX_DRAIN_PERIOD: u64 = 3600;

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsOn {
    /// On the admin listener, behind its token.
    Admin,
    /// On the public HTTP listeners, beside the page.
    Public,
}

/// The version `--version` prints: the package's, and the git commit it was
/// built from (`unknown` outside a git checkout; see `build.rs`), so a
/// report from a running server names the exact source.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CHATGATE_GIT_COMMIT"),
    ")"
);

/// A URL as it may be shown (an error message, `check-config`), with
/// whatever stands before an `@` (a user and password, a token) hidden.
pub fn without_credentials(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{after}"),
            None => format!("***@{after}"),
        },
        None => url.to_owned(),
    }
}

/// Tools the binary offers besides the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Tool {
    /// Reads a password from standard input (prompting, without echo, on a
    /// terminal) and prints its argon2id hash for --operator
    HashPassword,
    /// Checks the settings (flags, environment, --config file) as the server
    /// would at start, without binding anything, and prints them as TOML; exit status 1 and the reason on stderr if they are unusable
    CheckConfig,
    /// Prints a configuration file with every key, its default and its help, for --config
    PrintDefaultConfig,
    /// Loads a plugin as the server would (its settings file beside it), prints what it declares, and times the hooks it asks for: one line per hook with the median and 99th percentile in nanoseconds; exit status 1 and the reason if it does not load
    CheckPlugin {
        /// The plugin (a chatgate:plugin component)
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Calls to time per hook
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        calls: u32,
        /// Milliseconds one call may run, as the server's --plugin-budget-ms
        #[arg(
            long,
            value_name = "MS",
            default_value_t = DEFAULT_PLUGIN_BUDGET_MS,
            value_parser = clap::value_parser!(u64).range(1..=1000)
        )]
        budget_ms: u64,
        /// Mebibytes one instance may have, as the server's --plugin-memory-mib
        #[arg(
            long,
            value_name = "MIB",
            default_value_t = DEFAULT_PLUGIN_MEMORY_MIB,
            value_parser = clap::value_parser!(u64).range(1..=4096)
        )]
        memory_mib: u64,
    },
    /// Prints the shell completion script for chatgate
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff; `chatgate man | man -l -`)
    Man,
    /// Talks to a running server's admin API; its address and token file
    /// are --admin and --admin-token-file, from this command line, the
    /// environment or the --config file, as for the server
    Admin(AdminCommand),
}

/// `chatgate admin`: where the server's admin API is, and what to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminCommand {
    /// The server's configuration file, for its admin and admin-token-file
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The admin API's address
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// The file holding the admin API's token
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// What to ask
    #[command(subcommand)]
    pub request: AdminRequest,
}

/// What `chatgate admin` asks the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminRequest {
    /// The rooms and their members on this node
    Rooms,
    /// Kicks a user from a room
    Kick {
        /// The room
        room: String,
        /// The user
        user: String,
        /// Why (the rest of the line)
        #[arg(trailing_var_arg = true)]
        reason: Vec<String>,
    },
    /// Bans an IP address or CIDR prefix
    Ban {
        /// The address or prefix
        target: String,
        /// For how many minutes [default: until unbanned]
        #[arg(long)]
        minutes: Option<u64>,
        /// Why
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lifts a ban
    Unban {
        /// The address or prefix
        target: String,
    },
    /// Lists the bans
    Bans,
    /// Sends `*** <text>` to a room's members, or to every connection
    Notice {
        /// The text
        #[arg(required = true, trailing_var_arg = true)]
        text: Vec<String>,
        /// Only this room
        #[arg(long)]
        room: Option<String>,
    },
    /// Drains the server for a restart: stops accepting, tells everyone to reconnect, closes them over the period, exits
    Drain {
        /// Seconds to spread the closing over [default: the server's --drain-period]
        #[arg(long)]
        seconds: Option<u64>,
    },
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event
    Text,
    /// One JSON object per event, for log collectors
    Json,
}

/// Where a listener binds, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// The listener is not started.
    Off,
    /// Bind here.
    At(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse().map(Listen::At).map_err(|_| {
            format!("expected IP:PORT (like 0.0.0.0:1234 or [::1]:1234) or off, got {s:?}")
        })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::At(addr) => addr.fmt(f),
        }
    }
}

/// chatgate: a chat gateway where telnet, TLS and WebSocket users meet in the
/// same rooms.
///
/// Connect with `telnet localhost 1234`, then `JOIN <room> <name>`.
/// Every limit below is turned off by 0.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chatgate",
    version = VERSION,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "A numeric limit of 0 turns it off (--history-bytes cannot be 0). The protocol: docs/protocol.md. \
                  SIGINT/SIGTERM stop the server gracefully; SIGHUP reads the settings again and applies operators, limits, the certificate and the bans file."
)]
pub struct Config {
    /// A tool instead of the server
    #[command(subcommand)]
    pub command: Option<Tool>,

    /// TCP port, the classic form: `chatgate 1234` listens on 0.0.0.0:1234
    #[arg(value_name = "PORT", conflicts_with = "tcp")]
    pub port: Option<u16>,

    /// Read settings from this TOML file: each key is a long flag without its dashes (max-per-ip = 100); flags and CHATGATE_* environment variables override it
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Debug logs on stderr (RUST_LOG, when set, wins)
    #[arg(short, long)]
    pub verbose: bool,

    /// Log lines on stderr as text or as one JSON object each
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Plain TCP listener (telnet, nc), or off
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:1234")]
    pub tcp: Listen,

    /// TLS listener (openssl s_client), or off
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:1235")]
    pub tls: Listen,

    /// HTTP listener: the chat page, /ws, /healthz, /metrics; or off
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:8080")]
    pub http: Listen,

    /// HTTPS listener: the same over TLS (wss:// for WebSocket); or off
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:8443")]
    pub https: Listen,

    /// Certificate chain, PEM [default: cert.pem in --cert-dir, generated self-signed if missing]
    #[arg(long, value_name = "PATH", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key, PEM [default: key.pem in --cert-dir, generated if missing]
    #[arg(long, value_name = "PATH", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Directory of the certificate used without --cert and --key (cert.pem, key.pem; created with a self-signed pair when missing) [default: the --state-dir directory]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Serve the page from this directory instead of the copy built in (for page development)
    #[arg(long, value_name = "DIR")]
    pub web_dir: Option<PathBuf>,

    /// Also accept WebSocket upgrades from pages of this origin, like https://chat.example.com (repeatable, or comma-separated; checked at start). Pages served under this machine's host name, localhost or the IP address the browser dialled, and clients sending no Origin, are always accepted
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Most chat connections at once, all transports together
    ///
    /// Why the default: high enough that the open-file limit is usually met first on a small machine, low enough that a flood cannot take all the memory of a large one (at a few KiB per idle connection, 50,000 cost a few hundred MiB).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most chat connections from one address (an IPv6 address counts as its /64)
    ///
    /// Why the default: enough for a classroom or an office behind one NAT, far too few for one host to take the whole server.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PER_IP)]
    pub max_per_ip: usize,

    /// Most page connections (HTTP and HTTPS, before any WebSocket upgrade) at once; one address may hold at most --max-per-ip of them
    ///
    /// Why the default: enough for a crowd loading the page, small enough that idle keep-alive connections cannot use up the server's file descriptors.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_HTTP_CONNECTIONS)]
    pub max_http_connections: usize,

    /// Lines per second per connection, burst twice that
    ///
    /// Why the default: faster than anyone types or pastes line by line, slower than a script flooding a room.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE)]
    pub rate: u32,

    /// Bytes queued for one connection before it is dropped as too slow
    ///
    /// Why the default: a few seconds of a very busy room, yet small enough that thousands of stalled readers cannot exhaust memory.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUE_BYTES)]
    pub max_queue_bytes: usize,

    /// Seconds a new connection has to JOIN
    ///
    /// Why the default: plenty for a person at a telnet prompt; connections that never join cannot hold places for long.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_LOGIN_TIMEOUT)]
    pub login_timeout: u64,

    /// Message lines each room keeps for /history; 0 turns history off
    ///
    /// Why the default: enough to show someone who joins what the room is talking about.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY)]
    pub history: usize,

    /// Seconds a room's history outlives the room; 0: it goes with the room
    ///
    /// Why the default: a day, so a room everyone left overnight still has its conversation in the morning.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_HISTORY_TTL)]
    pub history_ttl: u64,

    /// Bytes of line text all rooms' history holds together, oldest lines dropped first
    ///
    /// Why the default: 64 MiB, a fixed ceiling on history's memory however many rooms there are.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_HISTORY_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub history_bytes: u64,

    /// Seconds between pings to each WebSocket peer; one that misses a ping is dropped
    ///
    /// Why the default: well under the idle timeouts of common proxies and load balancers (60 s), so a quiet chat is not cut, and rare enough to cost nothing.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_WS_PING_INTERVAL)]
    pub ws_ping_interval: u64,

    /// Most milliseconds a busy server may hold lines back to gather them into fewer writes; 0 writes every line at once
    #[arg(
        long,
        value_name = "MS",
        default_value_t = crate::pacing::DEFAULT_MAX_WRITE_DELAY_MS,
        value_parser = clap::value_parser!(u64).range(..=crate::pacing::MAX_WRITE_DELAY_MS)
    )]
    pub max_write_delay: u64,

    /// Join the nodes that use this NATS server, like nats://127.0.0.1:4222 (repeatable, or comma-separated, for a NATS cluster); without it the node stands alone
    #[arg(long = "nats", value_name = "URL", value_delimiter = ',')]
    pub nats: Vec<String>,

    /// Admin API listener (JSON over HTTP, bearer token): rooms, kick, bans, notices, drain; off unless given
    #[arg(long, value_name = "ADDR", requires = "admin_token_file")]
    pub admin: Option<SocketAddr>,

    /// File holding the admin API's bearer token (its whole text, whitespace around it ignored)
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,

    /// Where /metrics is served: on the admin listener or the public HTTP one [default: admin when --admin is on, else public]
    #[arg(long, value_name = "WHERE", value_enum)]
    pub metrics_on: Option<MetricsOn>,

    /// Seconds a drain (admin API) spreads the closing of connections over, unless the request says
    ///
    /// Why the default: long enough that a load balancer's clients do not all reconnect in the same second, short enough for a rolling restart of a few nodes to take minutes; at most an hour.
    #[arg(
        long,
        value_name = "S",
        default_value_t = DEFAULT_DRAIN_PERIOD,
        value_parser = clap::value_parser!(u64).range(..=MAX_DRAIN_PERIOD)
    )]
    pub drain_period: u64,

    /// An operator, as NAME:HASH, the hash an argon2 PHC string from `chatgate hash-password` (repeatable)
    #[arg(long, value_name = "NAME:HASH")]
    pub operator: Vec<String>,

    /// A WebAssembly plugin to load, a chatgate:plugin component; its settings are read from the file beside it with the same name and .toml (repeatable; plugins run in the order given)
    #[arg(long, value_name = "PATH")]
    pub plugin: Vec<PathBuf>,

    /// Milliseconds one plugin call may run before it is stopped and counted as failed
    ///
    /// Why the default: a word filter or a dice roll takes microseconds, a plugin in an interpreted language hundreds of them; 5 ms leaves room for both while a stuck plugin stalls only its caller, and briefly.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_PLUGIN_BUDGET_MS,
        value_parser = clap::value_parser!(u64).range(1..=1000)
    )]
    pub plugin_budget_ms: u64,

    /// Mebibytes of memory one plugin instance may have, all its memories together
    ///
    /// Why the default: a compiled plugin needs one or two, an interpreter with its standard library some tens; 64 MiB fits both while a runaway plugin cannot take the host's memory.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = DEFAULT_PLUGIN_MEMORY_MIB,
        value_parser = clap::value_parser!(u64).range(1..=4096)
    )]
    pub plugin_memory_mib: u64,

    /// Directory for what the server keeps across restarts (the bans, in bans.json); created when first needed
    ///
    /// Why the default: `state` in the working directory, beside where chatgate runs from a checkout; a service gives an absolute one (/var/lib/chatgate) so the working directory may be read-only.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// This node's name in the cluster: 1-64 characters from A-Z a-z 0-9 _ - [default: host name and a random suffix]
    #[arg(long, value_name = "NAME", value_parser = parse_node_name, requires = "nats")]
    pub node_name: Option<String>,
}

/// Longest node name: room for a fully qualified host name's first label
/// and a suffix, short enough to stay readable in logs.
pub const MAX_NODE_NAME: usize = 64;

/// Whether `s` is a valid node name: 1 to [`MAX_NODE_NAME`] characters
/// from `A-Z a-z 0-9 _ -`. A node name goes into logs, metrics and the
/// cluster's messages, so it keeps to characters that are plain in all of
/// them; names read back from NATS are held to the same rule.
pub fn is_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NODE_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn parse_node_name(s: &str) -> Result<String, String> {
    if is_node_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "1-{MAX_NODE_NAME} characters from A-Z a-z 0-9 _ -, got {s:?}"
        ))
    }
}

impl Config {
    /// Whether `/metrics` is on the public HTTP listeners.
    pub fn metrics_public(&self) -> bool {
        match self.metrics_on {
            Some(on) => on == MetricsOn::Public,
            None => self.admin.is_none(),
        }
    }

    /// The TCP listener, after the classic positional PORT.
    pub fn tcp_listen(&self) -> Listen {
        match self.port {
            Some(port) => Listen::At(SocketAddr::from(([0, 0, 0, 0], port))),
            None => self.tcp,
        }
    }

    /// The WebSocket ping interval, if on.
    pub fn ws_ping_interval(&self) -> Option<Duration> {
        (self.ws_ping_interval > 0).then(|| Duration::from_secs(self.ws_ping_interval))
    }

    /// The most pacing may delay a write.
    pub fn max_write_delay(&self) -> Duration {
        Duration::from_millis(self.max_write_delay)
    }

    /// Where the certificate used without `--cert`/`--key` is kept:
    /// `--cert-dir`, or else `--state-dir`.
    pub fn cert_dir(&self) -> &std::path::Path {
        self.cert_dir.as_deref().unwrap_or(&self.state_dir)
    }

    /// Whether any listener needs the certificate.
    pub fn needs_certificate(&self) -> bool {
        self.tls != Listen::Off || self.https != Listen::Off
    }

    /// What history keeps.
    pub fn history(&self) -> crate::history::HistorySettings {
        crate::history::HistorySettings {
            lines: self.history,
            ttl: self.history_ttl.saturating_mul(1000),
            bytes: usize::try_from(self.history_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The login timeout, if on.
    pub fn login_timeout(&self) -> Option<Duration> {
        (self.login_timeout > 0).then(|| Duration::from_secs(self.login_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let c = Config::parse_from(["chatgate"]);
        assert_eq!(c.tcp_listen().to_string(), "0.0.0.0:1234");
        assert_eq!(c.tls.to_string(), "0.0.0.0:1235");
        assert_eq!(c.http.to_string(), "0.0.0.0:8080");
        assert_eq!(c.https.to_string(), "0.0.0.0:8443");
        assert_eq!(c.ws_ping_interval, 30);
        assert_eq!(
            (
                c.max_connections,
                c.max_per_ip,
                c.rate,
                c.max_queue_bytes,
                c.login_timeout
            ),
            (50_000, 100, 20, 262_144, 30)
        );
    }

    #[test]
    fn classic_port_and_tcp_flag() {
        let c = Config::parse_from(["chatgate", "4000", "-v"]);
        assert_eq!(c.tcp_listen().to_string(), "0.0.0.0:4000");
        assert!(c.verbose);
        assert!(Config::try_parse_from(["chatgate", "4000", "--tcp", "127.0.0.1:1"]).is_err());
        let off = Config::parse_from(["chatgate", "--tcp", "off"]);
        assert_eq!(off.tcp_listen(), Listen::Off);
    }

    #[test]
    fn nats_urls_repeat_or_split_on_commas() {
        let c = Config::parse_from([
            "chatgate",
            "--nats",
            "nats://a:4222,nats://b:4222",
            "--nats",
            "nats://c:4222",
            "--node-name",
            "node-1",
        ]);
        assert_eq!(c.nats, ["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
        assert_eq!(c.node_name.as_deref(), Some("node-1"));
        assert!(Config::parse_from(["chatgate"]).nats.is_empty());
        for bad in ["", "a.b", "a b", &"x".repeat(65)] {
            let args = ["chatgate", "--nats", "nats://a", "--node-name", bad];
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
