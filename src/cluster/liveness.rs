//! Which nodes are alive, from their heartbeats, and how this node's own
//! beats are doing: pure bookkeeping, fed the time by its caller (the
//! `heartbeat` task).
//!
//! A node not heard for [`NODE_TIMEOUT`] is silent, and the presence task
//! clears its members. Silence can only be judged while this node's own
//! link is up: when the link comes (back), everyone gets [`NODE_TIMEOUT`]
//! from that moment, since nobody could be heard before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::subject;

/// Silence after which a node counts as dead and its members are cleared.
/// Ten heartbeats: a node busy for a moment is not buried alive, and its
/// users are shown leaving well within the protocol's 30 seconds.
pub(super) const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// When each node was last heard.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// Last heartbeat per node id; pruned of nodes that have no members.
    last_seen: HashMap<Arc<str>, Instant>,
    /// When this node's link came up; `None` while it is down.
    up_since: Option<Instant>,
}

impl Liveness {
    /// A heartbeat arrived with this payload.
    pub(super) fn heard(&mut self, payload: &[u8], now: Instant) {
        let Some(node) = std::str::from_utf8(payload)
            .ok()
            .filter(|id| subject::is_node_id(id))
        else {
            return;
        };
        match self.last_seen.get_mut(node) {
            Some(seen) => *seen = now,
            None => {
                self.last_seen.insert(node.into(), now);
            }
        }
    }

    /// This node's link came up: every node starts afresh.
    pub(super) fn link_up(&mut self, now: Instant) {
        self.up_since = Some(now);
        for seen in self.last_seen.values_mut() {
            *seen = now;
        }
    }

    /// This node's link is down: nobody can be judged.
    pub(super) fn link_down(&mut self) {
        self.up_since = None;
    }

    /// Which of `nodes` (those with members) have been silent too long.
    /// Forgets nodes with no members that have been silent too long, so the
    /// map stays as small as the cluster.
    pub(super) fn silent(&mut self, nodes: &[Arc<str>], now: Instant) -> Vec<Arc<str>> {
        let Some(up_since) = self.up_since else {
            return Vec::new();
        };
        self.last_seen
            .retain(|node, seen| nodes.contains(node) || now - *seen < NODE_TIMEOUT);
        nodes
            .iter()
            .filter(|node| {
                let seen = self.last_seen.get(*node).copied().unwrap_or(up_since);
                now - seen >= NODE_TIMEOUT
            })
            .cloned()
            .collect()
    }
}

/// This node's own beat on its way through the NATS server.
#[derive(Debug, Default)]
pub(super) struct RoundTrip {
    /// When the oldest beat not yet answered was sent.
    waiting_since: Option<Instant>,
}

impl RoundTrip {
    /// A beat left.
    pub(super) fn sent(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// A beat came back: the link carried it both ways.
    pub(super) fn answered(&mut self) {
        self.waiting_since = None;
    }

    /// When the link counts as lost if no beat comes back first.
    pub(super) fn deadline(&self, within: Duration) -> Option<Instant> {
        self.waiting_since.map(|sent| sent + within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a.0000000000000001";

    #[test]
    fn a_node_is_silent_after_the_timeout_counted_from_the_later_of_link_and_beat() {
        let start = Instant::now();
        let nodes: Vec<Arc<str>> = vec![A.into(), "b.0000000000000002".into()];
        let mut live = Liveness::default();
        live.heard(A.as_bytes(), start);
        assert!(live.silent(&nodes, start + NODE_TIMEOUT * 5).is_empty());
        live.link_up(start);
        live.heard(A.as_bytes(), start + NODE_TIMEOUT / 2);
        assert_eq!(
            live.silent(&nodes, start + NODE_TIMEOUT),
            [nodes[1].clone()]
        );
        assert_eq!(live.silent(&nodes, start + NODE_TIMEOUT * 2).len(), 2);
        live.link_down();
        live.link_up(start + NODE_TIMEOUT * 3);
        assert!(live.silent(&nodes, start + NODE_TIMEOUT * 3).is_empty());
    }

    #[test]
    fn bad_heartbeats_and_departed_nodes_are_forgotten() {
        let start = Instant::now();
        let mut live = Liveness::default();
        live.link_up(start);
        live.heard(b"\xff", start);
        live.heard(&[b'x'; 100], start);
        live.heard(b"a b.0000000000000001", start);
        live.heard(b"gone.0000000000000001", start);
        assert_eq!(live.last_seen.len(), 1);
        live.silent(&[], start + NODE_TIMEOUT);
        assert!(live.last_seen.is_empty());
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;

    #[test]
    fn the_oldest_unanswered_beat_sets_the_deadline() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut trip = RoundTrip::default();
        assert_eq!(trip.deadline(second), None);
        trip.sent(start);
        trip.sent(start + second);
        assert_eq!(trip.deadline(second), Some(start + second));
        trip.answered();
        assert_eq!(trip.deadline(second), None);
    }
}
