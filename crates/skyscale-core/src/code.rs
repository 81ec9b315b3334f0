//! Code packages after their upload: storing one for a function, and removing the ones that
//! no function (`$LATEST`) or published version references any more.
//!
//! Safety rests on the store's pins (see `skyscale-store`'s `code/space.rs`): an upload is
//! pinned until the row that references it is committed, and a cold start pins the package
//! while it links it into the sandbox. Once linked, a sandbox no longer needs the package
//! directory: its `/var/task` holds hard links (or copies) of the files, which outlive the
//! package's names. A cold start that finds its package already collected was working from
//! a function record that a deploy or delete has since replaced; it starts over with the
//! current record (`invoke.rs`).
//!
//! On a store shared by several hosts (PostgreSQL) packages are also kept in the database,
//! so that every host can run every function: an upload stores the zip there before the row
//! that references it is committed, and a host that lacks a package fetches it on the cold
//! start that needs it, checks its SHA-256 and unpacks it into its own package directory,
//! which is then a cache (a local collection only costs a fetch). The database's copies are
//! removed only when unreferenced and older than [`SHARED_PACKAGE_GRACE`]: pins are local to
//! a host and cannot protect another host's upload that has not committed its row yet.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use skyscale_store::{CodeError, CodePin, CodeStore, Collected, Store, StoredCode};
use tokio::sync::mpsc;

use crate::singleton::ChoreLock;
use crate::{blocking, CoreError};

/// Runs collections in the background, one at a time.
pub(crate) struct Collector {
    /// Capacity one: a request made while one is already pending adds nothing, since the
    /// pending collection reads the references after it. Dropped with the control plane,
    /// which ends the task.
    wake: mpsc::Sender<()>,
}

impl Collector {
    /// Starts the collector and asks for a first collection (packages left unreferenced
    /// by a crash between an upload and its commit). Must run inside a tokio runtime.
    pub(crate) fn start(store: Arc<Store>, code: CodeStore) -> Self {
        let (wake, mut requests) = mpsc::channel(1);
        // The database's packages (shared store): collected by one node (see
        // `singleton.rs`), also every third of the grace, since the deletes that leave
        // packages unused happen on every node.
        let lock = ChoreLock::new(store.clone(), "code-packages");
        tokio::spawn(async move {
            let mut shared_round = tokio::time::interval(SHARED_PACKAGE_GRACE / 3);
            shared_round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    request = requests.recv() => if request.is_none() { break },
                    _ = shared_round.tick(), if store.is_shared() => {}
                }
                let (store, code, lock) = (store.clone(), code.clone(), lock.clone());
                match blocking(move || {
                    let local = collect(&store, &code)?;
                    if store.is_shared() && lock.check() {
                        collect_shared(&store)?;
                    }
                    Ok(local)
                })
                .await
                {
                    Ok(c) if c.packages > 0 => tracing::info!(
                        packages = c.packages,
                        bytes = c.bytes,
                        "removed code packages nothing references any more"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "collecting unused code packages"),
                }
            }
        });
        let collector = Self { wake };
        collector.request();
        collector
    }

    /// Asks for a collection soon (after a write that may have left a package unused);
    /// never waits.
    pub(crate) fn request(&self) {
        let _ = self.wake.try_send(());
    }
}

/// How long a package in a shared database stays although nothing references it: longer
/// than any upload takes between storing its package and committing its row.
pub(crate) const SHARED_PACKAGE_GRACE: Duration = Duration::from_secs(15 * 60);

/// Removes this host's packages nothing references (blocking).
pub(crate) fn collect(store: &Store, code: &CodeStore) -> Result<Collected, CoreError> {
    Ok(code.collect(|| store.referenced_code())?)
}

/// Removes the database's packages (shared store) that nothing references and that are
/// older than [`SHARED_PACKAGE_GRACE`] (blocking).
fn collect_shared(store: &Store) -> Result<(), CoreError> {
    let removed = store.collect_code_packages(SHARED_PACKAGE_GRACE)?;
    if removed > 0 {
        tracing::info!(
            packages = removed,
            "removed code packages from the database that nothing references any more"
        );
    }
    Ok(())
}

/// Pins the package `sha256` for a cold start on a host that does not have it (blocking):
/// on a shared store, fetches it from the database, checks it against its SHA-256 and
/// unpacks it into this host's package directory. `None`: the package is in neither (it
/// was collected after the record naming it was read, or the store is this host's own).
pub(crate) fn fetch_code(
    store: &Store,
    code: &CodeStore,
    sha256: &str,
) -> Result<Option<CodePin>, CoreError> {
    if let Some(pin) = code.pin(sha256) {
        return Ok(Some(pin));
    }
    if !store.is_shared() {
        return Ok(None);
    }
    let Some(zip) = store.code_package(sha256)? else {
        return Ok(None);
    };
    let actual = hex::encode(Sha256::digest(&zip));
    if actual != sha256 {
        return Err(CoreError::internal(format!(
            "the database's code package {sha256} has SHA-256 {actual}: refusing to run it"
        )));
    }
    let stored = put_local(store, code, &zip)?;
    tracing::info!(
        sha256,
        bytes = zip.len(),
        "fetched a code package from the database"
    );
    Ok(Some(stored.pin))
}

/// Stores a zip for a function, pinned until the caller drops it after committing the
/// row. When the storage is full, the unused packages are collected first (a delete's
/// background collection may not have run yet) and the package is tried once more.
pub(crate) fn put_code(
    store: &Store,
    code: &CodeStore,
    zip: &[u8],
) -> Result<StoredCode, CoreError> {
    let stored = put_local(store, code, zip)?;
    if store.is_shared() {
        // Before the row that references it: every host can fetch what a row names.
        store.put_code_package(&stored.code.sha256, zip)?;
    }
    Ok(stored)
}

/// Stores a zip in this host's package directory, collecting first when it is full.
fn put_local(store: &Store, code: &CodeStore, zip: &[u8]) -> Result<StoredCode, CoreError> {
    match code.put_zip(zip) {
        Err(CodeError::StorageFull { .. }) => {
            collect(store, code)?;
            Ok(code.put_zip(zip)?)
        }
        other => Ok(other?),
    }
}
