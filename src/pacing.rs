//! Write pacing: how long a connection that has just written waits before
//! it writes again.
//!
//! A write costs a syscall and the kernel's whole TCP path, several
//! microseconds, whether it carries one line or a hundred. While the
//! server has time to spare, every line goes out at once. Under a load that
//! would keep it busy writing one line at a time (a big room, a steady
//! stream of lines), that is the expensive way: each member gets a write
//! per line and the CPU goes to syscalls. So the server gathers instead: a
//! connection that has just written waits for the next beat of the pace,
//! and its next write carries everything that arrived meanwhile. The beats
//! are the same for every connection, so paced connections write together,
//! in one run of writes, rather than scattered: a peer reading many of
//! them (a proxy, a load generator) is woken once per beat, not once per
//! write, which costs both sides less.
//!
//! The pace follows how busy the runtime's workers are, sampled every
//! [`TICK`]. It is zero until they are busier than [`PACE_ON`] while
//! writes carry fewer than [`PACE_USEFUL_BELOW`] lines each; then the
//! [`Governor`] steers it so that they stay about [`PACE_TARGET`] busy,
//! never adding more than `--max-write-delay`. A server that is busy with
//! writes already carrying hundreds of lines (one sender blasting a room)
//! has nothing to gain from waiting, and a client that keeps a bounded
//! number of lines in flight would only see its rate fall, so such a load
//! does not start pacing. When the load goes, the
//! pace decays back to zero within a second, and a lone line is never
//! delayed on a server with time to spare.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the workers' load is sampled: often enough to follow a load
/// that changes within a second, rarely enough to cost nothing.
pub const TICK: Duration = Duration::from_millis(50);

/// Busy share of the workers above which pacing starts. Below it a server
/// writes every line at once; it is well above what a latency-sensitive
/// load (a room of a hundred at a thousand lines a second) needs.
pub const PACE_ON: f64 = 0.7;

/// Lines per write under which pacing pays off. Writes of one line to a
/// few dozen are dominated by the syscall; past this, gathering more saves
/// little.
pub const PACE_USEFUL_BELOW: f64 = 64.0;

/// Busy share the governor steers to while pacing: the rest is headroom
/// for bursts, new connections and everything else.
pub const PACE_TARGET: f64 = 0.3;

/// `--max-write-delay` by default, in milliseconds: the most pacing may
/// add to a line's delivery. Below what a person notices in a chat, and
/// enough to gather several lines per write even in a room of thousands
/// where each line is a few milliseconds from the next.
pub const DEFAULT_MAX_WRITE_DELAY_MS: u64 = 50;

/// Largest `--max-write-delay` accepted, in milliseconds: a second is
/// already more than anyone would want added to a chat line, and it keeps
/// any beat far inside the shutdown grace period.
pub const MAX_WRITE_DELAY_MS: u64 = 1000;

/// Smallest pace worth having: below it the timer costs more than the
/// writes it saves.
const MIN_PACE: Duration = Duration::from_millis(1);

/// The current pace, shared by every writer, and what the writers did.
#[derive(Debug)]
pub struct Pacer {
    pace_us: AtomicU64,
    /// Where the beats are counted from.
    epoch: Instant,
    /// Writes made and lines they carried, for the governor.
    writes: AtomicU64,
    lines: AtomicU64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            pace_us: AtomicU64::new(0),
            epoch: Instant::now(),
            writes: AtomicU64::new(0),
            lines: AtomicU64::new(0),
        }
    }
}

impl Pacer {
    /// Counts a write of `lines` lines.
    pub fn wrote(&self, lines: usize) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.lines.fetch_add(lines as u64, Ordering::Relaxed);
    }

    fn written(&self) -> (u64, u64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.lines.load(Ordering::Relaxed),
        )
    }

    /// The time between beats; `None` while the server has time to spare.
    pub fn pace(&self) -> Option<Duration> {
        match self.pace_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// When a writer that has just written may write again: the next beat
    /// after `now`, or at once (`None`) while the server is not pacing.
    pub fn next_beat(&self, now: Instant) -> Option<Instant> {
        let pace = self.pace()?.as_micros();
        let since = now.saturating_duration_since(self.epoch).as_micros();
        let beat = (since / pace + 1) * pace;
        Some(self.epoch + Duration::from_micros(u64::try_from(beat).ok()?))
    }

    fn set(&self, pace: Duration) {
        let us = u64::try_from(pace.as_micros()).unwrap_or(u64::MAX);
        self.pace_us.store(us, Ordering::Relaxed);
    }
}

/// Turns load samples into a pace; no clock, so it can be tested alone.
#[derive(Debug)]
pub struct Governor {
    pace: Duration,
    max: Duration,
}

impl Governor {
    /// A governor that never paces beyond `max` (zero: never paces).
    pub fn new(max: Duration) -> Self {
        Governor {
            pace: Duration::ZERO,
            max,
        }
    }

    /// The pace after a sample in which the workers were busy for `busy`
    /// (0 to 1) of the time and writes carried `per_write` lines on
    /// average.
    pub fn next(&mut self, busy: f64, per_write: f64) -> Duration {
        if self.max < MIN_PACE {
            return Duration::ZERO;
        }
        if self.pace.is_zero() {
            if busy > PACE_ON && per_write < PACE_USEFUL_BELOW {
                self.pace = MIN_PACE;
            }
        } else if busy > PACE_TARGET * 1.25 {
            self.pace = (self.pace * 3 / 2).max(self.pace + MIN_PACE).min(self.max);
        } else if busy < PACE_TARGET * 0.75 {
            self.pace = self.pace * 2 / 3;
            if self.pace < MIN_PACE {
                self.pace = Duration::ZERO;
            }
        }
        self.pace
    }
}

/// Samples the runtime's workers every [`TICK`] and sets the pace, until
/// shutdown.
pub async fn govern(pacer: Arc<Pacer>, max: Duration, shutdown: CancellationToken) {
    if max < MIN_PACE {
        return;
    }
    let metrics = Handle::current().metrics();
    let busy_total = || -> Duration {
        (0..metrics.num_workers())
            .map(|w| metrics.worker_total_busy_duration(w))
            .sum()
    };
    let mut governor = Governor::new(max);
    let mut ticks = interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = (Instant::now(), busy_total(), pacer.written());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Goodbyes go out at once.
                pacer.set(Duration::ZERO);
                return;
            }
            _ = ticks.tick() => {}
        }
        let now = (Instant::now(), busy_total(), pacer.written());
        let elapsed = now.0.duration_since(last.0).as_secs_f64() * metrics.num_workers() as f64;
        let busy = now.1.saturating_sub(last.1).as_secs_f64() / elapsed.max(f64::EPSILON);
        let writes = now.2.0.saturating_sub(last.2.0);
        let lines = now.2.1.saturating_sub(last.2.1);
        // No writes at all: nothing to gain either.
        let per_write = if writes == 0 {
            f64::INFINITY
        } else {
            lines as f64 / writes as f64
        };
        last = now;
        let before = pacer.pace();
        pacer.set(governor.next(busy, per_write));
        if pacer.pace() != before {
            debug!(busy, per_write, pace = ?pacer.pace(), "write pace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(20);

    #[test]
    fn a_server_with_time_to_spare_never_paces() {
        let mut g = Governor::new(MAX);
        for busy in [0.0, 0.3, 0.5, 0.69, 0.6, 0.1] {
            assert_eq!(g.next(busy, 1.0), Duration::ZERO, "at {busy}");
        }
    }

    #[test]
    fn a_server_busy_with_big_writes_does_not_start_pacing() {
        let mut g = Governor::new(MAX);
        for _ in 0..20 {
            assert_eq!(g.next(1.0, 500.0), Duration::ZERO);
        }
        assert_eq!(g.next(1.0, 7.0), MIN_PACE);
    }

    #[test]
    fn a_busy_server_paces_more_until_the_load_is_down_to_the_target() {
        let mut g = Governor::new(MAX);
        assert_eq!(g.next(0.95, 1.0), MIN_PACE);
        let mut last = MIN_PACE;
        for _ in 0..5 {
            let pace = g.next(0.9, 20.0);
            assert!(pace > last, "{pace:?} after {last:?}");
            last = pace;
        }
        // At the target the pace holds.
        assert_eq!(g.next(PACE_TARGET, 20.0), last);
        assert_eq!(g.next(PACE_TARGET * 1.1, 20.0), last);
        // It never passes the maximum.
        for _ in 0..50 {
            assert!(g.next(1.0, 20.0) <= MAX);
        }
        assert_eq!(g.next(1.0, 20.0), MAX);
    }

    #[test]
    fn pace_decays_to_zero_within_a_second_once_the_load_is_gone() {
        let mut g = Governor::new(MAX);
        g.next(1.0, 1.0);
        while g.next(1.0, 20.0) < MAX {}
        let ticks_per_second = (Duration::from_secs(1).as_millis() / TICK.as_millis()) as usize;
        let zero_after = (0..ticks_per_second).position(|_| g.next(0.05, 20.0).is_zero());
        assert!(zero_after.is_some(), "still pacing after a second");
        // And it stays off while the load is below the start threshold.
        assert_eq!(g.next(0.5, 1.0), Duration::ZERO);
    }

    #[test]
    fn a_zero_maximum_turns_pacing_off() {
        let mut g = Governor::new(Duration::ZERO);
        assert_eq!(g.next(1.0, 1.0), Duration::ZERO);
    }

    #[test]
    fn every_writer_waits_for_the_same_beat() {
        let pacer = Pacer::default();
        let start = pacer.epoch;
        assert_eq!(pacer.next_beat(start + Duration::from_millis(7)), None);
        pacer.set(Duration::from_millis(5));
        let beat = Some(start + Duration::from_millis(10));
        for after in [5, 6, 7, 9] {
            let now = start + Duration::from_millis(after);
            assert_eq!(pacer.next_beat(now), beat, "after {after} ms");
        }
        assert_eq!(
            pacer.next_beat(start + Duration::from_millis(10)),
            Some(start + Duration::from_millis(15))
        );
    }

    #[test]
    fn the_pacer_reports_what_the_governor_set() {
        let pacer = Pacer::default();
        assert_eq!(pacer.pace(), None);
        pacer.set(Duration::from_millis(3));
        assert_eq!(pacer.pace(), Some(Duration::from_millis(3)));
        pacer.set(Duration::ZERO);
        assert_eq!(pacer.pace(), None);
    }
}
