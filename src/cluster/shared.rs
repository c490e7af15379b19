//! What the hub and the sessions see of the cluster: the [`Relay`] side,
//! which only queues and reads, and never waits.
//!
//! Every room line this node's members say goes into one queue to the
//! rooms task, in the order said, whatever the link's state: the rooms
//! task publishes it while the link is up and delivers it here otherwise,
//! so no line can overtake an earlier one on its way to the members. The
//! queue is counted in bytes; above [`OUTGOING_HIGH`] the connections stop
//! reading their peers ([`Shared::room_for_lines`]) until it is below
//! [`OUTGOING_LOW`] again. That is the back-pressure PROTOCOL.md asks for
//! when the way to NATS is congested: nothing is dropped or reordered.
//! Each connection adds at most one read's worth (a burst of at most
//! `MAX_BURST` bytes, or one join or leave) after the gate closes, so the
//! queue holds at most [`OUTGOING_HIGH`] plus that much per connection.
//!
//! A joiner hears nothing of the room until its own join line comes back
//! (see `Joins`); its connection reads no further meanwhile
//! ([`Shared::admission`]), so that its next command is answered after it,
//! as on a single node.
//!
//! Released names go to the presence task as a set ([`Releases`]): a name
//! released twice before the task gets to it is one entry, and past
//! [`MAX_RELEASES`] entries the set stops growing and asks for one full
//! line-up of the bucket instead, which finds every stale key at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::envelope::{JoinTag, Kind};
use super::liveness::Liveness;
use super::replica::Replica;
use crate::metrics::ClusterMetrics;
use crate::protocol::names::{Name, RoomName, UserName};
use crate::relay::{Relay, RoomEvent};

/// Bytes of room lines queued for the rooms task above which connections
/// stop reading: a few seconds of a busy node's traffic, so a NATS hiccup
/// costs no stall, yet a small part of a node's memory.
pub(super) const OUTGOING_HIGH: usize = 4 << 20;

/// Below this the connections read again: far enough below the high mark
/// that they do not stop and start on every line.
pub(super) const OUTGOING_LOW: usize = OUTGOING_HIGH / 2;

/// Released names waiting for the presence task, at most. Past it, the task
/// lines the whole bucket up with the hub instead of releasing one by one.
pub(super) const MAX_RELEASES: usize = 16_384;

/// Memberships that ended, for the presence task: one entry per room and
/// name, bounded by [`MAX_RELEASES`].
#[derive(Debug, Default)]
pub(super) struct Releases {
    /// The names to release, by room and look-alike key.
    pub names: HashMap<(RoomName, Name), UserName>,
    /// Some were not kept: the bucket needs a full line-up.
    pub overflowed: bool,
}

/// What a queued line costs beyond its bytes: the entry and its headers.
const ENTRY_COST: usize = 96;

/// A room line on its way to NATS.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The room whose subject it goes to.
    pub room: RoomName,
    /// What it means.
    pub kind: Kind,
    /// The encoded line, or lines for [`Kind::Line`].
    pub line: Bytes,
    /// How many lines `line` holds.
    pub lines: usize,
}

impl Outgoing {
    /// What it counts for against [`OUTGOING_HIGH`].
    fn cost(&self) -> usize {
        self.line.len() + ENTRY_COST
    }
}

/// The joins on this node whose line has not come back yet: one per room
/// and name, the latest join's. A join line coming back admits its joiner
/// only if its tag is the one waiting here; an older join's line (the user
/// left and joined again meanwhile) is then only a line.
#[derive(Debug, Default)]
struct Joins {
    waiting: HashMap<(RoomName, Name), Waiting>,
    next_tag: JoinTag,
}

#[derive(Debug)]
struct Waiting {
    tag: JoinTag,
    /// The connection's first room here (see `RoomEvent::Joined`).
    first: bool,
    /// Wakes the joiner's connection once it is admitted.
    admitted: Arc<Notify>,
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
    pub outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Bytes in `outgoing`, as [`Outgoing::cost`] counts them.
    queued: AtomicUsize,
    /// Wakes connections waiting for the queue to drain.
    drained: Notify,
    /// Joins waiting for their line to come back.
    joins: Mutex<Joins>,
    /// For the presence task: memberships that ended.
    releases: Mutex<Releases>,
    /// Wakes the presence task when `releases` gains an entry.
    pub released: Notify,
    /// Wakes the rooms task when a room emptied here, to unsubscribe.
    pub emptied: Notify,
    /// Wakes a departure waiting for the last room here to empty.
    pub idle: Notify,
    /// Someone joined while the link was not up, so their name was granted
    /// on this node's word: the presence task registers it once the link
    /// is.
    pub unregistered: AtomicBool,
    /// This node deleted presence keys since the sweep task last looked,
    /// leaving markers to sweep.
    pub deleted: AtomicBool,
    /// The other nodes' members; locked briefly, never across an await and
    /// never while calling the hub.
    replica: Mutex<Replica>,
    /// When each node was last heard; fed by the heartbeat task, read by
    /// the presence task. Locked briefly, never across an await.
    liveness: Mutex<Liveness>,
    /// The rooms stream's epoch (its creation time), which the ids of its
    /// lines carry; set by the rooms task.
    pub rooms_epoch: AtomicU64,
    /// The history stream, once the rooms task set it up; read by
    /// `/history` (cloned out, never held across an await).
    history_stream: Mutex<Option<async_nats::jetstream::stream::Stream>>,
    /// The cluster's numbers.
    pub metrics: ClusterMetrics,
}

impl Shared {
    pub(super) fn new(
        node: String,
        outgoing: mpsc::UnboundedSender<Outgoing>,
        metrics: ClusterMetrics,
    ) -> Shared {
        Shared {
            node,
            up: AtomicBool::new(false),
            outgoing,
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            joins: Mutex::default(),
            releases: Mutex::default(),
            released: Notify::new(),
            emptied: Notify::new(),
            idle: Notify::new(),
            unregistered: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            replica: Mutex::default(),
            liveness: Mutex::default(),
            rooms_epoch: AtomicU64::new(0),
            history_stream: Mutex::default(),
            metrics,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(super) fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn history_stream(
        &self,
    ) -> MutexGuard<'_, Option<async_nats::jetstream::stream::Stream>> {
        self.history_stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn liveness(&self) -> MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every release waiting.
    pub(super) fn take_releases(&self) -> Releases {
        std::mem::take(&mut *self.releases.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn joins(&self) -> MutexGuard<'_, Joins> {
        self.joins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the queue to the rooms task is below [`OUTGOING_HIGH`].
    pub(super) async fn room_for_lines(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued.load(Ordering::Relaxed) < OUTGOING_HIGH {
                return;
            }
            drained.await;
        }
    }

    /// The rooms task is done with a queued line.
    pub(super) fn dequeued(&self, line: &Outgoing) {
        let before = self.queued.fetch_sub(line.cost(), Ordering::Relaxed);
        let now = before - line.cost();
        if before >= OUTGOING_LOW && now < OUTGOING_LOW {
            self.drained.notify_waiters();
        }
    }

    /// What the connection of `user`, who just joined `room`, waits on
    /// before it reads on; `None` if it was admitted already.
    pub(super) fn admission(&self, room: RoomName, user: UserName) -> Option<Arc<Notify>> {
        let joins = self.joins();
        let waiting = joins.waiting.get(&(room, user.key()))?;
        Some(waiting.admitted.clone())
    }

    /// A join line of this node came back (or is delivered here without
    /// the stream): if it is the join waiting for it, that join is
    /// admitted, its connection woken, and whether it was the connection's
    /// first room here returned.
    pub(super) fn admit(&self, room: RoomName, user: UserName, tag: JoinTag) -> Option<bool> {
        let mut joins = self.joins();
        let key = (room, user.key());
        if joins.waiting.get(&key).is_none_or(|w| w.tag != tag) {
            return None;
        }
        let waiting = joins.waiting.remove(&key)?;
        waiting.admitted.notify_one();
        Some(waiting.first)
    }

    /// Queues a line for the rooms task; false once it has stopped.
    fn enqueue(&self, line: Outgoing) -> bool {
        let cost = line.cost();
        self.queued.fetch_add(cost, Ordering::Relaxed);
        if self.outgoing.send(line).is_err() {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Relay for Shared {
    fn publish(&self, room: RoomName, event: RoomEvent, line: &Bytes) -> bool {
        let mut lines = 1;
        let kind = match event {
            RoomEvent::Said { lines: said } => {
                lines = said;
                Kind::Line
            }
            RoomEvent::Joined { user, first } => {
                if !self.is_up() {
                    // Joined while the link is not up (down, or coming back
                    // and past the presence snapshot): the name still has
                    // to be registered once it is.
                    self.unregistered.store(true, Ordering::SeqCst);
                }
                let mut joins = self.joins();
                let tag = joins.next_tag;
                joins.next_tag += 1;
                let admitted = Arc::new(Notify::new());
                joins.waiting.insert(
                    (room, user.key()),
                    Waiting {
                        tag,
                        first,
                        admitted,
                    },
                );
                Kind::Join {
                    node: self.node.clone(),
                    user,
                    tag,
                }
            }
            RoomEvent::Left { user } => Kind::Leave {
                node: self.node.clone(),
                user,
            },
            RoomEvent::Private { from, to } => Kind::Private {
                from: from.key(),
                to,
            },
            RoomEvent::Removed { user } => Kind::Removed { user },
        };
        let joiner = match &kind {
            Kind::Join { user, tag, .. } => Some((*user, *tag)),
            _ => None,
        };
        let line = Outgoing {
            room,
            kind,
            line: line.clone(),
            lines,
        };
        if self.enqueue(line) {
            return true;
        }
        if let Some((user, tag)) = joiner {
            // The hub admits the joiner itself.
            self.admit(room, user, tag);
        }
        false
    }

    fn room_emptied(&self, _room: RoomName) {
        self.emptied.notify_one();
        self.idle.notify_one();
    }

    fn released(&self, room: RoomName, user: UserName) {
        {
            let mut releases = self.releases.lock().unwrap_or_else(|e| e.into_inner());
            let key = (room, user.key());
            if releases.names.len() < MAX_RELEASES || releases.names.contains_key(&key) {
                releases.names.insert(key, user);
            } else {
                releases.overflowed = true;
            }
        }
        self.released.notify_one();
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
    use futures_util::FutureExt;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn shared() -> (Shared, mpsc::UnboundedReceiver<Outgoing>) {
        let (outgoing, rooms) = mpsc::unbounded_channel();
        let metrics = Metrics::new(true).cluster().unwrap().clone();
        (Shared::new("a".into(), outgoing, metrics), rooms)
    }

    #[test]
    fn a_join_made_while_the_link_is_down_is_registered_once_it_is_up() {
        let (shared, mut rooms) = shared();
        let line = Bytes::from_static(b"x\r\n");
        assert!(shared.publish(n("r"), RoomEvent::Said { lines: 1 }, &line));
        assert!(!shared.unregistered.load(Ordering::SeqCst));
        let joined = RoomEvent::Joined {
            user: n("amy"),
            first: true,
        };
        assert!(shared.publish(n("r"), joined, &line), "queued in order");
        assert!(shared.unregistered.load(Ordering::SeqCst));
        assert_eq!(rooms.try_recv().unwrap().kind, Kind::Line);
        assert!(matches!(rooms.try_recv().unwrap().kind, Kind::Join { .. }));
    }

    #[test]
    fn releases_are_coalesced_and_bounded() {
        let (shared, _rooms) = shared();
        for _ in 0..3 {
            shared.released(n("r"), n("Amy"));
        }
        shared.released(n("r"), n("amy"));
        let taken = shared.take_releases();
        assert_eq!(taken.names.len(), 1);
        assert!(!taken.overflowed);
        for i in 0..MAX_RELEASES + 10 {
            shared.released(n(&format!("r{i}")), n("amy"));
        }
        let taken = shared.take_releases();
        assert_eq!(taken.names.len(), MAX_RELEASES);
        assert!(taken.overflowed);
        assert!(shared.take_releases().names.is_empty());
    }

    #[test]
    fn only_the_latest_join_admits_its_joiner() {
        let (shared, mut rooms) = shared();
        let line = Bytes::from_static(b"amy has joined\r\n");
        let tags: Vec<JoinTag> = (0..2)
            .map(|_| {
                shared.publish(
                    n("r"),
                    RoomEvent::Joined {
                        user: n("amy"),
                        first: true,
                    },
                    &line,
                );
                match rooms.try_recv().unwrap().kind {
                    Kind::Join { tag, .. } => tag,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        let admitted = shared.admission(n("r"), n("AMY")).expect("waiting");
        assert_eq!(
            shared.admit(n("r"), n("amy"), tags[0]),
            None,
            "an older join"
        );
        assert_eq!(shared.admit(n("r"), n("amy"), tags[1]), Some(true));
        assert!(shared.admission(n("r"), n("amy")).is_none());
        // The wake-up is kept for a connection that was not waiting yet.
        assert!(admitted.notified().now_or_never().is_some());
    }

    #[test]
    fn the_queue_gate_closes_when_full_and_opens_when_drained() {
        let (shared, mut rooms) = shared();
        let line = Bytes::from(vec![b'x'; 64 * 1024]);
        assert!(shared.room_for_lines().now_or_never().is_some());
        while shared.queued.load(Ordering::Relaxed) < OUTGOING_HIGH {
            shared.publish(n("r"), RoomEvent::Said { lines: 1 }, &line);
        }
        let mut gate = Box::pin(shared.room_for_lines());
        assert!((&mut gate).now_or_never().is_none(), "closed");
        while shared.queued.load(Ordering::Relaxed) >= OUTGOING_LOW {
            let queued = rooms.try_recv().unwrap();
            shared.dequeued(&queued);
        }
        assert!(gate.now_or_never().is_some(), "open again");
    }
}
