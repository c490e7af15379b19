//! Listeners, accept loops and the server's lifecycle.
//!
//! [`Server::bind`] loads the certificate and binds every listener first, so
//! a port in use or a bad certificate is an error before anything runs;
//! [`Server::run`] accepts until its shutdown future completes, then stops
//! accepting, tells every connection, and waits (at most [`SHUTDOWN_GRACE`])
//! for them to finish. Accept loops only accept: TLS handshakes and HTTP
//! run in each connection's own task, so a stalled peer never blocks the
//! next one.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::cluster::{Cluster, ClusterError};
use crate::config::{Config, Listen};
use crate::connection;
use crate::http;
use crate::hub::Hub;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::pacing::{self, Pacer};
use crate::session::SessionLimits;
use crate::tls::{CertError, Certificates};
use crate::transport::tcp::Tcp;
use crate::transport::tls::Tls;

/// How long connections get to say goodbye when the server stops. The
/// protocol promises an exit within 5 seconds of the signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Time a TLS handshake may take. Generous for any real client on any
/// network; stalled or half-open handshakes are cut so they cannot pile up.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Page and upgrade connections (HTTP and HTTPS together) open at once.
/// They do not count as chat connections, so they get a cap of their own:
/// enough for a crowd loading the page, small enough that idle keep-alive
/// connections cannot use up the server's file descriptors.
pub const MAX_HTTP_CONNECTIONS: usize = 4096;

/// Pause after an accept error such as running out of file descriptors:
/// retrying at once would spin a core while nothing can improve.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP chat.
    Tcp,
    /// TLS chat.
    Tls,
    /// The page and WebSocket over HTTP.
    Http,
    /// The page and WebSocket over HTTPS.
    Https,
}

impl ListenerKind {
    /// The name in the startup line `listening <kind> <addr>`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound. The OS error is its `source`, so
    /// `{:#}` (as `main` prints it) shows it once, after the address.
    #[error("cannot listen for {kind} on {addr}")]
    Bind {
        /// The listener's kind.
        kind: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The certificate or key is unusable.
    #[error("certificate")]
    Certificate(#[from] CertError),
    /// The cluster could not be joined.
    #[error("cluster")]
    Cluster(#[from] ClusterError),
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The rooms.
    pub hub: Arc<Hub>,
    /// The cluster this node is in, with `--nats`.
    pub cluster: Option<Cluster>,
    /// Cancelled once when the server stops.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// `--max-connections` and `--max-per-ip`.
    pub limiter: Arc<ConnectionLimiter>,
    /// One permit per open HTTP connection, see [`MAX_HTTP_CONNECTIONS`].
    pub http_slots: Arc<Semaphore>,
    /// What `/metrics` reports.
    pub metrics: Metrics,
    /// Per-session limits.
    pub limits: SessionLimits,
    /// `--max-queue-bytes`.
    pub max_queue_bytes: usize,
    /// How long a writer waits between writes while the server is busy.
    pub pacer: Arc<Pacer>,
    /// `--max-write-delay`.
    pub max_write_delay: Duration,
    /// `--login-timeout`, if on.
    pub login_timeout: Option<Duration>,
    /// `--ws-ping-interval`, if on.
    pub ws_ping_interval: Option<Duration>,
    /// `--web-dir`, if given.
    pub web_dir: Option<PathBuf>,
    /// `--allowed-origin`s.
    pub allowed_origins: Vec<String>,
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(ListenerKind, TcpListener)>,
    certificates: Option<Arc<Certificates>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Loads the certificate (if a TLS listener is on) and binds every
    /// listener the configuration turns on.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let certificates = if config.needs_certificate() {
            Some(Certificates::load(
                config.cert.as_deref(),
                config.key.as_deref(),
            )?)
        } else {
            None
        };
        let wanted = [
            (ListenerKind::Tcp, config.tcp_listen()),
            (ListenerKind::Tls, config.tls),
            (ListenerKind::Http, config.http),
            (ListenerKind::Https, config.https),
        ];
        let mut listeners = Vec::new();
        for (kind, listen) in wanted {
            let Listen::At(addr) = listen else { continue };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    kind: kind.as_str(),
                    addr,
                    source,
                })?;
            listeners.push((kind, listener));
        }
        let metrics = Metrics::new(!config.nats.is_empty());
        let cluster = match metrics.cluster() {
            Some(cluster_metrics) => Some(Cluster::start(&config, cluster_metrics.clone()).await?),
            None => None,
        };
        let shared = Arc::new(Shared {
            hub: cluster.as_ref().map_or_else(Hub::new, Cluster::hub),
            cluster,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            limiter: ConnectionLimiter::new(config.max_connections, config.max_per_ip),
            http_slots: Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS)),
            metrics,
            limits: SessionLimits { rate: config.rate },
            max_queue_bytes: config.max_queue_bytes,
            pacer: Arc::default(),
            max_write_delay: config.max_write_delay(),
            login_timeout: config.login_timeout(),
            ws_ping_interval: config.ws_ping_interval(),
            web_dir: config.web_dir.clone(),
            allowed_origins: config.allowed_origins.clone(),
        });
        Ok(Server {
            listeners,
            certificates,
            shared,
        })
    }

    /// The bound address of every listener, in startup-line order.
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(kind, l)| Some((*kind, l.local_addr().ok()?)))
            .collect()
    }

    /// The bound address of the listener of `kind`, if it is on.
    pub fn local_addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| a)
    }

    /// The certificate in use, to reload it (on SIGHUP, say).
    pub fn certificates(&self) -> Option<Arc<Certificates>> {
        self.certificates.clone()
    }

    /// The rooms, for embedding and tests.
    pub fn hub(&self) -> Arc<Hub> {
        self.shared.hub.clone()
    }

    /// Serves until `shutdown` completes, then stops gracefully.
    pub async fn run(self, shutdown: impl Future) {
        let shared = self.shared;
        shared.tracker.spawn(pacing::govern(
            shared.pacer.clone(),
            shared.max_write_delay,
            shared.shutdown.clone(),
        ));
        for (kind, listener) in self.listeners {
            let acceptor = self.certificates.clone();
            shared
                .tracker
                .spawn(accept_loop(listener, kind, acceptor, shared.clone()));
        }
        shutdown.await;
        info!("shutting down");
        shared.hub.close();
        shared.shutdown.cancel();
        shared.tracker.close();
        // The cluster's departure runs while the connections close: it waits
        // for their members to leave, then tells the other nodes.
        let depart = async {
            if let Some(cluster) = &shared.cluster {
                cluster.depart().await;
            }
        };
        let stopped = async { tokio::join!(shared.tracker.wait(), depart) };
        if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
            warn!(
                left = shared.tracker.len(),
                "connections still closing at exit"
            );
        }
    }
}

/// Accepts connections until shutdown and starts a task for each.
async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    certificates: Option<Arc<Certificates>>,
    shared: Arc<Shared>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                warn!(listener = kind.as_str(), error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared_for_task = shared.clone();
        let certificates = certificates.clone();
        match kind {
            ListenerKind::Tcp => {
                let transport = Tcp::new(stream, peer);
                match shared.limiter.acquire(peer.ip()) {
                    Ok(permit) => {
                        shared
                            .tracker
                            .spawn(connection::serve(transport, shared_for_task, permit))
                    }
                    Err(limit) => shared
                        .tracker
                        .spawn(connection::refuse(transport, limit.reason())),
                };
            }
            ListenerKind::Tls => {
                // Counted from accept, so handshakes in progress count too.
                let permit = shared.limiter.acquire(peer.ip());
                shared.tracker.spawn(async move {
                    let Some(stream) = handshake(certificates, stream, peer).await else {
                        return;
                    };
                    let transport = Tls::new(stream, peer);
                    match permit {
                        Ok(permit) => connection::serve(transport, shared_for_task, permit).await,
                        Err(limit) => connection::refuse(transport, limit.reason()).await,
                    }
                });
            }
            ListenerKind::Http | ListenerKind::Https => {
                let Ok(slot) = shared.http_slots.clone().try_acquire_owned() else {
                    debug!(%peer, "too many http connections; closed");
                    continue;
                };
                shared.tracker.spawn(async move {
                    if kind == ListenerKind::Http {
                        http::serve(stream, peer, false, shared_for_task).await;
                    } else if let Some(stream) = handshake(certificates, stream, peer).await {
                        http::serve(stream, peer, true, shared_for_task).await;
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// Runs a TLS handshake with the current certificate, within the timeout.
async fn handshake(
    certificates: Option<Arc<Certificates>>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(certificates?.current());
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "tls handshake timed out");
            None
        }
    }
}

/// Errors that concern one connection only and say nothing about the
/// listener, so the next accept can follow at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
