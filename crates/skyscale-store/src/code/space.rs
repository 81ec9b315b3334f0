//! What the code packages cost on disk, which of them are in use, and removing the others.
//!
//! The stored packages and their charged sizes are kept in memory (built by walking the
//! directory at open, kept up to date by every upload and collection), so the storage
//! limit is checked and a package pinned without touching the disk.
//!
//! A package is *charged* what it occupies: its zip plus every unpacked file rounded up to
//! whole 4 KiB blocks (at least one, so a package of many empty files is not free) and one
//! block per directory. Packages are stored once per SHA-256, so two functions with the
//! same code are charged once.
//!
//! Pins make collection safe without a lock around the database: an upload holds a pin on
//! its package from before it is unpacked until its row is committed, and a cold start
//! holds one while it links the package into a sandbox. A collection first notes every
//! package pinned then and from then on, then reads the references, then removes what is
//! neither referenced nor noted. A reference committed after the read was pinned until
//! after it was committed, so its package was noted and survives.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The unit a package is charged in.
pub const BLOCK: u64 = 4096;

/// Prefixes of names that are not (yet, or any more) packages: an unpack in progress and a
/// collected package on its way out. Whatever carries them at open was left by a crash.
pub(super) const TMP_PREFIX: &str = ".tmp-";
pub(super) const TRASH_PREFIX: &str = ".trash-";

/// `len` bytes in whole blocks, at least one.
pub fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

/// What an unpacked tree is charged: its files in whole blocks, one block per directory
/// (itself included).
pub(super) fn measure(dir: &Path) -> io::Result<u64> {
    let mut total = BLOCK;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            measure(&entry.path())?
        } else {
            blocks(meta.len())
        };
    }
    Ok(total)
}

/// Whether `name` is a package directory's name: 64 lowercase hex digits.
pub(super) fn is_package_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How much of the storage is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodeUsage {
    /// Bytes charged for every stored package (see the module documentation).
    pub bytes: u64,
    /// Stored packages (each distinct zip once).
    pub packages: u64,
}

/// What a collection removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Collected {
    pub packages: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Space {
    /// Every stored package and what it is charged.
    packages: HashMap<String, u64>,
    /// The sum of `packages`' charges.
    stored: u64,
    /// Charges promised to uploads being unpacked.
    reserved: u64,
    /// Packages in use by an upload not yet committed or a sandbox being specialised.
    pins: HashMap<String, usize>,
    /// While a collection runs: every package pinned when it started or since.
    pinned_since: Option<HashSet<String>>,
}

/// The shared bookkeeping of one code directory.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    space: Mutex<Space>,
    /// One collection at a time (each needs its own `pinned_since`).
    collecting: Mutex<()>,
}

/// Keeps a package from being collected while held.
#[derive(Debug)]
pub struct CodePin {
    ledger: Arc<Ledger>,
    sha256: String,
}

impl Drop for CodePin {
    fn drop(&mut self) {
        let mut space = self.ledger.lock();
        if let Some(n) = space.pins.get_mut(&self.sha256) {
            *n -= 1;
            if *n == 0 {
                space.pins.remove(&self.sha256);
            }
        }
    }
}

/// Charges promised to an upload, given back when it ends (stored or not).
pub(super) struct Reservation {
    ledger: Arc<Ledger>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut space = self.ledger.lock();
        space.reserved = space.reserved.saturating_sub(self.bytes);
    }
}

/// Why an upload may not go ahead.
pub(super) enum Admission {
    /// The package is stored already: nothing to write.
    Present,
    /// Room was reserved for it.
    Reserved(Reservation),
    /// It does not fit: what is in use (stored and reserved).
    Full { used: u64 },
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Space> {
        // The bookkeeping is consistent after every statement that holds the lock, so a
        // panic elsewhere while it was held leaves nothing half-done.
        self.space.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads what `root` holds, removing what a crash left half-written there.
    pub(super) fn scan(root: &Path) -> io::Result<Self> {
        let mut space = Space::default();
        let mut zips = Vec::new();
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(TMP_PREFIX) || name.starts_with(TRASH_PREFIX) {
                tracing::info!(path = %path.display(), "removing a code package left half-written or half-removed");
                remove_any(&path)?;
            } else if is_package_name(&name) && entry.file_type()?.is_dir() {
                let charge = measure(&path)?;
                space.packages.insert(name, charge);
            } else if let Some(sha) = name.strip_suffix(".zip").filter(|s| is_package_name(s)) {
                zips.push((sha.to_owned(), path));
            }
        }
        for (sha, path) in zips {
            match space.packages.get_mut(&sha) {
                Some(charge) => *charge += blocks(fs::metadata(&path)?.len()),
                // The zip is renamed into place before its directory: a crash in between
                // leaves a zip of no package.
                None => remove_any(&path)?,
            }
        }
        space.stored = space.packages.values().sum();
        Ok(Self {
            space: Mutex::new(space),
            collecting: Mutex::new(()),
        })
    }

    pub(super) fn usage(&self) -> CodeUsage {
        let space = self.lock();
        CodeUsage {
            bytes: space.stored,
            packages: space.packages.len() as u64,
        }
    }

    /// Pins `sha256` whether or not it is stored yet (an upload about to store it).
    pub(super) fn pin_any(self: &Arc<Self>, sha256: &str) -> CodePin {
        let mut space = self.lock();
        Self::add_pin(&mut space, sha256);
        CodePin {
            ledger: self.clone(),
            sha256: sha256.to_owned(),
        }
    }

    /// Pins a stored package; `None` if it is not stored (any more).
    pub(super) fn pin_stored(self: &Arc<Self>, sha256: &str) -> Option<CodePin> {
        let mut space = self.lock();
        if !space.packages.contains_key(sha256) {
            return None;
        }
        Self::add_pin(&mut space, sha256);
        Some(CodePin {
            ledger: self.clone(),
            sha256: sha256.to_owned(),
        })
    }

    fn add_pin(space: &mut Space, sha256: &str) {
        *space.pins.entry(sha256.to_owned()).or_default() += 1;
        if let Some(since) = &mut space.pinned_since {
            since.insert(sha256.to_owned());
        }
    }

    /// Decides whether an upload of `sha256`, charged at most `charge`, may be written.
    pub(super) fn admit(self: &Arc<Self>, sha256: &str, charge: u64, limit: u64) -> Admission {
        let mut space = self.lock();
        if space.packages.contains_key(sha256) {
            return Admission::Present;
        }
        let used = space.stored + space.reserved;
        if used.saturating_add(charge) > limit {
            return Admission::Full { used };
        }
        space.reserved += charge;
        Admission::Reserved(Reservation {
            ledger: self.clone(),
            bytes: charge,
        })
    }

    /// Runs `publish` (the renames that make a package visible) and records the package,
    /// unless another upload stored it first: then `false`, and nothing was run.
    pub(super) fn publish(
        &self,
        sha256: &str,
        charge: u64,
        publish: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<bool> {
        let mut space = self.lock();
        if space.packages.contains_key(sha256) {
            return Ok(false);
        }
        publish()?;
        space.packages.insert(sha256.to_owned(), charge);
        space.stored += charge;
        Ok(true)
    }

    /// Removes every package of `root` that `referenced` (read after the collection
    /// started noting pins) does not list and that no one pinned meanwhile.
    pub(super) fn collect<E>(
        &self,
        root: &Path,
        referenced: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<Collected, E> {
        let _one = self
            .collecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        {
            // Pinned now or from now on: a pin dropped while the references are read may
            // belong to a reference committed after they were read.
            let mut space = self.lock();
            space.pinned_since = Some(space.pins.keys().cloned().collect());
        }
        let referenced = referenced();
        let mut space = self.lock();
        let pinned_since = space.pinned_since.take().unwrap_or_default();
        let referenced: HashSet<String> = referenced?.into_iter().collect();
        let victims: Vec<(String, u64)> = space
            .packages
            .iter()
            .filter(|(sha, _)| {
                !referenced.contains(*sha)
                    && !space.pins.contains_key(*sha)
                    && !pinned_since.contains(*sha)
            })
            .map(|(sha, charge)| (sha.clone(), *charge))
            .collect();
        // Under the lock, each victim is renamed out of the way: from then on it is not a
        // package (a new upload of the same bytes unpacks afresh). The slow part, removing
        // the files, happens after the lock is released.
        let mut trash = Vec::new();
        let mut collected = Collected::default();
        for (sha, charge) in victims {
            match move_to_trash(root, &sha) {
                Ok(moved) => trash.extend(moved),
                Err(e) => {
                    tracing::warn!(package = %sha, error = %e, "could not remove an unused code package");
                    continue;
                }
            }
            space.packages.remove(&sha);
            space.stored -= charge;
            collected.packages += 1;
            collected.bytes += charge;
        }
        drop(space);
        for path in trash {
            if let Err(e) = remove_any(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete a removed code package (it goes at the next start)");
            }
        }
        Ok(collected)
    }
}

/// Renames a package's directory and zip to trash names; returns the new paths.
fn move_to_trash(root: &Path, sha256: &str) -> io::Result<Vec<PathBuf>> {
    let stem = format!("{TRASH_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let mut moved = Vec::new();
    // The zip first: if the directory cannot be moved, the package stays whole (its zip is
    // not what sandboxes use), and a moved zip goes with the trash at the next start.
    for (from, to) in [
        (
            root.join(format!("{sha256}.zip")),
            root.join(format!("{stem}.zip")),
        ),
        (root.join(sha256), root.join(&stem)),
    ] {
        match fs::rename(&from, &to) {
            Ok(()) => moved.push(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

fn remove_any(path: &Path) -> io::Result<()> {
    let result = if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
