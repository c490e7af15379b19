//! The state of this node's NATS link, as users and the other tasks see it.
//!
//! async-nats reports `Connected` and `Disconnected` through a callback and
//! reconnects by itself; the `heartbeat` task adds what async-nats cannot
//! see, a connection that stays open while nothing comes through it. The
//! link goes through four phases:
//! [`Phase::Down`] until a connection exists, [`Phase::Connected`] while the
//! presence task registers this node's members again, [`Phase::Ready`] while
//! the rooms task subscribes again, and [`Phase::Up`], when lines and name
//! claims go through NATS. A loss goes straight back to `Down`: lines stay
//! local at once, and the users hear `*** cluster link lost` (and, once the
//! link is `Up` again, `*** cluster link restored`).
//!
//! Transitions take one small mutex, so that a loss cannot be overwritten by
//! a task that was just finishing its part of the way up. The hub is called
//! under it; the hub never calls back into the link.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{info, warn};

use super::shared::Shared;
use crate::hub::Hub;
use crate::protocol::json::NoticeCode;

/// How far up the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No connection to NATS.
    Down,
    /// Connected; presence is being registered.
    Connected,
    /// Presence is registered; rooms are being subscribed.
    Ready,
    /// Everything goes through NATS.
    Up,
}

/// The link's phase and the users' view of it.
#[derive(Debug)]
pub(super) struct Link {
    /// Taken for every transition.
    lock: Mutex<Told>,
    /// The phase, for the tasks to wait on.
    phase: watch::Sender<Phase>,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
}

/// What the users were last told, and why the link is not up.
#[derive(Debug, Default)]
struct Told {
    /// They heard the link was lost and have not heard it is back.
    lost: bool,
    /// The client's last error (a refused login, say), for the logs.
    last_error: Option<String>,
}

impl Link {
    pub(super) fn new(hub: Arc<Hub>, shared: Arc<Shared>) -> Link {
        Link {
            lock: Mutex::default(),
            phase: watch::Sender::new(Phase::Down),
            hub,
            shared,
        }
    }

    /// Follows the phase.
    pub(super) fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// The phase now.
    pub(super) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// async-nats connected (first time or again).
    pub(super) fn connected(&self) {
        let _told = self.lock();
        self.come_back();
    }

    /// One of this node's heartbeats came back; `connected` says whether
    /// async-nats counts its connection as up. After a silence, this is the
    /// link working again on the connection async-nats kept.
    pub(super) fn answered(&self, connected: bool) {
        let _told = self.lock();
        if connected {
            self.come_back();
        }
    }

    /// Down to connected, and only from down: a connection already on its
    /// way up is not set back.
    fn come_back(&self) {
        if self.phase() == Phase::Down {
            info!(node = %self.shared.node, "nats link connected");
            self.phase.send_replace(Phase::Connected);
        }
    }

    /// async-nats reports an error of its own (a refused login, a server
    /// that cannot be reached); kept so that the node can say why it has
    /// no link.
    pub(super) fn failed(&self, error: String) {
        self.lock().last_error = Some(error);
    }

    /// The client's last error, if any.
    pub(super) fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// async-nats lost the connection; it is already trying again.
    pub(super) fn disconnected(&self) {
        self.lost("the connection closed");
    }

    /// A heartbeat was not back in time: the server is frozen, unreachable
    /// or overwhelmed, whatever the connection looks like.
    pub(super) fn silent(&self) {
        self.lost("a heartbeat was not answered in time");
    }

    fn lost(&self, why: &str) {
        let mut told = self.lock();
        if self.phase() != Phase::Down {
            warn!(node = %self.shared.node, why, "nats link lost; lines stay on this node until it is back");
        }
        // Cleared before the phase is published, so that a task woken by
        // the fall never still sees the link as up.
        let was_up = self.shared.up.swap(false, Ordering::SeqCst);
        self.phase.send_replace(Phase::Down);
        self.shared.metrics.link_up.set(0);
        if was_up || told.lost {
            // Also a fall while coming back: what users were told is kept
            // until the link is really up again.
            self.shared.replica().lost();
        }
        if was_up {
            self.hub.notice(NoticeCode::LinkLost);
            told.lost = true;
        }
    }

    /// The presence task registered this node's members.
    pub(super) fn presence_registered(&self) {
        let _told = self.lock();
        if self.phase() == Phase::Connected {
            self.phase.send_replace(Phase::Ready);
        }
    }

    /// The rooms task subscribed every room: lines and claims go through
    /// NATS from now on.
    pub(super) fn rooms_subscribed(&self) {
        let mut told = self.lock();
        if self.phase() != Phase::Ready {
            return;
        }
        self.shared.up.store(true, Ordering::SeqCst);
        self.shared.metrics.link_up.set(1);
        self.phase.send_replace(Phase::Up);
        info!(node = %self.shared.node, "cluster link up");
        if std::mem::take(&mut told.lost) {
            self.hub.notice(NoticeCode::LinkRestored);
        }
        // What the users missed meanwhile, found in the presence bucket,
        // after the notice that the link is back.
        let held = self.shared.replica().up();
        for (room, arrival, line) in held {
            self.hub.deliver(room, arrival, line);
        }
    }

    /// Runs `admit`, which lets a joiner in, told whether the users heard
    /// the link is lost and not yet that it is back. Both notices are sent
    /// under the same lock, so the joiner hears each exactly once: with the
    /// members already in, or from `admit`.
    pub(super) fn admitting(&self, admit: impl FnOnce(bool)) {
        let told = self.lock();
        admit(told.lost);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Told> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}
