//! The invoke path: find a warm sandbox of the function's current revision or start one
//! (cold start), send the event, and turn the agent's answer into the caller's.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skyscale_protocol::{Init, Invoke, InvokeStatus};
use skyscale_sandbox::{SandboxId, SandboxSpec};
use skyscale_store::FunctionRecord;
use tracing::Instrument;

use crate::runtimes::Runtimes;
use crate::session::{PoolKey, Session, SessionError};
use crate::{ControlPlane, CoreError, Principal};

/// Largest synchronous invoke payload, as in Lambda.
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;

/// How long past the function's timeout the control plane waits for the agent's own
/// timeout report before it gives up on the sandbox itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// What an invocation produced.
#[derive(Debug)]
pub struct InvokeOutput {
    pub request_id: String,
    /// The handler's result, or the error document when `function_error` is set.
    pub body: Vec<u8>,
    /// `Some("Unhandled")` when the function failed (exception, init error, timeout, crash).
    pub function_error: Option<&'static str>,
    /// The error type when the function failed, e.g. `ValueError`, `Sandbox.Timedout`.
    pub error_type: Option<String>,
    pub cold_start: bool,
    pub init_duration: Option<Duration>,
    pub duration: Duration,
    /// What the function printed during this invocation (and its init, on a cold start).
    pub logs: String,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn error_doc(error_type: &str, message: &str) -> Vec<u8> {
    serde_json::json!({ "errorType": error_type, "errorMessage": message })
        .to_string()
        .into_bytes()
}

/// The outcome of starting a sandbox for a cold invocation.
enum ColdStart {
    Ready(Session, Duration, String),
    /// The runtime failed to initialise: the error document and what it printed.
    InitFailed {
        error_type: String,
        body: Vec<u8>,
        logs: String,
        duration: Duration,
    },
}

impl ControlPlane {
    /// Invokes the function synchronously with `payload` (JSON bytes, passed through as-is).
    pub async fn invoke(
        &self,
        _by: &Principal,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<InvokeOutput, CoreError> {
        if payload.len() > MAX_SYNC_PAYLOAD {
            return Err(CoreError::PayloadTooLarge(format!(
                "invoke payload is {} bytes: the limit is {MAX_SYNC_PAYLOAD} bytes",
                payload.len()
            )));
        }
        let payload = if payload.iter().all(u8::is_ascii_whitespace) {
            b"{}".to_vec()
        } else {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
                return Err(CoreError::InvalidRequest(format!(
                    "invoke payload is not valid JSON: {e}"
                )));
            }
            payload
        };
        let f = self.function_record(name).await?;
        if f.code.is_none() {
            return Err(CoreError::Conflict(format!(
                "function {} has no code deployed yet: deploy a package first",
                f.name
            )));
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("invoke", function = %f.name, request_id = %request_id);
        self.invoke_function(f, request_id, payload)
            .instrument(span)
            .await
    }

    async fn invoke_function(
        &self,
        f: FunctionRecord,
        request_id: String,
        payload: Vec<u8>,
    ) -> Result<InvokeOutput, CoreError> {
        let key = PoolKey {
            function: f.name.clone(),
            revision: f.revision,
        };

        let (mut session, cold_start, init_duration, mut logs) = match self.pool.acquire(&key) {
            Some(s) => (s, false, None, String::new()),
            None => match self.cold_start(&f, key).await? {
                ColdStart::Ready(s, d, logs) => (s, true, Some(d), logs),
                ColdStart::InitFailed {
                    error_type,
                    body,
                    logs,
                    duration,
                } => {
                    return Ok(InvokeOutput {
                        request_id,
                        body,
                        function_error: Some("Unhandled"),
                        error_type: Some(error_type),
                        cold_start: true,
                        init_duration: Some(duration),
                        duration: Duration::ZERO,
                        logs,
                    });
                }
            },
        };

        let timeout = f.timeout.duration();
        let started = Instant::now();
        let invoke = Invoke {
            request_id: request_id.clone(),
            deadline_ms: epoch_ms(SystemTime::now() + timeout),
            invoked_function_arn: self.function_arn(&f),
            client_context: None,
            trace_id: None,
        };
        let answer =
            tokio::time::timeout(timeout + DEADLINE_GRACE, session.invoke(invoke, payload)).await;
        let duration = started.elapsed();
        let mut out = InvokeOutput {
            request_id: request_id.clone(),
            body: Vec::new(),
            function_error: None,
            error_type: None,
            cold_start,
            init_duration,
            duration,
            logs: String::new(),
        };
        match answer {
            Ok(Ok((result, body))) => {
                logs.push_str(&result.logs);
                out.body = body;
                match result.status {
                    InvokeStatus::Ok => self.pool.release(session),
                    InvokeStatus::Error => {
                        out.function_error = Some("Unhandled");
                        out.error_type = result.error_type;
                        self.pool.release(session);
                    }
                    InvokeStatus::Timeout | InvokeStatus::Crashed => {
                        out.function_error = Some("Unhandled");
                        out.error_type = result.error_type;
                        self.pool.destroy(session);
                    }
                }
            }
            Ok(Err(e)) => {
                // The agent vanished mid-invocation: the sandbox was killed (often by the
                // memory limit) or crashed.
                tracing::warn!(sandbox = %session.id, error = %e, "sandbox failed during invocation");
                out.function_error = Some("Unhandled");
                out.error_type = Some("Runtime.ExitError".into());
                out.body = error_doc(
                    "Runtime.ExitError",
                    &format!(
                        "RequestId: {request_id} Error: Runtime exited without providing a reason"
                    ),
                );
                self.pool.destroy(session);
            }
            Err(_) => {
                tracing::warn!(sandbox = %session.id, "agent missed the deadline; destroying sandbox");
                out.function_error = Some("Unhandled");
                out.error_type = Some("Sandbox.Timedout".into());
                out.body = error_doc(
                    "Sandbox.Timedout",
                    &format!(
                        "{} {request_id} Task timed out after {:.2} seconds",
                        skyscale_store::now_rfc3339(),
                        timeout.as_secs_f64()
                    ),
                );
                self.pool.destroy(session);
            }
        }
        out.logs = logs;
        tracing::info!(
            cold_start,
            duration_us = duration.as_micros() as u64,
            error_type = out.error_type.as_deref().unwrap_or(""),
            "invocation finished"
        );
        Ok(out)
    }

    fn function_arn(&self, f: &FunctionRecord) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.settings.region, self.settings.account_id, f.name
        )
    }

    /// Starts a sandbox for `f` and initialises its runtime.
    async fn cold_start(&self, f: &FunctionRecord, key: PoolKey) -> Result<ColdStart, CoreError> {
        let code = f
            .code
            .as_ref()
            .ok_or_else(|| CoreError::Internal("no code".into()))?;
        let spec = SandboxSpec {
            id: SandboxId::generate(),
            code_dir: self.code.dir(&code.sha256),
            memory_mb: f.memory.get(),
            tmp_mb: self.settings.tmp_mb,
            pids_limit: self.settings.pids_limit,
        };
        let started = Instant::now();
        self.pool.track(&spec.id);
        let sandbox = match self.pool.driver().create(&spec).await {
            Ok(s) => s,
            Err(e) => {
                self.pool.destroy_id(&spec.id).await;
                return Err(e.into());
            }
        };
        let mut session = Session::new(sandbox, key);
        let init = self.init_frame(f);
        let result = async {
            session.handshake(self.settings.boot_timeout).await?;
            session
                .init(init, self.settings.init_timeout + DEADLINE_GRACE)
                .await
        }
        .await;
        let duration = started.elapsed();
        match result {
            Ok((done, _)) if done.ok => {
                tracing::info!(sandbox = %session.id, init_us = duration.as_micros() as u64, "sandbox ready");
                Ok(ColdStart::Ready(session, duration, done.logs))
            }
            Ok((done, body)) => {
                self.pool.destroy(session);
                Ok(ColdStart::InitFailed {
                    error_type: done.error_type.unwrap_or_else(|| "Runtime.Unknown".into()),
                    body,
                    logs: done.logs,
                    duration,
                })
            }
            Err(e) => {
                let id = session.id.clone();
                drop(session);
                self.pool.destroy_id(&id).await;
                Err(match e {
                    SessionError::Timeout(_) | SessionError::Closed | SessionError::Protocol(_) => {
                        CoreError::Sandbox(format!("sandbox {id} did not start its agent: {e}"))
                    }
                    other => CoreError::Sandbox(format!("sandbox {id}: {other}")),
                })
            }
        }
    }

    /// The `Init` frame: the runtime command and Lambda's environment (contract §8), with
    /// the function's own variables.
    fn init_frame(&self, f: &FunctionRecord) -> Init {
        let version = "$LATEST";
        let date = skyscale_store::now_rfc3339();
        let stream = format!(
            "{}/{}/{}/[{version}]{}",
            &date[0..4],
            &date[5..7],
            &date[8..10],
            uuid::Uuid::new_v4().simple()
        );
        let minor = f.runtime.as_str().trim_start_matches("python");
        let mut env: Vec<(String, String)> = f.environment.clone().into_iter().collect();
        let fixed = [
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("LANG", "C.UTF-8".to_owned()),
            ("TZ", ":UTC".to_owned()),
            ("HOME", "/tmp".to_owned()),
            ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
            ("_HANDLER", f.handler.as_str().to_owned()),
            ("AWS_REGION", self.settings.region.clone()),
            ("AWS_DEFAULT_REGION", self.settings.region.clone()),
            ("AWS_EXECUTION_ENV", format!("AWS_Lambda_python{minor}")),
            ("AWS_LAMBDA_FUNCTION_NAME", f.name.to_string()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                f.memory.get().to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", version.to_owned()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
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
        for (k, v) in fixed {
            if !f.environment.contains_key(k) {
                env.push((k.to_owned(), v));
            }
        }
        Init {
            function_name: f.name.to_string(),
            function_version: version.to_owned(),
            memory_mb: f.memory.get(),
            command: Runtimes::command(&f.runtime),
            cwd: "/var/task".to_owned(),
            env,
            init_timeout_ms: self.settings.init_timeout.as_millis() as u64,
        }
    }
}
