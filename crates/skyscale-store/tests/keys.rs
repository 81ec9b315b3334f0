//! API keys (patterns, revocation, the last admin key) and the audit log, against real
//! SQLite and PostgreSQL databases.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use skyscale_store::{NewApiKey, NewAuditEntry, Revocation, Store};
use skyscale_types::ApiKey;

fn add_key(s: &Store, role: &str, functions: Option<&[String]>) -> ApiKey {
    let key = ApiKey::generate();
    s.insert_api_key(&NewApiKey {
        id: &key.id,
        secret_sha256: &"0".repeat(64),
        secret_sealed: b"sealed",
        role,
        functions,
        description: "",
    })
    .unwrap();
    key
}

fn keys_keep_their_patterns_and_the_last_admin_cannot_be_revoked(db: &TestDb) {
    let s = db.open();
    let admin = add_key(&s, "admin", None);
    let patterns = vec!["team-a-*".to_owned(), "shared".to_owned()];
    let dev = add_key(&s, "developer", Some(&patterns));
    let rec = s.get_api_key(&dev.id).unwrap().unwrap();
    assert_eq!(rec.functions.as_deref(), Some(&patterns[..]));
    assert_eq!(s.get_api_key(&admin.id).unwrap().unwrap().functions, None);
    let listed: Vec<_> = s
        .list_api_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&admin.id) && listed.contains(&dev.id));

    // The only admin key stays, whatever else happens.
    assert_eq!(s.revoke_api_key(&admin.id).unwrap(), Revocation::LastAdmin);
    assert!(s
        .get_api_key(&admin.id)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    assert!(matches!(
        s.revoke_api_key(&dev.id).unwrap(),
        Revocation::Revoked(k) if k.revoked_at.is_some()
    ));
    assert!(matches!(
        s.revoke_api_key(&dev.id).unwrap(),
        Revocation::AlreadyRevoked(_)
    ));
    assert_eq!(
        s.revoke_api_key(&ApiKey::generate().id).unwrap(),
        Revocation::NotFound
    );
    // With a second admin, either may go, but not both.
    let admin2 = add_key(&s, "admin", None);
    assert!(matches!(
        s.revoke_api_key(&admin.id).unwrap(),
        Revocation::Revoked(_)
    ));
    assert_eq!(s.revoke_api_key(&admin2.id).unwrap(), Revocation::LastAdmin);
    assert_eq!(s.count_active_api_keys().unwrap(), 1);
    // An id is never reused.
    assert!(s
        .insert_api_key(&NewApiKey {
            id: &admin.id,
            secret_sha256: "x",
            secret_sealed: b"",
            role: "admin",
            functions: None,
            description: "",
        })
        .is_err());
}

fn audit_entries_come_newest_first(db: &TestDb) {
    let s = db.open();
    for (i, outcome) in ["ok", "refused", "not_found"].iter().enumerate() {
        s.append_audit(&NewAuditEntry {
            key_id: Some("SKYKEY1"),
            action: "function.deploy",
            target: &format!("f{i}"),
            outcome,
            detail: &"d".repeat(5000),
        })
        .unwrap();
    }
    let all = s.audit_entries(10, None).unwrap();
    let targets: Vec<_> = all.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["f2", "f1", "f0"]);
    assert_eq!(all[1].outcome, "refused");
    assert_eq!(all[0].key_id.as_deref(), Some("SKYKEY1"));
    assert!(all[0].detail.len() <= 1024);
    assert!(all[0].id > all[1].id);
    assert_eq!(s.audit_entries(1, None).unwrap().len(), 1);
    assert_eq!(s.audit_entries(10, Some("9999")).unwrap().len(), 0);
    assert_eq!(s.audit_entries(10, Some(&all[2].time)).unwrap().len(), 3);
}

store_tests!(
    keys_keep_their_patterns_and_the_last_admin_cannot_be_revoked,
    audit_entries_come_newest_first
);
