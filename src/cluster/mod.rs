//! Several chatgate nodes sharing their rooms through NATS (feature
//! `server`, flag `--nats`).
//!
//! Without `--nats` none of this runs. With it, the node's [`Hub`] gets a
//! relay (the `shared` module) and six tasks run beside the listeners:
//!
//! - the rooms task (`rooms`) publishes every room line once to the room's
//!   subject, `chatgate.room.<hex of the name>`, which a JetStream stream in
//!   memory numbers, and delivers to local members what its ordered
//!   consumers of the room bring back, so that all nodes see each room's
//!   lines in one order;
//! - the presence task (`presence`) keeps names unique across nodes in a
//!   JetStream key-value bucket, watches it for `/who` and `/rooms`, and
//!   clears the members of nodes that die;
//! - the heartbeat task (`heartbeat`) says that this node is alive and
//!   hears the others over a NATS connection of its own, and times its own
//!   beats through the NATS server on the lines' connection, so that a
//!   silent link is noticed within seconds whatever the traffic;
//! - the bans task (`bans`) keeps the cluster's bans in a key-value bucket
//!   that every node watches, so a ban made on one node holds on all;
//! - the orders task (`orders`) carries out operators' kicks and mutes
//!   sent from other nodes for this node's users;
//! - the sweep task (`sweep`) purges the delete markers the presence bucket
//!   collects, so that it holds no more than the members of the moment.
//!
//! `link` follows the connection: when it drops or goes silent, lines and
//! names stay local and users are told; when it is back, presence is
//! registered again, rooms are subscribed again, and users are told again.
//!
//! At shutdown, [`Cluster::depart`] waits (briefly) for every local member to
//! have left, sends their leave lines and deletes their keys, so that the
//! other nodes see them go at once.

mod bans;
mod consumers;
mod envelope;
mod heartbeat;
mod history;
mod link;
mod liveness;
mod orders;
mod presence;
mod replica;
mod rooms;
mod shared;
mod subject;
mod sweep;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerAddr};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::heartbeat::Heartbeat;
use self::link::{Link, Phase};
use self::presence::{Claim, Presence};
use self::rooms::Rooms;
use self::shared::Shared;
use self::sweep::Sweep;
use crate::config::{Config, without_credentials};
use crate::history::{History, HistorySettings, Page};
use crate::hub::Hub;
use crate::metrics::ClusterMetrics;
use crate::protocol::command::HistoryAsk;
use crate::protocol::names::{RoomName, UserName};
use crate::relay::NameClaim;

/// How often the client pings the NATS server when it has nothing else to
/// write. This alone does not notice a busy link going silent; the
/// `heartbeat` task does.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for a (re)connection to be greeted by the server: a frozen
/// server accepts TCP connections in its kernel and then says nothing.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest pause between reconnection attempts: a restarted nats-server is
/// found within a couple of seconds, and a dead one costs a connection
/// attempt per node every two seconds.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Messages one room subscription may hold before NATS drops them as for a
/// slow consumer. The rooms task only moves them into outboxes, so this is
/// slack for a moment of CPU starvation; it bounds what a room can pin.
const SUBSCRIPTION_CAPACITY: usize = 4096;

/// Commands (publishes, mostly) the NATS client queues before a publish
/// waits. Kept well below the client's default of 2048, since bursts of up
/// to 16 KiB each go through it: the heartbeats share this queue, and a
/// short one keeps them from waiting behind megabytes of room lines, while
/// what does not fit waits in this node's own queue, where the senders'
/// back-pressure is counted.
const CLIENT_CAPACITY: usize = 256;

/// Claims waiting for the presence task. A session waits for its claim, so
/// at most one per connection is ever queued; this bounds the queue for
/// the unlikely rush, and a session past it waits its turn.
const CLAIM_QUEUE: usize = 1024;

/// Longest a JOIN waits for its cluster-wide claim (PROTOCOL.md: 3
/// seconds); past it, the user is told the cluster is busy, unless the link
/// went down meanwhile and this node's own check is all there is.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest a joiner's connection waits for its join line to come back
/// before it reads on: the line comes back within a round trip while the
/// link is up, a lost link is noticed (and the join completed here) within
/// the heartbeat's bound, and a line that never comes is given up by the
/// rooms task after `JOIN_ECHO_WAIT` (`JOIN_HOLD` behind its user's own
/// leave of that room); this is a beat of that task longer.
const ADMISSION_TIMEOUT: Duration =
    Duration::from_millis(rooms::JOIN_HOLD.as_millis() as u64 + 1000);

/// Longest wait for a connection's own lines to come back through NATS
/// before its next command is answered, 6 s: a join's echo wait and a
/// beat. Lines on their way when the link is lost are given up at once
/// (see `Hub::forget_echoes`); this bounds the rest.
pub const ECHO_WAIT: Duration =
    Duration::from_millis(rooms::JOIN_ECHO_WAIT.as_millis() as u64 + 1000);

/// How long startup waits for the cluster link before serving anyway (as a
/// node on its own until the link comes).
const STARTUP_WAIT: Duration = Duration::from_secs(5);

/// How long startup waits, once the link is up, for the cluster's bans.
const BANS_WAIT: Duration = Duration::from_secs(3);

/// How long shutdown gives the departure: members leaving, lines and key
/// deletions sent. Short, because the process must exit within five
/// seconds of the signal.
const DEPART_TIMEOUT: Duration = Duration::from_millis(1500);

/// Why a cluster node cannot answer `/history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistoryUnavailable {
    /// `--history 0`.
    #[error("history is off")]
    Off,
    /// NATS did not answer in time, or the link is down.
    #[error("cluster busy")]
    Busy,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A `--nats` URL that cannot be used.
    #[error("bad --nats URL")]
    Url(#[source] async_nats::ConnectError),
    /// A `--nats` URL that does not parse.
    #[error("bad --nats URL {0:?}")]
    BadUrl(String, #[source] std::io::Error),
}

/// This node's membership in a cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The node's id: its name and a random instance number.
    node: String,
    /// The connection to NATS that carries lines and names.
    client: async_nats::Client,
    /// What history keeps, in the history stream.
    history: HistorySettings,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    link: Arc<Link>,
    claims: mpsc::Sender<Claim>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
    departs: mpsc::Sender<oneshot::Sender<()>>,
    /// Ends all its tasks.
    stop: CancellationToken,
}

impl Cluster {
    /// Connects to NATS (in the background: a server not up yet is retried)
    /// and starts the cluster's tasks; waits up to `STARTUP_WAIT` for the
    /// link to be up. The hub to serve with is [`Cluster::hub`]; `history`
    /// is its clock (rooms keep their history in NATS, not in it).
    pub async fn start(
        config: &Config,
        metrics: ClusterMetrics,
        history: Arc<History>,
    ) -> Result<Cluster, ClusterError> {
        let name = config
            .node_name
            .clone()
            .unwrap_or_else(subject::default_node_name);
        let node = subject::node_id(&name);
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        let (claims, claims_rx) = mpsc::channel(CLAIM_QUEUE);
        let (flushes, flushes_rx) = mpsc::channel(1);
        let (departs, departs_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared::new(node.clone(), outgoing_tx, metrics));
        let hub = Hub::with(Some(shared.clone()), history);
        let link = Arc::new(Link::new(hub.clone(), shared.clone()));

        let (servers, credentials) = servers(&config.nats)?;
        let events = link.clone();
        let client = options(&credentials)
            .name(format!("chatgate {node}"))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .client_capacity(CLIENT_CAPACITY)
            .request_timeout(Some(presence::KV_TIMEOUT))
            .event_callback(move |event| {
                let link = events.clone();
                async move {
                    match event {
                        Event::Connected => link.connected(),
                        Event::Disconnected => link.disconnected(),
                        Event::ClientError(e) => link.failed(e.to_string()),
                        _ => {}
                    }
                }
            })
            .connect(servers.clone())
            .await
            .map_err(ClusterError::Url)?;
        let alive = options(&credentials)
            .name(format!("chatgate {node} heartbeat"))
            .connect(servers)
            .await
            .map_err(ClusterError::Url)?;

        let stop = CancellationToken::new();
        tokio::spawn(
            Heartbeat {
                client: client.clone(),
                alive,
                shared: shared.clone(),
                link: link.clone(),
                stop: stop.clone(),
            }
            .run(),
        );
        tokio::spawn(
            Sweep {
                client: client.clone(),
                shared: shared.clone(),
                link: link.clone(),
                stop: stop.clone(),
            }
            .run(),
        );
        tokio::spawn(
            Rooms {
                client: client.clone(),
                hub: hub.clone(),
                shared: shared.clone(),
                link: link.clone(),
                outgoing,
                flushes: flushes_rx,
                stop: stop.clone(),
                history: config.history(),
            }
            .run(),
        );
        let (ban_store, ban_changes) = bans::Bans::store();
        hub.moderation().keep_in(ban_store);
        let (replayed, mut bans_in) = tokio::sync::watch::channel(false);
        tokio::spawn(
            bans::Bans {
                client: client.clone(),
                moderation: hub.moderation().clone(),
                link: link.clone(),
                changes: ban_changes,
                replayed,
                stop: stop.clone(),
            }
            .run(),
        );
        tokio::spawn(
            orders::Orders {
                client: client.clone(),
                hub: hub.clone(),
                stop: stop.clone(),
            }
            .run(),
        );
        tokio::spawn(
            Presence {
                client: client.clone(),
                hub: hub.clone(),
                shared: shared.clone(),
                link: link.clone(),
                claims: claims_rx,
                departs: departs_rx,
                stop: stop.clone(),
            }
            .run(),
        );
        let cluster = Cluster {
            client: client.clone(),
            history: config.history(),
            node,
            shared,
            hub,
            link,
            claims,
            flushes,
            departs,
            stop,
        };
        cluster.wait_up().await;
        // Listening before the bans are in would let banned addresses in
        // (handshakes included) for as long as the replay takes.
        let replay = bans_in.wait_for(|in_| *in_);
        if cluster.link.phase() == Phase::Up && timeout(BANS_WAIT, replay).await.is_err() {
            warn!("the cluster's bans are not in yet; serving anyway, they apply as they arrive");
        }
        Ok(cluster)
    }

    async fn wait_up(&self) {
        let mut phase = self.link.watch();
        let up = phase.wait_for(|p| *p == Phase::Up);
        match timeout(STARTUP_WAIT, up).await {
            Ok(_) => info!(node = %self.node, "joined the cluster"),
            Err(_) => warn!(
                node = %self.node,
                last_error = self.link.last_error().as_deref().unwrap_or("none"),
                "no cluster link yet; serving this node's users alone until it comes"
            ),
        }
    }

    /// Carries an operator's order to the node holding its user, within
    /// `orders::ORDER_TIMEOUT`; `None` if no node answered.
    pub async fn moderate(
        &self,
        order: &crate::moderation::Order,
    ) -> Option<crate::moderation::Done> {
        orders::send(&self.client, order).await
    }

    /// The hub whose rooms span the cluster.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Claims `user` in `room` across the cluster, within
    /// `CLAIM_TIMEOUT`. Granted when the cluster confirms the name, or
    /// while the link is down (this node's check is then all there is);
    /// busy when the link is up and no confirmation came in time.
    pub async fn claim(&self, room: RoomName, user: UserName) -> NameClaim {
        if !self.shared.is_up() {
            // Granted on this node's word: the name is registered once the
            // link is up (even if that happens before the join is made).
            self.shared.unregistered.store(true, Ordering::SeqCst);
            return NameClaim::Granted;
        }
        let (answer, granted) = oneshot::channel();
        let asked = async {
            self.claims.send(Claim { room, user, answer }).await.ok()?;
            granted.await.ok()
        };
        match timeout(CLAIM_TIMEOUT, asked).await {
            Ok(Some(answer)) => answer,
            _ if self.shared.is_up() => NameClaim::Busy,
            _ => NameClaim::Granted,
        }
    }

    /// Waits until the queue of room lines to NATS has room (the
    /// back-pressure of `shared`). Unbounded in time by design: while NATS
    /// cannot take lines, senders are not read; a lost link empties the
    /// queue into local delivery within the heartbeat's bound.
    pub async fn room_for_lines(&self) {
        self.shared.room_for_lines().await;
    }

    /// `room`'s history as `ask` wants it, from the history stream, within
    /// the history read timeout (PROTOCOL.md, History: every node answers
    /// with the same lines and ids).
    pub async fn history(
        &self,
        room: RoomName,
        ask: HistoryAsk<'_>,
    ) -> Result<Page, HistoryUnavailable> {
        if self.history.lines == 0 {
            return Err(HistoryUnavailable::Off);
        }
        let stream = self.shared.history_stream().clone();
        let Some(stream) = stream.filter(|_| self.shared.is_up()) else {
            return Err(HistoryUnavailable::Busy);
        };
        history::read(&self.client, &stream, room, ask, self.history)
            .await
            .ok_or(HistoryUnavailable::Busy)
    }

    /// Waits until `user`, who just joined `room` here, has been admitted:
    /// its join line came back, so what it sends next is answered after
    /// that line. At most `ADMISSION_TIMEOUT`.
    pub async fn admitted(&self, room: RoomName, user: UserName) {
        if let Some(admitted) = self.shared.admission(room, user) {
            let _ = timeout(ADMISSION_TIMEOUT, admitted.notified()).await;
        }
    }

    /// The server stops: waits for every local member to leave, sends what
    /// is queued, deletes this node's keys, and ends the tasks; all within
    /// `DEPART_TIMEOUT`.
    pub async fn depart(&self) {
        let work = async {
            while self.hub.room_count() > 0 {
                self.shared.idle.notified().await;
            }
            for queue in [&self.flushes, &self.departs] {
                let (done, finished) = oneshot::channel();
                if queue.send(done).await.is_ok() {
                    let _ = finished.await;
                }
            }
        };
        if timeout(DEPART_TIMEOUT, work).await.is_err() {
            warn!(node = %self.node, "cluster departure cut short");
        }
        self.stop.cancel();
    }
}

/// What both of a node's NATS connections share: reconnecting by
/// themselves, pinging, giving up on a silent server, and the credentials
/// of the `--nats` URLs.
fn options(credentials: &Credentials) -> ConnectOptions {
    let options = match credentials {
        Credentials::None => ConnectOptions::new(),
        Credentials::Token(token) => ConnectOptions::with_token(token.clone()),
        Credentials::User(user, password) => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
    };
    options
        .retry_on_initial_connect()
        .ping_interval(PING_INTERVAL)
        .connection_timeout(CONNECTION_TIMEOUT)
        .reconnect_delay_callback(|attempts| {
            (Duration::from_millis(100) * attempts.min(100) as u32).min(MAX_RECONNECT_DELAY)
        })
}

/// Credentials written in a `--nats` URL.
enum Credentials {
    None,
    /// `nats://token@host`.
    Token(String),
    /// `nats://user:password@host`.
    User(String, String),
}

/// The servers of the `--nats` URLs, without the credentials written in
/// them, and those credentials, percent-decoded. The client does not take
/// credentials from a URL by itself, and would log a URL whole at debug
/// level. The first URL with any is used: the servers of one NATS cluster
/// share their accounts.
fn servers(urls: &[String]) -> Result<(Vec<ServerAddr>, Credentials), ClusterError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut credentials = Credentials::None;
    let mut servers = Vec::with_capacity(urls.len());
    for text in urls {
        let addr: ServerAddr = text
            .parse()
            .map_err(|e| ClusterError::BadUrl(without_credentials(text), e))?;
        let mut url = addr.into_inner();
        if matches!(credentials, Credentials::None) && !url.username().is_empty() {
            let user = decode(url.username());
            credentials = match url.password() {
                Some(password) => Credentials::User(user, decode(password)),
                None => Credentials::Token(user),
            };
        }
        // Neither fails on a URL that already has a host, as these do.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let addr = ServerAddr::from_url(url)
            .map_err(|e| ClusterError::BadUrl(without_credentials(text), e))?;
        servers.push(addr);
    }
    Ok((servers, credentials))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_urls_and_decoded() {
        let urls = ["nats://us%40er:p%3As@a:4222".to_owned(), "b".to_owned()];
        let (addrs, credentials) = servers(&urls).unwrap();
        assert!(matches!(credentials, Credentials::User(u, p) if u == "us@er" && p == "p:s"));
        for server in &addrs {
            assert!(!server.has_user_pass());
            assert!(!server.as_url_str().contains('@'));
        }
        let (_, token) = servers(&["nats://s3cret@a".to_owned()]).unwrap();
        assert!(matches!(token, Credentials::Token(t) if t == "s3cret"));
        let (_, none) = servers(&["nats://a".to_owned()]).unwrap();
        assert!(matches!(none, Credentials::None));
        match servers(&["nats://u:pw@[bad".to_owned()]) {
            Err(e) => assert!(!e.to_string().contains("pw"), "{e}"),
            Ok(_) => panic!("a bad URL was taken"),
        }
    }
}
