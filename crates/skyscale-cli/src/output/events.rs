//! Text output of events, dead letters and event invoke configurations.

use std::fmt::Write as _;

use skyscale_types::events::{EventConfigInfo, EventEntry};

/// One line per event: id, status, age, attempts, next attempt, last error.
pub fn events_table(events: &[EventEntry]) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let mut out = format!(
        "{:<36}  {:<8}  {:>9}  {:>8}  {:<24}  {}\n",
        "ID", "STATUS", "AGE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR / DEAD REASON"
    );
    for e in events {
        let status = if e.running {
            format!("{}*", e.status)
        } else {
            e.status.clone()
        };
        let why = match (&e.dead_reason, &e.last_error) {
            (Some(r), Some(err)) => format!("{r}: {err}"),
            (Some(r), None) => r.clone(),
            (None, Some(err)) => err.clone(),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<36}  {:<8}  {:>8.1}s  {:>8}  {:<24}  {}",
            e.id,
            status,
            e.age_seconds,
            e.attempts,
            e.next_attempt_at.as_deref().unwrap_or("-"),
            why
        );
    }
    if events.iter().any(|e| e.running) {
        out.push_str("* an attempt is running now\n");
    }
    out
}

/// One event, field by field, with its payload and record.
pub fn event_detail(e: &EventEntry) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: &str| {
        let _ = writeln!(out, "{k:<16}{v}");
    };
    field("id", &e.id);
    field("function", &e.function);
    if let Some(q) = &e.qualifier {
        field("qualifier", q);
    }
    field("status", &e.status);
    field("running", if e.running { "yes" } else { "no" });
    field("accepted at", &e.accepted_at);
    field("age", &format!("{:.1}s", e.age_seconds));
    field("attempts", &e.attempts.to_string());
    if let Some(n) = &e.next_attempt_at {
        field("next attempt", n);
    }
    if let Some(err) = &e.last_error {
        field("last error", err);
    }
    if let Some(r) = &e.dead_reason {
        field("dead reason", r);
    }
    if let Some(t) = &e.dead_at {
        field("dead at", t);
    }
    if let Some(p) = &e.payload {
        field("payload", &p.to_string());
    }
    if let Some(r) = &e.record {
        let pretty = serde_json::to_string_pretty(r).unwrap_or_default();
        let _ = writeln!(out, "record\n{pretty}");
    }
    out
}

pub fn event_config(c: &EventConfigInfo) -> String {
    let or_default = |v: Option<u32>, d: u32| match v {
        Some(n) => n.to_string(),
        None => format!("{d} (default)"),
    };
    format!(
        "function        {}:{}\nmax retries     {}\nmax event age   {}s\non success      {}\non failure      {}\nlast modified   {}\n",
        c.function,
        c.qualifier,
        or_default(c.maximum_retry_attempts, 2),
        or_default(c.maximum_event_age_seconds, 21_600),
        c.on_success.as_deref().unwrap_or("-"),
        c.on_failure.as_deref().unwrap_or("-"),
        c.last_modified
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_shows_its_reason_and_error() {
        let e = EventEntry {
            id: "0190-x".into(),
            function: "f".into(),
            qualifier: None,
            status: "dead".into(),
            running: false,
            accepted_at: "2026-01-01T00:00:00.000Z".into(),
            age_seconds: 3.5,
            attempts: 3,
            next_attempt_at: None,
            last_error: Some("ValueError: boom".into()),
            dead_reason: Some("RetriesExhausted".into()),
            dead_at: None,
            payload: None,
            record: None,
        };
        let table = events_table(std::slice::from_ref(&e));
        assert!(
            table.contains("RetriesExhausted: ValueError: boom"),
            "{table}"
        );
        assert!(event_detail(&e).contains("dead reason     RetriesExhausted"));
        assert_eq!(events_table(&[]), "no events\n");
    }
}
