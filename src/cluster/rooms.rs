//! The rooms task: this node's room traffic to and from NATS.
//!
//! Room lines are published to plain subjects, but those subjects belong to
//! a JetStream stream held in memory ([`ROOMS_STREAM`]), which gives every
//! line one sequence number. Core NATS alone keeps each publisher's order
//! only: two nodes' lines may reach two subscribers in different orders.
//! The stream is the one place that decides the order, and every node
//! reads a room through an ordered consumer of it, so every member on every
//! node sees the same order.
//!
//! This task owns those room consumers (the subscriptions). A room is
//! subscribed before this node publishes its first line there (its first
//! member's `has joined`), so the joiner's own line comes back to it, and
//! unsubscribed once the hub has no one left in it. Everything that arrives
//! is delivered to local members from here. Consumers are made by the
//! `consumers` task: the lines of a room being subscribed wait, in order,
//! while every other room's lines go on.
//!
//! Publishing goes through async-nats, which queues what it is given and
//! writes it all out, flushing when its queue runs dry: a burst costs few
//! syscalls and a lone line goes out at once, with no timer to wait for.
//! While the link is not up, the lines of the queue are delivered to local
//! members from here instead, in their turn, so a line kept local never
//! overtakes an earlier one still on its way (see `shared`). A publish the
//! client cannot take is abandoned the moment the link counts as lost, and
//! the line kept local: a frozen server cannot stall local chat.
//!
//! A join line of this node admits its joiner when it comes back (see
//! `shared`). If the link is lost while such a line travels, the join is
//! completed here at once and the line, should it come back after all, is
//! skipped.
//!
//! # What can be lost
//!
//! A line handed to the client in the moments before a loss is noticed
//! (at most the heartbeat's bound, 4.5 seconds) may never reach the
//! stream, or reach it after this node subscribed anew; then no node shows
//! it, or the other nodes show it and this one does not. Its sender does
//! not see it either (a sender's own line comes back through the stream
//! like everyone's), so a missing line is never silent to its sender.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedErrorKind;
use async_nats::jetstream::stream::{self, Stream as JsStream};
use async_nats::{Client, Message, Subject};
use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::stream::{SelectAll, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::consumers::{self, Made, Request};
use super::envelope::{JoinTag, Kind, clean_lines};
use super::history;
use super::link::{Link, Phase};
use super::shared::{Outgoing, Shared};
use super::subject;
use crate::history::{ClusterStamp, HistorySettings, Millis};
use crate::hub::{Arrival, Hub};
use crate::protocol::json::NoticeCode;
use crate::protocol::names::{Name, RoomName, UserName};
use crate::protocol::reply;

/// Lines taken from the queue at a time: enough to amortise the wake-ups
/// under load, few enough that arrivals are not kept waiting behind them.
const BATCH: usize = 64;

/// The stream that orders every room's lines.
const ROOMS_STREAM: &str = "CHATGATE_ROOMS";

/// How long the stream keeps a line: only until every node has read it,
/// which takes milliseconds; the margin covers a node catching up after a
/// moment of starvation.
const LINE_KEPT: Duration = Duration::from_secs(30);

/// Most bytes of lines the stream holds; the oldest go first. Bounds the
/// server's memory whatever the traffic.
const STREAM_BYTES: i64 = 64 * 1024 * 1024;

/// Pause before trying again to set the stream up after the link came back,
/// or to read a room whose consumer could not be made.
const RETRY: Duration = Duration::from_millis(500);

/// Longest wait for one of this node's join lines to come back before the
/// join is completed here. A joiner's connection waits a little longer
/// than this (see `Cluster::admitted`), so it reads on admitted.
pub(super) const JOIN_ECHO_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for a join line behind its user's own leave of that room
/// (see [`Rooms::forget_old`]).
pub(super) const JOIN_HOLD: Duration = Duration::from_secs(10);

/// Longest wait for the stream to be set up; past it, the next retry.
const STREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Consecutive failures to make a room's consumer after which the lines
/// waiting for it are delivered here only (and the next line there asks
/// again), rather than held from the room's members any longer.
const CONSUMER_TRIES: u32 = 3;

/// What a room's consumer brings: a message, or `None` once the consumer
/// is gone on the server's side; with the consumer's number.
type Arrivals = Pin<Box<dyn Stream<Item = (RoomName, u64, Option<Arrived>)> + Send>>;

/// A message from a room's consumer, with its place in the rooms stream
/// (sequence and arrival time, when the server gave them).
type Arrived = (Message, Option<(u64, Millis)>);

/// The room subscriptions and what they bring.
struct Subscriptions {
    /// The ordering stream, once set up on this connection.
    stream: Option<JsStream>,
    /// Counts the link's comings-up; answers about consumers of an earlier
    /// one are dropped.
    generation: u64,
    /// Every subscribed room.
    rooms: HashMap<RoomName, Subscribed>,
    /// Rooms whose consumer is being made, with the lines said there
    /// meanwhile, in order. Bounded like the queue they came from: they
    /// count against it until they are sent.
    pending: HashMap<RoomName, VecDeque<Outgoing>>,
    /// Rooms the link waits for before it counts as up again.
    coming_up: HashSet<RoomName>,
    /// Rooms whose consumer could not be made, with how many times in a
    /// row.
    failed: HashMap<RoomName, u32>,
    /// Of those, the ones to ask for again on the next retry tick.
    retry: HashSet<RoomName>,
    /// Every subscribed room's lines, merged.
    arrivals: SelectAll<Arrivals>,
    /// The next consumer's number.
    next_id: u64,
}

/// This node's join lines on their way through the stream.
#[derive(Default)]
struct Echoes {
    /// Published and not back yet, with when they were published; by tag,
    /// which is the order they were said in.
    in_flight: BTreeMap<JoinTag, (RoomName, UserName, Instant)>,
    /// Completed here when the link was lost; dropped if they come back.
    /// Forgotten after [`LINE_KEPT`], when the stream no longer has them.
    skip: HashMap<JoinTag, Instant>,
    /// This node's leave lines published and not back yet, by room and
    /// folded user: a join of that user into that room is not completed
    /// here ahead of them (see [`Rooms::forget_old`]). With how many, and
    /// when the last was published.
    leaving: HashMap<(RoomName, Name), (u32, Instant)>,
}

impl Echoes {
    /// One of this node's leave lines came back (or never will).
    fn left(&mut self, room: RoomName, user: Name) {
        if let Some((n, _)) = self.leaving.get_mut(&(room, user)) {
            *n -= 1;
            if *n == 0 {
                self.leaving.remove(&(room, user));
            }
        }
    }
}

/// A room this node reads.
struct Subscribed {
    /// This consumer's number, to tell its news from an earlier one's.
    id: u64,
    /// The room's subject, built once: every line here is published to it.
    subject: Subject,
    /// Cancelling drops the room's consumer.
    gone: CancellationToken,
}

impl Subscriptions {
    /// The consumer numbered `id` of `room` is gone on the server: the room
    /// is read anew on the next retry tick (see `Rooms::read_every_room`).
    fn consumer_gone(&mut self, room: RoomName, id: u64) {
        if self.rooms.get(&room).is_some_and(|r| r.id == id) {
            if let Some(subscribed) = self.rooms.remove(&room) {
                subscribed.gone.cancel();
            }
        }
    }

    /// The link was lost: consumers asked for on it will not be of use.
    fn forget_requests(&mut self) {
        self.generation += 1;
        self.pending.clear();
        self.coming_up.clear();
        self.failed.clear();
        self.retry.clear();
    }
}

/// A burst of messages from the rooms stream, to copy into the history
/// stream.
struct HistoryCopy {
    room: RoomName,
    stamp: Option<ClusterStamp>,
    burst: Bytes,
    lines: usize,
}

/// What the rooms task keeps between events.
struct State {
    /// The link was up when this task last looked; cleared by [`Rooms::lose`].
    up: bool,
    subs: Subscriptions,
    echoes: Echoes,
    /// Rooms whose history goes once they have been empty long enough.
    expiry: history::Expiry,
    /// To the consumers task.
    requests: mpsc::UnboundedSender<Request>,
}

/// The rooms task's state.
pub(super) struct Rooms {
    /// The NATS connection, shared with the presence task.
    pub client: Client,
    /// Where arriving lines are delivered.
    pub hub: Arc<Hub>,
    /// The link flag, the replica, the metrics.
    pub shared: Arc<Shared>,
    /// Told when the rooms are subscribed; followed for the phase.
    pub link: Arc<Link>,
    /// Lines to publish, from the relay.
    pub outgoing: mpsc::UnboundedReceiver<Outgoing>,
    /// Requests to send everything queued so far, at shutdown.
    pub flushes: mpsc::Receiver<oneshot::Sender<()>>,
    /// Ends the task.
    pub stop: CancellationToken,
    /// What history keeps (in the history stream).
    pub history: HistorySettings,
}

impl Rooms {
    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let (requests, requested) = mpsc::unbounded_channel();
        let (made_tx, mut made) = mpsc::unbounded_channel();
        tokio::spawn(consumers::run(
            self.client.clone(),
            requested,
            made_tx,
            self.stop.clone(),
        ));
        let mut state = State {
            up: false,
            subs: Subscriptions {
                stream: None,
                generation: 0,
                rooms: HashMap::new(),
                pending: HashMap::new(),
                coming_up: HashSet::new(),
                failed: HashMap::new(),
                retry: HashSet::new(),
                arrivals: SelectAll::new(),
                next_id: 0,
            },
            echoes: Echoes::default(),
            expiry: history::Expiry::default(),
            requests,
        };
        let mut phase = self.link.watch();
        let mut down = self.link.watch();
        let mut batch = Vec::with_capacity(BATCH);
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                n = self.outgoing.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    for line in batch.drain(..) {
                        self.send(line, &mut state, &mut down).await;
                    }
                }
                Some((room, id, message)) = state.subs.arrivals.next(), if !state.subs.arrivals.is_empty() => {
                    match message {
                        Some((message, place)) => {
                            if let Some(copy) = self.arrive(room, message, place, &mut state.echoes) {
                                self.said(copy, &mut down).await;
                            }
                        }
                        None => state.subs.consumer_gone(room, id),
                    }
                }
                Some(made) = made.recv() => self.subscribed(made, &mut state, &mut down).await,
                _ = self.shared.emptied.notified() => self.sweep(&mut state.subs),
                changed = phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Only the latest phase is seen: any fall from up is a
                    // loss, even if the down in between was missed.
                    let now = *phase.borrow_and_update();
                    if now != Phase::Up && state.up {
                        self.lose(&mut state);
                    }
                    match now {
                        Phase::Ready => self.resubscribe(&mut state).await,
                        Phase::Up => state.up = true,
                        Phase::Down | Phase::Connected => {}
                    }
                }
                _ = retry.tick() => {
                    let stuck = state.subs.stream.is_none() || state.subs.coming_up.is_empty();
                    match self.link.phase() {
                        Phase::Ready if stuck => self.resubscribe(&mut state).await,
                        Phase::Up => {
                            self.read_every_room(&mut state);
                            self.expire_history(&mut state.expiry);
                        }
                        _ => {}
                    }
                    self.forget_old(&mut state.echoes);
                }
                Some(done) = self.flushes.recv() => {
                    while let Ok(line) = self.outgoing.try_recv() {
                        self.send(line, &mut state, &mut down).await;
                    }
                    if self.shared.is_up() {
                        let _ = self.client.flush().await;
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    /// The link is back (or up for the first time): set the stream up and
    /// ask for a consumer of every room with members here; the link counts
    /// as up once they are all answered.
    async fn resubscribe(&self, state: &mut State) {
        if self.link.phase() != Phase::Ready {
            return;
        }
        // Joins that went out on the old consumers' watch are not waited
        // for any longer, nor lines for rooms of the old connection.
        self.go_local(state);
        let subs = &mut state.subs;
        subs.forget_requests();
        subs.stream = None;
        // Consumers from before the link dropped may be gone with the
        // server; new ones are cheap.
        for room in subs.rooms.values() {
            room.gone.cancel();
        }
        subs.rooms.clear();
        let js = async_nats::jetstream::new(self.client.clone());
        let config = stream::Config {
            name: ROOMS_STREAM.to_owned(),
            description: Some("chatgate: the order of every room's lines".to_owned()),
            subjects: vec![subject::ROOMS.to_owned()],
            storage: stream::StorageType::Memory,
            max_age: LINE_KEPT,
            max_bytes: STREAM_BYTES,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        match tokio::time::timeout(STREAM_TIMEOUT, js.get_or_create_stream(config)).await {
            Ok(Ok(stream)) => {
                let created = stream.cached_info().created.unix_timestamp_nanos();
                let epoch = u64::try_from(created).unwrap_or_default();
                self.shared.rooms_epoch.store(epoch, Ordering::Relaxed);
                subs.stream = Some(stream);
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cannot set up the rooms stream; retrying");
                return;
            }
            Err(_) => {
                warn!("setting up the rooms stream timed out; retrying");
                return;
            }
        }
        for room in self.open_history(&js).await {
            state.expiry.watch(room);
        }
        for room in self.hub.room_names() {
            state.subs.coming_up.insert(room);
            self.request(room, state);
        }
        if state.subs.coming_up.is_empty() {
            self.all_read(state);
        }
    }

    /// Sets the history stream up, with this node's history settings, for
    /// the copies and for `/history`. Without it the link still comes up:
    /// rooms work, and `/history` answers that the cluster is busy. Returns
    /// the rooms the stream keeps history for, so that the history of rooms
    /// left empty while no node ran still goes after `--history-ttl`.
    async fn open_history(&self, js: &async_nats::jetstream::Context) -> Vec<RoomName> {
        if self.history.lines == 0 {
            return Vec::new();
        }
        let config = history::config(self.history);
        let open = async {
            let stream = js.get_or_create_stream(config.clone()).await?;
            let current = &stream.cached_info().config;
            let stale = current.max_messages_per_subject != config.max_messages_per_subject
                || current.max_age != config.max_age
                || current.max_bytes != config.max_bytes;
            if stale {
                // The settings of the node that started last win; every
                // node of a cluster should have the same.
                js.update_stream(&config).await?;
            }
            Ok::<_, async_nats::Error>(stream)
        };
        let stream = match tokio::time::timeout(STREAM_TIMEOUT, open).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot set up the history stream");
                return Vec::new();
            }
            Err(_) => {
                warn!("setting up the history stream timed out");
                return Vec::new();
            }
        };
        *self.shared.history_stream() = Some(stream.clone());
        let rooms = async {
            let mut rooms = Vec::new();
            let mut subjects = stream.info_with_subjects(subject::HISTORY).await?;
            while let Some((subject, _)) = subjects.try_next().await? {
                if let Some(room) = subject::parse_history(&subject) {
                    rooms.push(room);
                }
            }
            Ok::<_, async_nats::Error>(rooms)
        };
        match tokio::time::timeout(STREAM_TIMEOUT, rooms).await {
            Ok(Ok(rooms)) => rooms,
            _ => Vec::new(),
        }
    }

    /// Purges the history of rooms empty on every node for `--history-ttl`
    /// (see `history::Expiry`), off this task.
    fn expire_history(&self, expiry: &mut history::Expiry) {
        if self.history.lines == 0 {
            return;
        }
        let Some(stream) = self.shared.history_stream().clone() else {
            return;
        };
        let ttl = Duration::from_millis(self.history.ttl);
        let occupied =
            |room| self.hub.has_room(room) || !self.shared.replica().members(room).is_empty();
        let due = expiry.due(std::time::Instant::now(), ttl, occupied);
        for room in due {
            debug!(%room, "history expired");
            tokio::spawn(history::purge(stream.clone(), room));
        }
    }

    /// Asks the consumers task for a consumer of `room`, unless one is
    /// already on its way; lines for the room wait in `pending` meanwhile.
    fn request(&self, room: RoomName, state: &mut State) {
        state.expiry.watch(room);
        let subs = &mut state.subs;
        if subs.pending.contains_key(&room) {
            return;
        }
        let Some(stream) = subs.stream.clone() else {
            return;
        };
        subs.pending.insert(room, VecDeque::new());
        self.ask(room, stream, state);
    }

    /// Sends the consumers task a request for `room`.
    fn ask(&self, room: RoomName, stream: JsStream, state: &mut State) {
        let request = Request {
            generation: state.subs.generation,
            room,
            stream,
        };
        if state.requests.send(request).is_err() {
            // The consumers task is gone (shutting down): nothing will come.
            if let Some(lines) = state.subs.pending.remove(&room) {
                for line in lines {
                    self.keep_local(line, state);
                }
            }
        }
    }

    /// Every room asked for when the link came back is answered: lines go
    /// through NATS from now on.
    fn all_read(&self, state: &mut State) {
        self.link.rooms_subscribed();
        state.up = self.shared.is_up();
    }

    /// While the link is up: every room with members here is read, or
    /// asked for. Catches rooms first joined while the link was coming
    /// back, and rooms whose consumer could not be made last time.
    fn read_every_room(&self, state: &mut State) {
        let Some(stream) = state.subs.stream.clone() else {
            return;
        };
        for room in std::mem::take(&mut state.subs.retry) {
            if state.subs.pending.contains_key(&room) {
                self.ask(room, stream.clone(), state);
            }
        }
        for room in self.hub.room_names() {
            if !state.subs.rooms.contains_key(&room) && !state.subs.pending.contains_key(&room) {
                self.request(room, state);
            }
        }
    }

    /// The consumers task answered: the room is read from now on (or could
    /// not be), and the lines that waited for it go on, in order.
    async fn subscribed(&self, made: Made, state: &mut State, down: &mut watch::Receiver<Phase>) {
        let subs = &mut state.subs;
        if made.generation != subs.generation {
            return;
        }
        let room = made.room;
        let Some(messages) = made.messages else {
            if subs.coming_up.remove(&room) && subs.coming_up.is_empty() {
                self.all_read(state);
            }
            let subs = &mut state.subs;
            let tries = subs.failed.entry(room).or_default();
            *tries += 1;
            if *tries < CONSUMER_TRIES {
                // Its lines wait, in order, for the next try.
                subs.retry.insert(room);
                return;
            }
            // Its members, the senders included, would never see them come
            // back: they go to the other nodes and are shown here at once.
            // The next line there asks again.
            subs.failed.remove(&room);
            let waiting = subs.pending.remove(&room).unwrap_or_default();
            warn!(%room, lines = waiting.len(), "room cannot be read; its lines are shown here as they are sent");
            for line in waiting {
                self.publish_unread(line, state, down).await;
            }
            return;
        };
        subs.failed.remove(&room);
        let waiting = subs.pending.remove(&room).unwrap_or_default();
        debug!(%room, "subscribed");
        let gone = CancellationToken::new();
        // Dropping the consumer's subscription when its room is swept away
        // ends it.
        let id = subs.next_id;
        subs.next_id += 1;
        let arrivals = messages
            .take_until(gone.clone().cancelled_owned())
            .filter_map(move |m| {
                std::future::ready(match m {
                    Ok(m) => {
                        let place = m.info().ok().map(|info| {
                            let at = info.published.unix_timestamp_nanos() / 1_000_000;
                            (info.stream_sequence, Millis::try_from(at).unwrap_or(0))
                        });
                        Some((room, id, Some((m.message, place))))
                    }
                    // The consumer no longer exists on the server (deleted,
                    // or its stream lost); the async-nats consumer does not
                    // make a new one, so this node must.
                    Err(e) if !matches!(e.kind(), OrderedErrorKind::Other) => {
                        warn!(%room, error = %e, "room consumer gone; reading the room anew");
                        Some((room, id, None))
                    }
                    Err(e) => {
                        debug!(%room, error = %e, "room consumer hiccup");
                        None
                    }
                })
            });
        subs.arrivals.push(Box::pin(arrivals));
        let subject = Subject::from(subject::room(room));
        if let Some(old) = subs.rooms.insert(room, Subscribed { id, subject, gone }) {
            old.gone.cancel();
        }
        if subs.coming_up.remove(&room) && subs.coming_up.is_empty() {
            self.all_read(state);
        }
        for line in waiting {
            self.send(line, state, down).await;
        }
        if !self.hub.has_room(room) {
            self.sweep(&mut state.subs);
        }
    }

    /// Publishes one line, or delivers it here if it cannot go through the
    /// stream: the link is not up, or the room could not be subscribed (its
    /// members, the sender included, would never see it come back), or the
    /// client refused it, or the link was lost while the client would not
    /// take it. A line for a room being subscribed waits for it.
    async fn send(&self, line: Outgoing, state: &mut State, down: &mut watch::Receiver<Phase>) {
        if !self.shared.is_up() {
            return self.keep_local(line, state);
        }
        let room = line.room;
        if let Some(waiting) = state.subs.pending.get_mut(&room) {
            waiting.push_back(line);
            return;
        }
        let subject = match state.subs.rooms.get(&room) {
            Some(subscribed) => subscribed.subject.clone(),
            None if state.subs.stream.is_none() => return self.keep_local(line, state),
            // Nobody here is in the room any more (this is its last local
            // member's leave): nothing needs to come back, so nothing waits
            // for a consumer.
            None if !self.hub.has_room(room) => Subject::from(subject::room(room)),
            None => {
                self.request(room, state);
                match state.subs.pending.get_mut(&room) {
                    Some(waiting) => waiting.push_back(line),
                    None => self.keep_local(line, state),
                }
                return;
            }
        };
        self.shared.dequeued(&line);
        let Some(sent) = self.publish(subject, &line, down).await else {
            return self.deliver_here(line, state);
        };
        match sent {
            Ok(()) => {
                self.shared.metrics.published.inc();
                match &line.kind {
                    Kind::Join { node, user, tag } if *node == self.shared.node => {
                        state
                            .echoes
                            .in_flight
                            .insert(*tag, (room, *user, Instant::now()));
                    }
                    Kind::Leave { node, user }
                        if *node == self.shared.node && state.subs.rooms.contains_key(&room) =>
                    {
                        let leaving = state.echoes.leaving.entry((room, user.key()));
                        let (n, at) = leaving.or_insert((0, Instant::now()));
                        *n += 1;
                        *at = Instant::now();
                    }
                    _ => {}
                }
            }
            Err(e) => {
                warn!(%room, error = %e, "publish failed");
                self.deliver_here(line, state);
            }
        }
    }

    /// Publishes a line of a room this node cannot read, and shows it to
    /// this node's members at once, since it will not come back.
    async fn publish_unread(
        &self,
        line: Outgoing,
        state: &mut State,
        down: &mut watch::Receiver<Phase>,
    ) {
        self.shared.dequeued(&line);
        if self.shared.is_up() {
            let subject = Subject::from(subject::room(line.room));
            if let Some(Ok(())) = self.publish(subject, &line, down).await {
                self.shared.metrics.published.inc();
            }
        }
        self.deliver_here(line, state);
    }

    /// Hands a line to the client; `None` if the link fell while the client
    /// would not take it (dropping the publish took the line back).
    async fn publish(
        &self,
        subject: Subject,
        line: &Outgoing,
        down: &mut watch::Receiver<Phase>,
    ) -> Option<Result<(), async_nats::PublishError>> {
        let publish = async {
            match line.kind.headers() {
                Some(headers) => {
                    self.client
                        .publish_with_headers(subject, headers, line.line.clone())
                        .await
                }
                None => self.client.publish(subject, line.line.clone()).await,
            }
        };
        tokio::select! {
            sent = publish => Some(sent),
            _ = down.wait_for(|p| *p != Phase::Up) => None,
        }
    }

    /// Delivers a queued line to this node's members only.
    fn keep_local(&self, line: Outgoing, state: &mut State) {
        self.shared.dequeued(&line);
        self.deliver_here(line, state);
    }

    /// Delivers a line, already taken off the queue's count, to this
    /// node's members only; with the link down, after whatever was said
    /// before it that is still on its way.
    fn deliver_here(&self, line: Outgoing, state: &mut State) {
        self.shared.metrics.kept_local.inc();
        if !self.shared.is_up() {
            if state.up {
                self.lose(state);
            } else {
                self.go_local(state);
            }
        }
        self.deliver(
            line.room,
            &line.kind,
            line.line,
            line.lines,
            &mut state.echoes,
        );
    }

    /// The link is lost (or was, and is back on new consumers): this
    /// node's joins still travelling are completed here, and skipped if
    /// they come back after all; lines waiting for a room's consumer are
    /// delivered here, in order.
    fn go_local(&self, state: &mut State) {
        let now = Instant::now();
        state.echoes.leaving.clear();
        for (tag, (room, user, _)) in std::mem::take(&mut state.echoes.in_flight) {
            state.echoes.skip.insert(tag, now);
            self.complete_join(room, user, tag);
        }
        for (room, lines) in state.subs.pending.iter_mut() {
            for line in lines.drain(..) {
                self.shared.dequeued(&line);
                self.shared.metrics.kept_local.inc();
                self.deliver(*room, &line.kind, line.line, line.lines, &mut state.echoes);
            }
        }
    }

    /// The link was up and is not any more: everything on its way is
    /// delivered here, and the old consumers go, since lines that came back
    /// through them from before the loss would be shown after lines kept
    /// here since.
    fn lose(&self, state: &mut State) {
        state.up = false;
        self.go_local(state);
        // Lines handed to the client before the loss may never come back;
        // their senders' next commands are not held for them.
        self.hub.forget_echoes();
        for subscribed in state.subs.rooms.values() {
            subscribed.gone.cancel();
        }
        state.subs.rooms.clear();
        state.subs.forget_requests();
    }

    /// Forgets skipped joins once the stream no longer has them, and
    /// completes here a join whose line has not come back within
    /// [`JOIN_ECHO_WAIT`] while the link stayed up (the stream dropped it,
    /// or this node was starved): its joiner is not left hearing nothing.
    /// A join behind its user's own leave of that room waits for the leave
    /// to come back, up to [`JOIN_HOLD`], so that nobody here is shown the user joining before
    /// leaving.
    fn forget_old(&self, echoes: &mut Echoes) {
        let now = Instant::now();
        echoes.skip.retain(|_, at| now - *at < LINE_KEPT);
        echoes.leaving.retain(|_, (_, at)| now - *at < JOIN_HOLD);
        let lost: Vec<JoinTag> = echoes
            .in_flight
            .iter()
            .filter(|(_, (room, user, at))| {
                let age = now - *at;
                age >= JOIN_HOLD
                    || (age >= JOIN_ECHO_WAIT && !echoes.leaving.contains_key(&(*room, user.key())))
            })
            .map(|(tag, _)| *tag)
            .collect();
        for tag in lost {
            if let Some((room, user, _)) = echoes.in_flight.remove(&tag) {
                echoes.skip.insert(tag, now);
                self.complete_join(room, user, tag);
            }
        }
    }

    /// Completes here a join of this node whose line did not come back: if
    /// it is still the joiner's current join, the joiner is admitted and
    /// this node's members see the line; a join since replaced (its user
    /// left and came back) is over, and shown to nobody.
    fn complete_join(&self, room: RoomName, user: UserName, tag: JoinTag) {
        if let Some(first) = self.shared.admit(room, user, tag) {
            self.admit(room, user, reply::joined(user), first);
        }
    }

    /// Unsubscribes from every room nobody here is in any more.
    fn sweep(&self, subs: &mut Subscriptions) {
        subs.rooms.retain(|room, subscribed| {
            let keep = self.hub.has_room(*room);
            if !keep {
                debug!(%room, "unsubscribed");
                subscribed.gone.cancel();
            }
            keep
        });
    }

    /// Delivers one message from NATS to the local members of `room`, but
    /// returns a burst of messages, for [`Rooms::said`].
    fn arrive(
        &self,
        room: RoomName,
        message: Message,
        place: Option<(u64, Millis)>,
        echoes: &mut Echoes,
    ) -> Option<HistoryCopy> {
        self.shared.metrics.received.inc();
        let Some(kind) = Kind::parse(message.headers.as_ref()) else {
            debug!(%room, "dropped a message with bad headers");
            return None;
        };
        let lines = match clean_lines(&message.payload) {
            Some(1) => 1,
            Some(n) if kind == Kind::Line => n,
            _ => {
                debug!(%room, "dropped a message that is not clean lines of its kind");
                return None;
            }
        };
        if kind == Kind::Line {
            let epoch = self.shared.rooms_epoch.load(Ordering::Relaxed);
            let stamp = place.map(|(seq, at)| ClusterStamp { epoch, seq, at });
            // Delivered by the caller once copied: see `said`.
            return Some(HistoryCopy {
                room,
                stamp,
                burst: message.payload,
                lines,
            });
        }
        let me = self.shared.node.as_str();
        if let Kind::Leave { node, user } = &kind {
            if node == me {
                echoes.left(room, user.key());
            }
        }
        // Once the link is up, joins and leaves are shown as they happen;
        // repairs, and anything before, only if news (see `replica`).
        let live = self.shared.is_up();
        let news = {
            let mut replica = self.shared.replica();
            match &kind {
                Kind::Join { node, user, .. } | Kind::Present { node, user } if node != me => {
                    replica.put(room, *user, node);
                    let news = replica.tell_joined(room, *user, node);
                    news || (live && matches!(kind, Kind::Join { .. }))
                }
                Kind::Leave { node, user } | Kind::Gone { node, user } if node != me => {
                    replica.remove(room, user.key(), Some(node));
                    let news = replica
                        .tell_left(room, user.key(), Some(node), Some(*user))
                        .is_some();
                    news || (live && matches!(kind, Kind::Leave { .. }))
                }
                _ => true,
            }
        };
        if !news {
            return None;
        }
        self.deliver(room, &kind, message.payload, lines, echoes);
        None
    }

    /// Copies a burst into the history stream, with its place in the rooms
    /// stream (see `history`): every node that reads the room does, and
    /// the stream keeps one copy. Given up if the link falls meanwhile,
    /// like any publish.
    async fn keep_in_history(&self, copy: &HistoryCopy, down: &mut watch::Receiver<Phase>) {
        let Some(stamp) = copy.stamp.filter(|_| self.history.lines > 0) else {
            return;
        };
        let publish = self.client.publish_with_headers(
            subject::history(copy.room),
            history::headers(stamp),
            copy.burst.clone(),
        );
        tokio::select! {
            _ = publish => {}
            _ = down.wait_for(|p| *p != Phase::Up) => {}
        }
    }

    /// A burst of messages from the rooms stream: copied into the history,
    /// then delivered. In that order, so that a sender woken by its own
    /// burst (see `Outbox::poll_echoes`) and asking `/history` next finds
    /// it there: its request goes out on this connection after the copy.
    async fn said(&self, copy: HistoryCopy, down: &mut watch::Receiver<Phase>) {
        self.keep_in_history(&copy, down).await;
        let arrival = Arrival::Said {
            lines: copy.lines,
            stamp: copy.stamp,
        };
        self.hub.deliver(copy.room, arrival, copy.burst);
    }

    /// Hands a line of this kind to the hub, the way its kind says.
    fn deliver(&self, room: RoomName, kind: &Kind, line: Bytes, lines: usize, echoes: &mut Echoes) {
        let me = self.shared.node.as_str();
        let arrival = match kind {
            Kind::Join { node, user, tag } if node == me => {
                echoes.in_flight.remove(tag);
                if echoes.skip.remove(tag).is_none() {
                    self.deliver_own_join(room, *user, *tag, line);
                }
                return;
            }
            // A repair made by this node: its members saw the change when
            // it happened.
            Kind::Present { node, .. } | Kind::Gone { node, .. } if node == me => return,
            Kind::Private { from, to } => Arrival::Private {
                from: *from,
                to: *to,
            },
            Kind::Line => Arrival::Said { lines, stamp: None },
            Kind::Removed { user } => Arrival::Removed { user: *user },
            Kind::Join { user, .. } | Kind::Present { user, .. } => Arrival::Joined { user: *user },
            Kind::Leave { user, .. } | Kind::Gone { user, .. } => Arrival::Left { user: *user },
        };
        self.hub.deliver(room, arrival, line);
    }

    /// This node's join line: it admits its joiner if that join is the one
    /// waiting; otherwise it is only a line.
    fn deliver_own_join(&self, room: RoomName, user: UserName, tag: JoinTag, line: Bytes) {
        if let Some(first) = self.shared.admit(room, user, tag) {
            self.admit(room, user, line, first);
        } else {
            self.hub.deliver(room, Arrival::Joined { user }, line);
        }
    }

    /// Lets a joiner in with its join line. A connection let into its first
    /// room here while the link is lost hears so at once, as the members
    /// already there did, so that the `*** cluster link restored` it hears
    /// later makes sense (one moving in from another room heard it there).
    fn admit(&self, room: RoomName, user: UserName, line: Bytes, first: bool) {
        self.link.admitting(|lost| {
            self.hub.deliver(room, Arrival::Admit { user }, line);
            if lost && first {
                self.hub.notice_to(room, user.key(), NoticeCode::LinkLost);
            }
        });
    }
}
