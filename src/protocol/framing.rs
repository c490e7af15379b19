//! Splitting input into lines: the telnet layer and line framing for byte
//! streams (TCP, TLS), and line splitting for WebSocket messages.
//!
//! [`LineDecoder`] is fed whatever a read returned and hands back complete
//! lines. It holds only the unfinished line, so an idle connection keeps no
//! read buffer at all; a buffer that grew for one long line is given back
//! once that line is done.

use super::MAX_LINE;
use super::MAX_WS_MESSAGE;

/// The line or message was longer than the protocol allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line too long")]
pub struct LineTooLong;

/// Line buffers up to this size are kept between lines; a larger one was
/// grown for an unusually long line and is freed, so idle connections stay
/// small.
const KEEP_LINE_CAPACITY: usize = 256;

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// Where the telnet layer is within an IAC sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Telnet {
    /// Plain data.
    #[default]
    Data,
    /// Just after `IAC`.
    Iac,
    /// After `IAC WILL|WONT|DO|DONT`: the next byte is the option.
    Option,
    /// Inside `IAC SB ... IAC SE`.
    Sub,
    /// Inside a subnegotiation, just after `IAC`.
    SubIac,
}

/// Turns a byte stream into lines: removes telnet IAC sequences, splits on
/// `\n`, strips one trailing `\r` and enforces [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct LineDecoder {
    /// Telnet state carried between reads, since a sequence may be split.
    telnet: Telnet,
    /// Bytes of a subnegotiation seen so far; a huge one is refused like a
    /// huge line, so it cannot be used to make the server read forever.
    sub_len: usize,
    /// The line being assembled, after the telnet layer.
    line: Vec<u8>,
    /// `line` holds a finished line that the caller has already been given;
    /// it is cleared at the start of the next call.
    finished: bool,
}

impl LineDecoder {
    /// A decoder with no buffered input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes from the front of `input` until a line is complete.
    ///
    /// Returns true when a line is complete (read it with [`Self::line`]),
    /// false when `input` ran out first; the bytes of an unfinished line are
    /// kept for the next call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<bool, LineTooLong> {
        if self.finished {
            self.finished = false;
            self.line.clear();
            if self.line.capacity() > KEEP_LINE_CAPACITY {
                self.line = Vec::new();
            }
        }
        while !input.is_empty() {
            if self.telnet == Telnet::Data {
                let stop = input.iter().position(|&b| b == b'\n' || b == IAC);
                let chunk = &input[..stop.unwrap_or(input.len())];
                self.push(chunk)?;
                match stop {
                    None => *input = &[],
                    Some(at) => {
                        let found = input[at];
                        *input = &input[at + 1..];
                        if found == b'\n' {
                            return self.finish().map(|()| true);
                        }
                        self.telnet = Telnet::Iac;
                    }
                }
                continue;
            }
            let byte = input[0];
            *input = &input[1..];
            self.telnet = match (self.telnet, byte) {
                (Telnet::Iac, SB) => {
                    self.sub_len = 0;
                    Telnet::Sub
                }
                (Telnet::Iac, WILL..=DONT) => Telnet::Option,
                (Telnet::Iac, _) | (Telnet::Option, _) => Telnet::Data,
                (Telnet::Sub, IAC) => Telnet::SubIac,
                (Telnet::SubIac, SE) => Telnet::Data,
                (Telnet::Sub, _) | (Telnet::SubIac, _) => {
                    self.sub_len += 1;
                    if self.sub_len > MAX_LINE {
                        return Err(LineTooLong);
                    }
                    Telnet::Sub
                }
                // Not reached: data bytes are consumed in bulk above.
                (Telnet::Data, _) => Telnet::Data,
            };
        }
        Ok(false)
    }

    /// The line completed by the last call to [`Self::decode`] that
    /// returned true, its terminator removed.
    pub fn line(&self) -> &[u8] {
        if self.finished { &self.line } else { &[] }
    }

    /// Heap bytes this decoder holds; for memory accounting in tests.
    pub fn capacity(&self) -> usize {
        self.line.capacity()
    }

    /// Appends line bytes, refusing as soon as the line cannot fit: one byte
    /// past the limit is tolerated only if it may be the `\r` of `\r\n`.
    fn push(&mut self, chunk: &[u8]) -> Result<(), LineTooLong> {
        let len = self.line.len() + chunk.len();
        let last = chunk.last().or(self.line.last()).copied();
        if len > MAX_LINE + 1 || (len == MAX_LINE + 1 && last != Some(b'\r')) {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), LineTooLong> {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        self.finished = true;
        Ok(())
    }
}

/// Splits one WebSocket message into its lines.
///
/// The whole message is checked before any line is returned, so a message
/// with one line over the limit relays nothing at all. A trailing `\n` adds
/// no empty line; one `\r` before each `\n` is dropped.
pub fn split_ws_message(message: &[u8]) -> Result<WsLines<'_>, LineTooLong> {
    if message.len() > MAX_WS_MESSAGE {
        return Err(LineTooLong);
    }
    let lines = WsLines { rest: message };
    if lines.clone().any(|line| line.len() > MAX_LINE) {
        return Err(LineTooLong);
    }
    Ok(lines)
}

/// The lines of one WebSocket message, see [`split_ws_message`].
#[derive(Debug, Clone)]
pub struct WsLines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for WsLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&self.rest[..at], &self.rest[at + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(input: &[u8]) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut decoder = LineDecoder::new();
        let mut rest = input;
        let mut out = Vec::new();
        while decoder.decode(&mut rest)? {
            out.push(decoder.line().to_vec());
        }
        Ok(out)
    }

    #[test]
    fn splits_on_lf_and_crlf() {
        assert_eq!(
            lines(b"a\nb\r\nc").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn strips_only_one_trailing_cr() {
        assert_eq!(lines(b"a\r\r\n").unwrap(), vec![b"a\r".to_vec()]);
    }

    #[test]
    fn removes_telnet_sequences_whole() {
        let input = b"h\xff\xffi\xff\xfb\x01!\xff\xf1 \xff\xfa\x18\n\x01\xff\xf0x\n";
        assert_eq!(lines(input).unwrap(), vec![b"hi! x".to_vec()]);
    }

    #[test]
    fn telnet_sequence_split_across_reads() {
        let mut decoder = LineDecoder::new();
        let mut first: &[u8] = b"a\xff";
        assert!(!decoder.decode(&mut first).unwrap());
        let mut second: &[u8] = b"\xfd\x03b\n";
        assert!(decoder.decode(&mut second).unwrap());
        assert_eq!(decoder.line(), b"ab");
    }

    #[test]
    fn longest_line_is_accepted_with_either_terminator() {
        for end in [&b"\n"[..], b"\r\n"] {
            let mut input = vec![b'x'; MAX_LINE];
            input.extend_from_slice(end);
            assert_eq!(lines(&input).unwrap()[0].len(), MAX_LINE);
        }
    }

    #[test]
    fn one_byte_more_is_too_long_even_before_the_newline() {
        let input = vec![b'x'; MAX_LINE + 1];
        assert_eq!(lines(&input), Err(LineTooLong));
        let mut with_cr = vec![b'x'; MAX_LINE + 1];
        with_cr.extend_from_slice(b"\r\n");
        assert_eq!(lines(&with_cr), Err(LineTooLong));
    }

    #[test]
    fn endless_subnegotiation_is_too_long() {
        let mut input = b"\xff\xfa".to_vec();
        input.extend(std::iter::repeat_n(b'\n', MAX_LINE + 1));
        assert_eq!(lines(&input), Err(LineTooLong));
    }

    #[test]
    fn long_line_buffer_is_given_back() {
        let mut decoder = LineDecoder::new();
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nshort\n");
        let mut rest = &input[..];
        decoder.decode(&mut rest).unwrap();
        decoder.decode(&mut rest).unwrap();
        assert!(decoder.capacity() <= KEEP_LINE_CAPACITY);
    }

    #[test]
    fn ws_message_lines() {
        let got: Vec<_> = split_ws_message(b"a\r\nb\n").unwrap().collect();
        assert_eq!(got, vec![&b"a"[..], b"b"]);
        let got: Vec<_> = split_ws_message(b"a\n\nb").unwrap().collect();
        assert_eq!(got, vec![&b"a"[..], b"", b"b"]);
    }

    #[test]
    fn ws_message_limits() {
        let mut ok = vec![b'x'; MAX_LINE];
        ok.extend_from_slice(b"\r\n");
        assert_eq!(split_ws_message(&ok).unwrap().count(), 1);
        ok.push(b'y');
        assert!(split_ws_message(&ok).is_err());
        let mut two = vec![b'x'; MAX_LINE + 1];
        two[5] = b'\n';
        assert_eq!(split_ws_message(&two).unwrap().count(), 2);
        assert!(split_ws_message(&vec![b'x'; MAX_LINE + 1]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = lines(&input);
            let _ = split_ws_message(&input).map(|l| l.count());
        }

        #[test]
        fn how_input_is_split_across_reads_does_not_matter(
            input in proptest::collection::vec(any::<u8>(), 0..512),
            cut in 0usize..512,
        ) {
            let cut = cut.min(input.len());
            let mut decoder = LineDecoder::new();
            let mut got = Vec::new();
            for mut part in [&input[..cut], &input[cut..]] {
                while decoder.decode(&mut part).unwrap() {
                    got.push(decoder.line().to_vec());
                }
            }
            prop_assert_eq!(got, lines(&input).unwrap());
        }

        #[test]
        fn plain_lines_round_trip(
            text in proptest::collection::vec("[^\n\r\u{ff}]{0,40}", 0..8),
            crlf in any::<bool>(),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let encoded: String = text.iter().map(|l| format!("{l}{sep}")).collect();
            let got = lines(encoded.as_bytes()).unwrap();
            let want: Vec<Vec<u8>> = text.iter().map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
