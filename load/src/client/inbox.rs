//! What a connection does with each line or frame it receives.
//!
//! Payloads go to the connection's [`Tally`]; a join confirmation, a NATS
//! `PONG` or `PING`, an error and a watched user's departure update small
//! flags that the connection's loop acts on after the batch.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::chat::{ChatLine, classify};
use crate::protocol::nats::Frame;
use crate::tally::Tally;

/// Records when a given user is first seen leaving (the slow reader being
/// dropped), as seen by any member of its room.
#[derive(Debug)]
pub struct LeftWatch {
    /// The user to watch for.
    name: Vec<u8>,
    /// Generator clock at the first sighting; 0 until then.
    seen_at: AtomicU64,
}

impl LeftWatch {
    /// Watches for `name`'s `has left` line.
    pub fn new(name: &str) -> LeftWatch {
        LeftWatch {
            name: name.as_bytes().to_vec(),
            seen_at: AtomicU64::new(0),
        }
    }

    /// When the user was first seen leaving (generator clock), if at all.
    pub fn seen_at(&self) -> Option<u64> {
        Some(self.seen_at.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    fn saw(&self, now: u64) {
        let _ = self
            .seen_at
            .compare_exchange(0, now.max(1), Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A connection's receiving state.
#[derive(Debug)]
pub struct Inbox {
    /// The chat user name whose `has joined` confirms our JOIN.
    user: Vec<u8>,
    /// Our JOIN was confirmed.
    pub joined: bool,
    /// NATS `PING`s not yet answered.
    pub pongs_due: u32,
    /// NATS `PONG`s received: the end of the subscribe handshake.
    pub pongs_seen: u32,
    /// Deliveries, loss, reordering, latency.
    pub tally: Tally,
    /// A user whose departure this connection reports.
    pub watch: Option<std::sync::Arc<LeftWatch>>,
}

impl Inbox {
    /// An inbox for chat user `user` (empty for NATS).
    pub fn new(user: &str, tally: Tally) -> Inbox {
        Inbox {
            user: user.as_bytes().to_vec(),
            joined: false,
            pongs_due: 0,
            pongs_seen: 0,
            tally,
            watch: None,
        }
    }

    /// Handles one chat line received at `now`.
    pub fn line(&mut self, line: &[u8], now: u64) {
        match classify(line) {
            ChatLine::Message { text, .. } => self.tally.payload(text, now),
            ChatLine::Joined(user) => {
                if user == self.user.as_slice() {
                    self.joined = true;
                }
            }
            ChatLine::Left(user) => {
                if let Some(watch) = &self.watch {
                    if user == watch.name.as_slice() {
                        watch.saw(now);
                    }
                }
            }
            ChatLine::Error(reason) => self.tally.error(reason),
            ChatLine::Other => {}
        }
    }

    /// Handles one NATS frame received at `now`.
    pub fn frame(&mut self, frame: Frame<'_>, now: u64) {
        match frame {
            Frame::Msg { payload, .. } => self.tally.payload(payload, now),
            Frame::Ping => self.pongs_due += 1,
            Frame::Pong => self.pongs_seen += 1,
            Frame::Err(reason) => self.tally.error(reason),
            Frame::Ok | Frame::Info(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn join_confirmation_is_our_own_only() {
        let mut inbox = Inbox::new("u1", Tally::new(0, 1, None));
        inbox.line(b"u10 has joined", 5);
        assert!(!inbox.joined);
        inbox.line(b"u1 has joined", 5);
        assert!(inbox.joined);
    }

    #[test]
    fn watched_departure_keeps_the_first_time() {
        let watch = Arc::new(LeftWatch::new("slow"));
        let mut inbox = Inbox::new("u1", Tally::new(0, 1, None));
        inbox.watch = Some(watch.clone());
        inbox.line(b"other has left", 3);
        assert_eq!(watch.seen_at(), None);
        inbox.line(b"slow has left", 7);
        inbox.line(b"slow has left", 9);
        assert_eq!(watch.seen_at(), Some(7));
    }

    #[test]
    fn nats_control_frames_update_flags() {
        let mut inbox = Inbox::new("", Tally::new(0, 1, None));
        inbox.frame(Frame::Ping, 0);
        inbox.frame(Frame::Pong, 0);
        inbox.frame(Frame::Err(b"'Slow Consumer'"), 0);
        assert_eq!(
            (inbox.pongs_due, inbox.pongs_seen, inbox.tally.errors),
            (1, 1, 1)
        );
    }
}
