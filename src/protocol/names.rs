//! Room and user names: 1 to 20 characters from `A-Z a-z 0-9 _ - . #`.
//!
//! A [`Name`] can only be built valid, lives inline (no allocation, `Copy`)
//! and is cheap to hash, since names are map keys on every join and `/msg`.
//!
//! User names in a room are compared by their look-alike [`Name::key`], so
//! nobody can join as `aIice` beside `alice` and pass for her.

use std::fmt;

/// Longest room or user name, in characters (all of them ASCII).
pub const MAX_NAME: usize = 20;

/// What a valid name is made of, for error messages and help text.
pub const NAME_RULES: &str = "1-20 characters from A-Z a-z 0-9 _ - . #";

/// A valid room or user name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME],
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'#')
}

impl Name {
    /// Validates `text` as a name.
    pub fn parse(text: &str) -> Option<Name> {
        let raw = text.as_bytes();
        if raw.is_empty() || raw.len() > MAX_NAME || !raw.iter().all(|&b| allowed(b)) {
            return None;
        }
        let mut bytes = [0; MAX_NAME];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Name {
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// The name's look-alike key (PROTOCOL.md, "Before joining"): lower
    /// case, then `0` as `o`, `1` and `i` as `l`, `rn` as `m` and `vv` as
    /// `w`. Two user names with the same key cannot be in one room, so
    /// `Alice`, `aIice`, `a1ice` and `ALICE` are one name. The key is itself
    /// a valid name, never longer than the name.
    pub fn key(&self) -> Name {
        let mut folded = Name {
            len: 0,
            bytes: [0; MAX_NAME],
        };
        let mut rest = &self.bytes[..self.len as usize];
        while let Some((&first, tail)) = rest.split_first() {
            let next = tail.first().map(u8::to_ascii_lowercase);
            let (out, used) = match (first.to_ascii_lowercase(), next) {
                (b'r', Some(b'n')) => (b'm', 2),
                (b'v', Some(b'v')) => (b'w', 2),
                (b'0', _) => (b'o', 1),
                (b'1' | b'i', _) => (b'l', 1),
                (other, _) => (other, 1),
            };
            folded.bytes[folded.len as usize] = out;
            folded.len += 1;
            rest = &rest[used..];
        }
        folded
    }

    /// Whether this user name is refused whatever the room: `ERROR` and its
    /// look-alikes, since `ERROR has joined` would read as an error line.
    pub fn is_reserved(&self) -> bool {
        self.key().as_str() == "error"
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A room name; case-sensitive (`Lobby` and `lobby` are two rooms).
pub type RoomName = Name;

/// A user name; shown as written, unique per room among its look-alikes.
pub type UserName = Name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert_eq!(Name::parse("a-Z_0.9#").unwrap().as_str(), "a-Z_0.9#");
        assert!(Name::parse(&"x".repeat(20)).is_some());
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", &"x".repeat(21), "a b", "é", "a/b", "a:b", "a\u{0}"] {
            assert!(Name::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn look_alikes_share_a_key() {
        let key = |s: &str| Name::parse(s).unwrap().key();
        for alike in ["Alice", "aIice", "a1ice", "ALICE", "AL1CE"] {
            assert_eq!(key(alike), key("alice"), "{alike}");
        }
        assert_eq!(key("rnoon"), key("m0on"));
        assert_eq!(key("VVendy"), key("wendy"));
        assert_ne!(key("bob"), key("b0bby"));
        assert_eq!(key("vvv").as_str(), "wv");
    }

    #[test]
    fn error_and_its_look_alikes_are_reserved() {
        for reserved in ["ERROR", "error", "ERR0R", "Error"] {
            assert!(Name::parse(reserved).unwrap().is_reserved(), "{reserved}");
        }
        assert!(!Name::parse("errors").unwrap().is_reserved());
    }

    #[test]
    fn key_folds_case() {
        assert_eq!(
            Name::parse("Bob").unwrap().key(),
            Name::parse("bOB").unwrap().key()
        );
        assert_ne!(Name::parse("Bob").unwrap(), Name::parse("bob").unwrap());
    }
}
