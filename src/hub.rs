//! Rooms and their members: the only state connections share.
//!
//! The room index maps a name to its [`Room`] and is write-locked only when
//! a room is created or removed; a join into an existing room takes a read
//! lock for the look-up. Each room has its own mutex over its members, so
//! traffic in one room never waits on another. A broadcast runs under its
//! room's lock and pushes the same encoded [`Bytes`] into every member's
//! [`Outbox`]: that one lock is what gives every member the same order, and
//! the push is a short, non-blocking queue append, never I/O. No lock here is
//! ever held across an await (the hub has no awaits at all), and a room lock
//! is never held while taking the index lock, so the two cannot deadlock.
//!
//! Membership is a value, [`Membership`]: dropping it leaves the room, so a
//! connection that ends for any reason cannot leave a ghost behind.
//!
//! A room's message lines are also kept in its [`RoomLog`] for `/history`
//! (see `history`), under the room's lock, so that history has the room's
//! order.
//!
//! Members get lines or JSON events, as their [`Outbox`] says. A broadcast
//! encodes each form at most once, the JSON one only if a member wants it,
//! and every member of a form shares that one buffer.
//!
//! With a [`Relay`] (a cluster of nodes), room lines are handed to the relay
//! instead of being broadcast here, and come back through [`Hub::deliver`]
//! (see the `arrival` module); names, `/who` and `/rooms` then also count
//! the members the relay knows on other nodes.

mod arrival;
mod effects;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::Bytes;

pub use arrival::Arrival;

use crate::history::{ClusterStamp, History, Millis, RoomLog, Stamp};
use crate::hooks::Hooks;
use crate::moderation::{Action, Ban, BanChange, BanTarget, Done, Moderated, Moderation, Order};
use crate::outbox::Outbox;
use crate::protocol::json::{self, Event, Format, Time};
use crate::protocol::names::{Name, RoomName, UserName};
use crate::protocol::reply;
use crate::relay::{Relay, RoomEvent};
use crate::standing::{Eviction, EvictionKind, Removal};

/// All rooms.
#[derive(Debug)]
pub struct Hub {
    /// Room index. Write-locked only to add or remove a room.
    rooms: RwLock<HashMap<RoomName, Arc<Room>>>,
    /// Set when the server stops: everyone is leaving at once, and each
    /// must see `* server shutting down` next, not a flurry of `has left`.
    closing: AtomicBool,
    /// The cluster this node belongs to, if any.
    relay: Option<Arc<dyn Relay>>,
    /// What rooms remember, and the clock events are stamped by.
    history: Arc<History>,
    /// Bans, live connections, and the standing of each.
    moderation: Arc<Moderation>,
    /// The plugins' hooks, if any are loaded.
    hooks: OnceLock<Arc<dyn Hooks>>,
}

/// One room: its members behind its own lock.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    /// Its history, and where it goes back to when the room is dropped.
    log: (Arc<History>, Arc<RoomLog>),
    /// Locked for every broadcast, join, leave and member look-up.
    members: Mutex<Members>,
    /// Joined members, readable without the lock for `/rooms`.
    joined: AtomicUsize,
}

#[derive(Debug, Default)]
struct Members {
    /// Keyed by the user name's look-alike key ([`Name::key`]): the key is
    /// what keeps `aIice` out of a room that has `alice`. Small rooms are a Vec inside halfbrown,
    /// which is faster to scan than hashing for a handful of members.
    by_key: halfbrown::HashMap<Name, Member>,
    /// The room emptied and was taken out of the index; a joiner that still
    /// holds it must look again.
    removed: bool,
}

#[derive(Debug)]
struct Member {
    /// The name as the user wrote it.
    name: UserName,
    /// Where this member's lines go.
    outbox: Arc<Outbox>,
    /// How far the member is in.
    stage: Stage,
}

/// A member's way into a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The name is reserved (by a user moving in from another room, or one
    /// whose name is being claimed across the cluster): it blocks the name
    /// but receives nothing yet.
    Reserved,
    /// Joined, and the join line went to the relay: the member receives
    /// nothing until the relay admits it with that line
    /// ([`Arrival::Admit`]), so that its first room line is its own `has
    /// joined`, as on a single node.
    Waiting,
    /// Joined and receiving.
    Joined,
}

impl Stage {
    /// In the room, for `/who`, `/msg` and counts.
    fn is_in(self) -> bool {
        self != Stage::Reserved
    }

    /// Receives room lines.
    fn receives(self) -> bool {
        self == Stage::Joined
    }
}

/// A join was refused because the name is in use in that room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("name taken")]
pub struct NameTaken;

/// `/msg` named nobody in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such user")]
pub struct NoSuchUser;

impl Default for Hub {
    fn default() -> Self {
        Hub {
            rooms: RwLock::default(),
            closing: AtomicBool::new(false),
            relay: None,
            history: Arc::new(History::off()),
            moderation: Arc::default(),
            hooks: OnceLock::new(),
        }
    }
}

impl Hub {
    /// An empty hub, without history and with a clock at 0: for tests and
    /// embedding.
    pub fn new() -> Arc<Hub> {
        Arc::default()
    }

    /// An empty hub whose rooms span a cluster through `relay`.
    pub fn with_relay(relay: Arc<dyn Relay>) -> Arc<Hub> {
        Arc::new(Hub {
            relay: Some(relay),
            ..Hub::default()
        })
    }

    /// An empty hub, in a cluster through `relay` if given, whose rooms
    /// keep `history` (which also tells the time events are stamped with).
    pub fn with(relay: Option<Arc<dyn Relay>>, history: Arc<History>) -> Arc<Hub> {
        Arc::new(Hub {
            relay,
            history,
            ..Hub::default()
        })
    }

    /// What rooms remember.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Bans and the live connections they reach.
    pub fn moderation(&self) -> &Arc<Moderation> {
        &self.moderation
    }

    /// Carries out an operator's order from another node, if the user it
    /// names is a member of its room here; `None` if not.
    pub fn carry_out(&self, order: &Order) -> Option<Done> {
        let room = read(&self.rooms).get(&Name::parse(&order.room)?).cloned()?;
        let key = Name::parse(&order.user)?.key();
        let (name, outbox) = {
            let members = room.lock();
            let member = members.by_key.get(&key).filter(|m| m.stage.is_in())?;
            (member.name, member.outbox.clone())
        };
        let eviction = |kind| Eviction {
            kind,
            by: order.by.clone(),
            reason: order.reason.clone(),
        };
        let mut banned = None;
        tracing::info!(action = ?order.action, room = %order.room, user = %name, by = %order.by, "operator's order");
        match order.action {
            Action::Kick => {
                if outbox.evict(eviction(EvictionKind::Kick)) {
                    self.moderation.tally.count(Moderated::Kick);
                }
            }
            Action::Mute => {
                outbox.standing().mute(order.until);
                self.moderation.tally.count(Moderated::Mute);
            }
            Action::Unmute => outbox.standing().unmute(),
            Action::Ban => {
                let target = BanTarget::of_peer(outbox.standing().addr()?);
                let ban = Ban {
                    until: order.until,
                    by: order.by.clone(),
                    reason: order.reason.clone(),
                };
                if !self.moderation.change(BanChange::Added(target, ban)) {
                    return None;
                }
                outbox.evict(eviction(EvictionKind::Ban));
                banned = Some(target);
            }
        }
        Some(Done {
            user: name.as_str().to_owned(),
            banned,
        })
    }

    /// The time, by the clock history keeps.
    pub fn now(&self) -> Millis {
        self.history.now()
    }

    /// The hooks plugins answer through, once set.
    pub fn hooks(&self) -> Option<&Arc<dyn Hooks>> {
        self.hooks.get()
    }

    /// Sets the hooks; later calls are ignored (the hooks themselves may
    /// change what they run, for a reload).
    pub fn set_hooks(&self, hooks: Arc<dyn Hooks>) {
        let _ = self.hooks.set(hooks);
    }

    /// Whether rooms span a cluster: a join must then claim its name
    /// across the cluster before it goes on.
    pub fn has_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// Reserves `user` in `room` without joining yet: the name is blocked
    /// for others, but the member receives nothing until
    /// [`Membership::join`]. This lets a user moving between rooms make
    /// sure of its new place before it leaves the old one.
    pub fn reserve(
        self: &Arc<Self>,
        room_name: RoomName,
        user: UserName,
        outbox: &Arc<Outbox>,
    ) -> Result<Membership, NameTaken> {
        let mut room = self.find_or_create(room_name);
        loop {
            let mut members = room.lock();
            if members.removed {
                drop(members);
                room = self.replace_removed(&room);
                continue;
            }
            let key = user.key();
            if members.by_key.contains_key(&key) {
                return Err(NameTaken);
            }
            members.by_key.insert(
                key,
                Member {
                    name: user,
                    outbox: outbox.clone(),
                    stage: Stage::Reserved,
                },
            );
            drop(members);
            return Ok(Membership {
                hub: self.clone(),
                room,
                user,
                joined: false,
            });
        }
    }

    /// From now on, members leave without a `has left` line.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Every room with its number of members, on every node.
    pub fn rooms(&self) -> Vec<(RoomName, usize)> {
        let mut counts: HashMap<RoomName, usize> = read(&self.rooms)
            .values()
            .map(|room| (room.name, room.joined.load(Ordering::Relaxed)))
            .collect();
        if let Some(relay) = &self.relay {
            for (room, n) in relay.remote_rooms() {
                *counts.entry(room).or_default() += n;
            }
        }
        counts.into_iter().filter(|&(_, n)| n > 0).collect()
    }

    /// Number of users in a room, all rooms together.
    pub fn user_count(&self) -> usize {
        read(&self.rooms)
            .values()
            .map(|room| room.joined.load(Ordering::Relaxed))
            .sum()
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        read(&self.rooms).len()
    }

    fn find_or_create(&self, name: RoomName) -> Arc<Room> {
        if let Some(room) = read(&self.rooms).get(&name) {
            return room.clone();
        }
        write(&self.rooms)
            .entry(name)
            .or_insert_with(|| self.new_room(name))
            .clone()
    }

    fn new_room(&self, name: RoomName) -> Arc<Room> {
        Arc::new(Room {
            name,
            log: (self.history.clone(), self.history.open(name)),
            members: Mutex::default(),
            joined: AtomicUsize::new(0),
        })
    }

    /// `stale` emptied and was marked removed; make sure the index holds a
    /// live room under its name and return that one.
    fn replace_removed(&self, stale: &Arc<Room>) -> Arc<Room> {
        let mut rooms = write(&self.rooms);
        let slot = rooms
            .entry(stale.name)
            .or_insert_with(|| self.new_room(stale.name));
        if Arc::ptr_eq(slot, stale) {
            *slot = self.new_room(stale.name);
        }
        slot.clone()
    }

    /// Takes an emptied room out of the index, unless a newer room already
    /// replaced it.
    fn remove_room(&self, room: &Arc<Room>) {
        let mut rooms = write(&self.rooms);
        if rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.name);
        }
    }
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a burst of message lines in the room's history, with their
    /// time and ids; called under the room's lock.
    fn keep(&self, burst: &[u8]) -> Stamp {
        self.log.0.keep(&self.log.1, burst)
    }

    /// Brings all history under its byte cap; called outside the lock.
    fn trim_history(&self) {
        self.log.0.trim();
    }

    /// A burst of message lines as `say` and `me` events, with the time
    /// and ids `stamp` gave them (or, in a cluster, `shared`: the ones every
    /// node gives them).
    fn said_json(&self, burst: &[u8], stamp: Stamp, shared: Option<ClusterStamp>) -> Bytes {
        let history = &self.log.0;
        let at = shared.map_or(stamp.at, |s| s.at);
        let id = |i| match shared {
            Some(shared) => shared.id(i),
            None => history.id(stamp, i),
        };
        let mut buf = Vec::with_capacity(burst.len() * 2);
        for (i, line) in reply::texts_of(burst).enumerate() {
            match json::split_said(line) {
                Some((kind, user, text)) => json::Said {
                    kind,
                    room: self.name.as_str(),
                    user,
                    text,
                    time: Time(at),
                    id: id(i),
                }
                .put(&mut buf),
                // Not a message line: cannot come from this server, but a
                // member still gets one event per line.
                None => Event::Info {
                    text: &String::from_utf8_lossy(line),
                }
                .put(&mut buf),
            }
        }
        Bytes::from(buf)
    }

    /// `<user> has joined` (or left), as a JSON event of now.
    fn membership_json(&self, user: UserName, joined: bool, at: Millis) -> Bytes {
        let (room, user, time) = (self.name.as_str(), user.as_str(), Time(at));
        if joined {
            Event::Join { room, user, time }.encode()
        } else {
            Event::Leave { room, user, time }.encode()
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.log.0.close(self.name, &self.log.1);
    }
}

impl Members {
    /// Pushes one shared line to every joined member, or to those that get
    /// JSON, its event from `json` (called at most once, and only if one
    /// does). A member whose outbox overflows is killed by the push; its
    /// session then leaves the room.
    fn broadcast(&self, line: &Bytes, json: impl FnOnce() -> Bytes) {
        self.broadcast_lines(line, 1, json);
    }

    /// The same for a buffer of `lines` whole lines (and as many events).
    fn broadcast_lines(&self, chunk: &Bytes, lines: usize, json: impl FnOnce() -> Bytes) {
        let mut json = Encoded::Later(json);
        for member in self.by_key.values().filter(|m| m.stage.receives()) {
            let buffer = match member.outbox.format() {
                Format::Lines => chunk.clone(),
                Format::Json => json.get(),
            };
            member.outbox.push_lines(buffer, lines);
        }
    }

    /// Sends the notice of `user`'s removal to every member but `user`.
    fn broadcast_removal(&self, room: RoomName, user: UserName, line: &Bytes, removal: &Removal) {
        let mut json = Encoded::Later(|| {
            Event::Removed {
                code: "kick",
                text: removal.text,
                room: room.as_str(),
                user: user.as_str(),
                by: removal.by,
                reason: removal.reason,
            }
            .encode()
        });
        let removed = user.key();
        for (key, member) in self.by_key.iter() {
            if *key == removed || !member.stage.receives() {
                continue;
            }
            let buffer = match member.outbox.format() {
                Format::Lines => line.clone(),
                Format::Json => json.get(),
            };
            member.outbox.push(buffer);
        }
    }

    /// Sends `line`, or its event from `json`, to the member whose
    /// look-alike key is `key`, if it receives.
    fn send_to(&self, key: &Name, line: &Bytes, json: impl FnOnce(UserName) -> Bytes) -> bool {
        let Some(member) = self.by_key.get(key).filter(|m| m.stage.receives()) else {
            return false;
        };
        let buffer = match member.outbox.format() {
            Format::Lines => line.clone(),
            Format::Json => json(member.name),
        };
        member.outbox.push(buffer);
        true
    }
}

/// A form of a broadcast, encoded the first time a member wants it.
enum Encoded<F> {
    Later(F),
    Done(Bytes),
}

impl<F: FnOnce() -> Bytes> Encoded<F> {
    fn get(&mut self) -> Bytes {
        if let Encoded::Done(bytes) = self {
            return bytes.clone();
        }
        let Encoded::Later(encode) = std::mem::replace(self, Encoded::Done(Bytes::new())) else {
            return Bytes::new();
        };
        let bytes = encode();
        *self = Encoded::Done(bytes.clone());
        bytes
    }
}

/// A user's place in a room, reserved or joined. Dropping it leaves.
#[derive(Debug)]
pub struct Membership {
    hub: Arc<Hub>,
    room: Arc<Room>,
    user: UserName,
    /// Whether the room has seen this user's `has joined`.
    joined: bool,
}

impl Membership {
    /// The room's name.
    pub fn room(&self) -> RoomName {
        self.room.name
    }

    /// The user's name, as written.
    pub fn user(&self) -> UserName {
        self.user
    }

    /// Turns a reservation into a membership: the room, the user included,
    /// receives `<user> has joined`. `first`: the connection comes from no
    /// other room here (a JOIN, not a `/join`).
    pub fn join(&mut self, first: bool) {
        if self.joined {
            return;
        }
        let line = reply::joined(self.user);
        let event = RoomEvent::Joined {
            user: self.user,
            first,
        };
        // Published under the room lock, so that this node's lines of the
        // room enter the relay in the order its members sent them.
        let mut members = self.room.lock();
        let relayed = self.relay_publish(event, &line);
        if let Some(me) = members.by_key.get_mut(&self.user.key()) {
            me.stage = if relayed {
                Stage::Waiting
            } else {
                Stage::Joined
            };
        }
        self.joined = true;
        self.room.joined.fetch_add(1, Ordering::Relaxed);
        if !relayed {
            let at = self.hub.now();
            members.broadcast(&line, || self.room.membership_json(self.user, true, at));
        }
    }

    /// Sends a line to everyone in the room, the sender included.
    pub fn broadcast(&self, line: Bytes) {
        self.broadcast_lines(line, 1);
    }

    /// Sends a burst of `lines` whole lines, said one after another, to
    /// everyone in the room as one shared buffer: one push per member for
    /// the whole burst, and through a relay, one message for all of it.
    pub fn broadcast_lines(&self, burst: Bytes, lines: usize) {
        let members = self.room.lock();
        if self.relay_publish(RoomEvent::Said { lines }, &burst) {
            if let Some(me) = members.by_key.get(&self.user.key()) {
                me.outbox.relayed();
            }
        } else {
            let stamp = self.room.keep(&burst);
            members.broadcast_lines(&burst, lines, || self.room.said_json(&burst, stamp, None));
            drop(members);
            self.room.trim_history();
        }
    }

    /// The room's history.
    pub fn history(&self) -> (&History, &RoomLog) {
        (&self.room.log.0, &self.room.log.1)
    }

    /// The names in the room, on every node, unsorted.
    pub fn who(&self) -> Vec<UserName> {
        let remote = self.remote_members();
        let members = self.room.lock();
        let mut names: Vec<UserName> = members
            .by_key
            .values()
            .filter(|m| m.stage.is_in())
            .map(|m| m.name)
            .collect();
        for user in remote {
            if !members.by_key.contains_key(&user.key()) {
                names.push(user);
            }
        }
        names
    }

    /// Sends `text` privately to the member called `to` (or a look-alike),
    /// on whatever node, and echoes it to the sender, once if they are the
    /// same.
    pub fn send_private(&self, to: &str, text: &str) -> Result<(), NoSuchUser> {
        let target = Name::parse(to).ok_or(NoSuchUser)?.key();
        let line = reply::private(self.user, text);
        let remote = self
            .remote_members()
            .into_iter()
            .find(|u| u.key() == target);
        let members = self.room.lock();
        let local = members.by_key.get(&target).filter(|m| m.stage.is_in());
        let Some(recipient) = local.map(|m| m.name).or(remote) else {
            return Err(NoSuchUser);
        };
        let event = RoomEvent::Private {
            from: self.user,
            to: recipient,
        };
        if self.relay_publish(event, &line) {
            return Ok(());
        }
        let them = local.ok_or(NoSuchUser)?.name;
        let at = self.hub.now();
        let json = |_| {
            Event::Private {
                from: self.user.as_str(),
                to: them.as_str(),
                text,
                time: Time(at),
            }
            .encode()
        };
        members.send_to(&target, &line, json);
        if target != self.user.key() {
            members.send_to(&self.user.key(), &line, json);
        }
        Ok(())
    }

    /// The member of this room called `name` or a look-alike of it, with
    /// its outbox, if one has joined here.
    pub fn member(&self, name: &str) -> Option<(UserName, Arc<Outbox>)> {
        let key = Name::parse(name)?.key();
        let members = self.room.lock();
        let member = members.by_key.get(&key).filter(|m| m.stage.is_in())?;
        Some((member.name, member.outbox.clone()))
    }

    /// The member of this room on another node called `name` or a
    /// look-alike of it, as joined.
    pub fn remote_member(&self, name: &str) -> Option<UserName> {
        let key = Name::parse(name)?.key();
        self.remote_members().into_iter().find(|u| u.key() == key)
    }

    /// Tells everyone else in the room, on every node, that this user is
    /// being removed: `*** <user> was kicked by <op>`, or its `notice`
    /// event. The user gets only its `ERROR` line, from its own session.
    pub fn announce_removal(&self, eviction: &Eviction) {
        let text = eviction.room_text(self.user.as_str());
        let line = Bytes::from(format!("*** {text}\r\n"));
        let members = self.room.lock();
        if self.relay_publish(RoomEvent::Removed { user: self.user }, &line) {
            return;
        }
        let removal = Removal {
            text: &text,
            by: &eviction.by,
            reason: &eviction.reason,
        };
        members.broadcast_removal(self.room.name, self.user, &line, &removal);
    }

    /// Hands a room line to the relay, if there is one and it takes it.
    fn relay_publish(&self, event: RoomEvent, line: &Bytes) -> bool {
        self.hub
            .relay
            .as_ref()
            .is_some_and(|r| r.publish(self.room.name, event, line))
    }

    fn remote_members(&self) -> Vec<UserName> {
        match &self.hub.relay {
            Some(relay) => relay.remote_members(self.room.name),
            None => Vec::new(),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut members = self.room.lock();
        members.by_key.remove(&self.user.key());
        if self.joined {
            self.room.joined.fetch_sub(1, Ordering::Relaxed);
            let line = reply::left(self.user);
            // Relayed even while the server stops: the other nodes' members
            // must see this node's users go.
            let relayed = self.relay_publish(RoomEvent::Left { user: self.user }, &line);
            if !relayed && !self.hub.closing.load(Ordering::Relaxed) {
                let at = self.hub.now();
                members.broadcast(&line, || self.room.membership_json(self.user, false, at));
            }
        }
        let empty = members.by_key.is_empty();
        if empty {
            members.removed = true;
        }
        drop(members);
        if let Some(relay) = &self.hub.relay {
            relay.released(self.room.name, self.user);
        }
        if self.joined {
            if let Some(hooks) = self.hub.hooks() {
                hooks.left(self.room.name, self.user);
            }
        }
        if empty {
            self.hub.remove_room(&self.room);
            if let Some(relay) = &self.hub.relay {
                relay.room_emptied(self.room.name);
            }
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Next;
    use std::task::{Context, Poll, Waker};

    pub(super) fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    pub(super) fn drain(outbox: &Outbox) -> Vec<String> {
        let mut batch = Vec::new();
        let cx = &mut Context::from_waker(Waker::noop());
        match outbox.poll_next(cx, &mut batch) {
            Poll::Ready(Next::Write(_)) => {}
            _ => return vec![],
        }
        outbox.written(batch.iter().map(Bytes::len).sum());
        batch
            .iter()
            .flat_map(|chunk| reply::texts_of(chunk))
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    fn join(hub: &Arc<Hub>, room: &str, user: &str) -> (Membership, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(0));
        let mut m = hub.reserve(name(room), name(user), &outbox).unwrap();
        m.join(true);
        (m, outbox)
    }

    #[test]
    fn names_are_unique_per_room_regardless_of_case() {
        let hub = Hub::new();
        let (_bob, _) = join(&hub, "r", "Bob");
        let other = Arc::new(Outbox::new(0));
        assert_eq!(
            hub.reserve(name("r"), name("bob"), &other).unwrap_err(),
            NameTaken
        );
        assert!(hub.reserve(name("R"), name("bob"), &other).is_ok());
    }

    #[test]
    fn join_and_leave_lines_and_empty_room_removal() {
        let hub = Hub::new();
        let (alice, a) = join(&hub, "r", "alice");
        let (bob, b) = join(&hub, "r", "bob");
        assert_eq!(drain(&a), ["alice has joined", "bob has joined"]);
        assert_eq!(drain(&b), ["bob has joined"]);
        assert_eq!(hub.rooms(), vec![(name("r"), 2)]);
        drop(bob);
        assert_eq!(drain(&a), ["bob has left"]);
        assert!(drain(&b).is_empty());
        drop(alice);
        assert_eq!(hub.room_count(), 0);
    }

    #[test]
    fn nobody_is_told_of_leaving_while_the_hub_closes() {
        let hub = Hub::new();
        let (alice, a) = join(&hub, "r", "alice");
        let (bob, _) = join(&hub, "r", "bob");
        drain(&a);
        hub.close();
        drop(bob);
        assert!(drain(&a).is_empty());
        drop(alice);
        assert_eq!(hub.room_count(), 0);
    }

    #[test]
    fn reserved_member_blocks_the_name_but_hears_nothing() {
        let hub = Hub::new();
        let (alice, a) = join(&hub, "r", "alice");
        let outbox = Arc::new(Outbox::new(0));
        let mut moving = hub.reserve(name("r"), name("bob"), &outbox).unwrap();
        alice.broadcast(reply::said(name("alice"), "hi"));
        assert!(drain(&outbox).is_empty());
        assert_eq!(alice.who(), vec![name("alice")]);
        moving.join(false);
        drain(&a);
        assert_eq!(drain(&outbox), ["bob has joined"]);
    }

    #[test]
    fn private_message_goes_to_target_and_sender_once() {
        let hub = Hub::new();
        let (alice, a) = join(&hub, "r", "alice");
        let (_bob, b) = join(&hub, "r", "bob");
        drain(&a);
        drain(&b);
        alice.send_private("BOB", "x").unwrap();
        assert_eq!(drain(&a), ["alice (private): x"]);
        assert_eq!(drain(&b), ["alice (private): x"]);
        alice.send_private("alice", "y").unwrap();
        assert_eq!(drain(&a), ["alice (private): y"]);
        assert_eq!(alice.send_private("carol", "z"), Err(NoSuchUser));
    }

    #[test]
    fn a_room_emptied_while_joining_is_replaced() {
        let hub = Hub::new();
        let (first, _) = join(&hub, "r", "a");
        let stale = hub.find_or_create(name("r"));
        drop(first);
        assert!(stale.lock().removed);
        let (_second, _) = join(&hub, "r", "b");
        assert_eq!(hub.rooms(), vec![(name("r"), 1)]);
    }
}
