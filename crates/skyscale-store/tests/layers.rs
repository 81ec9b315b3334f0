//! Layers: versions numbered from a counter never reused, immutable, listed newest first;
//! a function's (and a published version's) ordered layers, checked when stored; packages
//! referenced while a layer version or a function using it exists.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::TestDb;

use std::time::Duration;

use skyscale_store::{
    CodeRef, FunctionLayer, FunctionUpdate, NewFunction, NewLayerVersion, StoreError,
    MAX_FUNCTION_LAYERS,
};
use skyscale_types::{FunctionName, LayerName, Runtime};

fn code(c: char) -> CodeRef {
    CodeRef {
        sha256: c.to_string().repeat(64),
        size: 10,
    }
}

fn new_layer(name: &str, c: char) -> NewLayerVersion {
    NewLayerVersion {
        layer: LayerName::parse(name).unwrap(),
        description: format!("{name} from {c}"),
        license: Some("MIT".into()),
        compatible_runtimes: vec![Runtime::parse("python3.11").unwrap()],
        code: code(c),
        unzipped_size: 1000,
    }
}

fn layer_versions_are_numbered_once_and_listed(db: &TestDb) {
    let s = db.open();
    let deps = LayerName::parse("deps").unwrap();
    let v1 = s.publish_layer_version(&new_layer("deps", 'a')).unwrap();
    assert_eq!(
        (v1.version, v1.code.clone(), v1.unzipped_size),
        (1, code('a'), 1000)
    );
    assert_eq!(v1.license.as_deref(), Some("MIT"));
    assert_eq!(v1.compatible_runtimes[0].as_str(), "python3.11");
    let v2 = s
        .publish_layer_version(&NewLayerVersion {
            license: None,
            compatible_runtimes: Vec::new(),
            ..new_layer("deps", 'b')
        })
        .unwrap();
    assert_eq!((v2.version, v2.license.clone()), (2, None));
    assert!(v2.compatible_runtimes.is_empty());
    s.publish_layer_version(&new_layer("another", 'c')).unwrap();
    assert_eq!(s.get_layer_version(&deps, 1).unwrap(), Some(v1.clone()));
    assert_eq!(s.get_layer_version(&deps, 9).unwrap(), None);
    let versions: Vec<u64> = s
        .list_layer_versions(&deps)
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, vec![2, 1], "newest first");
    let latest: Vec<(String, u64)> = s
        .list_layers()
        .unwrap()
        .iter()
        .map(|v| (v.layer.to_string(), v.version))
        .collect();
    assert_eq!(
        latest,
        vec![("another".to_string(), 1), ("deps".to_string(), 2)]
    );

    // Deleting the newest version does not give its number again.
    assert!(s.delete_layer_version(&deps, 2).unwrap());
    assert!(!s.delete_layer_version(&deps, 2).unwrap());
    assert_eq!(s.list_layers().unwrap()[1].version, 1);
    assert!(s.delete_layer_version(&deps, 1).unwrap());
    assert!(s.list_layer_versions(&deps).unwrap().is_empty());
    assert_eq!(
        s.list_layers().unwrap().len(),
        1,
        "a layer without versions is not listed"
    );
    drop(s);
    let s = db.open();
    let v3 = s.publish_layer_version(&new_layer("deps", 'd')).unwrap();
    assert_eq!(v3.version, 3, "numbers are never reused");
}

fn function_layers_are_checked_kept_in_order_and_published(db: &TestDb) {
    let s = db.open();
    let a = FunctionLayer::from(&s.publish_layer_version(&new_layer("a", 'a')).unwrap());
    let b = FunctionLayer::from(&s.publish_layer_version(&new_layer("b", 'b')).unwrap());
    let name = FunctionName::parse("f").unwrap();
    let f = s
        .create_function(&NewFunction {
            layers: vec![b.clone(), a.clone()],
            ..common::new_function("f", Some(code('f')))
        })
        .unwrap();
    assert_eq!(f.layers, vec![b.clone(), a.clone()], "in the order given");

    // A version that does not exist, a layer twice, too many: refused, nothing changes.
    let missing = FunctionLayer {
        version: 7,
        ..a.clone()
    };
    let e = s
        .update_function(
            &name,
            &FunctionUpdate {
                layers: Some(vec![missing]),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::NotFound(m) if m.contains("version 7 of layer a")),
        "{e}"
    );
    let e = s
        .update_function(
            &name,
            &FunctionUpdate {
                layers: Some(vec![a.clone(), a.clone()]),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Limit(m) if m.contains("layer a")),
        "{e}"
    );
    let e = s
        .update_function(
            &name,
            &FunctionUpdate {
                layers: Some(vec![a.clone(); MAX_FUNCTION_LAYERS + 1]),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Limit(_)), "{e}");
    let e = s
        .create_function(&NewFunction {
            layers: vec![FunctionLayer {
                version: 3,
                ..b.clone()
            }],
            ..common::new_function("g", None)
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert!(s
        .get_function(&FunctionName::parse("g").unwrap())
        .unwrap()
        .is_none());
    let same = s.get_function(&name).unwrap().unwrap();
    assert_eq!(
        (same.revision, same.layers.clone()),
        (1, vec![b.clone(), a.clone()])
    );

    // A change of layers is a new revision; a published version keeps its layers.
    let (v1, _) = s.publish_version(&name, None).unwrap();
    assert_eq!(v1.layers, vec![b.clone(), a.clone()]);
    let u = s
        .update_function(
            &name,
            &FunctionUpdate {
                layers: Some(vec![a.clone()]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((u.revision, u.layers.clone()), (2, vec![a.clone()]));
    let (v2, new) = s.publish_version(&name, None).unwrap();
    assert!(new, "other layers are another version");
    assert_eq!(v2.layers, vec![a.clone()]);
    assert_eq!(s.get_version(&name, 1).unwrap().unwrap().layers, vec![b, a]);
}

fn layer_packages_stay_referenced_while_used(db: &TestDb) {
    let s = db.open();
    let (a, b, f) = (code('a'), code('b'), code('f'));
    for c in [&a, &b, &f] {
        s.put_code_package(&c.sha256, b"zip").unwrap();
    }
    let la = s.publish_layer_version(&new_layer("a", 'a')).unwrap();
    let lb = s.publish_layer_version(&new_layer("b", 'b')).unwrap();
    let name = common::create_function(&s, "f", Some(f.clone()));
    s.update_function(
        &name,
        &FunctionUpdate {
            layers: Some(vec![FunctionLayer::from(&la)]),
            ..Default::default()
        },
    )
    .unwrap();
    s.publish_version(&name, None).unwrap();
    let mut all = vec![a.sha256.clone(), b.sha256.clone(), f.sha256.clone()];
    all.sort();
    assert_eq!(s.referenced_code().unwrap(), all);

    // Deleting the layer versions: `a` is still used by the function (and its version),
    // `b` by nothing.
    assert!(s.delete_layer_version(&la.layer, la.version).unwrap());
    assert!(s.delete_layer_version(&lb.layer, lb.version).unwrap());
    let f_now = s.get_function(&name).unwrap().unwrap();
    assert_eq!(
        f_now.layers,
        vec![FunctionLayer::from(&la)],
        "the function keeps it"
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        s.collect_code_packages(Duration::from_millis(5)).unwrap(),
        1
    );
    let mut kept = vec![a.sha256.clone(), f.sha256.clone()];
    kept.sort();
    assert_eq!(s.code_packages().unwrap(), kept);
    assert_eq!(s.referenced_code().unwrap(), kept);

    // Off `$LATEST`, still on version 1; with the function gone, nothing.
    s.update_function(
        &name,
        &FunctionUpdate {
            layers: Some(Vec::new()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(s.referenced_code().unwrap().contains(&a.sha256));
    s.delete_function(&name).unwrap();
    assert!(s.referenced_code().unwrap().is_empty());
}

/// New code and the whole list of layers in one update (a requirements deploy); a layer
/// that does not exist refuses both.
fn code_and_layers_change_together(db: &TestDb) {
    let s = db.open();
    let a = FunctionLayer::from(&s.publish_layer_version(&new_layer("a", 'a')).unwrap());
    let b = FunctionLayer::from(&s.publish_layer_version(&new_layer("b", 'b')).unwrap());
    let name = FunctionName::parse("f").unwrap();
    let f = s
        .create_function(&NewFunction {
            layers: vec![a.clone()],
            ..common::new_function("f", Some(code('f')))
        })
        .unwrap();
    let g = s
        .set_function_code_if(&name, &code('g'), Some(&[b.clone(), a.clone()]), None)
        .unwrap();
    assert_eq!(g.code, Some(code('g')));
    assert_eq!(g.layers, vec![b.clone(), a.clone()]);
    assert_eq!(g.revision, f.revision + 1);
    // Without layers, the code alone changes.
    let h = s
        .set_function_code_if(&name, &code('h'), None, Some(g.revision))
        .unwrap();
    assert_eq!(h.layers, g.layers);
    let missing = FunctionLayer {
        version: 9,
        ..b.clone()
    };
    let e = s
        .set_function_code_if(&name, &code('i'), Some(&[missing]), None)
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::NotFound(m) if m.contains("version 9 of layer b")),
        "{e}"
    );
    let now = s.get_function(&name).unwrap().unwrap();
    assert_eq!(
        (now.code, now.layers, now.revision),
        (h.code, h.layers, h.revision)
    );
}

store_tests!(
    code_and_layers_change_together,
    layer_versions_are_numbered_once_and_listed,
    function_layers_are_checked_kept_in_order_and_published,
    layer_packages_stay_referenced_while_used,
);
