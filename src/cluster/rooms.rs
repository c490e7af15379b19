//! The rooms task: this node's room traffic to and from NATS.
//!
//! It owns the room subscriptions. A room is subscribed before this node
//! publishes its first line there (its first member's `has joined`), so the
//! joiner's own line comes back to it, and unsubscribed once the hub has no
//! one left in it. Everything that arrives is delivered to local members
//! from here, in the order NATS gave it: one server orders each subject, so
//! every node on it sees one order.
//!
//! Publishing goes through async-nats, which queues what it is given and
//! writes it all out, flushing when its queue runs dry: a burst costs few
//! syscalls and a lone line goes out at once, with no timer to wait for.
//! Lines that were queued here while the link dropped are delivered to
//! local members instead, as the hub would have done.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use async_nats::{Client, Message};
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

type Arrivals = Pin<Box<dyn Stream<Item = (RoomName, Message)> + Send>>;

/// The rooms task's state.
pub(super) struct Rooms {
    pub client: Client,
    pub hub: Arc<Hub>,
    pub shared: Arc<Shared>,
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
        let mut subs: HashMap<RoomName, CancellationToken> = HashMap::new();
        let mut arrivals: SelectAll<Arrivals> = SelectAll::new();
        let mut phase = self.link.watch();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                n = self.outgoing.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    for line in batch.drain(..) {
                        self.send(line, &mut subs, &mut arrivals).await;
                    }
                }
                Some((room, message)) = arrivals.next(), if !arrivals.is_empty() => {
                    self.arrive(room, message);
                }
                _ = self.shared.emptied.notified() => self.sweep(&mut subs),
                changed = phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *phase.borrow_and_update();
                    if now == Phase::Ready {
                        self.sweep(&mut subs);
                        for room in self.hub.room_names() {
                            self.subscribe(room, &mut subs, &mut arrivals).await;
                        }
                        self.link.rooms_subscribed();
                    }
                }
                Some(done) = self.flushes.recv() => {
                    while let Ok(line) = self.outgoing.try_recv() {
                        self.send(line, &mut subs, &mut arrivals).await;
                    }
                    if self.shared.is_up() {
                        let _ = self.client.flush().await;
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    /// Publishes one line, or delivers it here if the link went down since
    /// it was queued.
    async fn send(
        &self,
        line: Outgoing,
        subs: &mut HashMap<RoomName, CancellationToken>,
        arrivals: &mut SelectAll<Arrivals>,
    ) {
        if !self.shared.is_up() {
            self.shared.metrics.kept_local.inc();
            let arrival = self.arrival(&line.kind);
            if let Some(arrival) = arrival {
                self.hub.deliver(line.room, arrival, line.line);
            }
            return;
        }
        self.subscribe(line.room, subs, arrivals).await;
        let subject = subject::room(line.room);
        let sent = match line.kind.headers() {
            Some(headers) => {
                self.client
                    .publish_with_headers(subject, headers, line.line)
                    .await
            }
            None => self.client.publish(subject, line.line).await,
        };
        match sent {
            Ok(()) => {
                self.shared.metrics.published.inc();
            }
            Err(e) => warn!(room = %line.room, error = %e, "publish failed"),
        }
    }

    /// Subscribes to `room` if it is not yet.
    async fn subscribe(
        &self,
        room: RoomName,
        subs: &mut HashMap<RoomName, CancellationToken>,
        arrivals: &mut SelectAll<Arrivals>,
    ) {
        if subs.contains_key(&room) {
            return;
        }
        match self.client.subscribe(subject::room(room)).await {
            Ok(subscriber) => {
                debug!(%room, "subscribed");
                let gone = CancellationToken::new();
                // Dropping the subscriber when its room is swept away
                // unsubscribes it.
                let stream = subscriber
                    .take_until(gone.clone().cancelled_owned())
                    .map(move |m| (room, m));
                arrivals.push(Box::pin(stream));
                subs.insert(room, gone);
            }
            Err(e) => warn!(%room, error = %e, "subscribe failed"),
        }
    }

    /// Unsubscribes from every room nobody here is in any more.
    fn sweep(&self, subs: &mut HashMap<RoomName, CancellationToken>) {
        subs.retain(|room, gone| {
            let keep = self.hub.has_room(*room);
            if !keep {
                debug!(%room, "unsubscribed");
                gone.cancel();
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
