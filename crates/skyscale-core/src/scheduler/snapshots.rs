//! SnapStart's images on this host: one per function revision of one version (`PoolKey`),
//! taken by `snapstart.rs` and restored by cold starts.
//!
//! - Images live under the scheduler's task root (`.snapshots/<uuid>`), which the scheduler
//!   empties at start: an image never outlives the control plane that took it (a runsc
//!   image is tied to the runsc and the host it was taken on).
//! - An entry is `Building` while a dedicated sandbox is initialised and checkpointed,
//!   `Ready` once the image is complete, `Failed` (with the reason) when the build failed:
//!   a failed build is not retried for the same revision (a new revision, or an image
//!   discarded as broken, starts afresh).
//! - Invalidation: `discard_where` drops every entry of a function's versions a change
//!   retires (with the sandboxes, in `Scheduler::retire_where`); a build that finishes for
//!   an entry no longer there removes its image. Keys carry the revision, so an image is
//!   never used for another revision anyway.
//! - Disk: the images together stay under [`MAX_SNAPSHOT_BYTES`]; a new image past it evicts
//!   the least recently restored ones first (and is itself dropped if it alone is larger).
//!   They are the platform's cache, charged to nothing the user pays for (not the code
//!   storage limit, not the memory budget).
//!
//! The map is behind a `std` mutex held for map operations only; directories are removed
//! outside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use skyscale_types::FunctionName;

use crate::session::PoolKey;

/// Most bytes the images of one host take together.
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// Where one key's snapshot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapshotState {
    Building,
    Ready,
    Failed(String),
}

enum Entry {
    Building,
    Ready(Image),
    Failed(String),
}

/// A complete image.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub dir: PathBuf,
    pub bytes: u64,
    last_used: Instant,
}

pub(crate) struct Snapshots {
    root: PathBuf,
    max_bytes: u64,
    entries: Mutex<HashMap<PoolKey, Entry>>,
    /// Cold starts that restored an image, and those whose restore failed and that fell
    /// back to a normal cold start (metrics).
    pub restored: AtomicU64,
    pub fallbacks: AtomicU64,
}

impl Snapshots {
    /// Images under `root` (created on first use).
    pub fn new(root: PathBuf, max_bytes: u64) -> Self {
        Self {
            root,
            max_bytes,
            entries: Mutex::new(HashMap::new()),
            restored: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Entry>> {
        // Plain inserts and removes: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims the build of `key`'s snapshot: `Some(empty directory)` to write the image to
    /// when there is no entry for it yet (it is `Building` from now on), `None` when one is
    /// being built, ready or failed.
    pub fn begin(&self, key: &PoolKey) -> std::io::Result<Option<PathBuf>> {
        {
            let mut entries = self.lock();
            if entries.contains_key(key) {
                return Ok(None);
            }
            entries.insert(key.clone(), Entry::Building);
        }
        let dir = self.root.join(uuid::Uuid::new_v4().simple().to_string());
        match std::fs::create_dir_all(&dir) {
            Ok(()) => Ok(Some(dir)),
            Err(e) => {
                self.lock()
                    .insert(key.clone(), Entry::Failed(e.to_string()));
                Err(e)
            }
        }
    }

    /// Ends a build `begin` claimed: the image in `dir` is ready, or the build failed (its
    /// directory is removed). An image whose entry was discarded meanwhile (its function
    /// changed) is removed instead of kept; older images make room for it.
    pub fn finish(&self, key: &PoolKey, dir: &Path, built: Result<(), String>) {
        let mut doomed = Vec::new();
        let outcome = match built {
            Ok(()) => {
                let bytes = dir_bytes(dir);
                let mut entries = self.lock();
                match entries.get(key) {
                    Some(Entry::Building) if bytes <= self.max_bytes => {
                        entries.insert(
                            key.clone(),
                            Entry::Ready(Image {
                                dir: dir.to_path_buf(),
                                bytes,
                                last_used: Instant::now(),
                            }),
                        );
                        make_room(&mut entries, self.max_bytes, &mut doomed);
                        Ok(bytes)
                    }
                    Some(Entry::Building) => {
                        let why = format!(
                            "the snapshot takes {bytes} bytes, more than the {} bytes all \
                             snapshots may take",
                            self.max_bytes
                        );
                        entries.insert(key.clone(), Entry::Failed(why.clone()));
                        doomed.push(dir.to_path_buf());
                        Err(why)
                    }
                    _ => {
                        doomed.push(dir.to_path_buf());
                        Err("discarded: the function changed while it was taken".to_owned())
                    }
                }
            }
            Err(why) => {
                let mut entries = self.lock();
                if matches!(entries.get(key), Some(Entry::Building)) {
                    entries.insert(key.clone(), Entry::Failed(why.clone()));
                }
                doomed.push(dir.to_path_buf());
                Err(why)
            }
        };
        match outcome {
            Ok(bytes) => tracing::info!(function = %key.function, version = ?key.version,
                revision = key.revision, bytes, "snapshot ready"),
            Err(why) => tracing::warn!(function = %key.function, version = ?key.version,
                revision = key.revision, reason = %why, "no snapshot"),
        }
        remove_dirs(doomed);
    }

    /// The ready image of `key`, if any (marked as just used).
    pub fn ready(&self, key: &PoolKey) -> Option<Image> {
        match self.lock().get_mut(key) {
            Some(Entry::Ready(image)) => {
                image.last_used = Instant::now();
                Some(image.clone())
            }
            _ => None,
        }
    }

    /// Where `key`'s snapshot is; `None`: none was asked for yet.
    pub fn state(&self, key: &PoolKey) -> Option<SnapshotState> {
        self.lock().get(key).map(|e| match e {
            Entry::Building => SnapshotState::Building,
            Entry::Ready(_) => SnapshotState::Ready,
            Entry::Failed(why) => SnapshotState::Failed(why.clone()),
        })
    }

    /// Drops an image a restore failed with: broken (`failed: None`: the next cold start
    /// builds it again), or unusable for a reason a new image would not change (`Some`: the
    /// entry stays `Failed` with it, e.g. an after-restore hook that raises). Nothing happens
    /// if `key` has another image by now.
    pub fn discard_image(&self, key: &PoolKey, dir: &Path, failed: Option<String>) {
        let removed = {
            let mut entries = self.lock();
            match entries.get(key) {
                Some(Entry::Ready(image)) if image.dir == dir => match failed {
                    Some(why) => entries.insert(key.clone(), Entry::Failed(why)),
                    None => entries.remove(key),
                },
                _ => None,
            }
        };
        if removed.is_some() {
            remove_dirs(vec![dir.to_path_buf()]);
        }
    }

    /// Drops the entries of `function`'s versions `which` selects (`None` = `$LATEST`), and
    /// their images: a change retired them. Builds under way find their entry gone.
    pub fn discard_where(&self, function: &FunctionName, which: &dyn Fn(Option<u64>) -> bool) {
        let mut doomed = Vec::new();
        self.lock().retain(|key, entry| {
            let keep = key.function != *function || !which(key.version);
            if !keep {
                if let Entry::Ready(image) = entry {
                    doomed.push(image.dir.clone());
                }
            }
            keep
        });
        remove_dirs(doomed);
    }

    /// Forgets every entry and removes every image (shutdown). A build still under way
    /// finds its entry gone and removes its own.
    pub fn remove_all(&self) {
        self.lock().clear();
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.root.display(), error = %e, "removing the snapshots failed");
            }
        }
    }

    /// Bytes the ready images take now.
    pub fn bytes(&self) -> u64 {
        self.lock()
            .values()
            .map(|e| match e {
                Entry::Ready(image) => image.bytes,
                _ => 0,
            })
            .sum()
    }
}

/// Evicts the least recently used ready images until they fit in `max_bytes`.
fn make_room(entries: &mut HashMap<PoolKey, Entry>, max_bytes: u64, doomed: &mut Vec<PathBuf>) {
    loop {
        let total: u64 = entries
            .values()
            .map(|e| match e {
                Entry::Ready(image) => image.bytes,
                _ => 0,
            })
            .sum();
        if total <= max_bytes {
            return;
        }
        let oldest = entries
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Ready(image) => Some((image.last_used, k.clone())),
                _ => None,
            })
            .min_by_key(|(used, _)| *used)
            .map(|(_, k)| k);
        let Some(key) = oldest else { return };
        if let Some(Entry::Ready(image)) = entries.remove(&key) {
            tracing::info!(function = %key.function, version = ?key.version,
                "snapshot evicted: snapshots past their disk limit");
            doomed.push(image.dir);
        }
    }
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn remove_dirs(dirs: Vec<PathBuf>) {
    for dir in dirs {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a snapshot failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(function: &str, version: Option<u64>, revision: u64) -> PoolKey {
        PoolKey {
            function: FunctionName::parse(function).unwrap(),
            revision,
            version,
        }
    }

    fn image(snaps: &Snapshots, k: &PoolKey, bytes: usize) -> PathBuf {
        let dir = snaps.begin(k).unwrap().expect("not claimed yet");
        std::fs::write(dir.join("checkpoint.img"), vec![0u8; bytes]).unwrap();
        snaps.finish(k, &dir, Ok(()));
        dir
    }

    #[test]
    fn builds_are_claimed_once_and_failures_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(tmp.path().join("s"), 1000);
        let k = key("f", None, 1);
        let dir = snaps.begin(&k).unwrap().unwrap();
        assert_eq!(snaps.begin(&k).unwrap(), None, "one build at a time");
        assert_eq!(snaps.state(&k), Some(SnapshotState::Building));
        snaps.finish(&k, &dir, Err("boom".into()));
        assert_eq!(snaps.state(&k), Some(SnapshotState::Failed("boom".into())));
        assert!(!dir.exists());
        assert_eq!(
            snaps.begin(&k).unwrap(),
            None,
            "a failed build is not retried"
        );
    }

    #[test]
    fn changes_discard_images_and_builds_under_way() {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(tmp.path().join("s"), 1000);
        let (latest, v1) = (key("f", None, 1), key("f", Some(1), 1));
        let latest_dir = image(&snaps, &latest, 10);
        let v1_dir = image(&snaps, &v1, 10);
        assert!(snaps.ready(&latest).is_some());
        snaps.discard_where(&latest.function, &|v| v.is_none());
        assert!(!latest_dir.exists() && snaps.ready(&latest).is_none());
        assert!(
            v1_dir.exists() && snaps.ready(&v1).is_some(),
            "versions stay"
        );
        // A build whose function changed meanwhile leaves nothing.
        let next = key("f", None, 2);
        let dir = snaps.begin(&next).unwrap().unwrap();
        snaps.discard_where(&next.function, &|v| v.is_none());
        snaps.finish(&next, &dir, Ok(()));
        assert!(!dir.exists() && snaps.state(&next).is_none());
        // A broken image goes, and may be built again.
        snaps.discard_image(&v1, &v1_dir, None);
        assert!(!v1_dir.exists() && snaps.state(&v1).is_none());
        assert!(snaps.begin(&v1).unwrap().is_some());
    }

    #[test]
    fn images_stay_under_the_disk_limit_least_recently_used_first() {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(tmp.path().join("s"), 250);
        let (a, b, c) = (key("a", None, 1), key("b", None, 1), key("c", None, 1));
        image(&snaps, &a, 100);
        image(&snaps, &b, 100);
        assert!(snaps.ready(&a).is_some()); // `a` is now the most recently used
        image(&snaps, &c, 100);
        assert!(snaps.ready(&b).is_none(), "the least recently used went");
        assert!(snaps.ready(&a).is_some() && snaps.ready(&c).is_some());
        assert_eq!(snaps.bytes(), 200);
        let big = key("big", None, 1);
        image(&snaps, &big, 300);
        assert!(matches!(snaps.state(&big), Some(SnapshotState::Failed(_))));
    }
}
