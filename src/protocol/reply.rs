//! Every line the server sends, encoded once.
//!
//! A line is a [`Bytes`] holding the text and its `\r\n`, ready for a byte
//! stream; WebSocket sends each line's text, without the `\r\n`, as one
//! message. A room line (or a burst of them) is built once and the same
//! buffer goes to every member.

use bytes::Bytes;

use super::command::JOIN_SYNTAX;
use super::names::{NAME_RULES, Name};

/// The terminator every encoded line ends with.
pub const CRLF: &[u8] = b"\r\n";

/// The first of the two welcome lines.
pub const WELCOME: Bytes = Bytes::from_static(b"Welcome! Use the command:\r\n");
/// The second welcome line.
pub const WELCOME_USAGE: Bytes = Bytes::from_static(b"JOIN <ROOMNAME> <USERNAME>\r\n");
/// Sent to everyone when the server stops.
pub const SHUTTING_DOWN: Bytes = Bytes::from_static(b"* server shutting down\r\n");

/// Sent to a node's users when its cluster link drops: until it is back,
/// their lines reach this node's members only.
pub const CLUSTER_LINK_LOST: Bytes = Bytes::from_static(b"* cluster link lost\r\n");
/// Sent to a node's users when its cluster link is back.
pub const CLUSTER_LINK_RESTORED: Bytes = Bytes::from_static(b"* cluster link restored\r\n");

/// Builds a line from parts, with exactly one allocation.
fn line(parts: &[&str]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + CRLF.len();
    let mut buf = Vec::with_capacity(len);
    put_line(&mut buf, parts);
    Bytes::from(buf)
}

/// `<user> has joined`
pub fn joined(user: Name) -> Bytes {
    line(&[user.as_str(), " has joined"])
}

/// `<user> has left`
pub fn left(user: Name) -> Bytes {
    line(&[user.as_str(), " has left"])
}

/// `<user>: <text>`
pub fn said(user: Name, text: &str) -> Bytes {
    line(&[user.as_str(), ": ", text])
}

/// Appends `<user>: <text>` to a burst of lines being gathered.
pub fn put_said(burst: &mut Vec<u8>, user: Name, text: &str) {
    put_line(burst, &[user.as_str(), ": ", text]);
}

/// Appends `* <user> <text>` to a burst of lines being gathered.
pub fn put_me(burst: &mut Vec<u8>, user: Name, text: &str) {
    put_line(burst, &["* ", user.as_str(), " ", text]);
}

fn put_line(burst: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        burst.extend_from_slice(part.as_bytes());
    }
    burst.extend_from_slice(CRLF);
}

/// Where each line of a burst starts and ends, its `\n` included.
fn line_spans(burst: &[u8]) -> impl Iterator<Item = std::ops::RangeInclusive<usize>> + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', burst).map(move |end| {
        let span = start..=end;
        start = end + 1;
        span
    })
}

/// The lines of a burst (each with its terminator), as shared slices of it.
pub fn lines_of(burst: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    line_spans(burst).map(|span| burst.slice(span))
}

/// The texts of the lines in a burst, terminators removed.
pub fn texts_of(burst: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    line_spans(burst).map(|span| {
        let line = &burst[*span.start()..*span.end()];
        line.strip_suffix(b"\r").unwrap_or(line)
    })
}

/// `<from> (private): <text>`
pub fn private(from: Name, text: &str) -> Bytes {
    line(&[from.as_str(), " (private): ", text])
}

/// `* users in <room>: <name>, <name>, ...` with the names sorted by byte.
pub fn who(room: Name, mut users: Vec<Name>) -> Bytes {
    users.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    let names: Vec<&str> = users.iter().map(Name::as_str).collect();
    line(&["* users in ", room.as_str(), ": ", &names.join(", ")])
}

/// `* rooms: <room> (<count>), ...` sorted by byte, or `* rooms: none`.
pub fn rooms(mut rooms: Vec<(Name, usize)>) -> Bytes {
    if rooms.is_empty() {
        return line(&["* rooms: none"]);
    }
    rooms.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let list: Vec<String> = rooms
        .iter()
        .map(|(room, n)| format!("{room} ({n})"))
        .collect();
    line(&["* rooms: ", &list.join(", ")])
}

/// `ERROR <reason>`
pub fn error(reason: &str) -> Bytes {
    line(&["ERROR ", reason])
}

/// `ERROR usage: <syntax>`
pub fn usage(syntax: &str) -> Bytes {
    line(&["ERROR usage: ", syntax])
}

/// The `/help` answer; every line starts with `* `.
pub fn help() -> Vec<Bytes> {
    [
        "* commands:",
        "*   /who                 list the users in your room",
        "*   /rooms               list the rooms and how many are in each",
        "*   /join <room>         move to another room",
        "*   /msg <user> <text>   send a private message to a user in your room",
        "*   /me <text>           say what you are doing: * you <text>",
        "*   /help                this help",
        "*   /quit                leave and disconnect",
        "* any other line is sent to your room; start it with // to send a line beginning with /",
    ]
    .iter()
    .map(|l| line(&[l]))
    .chain([line(&[
        "* before joining: ",
        JOIN_SYNTAX,
        " (names: ",
        NAME_RULES,
        ")",
    ])])
    .collect()
}

/// The reasons an `ERROR` line gives, in one place so every transport and
/// the docs agree on them.
pub mod reason {
    /// A line that is not a JOIN before joining.
    pub const NOT_JOIN: &str = "expected JOIN <ROOMNAME> <USERNAME>";
    /// A room name outside the allowed alphabet or length.
    pub const BAD_ROOM: &str = "invalid room name (1-20 characters from A-Z a-z 0-9 _ - . #)";
    /// A user name outside the allowed alphabet or length.
    pub const BAD_USER: &str = "invalid user name (1-20 characters from A-Z a-z 0-9 _ - . #)";
    /// The name is taken in that room, in any case.
    pub const NAME_TAKEN: &str = "name taken";
    /// `/join` of the room the user is in.
    pub const SAME_ROOM: &str = "already in that room";
    /// `/msg` to a user not in the room.
    pub const NO_SUCH_USER: &str = "no such user";
    /// A `/word` that is not a command.
    pub const UNKNOWN_COMMAND: &str = "unknown command";
    /// More lines than the rate limit allows.
    pub const RATE_LIMITED: &str = "rate limited";
    /// A line over the length limit.
    pub const LINE_TOO_LONG: &str = "line too long";
    /// The outgoing queue passed its limit.
    pub const TOO_SLOW: &str = "too slow";
    /// No JOIN within the login timeout.
    pub const LOGIN_TIMEOUT: &str = "login timeout";
    /// Over `--max-connections`.
    pub const TOO_MANY: &str = "too many connections";
    /// Over `--max-per-ip`.
    pub const TOO_MANY_FROM_IP: &str = "too many connections from your address";
    /// A WebSocket text message that is not UTF-8.
    pub const BAD_UTF8: &str = "invalid UTF-8";
    /// A WebSocket frame that breaks RFC 6455.
    pub const PROTOCOL_ERROR: &str = "protocol error";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn room_lines() {
        assert_eq!(&joined(n("bob"))[..], b"bob has joined\r\n");
        assert_eq!(&said(n("bob"), " hi ")[..], b"bob:  hi \r\n");
        let mut burst = Vec::new();
        put_me(&mut burst, n("bob"), "waves");
        assert_eq!(burst, b"* bob waves\r\n");
        assert_eq!(&private(n("bob"), "psst")[..], b"bob (private): psst\r\n");
        assert_eq!(
            texts_of(&left(n("bob"))).collect::<Vec<_>>(),
            [b"bob has left"]
        );
    }

    #[test]
    fn a_burst_splits_back_into_its_lines() {
        let mut burst = Vec::new();
        put_said(&mut burst, n("bob"), "one");
        put_me(&mut burst, n("bob"), "two");
        let burst = Bytes::from(burst);
        assert_eq!(
            lines_of(&burst).collect::<Vec<_>>(),
            [&b"bob: one\r\n"[..], &b"* bob two\r\n"[..]]
        );
        assert_eq!(
            texts_of(&burst).collect::<Vec<_>>(),
            [&b"bob: one"[..], &b"* bob two"[..]]
        );
    }

    #[test]
    fn lists_sort_by_byte_value() {
        let line = who(n("r"), vec![n("bob"), n("Zed"), n("_x"), n("alice")]);
        assert_eq!(&line[..], b"* users in r: Zed, _x, alice, bob\r\n");
        let line = rooms(vec![(n("b"), 1), (n("B"), 2)]);
        assert_eq!(&line[..], b"* rooms: B (2), b (1)\r\n");
        assert_eq!(&rooms(vec![])[..], b"* rooms: none\r\n");
    }

    #[test]
    fn help_lines_start_with_star() {
        assert!(help().iter().all(|l| l.starts_with(b"* ")));
    }
}
