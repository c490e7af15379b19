//! The per-connection rate limit: a token bucket that starts full.
//!
//! It is fed the current time by the caller, so it needs no clock of its own.

use std::time::{Duration, Instant};

/// How often a rate-limited sender is told so; more would itself be spam.
pub const RATE_ERROR_INTERVAL: Duration = Duration::from_secs(1);

/// Lines per second with a burst of twice that, as the protocol says.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens held at once.
    burst: f64,
    /// Tokens now (as of `last`).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
    /// When the sender was last told it is limited.
    last_error: Option<Instant>,
}

/// What to do with a line after asking the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: handle the line.
    Allow,
    /// Over the rate: drop it and tell the sender.
    DropAndWarn,
    /// Over the rate, and the sender was told recently: drop it silently.
    Drop,
}

impl TokenBucket {
    /// A full bucket for `per_second` lines a second, burst `2 * per_second`.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second);
        TokenBucket {
            rate,
            burst: 2.0 * rate,
            tokens: 2.0 * rate,
            last: now,
            last_error: None,
        }
    }

    /// Takes one token for a line arriving at `now`.
    pub fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        match self.last_error {
            Some(at) if now.saturating_duration_since(at) < RATE_ERROR_INTERVAL => Verdict::Drop,
            _ => {
                self.last_error = Some(now);
                Verdict::DropAndWarn
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, start);
        for _ in 0..4 {
            assert_eq!(bucket.take(start), Verdict::Allow);
        }
        assert_eq!(bucket.take(start), Verdict::DropAndWarn);
        assert_eq!(bucket.take(start), Verdict::Drop);
        let later = start + Duration::from_millis(500);
        assert_eq!(bucket.take(later), Verdict::Allow);
        assert_eq!(bucket.take(later), Verdict::Drop);
        let much_later = start + Duration::from_secs(10);
        for _ in 0..4 {
            assert_eq!(bucket.take(much_later), Verdict::Allow);
        }
        assert_eq!(bucket.take(much_later), Verdict::DropAndWarn);
    }
}
