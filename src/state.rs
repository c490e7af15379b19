//! What a single node keeps across restarts, in `--state-dir`: the bans,
//! in `bans.json`.
//!
//! The file is read once at start (a file that does not parse is an error,
//! not an empty list: starting without its bans would let everyone back
//! in) and rewritten whole after every change an operator makes, through a
//! temporary file renamed over it, so a crash leaves the old list or the
//! new one, never half of either. The directory is created on the first
//! write, so a server nobody bans anyone on never needs a writable one.
//!
//! In a cluster bans live in NATS instead (see `cluster`), and this file
//! is not used.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::history::Millis;
use crate::moderation::{Ban, BanChange, BanStore, BanTarget, Moderation};

/// The bans file's name in the state directory.
pub const BANS_FILE: &str = "bans.json";

/// The version written in the file; a file of another version is refused.
const VERSION: u32 = 1;

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BansFile {
    version: u32,
    bans: Vec<Entry>,
}

/// One ban as kept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// An address or CIDR prefix, as `/bans` shows it.
    target: BanTarget,
    /// When it ends, in milliseconds since the Unix epoch; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<Millis>,
    by: String,
    #[serde(default)]
    reason: String,
}

/// The bans file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StateError {
    path: PathBuf,
    reason: String,
}

/// Keeps the bans of one node in its state directory.
#[derive(Debug, Clone)]
pub struct BanFile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    moderation: std::sync::Weak<Moderation>,
    clock: fn() -> Millis,
    /// What the file held when last read or written, so a reload applies
    /// only what was changed in it by hand.
    written: Mutex<BTreeMap<BanTarget, Ban>>,
    /// A change is not written yet.
    dirty: AtomicBool,
    /// A writer is on the blocking pool; it writes until nothing is
    /// dirty, so a flood of changes costs one write at a time, not one
    /// queued write each.
    scheduled: AtomicBool,
}

impl BanFile {
    /// Loads `dir`'s bans into `moderation` (those that still hold at
    /// `clock()`), and keeps every later change there.
    pub fn open(
        dir: &Path,
        moderation: &Arc<Moderation>,
        clock: fn() -> Millis,
    ) -> Result<BanFile, StateError> {
        let path = dir.join(BANS_FILE);
        let now = clock();
        let kept: BTreeMap<BanTarget, Ban> = read(&path)?.into_iter().collect();
        for (target, ban) in &kept {
            if ban.holds(now) {
                moderation.apply(&BanChange::Added(*target, ban.clone()));
            }
        }
        let file = BanFile {
            inner: Arc::new(Inner {
                path,
                moderation: Arc::downgrade(moderation),
                clock,
                written: Mutex::new(kept),
                dirty: AtomicBool::new(false),
                scheduled: AtomicBool::new(false),
            }),
        };
        moderation.keep_in(Arc::new(file.clone()));
        Ok(file)
    }

    /// Reads the file again and applies what was changed in it since it
    /// was last read or written (a ban added, changed or removed by hand);
    /// returns how many changes that made. Changes made here meanwhile and
    /// not yet written are not undone.
    pub fn reload(&self) -> Result<usize, StateError> {
        let inner = &self.inner;
        let Some(moderation) = inner.moderation.upgrade() else {
            return Ok(0);
        };
        let mut written = lock(&inner.written);
        let now_kept: BTreeMap<BanTarget, Ban> = read(&inner.path)?.into_iter().collect();
        let mut changes = 0;
        for target in written.keys() {
            if !now_kept.contains_key(target) && moderation.apply(&BanChange::Lifted(*target)) {
                changes += 1;
            }
        }
        for (target, ban) in &now_kept {
            if written.get(target) != Some(ban)
                && ban.holds((inner.clock)())
                && moderation.apply(&BanChange::Added(*target, ban.clone()))
            {
                changes += 1;
            }
        }
        *written = now_kept;
        Ok(changes)
    }

    /// Writes the current list soon, on the blocking pool (at once, with
    /// no runtime).
    fn save(&self) {
        let inner = &self.inner;
        inner.dirty.store(true, Ordering::SeqCst);
        if inner.scheduled.swap(true, Ordering::SeqCst) {
            // The writer at work will see the change.
            return;
        }
        let inner = inner.clone();
        let write = move || {
            loop {
                inner.dirty.store(false, Ordering::SeqCst);
                inner.write_now();
                inner.scheduled.store(false, Ordering::SeqCst);
                // A change after the write began either saw the writer and
                // left it to us, or started its own: whoever takes
                // `scheduled` writes it.
                if !inner.dirty.load(Ordering::SeqCst)
                    || inner.scheduled.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(write)),
            Err(_) => write(),
        }
    }
}

impl Inner {
    /// Writes the list in force now.
    fn write_now(&self) {
        let Some(moderation) = self.moderation.upgrade() else {
            return;
        };
        let mut written = lock(&self.written);
        let bans = moderation.bans().list((self.clock)());
        match write_atomically(&self.path, &bans) {
            Ok(()) => *written = bans.into_iter().collect(),
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot keep the bans; they hold until the server stops");
            }
        }
    }
}

impl BanStore for BanFile {
    fn changed(&self, _change: &BanChange) {
        self.save();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `dir`'s bans file, if there is one, can be read, without
/// writing anything (for `check-config`).
pub fn check(dir: &Path) -> Result<(), StateError> {
    read(&dir.join(BANS_FILE)).map(drop)
}

/// The bans in `path`; none if it does not exist.
fn read(path: &Path) -> Result<Vec<(BanTarget, Ban)>, StateError> {
    let error = |reason: String| StateError {
        path: path.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(e.to_string())),
    };
    let file: BansFile = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    if file.version != VERSION {
        return Err(error(format!(
            "version {} (this server reads version {VERSION})",
            file.version
        )));
    }
    Ok(file
        .bans
        .into_iter()
        .map(|e| {
            let ban = Ban {
                until: e.until,
                by: e.by,
                reason: e.reason,
            };
            (e.target, ban)
        })
        .collect())
}

/// Writes `bans` to `path` through a temporary file beside it, synced
/// before it is renamed over the old one.
fn write_atomically(path: &Path, bans: &[(BanTarget, Ban)]) -> std::io::Result<()> {
    let file = BansFile {
        version: VERSION,
        bans: bans
            .iter()
            .map(|(target, ban)| Entry {
                target: *target,
                until: ban.until,
                by: ban.by.clone(),
                reason: ban.reason.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.tmp");
    let mut out = std::fs::File::create(&temporary)?;
    out.write_all(&json)?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the directory is synced.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Millis {
        1_000
    }

    #[test]
    fn bans_survive_a_reload_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = Arc::new(Moderation::default());
        BanFile::open(&state, &first, clock).unwrap();
        let target = BanTarget::parse("10.0.0.0/8").unwrap();
        let _ = first.change(BanChange::Added(
            target,
            Ban::new(clock(), None, "op", "flood"),
        ));
        let _ = first.change(BanChange::Added(
            BanTarget::parse("192.0.2.1").unwrap(),
            Ban {
                until: Some(1_500),
                by: "op".into(),
                reason: String::new(),
            },
        ));
        let second = Arc::new(Moderation::default());
        BanFile::open(&state, &second, clock).unwrap();
        assert_eq!(second.bans().list(clock()).len(), 2);
        let third = Arc::new(Moderation::default());
        BanFile::open(&state, &third, || 2_000).unwrap();
        let kept = third.bans().list(2_000);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, target);
        assert_eq!(kept[0].1.reason, "flood");
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BANS_FILE), "{\"version\":1,\"bans\":[{}]}").unwrap();
        let moderation = Arc::new(Moderation::default());
        let e = BanFile::open(dir.path(), &moderation, clock).unwrap_err();
        assert!(e.to_string().contains(BANS_FILE), "{e}");
    }
}
