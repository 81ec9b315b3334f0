//! How invocation records are printed.

use skyscale_types::api::InvocationRecord;

use super::{key_values, table};

fn dash(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `function invocations`: TIME, REQUEST ID, VERSION, STATUS, ERROR, COLD, INIT ms,
/// DURATION ms, MEMORY MB (newest first, as the API answers).
pub fn invocation_table(records: &[InvocationRecord]) -> String {
    if records.is_empty() {
        return "no invocations\n".to_owned();
    }
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|r| {
            [
                r.started_at.clone(),
                r.request_id.clone(),
                r.version.clone(),
                r.status.clone(),
                dash(r.error_type.clone()),
                yes_no(r.cold_start),
                dash(r.init_duration_ms.map(ms)),
                ms(r.duration_ms),
                format!("{}/{}", r.max_memory_used_mb, r.memory_size_mb),
            ]
        })
        .collect();
    table(
        [
            "TIME",
            "REQUEST ID",
            "VERSION",
            "STATUS",
            "ERROR",
            "COLD",
            "INIT ms",
            "DURATION ms",
            "MEMORY MB",
        ],
        &rows,
    )
}

/// `function invocation`: one `key: value` line per field.
pub fn invocation_details(r: &InvocationRecord) -> String {
    key_values(&[
        ("request_id", r.request_id.clone()),
        ("function", r.function.clone()),
        ("version", r.version.clone()),
        ("status", r.status.clone()),
        ("error_type", dash(r.error_type.clone())),
        ("trigger", r.trigger.clone()),
        ("caller", dash(r.caller_key_id.clone())),
        ("started_at", r.started_at.clone()),
        ("ended_at", r.ended_at.clone()),
        ("cold_start", yes_no(r.cold_start)),
        ("init_type", r.init_type.clone()),
        ("queue_wait_ms", ms(r.queue_wait_ms)),
        ("init_ms", dash(r.init_duration_ms.map(ms))),
        ("duration_ms", ms(r.duration_ms)),
        ("max_memory_mb", r.max_memory_used_mb.to_string()),
        ("memory_size_mb", r.memory_size_mb.to_string()),
        ("response_bytes", r.response_bytes.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InvocationRecord {
        InvocationRecord {
            request_id: "r1".into(),
            function: "f".into(),
            version: "$LATEST".into(),
            caller_key_id: Some("SKYA".into()),
            trigger: "sync".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            ended_at: "2026-01-01T00:00:00.120Z".into(),
            status: "function_error".into(),
            error_type: Some("ValueError".into()),
            cold_start: true,
            init_type: "on-demand".into(),
            queue_wait_ms: 0.05,
            init_duration_ms: Some(101.234),
            duration_ms: 12.5,
            max_memory_used_mb: 20,
            memory_size_mb: 128,
            response_bytes: 90,
            event_id: None,
            attempt: None,
        }
    }

    #[test]
    fn invocation_table_and_details() {
        assert_eq!(
            invocation_table(&[record()]),
            "TIME                      REQUEST ID  VERSION  STATUS          ERROR       COLD  \
             INIT ms  DURATION ms  MEMORY MB\n\
             2026-01-01T00:00:00.000Z  r1          $LATEST  function_error  ValueError  yes   \
             101.23   12.50        20/128\n"
        );
        assert_eq!(invocation_table(&[]), "no invocations\n");
        let details = invocation_details(&record());
        assert!(details.starts_with("request_id:     r1\n"), "{details}");
        assert!(details.contains("\ninit_ms:        101.23\n"), "{details}");
    }
}
