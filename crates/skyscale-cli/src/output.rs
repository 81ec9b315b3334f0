//! Everything the tool prints: results on stdout, failures on stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use skyscale_client::{ClientError, InvokeOutcome};
use skyscale_types::api::{
    AliasInfo, AliasRouting, FunctionInfo, FunctionUrlInfo, LayerVersionInfo,
};
use skyscale_types::{version_label, Cors, UrlAuthType};

mod access;
mod cluster;
mod events;
mod invocations;
mod metrics;
mod schedules;

pub use access::{audit_table, created_key, key_table, warning, KEY_SHOWN_ONCE};
pub use cluster::cluster_status;
pub use events::{event_config, event_detail, events_table};
pub use invocations::{invocation_details, invocation_table};
pub use metrics::metrics_summary;
pub use schedules::{schedule_detail, schedules_table};

/// What `error:` says when a call needs a key and none was given.
pub const NO_KEY: &str = "no API key: set SKYSCALE_API_KEY or pass --api-key";

/// A failure whose message is already on stderr: `main` only sets the exit status.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("already reported")
    }
}

impl std::error::Error for AlreadyReported {}

/// Writes `bytes` to stdout.
pub fn stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Writes `text` and a newline to stdout.
pub fn line(text: &str) -> std::io::Result<()> {
    stdout(format!("{text}\n").as_bytes())
}

/// Writes `value` as pretty JSON to stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Prints the failure as one `error: ...` line on stderr and picks the exit status.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<AlreadyReported>().is_some() {
        return ExitCode::FAILURE;
    }
    // The reader of our stdout went away (`skyscale function list | head -1`): not a failure.
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    // Nothing useful can be done if stderr itself is gone.
    let _ = writeln!(std::io::stderr(), "error: {}", error_line(err));
    ExitCode::FAILURE
}

/// The error and its causes on one line, `outer: inner`, without repeating a cause whose
/// text the line already holds (library errors often include their source's message).
pub fn error_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = match cause.downcast_ref::<ClientError>() {
            Some(ClientError::MissingKey) => NO_KEY.to_owned(),
            _ => cause.to_string(),
        };
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SnapStart's line: the setting, and whether it is in use (and why not).
fn snap_start(s: &skyscale_types::api::SnapStartInfo) -> String {
    if !s.apply_on.is_on() {
        return s.apply_on.to_string();
    }
    match &s.reason {
        Some(why) => format!("{} (Off: {why})", s.apply_on),
        None => format!("{} ({})", s.apply_on, s.optimization_status.as_str()),
    }
}

/// `get`'s text form: one `key: value` line per field, values aligned.
pub fn function_details(f: &FunctionInfo) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let rows = [
        ("name", f.name.clone()),
        ("version", version_label(f.version)),
        ("runtime", f.runtime.clone()),
        ("handler", f.handler.clone()),
        ("memory_mb", f.memory_mb.to_string()),
        ("timeout_s", f.timeout_s.to_string()),
        (
            "network",
            if f.network { "outbound" } else { "none" }.to_owned(),
        ),
        ("tmp_mb", f.ephemeral_storage_mb.to_string()),
        ("snap_start", snap_start(&f.snap_start)),
        ("description", f.description.clone()),
        ("code_sha256", dash(f.code_sha256.clone())),
        ("code_size", dash(f.code_size.map(|n| n.to_string()))),
        (
            "concurrency",
            dash(f.reserved_concurrency.map(|n| n.to_string())),
        ),
        ("revision", f.revision.to_string()),
        ("created_at", f.created_at.clone()),
        ("updated_at", f.updated_at.clone()),
        (
            "environment",
            if f.environment.is_empty() {
                "-".to_owned()
            } else {
                String::new()
            },
        ),
    ];
    let mut out = key_values(&rows);
    for (key, value) in &f.environment {
        let _ = writeln!(out, "  {key}={value}");
    }
    if !f.layers.is_empty() {
        out.push_str("layers:\n");
        for l in &f.layers {
            let _ = writeln!(out, "  {} ({} bytes)", l.arn, l.code_size);
        }
    }
    out
}

/// One layer version, `key: value` lines.
pub fn layer_details(v: &LayerVersionInfo) -> String {
    let runtimes = if v.compatible_runtimes.is_empty() {
        "any".to_owned()
    } else {
        v.compatible_runtimes.join(", ")
    };
    let rows = [
        ("layer", v.layer.clone()),
        ("version", v.version.to_string()),
        ("arn", v.arn.clone()),
        ("description", v.description.clone()),
        (
            "license",
            v.license.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("runtimes", runtimes),
        ("code_sha256", v.code_sha256.clone()),
        ("code_size", v.code_size.to_string()),
        ("unzipped_size", v.unzipped_size.to_string()),
        ("created_at", v.created_at.clone()),
    ];
    key_values(&rows)
}

/// Layer versions as a table: name, version, runtimes, size, ARN.
pub fn layer_table(layers: &[LayerVersionInfo]) -> String {
    let mut out = format!(
        "{:<24} {:>7} {:<20} {:>12} ARN\n",
        "LAYER", "VERSION", "RUNTIMES", "UNZIPPED"
    );
    for v in layers {
        let runtimes = if v.compatible_runtimes.is_empty() {
            "any".to_owned()
        } else {
            v.compatible_runtimes.join(",")
        };
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:<20} {:>12} {}",
            v.layer, v.version, runtimes, v.unzipped_size, v.arn
        );
    }
    out
}

/// `key: value` lines, values aligned.
fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (key, value) in rows {
        let row = format!("{:<width$}{value}", format!("{key}:"));
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// The first 12 digits of a code hash, or `-` without code.
fn short_sha(sha: Option<&str>) -> String {
    sha.map(|s| s.chars().take(12).collect())
        .unwrap_or_else(|| "-".to_owned())
}

/// An alias's routing as `--routing` takes it (`2=0.1`), or `-`.
fn routing_label(routing: Option<&AliasRouting>) -> String {
    routing.map_or_else(|| "-".to_owned(), |r| format!("{}={}", r.version, r.weight))
}

/// `list`'s text form: an aligned table, or a note when there is nothing.
pub fn function_table(functions: &[FunctionInfo]) -> String {
    if functions.is_empty() {
        return "no functions\n".to_owned();
    }
    let header = [
        "NAME", "RUNTIME", "MEMORY", "TIMEOUT", "CODE_SHA", "UPDATED",
    ];
    let rows: Vec<[String; 6]> = functions
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                f.runtime.clone(),
                format!("{}MB", f.memory_mb),
                format!("{}s", f.timeout_s),
                short_sha(f.code_sha256.as_deref()),
                f.updated_at.clone(),
            ]
        })
        .collect();
    table(header, &rows)
}

/// `function versions`' text form: `$LATEST` and every published version.
pub fn version_table(versions: &[FunctionInfo]) -> String {
    let header = ["VERSION", "CODE_SHA", "RUNTIME", "MEMORY", "DESCRIPTION"];
    let rows: Vec<[String; 5]> = versions
        .iter()
        .map(|f| {
            [
                version_label(f.version),
                short_sha(f.code_sha256.as_deref()),
                f.runtime.clone(),
                format!("{}MB", f.memory_mb),
                f.description.clone(),
            ]
        })
        .collect();
    table(header, &rows)
}

/// `alias get`'s text form.
pub fn alias_details(a: &AliasInfo) -> String {
    key_values(&[
        ("function", a.function.clone()),
        ("name", a.name.clone()),
        ("version", a.version.clone()),
        ("routing", routing_label(a.routing.as_ref())),
        ("description", a.description.clone()),
        ("revision", a.revision.to_string()),
        ("created_at", a.created_at.clone()),
    ])
}

/// `alias list`'s text form: an aligned table, or a note when there is nothing.
pub fn alias_table(aliases: &[AliasInfo]) -> String {
    if aliases.is_empty() {
        return "no aliases\n".to_owned();
    }
    let header = ["NAME", "VERSION", "ROUTING", "DESCRIPTION"];
    let rows: Vec<[String; 4]> = aliases
        .iter()
        .map(|a| {
            [
                a.name.clone(),
                a.version.clone(),
                routing_label(a.routing.as_ref()),
                a.description.clone(),
            ]
        })
        .collect();
    table(header, &rows)
}

/// A function URL's auth type, with what it means.
fn auth_label(auth: UrlAuthType) -> String {
    match auth {
        UrlAuthType::None => "NONE (public)".to_owned(),
        UrlAuthType::AwsIam => "AWS_IAM (SigV4-signed requests only)".to_owned(),
    }
}

/// CORS on one line: `origins a, b; methods GET; ...; credentials`, or `-` without CORS.
fn cors_label(cors: Option<&Cors>) -> String {
    let Some(c) = cors else {
        return "-".to_owned();
    };
    let mut parts = Vec::new();
    for (what, items) in [
        ("origins", &c.allow_origins),
        ("methods", &c.allow_methods),
        ("headers", &c.allow_headers),
        ("expose", &c.expose_headers),
    ] {
        if !items.is_empty() {
            parts.push(format!("{what} {}", items.join(", ")));
        }
    }
    if let Some(age) = c.max_age {
        parts.push(format!("max-age {age}s"));
    }
    if c.allow_credentials {
        parts.push("credentials".to_owned());
    }
    if parts.is_empty() {
        return "on, nothing allowed".to_owned();
    }
    parts.join("; ")
}

/// The version a URL invokes: its alias or `$LATEST`.
fn url_qualifier(u: &FunctionUrlInfo) -> String {
    u.alias.clone().unwrap_or_else(|| "$LATEST".to_owned())
}

/// A function URL's text form: the address first.
pub fn url_details(u: &FunctionUrlInfo) -> String {
    key_values(&[
        ("url", u.url.clone()),
        ("function", u.function.clone()),
        ("qualifier", url_qualifier(u)),
        ("auth", auth_label(u.auth_type)),
        ("cors", cors_label(u.cors.as_ref())),
        ("invoke_mode", u.invoke_mode.clone()),
        ("function_arn", u.function_arn.clone()),
        ("created_at", u.created_at.clone()),
        ("updated_at", u.updated_at.clone()),
    ])
}

/// `url list`'s text form: an aligned table, or a note when there is nothing.
pub fn url_table(urls: &[FunctionUrlInfo]) -> String {
    if urls.is_empty() {
        return "no function URLs\n".to_owned();
    }
    let header = ["URL", "QUALIFIER", "AUTH", "CORS"];
    let rows: Vec<[String; 4]> = urls
        .iter()
        .map(|u| {
            [
                u.url.clone(),
                url_qualifier(u),
                u.auth_type.as_str().to_owned(),
                if u.cors.is_some() { "yes" } else { "-" }.to_owned(),
            ]
        })
        .collect();
    table(header, &rows)
}

/// An aligned table: the header, then the rows, columns two spaces apart.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An invocation's result as printed: in text mode JSON is re-indented (keeping key order
/// and number spelling), anything else is printed raw; in JSON mode the body is printed as
/// it came. Either way the output ends with a newline.
pub fn invoke_result(body: &[u8], pretty: bool) -> Vec<u8> {
    let mut out = if pretty && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        reindent_json(body)
    } else {
        body.to_vec()
    };
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// The stderr lines for a failed invocation: `function error: <type>: <message>`, then the
/// stack trace, one line per line.
pub fn function_error_lines(outcome: &InvokeOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    match outcome.error_body() {
        Some(e) => {
            let first = if e.error_type.is_empty() {
                format!("function error: {}", e.error_message)
            } else {
                format!("function error: {}: {}", e.error_type, e.error_message)
            };
            lines.push(first.split_whitespace().collect::<Vec<_>>().join(" "));
            for frame in &e.stack_trace {
                lines.extend(
                    frame
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.trim_end().to_owned()),
                );
            }
        }
        None => {
            let kind = outcome.function_error.as_deref().unwrap_or("Unhandled");
            let body = String::from_utf8_lossy(&outcome.body);
            let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
            lines.push(
                format!("function error: {kind}: {body}")
                    .trim_end()
                    .to_owned(),
            );
        }
    }
    lines
}

/// Re-indents valid JSON with two spaces, byte for byte otherwise: keys keep their order and
/// numbers their spelling (parsing into `serde_json::Value` would change both).
fn reindent_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut bytes = json.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                while bytes.next_if(u8::is_ascii_whitespace).is_some() {}
                match bytes.peek() {
                    Some(b'}' | b']') => {
                        if let Some(close) = bytes.next() {
                            out.push(close);
                        }
                    }
                    _ => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info(name: &str, sha: Option<&str>) -> FunctionInfo {
        FunctionInfo {
            name: name.to_owned(),
            runtime: "python3.11".into(),
            handler: "handler.handler".into(),
            memory_mb: 128,
            timeout_s: 3,
            environment: BTreeMap::new(),
            description: String::new(),
            code_sha256: sha.map(str::to_owned),
            code_size: sha.map(|_| 321),
            reserved_concurrency: None,
            revision: 2,
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-02T03:04:05Z".into(),
            version: None,
            network: false,
            ephemeral_storage_mb: 512,
            layers: Vec::new(),
            snap_start: Default::default(),
        }
    }

    #[test]
    fn details_are_aligned_key_value_lines() {
        let mut f = info("hello", Some(&"ab".repeat(32)));
        f.environment.insert("A".into(), "1".into());
        f.environment.insert("B".into(), "x=y".into());
        f.description = "says hello".into();
        let expected = format!(
            "\
name:        hello
version:     $LATEST
runtime:     python3.11
handler:     handler.handler
memory_mb:   128
timeout_s:   3
network:     none
tmp_mb:      512
snap_start:  None
description: says hello
code_sha256: {}
code_size:   321
concurrency: -
revision:    2
created_at:  2025-01-01T00:00:00Z
updated_at:  2025-01-02T03:04:05Z
environment:
  A=1
  B=x=y
",
            "ab".repeat(32)
        );
        assert_eq!(function_details(&f), expected);
    }

    #[test]
    fn details_without_code_or_env() {
        let text = function_details(&info("f", None));
        assert!(text.contains("\ncode_sha256: -\n"), "{text}");
        assert!(text.contains("\ndescription:\n"), "{text}");
        assert!(text.ends_with("\nenvironment: -\n"), "{text}");
    }

    #[test]
    fn table_is_aligned() {
        let table = function_table(&[
            info("hello", Some("0123456789abcdef0123")),
            info("a-much-longer-name", None),
        ]);
        assert_eq!(
            table,
            "\
NAME                RUNTIME     MEMORY  TIMEOUT  CODE_SHA      UPDATED
hello               python3.11  128MB   3s       0123456789ab  2025-01-02T03:04:05Z
a-much-longer-name  python3.11  128MB   3s       -             2025-01-02T03:04:05Z
"
        );
        assert_eq!(function_table(&[]), "no functions\n");
    }

    #[test]
    fn versions_and_aliases() {
        let mut v1 = info("hello", Some("0123456789abcdef0123"));
        v1.version = Some(1);
        v1.description = "first".into();
        assert_eq!(
            version_table(&[info("hello", None), v1]),
            "\
VERSION  CODE_SHA      RUNTIME     MEMORY  DESCRIPTION
$LATEST  -             python3.11  128MB
1        0123456789ab  python3.11  128MB   first
"
        );
        let alias = AliasInfo {
            function: "hello".into(),
            name: "live".into(),
            version: "1".into(),
            description: String::new(),
            routing: Some(AliasRouting {
                version: "2".into(),
                weight: 0.25,
            }),
            revision: 3,
            created_at: "2025-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            alias_details(&alias),
            "\
function:    hello
name:        live
version:     1
routing:     2=0.25
description:
revision:    3
created_at:  2025-01-01T00:00:00Z
"
        );
        let plain = AliasInfo {
            name: "beta".into(),
            routing: None,
            description: "next".into(),
            ..alias.clone()
        };
        assert_eq!(
            alias_table(&[alias, plain]),
            "\
NAME  VERSION  ROUTING  DESCRIPTION
live  1        2=0.25
beta  1        -        next
"
        );
        assert_eq!(alias_table(&[]), "no aliases\n");
    }

    #[test]
    fn function_urls() {
        let public = FunctionUrlInfo {
            url: "http://h:1/url/hello/".into(),
            function: "hello".into(),
            alias: None,
            function_arn: "arn:aws:lambda:r:1:function:hello".into(),
            auth_type: UrlAuthType::None,
            cors: None,
            invoke_mode: "BUFFERED".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-02T00:00:00Z".into(),
        };
        assert_eq!(
            url_details(&public),
            "\
url:          http://h:1/url/hello/
function:     hello
qualifier:    $LATEST
auth:         NONE (public)
cors:         -
invoke_mode:  BUFFERED
function_arn: arn:aws:lambda:r:1:function:hello
created_at:   2025-01-01T00:00:00Z
updated_at:   2025-01-02T00:00:00Z
"
        );
        let signed = FunctionUrlInfo {
            url: "http://h:1/url/hello:live/".into(),
            alias: Some("live".into()),
            auth_type: UrlAuthType::AwsIam,
            cors: Some(Cors {
                allow_origins: vec!["https://a.example".into(), "https://b.example".into()],
                allow_methods: vec!["GET".into()],
                max_age: Some(60),
                allow_credentials: true,
                ..Cors::default()
            }),
            ..public.clone()
        };
        assert!(url_details(&signed).contains(
            "\nauth:         AWS_IAM (SigV4-signed requests only)\n\
             cors:         origins https://a.example, https://b.example; methods GET; \
             max-age 60s; credentials\n"
        ));
        assert_eq!(
            url_table(&[public, signed]),
            "\
URL                         QUALIFIER  AUTH     CORS
http://h:1/url/hello/       $LATEST    NONE     -
http://h:1/url/hello:live/  live       AWS_IAM  yes
"
        );
        assert_eq!(url_table(&[]), "no function URLs\n");
    }

    #[test]
    fn invoke_result_pretty_keeps_order_and_numbers() {
        let body = br#"{"z":1.50,"a":[1, {}, []],"s":"x:{,}\"y","n":null}"#;
        let out = String::from_utf8(invoke_result(body, true)).unwrap();
        assert_eq!(
            out,
            "{\n  \"z\": 1.50,\n  \"a\": [\n    1,\n    {},\n    []\n  ],\n  \"s\": \"x:{,}\\\"y\",\n  \"n\": null\n}\n"
        );
        // Still the same JSON.
        let a: serde_json::Value = serde_json::from_slice(body).unwrap();
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn invoke_result_raw_cases() {
        assert_eq!(invoke_result(b"not json", true), b"not json\n");
        assert_eq!(invoke_result(br#"{"a":1}"#, false), b"{\"a\":1}\n");
        assert_eq!(invoke_result(b"\"hi\"", true), b"\"hi\"\n");
        assert_eq!(invoke_result(b"", true), b"\n");
    }

    #[test]
    fn function_error_lines_show_type_message_and_trace() {
        let outcome = InvokeOutcome {
            body: br#"{"errorMessage":"division by zero","errorType":"ZeroDivisionError","stackTrace":["  File \"/var/task/handler.py\", line 2, in handler\n    return 1 / 0\n"]}"#.to_vec(),
            function_error: Some("Unhandled".into()),
            request_id: Some("r".into()),
            cold_start: Some(false),
            executed_version: Some("$LATEST".into()),
        };
        assert_eq!(
            function_error_lines(&outcome),
            [
                "function error: ZeroDivisionError: division by zero",
                "  File \"/var/task/handler.py\", line 2, in handler",
                "    return 1 / 0",
            ]
        );

        let odd = InvokeOutcome {
            body: b"sandbox\ncrashed".to_vec(),
            ..outcome
        };
        assert_eq!(
            function_error_lines(&odd),
            ["function error: Unhandled: sandbox crashed"]
        );
    }

    #[test]
    fn error_line_joins_causes_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io).context("cannot read x: gone");
        assert_eq!(error_line(&err), "cannot read x: gone");
        let err = anyhow::anyhow!("inner\nproblem").context("outer");
        assert_eq!(error_line(&err), "outer: inner problem");
        let err = anyhow::Error::new(ClientError::MissingKey);
        assert_eq!(error_line(&err), NO_KEY);
    }
}
