//! A function's `requirements.txt`, built for the sandbox's Python into a layer.
//!
//! # Design
//!
//! The pieces: [`normalise`] and [`DepsKey`] (the key), [`find_cached`] (the lookup),
//! [`ControlPlane::requirements_layer`] (lookup, else build and publish), `/v1/requirements`
//! and `PUT /v1/functions/{name}/code?layers=` at the edge, `skyscale function deploy`
//! (`--requirements`) in the CLI.
//!
//! - *The cache key.* The requirements text is normalised ([`normalise`]: line
//!   continuations joined, comments (`#` at a line's start or after whitespace, as pip reads
//!   them) and blank lines dropped, runs of whitespace made one space; order kept, since
//!   pip's resolution may depend on it). Lines that name other files (`-r`, `-c`, `-e`,
//!   local paths, `file:` URLs) are refused by name: only the one file goes to the build,
//!   so they could not be honoured. The key is the SHA-256 of a versioned preamble, the
//!   runtime (`python3.X`: the interpreter, hence the ABI and the wheels pip picks), the
//!   pip options that change what is installed ([`PipOptions`]: the index and extra
//!   indexes; `PIP_TRUSTED_HOST` only relaxes TLS checking, so it is passed through but
//!   not hashed) and the normalised text. Hash lines (`--hash=sha256:…`) are part of the
//!   text, so pinning hashes gives another key.
//! - *The lookup.* The layer is named `skyscale-deps-<first 16 hex digits of the key>`
//!   and its version's description carries the whole key and the runtime
//!   ([`DepsKey::description`]); a version of that layer for that runtime with that exact
//!   description is reused as it is, with no sandbox and no pip ([`find_cached`]). A
//!   version whose description differs (a prefix collision, or a layer a user published
//!   under that name) is never reused. Functions with the same requirements on the same
//!   runtime share the one layer version.
//! - *What runs where.* The control plane reserves one sandbox outside every pool (it
//!   counts in the host's sandbox cap and memory budget; never idle, warm or generic;
//!   discarded after its one build) and boots it through the configured driver (runc or
//!   gVisor; the process driver isolates nothing and is refused) with
//!   `SandboxSpec::network` set: outbound network goes to that build sandbox only, never to
//!   the function's sandboxes, which keep their own setting. It also gets the one writable
//!   bind, `/var/build` (`SandboxSpec::output_dir`), for its result, which may be larger
//!   than an invocation's 6 MB answer. Its `/var/task` holds `requirements.txt` (the
//!   normalised text) and the builder (`runtime/python/deps_builder.py`), which runs
//!   `python3 -m pip install --target /tmp/build/python -r requirements.txt` with the
//!   sandbox's own interpreter (so wheels match its Python and libc), with
//!   `PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL` and `PIP_TRUSTED_HOST` from the control plane's
//!   environment (read at each build). pip enters hash-checking mode by itself when any line
//!   has a `--hash`, as `--require-hashes` does, so hashes are honoured as pip honours them.
//!   Nothing is installed into the host's Python. pip's output is the invocation's output
//!   (at most the agent's 256 KB of logs).
//! - *Progress.* The builder writes pip's output to `/var/build/progress.log` as well
//!   as to its output; the control plane reads the file every 100 ms while the build runs
//!   and sends each line to the request's [`Progress`] channel. `POST /v1/requirements`
//!   with `Accept: text/event-stream` streams those lines as server-sent events, then the
//!   result (or the error), and the CLI prints them as they come. (The agent returns an
//!   invocation's output only with its result; the file is the build's own side channel,
//!   in the one directory it may write.) The build runs on a task of its own, so a caller
//!   that hangs up does not cut a build short: it finishes and its layer is cached.
//! - *Concurrency.* One build per key at a time on a node ([`Builds`]): a request that
//!   finds its key being built is told so, waits, then finds the layer the first one
//!   published and reuses it. Across a cluster's API nodes the lock is per node: two nodes
//!   asked for the same new requirements at the same moment both build and publish (two
//!   versions with the same contents; lookups take the newest). Harmless, and rare.
//! - *On a cluster.* An API node has no sandboxes: it checks, looks up and publishes as
//!   above, and has a worker run the build ([`WorkerBuild`] over the `WorkerLink`): the
//!   first live worker in the rendezvous order of the key (so the same requirements go to
//!   the same worker), spilling past one that is unreachable or full. The worker streams
//!   pip's lines back as they come and answers the zip.
//! - *Publishing.* The build's `/tmp/build` is zipped (`python/...`) into `/var/build`,
//!   read by the control plane before the sandbox is destroyed, and published as the
//!   next version of the key's layer, compatible with the one runtime, with the key's
//!   description; then it is an ordinary layer version (immutable, counted in the 250 MB).
//! - *Failure leaves the function unchanged.* The layer is built (or found) before the
//!   function is touched (`POST /v1/requirements`); then the new code and the layer list
//!   (the deps layer first, then the function's other layers, an earlier deps layer
//!   dropped) are stored in one update (`PUT /v1/functions/{name}/code?layers=`). A
//!   failed build is an error that carries pip's message, and since nothing was stored
//!   the previous code and layers keep answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use skyscale_protocol::{Init, Invoke, InvokeStatus};
use skyscale_store::{LayerVersionRecord, Store};
use skyscale_types::time::epoch_ms;
use skyscale_types::{FunctionName, LayerName, Runtime};

use crate::auth::Action;
use crate::cluster::WorkerBuild;
use crate::layers::LayerSpec;
use crate::runtimes::Runtimes;
use crate::scheduler::{Scheduler, Shape};
use crate::Cluster;
use crate::{blocking, ControlPlane, CoreError, Principal};

/// The builder handler, shipped in the control-plane binary and written into each build
/// sandbox's `/var/task`.
const BUILDER: &str = include_str!("../../../runtime/python/deps_builder.py");
/// Its module (and the handler `<module>.handler`).
const BUILDER_MODULE: &str = "skyscale_deps_builder";
/// What the scheduler's refusals call a build (only its host-wide refusals apply).
const BUILD_NAME: &str = "requirements-build";
/// A build sandbox's memory and `/tmp` (pip's target tree lives in `/tmp`, which counts in
/// the memory limit).
const BUILD_MEMORY_MB: u32 = 1024;
const BUILD_TMP_MB: u32 = 768;
/// How long pip may run.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// The file in `/var/build` the builder writes pip's output to as it runs, and how often
/// the control plane reads it.
const PROGRESS_FILE: &str = "progress.log";
const PROGRESS_POLL: Duration = Duration::from_millis(100);

/// The prefix of every requirements layer's name.
pub const DEPS_LAYER_PREFIX: &str = "skyscale-deps-";
/// How many hex digits of the key name the layer (64 bits).
const NAME_DIGITS: usize = 16;
/// Changes whenever the build's result for the same inputs would change (the key's
/// preamble), so that older layers are not reused for a different build.
const KEY_VERSION: &str = "skyscale-deps v1";

/// The pip settings that pass from the control plane's environment to a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipOptions {
    /// `PIP_INDEX_URL`.
    pub index_url: Option<String>,
    /// `PIP_EXTRA_INDEX_URL` (whitespace-separated, as pip reads it).
    pub extra_index_urls: Vec<String>,
    /// `PIP_TRUSTED_HOST` (whitespace-separated). Not part of the key: it does not change
    /// what is installed.
    pub trusted_hosts: Vec<String>,
}

impl PipOptions {
    /// The options from an environment (`var`: the control plane's `std::env::var`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let list = |name: &str| -> Vec<String> {
            var(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Self {
            index_url: var("PIP_INDEX_URL")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            extra_index_urls: list("PIP_EXTRA_INDEX_URL"),
            trusted_hosts: list("PIP_TRUSTED_HOST"),
        }
    }

    /// The variables a build sandbox is given.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(u) = &self.index_url {
            env.push(("PIP_INDEX_URL".to_owned(), u.clone()));
        }
        if !self.extra_index_urls.is_empty() {
            env.push((
                "PIP_EXTRA_INDEX_URL".to_owned(),
                self.extra_index_urls.join(" "),
            ));
        }
        if !self.trusted_hosts.is_empty() {
            env.push(("PIP_TRUSTED_HOST".to_owned(), self.trusted_hosts.join(" ")));
        }
        env
    }
}

/// Normalises a `requirements.txt` (see the module's documentation); refuses, by name and
/// line, what a build of this one file could not honour, and a file that requires nothing.
pub fn normalise(text: &str) -> Result<String, CoreError> {
    let mut lines: Vec<String> = Vec::new();
    let mut logical = String::new();
    let mut first_line = 1;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            first_line = i + 1;
        }
        // pip joins a line ending in a backslash with the next, before stripping comments.
        if let Some(head) = raw.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        if let Some(line) = normalise_line(&logical, first_line)? {
            lines.push(line);
        }
        logical.clear();
    }
    if let Some(line) = normalise_line(&logical, first_line)? {
        lines.push(line);
    }
    if !lines.iter().any(|l| !l.starts_with('-')) {
        return Err(CoreError::InvalidParameter(
            "requirements.txt requires no package: nothing to install".into(),
        ));
    }
    Ok(lines.join("\n"))
}

/// One logical line without its comment and with single spaces; `None` when blank.
fn normalise_line(line: &str, number: usize) -> Result<Option<String>, CoreError> {
    // A comment starts at a `#` at the start of the line or after whitespace (pip's rule:
    // a `#` inside a URL fragment is not one).
    let mut end = line.len();
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_ws {
            end = i;
            break;
        }
        prev_ws = c.is_whitespace();
    }
    let words: Vec<&str> = line[..end].split_whitespace().collect();
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let refuse = |what: &str| {
        Err(CoreError::InvalidParameter(format!(
            "requirements.txt line {number}: {what} is not supported (only this one file is \
             sent to the build: list the packages themselves, from an index or a URL)"
        )))
    };
    let option = first.split('=').next().unwrap_or(first);
    match option {
        "-r" | "--requirement" => return refuse("including another file (-r)"),
        "-c" | "--constraint" => return refuse("a constraints file (-c)"),
        "-e" | "--editable" => return refuse("an editable install (-e)"),
        "-f" | "--find-links" => return refuse("--find-links"),
        _ => {}
    }
    if first.starts_with("-r")
        || first.starts_with("-c")
        || first.starts_with("-e")
        || first.starts_with("-f")
    {
        return refuse(&format!("option {first:?}"));
    }
    if first.starts_with('.')
        || first.starts_with('/')
        || first.starts_with('~')
        || words.iter().any(|w| {
            let w = w.to_ascii_lowercase();
            w.starts_with("file:") || w.contains("@file:")
        })
    {
        return refuse(&format!("a local path ({first})"));
    }
    Ok(Some(words.join(" ")))
}

/// The cache key of a requirements build (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepsKey {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    pub runtime: Runtime,
}

impl DepsKey {
    /// The key of `normalised` requirements (from [`normalise`]) for `runtime`.
    pub fn new(normalised: &str, runtime: &Runtime, pip: &PipOptions) -> Self {
        let mut h = Sha256::new();
        // Each part is length-prefixed, so no two different inputs hash the same text.
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        part(KEY_VERSION);
        part(runtime.as_str());
        part(pip.index_url.as_deref().unwrap_or(""));
        part(&pip.extra_index_urls.join(" "));
        part(normalised);
        Self {
            sha256: hex::encode(h.finalize()),
            runtime: runtime.clone(),
        }
    }

    /// `skyscale-deps-<first 16 hex digits>`.
    pub fn layer_name(&self) -> LayerName {
        #[allow(clippy::expect_used)] // a fixed prefix and hex digits: always a valid name
        LayerName::parse(&format!(
            "{DEPS_LAYER_PREFIX}{}",
            &self.sha256[..NAME_DIGITS]
        ))
        .expect("a valid layer name")
    }

    /// The description its layer versions carry: the whole key and the runtime.
    pub fn description(&self) -> String {
        format!(
            "requirements.txt built for {} (key sha256:{})",
            self.runtime, self.sha256
        )
    }
}

/// The layer version already built for `key`, if any: the newest version of its layer
/// that is for exactly its runtime and carries exactly its description (blocking).
pub fn find_cached(store: &Store, key: &DepsKey) -> Result<Option<LayerVersionRecord>, CoreError> {
    let description = key.description();
    Ok(store
        .list_layer_versions(&key.layer_name())?
        .into_iter()
        .find(|v| v.description == description && v.compatible_runtimes == [key.runtime.clone()]))
}

/// A requirements layer for a function: found or built.
#[derive(Debug, Clone)]
pub struct DepsLayer {
    pub layer: LayerVersionRecord,
    /// `false`: an existing build was reused (no sandbox, no pip).
    pub built: bool,
    /// pip's output (empty when reused).
    pub output: String,
}

/// A checked request for a requirements layer ([`ControlPlane::requirements_build`]):
/// the caller may build, the runtime is installed, the text is normalised and keyed.
/// Nothing has run yet.
#[derive(Debug)]
pub struct DepsBuild {
    by: Principal,
    normalised: String,
    runtime: Runtime,
    pip: PipOptions,
    key: DepsKey,
}

/// Where a build's progress goes: each line of pip's output as it is printed, and the
/// platform's own notes ("waiting for …"). A receiver that went away only stops the lines.
pub type Progress = tokio::sync::mpsc::Sender<String>;

/// Builds in flight (one per key: a second request for the same requirements waits for
/// the first and then reuses its layer) and how builds ended, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct Builds {
    in_flight: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    built: AtomicU64,
    reused: AtomicU64,
    failed: AtomicU64,
}

/// A key's turn to build; removes the key's entry when no one else waits for it.
struct Turn<'a> {
    builds: &'a Builds,
    key: String,
    /// The key's lock, held for the build (`None` once dropped).
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let gate = tokio::sync::OwnedMutexGuard::mutex(&held).clone();
        drop(held);
        let mut map = self
            .builds
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The map's handle and `gate`: nobody else holds or waits for the key (a new
        // request takes its handle under the map's lock, held here).
        if Arc::strong_count(&gate) == 2 {
            map.remove(&self.key);
        }
    }
}

impl Builds {
    /// Waits for `key`'s turn; `busy` is called first when another build holds it.
    async fn turn(&self, key: &str, busy: impl FnOnce()) -> Turn<'_> {
        let gate = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let held = match gate.clone().try_lock_owned() {
            Ok(held) => held,
            Err(_) => {
                busy();
                gate.clone().lock_owned().await
            }
        };
        Turn {
            builds: self,
            key: key.to_owned(),
            held: Some(held),
        }
    }

    /// `skyscale_requirements_builds_total` in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP skyscale_requirements_builds_total requirements.txt layers asked for, by how \
             they were had: built (pip ran), reused (an earlier build's layer), failed.\n\
             # TYPE skyscale_requirements_builds_total counter\n",
        );
        for (result, n) in [
            ("built", &self.built),
            ("reused", &self.reused),
            ("failed", &self.failed),
        ] {
            out.push_str(&format!(
                "skyscale_requirements_builds_total{{result=\"{result}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

impl ControlPlane {
    /// Checks a request for the layer of `requirements` (a `requirements.txt`'s text) for
    /// `runtime`; [`ControlPlane::requirements_layer`] then finds or builds it.
    pub fn requirements_build(
        &self,
        by: &Principal,
        requirements: &str,
        runtime: &str,
    ) -> Result<DepsBuild, CoreError> {
        by.authorize(Action::ManageLayers, None)?;
        let runtime = Runtime::parse(runtime)?;
        if runtime.is_provided() {
            return Err(CoreError::InvalidParameter(format!(
                "requirements.txt is for Python runtimes: {runtime} brings its own"
            )));
        }
        if !self
            .runtimes
            .installed()
            .iter()
            .any(|r| r == runtime.as_str())
        {
            return Err(CoreError::InvalidParameter(format!(
                "runtime {runtime} is not installed on this host: requirements are built with \
                 the sandboxes' own interpreter"
            )));
        }
        let normalised = normalise(requirements)?;
        // An API node has its workers build.
        if !matches!(self.cluster, Cluster::Api(_)) {
            self.build_sandboxes()?;
        }
        let pip = PipOptions::from_env(|k| std::env::var(k).ok());
        let key = DepsKey::new(&normalised, &runtime, &pip);
        Ok(DepsBuild {
            by: by.clone(),
            normalised,
            runtime,
            pip,
            key,
        })
    }

    /// The layer of a checked request: the one already built for the same key, or a new
    /// one built in a sandbox and published (see the module's documentation), with pip's
    /// output sent to `progress` line by line as it runs. A failed build is an error with
    /// pip's message and publishes nothing. One build per key at a time: a request that
    /// finds its key being built waits, then reuses the result.
    pub async fn requirements_layer(
        &self,
        build: DepsBuild,
        progress: Option<Progress>,
    ) -> Result<DepsLayer, CoreError> {
        let say = |line: String| {
            if let Some(p) = &progress {
                let _ = p.try_send(line);
            }
        };
        let builds = &self.deps_builds;
        let reused = |layer: LayerVersionRecord| {
            builds.reused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(layer = %layer.layer, version = layer.version, "requirements layer reused");
            DepsLayer {
                layer,
                built: false,
                output: String::new(),
            }
        };
        if let Some(layer) = self.cached_deps(&build.key).await? {
            return Ok(reused(layer));
        }
        let _turn = builds
            .turn(&build.key.sha256, || {
                say(
                    "the same requirements are being built by another request: waiting for \
                     that build"
                        .to_owned(),
                )
            })
            .await;
        // The build that held the turn may have published it meanwhile.
        if let Some(layer) = self.cached_deps(&build.key).await? {
            return Ok(reused(layer));
        }
        let built = self.build_and_publish(&build, progress.as_ref()).await;
        match &built {
            Ok(_) => builds.built.fetch_add(1, Ordering::Relaxed),
            Err(_) => builds.failed.fetch_add(1, Ordering::Relaxed),
        };
        built
    }

    async fn cached_deps(&self, key: &DepsKey) -> Result<Option<LayerVersionRecord>, CoreError> {
        let (store, key) = (self.store.clone(), key.clone());
        blocking(move || find_cached(&store, &key)).await
    }

    async fn build_and_publish(
        &self,
        build: &DepsBuild,
        progress: Option<&Progress>,
    ) -> Result<DepsLayer, CoreError> {
        let (zip, output) = match &self.cluster {
            Cluster::Api(node) => {
                let job = WorkerBuild {
                    normalised: build.normalised.clone(),
                    runtime: build.runtime.clone(),
                    pip: build.pip.clone(),
                };
                node.build(&build.key.sha256, &job, progress).await?
            }
            _ => {
                self.build_requirements(&build.normalised, &build.runtime, &build.pip, progress)
                    .await?
            }
        };
        let layer = self
            .publish_layer_version(
                &build.by,
                LayerSpec {
                    name: build.key.layer_name().to_string(),
                    description: Some(build.key.description()),
                    license: None,
                    compatible_runtimes: vec![build.runtime.to_string()],
                    zip,
                },
            )
            .await?;
        Ok(DepsLayer {
            layer,
            built: true,
            output,
        })
    }

    /// A build an API node sent to this worker: its zip and pip's output, with the lines
    /// sent to `progress` as they come. The API node authorized it and publishes the result.
    pub async fn worker_build(
        &self,
        build: WorkerBuild,
        progress: Option<Progress>,
    ) -> Result<(Vec<u8>, String), CoreError> {
        if !matches!(self.cluster, Cluster::Worker(_)) {
            return Err(CoreError::internal("only a worker builds for an API node"));
        }
        self.build_requirements(
            &build.normalised,
            &build.runtime,
            &build.pip,
            progress.as_ref(),
        )
        .await
    }

    /// The scheduler builds run on, or why this node cannot build.
    fn build_sandboxes(&self) -> Result<&Arc<Scheduler>, CoreError> {
        let sched = self
            .scheduler
            .as_ref()
            .ok_or_else(|| CoreError::internal("this node runs no sandboxes"))?;
        if sched.driver().name() == "process" {
            return Err(CoreError::Unsupported(
                "building requirements.txt needs the runc or gvisor driver: the process \
                 driver has no isolated sandbox to give network and a build directory to"
                    .into(),
            ));
        }
        Ok(sched)
    }

    /// Runs pip in a build sandbox; its zipped result and pip's output.
    async fn build_requirements(
        &self,
        normalised: &str,
        runtime: &Runtime,
        pip: &PipOptions,
        progress: Option<&Progress>,
    ) -> Result<(Vec<u8>, String), CoreError> {
        let sched = self.build_sandboxes()?;
        let shape = Shape {
            network: true,
            tmp_mb: BUILD_TMP_MB,
        };
        #[allow(clippy::expect_used)] // a fixed, valid name
        let name = FunctionName::parse(BUILD_NAME).expect("a valid name");
        let id = sched.reserve_unpooled(BUILD_MEMORY_MB, &name)?;
        let out_dir = sched.build_dir(&id);
        let task_dir = sched.task_dir(&id);
        let (o, t, text) = (out_dir.clone(), task_dir.clone(), normalised.to_owned());
        let prepared = blocking(move || {
            let io = |what: &str, e: std::io::Error| CoreError::internal_from(what.to_owned(), e);
            std::fs::create_dir_all(&o).map_err(|e| io("creating the build's output", e))?;
            std::fs::create_dir_all(&t).map_err(|e| io("creating the build's task", e))?;
            std::fs::write(t.join(format!("{BUILDER_MODULE}.py")), BUILDER)
                .map_err(|e| io("writing the builder", e))?;
            std::fs::write(t.join("requirements.txt"), format!("{text}\n"))
                .map_err(|e| io("writing requirements.txt", e))?;
            Ok(())
        })
        .await;
        if let Err(e) = prepared {
            sched.forget_and_destroy(id);
            return Err(e);
        }
        let session = sched
            .boot_with_output(id, BUILD_MEMORY_MB, shape, Some(out_dir.clone()))
            .await?;
        // The sandbox is discarded by `run_build`; its directories go with it, after the
        // zip is read (the discard's removal runs on a task of its own, so read first).
        let output = self
            .run_build(sched, session, runtime, pip, &out_dir, progress)
            .await?;
        Ok(output)
    }

    /// Init and one invocation of the builder; pip's output on success.
    async fn run_build(
        &self,
        sched: &Arc<Scheduler>,
        mut session: crate::session::Session,
        runtime: &Runtime,
        pip: &PipOptions,
        out_dir: &std::path::Path,
        progress: Option<&Progress>,
    ) -> Result<(Vec<u8>, String), CoreError> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("_HANDLER".into(), format!("{BUILDER_MODULE}.handler")),
            ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
            ("LAMBDA_RUNTIME_DIR".into(), "/var/runtime".into()),
        ];
        env.extend(
            crate::runtimes::STARTUP_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env.extend(pip.env());
        let init = Init {
            function_name: BUILD_NAME.to_owned(),
            function_version: "$LATEST".to_owned(),
            memory_mb: BUILD_MEMORY_MB,
            command: Runtimes::command(runtime),
            cwd: "/var/task".to_owned(),
            env,
            init_timeout_ms: self.settings.init_timeout.as_millis() as u64,
        };
        let id = session.id.clone();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            CoreError::sandbox_from(
                format!("requirements build sandbox {id}: {what}"),
                e.to_string(),
            )
        };
        let answer = async {
            match session.init(init, self.settings.init_timeout * 2).await {
                Ok((done, _)) if done.ok => {}
                Ok((done, body)) => {
                    return Err(fail(
                        "the builder did not start",
                        &format!("{} {}", done.logs, String::from_utf8_lossy(&body)),
                    ))
                }
                Err(e) => return Err(fail("init failed", &e)),
            }
            let invoke = Invoke {
                request_id: uuid::Uuid::new_v4().to_string(),
                deadline_ms: epoch_ms(SystemTime::now() + BUILD_TIMEOUT),
                timeout_ms: BUILD_TIMEOUT.as_millis() as u64,
                invoked_function_arn: String::new(),
                client_context: None,
                trace_id: None,
            };
            // pip's output reaches the answer only at the end; the builder also writes it
            // to its output directory, read here while it runs.
            let mut tail = ProgressTail::new(out_dir.join(PROGRESS_FILE), progress);
            let running = tokio::time::timeout(
                BUILD_TIMEOUT + Duration::from_secs(5),
                session.invoke(invoke, b"{}".to_vec()),
            );
            tokio::pin!(running);
            let finished = loop {
                tokio::select! {
                    done = &mut running => break done,
                    () = tokio::time::sleep(PROGRESS_POLL) => tail.read().await,
                }
            };
            tail.read().await;
            tail.finish().await;
            match finished {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(fail("the builder failed", &e)),
                Err(_) => Err(CoreError::RequestTimeout(format!(
                    "installing requirements.txt took longer than {}s",
                    BUILD_TIMEOUT.as_secs()
                ))),
            }
        }
        .await;
        // Read before the sandbox (and its output directory) is removed.
        let zip = match &answer {
            Ok((r, _)) if r.status == InvokeStatus::Ok => {
                tokio::fs::read(out_dir.join("layer.zip")).await.ok()
            }
            _ => None,
        };
        sched.discard(session);
        let (result, body) = answer?;
        if result.status != InvokeStatus::Ok {
            return Err(fail(
                "the builder failed",
                &format!("{:?}: {}", result.status, String::from_utf8_lossy(&body)),
            ));
        }
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| fail("the builder's answer is not JSON", &e))?;
        if doc["ok"].as_bool() != Some(true) {
            return Err(CoreError::InvalidParameter(format!(
                "installing requirements.txt for {runtime} failed (pip exited with {}):\n{}",
                doc["exit_code"],
                doc["output"].as_str().unwrap_or_default().trim_end()
            )));
        }
        let zip = zip.ok_or_else(|| fail("the builder left no layer.zip", &"missing"))?;
        Ok((zip, result.logs))
    }
}

/// Reads what the builder appended to its progress file since the last read and sends
/// each whole line on.
struct ProgressTail<'a> {
    path: std::path::PathBuf,
    to: Option<&'a Progress>,
    read: u64,
    partial: Vec<u8>,
}

impl<'a> ProgressTail<'a> {
    fn new(path: std::path::PathBuf, to: Option<&'a Progress>) -> Self {
        Self {
            path,
            to,
            read: 0,
            partial: Vec::new(),
        }
    }

    async fn read(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Some(to) = self.to else { return };
        // Absent until the builder starts; a read error only delays the lines.
        let Ok(mut f) = tokio::fs::File::open(&self.path).await else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.read)).await.is_err() {
            return;
        }
        let mut new = Vec::new();
        // At most what the agent would keep of the output anyway, per read.
        let Ok(n) = (&mut f).take(256 * 1024).read_to_end(&mut new).await else {
            return;
        };
        self.read += n as u64;
        self.partial.extend_from_slice(&new);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            // Waits for a slow reader (pip is not held up: it writes to the file).
            let _ = to.send(text).await;
        }
    }

    /// Sends what is left of an unterminated last line.
    async fn finish(&mut self) {
        if let (Some(to), false) = (self.to, self.partial.is_empty()) {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            let _ = to.send(text).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use skyscale_store::{CodeRef, NewLayerVersion};

    use super::*;

    fn py(v: &str) -> Runtime {
        Runtime::parse(v).unwrap()
    }

    fn key(text: &str) -> DepsKey {
        DepsKey::new(
            &normalise(text).unwrap(),
            &py("python3.12"),
            &PipOptions::default(),
        )
    }

    #[tokio::test]
    async fn a_keys_turn_is_forgotten_once_nobody_holds_or_waits_for_it() {
        let builds = Builds::default();
        let first = builds.turn("k", || panic!("nobody builds k yet")).await;
        // A second request for the key is told and waits (given up on here).
        let mut told = false;
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), builds.turn("k", || told = true)).await;
        assert!(told && waiting.is_err(), "it waited");
        assert_eq!(builds.in_flight.lock().unwrap().len(), 1, "still held");
        drop(first);
        assert!(builds.in_flight.lock().unwrap().is_empty(), "forgotten");
        // And the key can be taken again at once.
        drop(builds.turn("k", || panic!("free again")).await);
    }

    #[test]
    fn comments_blank_lines_and_spacing_do_not_change_the_key() {
        let plain = "requests==2.32.3\npydantic-core==2.27.2\n";
        let noisy = "# deps\n\n  requests==2.32.3   # http\n\npydantic-core==2.27.2\n";
        assert_eq!(
            normalise(noisy).unwrap(),
            "requests==2.32.3\npydantic-core==2.27.2"
        );
        assert_eq!(key(plain), key(noisy));
        // Windows line endings too.
        assert_eq!(key(plain), key(&plain.replace('\n', "\r\n")));
    }

    #[test]
    fn continuations_are_joined_and_hashes_kept() {
        let text = "six==1.16.0 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n";
        assert_eq!(
            normalise(text).unwrap(),
            "six==1.16.0 --hash=sha256:aaaa --hash=sha256:bbbb"
        );
        assert_ne!(
            key(text),
            key("six==1.16.0\n"),
            "hashes are part of the key"
        );
        // A '#' inside a word (a URL's fragment) is not a comment.
        assert_eq!(
            normalise("pkg @ https://h/p.zip#sha256=abc").unwrap(),
            "pkg @ https://h/p.zip#sha256=abc"
        );
    }

    #[test]
    fn what_changes_the_result_changes_the_key() {
        let base = key("six==1.16.0");
        assert_ne!(base, key("six==1.17.0"));
        assert_ne!(base, key("six==1.16.0\nattrs"));
        // Order is kept: pip's resolution may depend on it.
        assert_ne!(key("a\nb"), key("b\na"));
        let n = normalise("six==1.16.0").unwrap();
        assert_ne!(
            base,
            DepsKey::new(&n, &py("python3.11"), &PipOptions::default())
        );
        let index = PipOptions::from_env(|v| {
            (v == "PIP_INDEX_URL").then(|| "https://mirror.example/simple".to_owned())
        });
        assert_ne!(base, DepsKey::new(&n, &py("python3.12"), &index));
        let extra = PipOptions::from_env(|v| {
            (v == "PIP_EXTRA_INDEX_URL").then(|| "https://extra.example/simple".to_owned())
        });
        assert_ne!(base, DepsKey::new(&n, &py("python3.12"), &extra));
        // A trusted host does not change what is installed.
        let trusted = PipOptions::from_env(|v| {
            (v == "PIP_TRUSTED_HOST").then(|| "mirror.example".to_owned())
        });
        assert_eq!(base, DepsKey::new(&n, &py("python3.12"), &trusted));
        assert_eq!(
            trusted.env(),
            vec![("PIP_TRUSTED_HOST".to_owned(), "mirror.example".to_owned())]
        );
    }

    #[test]
    fn pip_options_pass_through_as_pip_reads_them() {
        let o = PipOptions::from_env(|v| match v {
            "PIP_INDEX_URL" => Some(" https://i/simple ".into()),
            "PIP_EXTRA_INDEX_URL" => Some("https://a/simple  https://b/simple".into()),
            _ => None,
        });
        assert_eq!(o.index_url.as_deref(), Some("https://i/simple"));
        assert_eq!(o.extra_index_urls, ["https://a/simple", "https://b/simple"]);
        assert_eq!(
            o.env(),
            vec![
                ("PIP_INDEX_URL".to_owned(), "https://i/simple".to_owned()),
                (
                    "PIP_EXTRA_INDEX_URL".to_owned(),
                    "https://a/simple https://b/simple".to_owned()
                ),
            ]
        );
        assert!(PipOptions::from_env(|_| None).env().is_empty());
    }

    #[test]
    fn what_a_single_file_build_cannot_honour_is_refused_by_name() {
        for (text, says) in [
            ("-r base.txt", "-r"),
            ("--requirement=base.txt", "-r"),
            ("six\n-c constraints.txt", "line 2: a constraints file"),
            ("-e git+https://h/r.git#egg=x", "editable"),
            ("--find-links ./wheels\nsix", "--find-links"),
            ("./mypkg", "local path"),
            ("/abs/pkg.whl", "local path"),
            ("file:///tmp/pkg.whl", "local path"),
            ("pkg @ file:///tmp/pkg.whl", "local path"),
        ] {
            let e = normalise(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains("requirements.txt line"), "{text:?}: {e}");
        }
        for text in ["", "# only a comment\n\n", "--index-url https://i/simple"] {
            let e = normalise(text).unwrap_err().to_string();
            assert!(e.contains("requires no package"), "{text:?}: {e}");
        }
        // Options pip accepts in the file stay (and count in the key).
        assert_eq!(
            normalise("--index-url https://i/simple\nsix").unwrap(),
            "--index-url https://i/simple\nsix"
        );
    }

    #[test]
    fn the_layer_name_is_valid_and_carries_the_key_prefix() {
        let k = key("six");
        let name = k.layer_name();
        assert_eq!(name.as_str(), format!("skyscale-deps-{}", &k.sha256[..16]));
        assert!(k.description().contains(&k.sha256));
        assert!(k.description().contains("python3.12"));
    }

    #[test]
    fn an_existing_build_is_found_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let k = key("six==1.16.0");
        assert!(
            find_cached(&store, &k).unwrap().is_none(),
            "nothing built yet"
        );

        let publish = |description: String, runtime: &str, c: char| {
            store
                .publish_layer_version(&NewLayerVersion {
                    layer: k.layer_name(),
                    description,
                    license: None,
                    compatible_runtimes: vec![py(runtime)],
                    code: CodeRef {
                        sha256: c.to_string().repeat(64),
                        size: 10,
                    },
                    unzipped_size: 100,
                })
                .unwrap()
        };
        // Same name, but not this key's build (another runtime, another description).
        publish(k.description(), "python3.11", 'a');
        publish("published by hand".into(), "python3.12", 'b');
        assert!(find_cached(&store, &k).unwrap().is_none());

        let built = publish(k.description(), "python3.12", 'c');
        let found = find_cached(&store, &k).unwrap().unwrap();
        assert_eq!((found.version, found.code), (built.version, built.code));
        // Another key's layer is another layer.
        assert!(find_cached(&store, &key("six==1.17.0")).unwrap().is_none());
    }
}
