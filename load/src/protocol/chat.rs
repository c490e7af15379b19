//! chatgate's server lines as a client sees them.
//!
//! The server ends each line with `\r\n` on byte streams and sends one line
//! per WebSocket message; [`next_line`] splits the former, [`classify`] tells
//! a room message from a join, a leave, an error or anything else.

/// The next complete line at the start of `buf`, without its `\n` or
/// `\r\n`, and how many bytes it took; `None` until a `\n` arrives.
pub fn next_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = memchr::memchr(b'\n', buf)?;
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, end + 1))
}

/// What a server line means to the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatLine<'a> {
    /// `<user>: <text>`
    Message {
        /// Who sent it.
        user: &'a [u8],
        /// What they sent.
        text: &'a [u8],
    },
    /// `<user> has joined`
    Joined(&'a [u8]),
    /// `<user> has left`
    Left(&'a [u8]),
    /// `ERROR <reason>`
    Error(&'a [u8]),
    /// Welcome lines, `* ...` lines and anything else.
    Other,
}

/// Tells what a server line (terminator removed) is: a chat line, or a
/// JSON event (which always starts with `{`, as no chat line can).
pub fn classify(line: &[u8]) -> ChatLine<'_> {
    if line.first() == Some(&b'{') {
        return classify_event(line);
    }
    if let Some(reason) = line.strip_prefix(b"ERROR ") {
        return ChatLine::Error(reason);
    }
    let name_len = line.iter().take_while(|&&b| is_name_byte(b)).count();
    if name_len == 0 {
        return ChatLine::Other;
    }
    let (user, rest) = line.split_at(name_len);
    if let Some(text) = rest.strip_prefix(b": ") {
        ChatLine::Message { user, text }
    } else if rest == b" has joined" {
        ChatLine::Joined(user)
    } else if rest == b" has left" {
        ChatLine::Left(user)
    } else {
        ChatLine::Other
    }
}

/// The fields of a JSON event the generator reads. Borrowed: the text it
/// sends holds nothing JSON escapes, and an event that needs unescaping
/// is not one of its own.
#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    user: Option<&'a str>,
    text: Option<&'a str>,
}

/// Tells what a JSON event is, as [`classify`] does for lines.
fn classify_event(line: &[u8]) -> ChatLine<'_> {
    let Ok(event) = serde_json::from_slice::<Event<'_>>(line) else {
        return ChatLine::Other;
    };
    let user = event.user.map(str::as_bytes);
    let text = event.text.map(str::as_bytes);
    match (event.kind, user, text) {
        ("say", Some(user), Some(text)) => ChatLine::Message { user, text },
        ("join", Some(user), _) => ChatLine::Joined(user),
        ("leave", Some(user), _) => ChatLine::Left(user),
        ("error", _, Some(reason)) => ChatLine::Error(reason),
        _ => ChatLine::Other,
    }
}

/// Bytes allowed in room and user names by the protocol.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `chunks`, fed one after another as reads would deliver them,
    /// into lines, carrying partial lines over like a receiver does.
    fn lines_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut carry = Vec::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            carry.extend_from_slice(chunk);
            let mut at = 0;
            while let Some((line, used)) = next_line(&carry[at..]) {
                lines.push(line.to_vec());
                at += used;
            }
            carry.drain(..at);
        }
        lines
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let lines = lines_of(&[b"alice: hel", b"lo\r\nbob has jo", b"ined\r", b"\n"]);
        assert_eq!(
            lines,
            vec![b"alice: hello".to_vec(), b"bob has joined".to_vec()]
        );
    }

    #[test]
    fn bare_newline_ends_a_line_too() {
        assert_eq!(next_line(b"a\nb"), Some((&b"a"[..], 2)));
        assert_eq!(next_line(b"no end"), None);
    }

    #[test]
    fn messages_joins_leaves_and_errors_are_told_apart() {
        assert_eq!(
            classify(b"alice: 1:2:3:xx"),
            ChatLine::Message {
                user: b"alice",
                text: b"1:2:3:xx"
            }
        );
        assert_eq!(
            classify(b"u-1.x#y has joined"),
            ChatLine::Joined(b"u-1.x#y")
        );
        assert_eq!(classify(b"bob has left"), ChatLine::Left(b"bob"));
        assert_eq!(classify(b"ERROR too slow"), ChatLine::Error(b"too slow"));
        assert_eq!(
            classify(br#"{"type":"say","room":"r","user":"al","text":"1:2","time":"t","id":"i"}"#),
            ChatLine::Message {
                user: b"al",
                text: b"1:2"
            }
        );
        assert_eq!(
            classify(br#"{"type":"join","room":"r","user":"u1","time":"t"}"#),
            ChatLine::Joined(b"u1")
        );
        assert_eq!(
            classify(br#"{"type":"error","text":"too slow"}"#),
            ChatLine::Error(b"too slow")
        );
        assert_eq!(
            classify(br#"{"type":"welcome","usage":"x"}"#),
            ChatLine::Other
        );
    }

    #[test]
    fn text_that_looks_like_an_event_is_a_message() {
        assert_eq!(
            classify(b"bob: carol has joined"),
            ChatLine::Message {
                user: b"bob",
                text: b"carol has joined"
            }
        );
    }

    #[test]
    fn other_lines_are_other() {
        for line in [
            &b"Welcome! Use the command:"[..],
            b"JOIN <ROOMNAME> <USERNAME>",
            b"* bob waves",
            b"*** users in r: a, b",
            b"bob (private): hi",
            b"",
        ] {
            assert_eq!(
                classify(line),
                ChatLine::Other,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
