//! Code packages kept in the database (for stores shared by several hosts): stored before
//! any row references them, read back byte for byte, removed only when unreferenced and
//! older than the grace.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use std::collections::BTreeMap;
use std::time::Duration;

use skyscale_store::{CodeRef, NewFunction};
use skyscale_types::{FunctionName, Handler, MemoryMb, Runtime, TimeoutSecs};

fn packages_are_kept_while_referenced_or_young(db: &TestDb) {
    let s = db.open();
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    s.put_code_package(&a, b"zip A").unwrap();
    s.put_code_package(&b, b"zip B").unwrap();
    // Storing again is not an error (the same bytes uploaded twice).
    s.put_code_package(&b, b"zip B").unwrap();
    s.create_function(&NewFunction {
        name: FunctionName::parse("uses-a").unwrap(),
        runtime: Runtime::parse("python3.11").unwrap(),
        handler: Handler::parse("handler.handler").unwrap(),
        memory: MemoryMb::DEFAULT,
        timeout: TimeoutSecs::DEFAULT,
        environment: BTreeMap::new(),
        description: String::new(),
        code: Some(CodeRef {
            sha256: a.clone(),
            size: 5,
        }),
        network: false,
        ephemeral_mb: 512,
        layers: Vec::new(),
        snap_start: Default::default(),
    })
    .unwrap();
    assert_eq!(s.code_package(&a).unwrap().as_deref(), Some(&b"zip A"[..]));
    assert_eq!(s.code_packages().unwrap(), vec![a.clone(), b.clone()]);

    // Within the grace nothing goes, referenced or not (another host's upload may not have
    // committed its row yet).
    assert_eq!(
        s.collect_code_packages(Duration::from_secs(900)).unwrap(),
        0
    );
    std::thread::sleep(Duration::from_millis(20));
    // Past it, only the unreferenced one.
    assert_eq!(
        s.collect_code_packages(Duration::from_millis(5)).unwrap(),
        1
    );
    assert_eq!(s.code_packages().unwrap(), vec![a.clone()]);
    assert_eq!(s.code_package(&b).unwrap(), None);
    // Reopened (another host): the same bytes.
    drop(s);
    assert_eq!(
        db.open().code_package(&a).unwrap().as_deref(),
        Some(&b"zip A"[..])
    );
}

store_tests!(packages_are_kept_while_referenced_or_young);
