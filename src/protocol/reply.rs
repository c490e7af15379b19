//! Every line the server sends, encoded once.
//!
//! A line is a [`Bytes`] holding the text and its `\r\n`, ready for a byte
//! stream; WebSocket sends each line's text, without the `\r\n`, as one
//! message. A room line (or a burst of them) is built once and the same
//! buffer goes to every member.
//!
//! Each builder makes one of the shapes of PROTOCOL.md ("Who says what"):
//! room lines start with a user's name, the server's own answers and
//! notices with `*** `, refusals with `ERROR `. Names cannot hold `*`, `[`,
//! `:` or blanks and no user is called `ERROR`, so no user can make a line
//! of another shape. Message text goes through the whitespace rule
//! ([`put_squeezed`]) as it is written into the line.

use bytes::Bytes;

use super::command::JOIN_SYNTAX;
use super::names::{NAME_RULES, Name};
use super::text::put_squeezed;

/// The terminator every encoded line ends with.
pub const CRLF: &[u8] = b"\r\n";

/// The first of the two welcome lines.
pub const WELCOME: Bytes = Bytes::from_static(b"Welcome! Use the command:\r\n");
/// The second welcome line.
pub const WELCOME_USAGE: Bytes = Bytes::from_static(b"JOIN <ROOMNAME> <USERNAME>\r\n");
/// Sent to everyone when the server stops.
pub const SHUTTING_DOWN: Bytes = Bytes::from_static(b"*** server shutting down\r\n");
/// What a drained connection is told before it is closed.
pub const RESTARTING: Bytes = Bytes::from_static(b"*** server restarting, please reconnect\r\n");

/// Sent to a node's users when its cluster link drops: until it is back,
/// their lines reach this node's members only.
pub const CLUSTER_LINK_LOST: Bytes = Bytes::from_static(b"*** cluster link lost\r\n");
/// Sent to a node's users when its cluster link is back.
pub const CLUSTER_LINK_RESTORED: Bytes = Bytes::from_static(b"*** cluster link restored\r\n");

/// Entries a `/who` or `/rooms` answer lists at most (PROTOCOL.md).
pub const MAX_LISTED: usize = 100;

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
    let mut buf = Vec::with_capacity(user.as_str().len() + 2 + text.len() + CRLF.len());
    put_said(&mut buf, user, text);
    Bytes::from(buf)
}

/// Appends `<user>: <text>` to a burst of lines being gathered.
pub fn put_said(burst: &mut Vec<u8>, user: Name, text: &str) {
    put_message(burst, &[user.as_str(), ": "], text);
}

/// Appends `* <user> <text>` to a burst of lines being gathered.
pub fn put_me(burst: &mut Vec<u8>, user: Name, text: &str) {
    put_message(burst, &["* ", user.as_str(), " "], text);
}

/// Appends a line of fixed parts followed by a user's text, which goes
/// through the whitespace rule.
fn put_message(burst: &mut Vec<u8>, head: &[&str], text: &str) {
    for part in head {
        burst.extend_from_slice(part.as_bytes());
    }
    put_squeezed(burst, text);
    burst.extend_from_slice(CRLF);
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
    let mut buf = Vec::with_capacity(from.as_str().len() + 12 + text.len() + CRLF.len());
    put_message(&mut buf, &[from.as_str(), " (private): "], text);
    Bytes::from(buf)
}

/// The `/who` answer: `*** users in <room>: <name>, ...` sorted by byte
/// value, or, for more names than fit, `*** users in <room> (first <k> of
/// <total>): ...` with the first k by byte value. k is at most
/// [`MAX_LISTED`], and smaller when the line would pass `budget` bytes
/// (0: no budget). Picking the first k costs O(n), not a full sort.
pub fn who(room: Name, users: Vec<Name>, budget: usize) -> Bytes {
    let (users, total) = who_listed(room, users, budget);
    let names: Vec<&str> = users.iter().map(Name::as_str).collect();
    line(&[&who_header(room, users.len(), total), &names.join(", ")])
}

fn who_header(room: Name, k: usize, total: usize) -> String {
    if k == total {
        format!("*** users in {room}: ")
    } else {
        format!("*** users in {room} (first {k} of {total}): ")
    }
}

/// The names `/who` lists, in order, and how many members there are: as
/// [`who`] picks them.
pub fn who_listed(room: Name, mut users: Vec<Name>, budget: usize) -> (Vec<Name>, usize) {
    let total = users.len();
    let by_bytes = |a: &Name, b: &Name| a.as_str().cmp(b.as_str());
    if total > MAX_LISTED {
        users.select_nth_unstable_by(MAX_LISTED - 1, by_bytes);
        users.truncate(MAX_LISTED);
    }
    users.sort_unstable_by(by_bytes);
    let k = fitting(
        users.iter().map(|u| u.as_str().len()),
        budget,
        |k| who_header(room, k, total),
        total,
    );
    users.truncate(k);
    (users, total)
}

/// The `/rooms` answer: `*** rooms: <room> (<count>), ...` sorted by byte
/// value, `*** rooms: none`, or, for more rooms than fit, `*** rooms (<k>
/// largest of <total>): ...`: the k with most members (ties by byte value),
/// listed by byte value. k is bounded as in [`who`].
pub fn rooms(rooms: Vec<(Name, usize)>, budget: usize) -> Bytes {
    let (listed, total) = rooms_listed(rooms, budget);
    if total == 0 {
        return line(&["*** rooms: none"]);
    }
    let entries: Vec<String> = listed
        .iter()
        .map(|(room, n)| format!("{room} ({n})"))
        .collect();
    line(&[&rooms_header(listed.len(), total), &entries.join(", ")])
}

fn rooms_header(k: usize, total: usize) -> String {
    if k == total {
        "*** rooms: ".to_owned()
    } else {
        format!("*** rooms ({k} largest of {total}): ")
    }
}

/// The rooms `/rooms` lists, by name, and how many there are: as [`rooms`]
/// picks them.
pub fn rooms_listed(mut rooms: Vec<(Name, usize)>, budget: usize) -> (Vec<(Name, usize)>, usize) {
    let total = rooms.len();
    // Largest first, then by name: the order in which rooms are kept.
    let by_size = |a: &(Name, usize), b: &(Name, usize)| {
        b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str()))
    };
    if total > MAX_LISTED {
        rooms.select_nth_unstable_by(MAX_LISTED - 1, by_size);
        rooms.truncate(MAX_LISTED);
    }
    rooms.sort_unstable_by(by_size);
    // `<room> (<count>)`: the name, the digits and three more.
    let entry_len = |(room, n): &(Name, usize)| room.as_str().len() + n.to_string().len() + 3;
    let k = fitting(
        rooms.iter().map(entry_len),
        budget,
        |k| rooms_header(k, total),
        total,
    );
    rooms.truncate(k);
    rooms.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    (rooms, total)
}

/// The text of the `/bans` answer, without the `*** `: `bans: <address>
/// (<until>), ...`, `bans: none`, or, for more than fit, `bans (first <k>
/// of <total>): ...`. `bans` holds each ban's address and end as shown,
/// already in order (by address value, IPv4 first); k is bounded as in
/// [`who`], the budget counting the `*** ` too.
pub fn bans_listed(bans: &[(String, String)], budget: usize) -> String {
    let total = bans.len();
    if total == 0 {
        return "bans: none".to_owned();
    }
    let listed = &bans[..total.min(MAX_LISTED)];
    let header = |k: usize| {
        if k == total {
            "*** bans: ".to_owned()
        } else {
            format!("*** bans (first {k} of {total}): ")
        }
    };
    let k = fitting(
        listed
            .iter()
            .map(|(addr, until)| addr.len() + until.len() + 3),
        budget,
        header,
        total,
    );
    let entries: Vec<String> = listed[..k]
        .iter()
        .map(|(addr, until)| format!("{addr} ({until})"))
        .collect();
    let header = header(k);
    format!("{}{}", &header["*** ".len()..], entries.join(", "))
}

/// How many entries, of the lengths given in the order they are kept, fit
/// in `budget` bytes (0: all) with their `, ` separators, the `\r\n` and
/// the longest header that `header` can write for a list of `total`.
fn fitting(
    lengths: impl ExactSizeIterator<Item = usize>,
    budget: usize,
    header: impl Fn(usize) -> String,
    total: usize,
) -> usize {
    let count = lengths.len();
    if budget == 0 {
        return count;
    }
    // The truncated form is the longer one, and its count of listed
    // entries has no more digits than the total.
    let longest_header = header(0).len() + total.to_string().len();
    let mut used = longest_header + CRLF.len();
    let mut fits = 0;
    for len in lengths {
        used += len + 2;
        if used > budget {
            break;
        }
        fits += 1;
    }
    fits
}

/// `ERROR <reason>`
pub fn error(reason: &str) -> Bytes {
    line(&["ERROR ", reason])
}

/// `*** <text>`
pub fn info(text: &str) -> Bytes {
    line(&["*** ", text])
}

/// `ERROR usage: <syntax>`
pub fn usage(syntax: &str) -> Bytes {
    line(&["ERROR usage: ", syntax])
}

/// The `/help` answer; every line starts with `*** `.
pub fn help() -> Vec<Bytes> {
    [
        "*** commands:",
        "***   /who                 list the users in your room",
        "***   /rooms               list the rooms and how many are in each",
        "***   /join <room>         move to another room",
        "***   /msg <user> <text>   send a private message to a user in your room",
        "***   /me <text>           say what you are doing: * you <text>",
        "***   /history [N]         the last N lines said in your room (default 20, at most 1000)",
        "***   /history since <id>  the lines after the one with that id (ids come with JSON events)",
        "***   /oper <name> <password>  become an operator (operators: /kick, /ban, /unban, /bans, /mute, /unmute)",
        "***   /help                this help",
        "***   /quit                leave and disconnect",
        "*** any other line is sent to your room; start it with // to send a line beginning with /",
    ]
    .iter()
    .map(|l| line(&[l]))
    .chain([line(&[
        "*** before joining: ",
        JOIN_SYNTAX,
        " (names: ",
        NAME_RULES,
        ")",
    ])])
    .collect()
}

/// The line of a server notice.
pub fn notice(code: super::json::NoticeCode) -> Bytes {
    use super::json::NoticeCode;
    match code {
        NoticeCode::Shutdown => SHUTTING_DOWN,
        NoticeCode::Restarting => RESTARTING,
        NoticeCode::LinkLost => CLUSTER_LINK_LOST,
        NoticeCode::LinkRestored => CLUSTER_LINK_RESTORED,
    }
}

/// `*** end of history`, the last line of a `/history` answer.
pub const END_OF_HISTORY: Bytes = Bytes::from_static(b"*** end of history\r\n");

/// One kept line as `/history` shows it: `[<time>] <room line>`, the time
/// in UTC to the second (PROTOCOL.md, History).
pub fn history_line(at: crate::history::Millis, text: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(HISTORY_LINE_EXTRA + text.len());
    buf.push(b'[');
    put_utc_seconds(&mut buf, at);
    buf.extend_from_slice(b"] ");
    buf.extend_from_slice(text);
    buf.extend_from_slice(CRLF);
    Bytes::from(buf)
}

/// What [`history_line`] adds to a line's text, in bytes.
pub const HISTORY_LINE_EXTRA: usize = "[2026-11-29T18:44:19Z] ".len() + CRLF.len();

/// `*** history of <room>: <k> lines`, with `, some missing` when lines
/// the request covers were not kept.
pub fn history_header(room: Name, lines: usize, complete: bool) -> Bytes {
    let count = lines.to_string();
    let noun = if lines == 1 { " line" } else { " lines" };
    let missing = if complete { "" } else { ", some missing" };
    line(&[
        "*** history of ",
        room.as_str(),
        ": ",
        &count,
        noun,
        missing,
    ])
}

/// Longest [`history_header`], for answer budgets.
pub const MAX_HISTORY_HEADER: usize =
    "*** history of : 1000 lines, some missing\r\n".len() + crate::protocol::names::MAX_NAME;

/// The `<until>` of a ban's lines (PROTOCOL.md, Operators and
/// moderation): its end as `2026-11-29T18:44:19Z`, or `until unbanned`.
pub fn ban_end(until: Option<crate::history::Millis>) -> String {
    until.map_or_else(|| "until unbanned".to_owned(), utc_seconds)
}

/// `at` (milliseconds since the Unix epoch) as `2026-11-29T18:44:19Z`.
pub fn utc_seconds(at: crate::history::Millis) -> String {
    let mut buf = Vec::with_capacity(20);
    put_utc_seconds(&mut buf, at);
    String::from_utf8(buf).unwrap_or_default()
}

/// Writes `at` (milliseconds since the Unix epoch) as
/// `2026-11-29T18:44:19Z`: RFC 3339 in UTC, to the second.
fn put_utc_seconds(buf: &mut Vec<u8>, at: crate::history::Millis) {
    use std::io::Write;
    let time = utc(at);
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
}

/// `at`, milliseconds since the Unix epoch, as a UTC date and time; times
/// past what the calendar holds are shown as its end.
pub fn utc(at: crate::history::Millis) -> time::OffsetDateTime {
    let nanos = i128::from(at) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
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
    /// The name, or a look-alike of it, is taken in that room.
    pub const NAME_TAKEN: &str = "name taken";
    /// The cluster could not confirm a name in time (PROTOCOL.md, Cluster);
    /// not a failed attempt.
    pub const CLUSTER_BUSY: &str = "cluster busy, try again";
    /// The user name `ERROR` or a look-alike of it.
    pub const RESERVED_NAME: &str = "that user name is reserved";
    /// An HTTP request on a chat port, before the hint where the page is.
    pub const NOT_HTTP: &str = "this is a chat port, not a web server";
    /// `/join` of the room the user is in.
    pub const SAME_ROOM: &str = "already in that room";
    /// `/msg` to a user not in the room.
    pub const NO_SUCH_USER: &str = "no such user";
    /// A `/word` that is not a command.
    pub const UNKNOWN_COMMAND: &str = "unknown command";
    /// `/history` on a server started with `--history 0`.
    pub const HISTORY_OFF: &str = "history is off";
    /// A command that works only in a room, before joining.
    pub const JOIN_FIRST: &str = "join a room first";
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
    /// An operator's command from someone who is not one.
    pub const NOT_OPERATOR: &str = "not an operator";
    /// `/oper` with a wrong name or password, or too soon after the last
    /// try.
    pub const BAD_CREDENTIALS: &str = "bad operator credentials";
    /// `/unban` of something not banned.
    pub const NO_SUCH_BAN: &str = "no such ban";
    /// A ban past the most bans a server holds.
    pub const TOO_MANY_BANS: &str = "too many bans";
    /// A muted user tried to say something.
    pub const MUTED: &str = "you are muted";
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
        let line = who(n("r"), vec![n("bob"), n("Zed"), n("_x"), n("alice")], 0);
        assert_eq!(&line[..], b"*** users in r: Zed, _x, alice, bob\r\n");
        let line = rooms(vec![(n("b"), 1), (n("B"), 2)], 0);
        assert_eq!(&line[..], b"*** rooms: B (2), b (1)\r\n");
        assert_eq!(&rooms(vec![], 0)[..], b"*** rooms: none\r\n");
    }

    fn numbered(count: usize) -> Vec<Name> {
        (0..count).rev().map(|i| n(&format!("u{i:04}"))).collect()
    }

    #[test]
    fn who_lists_the_first_hundred_by_byte_value() {
        let line = who(n("r"), numbered(250), 0);
        let text = std::str::from_utf8(&line).unwrap();
        let (head, list) = text.trim_end().split_once(": ").unwrap();
        assert_eq!(head, "*** users in r (first 100 of 250)");
        let names: Vec<&str> = list.split(", ").collect();
        let want: Vec<String> = (0..100).map(|i| format!("u{i:04}")).collect();
        assert_eq!(names, want);
        let exactly = who(n("r"), numbered(100), 0);
        assert!(exactly.starts_with(b"*** users in r: u0000, "));
    }

    #[test]
    fn rooms_lists_the_hundred_largest_by_byte_value() {
        let mut all: Vec<(Name, usize)> = (0..150).map(|i| (n(&format!("r{i:03}")), 1)).collect();
        all.push((n("zz"), 5));
        all.push((n("a"), 5));
        let line = rooms(all, 0);
        let text = std::str::from_utf8(&line).unwrap();
        let (head, list) = text.trim_end().split_once(": ").unwrap();
        assert_eq!(head, "*** rooms (100 largest of 152)");
        let listed: Vec<&str> = list.split(", ").collect();
        assert_eq!(listed.len(), 100);
        assert_eq!(listed[0], "a (5)");
        assert_eq!(listed[1], "r000 (1)", "ties go by byte value");
        assert_eq!(listed[98], "r097 (1)");
        assert_eq!(listed[99], "zz (5)");
    }

    #[test]
    fn no_list_is_longer_than_its_budget() {
        for budget in [200, 500, 1000] {
            let line = who(n("r"), numbered(300), budget);
            assert!(line.len() <= budget, "{} > {budget}", line.len());
            assert!(line.starts_with(b"*** users in r (first "));
            let rooms_line = rooms(numbered(300).into_iter().map(|u| (u, 3)).collect(), budget);
            assert!(rooms_line.len() <= budget);
        }
    }

    #[test]
    fn message_text_follows_the_whitespace_rule() {
        let spaced = format!("a\t{}b", " ".repeat(20));
        assert_eq!(&said(n("bob"), &spaced)[..], b"bob: a        b\r\n");
        assert_eq!(&private(n("bob"), "x\ty")[..], b"bob (private): x y\r\n");
    }

    #[test]
    fn server_lines_start_with_three_stars() {
        assert!(help().iter().all(|l| l.starts_with(b"*** ")));
        for notice in [SHUTTING_DOWN, CLUSTER_LINK_LOST, CLUSTER_LINK_RESTORED] {
            assert!(notice.starts_with(b"*** "));
        }
    }
}
