//! What each room remembers: its last message lines, for `/history`.
//!
//! A room's log keeps the text of its last `--history` message lines
//! (`<user>: <text>` and `* <user> <text>`, without the line end), each
//! with the time it was said and an id. The text of all of a log's lines
//! lives in one ring of bytes; each line costs two bytes more (its length)
//! and each burst of lines said together one `Run` (24 bytes: its time
//! and its place in the order of all bursts), so a kept line costs its own
//! bytes and little else. `--history-bytes` counts the text only, as
//! PROTOCOL.md says; what a line costs beyond it is measured in
//! BENCHMARKS.md (under 1.5 times the text for 64-byte lines).
//! Lines are copied in: keeping the shared buffer a burst was broadcast in
//! would hold a whole burst, its reference count and a pointer per line for
//! every line kept, twice a short line's own size.
//!
//! Logs are apart from the hub's rooms so that one outlives its room for
//! `--history-ttl`: an emptied room hands its log back ([`History::close`])
//! and a room made under that name within the time takes it up again.
//!
//! # Ids
//!
//! A line's id is `<boot>-<log>-<seq>` in hex: the server's start, the
//! log's number since then, and the line's number in that log. An id from
//! before a restart, from a log that expired, or from another room names
//! another log, so it can never be taken for a current line's; within a
//! log, the lines' numbers are consecutive, so the line after any id is
//! found without a search.
//!
//! # Locks
//!
//! Each log has its own lock, taken under its room's lock when a line is
//! kept, so that a log's order is its room's. The index of logs is locked
//! only when a room is made or removed, and to find the oldest lines when
//! all history together is over `--history-bytes`. Nothing here takes a
//! room's lock, and the index lock is never taken under a log's.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::protocol::command::HistoryAsk as Ask;
use crate::protocol::names::RoomName;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = u64;

/// What history keeps; the defaults are PROTOCOL.md's.
#[derive(Debug, Clone, Copy)]
pub struct HistorySettings {
    /// Lines kept per room; 0 turns history off.
    pub lines: usize,
    /// Milliseconds a room's history outlives the room; 0: it goes with
    /// the room.
    pub ttl: Millis,
    /// Bytes of line text kept in all rooms together, at least 1.
    pub bytes: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            lines: 100,
            ttl: 86_400_000,
            bytes: 64 << 20,
        }
    }
}

/// Every room's history.
#[derive(Debug)]
pub struct History {
    settings: HistorySettings,
    /// Tells the time: history is kept by the server's clock, which the
    /// core does not read itself (it builds for targets without one).
    clock: fn() -> Millis,
    /// Tells this server's life from its earlier ones in ids.
    boot: u64,
    index: Mutex<Index>,
    /// Bytes of line text in all logs.
    bytes: AtomicUsize,
    /// The next log's number.
    next_log: AtomicU64,
    /// The next burst's place in the order of all bursts.
    next_run: AtomicU64,
    /// Taken by whoever brings all history back under its byte cap, so
    /// that two senders do not both evict.
    evicting: Mutex<()>,
}

#[derive(Debug, Default)]
struct Index {
    logs: HashMap<RoomName, Arc<RoomLog>>,
    /// Logs of removed rooms, by when they expire.
    orphans: BTreeMap<(Millis, u64), RoomName>,
}

/// One room's history.
#[derive(Debug)]
pub struct RoomLog {
    /// This log's number in this server's life.
    number: u64,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The number of the oldest line kept (or of the next line, if none).
    first: u64,
    /// Every kept line's text, oldest first, back to back.
    text: VecDeque<u8>,
    /// Every kept line's length, oldest first.
    lines: VecDeque<u16>,
    /// The bursts the kept lines came in, oldest first.
    runs: VecDeque<Run>,
    /// Rooms that hold this log; when the last lets go, it starts to
    /// expire.
    holders: usize,
    /// When it expires, if no room holds it.
    expires: Option<Millis>,
}

/// Lines kept together: one burst of one room.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Its place among all bursts kept, in every room: what "oldest"
    /// means when all history is over its byte cap.
    order: u64,
    /// When the server received it.
    at: Millis,
    /// How many of its lines are still kept.
    lines: u32,
}

/// When a burst of lines was kept, and the number of its first line in its
/// log: the lines' ids follow from it ([`History::id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When the server received the lines.
    pub at: Millis,
    /// The log's number.
    log: u64,
    /// The first line's number in the log; the others follow.
    first: u64,
}

/// Where a burst stands in the order every node of a cluster shares (its
/// rooms stream), which gives its lines the ids every node uses; see the
/// cluster's `history` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterStamp {
    /// The order's own epoch (the rooms stream's creation time, in
    /// nanoseconds): a stream made anew starts its sequences over.
    pub epoch: u64,
    /// The burst's sequence in it.
    pub seq: u64,
    /// When it was received, in milliseconds since the Unix epoch.
    pub at: Millis,
}

impl ClusterStamp {
    /// The id of the burst's `i`th line: `<epoch>-<seq>-<i>` in hex.
    pub fn id(&self, i: usize) -> String {
        format!("{:x}-{:x}-{i:x}", self.epoch, self.seq)
    }

    /// The epoch, sequence and line an id names; `None` for anything else.
    pub fn parse_id(id: &str) -> Option<(u64, u64, usize)> {
        let mut parts = id.split('-');
        let mut next = || u64::from_str_radix(parts.next()?, 16).ok();
        let (epoch, seq, i) = (next()?, next()?, next()?);
        if parts.next().is_some() {
            return None;
        }
        Some((epoch, seq, usize::try_from(i).ok()?))
    }
}

/// One kept line, as `/history` hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When the server received it.
    pub at: Millis,
    /// Its id, opaque to clients.
    pub id: String,
    /// The room line, without its line end.
    pub text: Vec<u8>,
}

/// What a history request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The lines, oldest first.
    pub lines: Vec<Line>,
    /// False when lines the request covers are no longer kept (or the id
    /// it named is not known here).
    pub complete: bool,
}

/// Longest line a log can hold: the length goes in 16 bits. Room lines are
/// far shorter (a cleaned line of at most `MAX_LINE` bytes with a name).
const MAX_KEPT_LINE: usize = u16::MAX as usize - 1;

/// The length recorded for a line not kept because it alone is larger than
/// `--history-bytes`: it keeps its number (so ids follow one another) but no
/// text, and `/history` leaves it out.
const NOT_KEPT: u16 = u16::MAX;

impl History {
    /// History with `settings`, telling the time with `clock`; `boot`
    /// must differ from every earlier life of this server (its start time
    /// in nanoseconds will do).
    pub fn new(settings: HistorySettings, clock: fn() -> Millis, boot: u64) -> Self {
        History {
            settings: HistorySettings {
                bytes: settings.bytes.max(1),
                ..settings
            },
            clock,
            boot,
            index: Mutex::default(),
            bytes: AtomicUsize::new(0),
            next_log: AtomicU64::new(0),
            next_run: AtomicU64::new(0),
            evicting: Mutex::new(()),
        }
    }

    /// History turned off, with a clock that always says 0: for a hub
    /// without a server around it (tests, embedding).
    pub fn off() -> Self {
        History::new(
            HistorySettings {
                lines: 0,
                ..HistorySettings::default()
            },
            || 0,
            0,
        )
    }

    /// Whether rooms keep anything (`--history` is not 0).
    pub fn is_on(&self) -> bool {
        self.settings.lines > 0
    }

    /// The time, by history's clock.
    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    /// The settings, as given.
    pub fn settings(&self) -> HistorySettings {
        self.settings
    }

    /// Bytes of line text kept in all rooms.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The log of `room`, for a room made under that name: the one it had,
    /// if that has not expired, or a new one.
    pub fn open(&self, room: RoomName) -> Arc<RoomLog> {
        let now = (self.clock)();
        let mut index = self.lock_index();
        self.expire(&mut index, now);
        let log = index
            .logs
            .entry(room)
            .or_insert_with(|| {
                Arc::new(RoomLog {
                    number: self.next_log.fetch_add(1, Ordering::Relaxed),
                    kept: Mutex::default(),
                })
            })
            .clone();
        let mut kept = log.lock();
        kept.holders += 1;
        if let Some(expires) = kept.expires.take() {
            index.orphans.remove(&(expires, log.number));
        }
        drop(kept);
        log
    }

    /// A room that held `log` is gone: once no room holds it, the log
    /// expires after `--history-ttl`.
    pub fn close(&self, room: RoomName, log: &Arc<RoomLog>) {
        let now = (self.clock)();
        let mut index = self.lock_index();
        let mut kept = log.lock();
        kept.holders = kept.holders.saturating_sub(1);
        if kept.holders == 0 {
            if kept.lines.is_empty() {
                // Nothing to remember: it goes now, so that rooms made and
                // left without a word cost nothing for a day.
                drop(kept);
                if index.logs.get(&room).is_some_and(|l| Arc::ptr_eq(l, log)) {
                    index.logs.remove(&room);
                }
                self.expire(&mut index, now);
                return;
            }
            let expires = now.saturating_add(self.settings.ttl);
            kept.expires = Some(expires);
            index.orphans.insert((expires, log.number), room);
        }
        drop(kept);
        self.expire(&mut index, now);
    }

    /// Drops the logs whose time ran out.
    fn expire(&self, index: &mut Index, now: Millis) {
        while let Some(entry) = index.orphans.first_entry() {
            let (expires, _) = *entry.key();
            if expires > now {
                break;
            }
            let room = entry.remove();
            if let Some(log) = index.logs.remove(&room) {
                let mut kept = log.lock();
                let freed = kept.text.len();
                kept.text = VecDeque::new();
                kept.lines = VecDeque::new();
                kept.runs = VecDeque::new();
                drop(kept);
                self.bytes.fetch_sub(freed, Ordering::Relaxed);
            }
        }
    }

    /// Keeps the message lines of `burst` (whole lines, each ending in
    /// `\r\n`), said now, in `log`, and tells when and under which ids.
    /// Called under the room's lock, so that the log's order is the room's.
    /// With history off, nothing is kept but the lines still get ids.
    pub fn keep(&self, log: &RoomLog, burst: &[u8]) -> Stamp {
        let now = (self.clock)();
        let mut kept = log.lock();
        // A clock set back does not reorder a log.
        let at = kept.runs.back().map_or(now, |last| now.max(last.at));
        let stamp = Stamp {
            at,
            log: log.number,
            first: kept.first + kept.lines.len() as u64,
        };
        let lines = crate::protocol::reply::texts_of(burst);
        if !self.is_on() {
            kept.first += lines.count() as u64;
            return stamp;
        }
        kept.runs.push_back(Run {
            order: self.next_run.fetch_add(1, Ordering::Relaxed),
            at,
            lines: 0,
        });
        let mut added = 0usize;
        let mut dropped = 0usize;
        for line in lines {
            // Every line gets its number, so that ids follow one another;
            // one larger than all history may hold is not kept (keeping it
            // would push every other room's lines out, and then itself).
            if line.len() > self.settings.bytes || line.len() > MAX_KEPT_LINE {
                kept.lines.push_back(NOT_KEPT);
            } else {
                kept.text.extend(line);
                kept.lines.push_back(line.len() as u16);
                added += line.len();
            }
            if let Some(run) = kept.runs.back_mut() {
                run.lines += 1;
            }
            // Dropped after the new line is in, so that the run being
            // filled always holds a line.
            if kept.lines.len() > self.settings.lines {
                dropped += kept.drop_oldest();
            }
        }
        // One update of the shared count per burst (it is the one write
        // every room's senders share), made before the log is let go, so
        // that `trim` never takes away lines not counted yet.
        if added >= dropped {
            self.bytes.fetch_add(added - dropped, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(dropped - added, Ordering::Relaxed);
        }
        drop(kept);
        stamp
    }

    /// The id of the `i`th line of a burst kept with `stamp`.
    pub fn id(&self, stamp: Stamp, i: usize) -> String {
        self.format_id(stamp.log, stamp.first + i as u64)
    }

    /// Brings all history back under `--history-bytes`, dropping the oldest
    /// lines of any room first. Called after [`History::keep`], outside the
    /// room's lock.
    pub fn trim(&self) {
        if self.bytes() <= self.settings.bytes {
            return;
        }
        let _one = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        if self.bytes() <= self.settings.bytes {
            return;
        }
        // Down to a little below the cap (1/64 of it), so that a server at
        // its cap looks for the oldest lines once per many bursts, not once
        // per burst.
        let target = self.settings.bytes - self.settings.bytes / 64;
        let logs: Vec<Arc<RoomLog>> = self.lock_index().logs.values().cloned().collect();
        // Oldest first across logs: a heap of each log's oldest line.
        let mut heap: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = logs
            .iter()
            .enumerate()
            .filter_map(|(i, log)| Some(std::cmp::Reverse((log.lock().oldest()?, i))))
            .collect();
        while self.bytes() > target {
            let Some(std::cmp::Reverse((_, i))) = heap.pop() else {
                break;
            };
            let mut kept = logs[i].lock();
            let freed = kept.drop_oldest();
            let next = kept.oldest();
            drop(kept);
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            if let Some(at) = next {
                heap.push(std::cmp::Reverse((at, i)));
            }
        }
    }

    /// The lines of `log` that `ask` wants, at most `--history` of them.
    pub fn read(&self, log: &RoomLog, ask: Ask<'_>) -> Page {
        let kept = log.lock();
        let next = kept.first + kept.lines.len() as u64;
        let most = self.settings.lines;
        let (from, mut complete) = match ask {
            Ask::Last(n) => (next.saturating_sub(n.min(most) as u64), true),
            Ask::Since(id) => match self.parse_id(id, log.number) {
                // Every line after it is still here.
                Some(seq) if seq < next && seq + 1 >= kept.first => {
                    (max(seq + 1, next.saturating_sub(most as u64)), true)
                }
                _ => (next.saturating_sub(most as u64), false),
            },
        };
        let from = from.max(kept.first);
        let skip = (from - kept.first) as usize;
        let mut offset: usize = kept.lines.iter().take(skip).map(|&l| text_len(l)).sum();
        let mut lines = Vec::with_capacity(kept.lines.len() - skip);
        // Each line's time is its run's.
        let mut times = kept
            .runs
            .iter()
            .flat_map(|run| std::iter::repeat_n(run.at, run.lines as usize))
            .skip(skip);
        for (i, &len) in kept.lines.iter().enumerate().skip(skip) {
            let at = times.next().unwrap_or_default();
            if len == NOT_KEPT {
                // Said, but too large to keep: missing from the answer.
                complete = false;
                continue;
            }
            let len = usize::from(len);
            let text: Vec<u8> = kept.text.range(offset..offset + len).copied().collect();
            offset += len;
            lines.push(Line {
                at,
                id: self.format_id(log.number, kept.first + i as u64),
                text,
            });
        }
        Page { lines, complete }
    }

    fn format_id(&self, log: u64, seq: u64) -> String {
        format!("{:x}-{log:x}-{seq:x}", self.boot)
    }

    /// The line number in log `log` that `id` names, if it is one of this
    /// life's ids for that log.
    fn parse_id(&self, id: &str, log: u64) -> Option<u64> {
        let mut parts = id.split('-');
        let mut next = || u64::from_str_radix(parts.next()?, 16).ok();
        let (boot, number, seq) = (next()?, next()?, next()?);
        (boot == self.boot && number == log && parts.next().is_none()).then_some(seq)
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bytes of text a line's recorded length stands for.
fn text_len(len: u16) -> usize {
    if len == NOT_KEPT { 0 } else { usize::from(len) }
}

fn max(a: u64, b: u64) -> u64 {
    a.max(b)
}

impl RoomLog {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kept {
    /// Drops the oldest line; returns its length (0 if there was none).
    fn drop_oldest(&mut self) -> usize {
        let Some(len) = self.lines.pop_front() else {
            return 0;
        };
        let len = text_len(len);
        self.text.drain(..len);
        self.first += 1;
        if let Some(run) = self.runs.front_mut() {
            run.lines -= 1;
            if run.lines == 0 {
                self.runs.pop_front();
            }
        }
        if self.lines.is_empty() {
            // Give the memory back, not only the bytes.
            self.text = VecDeque::new();
            self.lines = VecDeque::new();
        }
        len
    }

    /// The place of the oldest kept line's burst among all bursts.
    fn oldest(&self) -> Option<u64> {
        self.runs
            .iter()
            .find(|run| run.lines > 0)
            .map(|run| run.order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    static NOW: AtomicU64 = AtomicU64::new(1_000_000);

    fn now() -> Millis {
        NOW.load(Ordering::Relaxed)
    }

    fn history(lines: usize, ttl: Millis, bytes: usize) -> History {
        History::new(HistorySettings { lines, ttl, bytes }, now, 7)
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).unwrap()
    }

    fn texts(page: &Page) -> Vec<String> {
        page.lines
            .iter()
            .map(|l| String::from_utf8(l.text.clone()).unwrap())
            .collect()
    }

    #[test]
    fn keeps_the_last_lines_with_consecutive_ids() {
        let h = history(3, 0, 1 << 20);
        let log = h.open(room("r"));
        h.keep(&log, b"a: 1\r\na: 2\r\n");
        h.keep(&log, b"* a 3\r\na: 4\r\n");
        let page = h.read(&log, Ask::Last(10));
        assert_eq!(texts(&page), ["a: 2", "* a 3", "a: 4"]);
        assert!(page.complete);
        assert_eq!(h.bytes(), 4 + 5 + 4);
        let ids: Vec<&str> = page.lines.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["7-0-1", "7-0-2", "7-0-3"]);
        assert_eq!(texts(&h.read(&log, Ask::Last(1))), ["a: 4"]);
    }

    #[test]
    fn since_an_id_is_complete_only_while_every_later_line_is_kept() {
        let h = history(3, 0, 1 << 20);
        let log = h.open(room("r"));
        h.keep(&log, b"a: 1\r\na: 2\r\n");
        let first = h.read(&log, Ask::Last(2)).lines[0].id.clone();
        let page = h.read(&log, Ask::Since(&first));
        assert_eq!((texts(&page), page.complete), (vec!["a: 2".into()], true));
        h.keep(&log, b"a: 3\r\na: 4\r\n");
        // Line 1 itself is gone, but everything after it is still here.
        let page = h.read(&log, Ask::Since(&first));
        assert_eq!(texts(&page), ["a: 2", "a: 3", "a: 4"]);
        assert!(page.complete);
        h.keep(&log, b"a: 5\r\n");
        let page = h.read(&log, Ask::Since(&first));
        assert_eq!(texts(&page), ["a: 3", "a: 4", "a: 5"]);
        assert!(!page.complete, "line 2 was dropped");
        let last = page.lines[2].id.clone();
        let page = h.read(&log, Ask::Since(&last));
        assert!(page.lines.is_empty() && page.complete);
        for unknown in ["", "x", "8-0-1", "7-1-1", "7-0-99", "7-0-1-2"] {
            let page = h.read(&log, Ask::Since(unknown));
            assert_eq!(texts(&page), ["a: 3", "a: 4", "a: 5"], "{unknown:?}");
            assert!(!page.complete, "{unknown:?}");
        }
    }

    #[test]
    fn the_byte_cap_drops_the_oldest_lines_of_any_room() {
        let h = history(100, 0, 16);
        let (a, b) = (h.open(room("a")), h.open(room("b")));
        h.keep(&a, b"a: 1\r\n");
        NOW.fetch_add(1, Ordering::Relaxed);
        h.keep(&b, b"b: 1\r\n");
        NOW.fetch_add(1, Ordering::Relaxed);
        h.keep(&a, b"a: 2\r\n");
        NOW.fetch_add(1, Ordering::Relaxed);
        h.keep(&b, b"b: 2\r\nb: 3\r\n");
        h.trim();
        assert_eq!(h.bytes(), 16);
        assert_eq!(texts(&h.read(&a, Ask::Last(9))), ["a: 2"]);
        assert_eq!(texts(&h.read(&b, Ask::Last(9))), ["b: 1", "b: 2", "b: 3"]);
    }

    #[test]
    fn one_line_per_room_and_ties_in_time_keep_the_order_said() {
        let h = history(1, 0, 7);
        let (a, b) = (h.open(room("a")), h.open(room("b")));
        h.keep(&a, b"a: 1\r\na: 2\r\n");
        assert_eq!(texts(&h.read(&a, Ask::Last(5))), ["a: 2"]);
        // Same millisecond: the order said decides which is older.
        h.keep(&b, b"b: 1\r\n");
        h.keep(&a, b"a: 3\r\n");
        h.trim();
        assert_eq!(h.bytes(), 4);
        assert!(h.read(&b, Ask::Last(5)).lines.is_empty());
        assert_eq!(texts(&h.read(&a, Ask::Last(5))), ["a: 3"]);
        let ids: Vec<String> = h
            .read(&a, Ask::Last(5))
            .lines
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids, ["7-0-2"]);
    }

    #[test]
    fn a_line_larger_than_all_history_is_left_out_and_pushes_nothing_out() {
        let h = history(10, 0, 8);
        let (a, b) = (h.open(room("a")), h.open(room("b")));
        h.keep(&a, b"a: 1\r\n");
        h.keep(&b, b"b: 123456789\r\nb: 2\r\n");
        h.trim();
        assert_eq!(texts(&h.read(&a, Ask::Last(9))), ["a: 1"]);
        let page = h.read(&b, Ask::Last(9));
        assert_eq!(texts(&page), ["b: 2"]);
        assert!(!page.complete, "the answer says a line is missing");
        // Its number is taken all the same: ids still follow one another.
        assert_eq!(page.lines[0].id, "7-1-1");
        assert_eq!(h.bytes(), 8);
    }

    #[test]
    fn a_log_outlives_its_room_for_the_ttl_only() {
        let h = history(10, 1000, 1 << 20);
        let log = h.open(room("r"));
        h.keep(&log, b"a: 1\r\n");
        h.close(room("r"), &log);
        let again = h.open(room("r"));
        assert!(Arc::ptr_eq(&log, &again));
        h.close(room("r"), &again);
        NOW.fetch_add(1001, Ordering::Relaxed);
        let fresh = h.open(room("r"));
        assert!(!Arc::ptr_eq(&log, &fresh));
        assert!(h.read(&fresh, Ask::Last(10)).lines.is_empty());
        assert_eq!(h.bytes(), 0);
        // An id of the expired log is not taken for one of the new one's.
        h.keep(&fresh, b"a: 2\r\n");
        let old = format!("7-{:x}-0", log.number);
        assert!(!h.read(&fresh, Ask::Since(&old)).complete);
    }
}
