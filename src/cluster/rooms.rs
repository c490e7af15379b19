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
//! is delivered to local members from here.
//!
//! Publishing goes through async-nats, which queues what it is given and
//! writes it all out, flushing when its queue runs dry: a burst costs few
//! syscalls and a lone line goes out at once, with no timer to wait for.
//! Lines that were queued here while the link dropped are delivered to
//! local members instead, as the hub would have done.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::stream::{self, Stream as JsStream};
use async_nats::{Client, Message, Subject};
use futures_util::stream::{SelectAll, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::envelope::{Kind, is_clean_line};
use super::link::{Link, Phase};
use super::shared::{Outgoing, Shared};
use super::subject;
use crate::hub::{Arrival, Hub};
use crate::protocol::names::RoomName;

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

/// Pause before trying again to set the stream up after the link came back.
const RETRY: Duration = Duration::from_millis(500);

type Arrivals = Pin<Box<dyn Stream<Item = (RoomName, Message)> + Send>>;

/// The room subscriptions and what they bring.
struct Subscriptions {
    /// The ordering stream, once set up on this connection.
    stream: Option<JsStream>,
    /// Every subscribed room.
    rooms: HashMap<RoomName, Subscribed>,
    /// Every subscribed room's lines, merged.
    arrivals: SelectAll<Arrivals>,
}

/// A room this node reads.
struct Subscribed {
    /// The room's subject, built once: every line here is published to it.
    subject: Subject,
    /// Cancelling drops the room's consumer.
    gone: CancellationToken,
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
    pub outgoing: mpsc::Receiver<Outgoing>,
    /// Requests to send everything queued so far, at shutdown.
    pub flushes: mpsc::Receiver<oneshot::Sender<()>>,
    /// Ends the task.
    pub stop: CancellationToken,
}

impl Rooms {
    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let mut subs = Subscriptions {
            stream: None,
            rooms: HashMap::new(),
            arrivals: SelectAll::new(),
        };
        let mut phase = self.link.watch();
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
                        self.send(line, &mut subs).await;
                    }
                }
                Some((room, message)) = subs.arrivals.next(), if !subs.arrivals.is_empty() => {
                    self.arrive(room, message);
                }
                _ = self.shared.emptied.notified() => self.sweep(&mut subs),
                changed = phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *phase.borrow_and_update() == Phase::Ready {
                        self.resubscribe(&mut subs).await;
                    }
                }
                _ = retry.tick(), if self.link.phase() == Phase::Ready => {
                    self.resubscribe(&mut subs).await;
                }
                Some(done) = self.flushes.recv() => {
                    while let Ok(line) = self.outgoing.try_recv() {
                        self.send(line, &mut subs).await;
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
    /// subscribe anew to every room with members here, then let lines flow.
    async fn resubscribe(&self, subs: &mut Subscriptions) {
        if self.link.phase() != Phase::Ready {
            return;
        }
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
        match js.get_or_create_stream(config).await {
            Ok(stream) => subs.stream = Some(stream),
            Err(e) => {
                warn!(error = %e, "cannot set up the rooms stream; retrying");
                return;
            }
        }
        // Consumers from before the link dropped may be gone with the
        // server; new ones are cheap.
        for room in subs.rooms.values() {
            room.gone.cancel();
        }
        subs.rooms.clear();
        for room in self.hub.room_names() {
            self.subscribe(room, subs).await;
        }
        self.link.rooms_subscribed();
    }

    /// Publishes one line, or delivers it here if it cannot go through the
    /// stream: the link went down since it was queued, or the room could
    /// not be subscribed (its members, the sender included, would never see
    /// it come back), or the client refused it.
    async fn send(&self, line: Outgoing, subs: &mut Subscriptions) {
        if !self.shared.is_up() {
            return self.keep_local(line);
        }
        self.subscribe(line.room, subs).await;
        let Some(subject) = subs.rooms.get(&line.room).map(|r| r.subject.clone()) else {
            return self.keep_local(line);
        };
        let sent = match line.kind.headers() {
            Some(headers) => {
                self.client
                    .publish_with_headers(subject, headers, line.line.clone())
                    .await
            }
            None => self.client.publish(subject, line.line.clone()).await,
        };
        match sent {
            Ok(()) => {
                self.shared.metrics.published.inc();
            }
            Err(e) => {
                warn!(room = %line.room, error = %e, "publish failed");
                self.keep_local(line);
            }
        }
    }

    /// Delivers a line to this node's members only.
    fn keep_local(&self, line: Outgoing) {
        self.shared.metrics.kept_local.inc();
        if let Some(arrival) = self.arrival(&line.kind) {
            self.hub.deliver(line.room, arrival, line.line);
        }
    }

    /// Subscribes to `room` if it is not yet: an ordered consumer of the
    /// stream, from the next line on.
    async fn subscribe(&self, room: RoomName, subs: &mut Subscriptions) {
        if subs.rooms.contains_key(&room) {
            return;
        }
        let Some(stream) = &subs.stream else {
            return;
        };
        let subject = subject::room(room);
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await,
            Err(e) => {
                warn!(%room, error = %e, "cannot subscribe to a room");
                return;
            }
        };
        match messages {
            Ok(messages) => {
                debug!(%room, "subscribed");
                let gone = CancellationToken::new();
                // Dropping the consumer's subscription when its room is
                // swept away ends it.
                let stream = messages
                    .take_until(gone.clone().cancelled_owned())
                    .filter_map(move |m| {
                        std::future::ready(match m {
                            Ok(m) => Some((room, m.message)),
                            Err(e) => {
                                debug!(%room, error = %e, "room consumer hiccup");
                                None
                            }
                        })
                    });
                subs.arrivals.push(Box::pin(stream));
                let subject = Subject::from(subject);
                subs.rooms.insert(room, Subscribed { subject, gone });
            }
            Err(e) => warn!(%room, error = %e, "cannot subscribe to a room"),
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

    /// Delivers one message from NATS to the local members of `room`.
    fn arrive(&self, room: RoomName, message: Message) {
        self.shared.metrics.received.inc();
        let Some(kind) = Kind::parse(message.headers.as_ref()) else {
            debug!(%room, "dropped a message with bad headers");
            return;
        };
        if !is_clean_line(&message.payload) {
            debug!(%room, "dropped a message that is not one clean line");
            return;
        }
        let me = self.shared.node.as_str();
        {
            let mut replica = self.shared.replica();
            match &kind {
                Kind::Join { node, user, .. } | Kind::Present { node, user } if node != me => {
                    replica.put(room, *user, node);
                }
                Kind::Leave { node, user } | Kind::Gone { node, user } if node != me => {
                    replica.remove(room, user.key(), Some(node));
                }
                _ => {}
            }
        }
        if let Some(arrival) = self.arrival(&kind) {
            self.hub.deliver(room, arrival, message.payload);
        }
    }

    /// What the hub should do with a line of this kind; `None` for a repair
    /// made by this node, whose members saw the change when it happened.
    fn arrival(&self, kind: &Kind) -> Option<Arrival> {
        let me = self.shared.node.as_str();
        Some(match kind {
            Kind::Line | Kind::Leave { .. } => Arrival::Line,
            Kind::Join { node, user, tag } => Arrival::Joined {
                user: *user,
                tag: (node == me).then_some(*tag),
            },
            Kind::Private { from, to } => Arrival::Private {
                from: *from,
                to: *to,
            },
            Kind::Present { node, .. } | Kind::Gone { node, .. } if node == me => return None,
            Kind::Present { user, .. } => Arrival::Joined {
                user: *user,
                tag: None,
            },
            Kind::Gone { .. } => Arrival::Line,
        })
    }
}
