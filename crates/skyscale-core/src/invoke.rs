//! The invoke path: ask the scheduler for a sandbox (warm, a generic one to specialise, or a
//! fresh boot), send the event, and turn the agent's answer into the caller's.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use skyscale_protocol::{exit_message, ExitStatus, Init, Invoke, InvokeResult};
use skyscale_sandbox::SandboxId;
use skyscale_store::{CodePin, FunctionRecord};
use skyscale_types::invocation::InitType;
use skyscale_types::time::epoch_ms;
use skyscale_types::version_label;
use tracing::Instrument;

use crate::logs::{self, Report};
use crate::observe::{Crash, Invocation, InvocationHead, Outcome};
use crate::runtimes::{Runtimes, STARTUP_ENV};
use crate::scheduler::{link_tree, merge_tree, Acquired, BusyGuard, Scheduler, Shape};
use crate::session::{PoolKey, Session, SessionError};
use crate::Trigger;
use crate::{blocking, Cluster, ControlPlane, CoreError, Principal};

/// Tells the Python bootstrap where a function's layers are (`/opt`; translated by the
/// process driver), so that it puts `/opt/python` on `sys.path`; set only for a function
/// with layers, and removed by the bootstrap before the handler runs.
const OPT_ENV: &str = "_SKYSCALE_OPT";

/// Largest synchronous invoke payload, as in Lambda.
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;

/// How long past the function's timeout the control plane waits for the agent's own
/// timeout report before it gives up on the sandbox itself.
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// How often a cold start starts over because its function's code was replaced (and the
/// old package collected) while it was being prepared.
const MAX_RESTARTS: u32 = 3;

/// How to invoke: which version, and what the caller passes besides the payload.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// `None` or `$LATEST`, a published version's number, or an alias.
    pub qualifier: Option<String>,
    /// Raw JSON handed to the runtime as `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    /// How the invocation arrived (for its record).
    pub trigger: Trigger,
    /// When the request was accepted, if earlier than this call (an `Event` invocation
    /// waits in the background): the record's queue wait starts there.
    pub accepted_at: Option<Instant>,
    /// The asynchronous event this invocation is an attempt of (for its record).
    pub event: Option<EventAttempt>,
}

/// An attempt of a queued asynchronous event: its id and which attempt (1…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAttempt {
    pub id: String,
    pub attempt: u32,
}

/// What an invocation produced.
#[derive(Debug)]
pub struct InvokeOutput {
    pub request_id: String,
    /// The version that ran: `$LATEST` or a published version's number.
    pub executed_version: String,
    /// The handler's result, or the error document when the outcome is a failure.
    pub body: Vec<u8>,
    /// How it ended (exception, init error, timeout, crash).
    pub outcome: Outcome,
    pub cold_start: bool,
    /// How the sandbox that ran it was initialised.
    pub init_type: InitType,
    /// Cold starts: getting a sandbox ready (boot or specialisation, plus the runtime's init).
    pub init_duration: Option<Duration>,
    /// The invocation itself, as the control plane measured it.
    pub duration: Duration,
    /// Peak memory of the sandbox's processes during the invocation, MiB.
    pub max_memory_used_mb: u64,
    /// What the function printed during this invocation (and its init, on a cold start),
    /// framed by the platform's `START`, `END` and `REPORT` lines (see [`crate::logs`]).
    pub logs: String,
    pub timing: InvokeTiming,
}

impl InvokeOutput {
    /// `Some("Unhandled")` when the function failed (exception, init error, timeout, crash).
    pub fn function_error(&self) -> Option<&'static str> {
        self.outcome.function_error()
    }

    /// The error type when the function failed, e.g. `ValueError`, `Sandbox.Timedout`.
    pub fn error_type(&self) -> Option<&str> {
        self.outcome.error_type()
    }
}

/// Where the time of one invocation went (the `server-timing` header).
#[derive(Debug, Clone, Copy, Default)]
pub struct InvokeTiming {
    /// Loading the function's record.
    pub lookup: Duration,
    /// Getting a ready sandbox: immediate when warm, the whole cold start otherwise.
    pub acquire: Duration,
    /// Invoke frame out to Result frame back, as the control plane saw it.
    pub agent: Duration,
    /// The agent's own measure: event handed to the runtime until its answer arrived.
    pub runtime: Duration,
    /// The parts of `acquire` on a cold start (zero on a warm one, and on an API node,
    /// which gets only `acquire` from its worker).
    pub cold: ColdTiming,
}

/// Where a cold start's time went: parts of [`InvokeTiming::acquire`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ColdTiming {
    /// Getting a booted sandbox: taking a generic one from the pool, or booting one.
    pub sandbox: Duration,
    /// Placing the code: linking the package into `/var/task` and the layers into `/opt`,
    /// and setting the function's memory limit.
    pub place: Duration,
    /// `Init` out to `InitDone` back: the runtime's start (skipped when the sandbox's
    /// pre-started runtime is used), the bootstrap and the handler module's import.
    pub init: Duration,
}

fn error_doc(error_type: &str, message: &str) -> Vec<u8> {
    serde_json::json!({ "errorType": error_type, "errorMessage": message })
        .to_string()
        .into_bytes()
}

/// `<ts> <id> Task timed out after 3.00 seconds`.
fn timeout_message(request_id: &str, timeout: Duration) -> String {
    format!(
        "{} {request_id} Task timed out after {:.2} seconds",
        skyscale_store::now_rfc3339(),
        timeout.as_secs_f64()
    )
}

/// The `errorMessage` of an error document.
fn error_message(body: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(doc.get("errorMessage")?.as_str()?.to_owned())
}

/// A sandbox ready to run the invocation, or the reason it never got there.
pub(crate) enum Ready {
    Session {
        session: Session,
        cold_start: bool,
        init_logs: String,
    },
    /// The runtime failed to initialise: how, its document and what it printed.
    InitFailed {
        outcome: Outcome,
        body: Vec<u8>,
        logs: String,
    },
}

impl ControlPlane {
    /// Invokes the function's `$LATEST` synchronously with `payload` (JSON bytes, passed
    /// through as-is).
    pub async fn invoke(
        self: &Arc<Self>,
        by: &Principal,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<InvokeOutput, CoreError> {
        self.invoke_with(by, name, InvokeOptions::default(), payload)
            .await
    }

    /// Invokes the version `opts.qualifier` names synchronously with `payload`.
    pub async fn invoke_with(
        self: &Arc<Self>,
        by: &Principal,
        name: &str,
        opts: InvokeOptions,
        payload: Vec<u8>,
    ) -> Result<InvokeOutput, CoreError> {
        self.authorize_invoke(by, name, opts.qualifier.as_deref(), opts.trigger)
            .await?;
        if payload.len() > MAX_SYNC_PAYLOAD {
            return Err(CoreError::PayloadTooLarge(format!(
                "invoke payload is {} bytes: the limit is {MAX_SYNC_PAYLOAD} bytes",
                payload.len()
            )));
        }
        let payload = if payload.iter().all(u8::is_ascii_whitespace) {
            b"{}".to_vec()
        } else {
            // JSON is UTF-8, but skipping over a string does not check it: check it first, or
            // bytes the runtime cannot decode would reach it as a valid payload.
            let checked = std::str::from_utf8(&payload)
                .map_err(|e| format!("it is not UTF-8 ({e})"))
                .and_then(|text| {
                    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())
                });
            if let Err(e) = checked {
                return Err(CoreError::InvalidRequest(format!(
                    "invoke payload is not valid JSON: {e}"
                )));
            }
            payload
        };
        let lookup_started = Instant::now();
        let accepted_at = opts.accepted_at.unwrap_or(lookup_started);
        let f = self
            .version_record(name, opts.qualifier.as_deref(), true)
            .await?;
        let lookup = lookup_started.elapsed();
        if f.code.is_none() {
            return Err(CoreError::Conflict(format!(
                "function {} has no code deployed yet: deploy a package first",
                f.name
            )));
        }
        // Time-ordered (UUIDv7, random below the millisecond): records are keyed and indexed
        // by request id, and ids that arrive in order are appended to those B-trees instead
        // of dirtying a random page each (measured: see BENCHMARKS.md).
        let request_id = uuid::Uuid::now_v7().to_string();
        let span = tracing::info_span!("invoke", function = %f.name, request_id = %request_id);
        // The invocation runs in a task of its own. If the caller goes away (its connection
        // closes), the function still runs to its end, as in Lambda, and its sandbox goes
        // back to the pool or is destroyed; dropping this future halfway would strand a
        // sandbox in the middle of a frame conversation.
        let cp = self.clone();
        let client_context = opts.client_context;
        let record = f.clone();
        let head = InvocationHead {
            request_id: request_id.clone(),
            function: f.name.to_string(),
            version: version_label(f.version),
            caller: by.key_id.as_ref().map(|k| k.to_string()),
            trigger: opts.trigger,
            started_at: SystemTime::now(),
            queue_wait: accepted_at.elapsed(),
            memory_size_mb: f.memory.get(),
            event: opts.event,
        };
        // The ARN as invoked: with the alias (or version) the caller named.
        let invoked_arn = match opts.qualifier.as_deref() {
            None | Some("$LATEST") => self.function_arn(&f),
            Some(q) => format!("{}:{q}", self.base_arn(&f)),
        };
        let task = async move {
            let result = cp
                .invoke_function(
                    f,
                    request_id,
                    payload,
                    (invoked_arn, client_context),
                    lookup,
                )
                .await;
            let ended_at = SystemTime::now();
            cp.observe(match &result {
                Ok(out) => Invocation::finished(head, out, ended_at),
                Err(e) => Invocation::refused(head, e, ended_at),
            });
            // SnapStart: a revision without a snapshot gets one, after this invocation (so
            // that it does not compete with it for CPU).
            cp.want_snapshot(&record);
            result
        };
        tokio::spawn(task.instrument(span))
            .await
            .map_err(|e| CoreError::internal_from("invocation task failed", e))?
    }

    /// Checks that `by` may invoke the version `qualifier` names and that it exists, without
    /// running it (Lambda's `DryRun`, and the check before an `Event` is accepted).
    pub async fn check_invoke(
        &self,
        by: &Principal,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), CoreError> {
        self.authorize_invoke(by, name, qualifier, Trigger::Sync)
            .await?;
        self.version_record(name, qualifier, false).await?;
        Ok(())
    }

    /// Runs one invocation: here (roles `all` and `worker`) or, on an API node, on a worker
    /// (`cluster::api`).
    async fn invoke_function(
        &self,
        f: Arc<FunctionRecord>,
        request_id: String,
        payload: Vec<u8>,
        context: (String, Option<String>),
        lookup: Duration,
    ) -> Result<InvokeOutput, CoreError> {
        match &self.cluster {
            Cluster::Api(node) => {
                let mut out = node.invoke(f, request_id, payload, context).await?;
                out.timing.lookup = lookup;
                Ok(out)
            }
            Cluster::Single | Cluster::Worker(_) => {
                self.invoke_local(f, request_id, payload, context, lookup)
                    .await
            }
        }
    }

    /// Runs one invocation in a sandbox of this node.
    pub(crate) async fn invoke_local(
        &self,
        f: Arc<FunctionRecord>,
        request_id: String,
        payload: Vec<u8>,
        (invoked_arn, client_context): (String, Option<String>),
        lookup: Duration,
    ) -> Result<InvokeOutput, CoreError> {
        let sched = self
            .scheduler
            .as_ref()
            .ok_or_else(|| CoreError::internal("this node runs no sandboxes"))?;
        let acquire_started = Instant::now();
        let mut f = f;
        let mut restarts = 0;
        let mut cold = ColdTiming::default();
        // `_busy` is held until this function returns: the slot counts against the
        // function's reserved concurrency on every path, including errors.
        let (ready, _busy) = loop {
            match self.acquire_ready(sched, &f, &mut cold).await? {
                (Some(ready), busy) => break (ready, busy),
                // The package `f` names was collected: a deploy or delete replaced `f`
                // after it was read. Start over with the current record.
                (None, _) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    f = self.reload(&f).await?;
                }
                (None, _) => {
                    return Err(CoreError::Conflict(format!(
                        "the code of function {} kept changing while a sandbox was being \
                         prepared for it: try again",
                        f.name
                    )))
                }
            }
        };
        let version = version_label(f.version);
        let acquire = acquire_started.elapsed();
        let init_duration = match &ready {
            Ready::Session {
                cold_start: false, ..
            } => None,
            _ => Some(acquire),
        };
        let init_type = match &ready {
            Ready::Session { session, .. } => session.init_type,
            Ready::InitFailed { .. } => InitType::OnDemand,
        };
        let mut out = InvokeOutput {
            request_id,
            executed_version: version.clone(),
            body: Vec::new(),
            outcome: Outcome::Success,
            cold_start: init_duration.is_some(),
            init_type,
            init_duration,
            duration: Duration::ZERO,
            max_memory_used_mb: 0,
            logs: String::new(),
            timing: InvokeTiming {
                lookup,
                acquire,
                cold,
                ..InvokeTiming::default()
            },
        };
        let (mut session, init_logs) = match ready {
            Ready::Session {
                session, init_logs, ..
            } => (session, init_logs),
            Ready::InitFailed {
                outcome,
                body,
                logs,
            } => {
                out.outcome = outcome;
                out.body = body;
                // The failed init is this invocation's work (Lambda retries a failed init
                // inside the invoke phase): its output goes between START and END.
                out.logs = logs::frame(
                    "",
                    &logs,
                    &Report {
                        request_id: &out.request_id,
                        version: &version,
                        duration: acquire,
                        memory_mb: f.memory.get(),
                        max_rss_kb: 0,
                        init_duration: None,
                        restored: false,
                        timeout_line: None,
                    },
                );
                return Ok(out);
            }
        };

        let timeout = f.timeout.duration();
        let invoke = Invoke {
            request_id: out.request_id.clone(),
            deadline_ms: epoch_ms(SystemTime::now() + timeout),
            timeout_ms: timeout.as_millis() as u64,
            invoked_function_arn: invoked_arn,
            client_context,
            trace_id: None,
        };
        let started = Instant::now();
        let answer =
            tokio::time::timeout(timeout + DEADLINE_GRACE, session.invoke(invoke, payload)).await;
        out.duration = started.elapsed();
        out.timing.agent = out.duration;
        let mut max_rss_kb = 0;
        let mut timeout_line = None;
        match answer {
            Ok(Ok((result, body))) => {
                max_rss_kb = result.max_rss_kb;
                if result.status == skyscale_protocol::InvokeStatus::Timeout {
                    timeout_line = Some(
                        error_message(&body)
                            .unwrap_or_else(|| timeout_message(&out.request_id, timeout)),
                    );
                }
                self.finish(sched, &mut out, session, result, body).await
            }
            Ok(Err(e)) => {
                // The agent vanished mid-invocation: the sandbox was killed (often by the
                // memory limit) or crashed.
                tracing::warn!(sandbox = %session.id, error = %e, "sandbox failed during invocation");
                out.outcome = self.crash_cause(sched, &session.id, Crash::Vanished).await;
                out.body = error_doc(
                    out.outcome.error_type().unwrap_or_default(),
                    &exit_message(&out.request_id, None),
                );
                sched.discard(session);
            }
            Err(_) => {
                tracing::warn!(sandbox = %session.id, "agent missed the deadline; destroying sandbox");
                out.outcome = Outcome::Timeout;
                let message = timeout_message(&out.request_id, timeout);
                out.body = error_doc(out.outcome.error_type().unwrap_or_default(), &message);
                timeout_line = Some(message);
                sched.discard(session);
            }
        }
        out.max_memory_used_mb = max_rss_kb.div_ceil(1024);
        out.logs = logs::frame(
            &init_logs,
            &out.logs,
            &Report {
                request_id: &out.request_id,
                version: &version,
                duration: out.duration,
                memory_mb: f.memory.get(),
                max_rss_kb,
                init_duration: out.init_duration,
                restored: out.init_type == InitType::SnapStart,
                timeout_line: timeout_line.as_deref(),
            },
        );
        tracing::info!(
            cold_start = out.cold_start,
            duration_us = out.duration.as_micros() as u64,
            error_type = out.error_type().unwrap_or(""),
            "invocation finished"
        );
        Ok(out)
    }

    /// Records the agent's answer; a sandbox that timed out or crashed is never reused.
    async fn finish(
        &self,
        sched: &Arc<Scheduler>,
        out: &mut InvokeOutput,
        session: Session,
        result: InvokeResult,
        body: Vec<u8>,
    ) {
        out.logs = result.logs;
        out.timing.runtime = Duration::from_micros(result.duration_us);
        out.body = body;
        out.outcome = match Outcome::of_result(result.status) {
            Outcome::Crashed(crash) => self.crash_cause(sched, &session.id, crash).await,
            other => other,
        };
        match out.outcome {
            Outcome::Success | Outcome::FunctionError { .. } => sched.release(session),
            Outcome::Timeout | Outcome::Crashed(_) => sched.discard(session),
        }
    }

    /// A crash whose sandbox's memory cgroup saw the OOM killer is `OutOfMemory`: to the
    /// agent a memory-limit kill is a SIGKILL like any other, and under gVisor the killed
    /// process is often the Sentry, so the agent vanishes. Asked only after a crash (the
    /// warm path reads nothing), before the sandbox is destroyed; a sandbox serves one
    /// function and a crash ends it, so any OOM kill it counts belongs to this function.
    async fn crash_cause(
        &self,
        sched: &Arc<Scheduler>,
        sandbox: &SandboxId,
        crash: Crash,
    ) -> Outcome {
        let killed = matches!(
            crash,
            Crash::Vanished | Crash::Exited(ExitStatus::Signal(9))
        );
        if killed
            && sched
                .driver()
                .oom_kills(sandbox)
                .await
                .is_some_and(|n| n > 0)
        {
            return Outcome::Crashed(Crash::OutOfMemory);
        }
        Outcome::Crashed(crash)
    }

    fn base_arn(&self, f: &FunctionRecord) -> String {
        self.settings.function_arn(f.name.as_str())
    }

    /// The ARN as invoked: qualified with the version for a published one.
    fn function_arn(&self, f: &FunctionRecord) -> String {
        let arn = self.base_arn(f);
        match f.version {
            Some(n) => format!("{arn}:{n}"),
            None => arn,
        }
    }

    /// A sandbox ready for `f` (warm, or specialised now) and its busy slot; `None` if
    /// `f`'s code package was collected before it could be linked (`f` is stale).
    /// `cold` gets the phases of a cold start.
    async fn acquire_ready(
        &self,
        sched: &Arc<Scheduler>,
        f: &FunctionRecord,
        cold: &mut ColdTiming,
    ) -> Result<(Option<Ready>, BusyGuard), CoreError> {
        let started = Instant::now();
        let key = PoolKey {
            function: f.name.clone(),
            revision: f.revision,
            version: f.version,
        };
        let shape = Shape {
            network: f.network,
            tmp_mb: f.ephemeral_mb,
        };
        // SnapStart: with a ready snapshot, a cold start restores it into a sandbox of its
        // own rather than specialising a generic one (see `snapstart.rs`).
        let generic = !f.snap_start.is_on() || sched.snapshots().ready(&key).is_none();
        let (acquired, busy) =
            sched.acquire(&key, f.memory.get(), f.reserved_concurrency, shape, generic)?;
        let ready = match acquired {
            Acquired::Warm(session) => Some(Ready::Session {
                session,
                cold_start: false,
                init_logs: String::new(),
            }),
            Acquired::Generic(session) => {
                tracing::debug!(sandbox = %session.id, "specialising a generic sandbox");
                cold.sandbox = started.elapsed();
                self.specialize(sched, session, f, key, cold).await?
            }
            Acquired::Boot(id) => {
                tracing::debug!(sandbox = %id, "no generic sandbox ready; booting one");
                self.restore_or_boot(sched, id, f, key, (started, cold))
                    .await?
            }
        };
        Ok((ready, busy))
    }

    /// The current record of the function and version `f` is a stale copy of.
    async fn reload(&self, f: &FunctionRecord) -> Result<Arc<FunctionRecord>, CoreError> {
        match f.version {
            None => self.functions.invalidate(&f.name),
            Some(n) => self.versions.invalidate(&(f.name.clone(), n)),
        }
        let version = version_label(f.version);
        self.version_record(f.name.as_str(), Some(&version), false)
            .await
    }

    /// Pins a package for a cold start; on a shared store fetches it first if this host
    /// lacks it. `None`: it is no longer stored (collected after the record naming it was
    /// read).
    async fn pin_package(&self, sha256: &str) -> Result<Option<CodePin>, CoreError> {
        match self.code.pin(sha256) {
            Some(pin) => Ok(Some(pin)),
            // Not on this host: on a shared store, another host took the upload.
            None if self.store.is_shared() => {
                let (store, cs, sha) = (self.store.clone(), self.code.clone(), sha256.to_owned());
                blocking(move || crate::code::fetch_code(&store, &cs, &sha)).await
            }
            None => Ok(None),
        }
    }

    /// Links `f`'s code into sandbox `id`'s `/var/task` and its layers into its `/opt`;
    /// `false` if `f`'s package is no longer stored.
    pub(crate) async fn link_code(
        &self,
        sched: &Arc<Scheduler>,
        id: &SandboxId,
        f: &FunctionRecord,
    ) -> Result<bool, CoreError> {
        let code = f
            .code
            .as_ref()
            .ok_or_else(|| CoreError::internal("function has no code"))?;
        // Pinned while they are linked; once linked, the sandbox's hard links (or
        // copies) no longer need the packages (see `code.rs`). The layers are merged in
        // order into its `/opt`, a later one winning on the same path.
        let Some(pin) = self.pin_package(&code.sha256).await? else {
            return Ok(false);
        };
        let mut layers = Vec::with_capacity(f.layers.len());
        for layer in &f.layers {
            let Some(pin) = self.pin_package(&layer.code.sha256).await? else {
                return Ok(false);
            };
            layers.push((self.code.dir(&layer.code.sha256), pin));
        }
        let src = self.code.dir(&code.sha256);
        let dst = sched.task_dir(id);
        let opt = sched.opt_dir(id);
        blocking(move || {
            std::fs::create_dir_all(&dst)
                .and_then(|()| std::fs::create_dir_all(&opt))
                .map_err(|e| CoreError::internal_from(format!("creating {}", dst.display()), e))?;
            link_tree(&src, &dst).map_err(|e| {
                CoreError::internal_from(format!("linking code into {}", dst.display()), e)
            })?;
            drop(pin);
            for (src, pin) in layers {
                merge_tree(&src, &opt).map_err(|e| {
                    CoreError::internal_from(format!("linking a layer into {}", opt.display()), e)
                })?;
                drop(pin);
            }
            Ok(())
        })
        .await?;
        Ok(true)
    }

    /// Turns a booted sandbox into one of `f`'s: links the code into its `/var/task` and its
    /// layers into its `/opt`, sets
    /// the function's memory limit and initialises the runtime. `None` (the sandbox
    /// discarded) if `f`'s package is no longer stored.
    pub(crate) async fn specialize(
        &self,
        sched: &Arc<Scheduler>,
        mut session: Session,
        f: &FunctionRecord,
        key: PoolKey,
        cold: &mut ColdTiming,
    ) -> Result<Option<Ready>, CoreError> {
        let placing = Instant::now();
        let prepared = async {
            if !self.link_code(sched, &session.id, f).await? {
                return Ok(false);
            }
            sched.resize(&mut session, f.memory.get()).await?;
            Ok(true)
        }
        .await;
        cold.place = placing.elapsed();
        match prepared {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(sandbox = %session.id, "the function's code changed before its sandbox was specialised; starting over");
                sched.discard(session);
                return Ok(None);
            }
            Err(e) => {
                sched.discard(session);
                return Err(e);
            }
        }
        session.key = Some(key);
        let init = self.init_frame(f, session.init_type);
        let initialising = Instant::now();
        let initialised = session
            .init(init, self.settings.init_timeout + DEADLINE_GRACE)
            .await;
        cold.init = initialising.elapsed();
        match initialised {
            Ok((done, _)) if done.ok => {
                // Init ran with the CPU the host could spare (Lambda's init gets a boost too:
                // imports are the heaviest part of a cold start); the function's share of the
                // CPU applies from its first invocation on.
                let limited = sched.limit_cpu(&session.id, session.memory_mb).await;
                if let Err(e) = limited {
                    sched.discard(session);
                    return Err(e);
                }
                tracing::info!(sandbox = %session.id, "sandbox ready");
                Ok(Some(Ready::Session {
                    session,
                    cold_start: true,
                    init_logs: done.logs,
                }))
            }
            Ok((done, body)) => {
                sched.discard(session);
                Ok(Some(Ready::InitFailed {
                    outcome: Outcome::of_failed_init(&done),
                    body,
                    logs: done.logs,
                }))
            }
            Err(e) => {
                let id = session.id.clone();
                sched.discard(session);
                Err(match e {
                    SessionError::Timeout(_) => CoreError::sandbox_from(
                        format!("sandbox {id} did not finish init in time"),
                        e,
                    ),
                    other => {
                        CoreError::sandbox_from(format!("sandbox {id} failed during init"), other)
                    }
                })
            }
        }
    }

    /// The `Init` frame: the runtime command and Lambda's environment (lambda-compatibility.md §8), with
    /// the function's own variables.
    fn init_frame(&self, f: &FunctionRecord, init_type: InitType) -> Init {
        let version = version_label(f.version);
        let stream = log_stream_name(f.version);
        let mut env: Vec<(String, String)> = f.environment.clone().into_iter().collect();
        // With layers, Lambda's `/opt` paths (lambda-compatibility.md): binaries in
        // `/opt/bin`, libraries in `/opt/lib`, and (the bootstrap, told by `OPT_ENV`) Python
        // packages in `/opt/python`. `LD_LIBRARY_PATH` is fixed at the runtime's start, so a
        // function with layers does not take a generic sandbox's pre-started runtime.
        let layered = !f.layers.is_empty();
        let path = if layered {
            "/usr/local/bin:/usr/bin:/bin:/opt/bin"
        } else {
            "/usr/local/bin:/usr/bin:/bin"
        };
        let opt = layered.then(|| {
            [
                ("LD_LIBRARY_PATH", "/opt/lib".to_owned()),
                (OPT_ENV, "/opt".to_owned()),
            ]
        });
        let fixed = [
            ("PATH", path.to_owned()),
            ("TZ", ":UTC".to_owned()),
            ("_HANDLER", f.handler.as_str().to_owned()),
            ("AWS_REGION", self.settings.region.clone()),
            ("AWS_DEFAULT_REGION", self.settings.region.clone()),
            ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", f.runtime)),
            ("AWS_LAMBDA_FUNCTION_NAME", f.name.to_string()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                f.memory.get().to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", version.clone()),
            (
                "AWS_LAMBDA_INITIALIZATION_TYPE",
                init_type.as_str().to_owned(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", f.name),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
            ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ];
        // User variables may override the non-reserved defaults (PATH, LANG, ...); the
        // reserved ones were refused at create/update time.
        // The start-up defaults are the ones generic sandboxes pre-start their runtime
        // with, so that an unchanged function can use that runtime.
        let startup = STARTUP_ENV.iter().map(|(k, v)| (*k, (*v).to_owned()));
        for (k, v) in fixed
            .into_iter()
            .chain(opt.into_iter().flatten())
            .chain(startup)
        {
            if !f.environment.contains_key(k) {
                env.push((k.to_owned(), v));
            }
        }
        Init {
            function_name: f.name.to_string(),
            function_version: version,
            memory_mb: f.memory.get(),
            command: Runtimes::command(&f.runtime),
            cwd: "/var/task".to_owned(),
            env,
            init_timeout_ms: self.settings.init_timeout.as_millis() as u64,
        }
    }
}

/// A new log stream name for a sandbox of `version` (`None` = `$LATEST`), as Lambda's:
/// `YYYY/MM/DD/[version]<32 hex digits>`.
pub(crate) fn log_stream_name(version: Option<u64>) -> String {
    let date = skyscale_store::now_rfc3339();
    format!(
        "{}/{}/{}/[{}]{}",
        &date[0..4],
        &date[5..7],
        &date[8..10],
        version_label(version),
        uuid::Uuid::new_v4().simple()
    )
}
