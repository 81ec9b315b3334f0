//! Local checks of what the user typed, done before anything is sent.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

/// The event to send: `--payload`, `--payload-file` (`-` for stdin), or `{}`. The bytes are
/// sent as they are, after checking they are JSON.
pub fn read_payload(payload: Option<&str>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match (payload, file) {
        (Some(text), _) => {
            validate_json(text.as_bytes()).context("--payload is not valid JSON")?;
            Ok(text.as_bytes().to_vec())
        }
        (None, Some(path)) => {
            let bytes = if path == Path::new("-") {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("cannot read the payload from standard input")?;
                buf
            } else {
                std::fs::read(path)
                    .with_context(|| format!("cannot read payload file {}", path.display()))?
            };
            let what = if path == Path::new("-") {
                "standard input".to_owned()
            } else {
                path.display().to_string()
            };
            validate_json(&bytes)
                .with_context(|| format!("payload from {what} is not valid JSON"))?;
            Ok(bytes)
        }
        (None, None) => Ok(b"{}".to_vec()),
    }
}

/// Checks that `bytes` hold exactly one JSON value (surrounding whitespace allowed).
pub fn validate_json(bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("it is empty");
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)?;
    Ok(())
}

/// The `--env` pairs as a map; a key given twice is a mistake worth stopping for.
pub fn env_map(pairs: &[(String, String)]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            bail!("environment variable {key} is given twice with --env");
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(err: anyhow::Error) -> String {
        format!("{err:#}")
    }

    #[test]
    fn default_payload_is_empty_object() {
        assert_eq!(read_payload(None, None).unwrap(), b"{}");
    }

    #[test]
    fn payload_is_sent_verbatim() {
        let text = r#"{ "a": 1.50, "b": [true, null] }"#;
        assert_eq!(read_payload(Some(text), None).unwrap(), text.as_bytes());
        assert_eq!(
            read_payload(Some("\"just a string\""), None).unwrap(),
            b"\"just a string\""
        );
    }

    #[test]
    fn invalid_payload_is_refused_with_the_reason() {
        assert_eq!(
            msg(read_payload(Some("{not json"), None).unwrap_err()),
            "--payload is not valid JSON: key must be a string at line 1 column 2"
        );
        assert_eq!(
            msg(read_payload(Some("{} {}"), None).unwrap_err()),
            "--payload is not valid JSON: trailing characters at line 1 column 4"
        );
        assert_eq!(
            msg(read_payload(Some("  "), None).unwrap_err()),
            "--payload is not valid JSON: it is empty"
        );
    }

    #[test]
    fn payload_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("event.json");
        std::fs::write(&good, "{\"k\": \"v\"}\n").unwrap();
        assert_eq!(
            read_payload(None, Some(&good)).unwrap(),
            b"{\"k\": \"v\"}\n"
        );

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "nope").unwrap();
        let err = msg(read_payload(None, Some(&bad)).unwrap_err());
        assert!(err.starts_with(&format!(
            "payload from {} is not valid JSON: ",
            bad.display()
        )));

        let missing = dir.path().join("missing.json");
        let err = msg(read_payload(None, Some(&missing)).unwrap_err());
        assert!(err.starts_with(&format!("cannot read payload file {}: ", missing.display())));
    }

    #[test]
    fn env_map_refuses_duplicates() {
        let pairs = [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned()),
        ];
        assert_eq!(env_map(&pairs).unwrap().len(), 2);
        let dup = [
            ("A".to_owned(), "1".to_owned()),
            ("A".to_owned(), "2".to_owned()),
        ];
        assert_eq!(
            msg(env_map(&dup).unwrap_err()),
            "environment variable A is given twice with --env"
        );
    }
}
