//! What one receiver counted: deliveries, loss, reordering, latency.
//!
//! A receiver knows which senders to expect (a contiguous range of sender
//! ids, those of its room) and keeps one [`SeqTracker`] per sender. Payloads
//! from outside that range are counted as unexpected rather than trusted.

use crate::latency::Recorder;
use crate::seq::SeqTracker;
use crate::stamp::Stamp;

/// Bytes of the first error line kept for the report.
const ERROR_KEEP: usize = 120;

/// One receiver's counters.
#[derive(Debug)]
pub struct Tally {
    /// Payloads from expected senders.
    pub delivered: u64,
    /// Lines or payloads that were not from an expected sender.
    pub unexpected: u64,
    /// `ERROR` lines and NATS `-ERR` frames.
    pub errors: u64,
    /// The first of those, for the report.
    pub first_error: Option<String>,
    /// The id of sender 0 of `seqs`.
    first_sender: u32,
    /// One tracker per expected sender.
    seqs: Vec<SeqTracker>,
    /// Where latencies go; `None` when the run does not measure them.
    latency: Option<Recorder>,
}

impl Tally {
    /// A tally expecting `senders` senders from id `first_sender` on.
    pub fn new(first_sender: u32, senders: u32, latency: Option<Recorder>) -> Tally {
        Tally {
            delivered: 0,
            unexpected: 0,
            errors: 0,
            first_error: None,
            first_sender,
            seqs: vec![SeqTracker::default(); senders as usize],
            latency,
        }
    }

    /// Counts a message text received at `now` (generator clock).
    pub fn payload(&mut self, text: &[u8], now: u64) {
        let Some(stamp) = Stamp::parse(text) else {
            self.unexpected += 1;
            return;
        };
        let slot = stamp.sender.wrapping_sub(self.first_sender) as usize;
        let Some(tracker) = self.seqs.get_mut(slot) else {
            self.unexpected += 1;
            return;
        };
        tracker.observe(stamp.seq);
        self.delivered += 1;
        if let Some(latency) = &mut self.latency {
            latency.record(now.saturating_sub(stamp.nanos));
        }
    }

    /// Counts an error line from the server.
    pub fn error(&mut self, text: &[u8]) {
        self.errors += 1;
        if self.first_error.is_none() {
            let kept = &text[..text.len().min(ERROR_KEEP)];
            self.first_error = Some(String::from_utf8_lossy(kept).into_owned());
        }
    }

    /// Messages lost, given how many each expected sender sent.
    pub fn lost(&self, sent: &[u64]) -> u64 {
        self.seqs
            .iter()
            .zip(sent)
            .map(|(t, &sent)| t.lost(sent))
            .sum()
    }

    /// Messages that arrived out of order.
    pub fn reordered(&self) -> u64 {
        self.seqs.iter().map(SeqTracker::reordered).sum()
    }

    /// Flushes buffered latencies (also done on drop).
    pub fn flush(&mut self) {
        if let Some(latency) = &mut self.latency {
            latency.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Latencies;

    fn payload(sender: u32, seq: u64, nanos: u64) -> Vec<u8> {
        let mut out = Vec::new();
        Stamp { sender, seq, nanos }.write(32, &mut out);
        out
    }

    #[test]
    fn counts_per_sender_loss_and_reorder() {
        let latencies = Latencies::new();
        let mut t = Tally::new(10, 2, Some(latencies.recorder(0)));
        for (sender, seq) in [(10, 0), (11, 0), (10, 2), (10, 1), (11, 1)] {
            t.payload(&payload(sender, seq, 100), 1_100);
        }
        t.payload(&payload(12, 0, 0), 0);
        t.payload(b"not a payload", 0);
        assert_eq!(t.delivered, 5);
        assert_eq!(t.unexpected, 2);
        assert_eq!(t.reordered(), 1);
        assert_eq!(t.lost(&[3, 3]), 1);
        t.flush();
        let merged = latencies.merged();
        assert_eq!(merged.len(), 5);
        assert_eq!(merged.max(), 1000);
    }

    #[test]
    fn keeps_the_first_error() {
        let mut t = Tally::new(0, 1, None);
        t.error(b"too slow");
        t.error(b"other");
        assert_eq!((t.errors, t.first_error.as_deref()), (2, Some("too slow")));
    }
}
