//! Loss and reordering of one sender's messages as one receiver sees them.
//!
//! Each sender numbers its messages from 0. A receiver keeps, per sender, the
//! next number it expects and how many it got: a number below the expected
//! one arrived after a later message (reordered); at the end, what was sent
//! but not received is lost. Two counters per sender, no bitmap, so a
//! receiver of many senders stays small.

/// One sender's stream at one receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// One past the highest sequence number seen.
    next: u64,
    /// Messages received, in order or not.
    received: u64,
    /// Messages that arrived after a higher-numbered one.
    reordered: u64,
}

impl SeqTracker {
    /// Records the arrival of message `seq`.
    pub fn observe(&mut self, seq: u64) {
        self.received += 1;
        if seq >= self.next {
            self.next = seq + 1;
        } else {
            self.reordered += 1;
        }
    }

    /// Messages received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Messages that arrived out of order.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Messages missing once the sender has sent `sent` in all.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    #[test]
    fn in_order_stream_has_no_loss_or_reorder() {
        let t = feed(&[0, 1, 2, 3]);
        assert_eq!((t.lost(4), t.reordered()), (0, 0));
    }

    #[test]
    fn gap_in_the_middle_is_loss() {
        let t = feed(&[0, 1, 3, 4]);
        assert_eq!((t.lost(5), t.reordered()), (1, 0));
    }

    #[test]
    fn missing_tail_is_loss() {
        let t = feed(&[0, 1]);
        assert_eq!(t.lost(5), 3);
    }

    #[test]
    fn late_message_is_reordered_not_lost() {
        let t = feed(&[0, 2, 1, 3]);
        assert_eq!((t.lost(4), t.reordered()), (0, 1));
    }

    #[test]
    fn nothing_received_loses_everything() {
        assert_eq!(SeqTracker::default().lost(3), 3);
    }
}
