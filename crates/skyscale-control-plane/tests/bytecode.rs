//! Bytecode compiled at deploy (`skyscale-core`'s `bytecode.rs`), end to end on runc and
//! gVisor: a
//! function's package and its layer are imported from the pycs written when they were
//! stored, without compiling anything at import, and the handler sees the same `sys.path`
//! and `__file__` as with `SKYSCALE_BYTECODE=off`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{tail, zip_of, Server};

/// Records every source compiled after it starts (importlib's `source_to_code`), imports a
/// module of the package and one of the layer, and reports their pycs.
const HANDLER: &str = r#"
import importlib.machinery, os, sys, time
COMPILED = []
_compile = importlib.machinery.SourceFileLoader.source_to_code
def _spy(self, data, path, *args, **kwargs):
    COMPILED.append(path)
    return _compile(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = _spy

import pkg.helper
import layermod


def pyc(module):
    cached = getattr(module, "__cached__", None)
    if not cached or not os.path.exists(cached):
        return None
    with open(cached, "rb") as f:
        head = f.read(8)
    return {
        "path": cached,
        "flags": int.from_bytes(head[4:8], "little"),
        "mtime": os.stat(cached).st_mtime,
    }


def handler(event, context):
    return {
        "now": time.time(),
        "compiled": COMPILED,
        "handler": pyc(sys.modules[__name__]),
        "helper": pyc(pkg.helper),
        "layer": pyc(layermod),
        "answers": [pkg.helper.answer(), layermod.answer()],
        "file": __file__,
        "files": [pkg.helper.__file__, layermod.__file__],
        "path": sys.path,
    }
"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Publishes the layer, creates the function with it and invokes it once (a cold start).
fn deploy_and_invoke(server: &Server) -> serde_json::Value {
    let http = server.http();
    let layer = zip_of(&[("python/layermod.py", "def answer():\n    return 'layer'\n")]);
    let r = http.post_json(
        "/v1/layers/lib/versions",
        &serde_json::json!({
            "zip_base64": base64::engine::general_purpose::STANDARD.encode(layer),
        }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let arn = r.json()["arn"].as_str().unwrap().to_owned();
    let code = zip_of(&[
        ("handler.py", HANDLER),
        ("pkg/__init__.py", ""),
        ("pkg/helper.py", "def answer():\n    return 'package'\n"),
    ]);
    let r = http.post_json(
        "/v1/functions",
        &serde_json::json!({
            "name": "pyc",
            "runtime": "python3.11",
            "handler": "handler.handler",
            "layers": [arn],
            "code_zip_base64": base64::engine::general_purpose::STANDARD.encode(code),
        }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http.invoke("pyc", "{}");
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&r.body),
        tail(&server.log(), 30)
    );
    assert_eq!(r.header("x-skyscale-cold-start"), Some("true"));
    assert!(
        r.header("x-skyscale-function-error").is_none(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

#[test]
fn modules_are_imported_from_the_bytecode_compiled_at_deploy_on_runc() {
    imported_from_deploy_time_bytecode("runc");
}

#[test]
fn modules_are_imported_from_the_bytecode_compiled_at_deploy_on_gvisor() {
    imported_from_deploy_time_bytecode("gvisor");
}

fn imported_from_deploy_time_bytecode(driver: &str) {
    let before_deploy = now();
    let server = Server::start_with(driver, &[("WARM_POOL_SIZE", "1")]);
    let got = deploy_and_invoke(&server);
    assert_eq!(got["answers"], serde_json::json!(["package", "layer"]));
    // Nothing of the package or the layer was compiled at import.
    let compiled: Vec<&str> = got["compiled"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .filter(|p| p.starts_with("/var/task") || p.starts_with("/opt"))
        .collect();
    assert!(compiled.is_empty(), "compiled at import: {compiled:?}");
    let invoked = got["now"].as_f64().unwrap();
    for (module, dir) in [
        ("handler", "/var/task/__pycache__/handler."),
        ("helper", "/var/task/pkg/__pycache__/helper."),
        ("layer", "/opt/python/__pycache__/layermod."),
    ] {
        let pyc = &got[module];
        assert!(pyc.is_object(), "{module} has no pyc: {got}");
        assert!(
            pyc["path"].as_str().unwrap().starts_with(dir),
            "{module}: {pyc}"
        );
        assert_eq!(
            pyc["flags"], 0b01,
            "{module}: not unchecked hash-based: {pyc}"
        );
        // Written at deploy: after the test started, before the invocation.
        let mtime = pyc["mtime"].as_f64().unwrap();
        assert!(
            before_deploy - 1.0 <= mtime && mtime < invoked,
            "{module}: pyc written at {mtime}, test started {before_deploy}, invoked {invoked}"
        );
    }
    assert!(
        server
            .log()
            .contains("compiled a code package's Python sources"),
        "{}",
        tail(&server.log(), 30)
    );

    // Without deploy-time bytecode: the same sys.path and __file__, and the sources are
    // compiled at import, in memory (the package is read-only: no pyc appears).
    let off = Server::start_with(
        driver,
        &[("WARM_POOL_SIZE", "1"), ("SKYSCALE_BYTECODE", "off")],
    );
    let without = deploy_and_invoke(&off);
    for field in ["file", "files", "path", "answers"] {
        assert_eq!(got[field], without[field], "{field} differs");
    }
    assert_eq!(got["file"], "/var/task/handler.py");
    assert!(without["helper"].is_null(), "{without}");
    let compiled = without["compiled"].to_string();
    assert!(
        compiled.contains("/var/task/pkg/helper.py")
            && compiled.contains("/opt/python/layermod.py"),
        "{compiled}"
    );
}
