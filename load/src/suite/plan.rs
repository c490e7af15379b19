//! What the suite runs: every row, against which server, with which sizes.

use super::plugins::SuitePlugin;
use crate::cli::Transport;

/// Payload of every fan-out row: a short chat line.
pub const PAYLOAD: usize = 64;

/// The window of every max-rate row, printed with every result.
pub const WINDOW_BYTES: u64 = 64 * 1024;

/// Room sizes of the delivered-rate plot.
pub const ROOM_SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Offered messages per second into one room of 100 for the latency plot.
pub const LATENCY_RATES: [f64; 4] = [1_000.0, 5_000.0, 20_000.0, 50_000.0];

/// Messages per second into one room of 1,000 for the CPU-per-delivery
/// comparison at a fixed load: 1 M deliveries a second, which both servers
/// deliver in full on the 2-core machine (at 5,000, nats-server falls
/// behind).
pub const FIXED_RATE: f64 = 1_000.0;

/// Room size of the cluster fan-out row, next to the single-node row of
/// the same size.
pub const CLUSTER_USERS: usize = 100;

/// Idle connections held at once.
pub const IDLE_CONNECTIONS: usize = 10_000;

/// Messages per second into one room of 1,000 WebSocket members for the
/// JSON-events against lines comparison: 2 M deliveries a second, which
/// both deliver in full while the generator, parsing every JSON event,
/// still keeps up.
pub const JSON_FIXED_RATE: f64 = 2_000.0;

/// The id of that row.
pub const JSON_FIXED_ROW: &str = "fixed-2000-1x1000";

/// The label of the history-off rows.
pub const HISTORY_OFF: &str = "chatgate tcp, history off";

/// The label of the JSON-events rows.
pub const JSON: &str = "chatgate ws, JSON events";

/// The label of the cluster rows.
pub const CLUSTER_LABEL: &str = "chatgate tcp, 2 nodes";

/// The label of the rows with the pass-through plugin.
pub const PASS_THROUGH: &str = "chatgate tcp, pass-through plugin";

/// The label of the rows with the word filter.
pub const WORD_FILTER: &str = "chatgate tcp, word-filter plugin";

/// The max-rate row run with each plugin, beside the same row without.
pub const PLUGIN_FANOUT_ROW: &str = "fanout-1x1000";

/// The latency row run with each plugin, beside the same row without.
pub const PLUGIN_LATENCY_ROW: &str = "latency-1000-1x100";

/// The server of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// chatgate over one transport.
    Chatgate(Transport),
    /// nats-server.
    Nats,
    /// chatgate over TCP with `--history 0`, beside the default.
    HistoryOff,
    /// chatgate over WebSocket, members asking for JSON events.
    JsonEvents,
    /// Two chatgate nodes over TCP joined through a nats-server with
    /// JetStream, a room's users alternating between them.
    Cluster,
    /// chatgate over TCP with one WebAssembly plugin, beside the default.
    Plugin(SuitePlugin),
}

impl Server {
    /// The column label.
    pub fn label(self) -> &'static str {
        match self {
            Server::Chatgate(Transport::Tcp) => "chatgate tcp",
            Server::Chatgate(Transport::Tls) => "chatgate tls",
            Server::Chatgate(Transport::Ws) => "chatgate ws",
            Server::Chatgate(Transport::Wss) => "chatgate wss",
            Server::Nats => "nats-server",
            Server::HistoryOff => HISTORY_OFF,
            Server::JsonEvents => JSON,
            Server::Cluster => CLUSTER_LABEL,
            Server::Plugin(SuitePlugin::PassThrough) => PASS_THROUGH,
            Server::Plugin(SuitePlugin::WordFilter) => WORD_FILTER,
        }
    }

    /// The server whose row of the same name this one is judged against,
    /// which a run of this row alone (`--only`) brings along.
    pub fn compared_with(self) -> Option<Server> {
        match self {
            Server::HistoryOff | Server::Plugin(_) => Some(Server::Chatgate(Transport::Tcp)),
            Server::JsonEvents => Some(Server::Chatgate(Transport::Ws)),
            _ => None,
        }
    }

    /// The `--spawn`/`--transport` flags that start it from the CLI.
    pub fn flags(self) -> &'static str {
        match self {
            Server::Chatgate(Transport::Tcp) => "--spawn chatgate --transport tcp",
            Server::Chatgate(Transport::Tls) => "--spawn chatgate --transport tls",
            Server::Chatgate(Transport::Ws) => "--spawn chatgate --transport ws",
            Server::Chatgate(Transport::Wss) => "--spawn chatgate --transport wss",
            Server::Nats => "--spawn nats",
            Server::HistoryOff => {
                "--spawn chatgate --transport tcp --server-arg=--history --server-arg=0"
            }
            Server::JsonEvents => "--spawn chatgate --transport ws --json-events",
            Server::Cluster => "--spawn chatgate --cluster",
            // `$PLUGINS`: a directory with the plugin's copy and its
            // settings beside it, as the report's commands make it. An
            // absolute state directory of its own: chatgate keeps compiled
            // plugins there, and refuses a relative one (its default).
            Server::Plugin(SuitePlugin::PassThrough) => {
                "--spawn chatgate --transport tcp --server-arg=--plugin --server-arg=$PLUGINS/pass-through.wasm --server-arg=--state-dir --server-arg=$PLUGINS/state"
            }
            Server::Plugin(SuitePlugin::WordFilter) => {
                "--spawn chatgate --transport tcp --server-arg=--plugin --server-arg=$PLUGINS/word-filter.wasm --server-arg=--state-dir --server-arg=$PLUGINS/state"
            }
        }
    }
}

/// A fan-out's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Rooms.
    pub rooms: usize,
    /// Users per room.
    pub users: usize,
    /// Senders per room.
    pub senders: usize,
    /// Messages per second per room; `None` for max rate.
    pub rate: Option<f64>,
}

/// What a row runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Fan-out or latency.
    Fanout(Shape),
    /// Idle connections, in rooms of `room_size`.
    Idle {
        /// Connections.
        connections: usize,
        /// Users per room.
        room_size: usize,
    },
    /// A slow reader in a fan-out, against the same without it.
    SlowReader(Shape),
    /// Connect, join, chat, leave.
    Churn {
        /// Visits at once.
        workers: usize,
        /// Rooms.
        rooms: usize,
        /// Messages per visit.
        messages: usize,
    },
}

/// One row of the results.
#[derive(Debug, Clone)]
pub struct RowPlan {
    /// Short unique name, e.g. `fanout-1x1000`.
    pub id: String,
    /// What runs.
    pub work: Work,
    /// Against what.
    pub server: Server,
}

impl RowPlan {
    /// The CLI command that runs this row once.
    pub fn command(&self, duration: f64, server_core: usize) -> String {
        let server = format!("{} --server-core {server_core}", self.server.flags());
        let shape = |s: &Shape| {
            let rate = s.rate.map_or_else(|| "0".to_owned(), |r| format!("{r:.0}"));
            format!(
                "-r {} -u {} -s {} -p {PAYLOAD} --rate {rate} --window {WINDOW_BYTES} -d {duration}",
                s.rooms, s.users, s.senders
            )
        };
        let body = match &self.work {
            Work::Fanout(s) if s.rate.is_some() && s.users == 100 && s.rooms == 1 => {
                format!("latency {server} {}", shape(s))
            }
            Work::Fanout(s) => format!("fanout {server} {}", shape(s)),
            Work::SlowReader(s) => format!("slow-reader {server} {}", shape(s)),
            Work::Idle {
                connections,
                room_size,
            } => format!("idle {server} -c {connections} --room-size {room_size} --sources 8"),
            Work::Churn {
                workers,
                rooms,
                messages,
            } => format!("churn {server} -w {workers} -r {rooms} -m {messages} -d {duration}"),
        };
        format!("chatgate-load {body}")
    }
}

/// Every row, for the transports chatgate offers.
pub fn rows(transports: &[Transport], quick: bool) -> Vec<RowPlan> {
    let mut rows = Vec::new();
    let both = [Server::Chatgate(Transport::Tcp), Server::Nats];
    let mut add = |id: String, work: Work, servers: &[Server]| {
        for &server in servers {
            rows.push(RowPlan {
                id: id.clone(),
                work,
                server,
            });
        }
    };
    let plugins = SuitePlugin::ALL.map(Server::Plugin);
    let max = |rooms, users| Shape {
        rooms,
        users,
        senders: 1,
        rate: None,
    };
    let sizes: &[usize] = if quick { &ROOM_SIZES[..3] } else { &ROOM_SIZES };
    for &users in sizes {
        add(
            format!("fanout-1x{users}"),
            Work::Fanout(max(1, users)),
            &both,
        );
        if users == 1_000 {
            add(
                format!("fanout-1x{users}"),
                Work::Fanout(max(1, users)),
                &[Server::HistoryOff],
            );
            add(
                PLUGIN_FANOUT_ROW.into(),
                Work::Fanout(max(1, users)),
                &plugins,
            );
        }
        if users == CLUSTER_USERS {
            add(
                format!("fanout-1x{users}-cluster"),
                Work::Fanout(max(1, users)),
                &[Server::Cluster],
            );
        }
    }
    add(
        "fanout-100x10".into(),
        Work::Fanout(max(100, 10)),
        &[both[0], both[1], Server::HistoryOff],
    );
    let fixed = Shape {
        rate: Some(FIXED_RATE),
        ..max(1, 1_000)
    };
    add(
        format!("fixed-{FIXED_RATE:.0}-1x1000"),
        Work::Fanout(fixed),
        &both,
    );
    for &rate in &LATENCY_RATES {
        let shape = Shape {
            rate: Some(rate),
            ..max(1, 100)
        };
        add(
            format!("latency-{rate:.0}-1x100"),
            Work::Fanout(shape),
            &both,
        );
        if rate == 1_000.0 {
            add(PLUGIN_LATENCY_ROW.into(), Work::Fanout(shape), &plugins);
        }
    }
    let others: Vec<Server> = transports
        .iter()
        .filter(|t| **t != Transport::Tcp)
        .map(|t| Server::Chatgate(*t))
        .collect();
    add("fanout-1x1000".into(), Work::Fanout(max(1, 1_000)), &others);
    if transports.contains(&Transport::Ws) {
        let json = [Server::Chatgate(Transport::Ws), Server::JsonEvents];
        add(
            "fanout-1x1000".into(),
            Work::Fanout(max(1, 1_000)),
            &json[1..],
        );
        let fixed = Shape {
            rate: Some(JSON_FIXED_RATE),
            ..max(1, 1_000)
        };
        add(JSON_FIXED_ROW.into(), Work::Fanout(fixed), &json);
    }
    let latency = Shape {
        rate: Some(1_000.0),
        ..max(1, 100)
    };
    add("latency-1000-1x100".into(), Work::Fanout(latency), &others);
    let idle = Work::Idle {
        connections: if quick { 2_000 } else { IDLE_CONNECTIONS },
        room_size: 100,
    };
    let all: Vec<Server> = both.iter().copied().chain(others.iter().copied()).collect();
    add("idle".into(), idle, &all);
    add(
        "slow-reader-1x10".into(),
        Work::SlowReader(max(1, 10)),
        &both,
    );
    let churn = Work::Churn {
        workers: 50,
        rooms: 10,
        messages: 5,
    };
    add("churn".into(), churn, &both);
    rows
}

/// The rows `--only` selects: those whose name or server label contains
/// `only` (all without it), and with each the row it is judged against
/// (the same row on the server of [`Server::compared_with`]), so that a
/// comparison is always made within one run. Order is kept.
pub fn select(rows: Vec<RowPlan>, only: Option<&str>) -> Vec<RowPlan> {
    let Some(only) = only else {
        return rows;
    };
    let wanted = |r: &RowPlan| r.id.contains(only) || r.server.label().contains(only);
    let keep: Vec<bool> = rows
        .iter()
        .map(|r| {
            wanted(r)
                || rows.iter().any(|o| {
                    wanted(o) && o.id == r.id && o.server.compared_with() == Some(r.server)
                })
        })
        .collect();
    rows.into_iter()
        .zip(keep)
        .filter_map(|(r, keep)| keep.then_some(r))
        .collect()
}

/// The plugins the rows load, each once, in order.
pub fn plugins_of(rows: &[RowPlan]) -> Vec<SuitePlugin> {
    let mut out = Vec::new();
    for row in rows {
        match row.server {
            Server::Plugin(p) if !out.contains(&p) => out.push(p),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tcp_row_has_a_nats_twin() {
        let rows = rows(&[Transport::Tcp], false);
        for row in rows
            .iter()
            .filter(|r| r.server == Server::Chatgate(Transport::Tcp))
        {
            assert!(
                rows.iter()
                    .any(|r| r.id == row.id && r.server == Server::Nats),
                "{}",
                row.id
            );
        }
    }

    #[test]
    fn the_cluster_row_follows_its_single_node_row() {
        let rows = rows(&[Transport::Tcp], true);
        let at = rows
            .iter()
            .position(|r| r.id == "fanout-1x100-cluster")
            .expect("a cluster row");
        assert_eq!(rows[at].server, Server::Cluster);
        assert_eq!(rows[at - 1].id, "fanout-1x100");
        let command = rows[at].command(5.0, 0);
        assert!(
            command.starts_with("chatgate-load fanout --spawn chatgate --cluster"),
            "{command}"
        );
    }

    #[test]
    fn commands_name_the_scenario_and_sizes() {
        let rows = rows(&[Transport::Tcp, Transport::Ws], true);
        let ws = rows
            .iter()
            .find(|r| r.server == Server::Chatgate(Transport::Ws) && r.id == "fanout-1x1000")
            .unwrap();
        let command = ws.command(5.0, 0);
        assert!(
            command.starts_with("chatgate-load fanout --spawn chatgate --transport ws"),
            "{command}"
        );
        assert!(command.contains("-u 1000"), "{command}");
    }

    #[test]
    fn plugin_rows_follow_their_rows_without_plugins() {
        for quick in [false, true] {
            let rows = rows(&[Transport::Tcp, Transport::Ws], quick);
            for id in [PLUGIN_FANOUT_ROW, PLUGIN_LATENCY_ROW] {
                let at = rows
                    .iter()
                    .position(|r| {
                        r.server == Server::Plugin(SuitePlugin::PassThrough) && r.id == id
                    })
                    .expect("a pass-through row");
                assert_eq!(
                    rows[at + 1].server,
                    Server::Plugin(SuitePlugin::WordFilter),
                    "{id}"
                );
                assert!(
                    rows[..at]
                        .iter()
                        .any(|r| r.id == id && r.server == Server::Chatgate(Transport::Tcp)),
                    "{id}: the row without plugins comes first"
                );
                let twin = |r: &RowPlan| r.id == id && r.server == Server::Chatgate(Transport::Tcp);
                assert_eq!(
                    rows.iter().find(|r| twin(r)).map(|r| r.work),
                    Some(rows[at].work),
                    "{id}: same work as the row without plugins"
                );
            }
            assert_eq!(
                rows.iter()
                    .filter(|r| matches!(r.server, Server::Plugin(_)))
                    .count(),
                4
            );
        }
    }

    #[test]
    fn plugin_commands_pass_the_plugin_to_the_server() {
        let rows = rows(&[Transport::Tcp], true);
        let latency = rows
            .iter()
            .find(|r| {
                r.id == PLUGIN_LATENCY_ROW && r.server == Server::Plugin(SuitePlugin::WordFilter)
            })
            .unwrap();
        let command = latency.command(5.0, 0);
        assert!(
            command.starts_with("chatgate-load latency --spawn chatgate --transport tcp --server-arg=--plugin --server-arg=$PLUGINS/word-filter.wasm --server-arg=--state-dir --server-arg=$PLUGINS/state"),
            "{command}"
        );
        assert!(
            command.contains("-u 100 -s 1 -p 64 --rate 1000"),
            "{command}"
        );
    }

    #[test]
    fn only_plugin_selects_the_plugin_rows_and_their_rows_without() {
        let all = rows(&[Transport::Tcp, Transport::Ws], false);
        let picked = select(all.clone(), Some("plugin"));
        let names: Vec<(&str, Server)> = picked.iter().map(|r| (r.id.as_str(), r.server)).collect();
        let tcp = Server::Chatgate(Transport::Tcp);
        let (pass, filter) = (
            Server::Plugin(SuitePlugin::PassThrough),
            Server::Plugin(SuitePlugin::WordFilter),
        );
        assert_eq!(
            names,
            [
                (PLUGIN_FANOUT_ROW, tcp),
                (PLUGIN_FANOUT_ROW, pass),
                (PLUGIN_FANOUT_ROW, filter),
                (PLUGIN_LATENCY_ROW, tcp),
                (PLUGIN_LATENCY_ROW, pass),
                (PLUGIN_LATENCY_ROW, filter),
            ]
        );
        assert_eq!(plugins_of(&picked), SuitePlugin::ALL);
        let one = select(all.clone(), Some("word-filter"));
        assert_eq!(one.len(), 4);
        assert_eq!(plugins_of(&one), [SuitePlugin::WordFilter]);
        assert_eq!(select(all.clone(), None).len(), all.len());
        let idle = select(all.clone(), Some("idle"));
        assert!(idle.iter().all(|r| r.id == "idle"));
        assert!(plugins_of(&idle).is_empty());
        let history = select(all, Some("history off"));
        assert!(
            history
                .iter()
                .all(|r| r.server == Server::HistoryOff || r.server == tcp),
            "{history:?}"
        );
        assert_eq!(history.len(), 4);
    }

    #[test]
    fn the_plugins_wanted_do_not_depend_on_the_transports() {
        let every = [
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ];
        for only in [
            None,
            Some("plugin"),
            Some("word"),
            Some("fanout-1x1000"),
            Some("idle"),
        ] {
            for quick in [false, true] {
                assert_eq!(
                    plugins_of(&select(rows(&[Transport::Tcp], quick), only)),
                    plugins_of(&select(rows(&every, quick), only)),
                    "{only:?}"
                );
            }
        }
    }
}
