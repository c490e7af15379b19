//! Names on the NATS side: subjects, presence keys and node ids.
//!
//! Room and user names may hold `.` and `#`, and `.` separates subject
//! tokens while `*` and `>` are wildcards. Each name is therefore written
//! as the lower-case hex of its bytes: one token of `0-9a-f` only, which no
//! name can turn into another name's token, a second token or a wildcard,
//! and which keeps `Lobby` and `lobby` apart. A 20-character name is a
//! 40-character token, well within NATS limits.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};

use crate::protocol::names::{Name, RoomName, UserName};

/// Every subject chatgate uses starts with this, so that chatgate can share
/// a NATS server with other applications.
const PREFIX: &str = "chatgate";

/// Every room's subject, as a filter.
pub(super) const ROOMS: &str = "chatgate.room.>";

/// Every room's history subject, as a filter.
pub(super) const HISTORY: &str = "chatgate.history.*";

/// The key-value bucket holding who is in which room, cluster-wide.
pub(super) const PRESENCE_BUCKET: &str = "chatgate_presence";

/// Where every node says it is alive.
pub(super) const HEARTBEAT: &str = "chatgate.nodes.alive";

/// Where node `node` sends the beats that time its own link; only it
/// listens.
pub(super) fn probe(node: &str) -> String {
    format!("{PREFIX}.nodes.probe.{node}")
}

/// The subject carrying `room`'s lines.
pub(super) fn room(room: RoomName) -> String {
    format!("{PREFIX}.room.{}", hex(room))
}

/// The subject keeping `room`'s history (see `history`).
pub(super) fn history(room: RoomName) -> String {
    format!("{PREFIX}.history.{}", hex(room))
}

/// The room whose history subject this is; `None` for any other subject.
pub(super) fn parse_history(subject: &str) -> Option<RoomName> {
    unhex(subject.strip_prefix("chatgate.history.")?)
}

/// The presence key of `user` in `room`: the user's look-alike key
/// ([`Name::key`]), so look-alike names are one name across nodes, as on
/// one node.
pub(super) fn presence_key(room: RoomName, user: UserName) -> String {
    format!("{}.{}", hex(room), hex(user.key()))
}

/// The room and user's look-alike key of a presence key.
pub(super) fn parse_presence_key(key: &str) -> Option<(RoomName, Name)> {
    let (room, user) = key.split_once('.')?;
    Some((unhex(room)?, unhex(user)?))
}

fn hex(name: Name) -> String {
    hex_text(name.as_str())
}

fn unhex(token: &str) -> Option<Name> {
    Name::parse(&unhex_text(token)?)
}

/// `text` as lower-case hex: a subject token or key that no text can
/// turn into a wildcard, a separator or a character NATS refuses.
pub(super) fn hex_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The text [`hex_text`] made `token` from; `None` if it is not such.
pub(super) fn unhex_text(token: &str) -> Option<String> {
    if token.len() % 2 != 0 || !token.is_ascii() {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// This process's id in the cluster: the node name and a random instance
/// number, so that a node restarted under the same name is a new node and
/// the old one's users are cleared like any dead node's.
pub(super) fn node_id(name: &str) -> String {
    format!("{name}.{:016x}", random())
}

/// Whether `id` is a node id as [`node_id`] makes them: a valid node name
/// (as `--node-name` requires), a dot, and 16 lower-case hex digits. Every
/// node id read from NATS is checked with this before it is used.
pub(super) fn is_node_id(id: &str) -> bool {
    id.rsplit_once('.').is_some_and(|(name, instance)| {
        crate::config::is_node_name(name)
            && instance.len() == 16
            && instance
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The default node name: the host name and a random suffix, so that two
/// nodes started alike on one host still differ.
pub(super) fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .take_while(|c| *c != '.')
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .take(40)
        .collect();
    let host = if host.is_empty() { "chatgate" } else { &host };
    format!("{host}-{:04x}", random() & 0xffff)
}

/// 64 random bits from the standard library's per-process random hash
/// keys; enough to tell processes apart, and no extra dependency.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn room_names_become_one_safe_token() {
        for name in ["a.b", "#", "..", "Lobby", "lobby", "x-_9"] {
            let subject = room(n(name));
            let token = subject.strip_prefix("chatgate.room.").unwrap();
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{subject}");
            assert_eq!(unhex(token), Some(n(name)));
        }
        assert_ne!(room(n("Lobby")), room(n("lobby")));
        assert_eq!(unhex("2"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn presence_keys_fold_the_user_name_only() {
        assert_eq!(
            presence_key(n("R"), n("Bob")),
            presence_key(n("R"), n("bOB"))
        );
        assert_ne!(
            presence_key(n("R"), n("bob")),
            presence_key(n("r"), n("bob"))
        );
        assert_eq!(
            parse_presence_key(&presence_key(n("a.b"), n("Bob"))),
            Some((n("a.b"), n("bob")))
        );
        assert_eq!(parse_presence_key("61"), None);
    }

    #[test]
    fn node_names_differ_per_process() {
        assert_ne!(node_id("a"), node_id("a"));
        assert!(is_node_id(&node_id("node-1")));
        for bad in [
            "a",
            "a.1",
            "a b.0123456789abcdef",
            ".0123456789abcdef",
            "a.0123456789ABCDEF",
        ] {
            assert!(!is_node_id(bad), "{bad}");
        }
        let name = default_node_name();
        assert!(name.len() <= crate::config::MAX_NODE_NAME);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        );
    }
}
