//! What the hub offers a relay: delivering the room lines it carried back,
//! telling everyone about the cluster link, and listing who is here.
//!
//! Like the rest of the hub, nothing here awaits, and each call holds one
//! room lock at a time, briefly. A relay calls these from its own tasks and
//! must not hold a lock of its own while doing so.

use bytes::Bytes;

use super::{Hub, Stage, read};
use crate::history::ClusterStamp;
use crate::protocol::json::{self, Event, NoticeCode, Time};
use crate::protocol::names::{Name, RoomName, UserName};
use crate::protocol::reply;
use crate::standing::Removal;

/// What a line that came back from the relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// `<user> has joined`, for every member: a join on another node, or
    /// one of this node's that admits nobody.
    Joined {
        /// Who joined.
        user: UserName,
    },
    /// `<user> has left`, for every member.
    Left {
        /// Who left.
        user: UserName,
    },
    /// Lines said one after another by one member, `lines` whole lines in
    /// one buffer, for every member: one push per member for all of them.
    Said {
        /// How many lines the buffer holds.
        lines: usize,
        /// Where the cluster put the burst, which gives its lines the ids
        /// and time every node shows; `None` for a burst kept on this node.
        stamp: Option<ClusterStamp>,
    },
    /// The relayed `<user> has joined` of a member here who is waiting for
    /// it: the member starts receiving, with this line. The relay sends it
    /// once per join, for the join the member made last.
    Admit {
        /// Who joined.
        user: UserName,
    },
    /// A private line for the member whose look-alike key is `to`, echoed
    /// to the sender `from` (its key too) if the sender is here.
    Private {
        /// The sender's look-alike key ([`Name::key`]).
        from: Name,
        /// The recipient, as it joined.
        to: UserName,
    },
    /// An operator removed `user`: the line is for everyone else.
    Removed {
        /// Who, as joined.
        user: UserName,
    },
}

/// A member's name and outbox.
pub type MemberOutbox = (UserName, std::sync::Arc<crate::outbox::Outbox>);

impl Hub {
    /// Delivers a line the relay carried back to this node's members of
    /// `room`. Nothing is delivered while the server stops.
    pub fn deliver(&self, room: RoomName, arrival: Arrival, line: Bytes) {
        if self.is_closing() {
            return;
        }
        let Some(room) = read(&self.rooms).get(&room).cloned() else {
            return;
        };
        let at = self.now();
        let mut members = room.lock();
        match arrival {
            Arrival::Joined { user } | Arrival::Left { user } => {
                let joined = matches!(arrival, Arrival::Joined { .. });
                members.broadcast(&line, || room.membership_json(user, joined, at));
            }
            Arrival::Said {
                lines,
                stamp: shared,
            } => {
                let stamp = room.keep(&line);
                members.broadcast_lines(&line, lines, || room.said_json(&line, stamp, shared));
                // The sender, if here, is waiting for its burst to come back
                // (see `Outbox::poll_echoes`), and is told once the burst is
                // in its queue. Names are unique in a room, so the name the
                // burst starts with is its sender's.
                let first = reply::texts_of(&line).next().unwrap_or_default();
                let sender = json::split_said(first)
                    .and_then(|(_, user, _)| Name::parse(user))
                    .and_then(|user| members.by_key.get(&user.key()));
                if let Some(sender) = sender {
                    sender.outbox.echoed();
                }
                drop(members);
                room.trim_history();
            }
            Arrival::Admit { user } => {
                if let Some(joiner) = members.by_key.get_mut(&user.key()) {
                    if joiner.stage == Stage::Waiting {
                        joiner.stage = Stage::Joined;
                    }
                }
                members.broadcast(&line, || room.membership_json(user, true, at));
            }
            Arrival::Removed { user } => {
                let text = reply::texts_of(&line).next().unwrap_or_default();
                let Some(removal) = std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| Removal::parse(user.as_str(), t))
                else {
                    return;
                };
                members.broadcast_removal(room.name, user, &line, &removal);
            }
            Arrival::Private { from, to } => {
                let text = reply::texts_of(&line).next().unwrap_or_default();
                let Some((sender, text)) = json::split_private(text) else {
                    return;
                };
                let json = |_| {
                    Event::Private {
                        from: sender,
                        to: to.as_str(),
                        text,
                        time: Time(at),
                    }
                    .encode()
                };
                members.send_to(&to.key(), &line, json);
                if from != to.key() {
                    members.send_to(&from, &line, json);
                }
            }
        }
    }

    /// Stops every member here from waiting for its own lines to come back:
    /// those on their way when the cluster link was lost never will.
    pub fn forget_echoes(&self) {
        for room in self.all_rooms() {
            for member in room.lock().by_key.values() {
                member.outbox.forget_echoes();
            }
        }
    }

    /// Tells every member of every room here of `code`.
    pub fn notice(&self, code: NoticeCode) {
        let (line, json) = (reply::notice(code), json::notice(code));
        for room in self.all_rooms() {
            room.lock().broadcast(&line, || json.clone());
        }
    }

    /// Tells one member here of `code`, if it receives.
    pub fn notice_to(&self, room: RoomName, user: Name, code: NoticeCode) {
        let Some(room) = read(&self.rooms).get(&room).cloned() else {
            return;
        };
        room.lock()
            .send_to(&user, &reply::notice(code), |_| json::notice(code));
    }

    /// Every member in a room here, with its outbox (whose standing tells
    /// its address, transport and age), by room.
    pub fn member_outboxes(&self) -> Vec<(RoomName, Vec<MemberOutbox>)> {
        self.all_rooms()
            .into_iter()
            .map(|room| {
                let members = room.lock();
                let list = members
                    .by_key
                    .values()
                    .filter(|m| m.stage.is_in())
                    .map(|m| (m.name, m.outbox.clone()))
                    .collect();
                (room.name, list)
            })
            .collect()
    }

    /// Sends `*** <text>` (an `info` event to JSON clients) to every
    /// member of `room` here; returns how many got it.
    pub fn announce(&self, room: RoomName, text: &str) -> usize {
        let Some(room) = read(&self.rooms).get(&room).cloned() else {
            return 0;
        };
        let line = reply::info(text);
        let event = Event::Info { text }.encode();
        let members = room.lock();
        // Counted as taken: a member whose connection is closing takes none.
        members
            .by_key
            .values()
            .filter(|m| m.stage.receives())
            .filter(|m| {
                let buffer = match m.outbox.format() {
                    json::Format::Lines => line.clone(),
                    json::Format::Json => event.clone(),
                };
                m.outbox.push(buffer)
            })
            .count()
    }

    /// Every member in a room here (reservations excluded), by room.
    pub fn members(&self) -> Vec<(RoomName, UserName)> {
        let mut all = Vec::new();
        for room in self.all_rooms() {
            let members = room.lock();
            all.extend(
                members
                    .by_key
                    .values()
                    .filter(|m| m.stage.is_in())
                    .map(|m| (room.name, m.name)),
            );
        }
        all
    }

    /// Whether `user` (or a look-alike) is in `room` here, or has reserved the
    /// name there.
    pub fn holds_name(&self, room: RoomName, user: UserName) -> bool {
        read(&self.rooms)
            .get(&room)
            .is_some_and(|r| r.lock().by_key.contains_key(&user.key()))
    }

    /// Whether `room` has anyone here, joined or reserved.
    pub fn has_room(&self, room: RoomName) -> bool {
        read(&self.rooms).contains_key(&room)
    }

    /// The names of every room here.
    pub fn room_names(&self) -> Vec<RoomName> {
        read(&self.rooms).keys().copied().collect()
    }

    fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn all_rooms(&self) -> Vec<std::sync::Arc<super::Room>> {
        read(&self.rooms).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::tests::{drain, name};
    use crate::outbox::Outbox;
    use crate::protocol::reply;
    use crate::relay::testing::Recorder;

    fn joined(hub: &Arc<Hub>, user: &str) -> (crate::hub::Membership, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(0));
        let mut m = hub.reserve(name("r"), name(user), &outbox).unwrap();
        m.join(true);
        (m, outbox)
    }

    #[test]
    fn a_joiner_hears_nothing_before_its_own_join_comes_back() {
        let relay = Arc::new(Recorder::default());
        let hub = Hub::with_relay(relay.clone());
        let (_alice, a) = joined(&hub, "alice");
        hub.deliver(
            name("r"),
            Arrival::Said {
                lines: 1,
                stamp: None,
            },
            reply::said(name("x"), "early"),
        );
        assert!(drain(&a).is_empty());
        relay.echo(&hub);
        hub.deliver(
            name("r"),
            Arrival::Said {
                lines: 1,
                stamp: None,
            },
            reply::said(name("x"), "late"),
        );
        assert_eq!(drain(&a), ["alice has joined", "x: late"]);
    }

    #[test]
    fn who_rooms_and_msg_count_remote_members() {
        let relay = Arc::new(Recorder::default());
        let hub = Hub::with_relay(relay.clone());
        let (alice, a) = joined(&hub, "alice");
        relay.echo(&hub);
        drain(&a);
        let mut who = alice.who();
        who.sort_by_key(|n| n.to_string());
        assert_eq!(who, [name("alice"), name("remote")]);
        let mut rooms = hub.rooms();
        rooms.sort_by_key(|(n, _)| n.to_string());
        assert_eq!(rooms, [(name("far"), 2), (name("r"), 2)]);
        alice.send_private("REMOTE", "hi").unwrap();
        relay.echo(&hub);
        assert_eq!(drain(&a), ["alice (private): hi"]);
        assert!(alice.send_private("nobody", "x").is_err());
    }

    #[test]
    fn a_stopped_relay_leaves_delivery_to_the_hub() {
        let relay = Arc::new(Recorder::default());
        let hub = Hub::with_relay(relay.clone());
        let (alice, a) = joined(&hub, "alice");
        relay.echo(&hub);
        relay.down.store(true, std::sync::atomic::Ordering::Relaxed);
        alice.broadcast(reply::said(name("alice"), "x"));
        hub.notice(NoticeCode::Shutdown);
        assert_eq!(
            drain(&a),
            ["alice has joined", "alice: x", "*** server shutting down"]
        );
    }
}
