//! The one error type of the load generator.

use std::io;

use crate::protocol::nats::NatsError;

/// Why a connection, a scenario or a server process failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A socket or file operation failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS handshake or setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The WebSocket handshake or a frame failed.
    #[error("WebSocket: {0}")]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    /// The NATS server broke its protocol.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The server answered with an error where success was expected.
    #[error("server refused: {0}")]
    Refused(String),
    /// The server closed the connection where it should not have.
    #[error("connection closed by the server")]
    Closed,
    /// Something did not happen within its time limit.
    #[error("timed out {0}")]
    Timeout(String),
    /// A target URL that cannot be used.
    #[error("bad target {0}")]
    Target(String),
    /// A server process that could not be built, started or read.
    #[error("server process: {0}")]
    Server(String),
    /// A scenario that could not run as asked.
    #[error("{0}")]
    Scenario(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for LoadError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        LoadError::Ws(Box::new(e))
    }
}
