//! The bans task: a cluster's bans, kept in a JetStream key-value bucket
//! that every node watches.
//!
//! One key per banned prefix (the prefix as `/bans` shows it, in hex, since
//! `:` is not allowed in a key), its value the ban as JSON. An operator's
//! ban or unban on any node is written here (see [`ClusterBans`]); every
//! node, the writer included, applies what its watch brings, so a ban made
//! on one node refuses the address on the others within a round trip, and
//! removes the connections they hold from it. The bucket's stream is on
//! file, so bans outlive the nodes and the NATS server's restarts.
//!
//! While the link is down a node applies its operators' changes at once
//! and keeps them (up to [`PENDING`]) to write when the link is back; the
//! watch is then opened again from the start, which replays every ban.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::stream;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::link::{Link, Phase};
use super::presence::{KV_TIMEOUT, next};
use super::subject;
use crate::moderation::{Ban, BanChange, BanStore, BanTarget, Moderation};

/// The bucket's name.
pub(super) const BANS_BUCKET: &str = "chatgate_bans";

/// Most bytes the bucket may hold: tens of thousands of bans.
const BANS_BYTES: i64 = 16 << 20;

/// Changes made on this node that wait for the bucket, at most; past it,
/// a change holds on this node only (and is logged).
pub(super) const PENDING: usize = 1024;

/// How often a failed bucket is tried again while the link is up.
const RETRY: Duration = Duration::from_secs(1);

/// One ban as the bucket keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    target: BanTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<u64>,
    by: String,
    #[serde(default)]
    reason: String,
}

/// Where this node's operators' ban changes go: to the bans task.
#[derive(Debug)]
pub(super) struct ClusterBans {
    changes: mpsc::Sender<BanChange>,
}

impl BanStore for ClusterBans {
    fn changed(&self, change: &BanChange) {
        if self.changes.try_send(change.clone()).is_err() {
            warn!("too many ban changes waiting for NATS; this one holds on this node only");
        }
    }
}

/// Keeps the bucket and this node's ban list in line.
pub(super) struct Bans {
    pub client: Client,
    pub moderation: Arc<Moderation>,
    pub link: Arc<Link>,
    pub changes: mpsc::Receiver<BanChange>,
    /// Set once the watch has brought every ban the bucket held.
    pub replayed: watch::Sender<bool>,
    pub stop: CancellationToken,
}

impl Bans {
    /// A store that hands changes to the task made with the receiver.
    pub(super) fn store() -> (Arc<ClusterBans>, mpsc::Receiver<BanChange>) {
        let (changes, receiver) = mpsc::channel(PENDING);
        (Arc::new(ClusterBans { changes }), receiver)
    }

    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let mut phase = self.link.watch();
        let mut kv: Option<Store> = None;
        let mut watch: Option<kv::Watch> = None;
        // Changes not yet written, in the order made.
        let mut pending: Vec<BanChange> = Vec::new();
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                changed = phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *phase.borrow_and_update() == Phase::Down {
                        kv = None;
                        watch = None;
                    }
                }
                Some(change) = self.changes.recv() => {
                    if pending.len() < PENDING {
                        pending.push(change);
                    }
                    if let Some(store) = &kv {
                        write_all(store, &mut pending).await;
                    }
                }
                entry = next(&mut watch), if watch.is_some() => match entry {
                    Some(Ok(entry)) => {
                        self.watched(&entry);
                        if entry.delta == 0 {
                            self.replayed.send_replace(true);
                        }
                    }
                    failed => {
                        if let Some(Err(e)) = failed {
                            warn!(error = %e, "bans watch failed; starting over");
                        }
                        kv = None;
                        watch = None;
                    }
                },
                _ = retry.tick() => {
                    if kv.is_none() && self.link.phase() != Phase::Down {
                        // This node's changes go in before the watch is
                        // opened, so its replay already holds them (an
                        // unban made while the link was down is not undone
                        // by the replay of the ban).
                        let opened = timeout(KV_TIMEOUT * 2, async {
                            let store = open(&self.client).await?;
                            write_all(&store, &mut pending).await;
                            let empty = store.status().await?.values() == 0;
                            let watch = store.watch_with_history(">").await?;
                            Ok::<_, async_nats::Error>((store, watch, empty))
                        })
                        .await;
                        match opened {
                            Ok(Ok((store, opened, empty))) => {
                                failures = 0;
                                if empty {
                                    self.replayed.send_replace(true);
                                }
                                kv = Some(store);
                                watch = Some(opened);
                            }
                            failed => {
                                // Retried every second; said once a minute.
                                if failures % 60 == 0 {
                                    let error = match failed {
                                        Ok(Err(e)) => e.to_string(),
                                        _ => "no answer in time".to_owned(),
                                    };
                                    warn!(error, "cannot open the bans bucket (is JetStream enabled, and may this node use $KV.chatgate_bans?); bans made elsewhere do not reach this node until it can");
                                }
                                failures += 1;
                            }
                        }
                    }
                    if let Some(store) = &kv {
                        write_all(store, &mut pending).await;
                    }
                }
            }
        }
    }

    /// Applies what the watch brought.
    fn watched(&self, entry: &kv::Entry) {
        let change = match entry.operation {
            Operation::Put => {
                // A value not as this module writes it did not come from a
                // chatgate node: ignored.
                let Ok(kept) = serde_json::from_slice::<Kept>(&entry.value) else {
                    return;
                };
                if key(&kept.target) != entry.key {
                    return;
                }
                let ban = Ban {
                    until: kept.until,
                    by: kept.by,
                    reason: kept.reason,
                };
                BanChange::Added(kept.target, ban)
            }
            Operation::Delete | Operation::Purge => match target_of(&entry.key) {
                Some(target) => BanChange::Lifted(target),
                None => return,
            },
        };
        self.moderation.apply(&change);
    }
}

/// Opens the bucket, creating it if need be.
async fn open(client: &Client) -> Result<Store, async_nats::Error> {
    let js = async_nats::jetstream::new(client.clone());
    // Made here as `presence` makes its bucket, for nats-server 2.9: the
    // settings of a key-value bucket with a history of one, on file.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{BANS_BUCKET}"),
        description: Some("chatgate: banned addresses".to_owned()),
        subjects: vec![format!("$KV.{BANS_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_bytes: BANS_BYTES,
        max_message_size: 4096,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await?;
    Ok(js.get_key_value(BANS_BUCKET).await?)
}

/// Writes the pending changes, oldest first, stopping at the first that
/// fails (tried again later).
async fn write_all(store: &Store, pending: &mut Vec<BanChange>) {
    while let Some(change) = pending.first() {
        let written = match change {
            BanChange::Added(target, ban) => {
                let kept = Kept {
                    target: *target,
                    until: ban.until,
                    by: ban.by.clone(),
                    reason: ban.reason.clone(),
                };
                let Ok(value) = serde_json::to_vec(&kept) else {
                    pending.remove(0);
                    continue;
                };
                timeout(KV_TIMEOUT, store.put(key(target), Bytes::from(value)))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            BanChange::Lifted(target) => timeout(KV_TIMEOUT, store.delete(key(target)))
                .await
                .is_ok_and(|r| r.is_ok()),
        };
        if !written {
            return;
        }
        pending.remove(0);
    }
}

/// The key of a prefix: its text in hex.
fn key(target: &BanTarget) -> String {
    subject::hex_text(&target.to_string())
}

/// The prefix a key names.
fn target_of(key: &str) -> Option<BanTarget> {
    BanTarget::parse(&subject::unhex_text(key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_prefix() {
        for s in ["10.0.0.0/8", "2001:db8::/64", "192.0.2.1"] {
            let target = BanTarget::parse(s).unwrap();
            let k = key(&target);
            assert!(k.bytes().all(|b| b.is_ascii_hexdigit()), "{k}");
            assert_eq!(target_of(&k), Some(target));
        }
        assert_eq!(target_of("zz"), None);
    }
}
