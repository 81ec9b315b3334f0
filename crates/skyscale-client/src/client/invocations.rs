//! Invocation records (`/v1/invocations/{id}`, `/v1/functions/{name}/invocations`) and logs
//! (`/v1/functions/{name}/logs`, followed as server-sent events).

use std::io::BufReader;
use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::Method;
use skyscale_types::api::{
    InvocationList, InvocationRecord, LogEntry, LogList, LogsSkipped, StreamEnded,
    LOGS_SKIPPED_EVENT, LOG_EVENT, STREAM_ENDED_EVENT,
};

use super::sse::SseReader;
use super::{function_name, Client};
use crate::ClientError;

/// A followed stream stays open until the caller stops it; the server sends a comment
/// every 15 s, so the only deadline is one no stream reaches.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Which logs to read. `since` is RFC 3339 or a duration before now (`10m`); the server
/// parses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogsQuery<'a> {
    pub since: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub limit: Option<usize>,
}

/// Which records to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvocationsQuery<'a> {
    pub status: Option<&'a str>,
    pub since: Option<&'a str>,
    pub limit: Option<usize>,
}

/// What a followed log stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    Entry(LogEntry),
    /// The client fell behind and the server skipped this many entries.
    Skipped(u64),
    /// The server ended the stream (its last event), and why.
    Ended(StreamEnded),
}

impl Client {
    /// `GET /v1/invocations/{request_id}`.
    pub fn invocation(&self, request_id: &str) -> Result<InvocationRecord, ClientError> {
        let req = self.request(Method::GET, &["v1", "invocations", request_id], true)?;
        self.json(self.send(req)?, "GET /v1/invocations/{request_id}")
    }

    /// `GET /v1/functions/{name}/invocations`: newest first.
    pub fn invocations(
        &self,
        name: &str,
        q: &InvocationsQuery<'_>,
    ) -> Result<InvocationList, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "invocations"];
        let mut req = self.request(Method::GET, &path, true)?;
        if let Some(s) = q.status {
            req = req.query(&[("status", s)]);
        }
        if let Some(s) = q.since {
            req = req.query(&[("since", s)]);
        }
        if let Some(n) = q.limit {
            req = req.query(&[("limit", n.to_string())]);
        }
        self.json(self.send(req)?, "GET /v1/functions/{name}/invocations")
    }

    /// `GET /v1/functions/{name}/logs?format=json`: the newest entries, oldest first.
    pub fn logs(&self, name: &str, q: &LogsQuery<'_>) -> Result<LogList, ClientError> {
        let req = self.logs_request(name, q)?.query(&[("format", "json")]);
        self.json(self.send(req)?, "GET /v1/functions/{name}/logs")
    }

    /// `GET /v1/functions/{name}/logs?follow=true`: hands each event to `on_event` as it
    /// arrives (the backlog first) until `on_event` returns `false` or the server ends the
    /// stream.
    pub fn follow_logs(
        &self,
        name: &str,
        q: &LogsQuery<'_>,
        mut on_event: impl FnMut(LogEvent) -> bool,
    ) -> Result<(), ClientError> {
        let req = self
            .logs_request(name, q)?
            .query(&[("follow", "true")])
            .header(ACCEPT, "text/event-stream")
            .timeout(FOLLOW_TIMEOUT);
        let resp = self.send(req)?;
        let decode = |reason: String| ClientError::Decode {
            endpoint: self.endpoint.clone(),
            request: "GET /v1/functions/{name}/logs?follow=true".to_owned(),
            reason,
        };
        let mut events = SseReader::new(BufReader::new(resp));
        loop {
            let (event, data) = match events.next() {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(ClientError::Transport {
                        endpoint: self.endpoint.clone(),
                        message: format!(
                            "the log stream from Skyscale at {} broke off: {e}",
                            self.endpoint
                        ),
                    })
                }
            };
            let event = match event.as_str() {
                LOG_EVENT => {
                    LogEvent::Entry(serde_json::from_str(&data).map_err(|e| decode(e.to_string()))?)
                }
                LOGS_SKIPPED_EVENT => LogEvent::Skipped(
                    serde_json::from_str::<LogsSkipped>(&data)
                        .map_err(|e| decode(e.to_string()))?
                        .skipped,
                ),
                STREAM_ENDED_EVENT => {
                    LogEvent::Ended(serde_json::from_str(&data).map_err(|e| decode(e.to_string()))?)
                }
                // Events of a newer server that this client does not know.
                _ => continue,
            };
            if !on_event(event) {
                return Ok(());
            }
        }
    }

    fn logs_request(
        &self,
        name: &str,
        q: &LogsQuery<'_>,
    ) -> Result<reqwest::blocking::RequestBuilder, ClientError> {
        let name = function_name(name)?;
        let path = ["v1", "functions", name.as_str(), "logs"];
        let mut req = self.request(Method::GET, &path, true)?;
        if let Some(s) = q.since {
            req = req.query(&[("since", s)]);
        }
        if let Some(id) = q.request_id {
            req = req.query(&[("request_id", id)]);
        }
        if let Some(n) = q.limit {
            req = req.query(&[("limit", n.to_string())]);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        let c = Client::new("http://h", Some(skyscale_types::ApiKey::generate().token())).unwrap();
        let q = LogsQuery {
            since: Some("2026-01-01T00:00:00+01:00"),
            request_id: None,
            limit: Some(5),
        };
        let req = c.logs_request("f", &q).unwrap().build().unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://h/v1/functions/f/logs?since=2026-01-01T00%3A00%3A00%2B01%3A00&limit=5"
        );
    }
}
