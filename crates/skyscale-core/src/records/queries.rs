//! Reading records and logs back: one invocation, a function's records, a function's
//! logs. Every query first waits for the writer (read-your-writes).

use std::time::SystemTime;

use skyscale_store::{InvocationQuery, InvocationRecord, LogEntry, LogQuery};

use crate::auth::{Action, Principal};
use crate::since::parse_since;
use crate::{blocking, ControlPlane, CoreError, InvocationStatus};

/// Lists: the default and the most returned at once.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Most bytes of logs in one answer (the newest entries that fit): a page of big logs
/// must not cost the control plane hundreds of MB.
const MAX_LOG_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// Which records to list (`GET /v1/functions/{name}/invocations`).
#[derive(Debug, Clone, Default)]
pub struct InvocationFilter {
    pub status: Option<InvocationStatus>,
    /// RFC 3339 or a duration before now (`10m`).
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// Which logs to read (`GET /v1/functions/{name}/logs`).
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// RFC 3339 or a duration before now (`10m`): invocations that started since.
    pub since: Option<String>,
    /// Only this invocation's.
    pub request_id: Option<String>,
    /// The newest this many (default 100).
    pub limit: Option<usize>,
}

pub(super) fn limit(n: Option<usize>) -> Result<usize, CoreError> {
    match n {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(n) => Err(CoreError::InvalidParameter(format!(
            "invalid limit {n}: must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

fn since(since: Option<&str>) -> Result<Option<SystemTime>, CoreError> {
    since.map(|s| parse_since(s, SystemTime::now())).transpose()
}

/// Request ids are UUIDs; anything that could not be one is refused before a lookup.
pub(super) fn check_request_id(id: &str) -> Result<(), CoreError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(CoreError::InvalidParameter(
            "invalid request id: expected the id an invocation answered with, e.g. \
             6c0f4d1e-8a3b-4c2d-9e5f-0a1b2c3d4e5f"
                .into(),
        ));
    }
    Ok(())
}

impl ControlPlane {
    /// One invocation's record. Developer and admin keys, for functions in their scope; a
    /// record of a function out of scope is "not found", like one that does not exist.
    pub async fn invocation(
        &self,
        by: &Principal,
        request_id: &str,
    ) -> Result<InvocationRecord, CoreError> {
        by.authorize(Action::ReadFunction, None)?;
        check_request_id(request_id)?;
        self.records.barrier().await;
        let store = self.store.clone();
        let id = request_id.to_owned();
        let found = blocking(move || Ok(store.invocation(&id)?)).await?;
        match found {
            Some(r)
                if skyscale_types::FunctionName::parse(&r.function)
                    .is_ok_and(|f| by.may_see(&f)) =>
            {
                Ok(r)
            }
            _ => Err(CoreError::NotFound(format!(
                "invocation {request_id} not found"
            ))),
        }
    }

    /// A function's invocation records, newest first (they outlive a deleted function
    /// until retention removes them).
    pub async fn invocations(
        &self,
        by: &Principal,
        name: &str,
        filter: &InvocationFilter,
    ) -> Result<Vec<InvocationRecord>, CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        let status = filter.status;
        let limit = limit(filter.limit)?;
        let since = since(filter.since.as_deref())?;
        self.records.barrier().await;
        let store = self.store.clone();
        blocking(move || {
            Ok(store.invocations(&InvocationQuery {
                function: name.as_str(),
                status,
                since,
                limit,
            })?)
        })
        .await
    }

    /// A function's logs: the newest `limit` invocations' (since `since`, or one
    /// invocation's), oldest first.
    pub async fn logs(
        &self,
        by: &Principal,
        name: &str,
        filter: &LogFilter,
    ) -> Result<Vec<LogEntry>, CoreError> {
        Ok(self.read_logs(by, name, filter).await?.0)
    }

    pub(super) async fn read_logs(
        &self,
        by: &Principal,
        name: &str,
        filter: &LogFilter,
    ) -> Result<(Vec<LogEntry>, u64, String), CoreError> {
        let name = self.authorize_on(by, Action::ReadFunction, name)?;
        if let Some(id) = &filter.request_id {
            check_request_id(id)?;
        }
        let limit = limit(filter.limit)?;
        let since = since(filter.since.as_deref())?;
        self.records.barrier().await;
        let store = self.store.clone();
        let request_id = filter.request_id.clone();
        let function = name.to_string();
        let page = blocking(move || {
            Ok(store.logs(&LogQuery {
                function: name.as_str(),
                request_id: request_id.as_deref(),
                since,
                limit,
                max_bytes: MAX_LOG_ANSWER_BYTES,
            })?)
        })
        .await?;
        Ok((page.entries, page.last_id, function))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_and_limits_are_checked() {
        assert!(check_request_id("6c0f4d1e-8a3b-4c2d-9e5f-0a1b2c3d4e5f").is_ok());
        for bad in ["", "a/b", "x y", &"a".repeat(65)] {
            assert!(check_request_id(bad).is_err(), "{bad}");
        }
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
