//! The `Transport` trait: what the session driver needs from a connection,
//! whatever carries it.
//!
//! A transport receives lines, sends batches of lines and closes with a
//! reason; how bytes become lines (telnet layer, WebSocket frames) is its
//! own business. It splits into a reader, driven by the connection's session
//! task, and a writer, driven by the connection's writer task, so a peer that
//! stops reading never stops the server from reading it, and the reverse.

use crate::protocol::json::Format;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::protocol::CloseReason;

pub mod stream;
pub mod tcp;
pub mod tls;
pub mod ws;

/// A chat connection of any kind.
pub trait Transport: Send + 'static {
    /// The receiving half.
    type Reader: LineReader;
    /// The sending half.
    type Writer: LineWriter;

    /// Transport name for logs and metrics (`tcp`, `tls`, `ws`, `wss`).
    fn kind(&self) -> &'static str;

    /// The address of the peer.
    fn peer_addr(&self) -> SocketAddr;

    /// Splits into halves that can be driven by two tasks.
    fn split(self) -> (Self::Reader, Self::Writer);

    /// What the peer gets: lines, unless it asked for JSON events (a
    /// WebSocket subprotocol).
    fn format(&self) -> Format {
        Format::Lines
    }
}

/// Why reading stopped, other than a clean end of stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A line or message over the protocol's limit.
    #[error("line too long")]
    LineTooLong,
    /// A WebSocket text message, or a close frame's reason, that is not
    /// UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    BadUtf8,
    /// A WebSocket frame that breaks RFC 6455.
    #[error("WebSocket protocol error")]
    Protocol,
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The receiving half of a transport.
pub trait LineReader: Send + 'static {
    /// The next line, raw (framing done, terminator removed, no clean-up),
    /// or `None` at a clean end of stream.
    ///
    /// Must be cancel-safe: the driver selects on it together with timers
    /// and shutdown, and no input may be lost when another branch wins.
    fn read_line(&mut self) -> impl Future<Output = Result<Option<&[u8]>, ReadError>> + Send;

    /// After the session ended: reads and discards input until the peer
    /// closes or the caller's timeout fires, so that unread input does not
    /// make the kernel reset the connection before the peer has read our
    /// last lines.
    fn discard(&mut self) -> impl Future<Output = ()> + Send;
}

/// The sending half of a transport.
pub trait LineWriter: Send + 'static {
    /// Sends queued buffers in order, in as few writes as the transport
    /// allows. Each buffer holds one or more encoded lines, each ending in
    /// `\r\n` (a room's burst is one buffer shared by every member).
    fn send(&mut self, lines: &[Bytes]) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the connection the way this transport says goodbye for `reason`
    /// (a close frame with its code, TLS close_notify, a TCP FIN).
    fn close(&mut self, reason: CloseReason) -> impl Future<Output = io::Result<()>> + Send;

    /// Keeps the connection checked while idle: resolves with the reason to
    /// close when the peer is found dead or its socket fails, and never
    /// resolves for transports with no keep-alive of their own. Must be
    /// cancel-safe; the writer polls it alongside its queue.
    fn heartbeat(&mut self) -> impl Future<Output = Result<(), CloseReason>> + Send {
        std::future::pending()
    }

    /// Called when the queue has been drained: frees buffers that a burst
    /// grew, so an idle connection costs little memory.
    fn idle(&mut self) {}
}
