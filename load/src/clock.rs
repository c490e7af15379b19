//! The generator's clock: nanoseconds since the first reading in this
//! process.
//!
//! Senders and receivers live in one process, so a monotonic clock shared by
//! both measures end-to-end latency without any clock synchronisation.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's epoch (set on first use).
pub fn now_nanos() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
