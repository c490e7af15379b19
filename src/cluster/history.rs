//! History in a cluster: every room's message lines kept in NATS
//! JetStream, so that every node answers `/history` with the same lines and
//! ids, and a client resumes on whichever node it reaches.
//!
//! # Where the lines are
//!
//! The stream [`HISTORY_STREAM`], on file storage (a nats-server restart
//! keeps it), holds one message per burst of message lines on
//! `chatgate.history.<room hex>`, with at most `--history` messages per
//! room (so at least `--history` lines) and `--history-bytes` in all,
//! oldest first. A room's history is purged `--history-ttl` after the room
//! is left empty on every node ([`Expiry`]). Every node that reads the
//! room copies each burst there as it comes through the rooms stream, with
//! the place the rooms stream gave it as its message id, so the stream keeps
//! one copy (JetStream drops a repeated message id) however many nodes read
//! the room, and the burst is kept as long as any node still reads it. A
//! line's id is
//! that place, `<rooms stream epoch>-<sequence>-<line in the burst>` in hex,
//! the same on every node, and what orders the history (two nodes' copies
//! may reach the history stream in either order). The epoch is the rooms
//! stream's creation time: a rooms stream made anew (after a nats-server
//! restart, its sequences start over) has another, so no id is ever taken
//! for another line.
//!
//! A node reads a room's history with an ordered consumer of the room's
//! subject, at most `--history` messages, and keeps no copy.
//!
//! # What can be missing
//!
//! A burst that every node reading its room lost the link for, between
//! showing it and copying it, is shown to their members but is not in the
//! history. Lines said on a node while its link is down are not kept in
//! NATS.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::stream::{self, Stream as JsStream};
use async_nats::jetstream::{self};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::timeout;

use super::subject;
use crate::history::{ClusterStamp, HistorySettings, Line, Page};
use crate::protocol::command::HistoryAsk;
use crate::protocol::names::RoomName;
use crate::protocol::reply::texts_of;

/// The stream of every room's history.
pub(super) const HISTORY_STREAM: &str = "CHATGATE_HISTORY";

/// Longest wait for a room's history; past it the answer is that the
/// cluster is busy.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Header of a history message: its place in the rooms stream,
/// `<epoch>-<sequence>` in hex.
const PLACE: &str = "Chatgate-Place";
/// Header of a history message: when the rooms stream received it, in
/// milliseconds since the Unix epoch.
const TIME: &str = "Chatgate-Time";

/// When rooms this node has had members in were left empty on every node,
/// so that their history goes `--history-ttl` later (PROTOCOL.md: it
/// outlives the room for that long). Every node that had members in a
/// room watches it, and purging is the same whoever does it; a room no
/// node watches any more (its nodes restarted) keeps its history until the
/// byte cap pushes it out.
#[derive(Debug, Default)]
pub(super) struct Expiry {
    /// Rooms watched, with when each was found empty everywhere.
    rooms: std::collections::HashMap<RoomName, Option<std::time::Instant>>,
}

impl Expiry {
    /// This node has (had) members in `room`.
    pub(super) fn watch(&mut self, room: RoomName) {
        self.rooms.entry(room).or_insert(None);
    }

    /// Looks at every watched room, told by `occupied` whether anyone is in
    /// it on any node; returns the rooms whose history is due to go, and
    /// forgets them.
    pub(super) fn due(
        &mut self,
        now: std::time::Instant,
        ttl: Duration,
        occupied: impl Fn(RoomName) -> bool,
    ) -> Vec<RoomName> {
        let mut due = Vec::new();
        self.rooms.retain(|room, empty_since| {
            if occupied(*room) {
                *empty_since = None;
                return true;
            }
            let since = *empty_since.get_or_insert(now);
            if now.duration_since(since) >= ttl {
                due.push(*room);
                return false;
            }
            true
        });
        due
    }
}

/// Purges `room`'s history from `stream`.
pub(super) async fn purge(stream: JsStream, room: RoomName) {
    let purge = stream.purge().filter(subject::history(room));
    if let Err(e) = timeout(READ_TIMEOUT, purge).await.unwrap_or_else(|_| {
        Err(async_nats::jetstream::stream::PurgeError::new(
            async_nats::jetstream::stream::PurgeErrorKind::TimedOut,
        ))
    }) {
        tracing::debug!(%room, error = %e, "could not purge a room's history");
    }
}

/// The history stream's settings, from the node's history flags.
pub(super) fn config(settings: HistorySettings) -> stream::Config {
    stream::Config {
        name: HISTORY_STREAM.to_owned(),
        description: Some("chatgate: what each room said".to_owned()),
        subjects: vec![subject::HISTORY.to_owned()],
        storage: stream::StorageType::File,
        max_messages_per_subject: i64::try_from(settings.lines.max(1)).unwrap_or(i64::MAX),
        // No age limit: a room with members keeps its history however old;
        // an emptied room's goes after `--history-ttl` (see [`Expiry`]).
        max_bytes: i64::try_from(settings.bytes).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

/// The headers of a burst's history copy.
pub(super) fn headers(stamp: ClusterStamp) -> HeaderMap {
    let place = format!("{:x}-{:x}", stamp.epoch, stamp.seq);
    let mut headers = HeaderMap::new();
    // JetStream keeps one message per id within its duplicate window.
    headers.insert("Nats-Msg-Id", place.as_str());
    headers.insert(PLACE, place);
    headers.insert(TIME, stamp.at.to_string());
    headers
}

/// Reads `room`'s history from `stream` and answers `ask` with at most
/// `settings.lines` lines; `None` if the stream did not answer in time.
pub(super) async fn read(
    client: &async_nats::Client,
    stream: &JsStream,
    room: RoomName,
    ask: HistoryAsk<'_>,
    settings: HistorySettings,
) -> Option<Page> {
    let bursts = timeout(READ_TIMEOUT, bursts(client, stream, room))
        .await
        .ok()??;
    Some(answer(bursts, ask, settings.lines))
}

/// One kept burst: where it stands and when it was said, and its lines.
type Burst = (ClusterStamp, Bytes);

/// Every kept burst of `room`, in the rooms stream's order.
async fn bursts(
    client: &async_nats::Client,
    stream: &JsStream,
    room: RoomName,
) -> Option<Vec<Burst>> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: subject::history(room),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .ok()?;
    let mut left = consumer.cached_info().num_pending;
    let mut bursts = Vec::new();
    if left > 0 {
        let mut messages = consumer.messages().await.ok()?;
        while left > 0 {
            let message = messages.next().await?.ok()?;
            left = message.info().map_or(0, |info| info.pending);
            if let Some(burst) = parse(&message) {
                bursts.push(burst);
            }
        }
    }
    bursts.sort_by_key(|(stamp, _)| (stamp.epoch, stamp.seq));
    // Copies made after the duplicate window of the first one passed.
    bursts.dedup_by_key(|(stamp, _)| (stamp.epoch, stamp.seq));
    Some(bursts)
}

/// A history message as a burst; `None` if it was not written by a node.
fn parse(message: &jetstream::Message) -> Option<Burst> {
    let headers = message.headers.as_ref()?;
    let (epoch, seq) = headers.get(PLACE)?.as_str().split_once('-')?;
    let stamp = ClusterStamp {
        epoch: u64::from_str_radix(epoch, 16).ok()?,
        seq: u64::from_str_radix(seq, 16).ok()?,
        at: headers.get(TIME)?.as_str().parse().ok()?,
    };
    Some((stamp, message.payload.clone()))
}

/// The lines `ask` wants of `bursts` (in order), at most `most`.
fn answer(bursts: Vec<Burst>, ask: HistoryAsk<'_>, most: usize) -> Page {
    let mut lines: Vec<((u64, u64, usize), Line)> = Vec::new();
    for (stamp, burst) in &bursts {
        for (i, text) in texts_of(burst).enumerate() {
            lines.push((
                (stamp.epoch, stamp.seq, i),
                Line {
                    at: stamp.at,
                    id: stamp.id(i),
                    text: text.to_vec(),
                },
            ));
        }
    }
    let keep_last = |lines: Vec<((u64, u64, usize), Line)>, n: usize| -> Vec<Line> {
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).map(|(_, l)| l).collect()
    };
    let total = lines.len().min(most);
    match ask {
        HistoryAsk::Last(n) => Page {
            lines: keep_last(lines, n.min(most)),
            complete: true,
        },
        HistoryAsk::Since(id) => {
            let after = ClusterStamp::parse_id(id).and_then(|place| {
                lines
                    .iter()
                    .position(|(p, _)| *p == place)
                    .map(|at| lines.len() - at - 1)
            });
            match after {
                Some(after) if after <= most => Page {
                    lines: keep_last(lines, after),
                    complete: true,
                },
                _ => Page {
                    lines: keep_last(lines, total),
                    complete: false,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(seq: u64, text: &'static [u8]) -> Burst {
        let stamp = ClusterStamp {
            epoch: 9,
            seq,
            at: seq * 10,
        };
        (stamp, Bytes::from_static(text))
    }

    fn texts(page: &Page) -> Vec<String> {
        page.lines
            .iter()
            .map(|l| String::from_utf8(l.text.clone()).unwrap())
            .collect()
    }

    #[test]
    fn a_room_expires_only_after_being_empty_for_the_ttl() {
        let room = |s: &str| RoomName::parse(s).unwrap();
        let ttl = Duration::from_secs(10);
        let start = std::time::Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut expiry = Expiry::default();
        expiry.watch(room("a"));
        expiry.watch(room("b"));
        let occupied = |r: RoomName| r == room("b");
        assert!(expiry.due(at(0), ttl, occupied).is_empty());
        assert!(expiry.due(at(9), ttl, occupied).is_empty());
        // Someone came back to "a" meanwhile: the time starts over.
        assert!(expiry.due(at(9), ttl, |_| true).is_empty());
        assert!(expiry.due(at(18), ttl, occupied).is_empty());
        assert_eq!(expiry.due(at(28), ttl, occupied), [room("a")]);
        assert!(
            expiry.due(at(100), ttl, occupied).is_empty(),
            "forgotten once due"
        );
        assert!(expiry.due(at(100), Duration::ZERO, |_| false) == [room("b")]);
    }

    #[test]
    fn lines_and_ids_follow_the_rooms_stream() {
        let bursts = vec![burst(3, b"a: 1\r\na: 2\r\n"), burst(7, b"b: 3\r\n")];
        let page = answer(bursts.clone(), HistoryAsk::Last(2), 100);
        assert_eq!(texts(&page), ["a: 2", "b: 3"]);
        assert_eq!(page.lines[0].id, "9-3-1");
        assert_eq!(page.lines[1].at, 70);
        let page = answer(bursts.clone(), HistoryAsk::Since("9-3-0"), 100);
        assert_eq!(
            (texts(&page), page.complete),
            (vec!["a: 2".into(), "b: 3".into()], true)
        );
        let page = answer(bursts.clone(), HistoryAsk::Since("9-7-0"), 100);
        assert!(page.lines.is_empty() && page.complete);
        for unknown in ["8-3-0", "9-4-0", "nonsense", "9-3-0-1"] {
            let page = answer(bursts.clone(), HistoryAsk::Since(unknown), 100);
            assert_eq!(texts(&page), ["a: 1", "a: 2", "b: 3"], "{unknown}");
            assert!(!page.complete);
        }
        // More after the id than a room keeps: the last ones, incomplete.
        let page = answer(bursts, HistoryAsk::Since("9-3-0"), 1);
        assert_eq!((texts(&page), page.complete), (vec!["b: 3".into()], false));
    }
}
