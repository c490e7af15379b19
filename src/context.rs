//! What the server's tasks share, in two layers.
//!
//! [`Connection`] is everything one chat connection needs once it has been
//! admitted: the rooms, the cluster, its limits and the stop signal. The
//! connection driver sees only this. [`Shared`] wraps it with what the
//! listeners and the HTTP side need on top: the task tracker, the
//! connection caps, the page settings.
//!
//! The context lives in a module of its own so that `server` (which builds
//! it), `http` and `connection` (which use it) each import it and none of
//! them imports another back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::hub::Hub;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::operators::Operators;
use crate::origin::AllowedOrigins;
use crate::pacing::Pacer;
use crate::session::SessionSettings;

/// What one chat connection needs, whatever its transport.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The rooms.
    pub hub: Arc<Hub>,
    /// The cluster this node is in, with `--nats`; names are claimed there.
    pub cluster: Option<Cluster>,
    /// Cancelled once when the server stops.
    pub shutdown: CancellationToken,
    /// What `/metrics` reports.
    pub metrics: Metrics,
    /// What a reload may change, read by each connection as it starts.
    pub live: RwLock<Live>,
    /// How long a writer waits between writes while the server is busy.
    pub pacer: Arc<Pacer>,
    /// One permit per connection saying goodbye; see
    /// [`crate::limits::MAX_CLOSING`].
    pub closing: Arc<Semaphore>,
}

/// The settings a reload (SIGHUP) may change while the server runs. A
/// connection takes them as it starts; those already connected keep
/// theirs.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    /// What each session is told of the server: its rate limit, where the
    /// page is.
    pub settings: SessionSettings,
    /// `--max-queue-bytes`.
    pub max_queue_bytes: usize,
    /// `--login-timeout`, if on.
    pub login_timeout: Option<Duration>,
    /// Who may become an operator.
    pub operators: Operators,
}

impl Connection {
    /// The settings in force now.
    pub fn live(&self) -> Live {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What the listeners and the HTTP side share, around [`Connection`].
#[derive(Debug)]
pub(crate) struct Shared {
    /// Handed to every admitted chat connection.
    pub conn: Arc<Connection>,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// `--max-connections` and `--max-per-ip`: chat connections.
    pub limiter: Arc<ConnectionLimiter>,
    /// `--max-http-connections` and `--max-per-ip`: page connections, not
    /// yet upgraded, counted apart from chat connections.
    pub http_limiter: Arc<ConnectionLimiter>,
    /// One permit per connection being told it is refused; see
    /// [`crate::limits::MAX_REFUSALS`].
    pub refusals: Arc<Semaphore>,
    /// `--max-write-delay`.
    pub max_write_delay: Duration,
    /// `--ws-ping-interval`, if on.
    pub ws_ping_interval: Option<Duration>,
    /// `--web-dir`, if given.
    pub web_dir: Option<PathBuf>,
    /// The page origins a WebSocket upgrade may come from.
    pub origins: AllowedOrigins,
    /// The bound address of each listener, for the hints given to clients
    /// that reached the wrong port.
    pub listeners: Listeners,
    /// Whether `/metrics` is served beside the page.
    pub metrics_public: bool,
    /// `--drain-period`.
    pub drain_period: Duration,
    /// Cancelled when a drain begins: listeners stop accepting.
    pub draining: CancellationToken,
    /// Cancelled when a drain is over: the server stops.
    pub drained: CancellationToken,
}

/// The bound addresses of the listeners that are on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Listeners {
    /// Plain TCP chat.
    pub tcp: Option<SocketAddr>,
    /// TLS chat.
    pub tls: Option<SocketAddr>,
    /// The page over HTTP.
    pub http: Option<SocketAddr>,
}

impl Shared {
    /// The ban a connection from `peer` falls under now, if any.
    /// Counts it as refused if so.
    pub fn banned(&self, peer: SocketAddr) -> Option<crate::moderation::Ban> {
        let moderation = self.conn.hub.moderation();
        let ban = moderation.bans().find(peer.ip(), self.conn.hub.now())?;
        moderation
            .tally
            .count(crate::moderation::Moderated::Refused);
        Some(ban)
    }

    /// A place among the connections being told they are refused, if one
    /// is free; see [`crate::limits::MAX_REFUSALS`].
    pub fn refusal_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }
}
