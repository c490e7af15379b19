//! The names a run uses on the wire: short, valid on both protocols, and
//! derived from numbers so nothing is stored per connection.

/// Chat room number `room` of run `run`. Process id and run number make
/// rooms of successive runs distinct, so a run never meets the names of an
/// earlier one that the server is still cleaning up.
pub fn room(run: u32, room: usize) -> String {
    format!("r{}.{run}.{room}", std::process::id() % 100_000)
}

/// Chat user number `user`, unique within a run.
pub fn user(user: usize) -> String {
    format!("u{user}")
}

/// The NATS subject standing for room number `room` of run `run`.
pub fn subject(run: u32, room: usize) -> String {
    format!("room.{}.{run}.{room}", std::process::id() % 100_000)
}

/// The next run number of this process.
pub fn next_run() -> u32 {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_fit_the_protocol_limit() {
        assert!(super::user(usize::MAX).len() <= 21);
        assert!(super::user(99_999_999).len() <= 20);
        assert!(super::room(9999, 99_999).len() <= 20);
        assert!(super::subject(1, 3).ends_with(".1.3"));
        assert_ne!(super::next_run(), super::next_run());
    }
}
