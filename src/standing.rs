//! What moderation knows of one connection, carried in its outbox: the
//! peer's address, whether it is an operator, until when it is muted, and
//! why an operator is removing it.
//!
//! It lives apart from `moderation` because the outbox holds it and
//! `moderation` holds outboxes: this way neither imports the other back.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::history::Millis;
use crate::protocol::names::Name;

/// Why a connection is being removed, left in its outbox for its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Kicked, or banned.
    pub kind: EvictionKind,
    /// The operator, as `<op>` in PROTOCOL.md.
    pub by: String,
    /// Why; empty when not given.
    pub reason: String,
}

/// Kicked or banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionKind {
    /// `/kick`.
    Kick,
    /// `/ban` of the user or of its address.
    Ban,
    /// The server is draining for a restart: the user is told to come
    /// back, and closed, with no word to the room but its `has left`.
    Restart,
}

impl Eviction {
    fn verb(&self) -> &'static str {
        match self.kind {
            EvictionKind::Kick => "kicked",
            EvictionKind::Ban => "banned",
            EvictionKind::Restart => "restarting",
        }
    }

    /// The reason of the `ERROR` line the user gets: `kicked by <op>`,
    /// with `: <reason>` when one was given.
    pub fn error_text(&self) -> String {
        with_reason(format!("{} by {}", self.verb(), self.by), &self.reason)
    }

    /// What the room is told, without the `*** `: `<user> was kicked by
    /// <op>`, with the same suffix.
    pub fn room_text(&self, user: &str) -> String {
        with_reason(
            format!("{user} was {} by {}", self.verb(), self.by),
            &self.reason,
        )
    }
}

/// What moderation knows of one connection, reachable by whoever holds
/// its outbox.
#[derive(Debug, Default)]
pub struct Standing {
    /// The peer's address; `None` for connections made in-process.
    addr: Option<IpAddr>,
    /// The transport's name (`tcp`, `tls`, `ws`, `wss`), for the admin API.
    transport: &'static str,
    /// When the connection was accepted, in milliseconds since the Unix
    /// epoch.
    since: Millis,
    /// Until when the user is muted, in milliseconds since the Unix epoch;
    /// 0: not muted; `Millis::MAX`: until `/unmute`.
    muted_until: AtomicU64,
    /// Whether the user gave operator credentials.
    operator: AtomicBool,
}

impl Standing {
    /// A connection from `addr` over `transport`, accepted at `since`.
    pub fn new(addr: Option<IpAddr>, transport: &'static str, since: Millis) -> Standing {
        Standing {
            addr,
            transport,
            since,
            ..Standing::default()
        }
    }

    /// The peer's address, if it has one.
    pub fn addr(&self) -> Option<IpAddr> {
        self.addr
    }

    /// The transport's name: `tcp`, `tls`, `ws` or `wss`; empty for
    /// connections made in-process.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// When the connection was accepted, in milliseconds since the Unix
    /// epoch.
    pub fn since(&self) -> Millis {
        self.since
    }

    /// Mutes the user until `until` (none: until unmuted).
    pub fn mute(&self, until: Option<Millis>) {
        self.muted_until
            .store(until.unwrap_or(Millis::MAX).max(1), Ordering::Relaxed);
    }

    /// Lifts a mute.
    pub fn unmute(&self) {
        self.muted_until.store(0, Ordering::Relaxed);
    }

    /// Whether the user is muted at the time `now` tells.
    pub fn is_muted(&self, now: impl FnOnce() -> Millis) -> bool {
        // Most users are not muted: their lines cost one load, not a look
        // at the clock.
        match self.muted_until.load(Ordering::Relaxed) {
            0 => false,
            until => now() < until,
        }
    }

    /// Marks the user an operator, for the rest of the connection.
    pub fn make_operator(&self) {
        self.operator.store(true, Ordering::Relaxed);
    }

    /// Whether the user is an operator. Operators are not removed by a ban
    /// of their address: the one who bans is usually one of them.
    pub fn is_operator(&self) -> bool {
        self.operator.load(Ordering::Relaxed)
    }
}

/// A removal notice's parts, as its room line (`*** <user> was kicked by
/// <op>: <reason>`) carries them to other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal<'a> {
    /// The line's text, without the `*** `.
    pub text: &'a str,
    /// The operator.
    pub by: &'a str,
    /// Why; empty when not given.
    pub reason: &'a str,
}

impl<'a> Removal<'a> {
    /// Reads the notice line of `user`'s removal; `None` if it is not one.
    /// Operators' names are names (see `operators`), so the first `: `
    /// after one starts the reason.
    pub fn parse(user: &str, line: &'a str) -> Option<Removal<'a>> {
        let text = line.strip_prefix("*** ")?;
        let rest = text.strip_prefix(user)?;
        let rest = rest
            .strip_prefix(" was kicked by ")
            .or_else(|| rest.strip_prefix(" was banned by "))?;
        let (by, reason) = rest.split_once(": ").unwrap_or((rest, ""));
        Name::parse(by)?;
        Some(Removal { text, by, reason })
    }
}

/// `text`, then `: <reason>` if there is one.
pub(crate) fn with_reason(mut text: String, reason: &str) -> String {
    if !reason.is_empty() {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_texts() {
        let e = Eviction {
            kind: EvictionKind::Kick,
            by: "op".into(),
            reason: String::new(),
        };
        assert_eq!(e.error_text(), "kicked by op");
        assert_eq!(e.room_text("bob"), "bob was kicked by op");
        let e = Eviction {
            kind: EvictionKind::Ban,
            reason: "spam".into(),
            ..e
        };
        assert_eq!(e.error_text(), "banned by op: spam");
        assert_eq!(e.room_text("bob"), "bob was banned by op: spam");
    }

    #[test]
    fn removal_lines_are_read_back() {
        let line = "*** bob was banned by op: spam: again";
        assert_eq!(
            Removal::parse("bob", line),
            Some(Removal {
                text: "bob was banned by op: spam: again",
                by: "op",
                reason: "spam: again",
            })
        );
        let plain = Removal::parse("bob", "*** bob was kicked by op").unwrap();
        assert_eq!((plain.by, plain.reason), ("op", ""));
        assert_eq!(Removal::parse("bob", "*** bob was kicked by"), None);
        assert_eq!(Removal::parse("eve", "*** bob was kicked by op"), None);
        assert_eq!(Removal::parse("bob", "bob: was kicked by op"), None);
    }
}
