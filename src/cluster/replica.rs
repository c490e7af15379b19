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

use std::collections::HashMap;
use std::sync::Arc;

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
}
