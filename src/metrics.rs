//! The numbers `/metrics` reports, in Prometheus text format.
//!
//! Counters and gauges are atomics the connection code bumps as things
//! happen; room and user counts are read from the hub at scrape time, so
//! the hub itself stays free of metrics code.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::hub::Hub;

/// Labels a connection gauge by transport.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// Labels a drop counter by reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
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
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chatgate");
        let metrics = Metrics {
            connections: Family::default(),
            lines_in: Counter::default(),
            lines_out: Counter::default(),
            drops: Family::default(),
            rooms: Gauge::default(),
            users: Gauge::default(),
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
}

impl Metrics {
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
        self.rooms.set(hub.room_count() as i64);
        self.users.set(hub.user_count() as i64);
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
