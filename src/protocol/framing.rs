//! Splitting input into lines: the telnet layer and line framing for byte
//! streams (TCP, TLS), and line splitting for WebSocket messages.
//!
//! [`LineDecoder`] is fed whatever a read returned and hands back complete
//! lines. It holds only the unfinished line, so an idle connection keeps no
//! read buffer at all; a buffer that grew for one long line is given back
//! once that line is done.
//!
//! Line ends on a byte stream (PROTOCOL.md, "Framing"): `\n`, `\r\n`,
//! `\r\0` (the NVT carriage return of RFC 854, what a telnet client in
//! character mode sends for Enter) and a bare `\r`. A line ends at its
//! `\r` at once, and the decoder remembers that the next data byte, if it
//! is `\n` or `\0`, belongs to that end, so a `\r\n` split across two
//! reads still ends one line, and an Enter typed in character mode is
//! answered without waiting for the byte after it.

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

/// Turns a byte stream into lines: removes telnet IAC sequences, splits at
/// every line end and enforces [`MAX_LINE`].
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
    /// The last line ended at a `\r`: a `\n` or `\0` as the next data byte
    /// completes that line end instead of starting a line.
    after_cr: bool,
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
        self.take_finished();
        while !input.is_empty() {
            if self.telnet == Telnet::Data {
                // A telnet sequence after the `\r` is removed before lines
                // are split, so it leaves the line end undecided.
                if self.after_cr && input[0] != IAC {
                    self.after_cr = false;
                    if matches!(input[0], b'\n' | b'\0') {
                        *input = &input[1..];
                        continue;
                    }
                }
                let stop = memchr::memchr3(b'\n', b'\r', IAC, input);
                let chunk = &input[..stop.unwrap_or(input.len())];
                self.push(chunk)?;
                match stop {
                    None => *input = &[],
                    Some(at) => {
                        let found = input[at];
                        *input = &input[at + 1..];
                        if found == IAC {
                            self.telnet = Telnet::Iac;
                            continue;
                        }
                        self.after_cr = found == b'\r';
                        self.finished = true;
                        return Ok(true);
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

    /// The peer closed its sending side: a non-empty unterminated last line
    /// counts as a line. Returns true when there is one (read it with
    /// [`Self::line`]); after that, and on every later call, false.
    pub fn end_of_input(&mut self) -> bool {
        self.take_finished();
        self.telnet = Telnet::Data;
        self.finished = !self.line.is_empty();
        self.finished
    }

    /// Clears the line the caller was last given.
    fn take_finished(&mut self) {
        if self.finished {
            self.finished = false;
            self.line.clear();
            if self.line.capacity() > KEEP_LINE_CAPACITY {
                self.line = Vec::new();
            }
        }
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

    /// Appends line bytes, refusing as soon as the line cannot fit.
    fn push(&mut self, chunk: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + chunk.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(chunk);
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
        let (len, used) = next_ws_line(self.rest)?;
        let line = &self.rest[..len];
        self.rest = &self.rest[used..];
        Some(line)
    }
}

/// Where the first line of what is left of a WebSocket message ends: its
/// length without the `\r` before its `\n`, and the bytes it takes with its
/// `\n`. `None` when nothing is left, so a trailing `\n` adds no line.
pub fn next_ws_line(rest: &[u8]) -> Option<(usize, usize)> {
    if rest.is_empty() {
        return None;
    }
    let (line, used) = match memchr::memchr(b'\n', rest) {
        Some(at) => (&rest[..at], at + 1),
        None => (rest, rest.len()),
    };
    let len = line.strip_suffix(b"\r").unwrap_or(line).len();
    Some((len, used))
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
    fn every_line_end_of_the_protocol() {
        assert_eq!(
            lines(b"a\nb\r\nc\r\0d\re\r\r\nf\n").unwrap(),
            [&b"a"[..], b"b", b"c", b"d", b"e", b"", b"f"]
        );
    }

    #[test]
    fn a_line_end_split_across_reads_ends_one_line() {
        for (first, second) in [
            (&b"a\r"[..], &b"\nb\n"[..]),
            (b"a\r", b"\0b\n"),
            (b"a\r", b"b\n"),
        ] {
            let mut decoder = LineDecoder::new();
            let mut got = Vec::new();
            for mut part in [first, second] {
                while decoder.decode(&mut part).unwrap() {
                    got.push(decoder.line().to_vec());
                }
            }
            assert_eq!(got, [b"a".to_vec(), b"b".to_vec()], "{first:?} {second:?}");
        }
    }

    #[test]
    fn a_telnet_sequence_between_cr_and_lf_splits_nothing() {
        assert_eq!(lines(b"a\r\xff\xf1\nb\n").unwrap(), [&b"a"[..], b"b"]);
    }

    #[test]
    fn unterminated_last_line_counts_at_end_of_input() {
        let mut decoder = LineDecoder::new();
        let mut input: &[u8] = b"JOIN a b\nhello";
        assert!(decoder.decode(&mut input).unwrap());
        assert!(!decoder.decode(&mut input).unwrap());
        assert!(decoder.end_of_input());
        assert_eq!(decoder.line(), b"hello");
        assert!(!decoder.end_of_input());
        let mut done: &[u8] = b"bye\r";
        assert!(decoder.decode(&mut done).unwrap());
        assert!(
            !decoder.end_of_input(),
            "a line ended by its \\r is not handled twice"
        );
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
    fn longest_line_is_accepted_with_any_terminator() {
        for end in [&b"\n"[..], b"\r\n", b"\r\0", b"\r"] {
            let mut input = vec![b'x'; MAX_LINE];
            input.extend_from_slice(end);
            assert_eq!(lines(&input).unwrap()[0].len(), MAX_LINE);
        }
    }

    #[test]
    fn one_byte_more_is_too_long_even_before_the_line_end() {
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
        fn plain_lines_round_trip_with_any_line_ends(
            text in proptest::collection::vec("[^\n\r\u{ff}\u{0}][^\n\r\u{ff}]{0,40}", 0..8),
            ends in proptest::collection::vec(0usize..4, 8),
            cuts in proptest::collection::vec(0usize..400, 0..4),
        ) {
            // Each line starts with a byte that cannot be taken for the
            // second half of the previous line's end.
            let encoded: Vec<u8> = text
                .iter()
                .zip(&ends)
                .flat_map(|(l, &e)| {
                    let end: &[u8] = [&b"\n"[..], b"\r\n", b"\r\0", b"\r"][e];
                    l.as_bytes().iter().chain(end).copied().collect::<Vec<u8>>()
                })
                .collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(encoded.len())).collect();
            cuts.sort_unstable();
            let mut decoder = LineDecoder::new();
            let mut got = Vec::new();
            let mut start = 0;
            for end in cuts.into_iter().chain([encoded.len()]) {
                let mut part = &encoded[start..end];
                start = end;
                while decoder.decode(&mut part).unwrap() {
                    got.push(decoder.line().to_vec());
                }
            }
            let want: Vec<Vec<u8>> = text.iter().map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
