#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use skyscale_store::{CodeRef, StoreError};
use skyscale_types::FunctionName;

/// A function with code and two published versions, and an alias `live` of version 1.
fn setup(s: &skyscale_store::Store, name: &str) -> FunctionName {
    let f = FunctionName::parse(name).unwrap();
    let code = |c: char| CodeRef {
        sha256: c.to_string().repeat(64),
        size: 10,
    };
    s.create_function(&common::new_function(name, Some(code('a'))))
        .unwrap();
    s.publish_version(&f, None).unwrap();
    s.set_function_code(&f, &code('b')).unwrap();
    s.publish_version(&f, None).unwrap();
    s.create_alias(&f, "live", Some(1), "", None).unwrap();
    f
}

fn configs_are_put_replaced_listed_and_survive_reopen(db: &TestDb) {
    let f = {
        let s = db.open();
        let f = setup(&s, "pc");
        let a = s.put_provisioned_config(&f, "live", 2).unwrap();
        assert_eq!((a.qualifier.as_str(), a.requested), ("live", 2));
        let v = s.put_provisioned_config(&f, "2", 1).unwrap();
        assert_eq!(v.requested, 1);
        // A put replaces.
        assert_eq!(
            s.put_provisioned_config(&f, "live", 3).unwrap().requested,
            3
        );
        f
    };
    let s = db.open();
    let list = s.list_provisioned_configs(&f).unwrap();
    let got: Vec<(&str, u32)> = list
        .iter()
        .map(|c| (c.qualifier.as_str(), c.requested))
        .collect();
    assert_eq!(got, vec![("2", 1), ("live", 3)]);
    assert_eq!(s.all_provisioned_configs().unwrap(), list);
    assert_eq!(
        s.get_provisioned_config(&f, "live")
            .unwrap()
            .unwrap()
            .requested,
        3
    );
    assert!(s.delete_provisioned_config(&f, "2").unwrap());
    assert!(
        !s.delete_provisioned_config(&f, "2").unwrap(),
        "already gone"
    );
    assert_eq!(s.get_provisioned_config(&f, "2").unwrap(), None);
}

fn configs_need_an_existing_version_or_alias(db: &TestDb) {
    let s = db.open();
    let f = setup(&s, "pc");
    assert!(matches!(
        s.put_provisioned_config(&f, "9", 1),
        Err(StoreError::NotFound(m)) if m.contains("pc:9")
    ));
    assert!(matches!(
        s.put_provisioned_config(&f, "nope", 1),
        Err(StoreError::NotFound(_))
    ));
    let missing = FunctionName::parse("missing").unwrap();
    assert!(matches!(
        s.put_provisioned_config(&missing, "1", 1),
        Err(StoreError::FunctionNotFound(_))
    ));
    assert!(s.all_provisioned_configs().unwrap().is_empty());
}

fn deleting_a_version_alias_or_function_deletes_its_config(db: &TestDb) {
    let s = db.open();
    let f = setup(&s, "pc");
    let other = setup(&s, "other");
    s.put_provisioned_config(&f, "live", 1).unwrap();
    s.put_provisioned_config(&f, "2", 1).unwrap();
    s.put_provisioned_config(&other, "live", 1).unwrap();
    assert!(s.delete_alias(&f, "live").unwrap());
    assert_eq!(s.get_provisioned_config(&f, "live").unwrap(), None);
    assert!(s.delete_version(&f, 2).unwrap());
    assert_eq!(s.get_provisioned_config(&f, "2").unwrap(), None);
    s.delete_function(&other).unwrap();
    assert!(s.all_provisioned_configs().unwrap().is_empty());
}

fn a_reservation_may_not_fall_below_what_is_provisioned(db: &TestDb) {
    let s = db.open();
    let f = setup(&s, "rsv");
    s.put_provisioned_config(&f, "live", 2).unwrap();
    s.put_provisioned_config(&f, "2", 1).unwrap();
    assert_eq!(
        s.set_reserved_concurrency(&f, Some(3))
            .unwrap()
            .reserved_concurrency,
        Some(3)
    );
    let e = s.set_reserved_concurrency(&f, Some(2)).unwrap_err();
    assert!(
        matches!(&e, StoreError::Limit(m) if m.contains("below the 3 provisioned")),
        "{e}"
    );
    assert_eq!(
        s.get_function(&f).unwrap().unwrap().reserved_concurrency,
        Some(3),
        "unchanged"
    );
    // Removing the reservation is allowed (provisioned concurrency then comes from the
    // account's unreserved pool), and so is any reservation once the configs are gone.
    assert_eq!(
        s.set_reserved_concurrency(&f, None)
            .unwrap()
            .reserved_concurrency,
        None
    );
    s.delete_provisioned_config(&f, "live").unwrap();
    s.delete_provisioned_config(&f, "2").unwrap();
    assert_eq!(
        s.set_reserved_concurrency(&f, Some(0))
            .unwrap()
            .reserved_concurrency,
        Some(0)
    );
}

store_tests!(
    a_reservation_may_not_fall_below_what_is_provisioned,
    configs_are_put_replaced_listed_and_survive_reopen,
    configs_need_an_existing_version_or_alias,
    deleting_a_version_alias_or_function_deletes_its_config,
);
