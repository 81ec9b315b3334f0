//! SnapStart: a function's sandboxes start from a snapshot taken after its init, instead of
//! running the init again (docs/lambda-compatibility.md, "SnapStart").
//!
//! - Taking one (`want_snapshot`, in the background): a dedicated sandbox — reserved outside
//!   any pool, never serving traffic — is booted and specialised like any cold start (`Init`
//!   → `InitDone`), the runtime runs its before-snapshot hooks (`Snapshot` frame), and the
//!   driver checkpoints it into an image (`scheduler/snapshots.rs` keeps the images). The
//!   agent talks to the control plane over its stdio pipes only, and nothing in a sandbox
//!   holds a connection to a host Unix socket (runsc refuses to checkpoint one), so the
//!   checkpoint sees nothing it cannot save.
//! - When: a published version's at publish; `$LATEST`'s (Skyscale's extension) after the
//!   invocation that found none for its revision, so the first cold start after a change
//!   is a normal one and does not compete with the build for CPU. A change of code or
//!   configuration is a new revision: its old image is discarded with its sandboxes.
//! - Using one (`restore`): a cold start of a revision with a ready image boots no generic
//!   sandbox; it links the code and layers into the new sandbox's directories (the same
//!   paths inside), restores the image under a new id (new pipes, cgroups, uid claim), and
//!   sends `Snapshot{AfterRestore}` with the sandbox's own identity (a new log stream,
//!   `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`): the runtime reseeds `random` and runs the
//!   after-restore hooks. The invocation's record says `snap-start`, its `REPORT` line
//!   `Restore Duration`.
//! - A restore that fails or hangs (bounded in `Scheduler::restore`) is destroyed and the
//!   invocation falls back to a normal cold start, saying so in its logs and in the
//!   `skyscale_snapshot_restore_fallbacks_total` metric; the broken image is discarded and
//!   built again after that invocation. An after-restore hook that raises does the same, but
//!   its image is kept out of use (`Failed`) for that revision: a new image would fail alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use skyscale_protocol::{Snapshot, SnapshotPhase};
use skyscale_sandbox::SandboxId;
use skyscale_store::FunctionRecord;
use skyscale_types::invocation::InitType;
use skyscale_types::snapstart::{OptimizationStatus, SnapStart};
use tracing::Instrument;

use crate::invoke::{log_stream_name, ColdTiming, Ready, DEADLINE_GRACE};
use crate::scheduler::{Scheduler, Shape, SnapshotState};
use crate::session::PoolKey;
use crate::{ControlPlane, CoreError};

/// Whether a version starts from a snapshot, as the API reports it (`SnapStartResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapStartStatus {
    pub apply_on: SnapStart,
    /// `On` only when a ready snapshot of this revision is on this node.
    pub optimization: OptimizationStatus,
    /// Why it is `Off` although SnapStart is asked for.
    pub reason: Option<String>,
}

fn pool_key(f: &FunctionRecord) -> PoolKey {
    PoolKey {
        function: f.name.clone(),
        revision: f.revision,
        version: f.version,
    }
}

fn shape(f: &FunctionRecord) -> Shape {
    Shape {
        network: f.network,
        tmp_mb: f.ephemeral_mb,
    }
}

impl ControlPlane {
    /// SnapStart's state for the version `f`, truthfully: `On` only with a ready image.
    pub fn snap_start_status(&self, f: &FunctionRecord) -> SnapStartStatus {
        let off = |reason: String| SnapStartStatus {
            apply_on: f.snap_start,
            optimization: OptimizationStatus::Off,
            reason: Some(reason),
        };
        if !f.snap_start.is_on() {
            return SnapStartStatus {
                apply_on: f.snap_start,
                optimization: OptimizationStatus::Off,
                reason: None,
            };
        }
        let Some(sched) = &self.scheduler else {
            return off("this node runs no sandboxes: its workers take the snapshots".into());
        };
        if let Err(why) = sched.driver().snapshots(f.network) {
            return off(why);
        }
        if f.code.is_none() {
            return off("the function has no code yet".into());
        }
        match sched.snapshots().state(&pool_key(f)) {
            Some(SnapshotState::Ready) => SnapStartStatus {
                apply_on: f.snap_start,
                optimization: OptimizationStatus::On,
                reason: None,
            },
            Some(SnapshotState::Building) => off("the snapshot is being taken".into()),
            Some(SnapshotState::Failed(why)) => off(format!("no snapshot: {why}")),
            None => off(match f.version {
                Some(_) => "no snapshot yet".into(),
                None => "no snapshot yet: $LATEST's is taken after its first cold start".into(),
            }),
        }
    }

    /// Starts taking `f`'s snapshot in the background, unless it wants none, the driver
    /// cannot take one, or one is ready, being taken or failed for this revision.
    pub(crate) fn want_snapshot(self: &Arc<Self>, f: &Arc<FunctionRecord>) {
        if !f.snap_start.is_on() || f.code.is_none() {
            return;
        }
        let Some(sched) = &self.scheduler else {
            return;
        };
        if sched.driver().snapshots(f.network).is_err() {
            return;
        }
        let key = pool_key(f);
        let dir = match sched.snapshots().begin(&key) {
            Ok(Some(dir)) => dir,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(function = %f.name, error = %e, "no snapshot directory");
                return;
            }
        };
        let (cp, f, sched) = (self.clone(), f.clone(), sched.clone());
        let span = tracing::info_span!("snapshot", function = %f.name, version = ?f.version,
            revision = f.revision);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let built = cp.take_snapshot(&sched, &f, key.clone(), &dir).await;
                if built.is_ok() {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "snapshot taken"
                    );
                }
                sched
                    .snapshots()
                    .finish(&key, &dir, built.map_err(|e| e.report()));
            }
            .instrument(span),
        );
    }

    /// Initialises a dedicated sandbox for `f`, runs its before-snapshot hooks and
    /// checkpoints it into `dir`; the sandbox is destroyed either way.
    async fn take_snapshot(
        &self,
        sched: &Arc<Scheduler>,
        f: &FunctionRecord,
        key: PoolKey,
        dir: &std::path::Path,
    ) -> Result<(), CoreError> {
        let id = sched.reserve_unpooled(f.memory.get(), &f.name)?;
        let session = sched.boot(id, f.memory.get(), shape(f)).await?;
        let mut session = match self
            .specialize(sched, session, f, key, &mut ColdTiming::default())
            .await?
        {
            Some(Ready::Session { session, .. }) => session,
            Some(Ready::InitFailed { outcome, .. }) => {
                return Err(CoreError::Conflict(format!(
                    "the function's init failed ({})",
                    outcome.error_type().unwrap_or("unknown error")
                )))
            }
            None => {
                return Err(CoreError::Conflict(
                    "the function's code changed while its snapshot was being taken".into(),
                ))
            }
        };
        let hooks = Snapshot {
            phase: SnapshotPhase::Before,
            env: Vec::new(),
        };
        let within = self.settings.init_timeout + DEADLINE_GRACE;
        match session.snapshot_hooks(hooks, within).await {
            Ok(done) if done.ok => {
                if !done.logs.is_empty() {
                    tracing::info!(output = %done.logs, "before-snapshot hooks");
                }
            }
            Ok(done) => {
                sched.discard(session);
                return Err(CoreError::Conflict(format!(
                    "a before-snapshot hook failed: {}",
                    done.error.unwrap_or_default()
                )));
            }
            Err(e) => {
                sched.discard(session);
                return Err(CoreError::sandbox_from(
                    "running the before-snapshot hooks",
                    e,
                ));
            }
        }
        let checkpointed = sched.driver().checkpoint(&session.id, dir).await;
        // A checkpointed sandbox has exited; what is left of it goes.
        sched.discard(session);
        checkpointed.map_err(CoreError::from)
    }

    /// A cold start of `f` in sandbox `id` (reserved, not booted) from its ready image,
    /// if it has one: `None` when it has none. On a failed restore the sandbox is gone, the
    /// image discarded, and the cold start falls back to a normal one, its logs saying so.
    pub(crate) async fn restore_or_boot(
        &self,
        sched: &Arc<Scheduler>,
        id: SandboxId,
        f: &FunctionRecord,
        key: PoolKey,
        (started, cold): (Instant, &mut ColdTiming),
    ) -> Result<Option<Ready>, CoreError> {
        let Some(image) = sched.snapshots().ready(&key) else {
            let session = sched.boot(id, f.memory.get(), shape(f)).await?;
            cold.sandbox = started.elapsed();
            return self.specialize(sched, session, f, key, cold).await;
        };
        let (why, keep_failed) = match self.restore(sched, id, f, key.clone(), &image.dir).await {
            Ok(ready) => {
                if ready.is_some() {
                    sched.snapshots().restored.fetch_add(1, Ordering::Relaxed);
                }
                // The restore is the sandbox, its code and its init at once.
                cold.sandbox = started.elapsed();
                return Ok(ready);
            }
            Err(failure) => failure,
        };
        sched.snapshots().fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(function = %f.name, reason = %why, "restoring the snapshot failed; cold start instead");
        sched
            .snapshots()
            .discard_image(&key, &image.dir, keep_failed.then(|| why.clone()));
        let note = format!(
            "SnapStart: restoring the snapshot failed ({why}); this is a normal cold start\n"
        );
        let id = sched.reserve_unpooled(f.memory.get(), &f.name)?;
        let reboot = Instant::now();
        let session = sched.boot(id, f.memory.get(), shape(f)).await?;
        cold.sandbox = reboot.elapsed();
        Ok(match self.specialize(sched, session, f, key, cold).await? {
            Some(Ready::Session {
                session,
                cold_start,
                init_logs,
            }) => Some(Ready::Session {
                session,
                cold_start,
                init_logs: note + &init_logs,
            }),
            Some(Ready::InitFailed {
                outcome,
                body,
                logs,
            }) => Some(Ready::InitFailed {
                outcome,
                body,
                logs: note + &logs,
            }),
            None => None,
        })
    }

    /// Restores `image` as sandbox `id` for `f`, and runs the after-restore hooks. `Err`:
    /// why not (the sandbox is gone), and whether the image is to be kept out of use for
    /// this revision (`true`: a hook failed, a new image would fail alike) or rebuilt.
    async fn restore(
        &self,
        sched: &Arc<Scheduler>,
        id: SandboxId,
        f: &FunctionRecord,
        key: PoolKey,
        image: &std::path::Path,
    ) -> Result<Option<Ready>, (String, bool)> {
        match self.link_code(sched, &id, f).await {
            Ok(true) => {}
            Ok(false) => {
                sched.forget_and_destroy(id);
                return Ok(None);
            }
            Err(e) => {
                sched.forget_and_destroy(id);
                return Err((e.report(), false));
            }
        }
        let mut session = sched
            .restore(id, f.memory.get(), shape(f), image)
            .await
            .map_err(|e| (e.report(), false))?;
        session.key = Some(key);
        session.init_type = InitType::SnapStart;
        let hooks = Snapshot {
            phase: SnapshotPhase::AfterRestore,
            env: vec![
                (
                    "AWS_LAMBDA_LOG_STREAM_NAME".to_owned(),
                    log_stream_name(f.version),
                ),
                (
                    "AWS_LAMBDA_INITIALIZATION_TYPE".to_owned(),
                    InitType::SnapStart.as_str().to_owned(),
                ),
            ],
        };
        let within = self.settings.init_timeout + DEADLINE_GRACE;
        let logs = match session.snapshot_hooks(hooks, within).await {
            Ok(done) if done.ok => done.logs,
            Ok(done) => {
                sched.discard(session);
                let why = format!(
                    "an after-restore hook failed: {}",
                    done.error.unwrap_or_default()
                );
                return Err((format!("{why}\n{}", done.logs.trim_end()), true));
            }
            Err(e) => {
                let sandbox = session.id.clone();
                sched.discard(session);
                return Err((
                    format!("sandbox {sandbox} did not answer after its restore: {e}"),
                    false,
                ));
            }
        };
        if let Err(e) = sched.limit_cpu(&session.id, session.memory_mb).await {
            sched.discard(session);
            return Err((e.report(), false));
        }
        tracing::info!(sandbox = %session.id, "sandbox restored from its snapshot");
        Ok(Some(Ready::Session {
            session,
            cold_start: true,
            init_logs: logs,
        }))
    }
}
