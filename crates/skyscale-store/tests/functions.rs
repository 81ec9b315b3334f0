#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use std::collections::BTreeMap;

use skyscale_store::{
    AliasUpdate, CodeRef, FunctionUpdate, NewApiKey, NewFunction, StoreError, UrlConfigUpdate,
};
use skyscale_types::snapstart::SnapStart;
use skyscale_types::{ApiKey, Cors, FunctionName, MemoryMb, UrlAuthType};

fn new_fn(name: &str) -> NewFunction {
    NewFunction {
        environment: BTreeMap::from([("A".into(), "1".into())]),
        description: "d".into(),
        ..common::new_function(name, None)
    }
}

fn function_lifecycle_survives_reopen(db: &TestDb) {
    let name = FunctionName::parse("f1").unwrap();
    {
        let s = db.open();
        let f = s.create_function(&new_fn("f1")).unwrap();
        assert_eq!(f.revision, 1);
        assert!(matches!(
            s.create_function(&new_fn("f1")),
            Err(StoreError::FunctionExists(_))
        ));
        let u = s
            .update_function(
                &name,
                &FunctionUpdate {
                    memory: Some(MemoryMb::new(256).unwrap()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(u.memory.get(), 256);
        assert_eq!(
            u.environment, f.environment,
            "untouched fields keep their value"
        );
        assert_eq!(u.revision, 2);
        let code = CodeRef {
            sha256: "ab".repeat(32),
            size: 10,
        };
        let c = s.set_function_code(&name, &code).unwrap();
        assert_eq!(c.code, Some(code));
        assert_eq!(c.revision, 3);
        let r = s.set_reserved_concurrency(&name, Some(0)).unwrap();
        assert_eq!((r.reserved_concurrency, r.revision), (Some(0), 3));
    }
    // Reopening runs no migration twice and keeps everything.
    let s = db.open();
    let f = s.get_function(&name).unwrap().unwrap();
    assert_eq!(f.memory.get(), 256);
    assert_eq!(f.reserved_concurrency, Some(0));
    assert_eq!(s.list_functions().unwrap().len(), 1);
    assert_eq!(s.list_functions_after(None, 10).unwrap().len(), 1);
    assert!(s
        .list_functions_after(Some(name.as_str()), 10)
        .unwrap()
        .is_empty());
    assert_eq!(s.referenced_code().unwrap(), vec!["ab".repeat(32)]);
    s.delete_function(&name).unwrap();
    assert!(s.get_function(&name).unwrap().is_none());
    assert!(matches!(
        s.delete_function(&name),
        Err(StoreError::FunctionNotFound(_))
    ));
    assert!(matches!(
        s.update_function(&name, &FunctionUpdate::default()),
        Err(StoreError::FunctionNotFound(_))
    ));
}

fn api_keys_store_hashes_only(db: &TestDb) {
    let s = db.open();
    let key = ApiKey::generate();
    s.insert_api_key(&NewApiKey {
        id: &key.id,
        secret_sha256: &"0".repeat(64),
        secret_sealed: b"sealed-bytes",
        role: "admin",
        functions: None,
        description: "first",
    })
    .unwrap();
    let rec = s.get_api_key(&key.id).unwrap().unwrap();
    assert_eq!(rec.role, "admin");
    assert_eq!(rec.secret_sealed.as_deref(), Some(&b"sealed-bytes"[..]));
    // Only a key without a sealed secret gets one.
    assert!(!s.set_api_key_sealed_secret(&key.id, b"other").unwrap());
    assert_eq!(s.count_active_api_keys().unwrap(), 1);
    drop(s);
    for bytes in db.raw_contents("api_keys") {
        assert!(
            !bytes
                .windows(key.secret().len())
                .any(|w| w == key.secret().as_bytes()),
            "secret found in the database file"
        );
    }
}

fn versions_tags_and_aliases_go_with_their_function(db: &TestDb) {
    let s = db.open();
    let name = FunctionName::parse("f").unwrap();
    s.create_function(&new_fn("f")).unwrap();
    assert!(matches!(
        s.publish_version(&name, None),
        Err(StoreError::Limit(_))
    ));
    let code = CodeRef {
        sha256: "cd".repeat(32),
        size: 3,
    };
    s.set_function_code(&name, &code).unwrap();
    let (v1, new) = s.publish_version(&name, Some("first")).unwrap();
    assert_eq!(
        (v1.version, new, v1.description.as_str()),
        (Some(1), true, "first")
    );
    let (again, new) = s.publish_version(&name, None).unwrap();
    assert_eq!((again.version, new), (Some(1), false));
    s.update_function(
        &name,
        &FunctionUpdate {
            memory: Some(MemoryMb::new(256).unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let (v2, _) = s.publish_version(&name, None).unwrap();
    assert_eq!((v2.version, v2.memory.get()), (Some(2), 256));
    assert_eq!(s.get_version(&name, 1).unwrap().unwrap().memory.get(), 128);
    s.create_alias(&name, "live", Some(1), "", Some((2, 0.5)))
        .unwrap();
    assert!(matches!(
        s.delete_version(&name, 2),
        Err(StoreError::InUse(_))
    ));
    assert!(s.delete_alias(&name, "live").unwrap());
    assert!(s.delete_version(&name, 2).unwrap());
    let (v3, _) = s.publish_version(&name, None).unwrap();
    assert_eq!(v3.version, Some(3), "numbers are never reused");
    s.tag_function(&name, &BTreeMap::from([("k".into(), "v".into())]))
        .unwrap();
    s.create_alias(&name, "a", Some(1), "", None).unwrap();
    s.delete_function(&name).unwrap();
    s.create_function(&new_fn("f")).unwrap();
    assert!(s.list_versions(&name).unwrap().is_empty());
    assert!(s.tags(&name).unwrap().is_empty());
    assert!(s.list_aliases(&name).unwrap().is_empty());
}

fn aliases_may_point_at_latest(db: &TestDb) {
    let s = db.open();
    let name = FunctionName::parse("f").unwrap();
    let mut f = new_fn("f");
    f.code = Some(CodeRef {
        sha256: "ab".repeat(32),
        size: 10,
    });
    s.create_function(&f).unwrap();
    s.publish_version(&name, None).unwrap();
    let a = s.create_alias(&name, "dev", None, "", None).unwrap();
    assert_eq!(a.version, None);
    let a = s
        .update_alias(
            &name,
            "dev",
            &AliasUpdate {
                version: Some(Some(1)),
                ..AliasUpdate::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!((a.version, a.revision), (Some(1), 2));
    let a = s
        .update_alias(
            &name,
            "dev",
            &AliasUpdate {
                version: Some(None),
                ..AliasUpdate::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(a.version, None);
    assert_eq!(s.list_aliases(&name).unwrap(), vec![a]);
}

fn url_configs_follow_their_function_and_alias(db: &TestDb) {
    let name = FunctionName::parse("web").unwrap();
    let cors = Cors {
        allow_origins: vec!["*".into()],
        max_age: Some(60),
        ..Cors::default()
    };
    {
        let s = db.open();
        assert!(matches!(
            s.create_url_config(&name, None, "u0", UrlAuthType::None, None, "BUFFERED"),
            Err(StoreError::FunctionNotFound(_))
        ));
        s.create_function(&new_fn("web")).unwrap();
        let c = s
            .create_url_config(
                &name,
                None,
                "u1",
                UrlAuthType::None,
                Some(&cors),
                "BUFFERED",
            )
            .unwrap();
        assert_eq!((c.alias.as_deref(), c.cors.as_ref()), (None, Some(&cors)));
        assert!(matches!(
            s.create_url_config(&name, None, "u2", UrlAuthType::None, None, "BUFFERED"),
            Err(StoreError::Exists(_))
        ));
        assert!(matches!(
            s.create_url_config(
                &name,
                Some("live"),
                "u3",
                UrlAuthType::None,
                None,
                "BUFFERED"
            ),
            Err(StoreError::NotFound(_))
        ));
        s.create_alias(&name, "live", None, "", None).unwrap();
        s.create_url_config(
            &name,
            Some("live"),
            "u4",
            UrlAuthType::AwsIam,
            None,
            "BUFFERED",
        )
        .unwrap();
    }
    // Survives a restart; updates are partial.
    let s = db.open();
    let all = s.list_url_configs(&name).unwrap();
    let ids: Vec<_> = all
        .iter()
        .map(|c| (c.alias.clone(), c.url_id.as_str()))
        .collect();
    assert_eq!(ids, vec![(None, "u1"), (Some("live".into()), "u4")]);
    let c = s
        .update_url_config(
            &name,
            None,
            &UrlConfigUpdate {
                cors: Some(None),
                ..UrlConfigUpdate::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!((c.cors, c.auth_type), (None, UrlAuthType::None));
    // Deleting the alias deletes its URL; deleting the function deletes the rest.
    assert!(s.delete_alias(&name, "live").unwrap());
    assert_eq!(s.get_url_config(&name, Some("live")).unwrap(), None);
    s.delete_function(&name).unwrap();
    s.create_function(&new_fn("web")).unwrap();
    assert!(s.list_url_configs(&name).unwrap().is_empty());
    assert!(!s.delete_url_config(&name, None).unwrap());
}

/// SnapStart is stored on create and update, survives a reopen, is copied into a published
/// version, and a change of it alone is a new version.
fn snap_start_is_stored_and_published(db: &TestDb) {
    let name = FunctionName::parse("snap").unwrap();
    {
        let s = db.open();
        let f = s
            .create_function(&NewFunction {
                snap_start: SnapStart::PublishedVersions,
                ..new_fn("snap")
            })
            .unwrap();
        assert_eq!(f.snap_start, SnapStart::PublishedVersions);
        let plain = s.create_function(&new_fn("plain")).unwrap();
        assert_eq!(plain.snap_start, SnapStart::None);
        let code = CodeRef {
            sha256: "ab".repeat(32),
            size: 3,
        };
        s.set_function_code(&name, &code).unwrap();
    }
    let s = db.open();
    let f = s.get_function(&name).unwrap().unwrap();
    assert_eq!(f.snap_start, SnapStart::PublishedVersions);
    let (v1, _) = s.publish_version(&name, None).unwrap();
    assert_eq!(v1.snap_start, SnapStart::PublishedVersions);
    let off = s
        .update_function(
            &name,
            &FunctionUpdate {
                snap_start: Some(SnapStart::None),
                ..FunctionUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(off.snap_start, SnapStart::None);
    assert_eq!(
        off.revision,
        f.revision + 1,
        "a change of SnapStart is a new revision"
    );
    let (v2, new) = s.publish_version(&name, None).unwrap();
    assert!(new, "SnapStart alone differs: a new version");
    assert_eq!(v2.snap_start, SnapStart::None);
    let v1_again = s.get_version(&name, 1).unwrap().unwrap();
    assert_eq!(v1_again.snap_start, SnapStart::PublishedVersions);
}

store_tests!(
    snap_start_is_stored_and_published,
    function_lifecycle_survives_reopen,
    api_keys_store_hashes_only,
    versions_tags_and_aliases_go_with_their_function,
    aliases_may_point_at_latest,
    url_configs_follow_their_function_and_alias
);
