//! The presence task: cluster-wide names, the other nodes' members, and
//! clearing the members of nodes that died.
//!
//! # Scheme
//!
//! Names live in a JetStream key-value bucket, one key per member:
//! `<room>.<folded user>` (both hex, see `subject`), value `<node> <user>`.
//! A join claims its key with `create`, which JetStream performs only if the
//! key is absent (an expected-last-sequence check on the key's subject):
//! of two nodes racing for one name, exactly one succeeds. Leaving deletes
//! the key with the revision this node wrote, so a key someone else has
//! since claimed is never touched.
//!
//! Keys carry no expiry. A per-key TTL would cost every node a write per
//! member per refresh period, and the server this targets (2.9) removes an
//! expired key silently, so nobody could show that member's `has left`.
//! Instead every node says it is alive on a plain subject every
//! second, and a node not heard for ten seconds is dead (`liveness`):
//! the surviving nodes delete its keys, each delete conditional on the
//! revision seen, so that exactly one node wins each key and publishes that
//! member's `has left` to the room.
//!
//! Every write to the bucket's keys runs here, one at a time, so that a
//! node's claims and releases never race each other (the `sweep` task only
//! purges markers of deleted keys). The bucket is watched to keep the
//! [`Replica`](super::replica::Replica) of the other nodes' members.
//!
//! # While the link is down
//!
//! Claims are granted locally (the hub has checked the name here) and
//! releases wait. When the link is back, the bucket is brought in line with
//! the hub from one read of the whole bucket: keys of members who joined
//! meanwhile are created (and announced to the other nodes), keys of
//! members who left meanwhile are deleted (and their leaving announced).
//!
//! # While the link is up
//!
//! A claim the bucket does not answer within `KV_TIMEOUT` is refused as
//! busy (`ERROR cluster busy, try again`), never granted on this node's
//! word; whether the write happened after all is found out by the next
//! line-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, Store, Watch};
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::envelope::Kind;
use super::heartbeat::HEARTBEAT_EVERY;
use super::link::{Link, Phase};
use super::shared::Shared;
use super::subject;
use super::sweep::{SNAPSHOT_TIMEOUT, snapshot};
use crate::hub::{Arrival, Hub};
use crate::protocol::names::{RoomName, UserName};
use crate::protocol::reply;
use crate::relay::NameClaim;

/// Longest wait for one bucket operation. Past it, the link is as good as
/// down for this operation: a claim falls back to this node's own check.
pub(super) const KV_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes the presence bucket may hold: room for about a million
/// members cluster-wide.
const PRESENCE_BYTES: i64 = 256 << 20;

/// A request to claim a name, answered with whether it was granted.
#[derive(Debug)]
pub(super) struct Claim {
    /// The room joined.
    pub room: RoomName,
    /// The name wanted there.
    pub user: UserName,
    /// Where the session waits for the answer.
    pub answer: oneshot::Sender<NameClaim>,
}

/// A key this node wrote.
#[derive(Debug, Clone, Copy)]
struct Owned {
    room: RoomName,
    user: UserName,
    /// The key's revision as written by this node.
    revision: u64,
}

/// The presence task's state.
pub(super) struct Presence {
    /// The NATS connection, shared with the rooms task.
    pub client: Client,
    /// Who is here, the truth the bucket is brought in line with.
    pub hub: Arc<Hub>,
    /// The replica, the node id, the metrics.
    pub shared: Arc<Shared>,
    /// Told when presence is registered; followed for the phase.
    pub link: Arc<Link>,
    /// Names to claim, from joining sessions.
    pub claims: mpsc::Receiver<Claim>,
    /// Requests to release everything, at shutdown.
    pub departs: mpsc::Receiver<oneshot::Sender<()>>,
    /// Ends the task.
    pub stop: CancellationToken,
}

/// What the task keeps between events.
#[derive(Default)]
struct State {
    /// The bucket, once opened.
    kv: Option<Store>,
    /// The bucket's changes, while the link is up.
    watch: Option<Watch>,
    /// The watch is still reading the bucket's current contents.
    syncing: bool,
    /// Keys this node wrote, by key.
    owned: HashMap<String, Owned>,
    /// Failed attempts to open the bucket since it last worked.
    setup_failures: u32,
    /// The bucket may not match the hub (a claim or release could not
    /// reach it); brought in line on the next tick while the link is up.
    out_of_line: bool,
}

impl Presence {
    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let mut state = State::default();
        let mut phase = self.link.watch();
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                Some(done) = self.departs.recv() => {
                    self.depart(&mut state).await;
                    let _ = done.send(());
                }
                changed = phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *phase.borrow_and_update();
                    match now {
                        Phase::Connected => self.setup(&mut state).await,
                        Phase::Down => state.watch = None,
                        Phase::Ready | Phase::Up => {}
                    }
                }
                Some(claim) = self.claims.recv() => self.claim(&mut state, claim).await,
                () = self.shared.released.notified() => self.release_all(&mut state).await,
                Some(entry) = next(&mut state.watch) => self.watched(&mut state, entry),
                _ = tick.tick() => self.tick(&mut state).await,
            }
        }
    }

    /// The link is connected: open the bucket, watch it, register this
    /// node's members, and let the rooms task take over.
    async fn setup(&self, state: &mut State) {
        let failure = match timeout(KV_TIMEOUT * 4, self.open(state)).await {
            Ok(Ok(())) => {
                state.setup_failures = 0;
                self.line_up(state).await;
                self.link.presence_registered();
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        // Retried every tick; said once a minute (a server without
        // JetStream fails every time).
        if state.setup_failures % 60 == 0 {
            warn!(
                error = failure,
                "cannot open the presence bucket (is JetStream enabled on the NATS server?); this node serves its own users only until it can"
            );
        }
        state.setup_failures += 1;
    }

    async fn open(&self, state: &mut State) -> Result<(), async_nats::Error> {
        let js = async_nats::jetstream::new(self.client.clone());
        // The bucket's stream is made here rather than by
        // `create_key_value`, whose account query does not parse the
        // answers of the nats-server 2.9 that Debian ships. The settings
        // are those of a key-value bucket with a history of one.
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{}", subject::PRESENCE_BUCKET),
            description: Some("chatgate: who is in which room, on which node".to_owned()),
            subjects: vec![format!("$KV.{}.>", subject::PRESENCE_BUCKET)],
            max_messages_per_subject: 1,
            // Bounds: a value is `<node id> <user>`, far below this, and
            // the bucket holds one entry per member of the moment plus
            // markers for at most a minute. When full, claims fail (the
            // user is told the cluster is busy) rather than evict anyone.
            max_bytes: PRESENCE_BYTES,
            max_message_size: 512,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await?;
        let kv = js.get_key_value(subject::PRESENCE_BUCKET).await?;
        let empty = kv.status().await?.values() == 0;
        state.watch = Some(kv.watch_with_history(">").await?);
        self.shared.replica().begin();
        state.syncing = !empty;
        if empty {
            self.shared.replica().finish();
        }
        state.kv = Some(kv);
        Ok(())
    }

    /// Claims `room`/`user` for this node.
    async fn claim(&self, state: &mut State, claim: Claim) {
        let (room, user) = (claim.room, claim.user);
        if claim.answer.is_closed() {
            // The session gave up waiting (and was told the cluster is
            // busy): nothing to claim.
            return;
        }
        let answer = self.take(state, room, user).await;
        if claim.answer.send(answer).is_err() {
            // It gave up while the bucket answered; its release may already
            // have run, so the key it will never use goes now.
            self.release(state, room, user).await;
        }
    }

    /// The bucket, if it can be reached now; if not, the bucket will need
    /// to be brought in line with the hub once it can.
    fn reachable(&self, state: &mut State) -> Option<Store> {
        let kv = state
            .kv
            .clone()
            .filter(|_| self.link.phase() != Phase::Down);
        if kv.is_none() {
            state.out_of_line = true;
        }
        kv
    }

    /// Writes the key of `user` in `room` unless someone else holds it.
    /// Granted if the name is this node's, or the link is down (when this
    /// node's own check is all there is); busy if the bucket did not answer
    /// while the link counts as connected.
    async fn take(&self, state: &mut State, room: RoomName, user: UserName) -> NameClaim {
        let key = subject::presence_key(room, user);
        let Some(kv) = self.reachable(state) else {
            return NameClaim::Granted;
        };
        let value = Bytes::from(format!("{} {user}", self.shared.node));
        if let Some(owned) = state.owned.get_mut(&key) {
            // Still ours from a moment ago (left and came back before the
            // release ran); refresh the name's case.
            if owned.user != user {
                match timeout(KV_TIMEOUT, kv.update(&key, value, owned.revision)).await {
                    Ok(Ok(revision)) => owned.revision = revision,
                    _ => state.out_of_line = true,
                }
                owned.user = user;
            }
            return NameClaim::Granted;
        }
        let failure = match timeout(KV_TIMEOUT, kv.create(&key, value)).await {
            Ok(Ok(revision)) => {
                state.owned.insert(
                    key,
                    Owned {
                        room,
                        user,
                        revision,
                    },
                );
                return NameClaim::Granted;
            }
            Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {
                return self.adopt(state, &kv, key, room, user).await;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        // The write may still have happened: the next line-up finds out.
        state.out_of_line = true;
        if self.link.phase() == Phase::Down {
            warn!(%room, %user, error = failure, "cannot claim a name; the link is down, checked on this node only");
            NameClaim::Granted
        } else {
            warn!(%room, %user, error = failure, "cannot claim a name; the cluster is busy");
            NameClaim::Busy
        }
    }

    /// Releases every name waiting (see `shared::Releases`).
    async fn release_all(&self, state: &mut State) {
        let releases = self.shared.take_releases();
        if releases.overflowed {
            state.out_of_line = true;
        }
        for ((room, _), user) in releases.names {
            self.release(state, room, user).await;
        }
    }

    /// The key exists: taken, unless it is this node's own (a claim whose
    /// answer was lost, kept for a member who is back), which is then
    /// this node's again.
    async fn adopt(
        &self,
        state: &mut State,
        kv: &Store,
        key: String,
        room: RoomName,
        user: UserName,
    ) -> NameClaim {
        let entry = match timeout(KV_TIMEOUT, kv.entry(key.as_str())).await {
            Ok(Ok(Some(entry))) => entry,
            Ok(Ok(None)) => return NameClaim::Taken,
            _ => {
                state.out_of_line = true;
                return NameClaim::Busy;
            }
        };
        if entry.operation != Operation::Put || !self.is_mine(&entry) {
            return NameClaim::Taken;
        }
        let mut revision = entry.revision;
        if value_user(&entry) != Some(user.as_str()) {
            let value = Bytes::from(format!("{} {user}", self.shared.node));
            match timeout(KV_TIMEOUT, kv.update(&key, value, revision)).await {
                Ok(Ok(updated)) => revision = updated,
                _ => state.out_of_line = true,
            }
        }
        let owned = Owned {
            room,
            user,
            revision,
        };
        state.owned.insert(key, owned);
        NameClaim::Granted
    }

    /// A membership ended here; its key goes unless the name is in use here
    /// again.
    async fn release(&self, state: &mut State, room: RoomName, user: UserName) {
        if self.hub.holds_name(room, user) {
            return;
        }
        let key = subject::presence_key(room, user);
        let Some(owned) = state.owned.get(&key).copied() else {
            return;
        };
        let Some(kv) = self.reachable(state) else {
            return;
        };
        match delete(&kv, &key, owned.revision).await {
            Ok(Ok(())) => {
                state.owned.remove(&key);
                self.shared.deleted.store(true, Ordering::SeqCst);
            }
            Ok(Err(e)) => {
                // Someone else holds it now (this node was taken for dead).
                debug!(%room, %user, error = %e, "key changed before release");
                state.owned.remove(&key);
            }
            Err(_) => state.out_of_line = true,
        }
    }

    /// Brings the bucket in line with the hub: every member here has its
    /// key, and no key of this node outlives its member. Reads the bucket
    /// once, then writes only what differs. Changes the other nodes could
    /// not have seen are announced in the rooms.
    async fn line_up(&self, state: &mut State) {
        state.out_of_line = false;
        // Whoever joined before this snapshot is in it.
        self.shared.unregistered.store(false, Ordering::SeqCst);
        let Some(kv) = state.kv.clone() else {
            state.out_of_line = true;
            return;
        };
        let bucket = match timeout(SNAPSHOT_TIMEOUT, snapshot(&self.client)).await {
            Ok(Ok(bucket)) => bucket,
            _ => {
                warn!("cannot read the presence bucket; lining up later");
                state.out_of_line = true;
                return;
            }
        };
        let here = self.hub.members();
        let wanted: HashMap<String, (RoomName, UserName)> = here
            .iter()
            .map(|&(room, user)| (subject::presence_key(room, user), (room, user)))
            .collect();
        for (key, (room, user)) in &wanted {
            let current = bucket.get(key).filter(|e| e.operation == Operation::Put);
            if let Some(entry) = current {
                if self.is_mine(entry) {
                    // Held, or written and the answer lost on the way.
                    let owned = Owned {
                        room: *room,
                        user: *user,
                        revision: entry.revision,
                    };
                    state.owned.insert(key.clone(), owned);
                } else {
                    state.owned.remove(key);
                    warn!(%room, %user, "name taken on another node while the link was down; both keep it until one leaves");
                }
                continue;
            }
            state.owned.remove(key);
            let taken = self.take(state, *room, *user).await;
            if taken == NameClaim::Granted && state.owned.contains_key(key) {
                self.announce(
                    *room,
                    Kind::Present {
                        node: self.shared.node.clone(),
                        user: *user,
                    },
                    reply::joined(*user),
                )
                .await;
            }
        }
        // This node's keys with no member here: members who left while the
        // link was down, or claims given up before they were answered.
        let mut kept: Vec<(String, Owned)> = Vec::new();
        let stale: Vec<(String, u64)> = bucket
            .iter()
            .filter(|(key, entry)| self.is_mine(entry) && !wanted.contains_key(*key))
            .filter(|(key, entry)| {
                // A name reserved here and being claimed is not stale: it
                // is kept as this node's, for the claim to find.
                let reserved = subject::parse_presence_key(key)
                    .filter(|(room, user)| self.hub.holds_name(*room, *user))
                    .and_then(|(room, _)| {
                        let user =
                            value_user(entry).and_then(crate::protocol::names::Name::parse)?;
                        Some((room, user))
                    });
                if let Some((room, user)) = reserved {
                    let owned = Owned {
                        room,
                        user,
                        revision: entry.revision,
                    };
                    kept.push(((*key).clone(), owned));
                }
                reserved.is_none()
            })
            .map(|(key, entry)| (key.clone(), entry.revision))
            .collect();
        for (key, revision) in stale {
            let known = state.owned.remove(&key);
            match delete(&kv, &key, revision).await {
                Ok(Ok(())) => {
                    self.shared.deleted.store(true, Ordering::SeqCst);
                    // Only a name that was granted was ever seen in a room.
                    if let Some(owned) = known {
                        self.announce(
                            owned.room,
                            Kind::Gone {
                                node: self.shared.node.clone(),
                                user: owned.user,
                            },
                            reply::left(owned.user),
                        )
                        .await;
                    }
                }
                Ok(Err(_)) => {}
                Err(_) => state.out_of_line = true,
            }
        }
        // Keys this node remembers for members gone, which the bucket no
        // longer has as this node's.
        state.owned.retain(|key, _| wanted.contains_key(key));
        state.owned.extend(kept);
    }

    /// Whether a bucket entry is a live key written by this node.
    fn is_mine(&self, entry: &kv::Entry) -> bool {
        entry.operation == Operation::Put && owner(entry) == Some(self.shared.node.as_str())
    }

    /// Publishes a repair line to a room.
    /// Bounded by `KV_TIMEOUT`: a client too stuck to take it (a frozen
    /// server) does not hold the presence task.
    async fn announce(&self, room: RoomName, kind: Kind, line: Bytes) {
        let subject = subject::room(room);
        let publish = async {
            match kind.headers() {
                Some(headers) => {
                    self.client
                        .publish_with_headers(subject, headers, line)
                        .await
                }
                None => self.client.publish(subject, line).await,
            }
        };
        if let Ok(Ok(())) = timeout(KV_TIMEOUT, publish).await {
            self.shared.metrics.published.inc();
        }
    }

    /// One change of the bucket, seen by the watch.
    fn watched(&self, state: &mut State, entry: Result<kv::Entry, kv::WatcherError>) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                warn!(error = %e, "presence watch failed; starting over");
                state.watch = None;
                return;
            }
        };
        let Some((room, folded)) = subject::parse_presence_key(&entry.key) else {
            return;
        };
        let mut replica = self.shared.replica();
        // After a loss, until this node reads its rooms again, what the
        // bucket says changed meanwhile, as lines for this node's users
        // (once each: see `replica`).
        let telling = replica.repairing() && (state.syncing || !self.shared.is_up());
        let mut tell: Option<(Arrival, Bytes)> = None;
        match entry.operation {
            Operation::Put => {
                let value = std::str::from_utf8(&entry.value).unwrap_or_default();
                // A value not as this module writes it (`<node id> <user>`,
                // both valid) did not come from a chatgate node: ignored.
                let parsed = value
                    .split_once(' ')
                    .filter(|(node, _)| subject::is_node_id(node))
                    .and_then(|(node, user)| {
                        Some((node, crate::protocol::names::Name::parse(user)?))
                    });
                if let Some((node, user)) = parsed {
                    if node != self.shared.node && user.key() == folded {
                        replica.put(room, user, node);
                        if telling && replica.tell_joined(room, user, node) {
                            tell = Some((Arrival::Joined { user }, reply::joined(user)));
                        }
                    }
                }
            }
            Operation::Delete | Operation::Purge => {
                replica.remove(room, folded, None);
                if telling {
                    if let Some(user) = replica.tell_left(room, folded, None, None) {
                        tell = Some((Arrival::Left { user }, reply::left(user)));
                    }
                }
                // A marker to sweep, whichever node left it (one that
                // departs cannot sweep its own).
                self.shared.deleted.store(true, Ordering::SeqCst);
                // This node deletes its own keys before it forgets them, so
                // a key still held here, and written before this marker,
                // was deleted by another node that took this one for dead:
                // register it again. (A key written after the marker is
                // this node's newer claim of a name it just released.)
                let cleared = state
                    .owned
                    .get(&entry.key)
                    .is_some_and(|owned| owned.revision < entry.revision);
                if cleared {
                    state.owned.remove(&entry.key);
                    warn!(%room, "this node's key was cleared by another node; registering again");
                    state.out_of_line = true;
                }
            }
        }
        if state.syncing && entry.delta == 0 {
            state.syncing = false;
            replica.finish();
        }
        if let Some((arrival, line)) = tell {
            // Checked under the replica's lock, as the link takes the held
            // lines under it once up: none is left behind.
            if self.shared.is_up() {
                drop(replica);
                self.hub.deliver(room, arrival, line);
            } else {
                replica.hold(room, arrival, line);
            }
        }
    }

    /// Every [`HEARTBEAT_EVERY`]: clear dead nodes, retry what the link
    /// kept from being done.
    async fn tick(&self, state: &mut State) {
        self.shared.replica().expire(std::time::Instant::now());
        self.shared
            .metrics
            .presence_entries
            .set((state.owned.len() + self.shared.replica().len()) as i64);
        match self.link.phase() {
            Phase::Down => return,
            Phase::Connected => {
                self.setup(state).await;
                return;
            }
            Phase::Ready | Phase::Up => {}
        }
        if state.watch.is_none() {
            if let Err(e) = self.open(state).await {
                warn!(error = %e, "cannot watch the presence bucket; retrying");
            }
        }
        if self.shared.is_up() {
            let unregistered = self.shared.unregistered.swap(false, Ordering::SeqCst);
            if state.out_of_line || unregistered {
                self.line_up(state).await;
            }
        }
        self.clear_dead(state).await;
    }

    /// Deletes the keys of nodes silent too long (see `liveness`) and tells
    /// their rooms.
    async fn clear_dead(&self, state: &mut State) {
        let Some(kv) = state.kv.clone().filter(|_| !state.syncing) else {
            return;
        };
        let nodes = self.shared.replica().nodes();
        let silent = self.shared.liveness().silent(&nodes, Instant::now());
        for node in silent {
            let members = self.shared.replica().members_of(&node);
            info!(%node, members = members.len(), "node silent; clearing its members");
            for (room, user) in members {
                self.clear(&kv, &node, room, user).await;
            }
        }
    }

    /// Deletes a dead node's key, if it is still that node's; the node that
    /// manages to tells the room.
    async fn clear(&self, kv: &Store, node: &str, room: RoomName, user: UserName) {
        let key = subject::presence_key(room, user);
        let entry = match timeout(KV_TIMEOUT, kv.entry(key.as_str())).await {
            Ok(Ok(entry)) => entry,
            _ => return,
        };
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put && owner(e) == Some(node))
        else {
            // Cleared by another node already, or claimed anew: the watch
            // brings the replica up to date.
            self.shared.replica().remove(room, user.key(), Some(node));
            return;
        };
        if matches!(delete(kv, &key, entry.revision).await, Ok(Ok(()))) {
            self.shared.deleted.store(true, Ordering::SeqCst);
            debug!(%node, %room, %user, "cleared");
            self.announce(
                room,
                Kind::Gone {
                    node: node.to_owned(),
                    user,
                },
                reply::left(user),
            )
            .await;
        }
    }

    /// The server stops: release whatever is still held.
    async fn depart(&mut self, state: &mut State) {
        self.release_all(state).await;
        if self.link.phase() == Phase::Down {
            return;
        }
        let left: Vec<(String, Owned)> = state.owned.drain().collect();
        let Some(kv) = state.kv.clone() else {
            return;
        };
        for (key, owned) in left {
            let _ = delete(&kv, &key, owned.revision).await;
        }
        let _ = self.client.flush().await;
    }
}

/// The node that wrote a bucket entry: its value is `<node> <user>`.
fn owner(entry: &kv::Entry) -> Option<&str> {
    let value = std::str::from_utf8(&entry.value).ok()?;
    Some(value.split_once(' ')?.0)
}

/// The user name, as written, in a bucket entry's value.
fn value_user(entry: &kv::Entry) -> Option<&str> {
    let value = std::str::from_utf8(&entry.value).ok()?;
    Some(value.split_once(' ')?.1)
}

/// Deletes `key` if it is still at `revision`; `Err(Elapsed)` when the
/// bucket did not answer within [`KV_TIMEOUT`].
async fn delete(
    kv: &Store,
    key: &str,
    revision: u64,
) -> Result<Result<(), kv::DeleteError>, tokio::time::error::Elapsed> {
    timeout(KV_TIMEOUT, kv.delete_expect_revision(key, Some(revision))).await
}

/// The next item of an optional stream; pending forever without one.
pub(super) async fn next<S: futures_util::Stream + Unpin>(
    stream: &mut Option<S>,
) -> Option<S::Item> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
