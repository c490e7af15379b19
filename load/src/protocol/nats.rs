//! The NATS client protocol, the part a subscriber and a publisher need.
//!
//! [`next_frame`] parses one server frame from the start of a buffer, or
//! says it is incomplete: a `MSG` whose payload has not fully arrived stays
//! in the caller's buffer until the next read completes it. The `encode_*`
//! functions append client commands to a caller's buffer.

use crate::stamp::push_decimal;

/// Longest control line accepted from the server: nats-server's own default
/// `max_control_line`, so anything longer is not a server we understand.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The `CONNECT` options: no `+OK` after every command, no strict checks.
pub const CONNECT_OPTIONS: &str = r#"{"verbose":false,"pedantic":false}"#;

/// One frame sent by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `MSG <subject> <sid> [reply-to] <bytes>` and its payload.
    Msg {
        /// The subject it was published on.
        subject: &'a [u8],
        /// The subscription that matched.
        sid: &'a [u8],
        /// The published bytes.
        payload: &'a [u8],
    },
    /// `PING`: must be answered with `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK`
    Ok,
    /// `-ERR <message>`
    Err(&'a [u8]),
    /// `INFO {json}`
    Info(&'a [u8]),
}

/// A server frame that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    /// A control line without its end within [`MAX_CONTROL_LINE`] bytes.
    #[error("NATS control line longer than {MAX_CONTROL_LINE} bytes")]
    LineTooLong,
    /// An operation this client does not know.
    #[error("unknown NATS operation {0:?}")]
    UnknownOp(String),
    /// A `MSG` line with missing or bad fields, or a payload not followed by CRLF.
    #[error("malformed NATS MSG: {0:?}")]
    BadMsg(String),
}

/// Parses the frame at the start of `buf`: the frame and the bytes it took,
/// or `None` when more input is needed.
pub fn next_frame(buf: &[u8]) -> Result<Parsed<'_>, NatsError> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_CONTROL_LINE {
            Err(NatsError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let after_line = end + 1;
    let (op, args) = match memchr::memchr2(b' ', b'\t', line) {
        Some(at) => (&line[..at], trim_start(&line[at + 1..])),
        None => (line, &line[line.len()..]),
    };
    let frame = if op.eq_ignore_ascii_case(b"MSG") {
        return parse_msg(args, &buf[after_line..], after_line).map_err(|()| bad_msg(line));
    } else if op.eq_ignore_ascii_case(b"PING") {
        Frame::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Frame::Pong
    } else if op.eq_ignore_ascii_case(b"+OK") {
        Frame::Ok
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        Frame::Err(args)
    } else if op.eq_ignore_ascii_case(b"INFO") {
        Frame::Info(args)
    } else {
        return Err(NatsError::UnknownOp(
            String::from_utf8_lossy(&op[..op.len().min(32)]).into_owned(),
        ));
    };
    Ok(Some((frame, after_line)))
}

/// A parsed frame and the bytes it took, or `None` for "incomplete".
type Parsed<'a> = Option<(Frame<'a>, usize)>;

/// Parses `MSG` arguments; `rest` is what follows the control line.
fn parse_msg<'a>(args: &'a [u8], rest: &'a [u8], line_len: usize) -> Result<Parsed<'a>, ()> {
    let mut fields = args
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty());
    let subject = fields.next().ok_or(())?;
    let sid = fields.next().ok_or(())?;
    let third = fields.next().ok_or(())?;
    let size_field = match fields.next() {
        Some(size) => size,
        None => third,
    };
    if fields.next().is_some() {
        return Err(());
    }
    let size = parse_size(size_field).ok_or(())?;
    if rest.len() < size + 2 {
        return Ok(None);
    }
    if &rest[size..size + 2] != b"\r\n" {
        return Err(());
    }
    let frame = Frame::Msg {
        subject,
        sid,
        payload: &rest[..size],
    };
    Ok(Some((frame, line_len + size + 2)))
}

fn parse_size(field: &[u8]) -> Option<usize> {
    if field.is_empty() || field.len() > 10 {
        return None;
    }
    field.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let skip = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[skip..]
}

fn bad_msg(line: &[u8]) -> NatsError {
    NatsError::BadMsg(String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned())
}

/// Appends `CONNECT {options}`.
pub fn encode_connect(out: &mut Vec<u8>) {
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(CONNECT_OPTIONS.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `SUB <subject> <sid>`.
pub fn encode_sub(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

/// Appends the header of `PUB <subject> <len>`; the caller appends the
/// payload and then [`encode_pub_end`].
pub fn encode_pub_start(out: &mut Vec<u8>, subject: &str, len: usize) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Ends a `PUB` payload.
pub fn encode_pub_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Appends `PING`.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// Appends `PONG`.
pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` as successive reads and collects the frames' debug
    /// form, carrying incomplete frames over like a receiver does.
    fn frames_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut carry = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            carry.extend_from_slice(chunk);
            let mut at = 0;
            while let Some((frame, used)) = next_frame(&carry[at..]).unwrap() {
                out.push(describe(frame));
                at += used;
            }
            carry.drain(..at);
        }
        assert!(carry.is_empty(), "left over: {carry:?}");
        out
    }

    fn describe(frame: Frame<'_>) -> String {
        match frame {
            Frame::Msg {
                subject,
                sid,
                payload,
            } => format!(
                "MSG {} {} {}",
                String::from_utf8_lossy(subject),
                String::from_utf8_lossy(sid),
                String::from_utf8_lossy(payload)
            ),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn msg_split_at_every_byte_is_reassembled() {
        let wire = b"MSG room.0 1 12\r\nhello\r\nworld\r\nPING\r\n";
        for cut in 1..wire.len() {
            let frames = frames_of(&[&wire[..cut], &wire[cut..]]);
            assert_eq!(
                frames,
                vec!["MSG room.0 1 hello\r\nworld", "Ping"],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn msg_with_reply_subject_and_empty_payload() {
        let frames = frames_of(&[b"MSG a 2 inbox.x 3\r\nabc\r\nMSG b 3 0\r\n\r\n"]);
        assert_eq!(frames, vec!["MSG a 2 abc", "MSG b 3 "]);
    }

    #[test]
    fn control_frames_are_recognised_in_any_case() {
        let frames =
            frames_of(&[b"INFO {\"x\":1}\r\n+OK\r\nping\r\nPONG\r\n-ERR 'Slow Consumer'\r\n"]);
        assert_eq!(
            frames,
            vec![
                "Info([123, 34, 120, 34, 58, 49, 125])",
                "Ok",
                "Ping",
                "Pong",
                "Err([39, 83, 108, 111, 119, 32, 67, 111, 110, 115, 117, 109, 101, 114, 39])"
            ]
        );
    }

    #[test]
    fn payload_not_followed_by_crlf_is_an_error() {
        assert!(matches!(
            next_frame(b"MSG a 1 3\r\nabcd\r\n"),
            Err(NatsError::BadMsg(_))
        ));
        assert!(matches!(
            next_frame(b"MSG a 1 x\r\n"),
            Err(NatsError::BadMsg(_))
        ));
        assert!(matches!(
            next_frame(b"MSG a\r\n"),
            Err(NatsError::BadMsg(_))
        ));
    }

    #[test]
    fn unknown_operation_and_endless_line_are_errors() {
        assert!(matches!(
            next_frame(b"HELLO\r\n"),
            Err(NatsError::UnknownOp(_))
        ));
        let endless = vec![b'x'; MAX_CONTROL_LINE + 1];
        assert_eq!(next_frame(&endless), Err(NatsError::LineTooLong));
        assert_eq!(next_frame(b"PIN"), Ok(None));
    }

    #[test]
    fn commands_are_encoded_as_the_protocol_says() {
        let mut out = Vec::new();
        encode_connect(&mut out);
        encode_sub(&mut out, "room.3", 7);
        encode_pub_start(&mut out, "room.3", 2);
        out.extend_from_slice(b"hi");
        encode_pub_end(&mut out);
        encode_ping(&mut out);
        encode_pong(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB room.3 7\r\nPUB room.3 2\r\nhi\r\nPING\r\nPONG\r\n"
        );
    }
}
