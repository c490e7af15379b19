//! The heartbeat task: this node says it is alive, hears the other nodes,
//! and times its own NATS link.
//!
//! Every [`HEARTBEAT_EVERY`] the node publishes its id twice. Once on
//! [`subject::HEARTBEAT`], over a connection of its own that carries
//! nothing else, to tell the other nodes it is alive (their beats, heard
//! there too, feed [`Liveness`]): a node busy with room lines, or on a
//! congested link, is never taken for dead because its beats queued behind
//! its lines. And once on its own probe subject over the connection the
//! room lines use: that beat coming back is a round trip through the NATS
//! server on the very path the lines take, timed here. A beat not back within
//! [`LINK_DEADLINE`], with no message at all received meanwhile, means the
//! link is lost, whatever the NATS client believes: async-nats sends its own
//! PING only when nothing else was written for a while, so a busy
//! connection to a frozen or unreachable server would never find out. (A
//! late beat while messages still come in is congestion, not loss: the beat
//! shares the client's queue with this node's room lines, and the senders'
//! back-pressure deals with that; see `liveness::RoundTrip`. So that
//! something always comes in from a live server, the lines' connection also
//! hears every node's alive beats, which do not pass through its queue.) The link is then declared down at once
//! (users told, lines kept local) and the client is made to reconnect; the
//! link counts as connected again when a beat comes back or the client
//! reports a new connection.
//!
//! This task does nothing else, so no key-value or stream round trip made
//! by the other tasks can hold a beat back: a node busy with presence work
//! keeps beating, and its peers never take it for dead.
//!
//! Worst case for noticing a loss: the link dies just after a beat came
//! back; the next beat leaves within [`HEARTBEAT_EVERY`] and is overdue
//! [`LINK_DEADLINE`] later; messages the link delivered just before it
//! died may earn it one [`RECHECK`] more; and a publish that hangs holds
//! the check back by at most [`PUBLISH_TIMEOUT`]: 1 + 2 + 1 + 0.5 = 4.5
//! seconds at the very worst, usually about 3, within the protocol's 5.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::connection::State;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::{Link, Phase};
use super::liveness::RoundTrip;
use super::shared::Shared;
use super::subject;

/// How often a node beats. One small message per node per second.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A beat not back within this is a lost link. On loopback or a LAN a
/// round trip takes milliseconds; this leaves room for a busy server
/// without false alarms.
pub(super) const LINK_DEADLINE: Duration = Duration::from_secs(2);

/// A late beat on a link that still brings messages in is looked at again
/// after this.
const RECHECK: Duration = Duration::from_millis(1000);

/// Longest a beat may wait to be handed to the client (its queue is full
/// when the server stopped reading); the round trip's clock runs meanwhile.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest wait for the client to take a reconnection request.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How far up a phase is, for telling a fall from a rise.
fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Down => 0,
        Phase::Connected => 1,
        Phase::Ready => 2,
        Phase::Up => 3,
    }
}

/// Messages the connection has received so far.
fn received(client: &Client) -> u64 {
    client
        .statistics()
        .in_messages
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The heartbeat task's state.
pub(super) struct Heartbeat {
    /// The NATS connection the room lines use, shared with the other
    /// tasks: its round trip is what is timed.
    pub client: Client,
    /// A connection of its own for saying this node is alive and hearing
    /// the others: no room line is ever queued ahead of a beat there, so a
    /// node busy sending (or receiving) lines is never taken for dead.
    pub alive: Client,
    /// The node id, the liveness table.
    pub shared: Arc<Shared>,
    /// Told when a beat is overdue or back.
    pub link: Arc<Link>,
    /// Ends the task.
    pub stop: CancellationToken,
}

impl Heartbeat {
    /// Runs until stopped.
    pub(super) async fn run(self) {
        // A subscription is only a queued command: it is made (again) by the
        // client whenever it (re)connects.
        let probe_subject = subject::probe(&self.shared.node);
        let subscribed = async {
            let beats = self.alive.subscribe(subject::HEARTBEAT).await?;
            let probes = self.client.subscribe(probe_subject.clone()).await?;
            // Every node's beats, this one's included, reach the lines'
            // connection too, without passing through its outgoing queue:
            // while they keep arriving, the server is alive and a late
            // probe means congestion, not loss (see `RoundTrip`).
            let pulse = self.client.subscribe(subject::HEARTBEAT).await?;
            Ok::<_, async_nats::SubscribeError>((beats, probes, pulse))
        };
        let (mut beats, mut probes, mut pulse) = match subscribed.await {
            Ok(both) => both,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to heartbeats; the cluster link stays down");
                return;
            }
        };
        let me = Bytes::from(self.shared.node.clone());
        let mut trip = RoundTrip::default();
        let mut phase = self.link.watch();
        let mut was = *phase.borrow();
        if was != Phase::Down {
            self.shared.liveness().link_up(Instant::now());
        }
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let overdue = trip.deadline().filter(|_| self.link.phase() != Phase::Down);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {
                    trip.sent(Instant::now(), received(&self.client), LINK_DEADLINE);
                    let probe = self.client.publish(probe_subject.clone(), me.clone());
                    let alive = self.alive.publish(subject::HEARTBEAT, me.clone());
                    let (probe, alive) = tokio::join!(
                        timeout(PUBLISH_TIMEOUT, probe),
                        timeout(PUBLISH_TIMEOUT, alive),
                    );
                    if probe.is_err() || alive.is_err() {
                        debug!("heartbeat not taken by the client in time");
                    }
                }
                Some(_) = probes.next() => {
                    trip.answered();
                    self.link.answered(self.client.connection_state() == State::Connected);
                }
                Some(_) = pulse.next() => {}
                Some(beat) = beats.next() => {
                    if beat.payload != me {
                        self.shared.liveness().heard(&beat.payload, Instant::now());
                    }
                }
                _ = sleep_until(overdue.unwrap_or_else(Instant::now)), if overdue.is_some() => {
                    if !trip.silent(Instant::now(), received(&self.client), RECHECK) {
                        debug!("heartbeat late on a busy link");
                        continue;
                    }
                    trip = RoundTrip::default();
                    self.link.silent();
                    let client = self.client.clone();
                    // Dropping the silent connection loses what it holds
                    // anyway; a client too stuck to take the request is
                    // left to the beat that comes back when it recovers.
                    tokio::spawn(async move {
                        let _ = timeout(RECONNECT_TIMEOUT, client.force_reconnect()).await;
                    });
                }
                changed = phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Only the latest phase is seen: a loss and the way back
                    // may have happened in between.
                    let now = *phase.borrow_and_update();
                    let mut liveness = self.shared.liveness();
                    // A fall (to down, or to a lower phase with the down in
                    // between missed) ends the link as it was; the way back
                    // up starts afresh.
                    if now == Phase::Down || rank(now) < rank(was) {
                        liveness.link_down();
                    }
                    if now != Phase::Down && (was == Phase::Down || rank(now) < rank(was)) {
                        // Beats sent before tell nothing of the new
                        // connection, and nobody could be heard before it.
                        trip = RoundTrip::default();
                        liveness.link_up(Instant::now());
                    }
                    was = now;
                }
            }
        }
    }
}
