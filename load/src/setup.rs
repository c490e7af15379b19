//! Connection setup at a bounded pace.
//!
//! A run opens thousands of connections; opening them all at once measures
//! the server's accept backlog, not its steady state. At most `concurrency`
//! connections are connecting and joining at a time, optionally no more than
//! `rate` per second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::net::dial::Dial;

/// Connections connecting and joining at once by default: enough to hide
/// the round trips, few enough not to overflow a listen backlog of 128+.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How a run sets up its connections.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// How sockets are made.
    pub dial: Dial,
    /// Connections in their handshake at once.
    pub concurrency: usize,
    /// Most new connections per second; `None` for no limit beyond
    /// `concurrency`.
    pub rate: Option<f64>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            dial: Dial::default(),
            concurrency: DEFAULT_CONCURRENCY,
            rate: None,
        }
    }
}

/// Admits connections one by one at the setup's pace.
#[derive(Debug)]
pub struct Pacer {
    permits: Semaphore,
    /// Time between two admissions when rate-limited.
    gap: Option<Duration>,
    /// The next free admission time.
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `setup`.
    pub fn new(setup: &Setup) -> Pacer {
        Pacer {
            permits: Semaphore::new(setup.concurrency.max(1)),
            gap: setup
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for a free slot and, when rate-limited, for this connection's
    /// turn. The slot is held until the permit is dropped.
    pub async fn admit(&self) -> SemaphorePermit<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pacer's semaphore is never closed");
        if let Some(gap) = self.gap {
            let turn = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let turn = (*next).max(Instant::now());
                *next = turn + gap;
                turn
            };
            tokio::time::sleep_until(turn.into()).await;
        }
        permit
    }
}
