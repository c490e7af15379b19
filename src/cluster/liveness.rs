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
///
/// A beat late on a link that still brings messages in is not a lost link,
/// only a congested one (the beat waits behind this node's own traffic in
/// the client's queue): the link is looked at again a little later, and
/// what holds the node back meanwhile is the back-pressure on its senders.
/// A late beat with nothing received since it left is a silent link.
#[derive(Debug, Default)]
pub(super) struct RoundTrip {
    /// When to look at the link next, and how many messages the connection
    /// had received when the clock started; none while no beat is awaited.
    waiting: Option<(Instant, u64)>,
}

impl RoundTrip {
    /// A beat left; `received` counts the messages received so far. Unless
    /// an earlier beat is still awaited, the link is looked at `within`
    /// from now.
    pub(super) fn sent(&mut self, now: Instant, received: u64, within: Duration) {
        self.waiting.get_or_insert((now + within, received));
    }

    /// A beat came back: the link carried it both ways.
    pub(super) fn answered(&mut self) {
        self.waiting = None;
    }

    /// When to look at the link, if no beat comes back first.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.waiting.map(|(at, _)| at)
    }

    /// The deadline passed with `received` messages received so far: true
    /// if the link is silent; if it is only slow, it is looked at again
    /// `recheck` from now.
    pub(super) fn silent(&mut self, now: Instant, received: u64, recheck: Duration) -> bool {
        match self.waiting {
            Some((_, before)) if received > before => {
                self.waiting = Some((now + recheck, received));
                false
            }
            Some(_) => true,
            None => false,
        }
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
        assert_eq!(trip.deadline(), None);
        trip.sent(start, 7, second);
        trip.sent(start + second, 9, second);
        assert_eq!(trip.deadline(), Some(start + second));
        trip.answered();
        assert_eq!(trip.deadline(), None);
    }

    #[test]
    fn a_late_beat_on_a_link_that_still_brings_messages_is_not_silence() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut trip = RoundTrip::default();
        trip.sent(start, 7, second * 3);
        assert!(
            !trip.silent(start + second * 3, 8, second),
            "messages came in"
        );
        assert_eq!(trip.deadline(), Some(start + second * 4));
        assert!(trip.silent(start + second * 4, 8, second), "nothing since");
    }
}
