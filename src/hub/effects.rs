//! What plugins do in rooms besides deciding: a bot's line and a notice to
//! one member. Kept apart from the user paths because a bot has no
//! membership: its line enters the room as a user's does (kept in history,
//! through the relay in a cluster), but nobody waits for its echo.

use super::{Hub, read};
use crate::hooks::Effect;
use crate::protocol::json::Event;
use crate::protocol::names::{RoomName, UserName};
use crate::protocol::reply;
use crate::relay::RoomEvent;

impl Hub {
    /// Carries out what hooks asked for, in order. A bot's line into a
    /// room with nobody here, or a notice to someone not here, is skipped.
    pub fn apply(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Say { room, bot, text } => {
                    self.say_as(room, bot, &text);
                }
                Effect::Notice { room, user, text } => {
                    self.tell(room, user, &text);
                }
            }
        }
    }

    /// `<bot>: <text>` in `room`, as if a member had said it: kept in
    /// history and, in a cluster, published for every node. Returns whether
    /// the room has anyone here; a room with nobody here hears nothing.
    pub fn say_as(&self, room: RoomName, bot: UserName, text: &str) -> bool {
        let Some(room) = read(&self.rooms).get(&room).cloned() else {
            return false;
        };
        let line = reply::said(bot, text);
        let members = room.lock();
        if members.removed {
            return false;
        }
        let relayed = self
            .relay
            .as_ref()
            .is_some_and(|r| r.publish(room.name, RoomEvent::Said { lines: 1 }, &line));
        if !relayed {
            let stamp = room.keep(&line);
            members.broadcast(&line, || room.said_json(&line, stamp, None));
            drop(members);
            room.trim_history();
        }
        true
    }

    /// `*** <text>` (an `info` event) to `user` in `room`, here. Returns
    /// whether the member was found.
    pub fn tell(&self, room: RoomName, user: UserName, text: &str) -> bool {
        let Some(room) = read(&self.rooms).get(&room).cloned() else {
            return false;
        };
        let line = reply::info(text);
        let members = room.lock();
        members.send_to(&user.key(), &line, |_| Event::Info { text }.encode())
    }

    /// Whether `room` has a joined member here.
    pub fn has_members(&self, room: RoomName) -> bool {
        read(&self.rooms)
            .get(&room)
            .is_some_and(|r| r.joined.load(std::sync::atomic::Ordering::Relaxed) > 0)
    }

    /// The rooms with a member who receives here, for a plugin's tick.
    pub fn rooms_here(&self) -> Vec<RoomName> {
        read(&self.rooms)
            .values()
            .filter(|room| room.joined.load(std::sync::atomic::Ordering::Relaxed) > 0)
            .map(|room| room.name)
            .collect()
    }
}
