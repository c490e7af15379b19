//! JSON events: what a WebSocket client that asked for the subprotocol
//! [`SUBPROTOCOL`] receives instead of lines (PROTOCOL.md, JSON events).
//!
//! Each event is one JSON object on a line of its own (serde_json's compact
//! form never writes a raw line break), so a buffer of events travels the
//! same queues as a buffer of lines and the WebSocket writer sends each as
//! one text message. Events are built from what the server itself just
//! built or checked, never by reading a line a user could shape: the caller
//! always knows which event it has (a join, a message burst, a notice), and
//! only splits the sender's name off a room line, which names make
//! unambiguous (a name holds neither a blank nor a `:`).

use bytes::Bytes;
use serde::Serialize;

use super::names::Name;
use super::reply::CRLF;
use crate::history::Millis;

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) that asks for JSON
/// events.
pub const SUBPROTOCOL: &str = "chatgate.v2.json";

/// What a connection receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Lines, as PROTOCOL.md's tables show them.
    #[default]
    Lines,
    /// JSON events.
    Json,
}

/// A time as PROTOCOL.md writes it in JSON: UTC, RFC 3339, milliseconds
/// (`2026-11-29T18:44:19.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub Millis);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = super::reply::utc(self.0);
        s.collect_str(&format_args!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ))
    }
}

/// A notice's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeCode {
    /// `*** server shutting down`
    Shutdown,
    /// `*** server restarting, please reconnect`: a drain. Its code is
    /// `shutdown`, which clients already know: the server is going away.
    #[serde(rename = "shutdown")]
    Restarting,
    /// `*** cluster link lost`
    LinkLost,
    /// `*** cluster link restored`
    LinkRestored,
}

/// One `rooms` entry.
#[derive(Debug, Clone, Serialize)]
pub struct RoomCount<'a> {
    /// The room's name.
    pub room: &'a str,
    /// Its members, on every node.
    pub count: usize,
}

/// A message line as a `say` or `me` event.
#[derive(Debug, Clone, Serialize)]
pub struct Said<'a> {
    /// `say` or `me`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The room it was said in.
    pub room: &'a str,
    /// Who said it, as joined.
    pub user: &'a str,
    /// What was said, after clean-up.
    pub text: &'a str,
    /// When the server received it.
    pub time: Time,
    /// Its history id.
    pub id: String,
}

/// Every event, as PROTOCOL.md's table lists it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event<'a> {
    /// Instead of the two welcome lines.
    Welcome {
        /// `JOIN <ROOMNAME> <USERNAME>`.
        usage: &'a str,
    },
    /// `<user> has joined`.
    Join {
        /// The room.
        room: &'a str,
        /// Who joined.
        user: &'a str,
        /// When.
        time: Time,
    },
    /// `<user> has left`.
    Leave {
        /// The room.
        room: &'a str,
        /// Who left.
        user: &'a str,
        /// When.
        time: Time,
    },
    /// `<from> (private): <text>`.
    Private {
        /// The sender, as joined.
        from: &'a str,
        /// The recipient, as joined.
        to: &'a str,
        /// The message.
        text: &'a str,
        /// When.
        time: Time,
    },
    /// `/who`'s answer.
    Who {
        /// The room.
        room: &'a str,
        /// The names listed, sorted by byte value, at most 100.
        users: Vec<&'a str>,
        /// How many members the room has.
        total: usize,
    },
    /// `/rooms`'s answer.
    Rooms {
        /// The rooms listed, by name, at most 100.
        rooms: Vec<RoomCount<'a>>,
        /// How many rooms there are.
        total: usize,
    },
    /// `/history`'s answer.
    History {
        /// The room.
        room: &'a str,
        /// The kept lines, oldest first.
        lines: Vec<Said<'a>>,
        /// False where the line answer would say `some missing`.
        complete: bool,
    },
    /// `/help`'s answer.
    Help {
        /// Its lines, without the `*** `.
        lines: Vec<&'a str>,
    },
    /// A notice of the server's.
    Notice {
        /// Which.
        code: NoticeCode,
        /// The line's text, without the `*** `.
        text: &'a str,
    },
    /// A user kicked or banned from a room, as its other members see it.
    #[serde(rename = "notice")]
    Removed {
        /// Always `kick`, for kicks and bans alike.
        code: &'static str,
        /// The line's text, without the `*** `.
        text: &'a str,
        /// The room.
        room: &'a str,
        /// Who was removed, as joined.
        user: &'a str,
        /// The operator.
        by: &'a str,
        /// Why; empty when not given.
        reason: &'a str,
    },
    /// Any other `*** ` answer.
    Info {
        /// Its text, without the `*** `.
        text: &'a str,
    },
    /// An `ERROR` line.
    Error {
        /// The reason.
        text: &'a str,
    },
}

impl Event<'_> {
    /// The event as one line of JSON, `\r\n` included.
    pub fn encode(&self) -> Bytes {
        let mut buf = Vec::with_capacity(96);
        self.put(&mut buf);
        Bytes::from(buf)
    }

    /// Appends the event as one line of JSON, `\r\n` included.
    pub fn put(&self, buf: &mut Vec<u8>) {
        // Serializing these types cannot fail: every field is a string, a
        // number, a bool or a list of them.
        let _ = serde_json::to_writer(&mut *buf, self);
        buf.extend_from_slice(CRLF);
    }
}

impl Said<'_> {
    /// Appends the event as one line of JSON, `\r\n` included.
    pub fn put(&self, buf: &mut Vec<u8>) {
        let _ = serde_json::to_writer(&mut *buf, self);
        buf.extend_from_slice(CRLF);
    }
}

/// A server notice as its event: the text is its line's, without the
/// `*** ` and the line end.
pub fn notice(code: NoticeCode) -> Bytes {
    let line = super::reply::notice(code);
    let text = std::str::from_utf8(&line)
        .unwrap_or_default()
        .trim_start_matches("*** ")
        .trim_end();
    Event::Notice { code, text }.encode()
}

/// A room message line, split into its parts: `<user>: <text>` is a `say`,
/// `* <user> <text>` a `me`. `None` for anything else.
pub fn split_said(line: &[u8]) -> Option<(&'static str, &str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    if let Some(rest) = line.strip_prefix("* ") {
        let (user, text) = rest.split_once(' ')?;
        Name::parse(user)?;
        return Some(("me", user, text));
    }
    let (user, text) = line.split_once(": ")?;
    Name::parse(user)?;
    Some(("say", user, text))
}

/// A private line, `<from> (private): <text>`, split into sender and text.
pub fn split_private(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let (from, text) = line.split_once(" (private): ")?;
    Name::parse(from)?;
    Some((from, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(event: &Event<'_>) -> serde_json::Value {
        let bytes = event.encode();
        assert!(bytes.ends_with(b"\r\n"));
        let body = &bytes[..bytes.len() - 2];
        assert!(!body.contains(&b'\n'), "one line");
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let e = Event::Join {
            room: "r",
            user: "u",
            time: Time(1_764_441_859_123),
        };
        assert_eq!(
            json(&e),
            serde_json::json!({"type": "join", "room": "r", "user": "u",
                "time": "2025-11-29T18:44:19.123Z"})
        );
    }

    #[test]
    fn codes_and_text_escape() {
        let e = Event::Notice {
            code: NoticeCode::LinkLost,
            text: "cluster link lost",
        };
        assert_eq!(json(&e)["code"], "link_lost");
        let e = Event::Error {
            text: "a \"quote\"\n\u{1b}",
        };
        assert_eq!(json(&e)["text"], "a \"quote\"\n\u{1b}");
    }

    #[test]
    fn room_lines_split_on_the_name() {
        assert_eq!(
            split_said(b"bob: hi: there"),
            Some(("say", "bob", "hi: there"))
        );
        assert_eq!(
            split_said(b"* bob waves  twice"),
            Some(("me", "bob", "waves  twice"))
        );
        assert_eq!(split_said(b"bob has joined"), None);
        assert_eq!(split_said(b"* b@d waves"), None);
        assert_eq!(split_said(b"b@d: hi"), None);
        assert_eq!(split_private(b"amy (private): psst"), Some(("amy", "psst")));
    }
}
