//! Listeners, accept loops and the server's lifecycle.
//!
//! [`Server::bind`] loads the certificate and binds every listener first, so
//! a port in use or a bad certificate is an error before anything runs;
//! [`Server::run`] accepts until its shutdown future completes, then stops
//! accepting, tells every connection, and waits (at most [`SHUTDOWN_GRACE`])
//! for them to finish. Accept loops only accept: TLS handshakes and HTTP
//! run in each connection's own task, so a stalled peer never blocks the
//! next one.
//!
//! What a connection may cost before it is a chat connection is bounded
//! here: a TLS handshake (the first byte included, which tells a TLS client
//! from a lost telnet user) gets [`TLS_HANDSHAKE_TIMEOUT`]; a connection
//! over a limit is told so within `limits::REFUSAL_TIMEOUT`, at most
//! `limits::MAX_REFUSALS` at a time, and closed without a word past that;
//! page connections have caps of their own, in all and per address.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admin::{self, AdminError, Token};
use crate::cluster::{Cluster, ClusterError};
use crate::config::{Config, Listen};
use crate::connection;
use crate::context::{self, Listeners, Live, Shared};
use crate::history::{History, HistorySettings, Millis};
use crate::http;
use crate::hub::Hub;
use crate::limits::{ConnectionLimiter, MAX_CLOSING, MAX_REFUSALS, REFUSAL_TIMEOUT};
use crate::metrics::{Metrics, PluginMetrics};
use crate::operators::{OperatorError, Operators};
use crate::origin::{AllowedOrigins, BadOrigin};
use crate::pacing;
use crate::plugins::{Limits, Plugins, Runtime};
use crate::protocol::CloseReason;
use crate::session::SessionSettings;
use crate::state::{BanFile, StateError};
use crate::tls::{CertError, Certificates};
use crate::transport::Transport;
use crate::transport::tcp::Tcp;
use crate::transport::tls::Tls;

/// How long connections get to say goodbye when the server stops. The
/// protocol promises an exit within 5 seconds of the signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Time a TLS handshake may take. Generous for any real client on any
/// network; stalled or half-open handshakes are cut so they cannot pile up.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error such as running out of file descriptors:
/// retrying at once would spin a core while nothing can improve.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept errors are logged at most once per this period per listener,
/// with a count of those not logged; otherwise a server out of file
/// descriptors would log ten lines a second per listener.
const ACCEPT_ERROR_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a handshake record (RFC 8446,
/// section 5.1, `ContentType.handshake`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

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
    /// An `--allowed-origin` is not an origin.
    #[error("--allowed-origin")]
    Origin(#[from] BadOrigin),
    /// An `--operator` is unusable.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// The admin API's token could not be read.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The state directory's bans could not be read.
    #[error("--state-dir")]
    State(#[from] StateError),
    /// A plugin could not be loaded.
    #[error("--plugin: {0}")]
    Plugin(String),
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(ListenerKind, TcpListener)>,
    /// The admin API's listener and token, with `--admin`.
    admin: Option<(TcpListener, Token)>,
    /// Where a node alone keeps its bans.
    ban_file: Option<BanFile>,
    certificates: Option<Arc<Certificates>>,
    /// The plugins, with `--plugin`.
    plugins: Option<Arc<Plugins>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Checks what [`Server::bind`] checks before binding, without binding
    /// or writing anything: the allowed origins, the operators' hashes, and
    /// the certificate when a TLS listener is on (an existing pair must be
    /// readable and usable; a missing default pair would be generated).
    /// What needs the network (ports in use, the cluster) is not checked.
    pub fn check(config: &Config) -> Result<(), StartError> {
        AllowedOrigins::with_own_host_name(&config.allowed_origins)?;
        Operators::parse(&config.operator)?;
        if let (Some(_), Some(path)) = (config.admin, &config.admin_token_file) {
            Token::read(path)?;
        }
        if config.nats.is_empty() {
            crate::state::check(&config.state_dir)?;
        }
        if config.needs_certificate() {
            Certificates::check(
                config.cert.as_deref(),
                config.key.as_deref(),
                config.cert_dir(),
            )?;
        }
        Ok(())
    }

    /// Loads the certificate (if a TLS listener is on) and binds every
    /// listener the configuration turns on.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let origins = AllowedOrigins::with_own_host_name(&config.allowed_origins)?;
        let operators = Operators::parse(&config.operator)?;
        let admin_token = match &config.admin_token_file {
            Some(path) if config.admin.is_some() => Some(Token::read(path)?),
            _ => None,
        };
        let certificates = if config.needs_certificate() {
            Some(Certificates::load(
                config.cert.as_deref(),
                config.key.as_deref(),
                config.cert_dir(),
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
        let admin = match (config.admin, admin_token) {
            (Some(addr), Some(token)) => {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            kind: "admin",
                            addr,
                            source,
                        })?;
                Some((listener, token))
            }
            _ => None,
        };
        let addr_of = |wanted: ListenerKind| {
            listeners
                .iter()
                .find(|(kind, _)| *kind == wanted)
                .and_then(|(_, l)| l.local_addr().ok())
        };
        let bound = Listeners {
            tcp: addr_of(ListenerKind::Tcp),
            tls: addr_of(ListenerKind::Tls),
            http: addr_of(ListenerKind::Http),
        };
        let metrics = Metrics::new(!config.nats.is_empty());
        // In a cluster, rooms keep their history in NATS (see `cluster`):
        // this node keeps none, and its history only tells the time.
        let kept = if config.nats.is_empty() {
            config.history()
        } else {
            HistorySettings {
                lines: 0,
                ..config.history()
            }
        };
        let history = Arc::new(History::new(kept, wall_clock, boot()));
        let cluster = match metrics.cluster() {
            Some(cluster_metrics) => {
                Some(Cluster::start(&config, cluster_metrics.clone(), history.clone()).await?)
            }
            None => None,
        };
        let hub = match &cluster {
            Some(cluster) => cluster.hub(),
            None => Hub::with(None, history),
        };
        let plugins = if config.plugin.is_empty() {
            None
        } else {
            let plugins = start_plugins(&config, &hub, metrics.plugins()).await?;
            hub.set_hooks(plugins.clone());
            Some(plugins)
        };
        // In a cluster the bans live in NATS (see `cluster`).
        let ban_file = match cluster {
            None => Some(BanFile::open(
                &config.state_dir,
                hub.moderation(),
                wall_clock,
            )?),
            Some(_) => None,
        };
        let conn = Arc::new(context::Connection {
            hub,
            cluster,
            shutdown: CancellationToken::new(),
            metrics,
            live: RwLock::new(Live {
                settings: SessionSettings {
                    rate: config.rate,
                    page_port: bound.http.map(|a| a.port()),
                    hint_browsers: true,
                },
                max_queue_bytes: config.max_queue_bytes,
                login_timeout: config.login_timeout(),
                operators,
            }),
            pacer: Arc::default(),
            closing: Arc::new(Semaphore::new(MAX_CLOSING)),
        });
        let shared = Arc::new(Shared {
            conn,
            tracker: TaskTracker::new(),
            limiter: ConnectionLimiter::new(config.max_connections, config.max_per_ip),
            http_limiter: ConnectionLimiter::new(config.max_http_connections, config.max_per_ip),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
            max_write_delay: config.max_write_delay(),
            ws_ping_interval: config.ws_ping_interval(),
            web_dir: config.web_dir.clone(),
            origins,
            listeners: bound,
            metrics_public: config.metrics_public(),
            drain_period: Duration::from_secs(config.drain_period),
            draining: CancellationToken::new(),
            drained: CancellationToken::new(),
        });
        if let Some(plugins) = &plugins {
            plugins.run_ticks(shared.conn.shutdown.clone());
        }
        Ok(Server {
            listeners,
            admin,
            ban_file,
            certificates,
            plugins,
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

    /// A handle that applies new settings to the running server (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
            certificates: self.certificates.clone(),
            ban_file: self.ban_file.clone(),
            plugins: self.plugins.clone(),
        }
    }

    /// The plugins, with `--plugin`.
    pub fn plugins(&self) -> Option<&Arc<Plugins>> {
        self.plugins.as_ref()
    }

    /// The admin API's bound address, with `--admin`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The certificate in use, to reload it (on SIGHUP, say).
    pub fn certificates(&self) -> Option<Arc<Certificates>> {
        self.certificates.clone()
    }

    /// The rooms, for embedding and tests.
    pub fn hub(&self) -> Arc<Hub> {
        self.shared.conn.hub.clone()
    }

    /// Serves until `shutdown` completes, then stops gracefully.
    pub async fn run(self, shutdown: impl Future) {
        let shared = self.shared;
        let conn = shared.conn.clone();
        shared.tracker.spawn(pacing::govern(
            conn.pacer.clone(),
            shared.max_write_delay,
            conn.shutdown.clone(),
        ));
        for (kind, listener) in self.listeners {
            let acceptor = self.certificates.clone();
            shared
                .tracker
                .spawn(accept_loop(listener, kind, acceptor, shared.clone()));
        }
        if let Some((listener, token)) = self.admin {
            let metrics = !shared.metrics_public;
            shared
                .tracker
                .spawn(admin::serve(listener, token, metrics, shared.clone()));
        }
        // A drain ends like a signal, once its connections are closed.
        tokio::select! {
            _ = shutdown => {}
            _ = shared.drained.cancelled() => {}
        }
        info!("shutting down");
        conn.hub.close();
        conn.shutdown.cancel();
        shared.tracker.close();
        // The cluster's departure runs while the connections close: it waits
        // for their members to leave, then tells the other nodes.
        let depart = async {
            if let Some(cluster) = &conn.cluster {
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

/// The settings a reload applies while the server runs, by key; any other
/// key that changed is logged as needing a restart.
/// (The certificate is read again at its paths whatever changed; new
/// paths need a restart.)
pub const RELOADABLE: [&str; 10] = [
    "operator",
    "plugin",
    "plugin-budget-ms",
    "plugin-memory-mib",
    "rate",
    "max-queue-bytes",
    "login-timeout",
    "max-connections",
    "max-per-ip",
    "max-http-connections",
];

/// Applies new settings to a running server.
#[derive(Debug, Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
    certificates: Option<Arc<Certificates>>,
    /// The bans file in use (a changed `--state-dir` needs a restart).
    ban_file: Option<BanFile>,
    /// The plugins, if the server started with any.
    plugins: Option<Arc<Plugins>>,
}

impl Reloader {
    /// Applies `config`, whose keys `changed` differ from the running
    /// settings: the certificate is read again, the bans file too (on a
    /// node alone, so bans edited by hand take effect), and the
    /// [`RELOADABLE`] settings change for connections from now on. Returns
    /// the changed keys that need a restart; logs what it did.
    pub fn reload(&self, config: &Config, changed: &[String]) -> Vec<String> {
        if let Some(certificates) = &self.certificates {
            match certificates.reload() {
                Ok(()) => info!("certificate reloaded"),
                Err(e) => warn!(error = %e, "certificate reload failed; keeping the old one"),
            }
        }
        let mut restart: Vec<String> = Vec::new();
        match &self.plugins {
            // Read again whatever changed: the files may have.
            Some(plugins) => {
                let (plugins, paths, limits) =
                    (plugins.clone(), config.plugin.clone(), limits(config));
                tokio::spawn(async move {
                    for problem in plugins.reload(&paths, limits).await {
                        warn!(error = problem, "plugin not reloaded");
                    }
                    let names: Vec<String> = plugins
                        .current()
                        .iter()
                        .map(|p| p.name().to_owned())
                        .collect();
                    info!(plugins = ?names, "plugins reloaded");
                });
            }
            None if !config.plugin.is_empty() => restart.push("plugin".to_owned()),
            None => {}
        }
        let conn = &self.shared.conn;
        if let Some(ban_file) = &self.ban_file {
            match ban_file.reload() {
                Ok(n) if n > 0 => info!(changes = n, "bans file read again"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot read the bans file; keeping the bans in force"),
            }
        }
        let operators = match Operators::parse(&config.operator) {
            Ok(operators) => Some(operators),
            Err(e) => {
                warn!(error = %e, "operators not reloaded; keeping the old ones");
                None
            }
        };
        {
            let mut live = conn
                .live
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            live.settings.rate = config.rate;
            live.max_queue_bytes = config.max_queue_bytes;
            live.login_timeout = config.login_timeout();
            if let Some(operators) = operators {
                live.operators = operators;
            }
        }
        self.shared
            .limiter
            .set_limits(config.max_connections, config.max_per_ip);
        self.shared
            .http_limiter
            .set_limits(config.max_http_connections, config.max_per_ip);
        let applied: Vec<&String> = changed
            .iter()
            .filter(|k| RELOADABLE.contains(&k.as_str()))
            .collect();
        restart.extend(
            changed
                .iter()
                .filter(|k| !RELOADABLE.contains(&k.as_str()))
                .cloned(),
        );
        info!(changed = ?applied, "settings reloaded");
        if !restart.is_empty() {
            warn!(keys = ?restart, "these settings changed but take effect only after a restart");
        }
        restart
    }
}

/// What every plugin call and instance may use, from the settings.
fn limits(config: &Config) -> Limits {
    Limits {
        memory: (config.plugin_memory_mib as usize).saturating_mul(1 << 20),
        budget: Duration::from_millis(config.plugin_budget_ms),
    }
}

/// Loads the plugins (compiling is slow for large ones, so it runs off the
/// runtime's workers), compiled code cached under the state directory.
async fn start_plugins(
    config: &Config,
    hub: &Arc<Hub>,
    metrics: &PluginMetrics,
) -> Result<Arc<Plugins>, StartError> {
    // wasmtime wants the cache's directory absolute; the state directory
    // is relative by default.
    let cache = config.state_dir.join("plugin-cache");
    let cache = match std::fs::create_dir_all(&cache).and_then(|()| std::path::absolute(&cache)) {
        Ok(cache) => Some(cache),
        Err(e) => {
            warn!(error = %e, dir = %cache.display(), "cannot keep compiled plugins; compiling at every start");
            None
        }
    };
    let (paths, limits, hub, metrics) = (
        config.plugin.clone(),
        limits(config),
        hub.clone(),
        metrics.clone(),
    );
    let runtime = match Runtime::new(cache.as_deref()) {
        Ok(runtime) => runtime,
        Err(e) => {
            warn!(error = %e, "cannot keep compiled plugins; compiling at every start");
            Runtime::new(None).map_err(|e| StartError::Plugin(format!("{e:#}")))?
        }
    };
    Plugins::load(runtime, &paths, limits, &hub, &metrics)
        .await
        .map_err(|e| StartError::Plugin(format!("{e:#}")))
}

/// Accepts connections until shutdown and starts a task for each.
async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    certificates: Option<Arc<Certificates>>,
    shared: Arc<Shared>,
) {
    let mut errors = ErrorLog::default();
    loop {
        let accepted = tokio::select! {
            _ = shared.conn.shutdown.cancelled() => return,
            // Draining: the listener closes, so new clients go elsewhere.
            _ = shared.draining.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                errors.failed(kind, &e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Page requests are served to anyone; a WebSocket upgrade from a
        // banned address is refused in `http`.
        let banned = match kind {
            ListenerKind::Http => None,
            _ => shared.banned(peer),
        };
        if let Some(ban) = banned {
            match kind {
                // Told in a line, as a limit is; nothing else is spent.
                ListenerKind::Tcp => {
                    let transport = std::future::ready(Some(Tcp::new(stream, peer)));
                    refuse(&shared, peer, ban.refusal(), CloseReason::Banned, transport);
                    continue;
                }
                // No handshake is spent on a banned address: closed at
                // once, unheard.
                ListenerKind::Tls | ListenerKind::Https => {
                    debug!(%peer, "banned; closed before the handshake");
                    continue;
                }
                // Not looked at here (above).
                ListenerKind::Http => {}
            }
        }
        let certificates = certificates.clone();
        match kind {
            ListenerKind::Tcp => match shared.limiter.acquire(peer.ip()) {
                Ok(permit) => {
                    let conn = shared.conn.clone();
                    shared
                        .tracker
                        .spawn(connection::serve(Tcp::new(stream, peer), conn, permit));
                }
                Err(limit) => {
                    let transport = std::future::ready(Some(Tcp::new(stream, peer)));
                    let why = limit.reason().to_owned();
                    refuse(&shared, peer, why, CloseReason::Overloaded, transport);
                }
            },
            ListenerKind::Tls => {
                // Counted from accept, so handshakes in progress count too.
                let permit = match shared.limiter.acquire(peer.ip()) {
                    Ok(permit) => permit,
                    Err(limit) => {
                        let transport = async move {
                            let acceptor = TlsAcceptor::from(certificates?.current());
                            let stream = acceptor.accept(stream).await.ok()?;
                            Some(Tls::new(stream, peer))
                        };
                        let why = limit.reason().to_owned();
                        refuse(&shared, peer, why, CloseReason::Overloaded, transport);
                        continue;
                    }
                };
                let task_shared = shared.clone();
                shared.tracker.spawn(async move {
                    let Some(stream) = tls_or_hint(&task_shared, certificates, stream, peer).await
                    else {
                        return;
                    };
                    connection::serve(Tls::new(stream, peer), task_shared.conn.clone(), permit)
                        .await;
                });
            }
            ListenerKind::Http | ListenerKind::Https => {
                let Ok(slot) = shared.http_limiter.acquire(peer.ip()) else {
                    debug!(%peer, "too many page connections; closed");
                    continue;
                };
                let task_shared = shared.clone();
                shared.tracker.spawn(async move {
                    if kind == ListenerKind::Http {
                        http::serve(stream, peer, false, task_shared).await;
                    } else {
                        serve_https(stream, peer, certificates, task_shared).await;
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// The HTTPS listener's connection: a TLS handshake, or, for a browser
/// that spoke plain HTTP, a page saying to use `https://`. Until the
/// handshake is done a stop ends it.
async fn serve_https(
    stream: TcpStream,
    peer: SocketAddr,
    certificates: Option<Arc<Certificates>>,
    shared: Arc<Shared>,
) {
    let deadline = tokio::time::Instant::now() + TLS_HANDSHAKE_TIMEOUT;
    let stop = shared.conn.shutdown.clone();
    let tls = tokio::select! {
        _ = stop.cancelled() => return,
        tls = async {
            match sniff(&stream, deadline).await {
                Some(TLS_HANDSHAKE_RECORD) => Ok(handshake(certificates, stream, peer, deadline).await),
                Some(_) => Err(stream),
                None => Ok(None),
            }
        } => tls,
    };
    match tls {
        Ok(Some(tls)) => http::serve(tls, peer, true, shared).await,
        Ok(None) => {}
        Err(plain) => {
            tokio::select! {
                _ = stop.cancelled() => {}
                () = http::wrong_port(plain, peer) => {}
            }
        }
    }
}

/// Tells a refused connection why (`transport` is what it takes to speak
/// to it: a TLS handshake, say), within `limits::REFUSAL_TIMEOUT` and only
/// while fewer than [`MAX_REFUSALS`] are being told; otherwise closes it at
/// once.
fn refuse<T: Transport>(
    shared: &Shared,
    peer: SocketAddr,
    why: String,
    close: CloseReason,
    transport: impl Future<Output = Option<T>> + Send + 'static,
) {
    let Some(slot) = shared.refusal_slot() else {
        debug!(%peer, "refused without a word: too many refusals at once");
        return;
    };
    shared
        .tracker
        .spawn(connection::refuse(transport, why, close, slot));
}

/// The first byte a new connection sends, without consuming it; `None` if
/// the peer closes or stays silent past `deadline`.
async fn sniff(stream: &TcpStream, deadline: tokio::time::Instant) -> Option<u8> {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        _ => None,
    }
}

/// The TLS chat port's first step, [`handshake_or_hint`], until the
/// server stops: not yet a chat connection, it is not waited for.
///
/// The select lives in a function of its own on purpose: inlined in the
/// connection's task, its futures stayed part of the task's state for the
/// connection's whole life, about 1.5 KiB per idle TLS user.
async fn tls_or_hint(
    shared: &Shared,
    certificates: Option<Arc<Certificates>>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::select! {
        _ = shared.conn.shutdown.cancelled() => None,
        stream = handshake_or_hint(shared, certificates, stream, peer) => stream,
    }
}

/// A client that speaks plain text on the TLS port (telnet pointed at it)
/// is told where plain TCP is, in plain text, since it cannot read TLS; a
/// TLS client gets its handshake.
async fn handshake_or_hint(
    shared: &Shared,
    certificates: Option<Arc<Certificates>>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    // The sniff is part of the handshake: both share its time.
    let deadline = tokio::time::Instant::now() + TLS_HANDSHAKE_TIMEOUT;
    match sniff(&stream, deadline).await? {
        TLS_HANDSHAKE_RECORD => handshake(certificates, stream, peer, deadline).await,
        _ => {
            debug!(%peer, "plain text on the TLS port");
            let hint = tls_port_hint(&shared.listeners);
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
                stream.write_all(hint.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
            None
        }
    }
}

/// What a plain-text client on the TLS chat port is told.
fn tls_port_hint(listeners: &Listeners) -> String {
    let port = listeners.tls.map_or(0, |a| a.port());
    let mut hint = format!(
        "ERROR this is the TLS port: connect with openssl s_client -connect HOST:{port} -quiet"
    );
    if let Some(tcp) = listeners.tcp {
        hint.push_str(&format!(", or telnet HOST {} without TLS", tcp.port()));
    }
    hint.push_str("\r\n");
    hint
}

/// Runs a TLS handshake with the current certificate, done by `deadline`.
async fn handshake(
    certificates: Option<Arc<Certificates>>,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(certificates?.current());
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
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

/// Logs accept failures at most once per [`ACCEPT_ERROR_LOG_PERIOD`].
#[derive(Default)]
struct ErrorLog {
    /// When the last line was logged.
    last: Option<Instant>,
    /// Failures since then that were not logged.
    quiet: u64,
}

impl ErrorLog {
    fn failed(&mut self, kind: ListenerKind, e: &io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < ACCEPT_ERROR_LOG_PERIOD)
        {
            self.quiet += 1;
            return;
        }
        warn!(
            listener = kind.as_str(),
            error = %e,
            not_logged = self.quiet,
            "accept failed; backing off"
        );
        self.last = Some(now);
        self.quiet = 0;
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

/// The wall clock history keeps lines by: milliseconds since the Unix
/// epoch (0 for a clock set before 1970).
pub(crate) fn wall_clock() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Tells this server's life from its earlier ones in history ids: the
/// start time in nanoseconds.
fn boot() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
