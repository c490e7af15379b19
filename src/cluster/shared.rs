//! What the hub and the sessions see of the cluster: the [`Relay`] side,
//! which only queues and reads, and never waits.
//!
//! Room lines go into a bounded queue to the rooms task; a full queue means
//! NATS cannot keep up, and the line is then delivered to local members
//! only (and counted) rather than making a session wait. Released names go
//! into a queue to the presence task that needs no bound of its own: each
//! entry stands for one membership that ended, and a connection can only
//! start a new one after its claim went through that same task, so the
//! queue holds at most about two entries per connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::envelope::Kind;
use super::liveness::Liveness;
use super::replica::Replica;
use crate::metrics::ClusterMetrics;
use crate::protocol::names::{RoomName, UserName};
use crate::relay::{Relay, RoomEvent};

/// Room lines waiting for the rooms task: a few seconds of a very busy
/// node's traffic, so a NATS hiccup does not cost lines, yet small enough
/// (a line is rarely over a few hundred bytes) to bound memory.
pub(super) const OUTGOING_QUEUE: usize = 8192;

/// A room line on its way to NATS.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The room whose subject it goes to.
    pub room: RoomName,
    /// What it means.
    pub kind: Kind,
    /// The encoded line.
    pub line: Bytes,
}

/// The state the relay side shares with the cluster's tasks.
#[derive(Debug)]
pub(super) struct Shared {
    /// This node's id in the cluster.
    pub node: String,
    /// Lines and names go through NATS while set; set by the rooms task
    /// once the link is up and presence is registered, cleared the moment
    /// the link drops.
    pub up: AtomicBool,
    /// To the rooms task.
    pub outgoing: mpsc::Sender<Outgoing>,
    /// To the presence task: memberships that ended.
    pub releases: mpsc::UnboundedSender<(RoomName, UserName)>,
    /// Wakes the rooms task when a room emptied here, to unsubscribe.
    pub emptied: Notify,
    /// Wakes a departure waiting for the last room here to empty.
    pub idle: Notify,
    /// Someone joined while the link was not up, so their name was granted
    /// on this node's word: the presence task registers it once the link
    /// is.
    pub unregistered: AtomicBool,
    /// The other nodes' members; locked briefly, never across an await and
    /// never while calling the hub.
    replica: Mutex<Replica>,
    /// When each node was last heard; fed by the heartbeat task, read by
    /// the presence task. Locked briefly, never across an await.
    liveness: Mutex<Liveness>,
    /// The cluster's numbers.
    pub metrics: ClusterMetrics,
}

impl Shared {
    pub(super) fn new(
        node: String,
        outgoing: mpsc::Sender<Outgoing>,
        releases: mpsc::UnboundedSender<(RoomName, UserName)>,
        metrics: ClusterMetrics,
    ) -> Shared {
        Shared {
            node,
            up: AtomicBool::new(false),
            outgoing,
            releases,
            emptied: Notify::new(),
            idle: Notify::new(),
            unregistered: AtomicBool::new(false),
            replica: Mutex::default(),
            liveness: Mutex::default(),
            metrics,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(super) fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn liveness(&self) -> MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Relay for Shared {
    fn claims_names(&self) -> bool {
        self.is_up()
    }

    fn publish(&self, room: RoomName, event: RoomEvent, line: &Bytes) -> bool {
        if !self.is_up() {
            self.metrics.kept_local.inc();
            if let RoomEvent::Joined { .. } = event {
                // Joined while the link is not up (down, or coming back and
                // past the presence snapshot): the name still has to be
                // registered once it is.
                self.unregistered.store(true, Ordering::SeqCst);
            }
            return false;
        }
        let kind = match event {
            RoomEvent::Line => Kind::Line,
            RoomEvent::Joined { user, tag } => Kind::Join {
                node: self.node.clone(),
                user,
                tag,
            },
            RoomEvent::Left { user } => Kind::Leave {
                node: self.node.clone(),
                user,
            },
            RoomEvent::Private { from, to } => Kind::Private {
                from: from.key(),
                to,
            },
        };
        let sent = self.outgoing.try_send(Outgoing {
            room,
            kind,
            line: line.clone(),
        });
        if sent.is_err() {
            self.metrics.kept_local.inc();
        }
        sent.is_ok()
    }

    fn room_emptied(&self, _room: RoomName) {
        self.emptied.notify_one();
        self.idle.notify_one();
    }

    fn released(&self, room: RoomName, user: UserName) {
        // Fails only once the presence task has stopped, when nothing is
        // left to release.
        let _ = self.releases.send((room, user));
    }

    // While the link is not up the node is a server on its own (PROTOCOL.md,
    // Cluster): what it last knew of the others may be stale, and names are
    // checked against this node only, so the others are not listed.
    fn remote_members(&self, room: RoomName) -> Vec<UserName> {
        if !self.is_up() {
            return Vec::new();
        }
        self.replica().members(room)
    }

    fn remote_rooms(&self) -> Vec<(RoomName, usize)> {
        if !self.is_up() {
            return Vec::new();
        }
        self.replica().rooms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::protocol::names::Name;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn a_join_kept_local_is_registered_once_the_link_is_up() {
        let (outgoing, _rooms) = mpsc::channel(1);
        let (releases, _presence) = mpsc::unbounded_channel();
        let metrics = Metrics::new(true).cluster().unwrap().clone();
        let shared = Shared::new("a".into(), outgoing, releases, metrics);
        let line = Bytes::from_static(b"x\r\n");

        assert!(!shared.publish(n("r"), RoomEvent::Line, &line));
        assert!(!shared.unregistered.load(Ordering::SeqCst));
        let joined = RoomEvent::Joined {
            user: n("amy"),
            tag: 1,
        };
        assert!(!shared.publish(n("r"), joined, &line), "kept local");
        assert!(shared.unregistered.load(Ordering::SeqCst));
    }
}
