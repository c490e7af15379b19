//! How room lines travel: one NATS message whose payload is the encoded
//! lines themselves, `\r\n` included, so that the receiving node hands the
//! very buffer NATS read to all its members, and whose headers (for joins,
//! leaves and private lines only) say what the hub and the presence replica
//! need to know. Messages and `/me` lines have no headers at all, and what
//! one member said in one burst travels as one message of several lines,
//! as it reaches the members of a single node as one buffer.
//!
//! Everything that arrives is checked before use: a message that does not
//! parse, or whose payload is not one clean line, is dropped, so that
//! nothing on the bus can send a terminal control sequence or a second line
//! to a user.

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::protocol::MAX_LINE;
use crate::protocol::names::{Name, UserName};
use crate::protocol::reply::CRLF;
use crate::protocol::text::is_removed;
use crate::session::MAX_BURST;

/// Tells one join on this node from every other: when a join line comes
/// back from the stream, its tag shows whether it is the joiner's current
/// join (see `shared::Joins`).
pub(super) type JoinTag = u64;

const EVENT: &str = "Chatgate-Event";
const NODE: &str = "Chatgate-Node";
const USER: &str = "Chatgate-User";
const TAG: &str = "Chatgate-Tag";
const TO: &str = "Chatgate-To";

/// Longest line taken from the bus: a longest client line after clean-up
/// (where each invalid byte may become a three-byte U+FFFD) with a name in
/// front.
const MAX_ONE_LINE: usize = 3 * MAX_LINE + 64;

/// Longest payload taken from the bus: a burst, which is sent once it
/// reaches [`MAX_BURST`] bytes, so with at most one line past that. Anything
/// longer did not come from a chatgate node.
const MAX_PAYLOAD: usize = MAX_BURST + MAX_ONE_LINE;

/// What a room message means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A message or `/me`.
    Line,
    /// `user` joined on `node`; `tag` identifies the join there.
    Join {
        /// The node the user is on.
        node: String,
        /// The user, as written.
        user: UserName,
        /// The join's tag on its node.
        tag: JoinTag,
    },
    /// `user`, who was on `node`, left.
    Leave {
        /// The node the user was on.
        node: String,
        /// The user, as written.
        user: UserName,
    },
    /// A private line from `from` to the member `to`.
    Private {
        /// The sender's folded name.
        from: Name,
        /// The recipient, as it joined (compared by its folded name).
        to: Name,
    },
    /// A repair after the cluster link came back: `user` on `node` is in the
    /// room, which other nodes may not know. Shown to every member of the
    /// other nodes.
    Present {
        /// The node the user is on.
        node: String,
        /// The user, as written.
        user: UserName,
    },
    /// An operator removed `user`: a `***` line for everyone else.
    Removed {
        /// The user removed, as joined.
        user: UserName,
    },
    /// A repair: `user` on `node` is gone (the node died, or the user left
    /// while the link was down). Shown to every member of the other nodes.
    Gone {
        /// The node the user was on.
        node: String,
        /// The user, as written.
        user: UserName,
    },
}

impl Kind {
    /// The headers that carry this kind; none for a plain line.
    pub(super) fn headers(&self) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        match self {
            Kind::Line => return None,
            Kind::Join { node, user, tag } => {
                h.insert(EVENT, "join");
                h.insert(NODE, node.as_str());
                h.insert(USER, user.as_str());
                h.insert(TAG, tag.to_string());
            }
            Kind::Leave { node, user } => {
                h.insert(EVENT, "leave");
                h.insert(NODE, node.as_str());
                h.insert(USER, user.as_str());
            }
            Kind::Removed { user } => {
                h.insert(EVENT, "removed");
                h.insert(USER, user.as_str());
            }
            Kind::Private { from, to } => {
                h.insert(EVENT, "private");
                h.insert(USER, from.as_str());
                h.insert(TO, to.as_str());
            }
            Kind::Present { node, user } => {
                h.insert(EVENT, "present");
                h.insert(NODE, node.as_str());
                h.insert(USER, user.as_str());
            }
            Kind::Gone { node, user } => {
                h.insert(EVENT, "gone");
                h.insert(NODE, node.as_str());
                h.insert(USER, user.as_str());
            }
        }
        Some(h)
    }

    /// Reads a received message's headers; `None` if they make no sense.
    pub(super) fn parse(headers: Option<&HeaderMap>) -> Option<Kind> {
        let Some(h) = headers else {
            return Some(Kind::Line);
        };
        let text = |name: &str| h.get(name).map(|v| v.as_str());
        let node = || {
            text(NODE)
                .filter(|n| super::subject::is_node_id(n))
                .map(str::to_owned)
        };
        let user = |name: &str| text(name).and_then(Name::parse);
        let kind = match text(EVENT) {
            None => Kind::Line,
            Some("join") => Kind::Join {
                node: node()?,
                user: user(USER)?,
                tag: text(TAG)?.parse().ok()?,
            },
            Some("leave") => Kind::Leave {
                node: node()?,
                user: user(USER)?,
            },
            Some("private") => Kind::Private {
                from: user(USER)?.key(),
                to: user(TO)?.key(),
            },
            Some("removed") => Kind::Removed { user: user(USER)? },
            Some("present") => Kind::Present {
                node: node()?,
                user: user(USER)?,
            },
            Some("gone") => Kind::Gone {
                node: node()?,
                user: user(USER)?,
            },
            Some(_) => return None,
        };
        Some(kind)
    }
}

/// How many clean encoded lines a received payload holds: UTF-8, each
/// ended by `\r\n`, none empty and none longer than a line can be, with no
/// control character but tab (as the protocol's clean-up leaves every
/// line). `None` if it is anything else.
pub(super) fn clean_lines(payload: &Bytes) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let text = std::str::from_utf8(payload.strip_suffix(CRLF)?).ok()?;
    let mut lines = 0;
    for line in text.split("\r\n") {
        if line.is_empty() || line.len() > MAX_ONE_LINE || line.chars().any(is_removed) {
            return None;
        }
        lines += 1;
    }
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn every_kind_survives_the_trip() {
        let kinds = [
            Kind::Line,
            Kind::Join {
                node: "a.0000000000000001".into(),
                user: n("Bob"),
                tag: 7,
            },
            Kind::Leave {
                node: "a.0000000000000001".into(),
                user: n("Bob"),
            },
            Kind::Private {
                from: n("bob").key(),
                to: n("al.ice").key(),
            },
            Kind::Present {
                node: "b.0000000000000002".into(),
                user: n("x"),
            },
            Kind::Removed { user: n("Bob") },
            Kind::Gone {
                node: "b.0000000000000002".into(),
                user: n("x"),
            },
        ];
        for kind in kinds {
            assert_eq!(Kind::parse(kind.headers().as_ref()), Some(kind));
        }
    }

    #[test]
    fn nonsense_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(EVENT, "join");
        h.insert(NODE, "a.0000000000000001");
        h.insert(USER, "not a name");
        h.insert(TAG, "1");
        assert_eq!(Kind::parse(Some(&h)), None);
        h.insert(USER, "bob");
        h.insert(TAG, "x");
        assert_eq!(Kind::parse(Some(&h)), None);
        h.insert(EVENT, "explode");
        assert_eq!(Kind::parse(Some(&h)), None);
        h.insert(EVENT, "join");
        h.insert(TAG, "1");
        assert!(Kind::parse(Some(&h)).is_some());
        h.insert(NODE, "not a node");
        assert_eq!(Kind::parse(Some(&h)), None);
    }

    #[test]
    fn only_clean_lines_are_delivered() {
        assert_eq!(clean_lines(&Bytes::from_static(b"bob: hi\t!\r\n")), Some(1));
        assert_eq!(
            clean_lines(&Bytes::from_static(b"a: 1\r\n* a 2\r\n")),
            Some(2)
        );
        let c1 = "a\u{9b}b\r\n".as_bytes();
        for bad in [
            &b"bob: hi"[..],
            b"\r\n",
            b"a\r\n\r\nb\r\n",
            b"\x1b[2J\r\n",
            b"a\nb\r\n",
            c1,
            b"\xff\r\n",
        ] {
            assert_eq!(clean_lines(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
        let long = format!("{}\r\n", "x".repeat(MAX_ONE_LINE + 1));
        assert_eq!(clean_lines(&Bytes::from(long)), None);
        let many = "xx\r\n".repeat(MAX_PAYLOAD / 4 + 1);
        assert_eq!(clean_lines(&Bytes::from(many)), None);
    }
}
