//! This node's copy of who is where on the other nodes, for `/who`,
//! `/rooms`, `/msg` and for clearing dead nodes.
//!
//! It is fed from two sides: the presence bucket's watch (the truth, in
//! revision order, but a little behind) and the join and leave headers of
//! the room lines this node receives (in step with what its users see, so
//! that someone who just saw `bob has joined` finds bob in `/who`). Both
//! apply in arrival order; since the watch delivers every key's changes in
//! order, its last word for a key is always the bucket's, and a difference
//! between the two sides lasts only as long as the watch is behind.
//!
//! This node's own members are not here: the hub knows them.
//!
//! After the link comes back, the watch starts over; [`Replica::begin`]
//! and [`Replica::finish`] drop whatever the new pass did not confirm.
//!
//! # What this node's users were told
//!
//! While the link is down, the other nodes' joins and leaves reach nobody
//! here, and when every node lost it at once (nats-server itself went
//! away), each repairs on its return with `present` and `gone` lines that a
//! node still resubscribing misses. So from a loss until [`TOLD_GRACE`]
//! after the link is up again, the replica also keeps what this node's
//! users were last told of the other nodes' members ([`Told`]):
//!
//! - until this node reads its rooms again (the link is up), the presence
//!   watch tells them, from the bucket, of every difference, and those
//!   lines are held until `*** cluster link restored` has gone out;
//! - `present` and `gone` lines are shown only if they are news to them;
//! - join and leave lines that arrive once the link is up are always
//!   shown, as they happen.
//!
//! Each change is so shown once, whichever way it comes first. Changes the
//! bucket no longer shows (a marker already swept, a bucket that
//! nats-server lost) are seen in `/who` but not as lines.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hub::Arrival;

use crate::protocol::names::{Name, RoomName, UserName};

/// Remote members, by room and folded user name.
#[derive(Debug, Default)]
pub(super) struct Replica {
    rooms: HashMap<RoomName, HashMap<Name, Entry>>,
    /// Entries in all rooms, for the presence metric.
    len: usize,
    /// The current pass of the watch; entries seen in an older one are
    /// dropped when the current one is complete.
    pass: u64,
    /// From a link loss until a little after the bucket was read again.
    told: Option<Told>,
}

/// How long after the link is up again repair lines are still checked
/// against what this node's users were told: the other nodes repair as
/// soon as their own link is back, which on one nats-server is within a
/// few seconds of this node's.
pub(super) const TOLD_GRACE: Duration = Duration::from_secs(10);

/// The other nodes' members as this node's users last heard of them.
#[derive(Debug)]
struct Told {
    members: HashMap<(RoomName, Name), (UserName, Arc<str>)>,
    /// Lines the watch found to tell, held until the link is up: by room.
    held: Vec<(RoomName, Arrival, Bytes)>,
    /// Set once the link is up again: when to stop checking.
    until: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Entry {
    user: UserName,
    node: Arc<str>,
    pass: u64,
}

impl Replica {
    /// `user` is in `room` on `node`. True if that is news: the entry was
    /// missing or said another node.
    pub(super) fn put(&mut self, room: RoomName, user: UserName, node: &str) -> bool {
        let pass = self.pass;
        let members = self.rooms.entry(room).or_default();
        match members.get_mut(&user.key()) {
            Some(entry) if &*entry.node == node => {
                entry.user = user;
                entry.pass = pass;
                false
            }
            Some(entry) => {
                *entry = Entry {
                    user,
                    node: node.into(),
                    pass,
                };
                true
            }
            None => {
                members.insert(
                    user.key(),
                    Entry {
                        user,
                        node: node.into(),
                        pass,
                    },
                );
                self.len += 1;
                true
            }
        }
    }

    /// Removes the member with folded name `user` from `room`, only if it
    /// is on `node` when one is given. True if it was there.
    pub(super) fn remove(&mut self, room: RoomName, user: Name, node: Option<&str>) -> bool {
        let Some(members) = self.rooms.get_mut(&room) else {
            return false;
        };
        let matches = members
            .get(&user)
            .is_some_and(|e| node.is_none_or(|n| &*e.node == n));
        if matches {
            members.remove(&user);
            self.len -= 1;
            if members.is_empty() {
                self.rooms.remove(&room);
            }
        }
        matches
    }

    /// The members of `room`.
    pub(super) fn members(&self, room: RoomName) -> Vec<UserName> {
        self.rooms
            .get(&room)
            .map(|m| m.values().map(|e| e.user).collect())
            .unwrap_or_default()
    }

    /// Every room and its number of members.
    pub(super) fn rooms(&self) -> Vec<(RoomName, usize)> {
        self.rooms.iter().map(|(r, m)| (*r, m.len())).collect()
    }

    /// Every node that has members.
    pub(super) fn nodes(&self) -> Vec<Arc<str>> {
        let mut nodes: Vec<Arc<str>> = Vec::new();
        for entry in self.rooms.values().flat_map(HashMap::values) {
            if !nodes.contains(&entry.node) {
                nodes.push(entry.node.clone());
            }
        }
        nodes
    }

    /// The members `node` has, by room.
    pub(super) fn members_of(&self, node: &str) -> Vec<(RoomName, UserName)> {
        self.rooms
            .iter()
            .flat_map(|(room, m)| {
                m.values()
                    .filter(|e| &*e.node == node)
                    .map(|e| (*room, e.user))
            })
            .collect()
    }

    /// Entries in all rooms.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// A new pass of the watch starts.
    pub(super) fn begin(&mut self) {
        self.pass += 1;
    }

    /// The link fell: from now on, remember what this node's users were
    /// told (if a loss before is still being repaired, that is kept).
    pub(super) fn lost(&mut self) {
        if let Some(told) = &mut self.told {
            told.until = None;
            return;
        }
        let members = self
            .rooms
            .iter()
            .flat_map(|(room, m)| {
                m.iter()
                    .map(|(key, e)| ((*room, *key), (e.user, e.node.clone())))
            })
            .collect();
        self.told = Some(Told {
            members,
            held: Vec::new(),
            until: None,
        });
    }

    /// Whether this node's users are to be shown that `user` on `node`
    /// joined `room`: always, unless a loss is being repaired and they
    /// already know. Either way, from now on they know.
    pub(super) fn tell_joined(&mut self, room: RoomName, user: UserName, node: &str) -> bool {
        let Some(told) = &mut self.told else {
            return true;
        };
        let known = told
            .members
            .get(&(room, user.key()))
            .is_some_and(|(_, n)| &**n == node);
        if !known {
            told.members.insert((room, user.key()), (user, node.into()));
        }
        !known
    }

    /// Whether this node's users are to be shown that the member with
    /// folded name `user` left `room` (from `node`, if given), and as whom:
    /// `Some` always when no loss is being repaired (as `fallback`), and
    /// otherwise only if they knew the member was there. Either way, from
    /// now on they know it is gone.
    pub(super) fn tell_left(
        &mut self,
        room: RoomName,
        user: Name,
        node: Option<&str>,
        fallback: Option<UserName>,
    ) -> Option<UserName> {
        let Some(told) = &mut self.told else {
            return fallback;
        };
        let key = (room, user);
        let matches = told
            .members
            .get(&key)
            .is_some_and(|(_, n)| node.is_none_or(|node| &**n == node));
        if matches {
            told.members.remove(&key).map(|(user, _)| user)
        } else {
            None
        }
    }

    /// Whether a loss is being repaired.
    pub(super) fn repairing(&self) -> bool {
        self.told.is_some()
    }

    /// Holds a line the watch found to tell until the link is up.
    pub(super) fn hold(&mut self, room: RoomName, arrival: Arrival, line: Bytes) {
        if let Some(told) = &mut self.told {
            told.held.push((room, arrival, line));
        }
    }

    /// The link is up: the held lines, to deliver now; repair lines are
    /// checked for [`TOLD_GRACE`] more.
    pub(super) fn up(&mut self) -> Vec<(RoomName, Arrival, Bytes)> {
        let Some(told) = &mut self.told else {
            return Vec::new();
        };
        told.until = Some(Instant::now() + TOLD_GRACE);
        std::mem::take(&mut told.held)
    }

    /// Stops checking once [`TOLD_GRACE`] has passed since the link was up
    /// again.
    pub(super) fn expire(&mut self, now: Instant) {
        if self
            .told
            .as_ref()
            .and_then(|t| t.until)
            .is_some_and(|until| now >= until)
        {
            self.told = None;
        }
    }

    /// The current pass has seen the whole bucket: whatever it did not
    /// confirm is gone.
    pub(super) fn finish(&mut self) {
        let pass = self.pass;
        let mut dropped = 0;
        self.rooms.retain(|_, members| {
            let before = members.len();
            members.retain(|_, e| e.pass == pass);
            dropped += before - members.len();
            !members.is_empty()
        });
        self.len -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn put_and_remove_report_news() {
        let mut r = Replica::default();
        assert!(r.put(n("r"), n("Bob"), "a"));
        assert!(!r.put(n("r"), n("bob"), "a"));
        assert_eq!(r.members(n("r")), [n("bob")]);
        assert!(!r.remove(n("r"), n("bob"), Some("b")));
        assert!(r.remove(n("r"), n("bob"), Some("a")));
        assert!(!r.remove(n("r"), n("bob"), None));
        assert_eq!(r.len(), 0);
        assert!(r.rooms().is_empty());
    }

    #[test]
    fn a_new_pass_drops_what_it_did_not_see() {
        let mut r = Replica::default();
        r.put(n("r"), n("a"), "x");
        r.put(n("r"), n("b"), "y");
        r.begin();
        r.put(n("r"), n("b"), "y");
        r.finish();
        assert_eq!(r.members(n("r")), [n("b")]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.nodes().len(), 1);
        assert_eq!(r.members_of("y"), [(n("r"), n("b"))]);
    }

    #[test]
    fn after_a_loss_each_change_is_told_once() {
        let mut r = Replica::default();
        r.put(n("r"), n("Bob"), "b");
        r.put(n("r"), n("carol"), "b");
        assert!(r.tell_joined(n("r"), n("eve"), "b"), "no loss: always told");
        r.lost();
        assert!(r.repairing());
        assert!(
            !r.tell_joined(n("r"), n("bob"), "b"),
            "known before the loss"
        );
        assert!(r.tell_joined(n("r"), n("dave"), "b"));
        assert!(!r.tell_joined(n("r"), n("dave"), "b"), "told once");
        assert_eq!(r.tell_left(n("r"), n("carol"), Some("c"), None), None);
        assert_eq!(
            r.tell_left(n("r"), n("carol"), Some("b"), None),
            Some(n("carol"))
        );
        assert_eq!(r.tell_left(n("r"), n("carol"), None, None), None);
        assert_eq!(r.tell_left(n("r"), n("bob"), None, None), Some(n("Bob")));
        let dave = Arrival::Joined { user: n("dave") };
        r.hold(n("r"), dave, Bytes::from_static(b"dave has joined\r\n"));
        let now = Instant::now();
        r.expire(now + TOLD_GRACE * 2);
        assert!(r.repairing(), "kept until the link is up again");
        assert_eq!(r.up().len(), 1, "held lines go out once up");
        assert!(r.up().is_empty());
        r.expire(Instant::now() + TOLD_GRACE);
        assert!(!r.repairing());
        assert_eq!(
            r.tell_left(n("r"), n("zed"), None, Some(n("zed"))),
            Some(n("zed"))
        );
    }
}
