//! Listeners, accept loops and the server's lifecycle.
//!
//! [`Server::bind`] binds every listener first, so a port in use is an error
//! before anything runs; [`Server::run`] accepts until its shutdown future
//! completes, then stops accepting, tells every connection, and waits (at
//! most [`SHUTDOWN_GRACE`]) for them to finish.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, Listen};
use crate::connection::{self, Shared};
use crate::hub::Hub;
use crate::limits::ConnectionLimiter;
use crate::session::SessionLimits;
use crate::transport::tcp::Tcp;

/// How long connections get to say goodbye when the server stops. The
/// protocol promises an exit within 5 seconds of the signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Pause after an accept error such as running out of file descriptors:
/// retrying at once would spin a core while nothing can improve.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP.
    Tcp,
}

impl ListenerKind {
    /// The name in the startup line `listening <kind> <addr>`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
        }
    }
}

/// A listener that could not be bound. The OS error is its `source`, so
/// `{:#}` (as `main` prints it) shows it once, after the address.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {kind} on {addr}")]
pub struct BindError {
    kind: &'static str,
    addr: SocketAddr,
    source: io::Error,
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(ListenerKind, TcpListener)>,
    shared: Arc<Shared>,
    limiter: Arc<ConnectionLimiter>,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
}

impl Server {
    /// Binds every listener the configuration turns on.
    pub async fn bind(config: Config) -> Result<Server, BindError> {
        let mut listeners = Vec::new();
        if let Listen::At(addr) = config.tcp_listen() {
            let listener = TcpListener::bind(addr).await.map_err(|source| BindError {
                kind: ListenerKind::Tcp.as_str(),
                addr,
                source,
            })?;
            listeners.push((ListenerKind::Tcp, listener));
        }
        let shared = Arc::new(Shared {
            hub: Hub::new(),
            shutdown: CancellationToken::new(),
            limits: SessionLimits { rate: config.rate },
            max_queue_bytes: config.max_queue_bytes,
            login_timeout: config.login_timeout(),
        });
        Ok(Server {
            listeners,
            shared,
            limiter: ConnectionLimiter::new(config.max_connections, config.max_per_ip),
            tracker: TaskTracker::new(),
        })
    }

    /// The bound address of every listener, in startup-line order.
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(kind, l)| Some((*kind, l.local_addr().ok()?)))
            .collect()
    }

    /// The rooms, for embedding and tests.
    pub fn hub(&self) -> Arc<Hub> {
        self.shared.hub.clone()
    }

    /// Serves until `shutdown` completes, then stops gracefully.
    pub async fn run(self, shutdown: impl Future) {
        for (kind, listener) in self.listeners {
            let accept = accept_loop(
                listener,
                self.shared.clone(),
                self.limiter.clone(),
                self.tracker.clone(),
            );
            match kind {
                ListenerKind::Tcp => self.tracker.spawn(accept),
            };
        }
        shutdown.await;
        info!("shutting down");
        self.shared.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                left = self.tracker.len(),
                "connections still closing at exit"
            );
        }
    }
}

/// Accepts TCP connections until shutdown.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limiter: Arc<ConnectionLimiter>,
    tracker: TaskTracker,
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
                warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let transport = Tcp::new(stream, peer);
        match limiter.acquire(peer.ip()) {
            Ok(permit) => tracker.spawn(connection::serve(transport, shared.clone(), permit)),
            Err(limit) => tracker.spawn(connection::refuse(transport, limit.reason())),
        };
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
