//! The payload every measured message carries: `<sender>:<seq>:<nanos>:<padding>`.
//!
//! Sender, sequence number and send time travel inside the message text, so a
//! receiver on any transport measures end-to-end latency and checks
//! per-sender order without a side channel. Decimal digits and `x` padding
//! keep it printable on a telnet screen and valid UTF-8 for WebSocket text.
//! Encoding appends to a caller's buffer and decoding borrows, so neither
//! allocates.

/// The byte that pads a payload to its requested size.
pub const PAD: u8 = b'x';

/// Longest stamp: three `u64` in decimal and three colons. A payload shorter
/// than its stamp is sent at the stamp's length.
pub const MAX_STAMP: usize = 3 * 20 + 3;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which sender wrote it: unique within a run.
    pub sender: u32,
    /// The sender's count of messages before this one.
    pub seq: u64,
    /// Send time on the generator's clock ([`crate::clock`]).
    pub nanos: u64,
}

impl Stamp {
    /// Appends the payload, padded to `size` bytes when the stamp is shorter.
    pub fn write(&self, size: usize, out: &mut Vec<u8>) {
        let start = out.len();
        push_decimal(out, u64::from(self.sender));
        out.push(b':');
        push_decimal(out, self.seq);
        out.push(b':');
        push_decimal(out, self.nanos);
        out.push(b':');
        if out.len() - start < size {
            out.resize(start + size, PAD);
        }
    }

    /// Bytes of the payload [`Stamp::write`] appends for `size`.
    pub fn payload_len(&self, size: usize) -> usize {
        let stamp = decimal_len(u64::from(self.sender))
            + decimal_len(self.seq)
            + decimal_len(self.nanos)
            + 3;
        stamp.max(size)
    }

    /// Reads the stamp at the start of a message text; `None` when the text
    /// is not a payload of ours.
    pub fn parse(text: &[u8]) -> Option<Stamp> {
        let (sender, rest) = take_number(text)?;
        let (seq, rest) = take_number(rest)?;
        let (nanos, _) = take_number(rest)?;
        Some(Stamp {
            sender: u32::try_from(sender).ok()?,
            seq,
            nanos,
        })
    }
}

/// Parses decimal digits up to a `:`, returning the number and what follows.
fn take_number(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            }
            b':' if i > 0 => return Some((value, &s[i + 1..])),
            _ => return None,
        }
    }
    None
}

/// Digits of `value` in decimal.
fn decimal_len(value: u64) -> usize {
    value
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1)
}

/// Appends `value` in decimal without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_is_padded_to_size() {
        let stamp = Stamp {
            sender: 7,
            seq: 12345,
            nanos: 987_654_321,
        };
        let mut out = b"prefix".to_vec();
        stamp.write(64, &mut out);
        assert_eq!(out.len(), 6 + 64);
        assert!(out[6..].starts_with(b"7:12345:987654321:xx"));
        assert_eq!(Stamp::parse(&out[6..]), Some(stamp));
        assert_eq!(stamp.payload_len(64), 64);
        assert_eq!(stamp.payload_len(3), "7:12345:987654321:".len());
    }

    #[test]
    fn short_size_keeps_the_whole_stamp() {
        let stamp = Stamp {
            sender: 1,
            seq: 2,
            nanos: 3,
        };
        let mut out = Vec::new();
        stamp.write(1, &mut out);
        assert_eq!(out, b"1:2:3:");
        assert_eq!(Stamp::parse(&out), Some(stamp));
    }

    #[test]
    fn extreme_values_round_trip() {
        let stamp = Stamp {
            sender: u32::MAX,
            seq: u64::MAX,
            nanos: 0,
        };
        let mut out = Vec::new();
        stamp.write(0, &mut out);
        assert!(out.len() <= MAX_STAMP);
        assert_eq!(Stamp::parse(&out), Some(stamp));
    }

    #[test]
    fn other_texts_are_not_payloads() {
        for text in [
            &b""[..],
            b"hello",
            b"1:2:3",
            b":1:2:3:",
            b"1::2:3:",
            b"1:2:x:",
            b"99999999999:1:1:",
            b"1:99999999999999999999999:1:",
        ] {
            assert_eq!(
                Stamp::parse(text),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
