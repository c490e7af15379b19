//! What operators can do to other connections: ban addresses, kick, mute.
//!
//! Moderation owns three things, all without I/O so the core stays sans-IO:
//!
//! - the **ban list** ([`Bans`]): address prefixes and until when, which the
//!   listeners consult before spending anything on a new connection;
//! - the **live connections** ([`Moderation::register`]), so that a ban
//!   reaches those already connected from its prefix;
//! - through each connection's **standing** (see `standing`, kept in its
//!   outbox so a room member's can be reached from the room), its address,
//!   whether it is an operator, until when it is muted.
//!
//! Removing a user is done by the user's own session, not by the
//! operator's: the operator's session leaves an [`Eviction`] in the
//! target's outbox, which wakes the target's task; that task tells the
//! room (`*** bob was kicked by op`), sends the user its `ERROR` line and
//! closes, so the room's `bob has left` comes after the notice and no line
//! of the user's can come after either.
//!
//! Where bans are kept for good (a file on one node, a NATS bucket in a
//! cluster) is a [`BanStore`]'s business; the list here is what this node
//! applies.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::history::Millis;
use crate::outbox::Outbox;
use crate::standing::{Eviction, EvictionKind, with_reason};

/// Prefix length a single IPv6 address is banned by: one host usually owns
/// a whole /64 (RFC 4291 interface identifiers), as `limits` counts it.
pub const IPV6_HOST_PREFIX: u8 = 64;

/// Most bans held at once. Each costs a few hundred bytes here, a line in
/// the bans file or a key in the cluster's bucket, and a look at every
/// accepted connection.
pub const MAX_BANS: usize = 10_000;

/// Milliseconds in a minute, for ban and mute durations.
const MINUTE: Millis = 60_000;

/// What a ban covers: one IPv4 address, an IPv6 /64, or a CIDR prefix,
/// held as its network (host bits cleared). Ordered by address value,
/// IPv4 before IPv6, as `/bans` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BanTarget(IpNet);

impl BanTarget {
    /// An address (`203.0.113.7`, `2001:db8::1`) or CIDR prefix
    /// (`10.0.0.0/8`) as an operator writes it; `None` if it is neither.
    /// A single IPv6 address means its /64 and an IPv4-mapped IPv6
    /// address its IPv4 address.
    pub fn parse(s: &str) -> Option<BanTarget> {
        if let Ok(ip) = IpAddr::from_str(s) {
            return Some(BanTarget::of_peer(ip));
        }
        let net = IpNet::from_str(s).ok()?;
        let net = match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).ok()?)
                }
                _ => net,
            },
            IpNet::V4(_) => net,
        };
        Some(BanTarget(net.trunc()))
    }

    /// What banning the user at `ip` bans: the address, or its /64.
    pub fn of_peer(ip: IpAddr) -> BanTarget {
        let net = match unmapped(ip) {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
            IpAddr::V6(v6) => IpNet::V6(
                Ipv6Net::new(v6, IPV6_HOST_PREFIX)
                    .unwrap_or_else(|_| Ipv6Net::from(v6))
                    .trunc(),
            ),
        };
        BanTarget(net)
    }

    /// Whether a connection from `ip` falls under it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&unmapped(ip))
    }
}

impl fmt::Display for BanTarget {
    /// A single IPv4 address without its `/32`; anything else as
    /// `<network>/<length>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpNet::V4(v4) if v4.prefix_len() == 32 => write!(f, "{}", v4.addr()),
            net => write!(f, "{net}"),
        }
    }
}

impl Serialize for BanTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BanTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BanTarget::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an address or prefix: {s}")))
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; any other as itself.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// When it ends, in milliseconds since the Unix epoch; `None`: at
    /// `/unban`.
    pub until: Option<Millis>,
    /// The operator who made it, as `<op>` in PROTOCOL.md.
    pub by: String,
    /// Why, as the operator wrote it; empty when not given.
    pub reason: String,
}

impl Ban {
    /// A ban made at `now` for `minutes` (none: until lifted).
    pub fn new(now: Millis, minutes: Option<u64>, by: &str, reason: &str) -> Ban {
        Ban {
            until: minutes.map(|m| now.saturating_add(m.saturating_mul(MINUTE))),
            by: by.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Whether it still holds at `now`.
    pub fn holds(&self, now: Millis) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// When it ends as `/bans` shows it: `2026-11-29T18:44:19Z`, or
    /// `None` for a ban until lifted.
    pub fn ends(&self) -> Option<String> {
        self.until.map(crate::protocol::reply::utc_seconds)
    }

    /// What a new connection under it is told: `banned`, with `: <reason>`
    /// when one was given.
    pub fn refusal(&self) -> String {
        with_reason("banned".to_owned(), &self.reason)
    }
}

/// A change to the ban list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanChange {
    /// A ban was made, or replaced one on the same target.
    Added(BanTarget, Ban),
    /// A ban was lifted.
    Lifted(BanTarget),
}

/// Where bans are kept beyond this process: told of every change an
/// operator of this node makes, after it applies here.
pub trait BanStore: Send + Sync + fmt::Debug {
    /// Keep `change`. Must not block: the caller is a session.
    fn changed(&self, change: &BanChange);
}

/// The bans this node applies.
#[derive(Debug, Default)]
pub struct Bans {
    /// Read on every accepted connection while any ban exists; written
    /// when a ban is made or lifted, and when `/bans` drops expired ones.
    list: RwLock<BTreeMap<BanTarget, Ban>>,
    /// Whether `list` has anything, so accepting needs no lock when it is
    /// empty.
    any: AtomicBool,
}

impl Bans {
    /// The ban a connection from `ip` falls under at `now`, if any.
    pub fn find(&self, ip: IpAddr, now: Millis) -> Option<Ban> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(target, ban)| ban.holds(now) && target.contains(ip))
            .map(|(_, ban)| ban.clone())
    }

    /// The bans that hold at `now`, by address; expired ones are dropped.
    pub fn list(&self, now: Millis) -> Vec<(BanTarget, Ban)> {
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        list.retain(|_, ban| ban.holds(now));
        self.any.store(!list.is_empty(), Ordering::Release);
        list.iter().map(|(t, b)| (*t, b.clone())).collect()
    }

    /// Applies a change; returns whether it changed anything (an unban of
    /// what is not banned does not).
    pub fn apply(&self, change: &BanChange) -> bool {
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        let changed = match change {
            BanChange::Added(target, _) if list.len() >= MAX_BANS && !list.contains_key(target) => {
                false
            }
            BanChange::Added(target, ban) => {
                list.insert(*target, ban.clone()).as_ref() != Some(ban)
            }
            BanChange::Lifted(target) => list.remove(target).is_some(),
        };
        self.any.store(!list.is_empty(), Ordering::Release);
        changed
    }

    /// Whether a new ban of `target` would pass [`MAX_BANS`].
    pub fn is_full_for(&self, target: &BanTarget) -> bool {
        let list = self.list.read().unwrap_or_else(PoisonError::into_inner);
        list.len() >= MAX_BANS && !list.contains_key(target)
    }

    /// Whether `target` is banned at `now`.
    pub fn holds(&self, target: &BanTarget, now: Millis) -> bool {
        self.list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
            .is_some_and(|b| b.holds(now))
    }
}

/// An operator's action on a user connected to another node of a
/// cluster, carried to that node (see `cluster`), which carries it out
/// with [`Hub::carry_out`](crate::hub::Hub::carry_out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// What to do.
    pub action: Action,
    /// The operator's room, where the user is.
    pub room: String,
    /// The user, as the operator wrote it (matched as JOIN matches).
    pub user: String,
    /// The operator, as `<op>`.
    pub by: String,
    /// Why; empty when not given.
    #[serde(default)]
    pub reason: String,
    /// When a ban or mute ends, in milliseconds since the Unix epoch;
    /// `None`: when lifted.
    #[serde(default)]
    pub until: Option<Millis>,
}

/// What an [`Order`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `/kick`.
    Kick,
    /// `/ban` of a user by name.
    Ban,
    /// `/mute`.
    Mute,
    /// `/unmute`.
    Unmute,
}

/// What the node holding the user did with an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The user's name as joined.
    pub user: String,
    /// For a ban, what was banned.
    #[serde(default)]
    pub banned: Option<BanTarget>,
}

/// What operators did, counted for `/metrics`.
#[derive(Debug, Default)]
pub struct Tally {
    counts: [AtomicU64; Moderated::ALL.len()],
}

/// One kind of thing [`Tally`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderated {
    /// A user kicked.
    Kick,
    /// A ban made here.
    Ban,
    /// A ban lifted here.
    Unban,
    /// A user muted.
    Mute,
    /// A connection refused for its address's ban.
    Refused,
    /// `/oper` with the right credentials.
    OperGranted,
    /// `/oper` refused: wrong credentials, or too soon after the last try.
    OperRefused,
}

impl Moderated {
    /// Every kind, in the order counted.
    pub const ALL: [Moderated; 7] = [
        Moderated::Kick,
        Moderated::Ban,
        Moderated::Unban,
        Moderated::Mute,
        Moderated::Refused,
        Moderated::OperGranted,
        Moderated::OperRefused,
    ];

    /// Its label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Moderated::Kick => "kick",
            Moderated::Ban => "ban",
            Moderated::Unban => "unban",
            Moderated::Mute => "mute",
            Moderated::Refused => "refused_banned",
            Moderated::OperGranted => "oper_granted",
            Moderated::OperRefused => "oper_refused",
        }
    }
}

impl Tally {
    /// Counts one.
    pub fn count(&self, what: Moderated) {
        self.counts[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many so far.
    pub fn get(&self, what: Moderated) -> u64 {
        self.counts[what as usize].load(Ordering::Relaxed)
    }
}

/// The bans, the live connections they apply to, and where bans are kept.
#[derive(Debug, Default)]
pub struct Moderation {
    /// What operators did, for `/metrics`.
    pub tally: Tally,
    bans: Bans,
    /// Every live connection, by its outbox's address in memory.
    live: Mutex<HashMap<usize, Weak<Outbox>>>,
    /// Told of operators' changes, once the server sets it.
    store: OnceLock<Arc<dyn BanStore>>,
}

/// A connection's entry among the live ones; dropping it takes it out.
#[derive(Debug)]
pub struct Registered {
    moderation: Arc<Moderation>,
    key: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.moderation
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl Moderation {
    /// The ban list.
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    /// Sets where operators' ban changes are kept; the first call wins.
    pub fn keep_in(&self, store: Arc<dyn BanStore>) {
        let _ = self.store.set(store);
    }

    /// Counts `outbox` among the live connections until the returned
    /// value is dropped, so that bans reach it.
    pub fn register(self: &Arc<Self>, outbox: &Arc<Outbox>) -> Registered {
        let key = Arc::as_ptr(outbox) as usize;
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::downgrade(outbox));
        Registered {
            moderation: self.clone(),
            key,
        }
    }

    /// An operator here changed the list: apply it, remove the
    /// connections a new ban covers, and keep it. False, and nothing
    /// done, for a new ban past [`MAX_BANS`].
    #[must_use]
    pub fn change(&self, change: BanChange) -> bool {
        if let BanChange::Added(target, _) = &change {
            if self.bans.is_full_for(target) {
                return false;
            }
        }
        match &change {
            BanChange::Added(target, ban) => {
                tracing::info!(%target, by = %ban.by, reason = %ban.reason, until = ?ban.until, "ban");
            }
            BanChange::Lifted(target) => tracing::info!(%target, "unban"),
        }
        self.tally.count(match change {
            BanChange::Added(..) => Moderated::Ban,
            BanChange::Lifted(_) => Moderated::Unban,
        });
        self.apply(&change);
        if let Some(store) = self.store.get() {
            store.changed(&change);
        }
        true
    }

    /// Applies a change made elsewhere (another node, the file at start)
    /// and removes the connections a new ban covers; returns whether it
    /// changed anything.
    pub fn apply(&self, change: &BanChange) -> bool {
        let changed = self.bans.apply(change);
        if let BanChange::Added(target, ban) = change {
            self.evict_under(target, ban);
        }
        changed
    }

    /// Tells every live connection under `target`, operators apart, that
    /// it is banned.
    fn evict_under(&self, target: &BanTarget, ban: &Ban) {
        let outboxes: Vec<Arc<Outbox>> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .filter(|o| {
                let standing = o.standing();
                !standing.is_operator() && standing.addr().is_some_and(|ip| target.contains(ip))
            })
            .collect();
        for outbox in outboxes {
            outbox.evict(Eviction {
                kind: EvictionKind::Ban,
                by: ban.by.clone(),
                reason: ban.reason.clone(),
            });
        }
    }

    /// Every live connection's outbox.
    pub fn live_outboxes(&self) -> Vec<Arc<Outbox>> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Connections counted live, for tests and metrics.
    pub fn live(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> BanTarget {
        BanTarget::parse(s).unwrap()
    }

    #[test]
    fn targets_are_normalised_and_shown_as_operators_write_them() {
        assert_eq!(t("203.0.113.7").to_string(), "203.0.113.7");
        assert_eq!(t("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(t("2001:db8::1").to_string(), "2001:db8::/64");
        assert_eq!(t("2001:db8::1/48").to_string(), "2001:db8::/48");
        assert_eq!(t("::ffff:192.0.2.1").to_string(), "192.0.2.1");
        assert_eq!(t("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
        assert_eq!(BanTarget::parse("bob"), None);
        assert_eq!(BanTarget::parse("10.0.0.0/33"), None);
        assert_eq!(BanTarget::parse("[::1]"), None);
    }

    #[test]
    fn a_target_covers_its_prefix_and_mapped_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t("10.0.0.0/8").contains(ip("10.200.0.1")));
        assert!(!t("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(t("192.0.2.1").contains(ip("::ffff:192.0.2.1")));
        assert!(t("2001:db8::1").contains(ip("2001:db8::ffff")));
        assert!(!t("2001:db8::1").contains(ip("2001:db8:0:1::1")));
    }

    #[test]
    fn bans_list_ipv4_before_ipv6_by_value_and_expire() {
        let bans = Bans::default();
        for (s, until) in [
            ("2001:db8::", None),
            ("10.0.0.2", Some(50)),
            ("9.0.0.0/8", None),
            ("10.0.0.10", None),
        ] {
            bans.apply(&BanChange::Added(
                t(s),
                Ban {
                    until,
                    by: "op".into(),
                    reason: String::new(),
                },
            ));
        }
        let shown: Vec<String> = bans.list(0).iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(
            shown,
            ["9.0.0.0/8", "10.0.0.2", "10.0.0.10", "2001:db8::/64"]
        );
        let ip = "10.0.0.2".parse().unwrap();
        assert!(bans.find(ip, 49).is_some());
        assert!(bans.find(ip, 50).is_none());
        assert_eq!(bans.list(50).len(), 3);
        assert!(bans.apply(&BanChange::Lifted(t("9.1.2.3/8"))));
        assert!(!bans.apply(&BanChange::Lifted(t("9.0.0.0/8"))));
    }

    #[test]
    fn no_more_than_max_bans_are_held() {
        let moderation = Moderation::default();
        let ban = Ban::new(0, None, "op", "");
        for i in 0..MAX_BANS as u32 {
            let target = BanTarget::of_peer(std::net::Ipv4Addr::from(i).into());
            assert!(moderation.change(BanChange::Added(target, ban.clone())));
        }
        let one_more = BanTarget::parse("255.255.255.255").unwrap();
        assert!(!moderation.change(BanChange::Added(one_more, ban.clone())));
        // A ban already held can still be changed, and one lifted makes room.
        let first = BanTarget::parse("0.0.0.0").unwrap();
        assert!(moderation.change(BanChange::Added(first, Ban::new(0, Some(5), "op", ""))));
        assert!(moderation.change(BanChange::Lifted(first)));
        assert!(moderation.change(BanChange::Added(one_more, ban)));
        assert_eq!(moderation.bans().list(0).len(), MAX_BANS);
    }
}
