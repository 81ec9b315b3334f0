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

use std::sync::Arc;

use skyscale_store::{CodeError, CodeStore, Collected, Store, StoredCode};
use tokio::sync::mpsc;

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
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                let (store, code) = (store.clone(), code.clone());
                match blocking(move || collect(&store, &code)).await {
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

/// Removes the packages nothing references (blocking).
pub(crate) fn collect(store: &Store, code: &CodeStore) -> Result<Collected, CoreError> {
    Ok(code.collect(|| store.referenced_code())?)
}

/// Stores a zip for a function, pinned until the caller drops it after committing the
/// row. When the storage is full, the unused packages are collected first (a delete's
/// background collection may not have run yet) and the package is tried once more.
pub(crate) fn put_code(
    store: &Store,
    code: &CodeStore,
    zip: &[u8],
) -> Result<StoredCode, CoreError> {
    match code.put_zip(zip) {
        Err(CodeError::StorageFull { .. }) => {
            collect(store, code)?;
            Ok(code.put_zip(zip)?)
        }
        other => Ok(other?),
    }
}
