//! The checker of a client's frames. [`FrameCheck`] follows the frame
//! headers in a client's raw input and finds the first frame that breaks
//! RFC 6455, with the offset where that becomes certain, so the transport
//! can hand tungstenite the bytes before it and then a [`Violation`].
//!
//! The rules it enforces are those a header or a close code shows alone
//! (section numbers of RFC 6455):
//!
//! - a client's frame is masked (5.1);
//! - no reserved bit is set, since no extension is ever negotiated, and no
//!   reserved opcode is used (5.2);
//! - a 64-bit payload length has its top bit clear, and every length is
//!   written in the fewest bytes that hold it (5.2);
//! - a continuation frame continues an open message, and no new data
//!   message starts inside a fragmented one (5.4);
//! - a control frame is not fragmented and carries at most 125 bytes (5.4,
//!   5.5);
//! - a close frame's payload is empty or starts with a two-byte code (5.5.1),
//!   and that code is one an endpoint may send (7.4).
//!
//! The rest (reassembly, UTF-8 in text messages and close reasons, the size
//! limits) is left to tungstenite.
//!
//! It runs before tungstenite sees a byte because tungstenite finds most of
//! these frames only once their whole payload is buffered (so a long one
//! reads as a message over the limit, 1009, rather than a protocol error,
//! 1002), and it turns a close code that may not be sent into an ordinary
//! close (and refuses 1014, which may be). Following the headers itself,
//! the checker also knows where frames end after tungstenite has given up,
//! so that the reader's `discard` can drain the raw socket up to the peer's
//! close frame.
//!
//! It never buffers a payload: it keeps one header (at most 14 bytes), the
//! two bytes of a close code and a few flags, and lets payload bytes pass,
//! so it costs the same whatever the peer sends.

use std::io;

/// Longest frame header: two bytes, a 64-bit length and a mask key.
const MAX_HEADER: usize = 14;

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The RFC 6455 violations the [`FrameCheck`] finds in a client's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Violation {
    #[error("unmasked client frame")]
    Unmasked,
    #[error("reserved bits set")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("continuation frame with no message open")]
    StrayContinuation,
    #[error("new message inside a fragmented one")]
    NestedMessage,
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("control frame over 125 bytes")]
    LongControl,
    #[error("64-bit frame length with its top bit set")]
    LengthTopBit,
    #[error("frame length not written in its shortest form")]
    LongLengthForm,
    #[error("close frame with a 1-byte payload")]
    ShortClose,
    #[error("close code {0} may not be sent")]
    CloseCode(u16),
    /// A violation tungstenite found and the checker did not.
    #[error("protocol error found by tungstenite")]
    Tungstenite,
}

impl From<Violation> for io::Error {
    fn from(violation: Violation) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, violation)
    }
}

/// Whether a close frame may carry `code` (RFC 6455, 7.4): 1000 to 1003,
/// 1007 to 1014 and 3000 to 4999. 1004 is reserved; 1005, 1006 and 1015
/// only ever stand for a missing code; the rest is unassigned.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What the checker knows of the frame whose payload is passing.
#[derive(Debug, Clone, Copy)]
struct Payload {
    /// Bytes still to come.
    left: u64,
    /// A close frame.
    close: bool,
    /// Its mask key; zeros for an unmasked frame.
    mask: [u8; 4],
    /// Payload bytes seen so far, counted up to the close code's two.
    seen: usize,
    /// The close code, as far as it has arrived, unmasked.
    code: u16,
    /// The header passed the checks, so the frame's end is a real frame
    /// boundary; after a violation, what follows is only bytes.
    trusted: bool,
}

/// Follows the frames of a client's raw input, header by header, and finds
/// the first one that breaks RFC 6455 (no extension is ever negotiated, so
/// any reserved bit is one). It keeps one header and a few flags, never a
/// payload, so it costs the same whatever the peer sends.
#[derive(Debug, Default)]
pub(super) struct FrameCheck {
    /// The header being read.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// The frame whose payload is passing, once its header is whole.
    payload: Option<Payload>,
    /// A data message has begun and not ended.
    fragmented: bool,
    /// The peer's close frame has passed whole.
    pub(super) closed: bool,
    /// The first violation; nothing after it is checked.
    pub(super) fault: Option<Violation>,
}

impl FrameCheck {
    /// Follows `bytes`, the next of the input. When the first violation is
    /// in them, returns its offset: that of the byte completing the
    /// offending header or close code, so the bytes before it never hold
    /// the whole offending frame.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut found = None;
        let mut rest = bytes;
        while !rest.is_empty() {
            let offset = bytes.len() - rest.len();
            match &mut self.payload {
                Some(payload) => {
                    let take = usize::try_from(payload.left)
                        .map_or(rest.len(), |left| left.min(rest.len()));
                    let (now, later) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    rest = later;
                    if payload.close && payload.seen < 2 {
                        for (i, &byte) in now.iter().take(2 - payload.seen).enumerate() {
                            let key = payload.mask.get(payload.seen).copied().unwrap_or(0);
                            payload.code = (payload.code << 8) | u16::from(byte ^ key);
                            payload.seen += 1;
                            let checked = payload.trusted && self.fault.is_none();
                            if payload.seen == 2 && checked && !close_code_allowed(payload.code) {
                                self.fault = Some(Violation::CloseCode(payload.code));
                                found = Some(offset + i);
                            }
                        }
                    }
                    payload.left = payload.left.saturating_sub(now.len() as u64);
                    if payload.left == 0 {
                        self.end_frame();
                    }
                }
                None => {
                    let Some((&byte, later)) = rest.split_first() else {
                        break;
                    };
                    rest = later;
                    if let Some(slot) = self.header.get_mut(self.header_len) {
                        *slot = byte;
                        self.header_len += 1;
                    }
                    let head = self.header.get(..self.header_len).unwrap_or_default();
                    if head.len() == header_len(head) {
                        if let Err(violation) = self.start_frame() {
                            self.fault = Some(violation);
                            found = Some(offset);
                        }
                    }
                }
            }
        }
        found
    }

    /// The header is whole: checks it, unless checking is over, and starts
    /// following its payload.
    fn start_frame(&mut self) -> Result<(), Violation> {
        let header = self.header;
        let head = header.get(..self.header_len).unwrap_or_default();
        self.header_len = 0;
        let Some((&[first, second], rest)) = head.split_first_chunk::<2>() else {
            return Ok(());
        };
        let (length, rest) = match second & 0x7F {
            126 => rest
                .split_first_chunk::<2>()
                .map(|(len, rest)| (u64::from(u16::from_be_bytes(*len)), rest)),
            127 => rest
                .split_first_chunk::<8>()
                .map(|(len, rest)| (u64::from_be_bytes(*len), rest)),
            short => Some((u64::from(short), rest)),
        }
        .unwrap_or((0, &[]));
        let checking = self.fault.is_none() && !self.closed;
        let verdict = if checking {
            self.check(first, second, length)
        } else {
            Ok(())
        };
        self.payload = Some(Payload {
            left: length,
            close: first & 0x0F == 0x8,
            mask: rest.first_chunk::<4>().copied().unwrap_or_default(),
            seen: 0,
            code: 0,
            trusted: checking && verdict.is_ok(),
        });
        if length == 0 {
            self.end_frame();
        }
        verdict
    }

    /// The RFC 6455 rules a header alone shows (sections 5.1 to 5.5).
    fn check(&mut self, first: u8, second: u8, length: u64) -> Result<(), Violation> {
        let fin = first & 0x80 != 0;
        if first & 0x70 != 0 {
            return Err(Violation::ReservedBits);
        }
        if second & 0x80 == 0 {
            return Err(Violation::Unmasked);
        }
        if length >> 63 != 0 {
            return Err(Violation::LengthTopBit);
        }
        // "The minimal number of bytes MUST be used to encode the length"
        // (RFC 6455, 5.2): 126 only for 126 to 65535, 127 only above.
        let shortest = match second & 0x7F {
            126 => length >= 126,
            127 => length > 0xFFFF,
            _ => true,
        };
        if !shortest {
            return Err(Violation::LongLengthForm);
        }
        // Raw opcodes (RFC 6455, 5.2): 0x0 continuation, 0x1 text,
        // 0x2 binary, 0x8 close, 0x9 ping, 0xA pong; the rest is reserved.
        match first & 0x0F {
            0x0 if !self.fragmented => Err(Violation::StrayContinuation),
            0x1 | 0x2 if self.fragmented => Err(Violation::NestedMessage),
            0x0..=0x2 => {
                self.fragmented = !fin;
                Ok(())
            }
            0x8..=0xA if !fin => Err(Violation::FragmentedControl),
            0x8..=0xA if length > MAX_CONTROL_PAYLOAD => Err(Violation::LongControl),
            0x8 if length == 1 => Err(Violation::ShortClose),
            0x8..=0xA => Ok(()),
            reserved => Err(Violation::ReservedOpcode(reserved)),
        }
    }

    /// The payload has passed whole.
    fn end_frame(&mut self) {
        if let Some(payload) = self.payload.take() {
            self.closed |= payload.close && payload.trusted;
        }
    }

    /// tungstenite refused something the checker let through: the frame
    /// boundaries that follow are not to be trusted either.
    pub(super) fn distrust(&mut self) {
        self.fault.get_or_insert(Violation::Tungstenite);
    }
}

/// The length of a frame header that starts with `head`, as far as its
/// first two bytes tell (two until they are there).
fn header_len(head: &[u8]) -> usize {
    let Some(&second) = head.get(1) else {
        return 2;
    };
    let length = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + length + mask
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A client frame: `first` is FIN, RSV and opcode; masked with a fixed
    /// key unless `masked` is false.
    pub(in crate::transport::ws) fn client_frame(
        first: u8,
        payload: &[u8],
        masked: bool,
    ) -> Vec<u8> {
        const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut frame = vec![first];
        match payload.len() {
            len @ 0..=125 => frame.push(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&KEY);
            frame.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
        } else {
            frame.extend_from_slice(payload);
        }
        frame
    }

    pub(in crate::transport::ws) fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        client_frame(first, payload, true)
    }

    pub(in crate::transport::ws) fn close_with(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        masked(0x88, &payload)
    }

    /// Frame sequences, each ending in one violation, and where it is found:
    /// the last header byte, or the second byte of a close code.
    fn violations() -> Vec<(&'static str, Vec<u8>, Violation, usize)> {
        let hello = masked(0x81, b"hello");
        let head = |frame: &[u8]| frame.len() - 1;
        let with_hello = |frame: Vec<u8>, at: usize| {
            let mut bytes = hello.clone();
            let offset = bytes.len();
            bytes.extend(frame);
            (bytes, offset + at)
        };
        let mut cases = Vec::new();
        let mut case = |name, frame: Vec<u8>, violation, at: usize| {
            let (bytes, at) = with_hello(frame, at);
            cases.push((name, bytes, violation, at));
        };
        let unmasked = client_frame(0x81, b"hi", false);
        case("unmasked", unmasked, Violation::Unmasked, 1);
        for (name, first) in [("rsv1", 0xC1), ("rsv2", 0xA1), ("rsv3", 0x91)] {
            case(name, masked(first, b"x"), Violation::ReservedBits, 5);
        }
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            case(
                "reserved opcode",
                masked(0x80 | op, b""),
                Violation::ReservedOpcode(op),
                5,
            );
        }
        case(
            "stray continuation",
            masked(0x80, b"x"),
            Violation::StrayContinuation,
            5,
        );
        let mut nested = masked(0x01, b"part");
        let at = nested.len() + 5;
        nested.extend(masked(0x81, b"new"));
        case("nested message", nested, Violation::NestedMessage, at);
        let mut nested_binary = masked(0x02, b"part");
        nested_binary.extend(masked(0x00, b"more"));
        let at = nested_binary.len() + 5;
        nested_binary.extend(masked(0x82, b"new"));
        case("nested binary", nested_binary, Violation::NestedMessage, at);
        case(
            "fragmented ping",
            masked(0x09, b""),
            Violation::FragmentedControl,
            5,
        );
        case(
            "fragmented close",
            masked(0x08, b""),
            Violation::FragmentedControl,
            5,
        );
        let long_ping = masked(0x89, &[0; 126]);
        case(
            "126-byte ping",
            long_ping.clone(),
            Violation::LongControl,
            7,
        );
        let huge_pong = masked(0x8A, &[0; 70_000]);
        case("70000-byte pong", huge_pong, Violation::LongControl, 13);
        case(
            "1-byte close",
            masked(0x88, b"\x03"),
            Violation::ShortClose,
            5,
        );
        let mut top_bit = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        top_bit.extend([1, 2, 3, 4]);
        case(
            "64-bit length top bit",
            top_bit.clone(),
            Violation::LengthTopBit,
            head(&top_bit),
        );
        let mut long_16 = vec![0x82, 0xFE, 0, 5];
        long_16.extend([1, 2, 3, 4]);
        case(
            "16-bit length of 5",
            long_16.clone(),
            Violation::LongLengthForm,
            head(&long_16),
        );
        let mut long_64 = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        long_64.extend([1, 2, 3, 4]);
        case(
            "64-bit length of 65535",
            long_64.clone(),
            Violation::LongLengthForm,
            head(&long_64),
        );
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            case(
                "close code",
                close_with(code, b"bye"),
                Violation::CloseCode(code),
                7,
            );
        }
        cases
    }

    #[test]
    fn the_checker_finds_each_violation_where_it_becomes_certain() {
        for (name, bytes, violation, at) in violations() {
            let mut check = FrameCheck::default();
            assert_eq!(check.feed(&bytes), Some(at), "{name}");
            assert_eq!(check.fault, Some(violation), "{name}");

            // Byte by byte, as a slow peer sends it: the same verdict at the
            // same place.
            let mut check = FrameCheck::default();
            let found: Vec<usize> = bytes
                .iter()
                .enumerate()
                .filter_map(|(i, b)| check.feed(&[*b]).map(|_| i))
                .collect();
            assert_eq!(found, [at], "{name}, byte by byte");
            assert_eq!(check.fault, Some(violation), "{name}, byte by byte");
        }
    }

    #[test]
    fn the_checker_lets_every_valid_frame_through() {
        let mut bytes = Vec::new();
        bytes.extend(masked(0x81, b"hello"));
        bytes.extend(masked(0x82, &[0xff; 300]));
        bytes.extend(masked(0x81, &[b'x'; 70_000]));
        // A fragmented message with control frames between its fragments.
        bytes.extend(masked(0x01, b"one "));
        bytes.extend(masked(0x89, b"ping"));
        bytes.extend(masked(0x00, b"two "));
        bytes.extend(masked(0x8A, &[0; 125]));
        bytes.extend(masked(0x80, b"three"));
        bytes.extend(masked(0x81, b""));
        bytes.extend(masked(0x89, b""));
        for chunk in [1, 2, 3, 7, 13, 4096, bytes.len()] {
            let mut check = FrameCheck::default();
            for part in bytes.chunks(chunk) {
                assert_eq!(check.feed(part), None, "chunks of {chunk}");
            }
            assert_eq!(check.fault, None);
            assert!(!check.closed);
            assert!(!check.fragmented);
        }
    }

    #[test]
    fn every_close_code_that_may_be_sent_passes_and_ends_the_input() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1013, 1014, 3000, 4999,
        ] {
            let mut check = FrameCheck::default();
            let close = close_with(code, b"bye");
            assert_eq!(check.feed(&close), None, "{code}");
            assert!(check.closed, "{code}");
        }
        let mut check = FrameCheck::default();
        assert_eq!(check.feed(&masked(0x88, b"")), None, "no code at all");
        assert!(check.closed);
        // A close whose reason is not UTF-8 is tungstenite's to refuse,
        // with 1007.
        let mut check = FrameCheck::default();
        assert_eq!(check.feed(&close_with(1000, b"\xff\xfe")), None);
        assert!(check.closed);
    }

    #[test]
    fn after_a_violation_nothing_counts_as_the_peers_close() {
        let mut check = FrameCheck::default();
        let mut bytes = client_frame(0x81, b"hi", false);
        bytes.extend(close_with(1000, b""));
        assert_eq!(check.feed(&bytes), Some(1));
        assert!(!check.closed, "a close after garbage may be garbage too");

        // A close frame with a bad code is still the peer's close.
        let mut check = FrameCheck::default();
        assert!(check.feed(&close_with(1004, b"")).is_some());
        assert!(check.closed);
    }

    proptest::proptest! {
        /// Whatever a peer sends, in whatever pieces, the checker neither
        /// panics nor changes its verdict with the way the bytes are cut.
        #[test]
        fn the_checker_survives_any_input_cut_anywhere(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            frames in proptest::collection::vec(
                (proptest::prelude::any::<u8>(), 0usize..200, proptest::bool::weighted(0.95)),
                0..12,
            ),
            cuts in proptest::collection::vec(1usize..40, 1..40),
        ) {
            // Random frames (any first byte, mostly masked) reach deep into
            // the checker's states; the junk after them anything else.
            let mut bytes = Vec::new();
            for (first, len, is_masked) in frames {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                bytes.extend(client_frame(first, &payload, is_masked));
            }
            bytes.extend(junk);
            let mut whole = FrameCheck::default();
            let at_once = whole.feed(&bytes);
            let mut pieces = FrameCheck::default();
            let mut found = None;
            let mut rest = &bytes[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, later) = rest.split_at((*cut).min(rest.len()));
                let offset = bytes.len() - rest.len();
                if let Some(at) = pieces.feed(piece) {
                    found = Some(offset + at);
                }
                rest = later;
            }
            proptest::prop_assert_eq!(at_once, found);
            proptest::prop_assert_eq!(whole.fault, pieces.fault);
            proptest::prop_assert_eq!(whole.closed, pieces.closed);
        }
    }
}
