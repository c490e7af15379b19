//! The wire protocol, free of I/O: bytes in, lines and replies out.
//!
//! Everything here is a pure function or a small state machine fed by the
//! caller. Nothing in this module touches a socket, a clock or a runtime, so
//! it is tested without a network and builds for `wasm32-unknown-unknown`.
//!
//! The pieces, in the order a byte meets them:
//!
//! - [`framing`]: the telnet layer and line splitting for byte streams, and
//!   line splitting for WebSocket messages; enforces the line length limit.
//! - [`text`]: the clean-up every line passes before it is used.
//! - [`command`]: what a clean line asks for.
//! - [`names`]: room and user names, valid by construction.
//! - [`reply`]: every line the server sends, encoded once.
//! - [`json`]: the same as JSON events, for WebSocket clients that ask.
//! - [`answer`]: answers to one connection, in the form it gets.
//! - [`rate`]: the per-connection token bucket.

pub mod answer;
pub mod command;
pub mod framing;
pub mod json;
pub mod names;
pub mod rate;
pub mod reply;
pub mod text;

/// Longest line a client may send, in bytes, its terminator excluded.
///
/// Long enough for a pasted paragraph, short enough that a connection's worst
/// case read buffer stays small. Counted after the telnet layer and before
/// any other clean-up, as the protocol says.
pub const MAX_LINE: usize = 20_000;

/// Longest WebSocket message: one longest line and its `\r\n`.
pub const MAX_WS_MESSAGE: usize = MAX_LINE + 2;

/// Failed JOIN attempts a connection gets; the last one's `ERROR` line is
/// followed by closing the connection. Enough for typos, too few for a
/// client that sends garbage forever to keep a slot.
pub const MAX_JOIN_ATTEMPTS: u32 = 5;

/// Why a connection ends. The transport turns this into what its peer can
/// understand (a WebSocket close code; for byte streams, just the close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `/quit`.
    Quit,
    /// The peer closed its side or the connection failed.
    PeerGone,
    /// The fifth failed JOIN attempt.
    TooManyAttempts,
    /// No JOIN within the login timeout.
    LoginTimeout,
    /// The outgoing queue passed its byte limit.
    TooSlow,
    /// A line or message over the length limit.
    LineTooLong,
    /// A WebSocket text message, or a close frame's reason, that is not
    /// UTF-8.
    BadUtf8,
    /// A WebSocket frame that breaks RFC 6455.
    ProtocolError,
    /// A WebSocket peer that did not answer a ping by the next one.
    MissedPing,
    /// The server is stopping.
    Shutdown,
    /// A connection limit was hit before the session started.
    Overloaded,
    /// The client spoke another protocol (HTTP on a chat port) and was told
    /// where to go.
    WrongPort,
    /// An operator kicked or banned the user.
    Removed,
    /// The address is banned; refused before the welcome.
    Banned,
}

impl CloseReason {
    /// The WebSocket close code the protocol assigns to this reason.
    pub fn ws_code(self) -> u16 {
        match self {
            CloseReason::Quit | CloseReason::PeerGone => 1000,
            CloseReason::Shutdown => 1001,
            CloseReason::ProtocolError => 1002,
            CloseReason::BadUtf8 => 1007,
            CloseReason::TooManyAttempts
            | CloseReason::LoginTimeout
            | CloseReason::TooSlow
            | CloseReason::MissedPing
            | CloseReason::WrongPort
            | CloseReason::Removed
            | CloseReason::Banned => 1008,
            CloseReason::LineTooLong => 1009,
            CloseReason::Overloaded => 1013,
        }
    }

    /// A short label, used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::PeerGone => "peer_gone",
            CloseReason::TooManyAttempts => "too_many_attempts",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::TooSlow => "too_slow",
            CloseReason::LineTooLong => "too_long",
            CloseReason::BadUtf8 => "bad_utf8",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::MissedPing => "missed_ping",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Overloaded => "overloaded",
            CloseReason::WrongPort => "wrong_port",
            CloseReason::Removed => "removed",
            CloseReason::Banned => "banned",
        }
    }
}
