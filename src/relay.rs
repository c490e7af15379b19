//! The hook through which several nodes share their rooms.
//!
//! A single node needs none of this: its [`Hub`](crate::hub::Hub) orders and
//! delivers every room line under the room's lock. When nodes are joined
//! into a cluster, the hub hands each room line to a [`Relay`] instead; the
//! relay carries it to every node (this one included), and each node's hub
//! delivers what comes back, so that every member everywhere sees the lines
//! in the order the relay's transport gave them.
//!
//! The trait is plain and synchronous so that the core stays free of any
//! runtime and still builds for wasm32: a relay must answer at once and
//! never block (it queues, and does its I/O elsewhere). The hub calls it
//! with at most one room lock held and the relay must never call back into
//! the hub from these methods.

use std::fmt;

use bytes::Bytes;

use crate::protocol::names::{RoomName, UserName};

/// The cluster's answer to a name claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameClaim {
    /// The name is this user's: confirmed by the cluster, or (the link not
    /// up) checked against this node only, as PROTOCOL.md allows then.
    Granted,
    /// Someone on another node has it: a failed attempt, `name taken`.
    Taken,
    /// The link is up but the cluster did not confirm the name in time:
    /// `cluster busy, try again`, not a failed attempt. Never granted on
    /// one node's word while the link counts as up (PROTOCOL.md, Cluster).
    Busy,
}

/// What a room line means, for a relay that must carry more than its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEvent {
    /// Messages or `/me` lines said one after another by one member: one
    /// or more whole lines, `lines` of them; the text is everything.
    Said {
        /// How many lines the buffer holds.
        lines: usize,
    },
    /// `<user> has joined`. The joiner receives nothing of the room until
    /// the relay admits it ([`Arrival::Admit`](crate::hub::Arrival::Admit))
    /// with this very line, so that its first room line is its own join, as
    /// on a single node.
    Joined {
        /// Who joined, as written.
        user: UserName,
        /// Whether this is the connection's first room here (a JOIN, not
        /// a `/join` from another room).
        first: bool,
    },
    /// `<user> has left`.
    Left {
        /// Who left, as written.
        user: UserName,
    },
    /// A private line, for the member whose look-alike key is `to`, echoed
    /// to `from`.
    Private {
        /// The sender, as written.
        from: UserName,
        /// The recipient, as it joined.
        to: UserName,
    },
    /// An operator is removing `user`: `*** <user> was kicked by <op>`
    /// (or banned, with a reason), for every member but `user`.
    Removed {
        /// Who is removed, as joined.
        user: UserName,
    },
}

/// Carries room traffic and presence between nodes.
pub trait Relay: Send + Sync + fmt::Debug {
    /// Offers a room line. `true`: the relay took it, and the line will come
    /// back through [`Hub::deliver`](crate::hub::Hub::deliver) for local
    /// members too, after every line this node offered before it (whether
    /// the relay carried them to other nodes or, its link down, only back
    /// here). `false`: the relay has stopped; the hub delivers the line to
    /// local members itself.
    fn publish(&self, room: RoomName, event: RoomEvent, line: &Bytes) -> bool;

    /// The last local member, joined or reserved, has left `room`.
    fn room_emptied(&self, room: RoomName);

    /// A local membership of `user` in `room` ended, whether it had joined
    /// or only reserved the name; its cluster-wide claim may go.
    fn released(&self, room: RoomName, user: UserName);

    /// Members of `room` on other nodes.
    fn remote_members(&self, room: RoomName) -> Vec<UserName>;

    /// Rooms with members on other nodes, and how many there are.
    fn remote_rooms(&self) -> Vec<(RoomName, usize)>;
}

/// A relay for unit tests: it keeps what it is given and hands it back on
/// request, as a cluster of one node would.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use bytes::Bytes;

    use super::{Relay, RoomEvent};
    use crate::hub::{Arrival, Hub};
    use crate::protocol::names::{Name, RoomName, UserName};

    fn name(s: &str) -> Name {
        Name::parse(s).expect("a test name")
    }

    /// Records room lines; stopped while `down` is set. It knows
    /// one remote member, `remote` in room `r`, and a remote room `far`.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub down: AtomicBool,
        sent: Mutex<Vec<(RoomName, RoomEvent, Bytes)>>,
    }

    impl Relay for Recorder {
        fn publish(&self, room: RoomName, event: RoomEvent, line: &Bytes) -> bool {
            if self.down.load(Ordering::Relaxed) {
                return false;
            }
            self.sent.lock().unwrap().push((room, event, line.clone()));
            true
        }
        fn room_emptied(&self, _: RoomName) {}
        fn released(&self, _: RoomName, _: UserName) {}
        fn remote_members(&self, room: RoomName) -> Vec<UserName> {
            if room == name("r") {
                vec![name("remote")]
            } else {
                vec![]
            }
        }
        fn remote_rooms(&self) -> Vec<(RoomName, usize)> {
            vec![(name("r"), 1), (name("far"), 2)]
        }
    }

    impl Recorder {
        /// Hands everything published back to the hub, as the cluster would.
        pub(crate) fn echo(&self, hub: &Hub) {
            let sent = std::mem::take(&mut *self.sent.lock().unwrap());
            for (room, event, line) in sent {
                let arrival = match event {
                    RoomEvent::Said { lines } => Arrival::Said { lines, stamp: None },
                    RoomEvent::Left { user } => Arrival::Left { user },
                    RoomEvent::Joined { user, .. } => Arrival::Admit { user },
                    RoomEvent::Private { from, to } => Arrival::Private {
                        from: from.key(),
                        to,
                    },
                    RoomEvent::Removed { user } => Arrival::Removed { user },
                };
                hub.deliver(room, arrival, line);
            }
        }
    }
}
