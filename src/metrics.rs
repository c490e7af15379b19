//! The numbers `/metrics` reports, in Prometheus text format.
//!
//! Counters and gauges are atomics the connection code bumps as things
//! happen; room and user counts are read from the hub at scrape time, so
//! the hub itself stays free of metrics code. A node in a cluster also
//! exports [`ClusterMetrics`], which the cluster's tasks bump.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::moderation::Moderated;

/// Labels a connection gauge by transport.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// Labels the moderation counter by what was done.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// Labels a drop counter by reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Labels a plugin's numbers by plugin and hook.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    /// The plugin's name (its file's stem).
    pub plugin: String,
    /// `join`, `message`, `command`, `leave`, `tick` or `init`.
    pub hook: &'static str,
}

/// Labels a plugin's failures by plugin, hook and kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    /// The plugin's name.
    pub plugin: String,
    /// The hook.
    pub hook: &'static str,
    /// `timeout`, `memory`, `trap`, `invalid` (an answer out of bounds) or
    /// `refused` (an instance's `init` said no).
    pub kind: &'static str,
}

/// Labels a per-plugin gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    /// The plugin's name.
    pub plugin: String,
}

/// What plugins count: calls and their time, failures, disabled plugins.
/// Cheap to clone; every clone counts into the same numbers.
#[derive(Debug, Clone)]
pub struct PluginMetrics {
    /// Seconds per hook call, by plugin and hook (its count is the calls).
    pub calls: Family<HookLabel, Histogram, fn() -> Histogram>,
    /// Failed calls, by plugin, hook and kind.
    pub failures: Family<FailureLabel, Counter>,
    /// 1 while a plugin is disabled for failing again and again.
    pub disabled: Family<PluginLabel, Gauge>,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 1 µs to about 33 ms: a pass-through call to a budget's end.
            Histogram::new(exponential_buckets(1e-6, 2.0, 16))
        }
        PluginMetrics {
            calls: Family::new_with_constructor(histogram),
            failures: Family::default(),
            disabled: Family::default(),
        }
    }
}

/// Why a line or a connection was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A reader too slow for its queue limit was disconnected.
    TooSlow,
    /// A line or message over the length limit ended its connection.
    TooLong,
    /// A line over the rate limit was dropped.
    RateLimited,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::TooSlow => "too_slow",
            DropReason::TooLong => "too_long",
            DropReason::RateLimited => "rate_limited",
        }
    }
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<TransportLabel, Gauge>,
    lines_in: Counter,
    lines_out: Counter,
    drops: Family<ReasonLabel, Counter>,
    rooms: Gauge,
    users: Gauge,
    /// What operators did, brought up to the hub's tally at each scrape.
    moderation: Family<ActionLabel, Counter>,
    /// Held while a scrape brings the moderation counters up to date, so
    /// two scrapes at once do not both add the same difference.
    scraping: std::sync::Mutex<()>,
    /// Present when the node is part of a cluster.
    cluster: Option<ClusterMetrics>,
    /// What plugins count.
    plugins: PluginMetrics,
}

/// What a node in a cluster counts; cheap to clone, every clone counts into
/// the same numbers.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// Room lines this node published to NATS.
    pub published: Counter,
    /// Room lines this node received from NATS.
    pub received: Counter,
    /// Room lines delivered to local members only: the link was down, or the
    /// queue to NATS was full.
    pub kept_local: Counter,
    /// 1 while the NATS link is up and presence is registered, else 0.
    pub link_up: Gauge,
    /// Presence entries: this node's claimed names plus the other nodes'
    /// members it knows of.
    pub presence_entries: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// The metrics of a node; `cluster` adds the cluster's.
    pub fn new(cluster: bool) -> Self {
        let mut registry = Registry::with_prefix("chatgate");
        let metrics = Metrics {
            connections: Family::default(),
            lines_in: Counter::default(),
            lines_out: Counter::default(),
            drops: Family::default(),
            rooms: Gauge::default(),
            users: Gauge::default(),
            moderation: Family::default(),
            scraping: std::sync::Mutex::default(),
            cluster: cluster.then(ClusterMetrics::default),
            plugins: PluginMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open chat connections",
            metrics.connections.clone(),
        );
        registry.register(
            "lines_in",
            "Lines received from clients",
            metrics.lines_in.clone(),
        );
        registry.register(
            "lines_out",
            "Lines written to clients",
            metrics.lines_out.clone(),
        );
        registry.register(
            "drops",
            "Lines or connections dropped, by reason",
            metrics.drops.clone(),
        );
        registry.register(
            "rooms",
            "Rooms with at least one user",
            metrics.rooms.clone(),
        );
        registry.register("users", "Users in a room", metrics.users.clone());
        registry.register(
            "moderation",
            "Operators' actions, /oper tries and connections refused for a ban, by action",
            metrics.moderation.clone(),
        );
        for what in Moderated::ALL {
            let _ = metrics.moderation.get_or_create(&ActionLabel {
                action: what.label(),
            });
        }
        {
            let sub = registry.sub_registry_with_prefix("plugin");
            sub.register(
                "call_seconds",
                "Time per plugin hook call, by plugin and hook",
                metrics.plugins.calls.clone(),
            );
            sub.register(
                "failures",
                "Plugin calls that trapped, ran out of time or memory, or answered out of bounds",
                metrics.plugins.failures.clone(),
            );
            sub.register(
                "disabled",
                "1 while a plugin is disabled after failing again and again",
                metrics.plugins.disabled.clone(),
            );
        }
        if let Some(c) = &metrics.cluster {
            let sub = registry.sub_registry_with_prefix("cluster");
            sub.register(
                "published_lines",
                "Room lines published to NATS",
                c.published.clone(),
            );
            sub.register(
                "received_lines",
                "Room lines received from NATS",
                c.received.clone(),
            );
            sub.register(
                "local_only_lines",
                "Room lines delivered to local members only (link down or queue full)",
                c.kept_local.clone(),
            );
            sub.register(
                "link_up",
                "1 while the NATS link is up and presence is registered",
                c.link_up.clone(),
            );
            sub.register(
                "presence_entries",
                "Names claimed here plus members known on other nodes",
                c.presence_entries.clone(),
            );
        }
        for reason in [
            DropReason::TooSlow,
            DropReason::TooLong,
            DropReason::RateLimited,
        ] {
            let _ = metrics.drops.get_or_create(&ReasonLabel {
                reason: reason.label(),
            });
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The cluster's metrics, if the node is in one.
    pub fn cluster(&self) -> Option<&ClusterMetrics> {
        self.cluster.as_ref()
    }

    /// What plugins count into.
    pub fn plugins(&self) -> &PluginMetrics {
        &self.plugins
    }

    /// A connection of `transport` opened; the guard closes it.
    pub fn connection(&self, transport: &'static str) -> ConnectionGauge {
        let gauge = self
            .connections
            .get_or_create(&TransportLabel { transport })
            .clone();
        gauge.inc();
        ConnectionGauge(gauge)
    }

    /// A line arrived.
    pub fn line_in(&self) {
        self.lines_in.inc();
    }

    /// `n` lines were written to one connection.
    pub fn lines_out(&self, n: usize) {
        self.lines_out.inc_by(n as u64);
    }

    /// Something was dropped.
    pub fn dropped(&self, why: DropReason) {
        self.drops
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
    }

    /// The text exposition, with room and user counts read from `hub` now.
    pub fn render(&self, hub: &Hub) -> String {
        let _scrape = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        self.rooms.set(hub.room_count() as i64);
        self.users.set(hub.user_count() as i64);
        for what in Moderated::ALL {
            let counter = self.moderation.get_or_create(&ActionLabel {
                action: what.label(),
            });
            let now = hub.moderation().tally.get(what);
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct ConnectionGauge(Gauge);

impl std::ops::Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
