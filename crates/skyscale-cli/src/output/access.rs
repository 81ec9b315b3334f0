//! How keys and the audit log are printed.

use std::io::Write as _;

use skyscale_types::access::{AuditEntry, CreatedKey, KeyInfo};

use super::{key_values, table};

/// Printed on stderr after a key is created.
pub const KEY_SHOWN_ONCE: &str =
    "this is the only time the key's secret is shown and it will not be shown again: store it now";

/// A `warning: ...` line on stderr (nothing useful can be done if stderr is gone).
pub fn warning(text: &str) {
    let _ = writeln!(std::io::stderr(), "warning: {text}");
}

/// The patterns of a key, or `*` for every function.
fn functions_label(functions: &[String]) -> String {
    if functions.is_empty() {
        "*".to_owned()
    } else {
        functions.join(", ")
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `key create`'s text form: the bearer token first, then the key's settings.
pub fn created_key(k: &CreatedKey) -> String {
    key_values(&[
        ("key", k.key.clone()),
        ("id", k.id.clone()),
        ("role", k.role.to_string()),
        ("functions", functions_label(&k.functions)),
        ("description", dash(&k.description)),
        ("created_at", k.created_at.clone()),
    ])
}

/// `key list`: ID, ROLE, FUNCTIONS, DESCRIPTION, CREATED, REVOKED.
pub fn key_table(keys: &[KeyInfo]) -> String {
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|k| {
            [
                k.id.clone(),
                k.role.to_string(),
                functions_label(&k.functions),
                dash(&k.description),
                k.created_at.clone(),
                k.revoked_at.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(
        [
            "ID",
            "ROLE",
            "FUNCTIONS",
            "DESCRIPTION",
            "CREATED",
            "REVOKED",
        ],
        &rows,
    )
}

/// `audit`: TIME, KEY, ACTION, TARGET, OUTCOME (newest first, as the API answers).
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.time.clone(),
                e.key_id.clone().unwrap_or_else(|| "-".to_owned()),
                e.action.clone(),
                dash(&e.target),
                e.outcome.clone(),
            ]
        })
        .collect();
    table(["TIME", "KEY", "ACTION", "TARGET", "OUTCOME"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyscale_types::Role;

    #[test]
    fn keys_and_audit_tables() {
        let keys = [KeyInfo {
            id: "SKYA".into(),
            role: Role::Developer,
            functions: vec!["team-a-*".into(), "x".into()],
            description: String::new(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            revoked_at: None,
        }];
        assert_eq!(
            key_table(&keys),
            "ID    ROLE       FUNCTIONS    DESCRIPTION  CREATED                   REVOKED\n\
             SKYA  developer  team-a-*, x  -            2026-01-01T00:00:00.000Z  -\n"
        );
        let entries = [AuditEntry {
            id: 1,
            time: "2026-01-01T00:00:00.000Z".into(),
            key_id: Some("SKYA".into()),
            action: "function.deploy".into(),
            target: "f".into(),
            outcome: "refused".into(),
            detail: "no".into(),
        }];
        assert_eq!(
            audit_table(&entries),
            "TIME                      KEY   ACTION           TARGET  OUTCOME\n\
             2026-01-01T00:00:00.000Z  SKYA  function.deploy  f       refused\n"
        );
        let created = created_key(&CreatedKey {
            id: "SKYA".into(),
            key: "SKYA.secret".into(),
            role: Role::Invoker,
            functions: vec![],
            description: "ci".into(),
            created_at: "t".into(),
        });
        assert!(created.starts_with("key:"), "{created}");
        assert!(created.contains("functions:   *\n"), "{created}");
    }
}
