//! The in-flight window of a room: "max rate" without measuring queues.
//!
//! Senders of a room may have at most `window` messages that some receiver
//! of the room has not yet received. Each receiver publishes its count after
//! every read batch; a sender claims credit against the slowest receiver.
//! Finding the slowest costs a scan of the room, so the sender remembers
//! which receiver it was and rescans only when that one has moved. A blocked
//! sender is woken by any receiver's progress (a wake-up then costs one
//! comparison); waking it only for the remembered slowest receiver was
//! measured to leave it asleep for whole recheck periods.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A receiver's count that means "gone": it no longer holds senders back.
pub const GONE: u64 = u64::MAX;

/// How long a blocked sender sleeps before looking again without a wake-up:
/// a safety net against a lost wake-up, not the normal path.
const RECHECK: Duration = Duration::from_millis(50);

/// A receiver's count on its own cache line, so receivers on different
/// threads do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

/// One room's window.
#[derive(Debug)]
pub struct Flow {
    /// Most messages in flight to any receiver.
    window: u64,
    /// Messages senders have claimed (sent or about to be).
    claimed: AtomicU64,
    /// Messages each receiver has received from this room's senders.
    received: Box<[Slot]>,
    /// The receiver last found slowest.
    slowest: AtomicUsize,
    /// Its count at that time, the room's floor.
    floor: AtomicU64,
    /// Senders blocked and wanting a wake-up on progress.
    waiting: AtomicUsize,
    /// Wakes the blocked senders.
    wake: Notify,
}

impl Flow {
    /// A window of `window` messages over `receivers` receivers.
    pub fn new(receivers: usize, window: u64) -> Flow {
        Flow {
            window: window.max(1),
            claimed: AtomicU64::new(0),
            received: (0..receivers).map(|_| Slot::default()).collect(),
            slowest: AtomicUsize::new(0),
            floor: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    /// The number of receivers.
    pub fn receivers(&self) -> usize {
        self.received.len()
    }

    /// Publishes receiver `i`'s count (or [`GONE`]).
    pub fn record(&self, i: usize, received: u64) {
        self.received[i].0.store(received, Ordering::Release);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.wake.notify_waiters();
        }
    }

    /// Receiver `i`'s published count.
    pub fn received(&self, i: usize) -> u64 {
        self.received[i].0.load(Ordering::Acquire)
    }

    /// The lowest count of a present receiver; rescans the room only when
    /// the remembered slowest receiver has moved.
    fn floor(&self) -> u64 {
        let floor = self.floor.load(Ordering::Acquire);
        let slowest = self.slowest.load(Ordering::Relaxed);
        if self
            .received
            .get(slowest)
            .map(|s| s.0.load(Ordering::Acquire))
            == Some(floor)
        {
            return floor;
        }
        let (index, min) = self
            .received
            .iter()
            .map(|s| s.0.load(Ordering::Acquire))
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((0, GONE));
        self.slowest.store(index, Ordering::Relaxed);
        self.floor.store(min, Ordering::Release);
        min
    }

    /// Claims between `least` and `most` messages of credit, waiting until at
    /// least `least` fit in the window. Returns 0 once `stop` is cancelled.
    pub async fn claim(&self, least: u64, most: u64, stop: &CancellationToken) -> u64 {
        let least = least.clamp(1, self.window);
        let most = most.max(least);
        loop {
            if stop.is_cancelled() {
                return 0;
            }
            if let Some(granted) = self.try_claim(least, most) {
                return granted;
            }
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if self.room_for() < least {
                tokio::select! {
                    biased;
                    () = &mut woken => {}
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Free room in the window now.
    fn room_for(&self) -> u64 {
        let limit = self.floor().saturating_add(self.window);
        limit.saturating_sub(self.claimed.load(Ordering::Acquire))
    }

    fn try_claim(&self, least: u64, most: u64) -> Option<u64> {
        loop {
            let claimed = self.claimed.load(Ordering::Acquire);
            let room = self
                .floor()
                .saturating_add(self.window)
                .saturating_sub(claimed);
            if room < least {
                return None;
            }
            let granted = room.min(most);
            if self
                .claimed
                .compare_exchange(
                    claimed,
                    claimed + granted,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Some(granted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn sender_waits_for_the_slowest_receiver() {
        let flow = Arc::new(Flow::new(3, 10));
        let stop = CancellationToken::new();
        assert_eq!(flow.claim(1, 100, &stop).await, 10);
        for i in 0..3 {
            flow.record(i, 8);
        }
        flow.record(1, 4);
        // Receiver 1 is 6 behind: only 4 more fit.
        assert_eq!(flow.claim(1, 100, &stop).await, 4);
        let waiter = {
            let flow = flow.clone();
            let stop = stop.clone();
            tokio::spawn(async move { flow.claim(3, 100, &stop).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        flow.record(1, 7);
        assert_eq!(waiter.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn gone_receivers_do_not_block() {
        let flow = Flow::new(2, 5);
        let stop = CancellationToken::new();
        assert_eq!(flow.claim(5, 5, &stop).await, 5);
        flow.record(0, GONE);
        flow.record(1, 5);
        assert_eq!(flow.claim(5, 5, &stop).await, 5);
    }

    #[tokio::test]
    async fn stop_ends_a_blocked_claim() {
        let flow = Flow::new(1, 1);
        let stop = CancellationToken::new();
        assert_eq!(flow.claim(1, 1, &stop).await, 1);
        stop.cancel();
        assert_eq!(flow.claim(1, 1, &stop).await, 0);
    }
}
