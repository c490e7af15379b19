//! Reading the whole presence bucket in one pass, and keeping it from
//! growing with the joins ever made.
//!
//! Deleting a key leaves a delete marker behind, so that the other nodes'
//! watches see the key go; without care, the bucket would keep one marker
//! for every room and name ever used. The sweep task removes them: a
//! marker seen in two sweeps in a row (so at least [`SWEEP_EVERY`] old,
//! long after every watch has seen it) is purged from the bucket's stream,
//! together with anything older on its key and nothing newer, so a name
//! claimed again meanwhile is never touched. A node sweeps after it has
//! deleted something, and now and then anyway, for markers left by a node
//! that died: a marker lives at most about two sweep periods, well inside
//! PROTOCOL.md's minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::kv::{self, Operation};
use futures_util::StreamExt;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::{Link, Phase};
use super::shared::Shared;
use super::subject;

/// How often the sweep looks for markers to purge.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// A node that deleted nothing still sweeps this often, for the markers of
/// nodes that died before they swept their own.
const SWEEP_ANYWAY: Duration = Duration::from_secs(300);

/// Longest a read of the whole bucket may take.
pub(super) const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(8);

// Two sweep periods and a slow sweep stay inside the protocol's minute.
const _: () = assert!(SWEEP_EVERY.as_secs() * 2 + SNAPSHOT_TIMEOUT.as_secs() < 60);

/// The last entry of every key in the bucket, live or deleted, read with
/// one watch that replays the bucket and stops once it has caught up. Not
/// bounded in time here; callers wrap it in [`SNAPSHOT_TIMEOUT`].
pub(super) async fn snapshot(
    client: &Client,
) -> Result<HashMap<String, kv::Entry>, async_nats::Error> {
    let mut all = HashMap::new();
    // Opened afresh: a store's status is what it was when it was opened,
    // and an empty bucket's watch would wait forever for a first entry.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subject::PRESENCE_BUCKET).await?;
    if kv.status().await?.values() == 0 {
        return Ok(all);
    }
    let mut watch = kv.watch_with_history(">").await?;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        let caught_up = entry.delta == 0;
        all.insert(entry.key.clone(), entry);
        if caught_up {
            break;
        }
    }
    Ok(all)
}

/// The sweep task's state.
pub(super) struct Sweep {
    /// The NATS connection, shared with the other tasks.
    pub client: Client,
    /// Says whether this node deleted keys since the last sweep.
    pub shared: Arc<Shared>,
    /// Sweeps run only while the link is up.
    pub link: Arc<Link>,
    /// Ends the task.
    pub stop: CancellationToken,
}

impl Sweep {
    /// Runs until stopped.
    pub(super) async fn run(self) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Markers seen by the last sweep, with their revision.
        let mut seen: HashMap<String, u64> = HashMap::new();
        // The first sweep runs once the link is up.
        let mut last = None::<Instant>;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.link.phase() != Phase::Up {
                continue;
            }
            let deleted = self.shared.deleted.swap(false, Ordering::SeqCst);
            let due = last.is_none_or(|at| at.elapsed() >= SWEEP_ANYWAY);
            if !deleted && !due && seen.is_empty() {
                continue;
            }
            match timeout(SNAPSHOT_TIMEOUT * 2, self.sweep(&seen)).await {
                Ok(Ok(next)) => {
                    seen = next;
                    last = Some(Instant::now());
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot sweep the presence bucket; retrying");
                    self.shared.deleted.store(true, Ordering::SeqCst);
                }
                Err(_) => {
                    warn!("sweeping the presence bucket timed out; retrying");
                    self.shared.deleted.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Purges the markers `seen` last time that are still there; returns
    /// the markers seen now for the first time.
    async fn sweep(
        &self,
        seen: &HashMap<String, u64>,
    ) -> Result<HashMap<String, u64>, async_nats::Error> {
        let js = async_nats::jetstream::new(self.client.clone());
        let stream = js
            .get_stream(format!("KV_{}", subject::PRESENCE_BUCKET))
            .await?;
        let mut fresh = HashMap::new();
        let mut purged = 0usize;
        for (key, entry) in snapshot(&self.client).await? {
            if !matches!(entry.operation, Operation::Delete | Operation::Purge) {
                continue;
            }
            if seen.get(&key) != Some(&entry.revision) {
                fresh.insert(key, entry.revision);
                continue;
            }
            // Everything on the key up to and including the marker; a key
            // written again since has a later sequence and stays.
            stream
                .purge()
                .filter(format!("$KV.{}.{key}", subject::PRESENCE_BUCKET))
                .sequence(entry.revision + 1)
                .await?;
            purged += 1;
        }
        if purged > 0 {
            debug!(purged, "presence markers swept");
        }
        Ok(fresh)
    }
}
