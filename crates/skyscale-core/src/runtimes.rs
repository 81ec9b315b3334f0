//! Which language runtimes this host can run, and the process a sandbox starts for each.
//!
//! The OCI sandboxes bind the host's `/usr` read-only, so a Python runtime is installed
//! exactly when its interpreter is in the host's `/usr/bin`. The custom runtime (`provided`)
//! is always available: the function's own `bootstrap` is the runtime process, and it
//! brings its runtime with it (or `exec`s one from the host's read-only `/usr`).

use std::collections::BTreeMap;
use std::path::Path;

use skyscale_protocol::{Prewarm, PREWARM_ENV};
use skyscale_types::Runtime;

use crate::CoreError;

/// Path of the built-in Python bootstrap inside a sandbox.
pub const BOOTSTRAP_IN_SANDBOX: &str = "/var/runtime/bootstrap.py";

/// The executable a `provided` function's code package must have at its root.
pub const PROVIDED_BOOTSTRAP: &str = "bootstrap";

/// The Python bootstrap, shipped inside the control-plane binary and written to the
/// runtime directory at start.
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtime/python/bootstrap.py");

/// The variables an interpreter reads at start-up, with the values every `Init.env` has unless
/// the function overrides them (they mirror the defaults in `ControlPlane::init_frame`): the
/// whole environment of the pre-started runtime. Were they to drift apart, the agents would
/// never use the pre-started runtime (and say so on stderr), nothing worse.
pub const STARTUP_ENV: [(&str, &str); 3] = [
    ("LANG", "C.UTF-8"),
    ("HOME", "/tmp"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
];

/// The installed runtimes, found once at start.
#[derive(Debug, Clone)]
pub struct Runtimes {
    installed: Vec<String>,
    /// The Python SDK the sandboxes see at `/var/runtime/sdk`: package name → version.
    python_sdk: BTreeMap<String, String>,
}

/// A runtime as listed (`skyscale runtime list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub name: String,
    /// Packages every function of the runtime can import without bundling them (boto3 and
    /// botocore for Python, as in Lambda), with their versions.
    pub packages: BTreeMap<String, String>,
}

impl Runtimes {
    /// Looks for `python3.N` interpreters in `bin_dir` (the host's `/usr/bin`).
    pub fn discover(bin_dir: &Path) -> Self {
        let mut installed: Vec<String> = std::fs::read_dir(bin_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| Runtime::parse(name).is_ok_and(|r| !r.is_provided()))
            .collect();
        installed.sort_by_key(|n| {
            n.trim_start_matches("python3.")
                .parse::<u32>()
                .unwrap_or_default()
        });
        Self {
            installed,
            python_sdk: BTreeMap::new(),
        }
    }

    /// Notes the Python SDK installed in `dir` (its `*.dist-info` directories): what Python
    /// functions can import without bundling it.
    pub fn with_python_sdk(mut self, dir: &Path) -> Self {
        self.python_sdk = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| {
                let stem = n.strip_suffix(".dist-info")?;
                let (name, version) = stem.split_once('-')?;
                Some((
                    name.replace('_', "-").to_ascii_lowercase(),
                    version.to_owned(),
                ))
            })
            .collect();
        self
    }

    pub fn installed(&self) -> &[String] {
        &self.installed
    }

    /// Every runtime a function may name, with what it brings.
    pub fn list(&self) -> Vec<RuntimeInfo> {
        let python = self.installed.iter().map(|name| RuntimeInfo {
            name: name.clone(),
            packages: self.python_sdk.clone(),
        });
        let provided = ["provided", "provided.al2", "provided.al2023"]
            .into_iter()
            .map(|name| RuntimeInfo {
                name: name.to_owned(),
                packages: BTreeMap::new(),
            });
        python.chain(provided).collect()
    }

    /// Checks that `name` is a runtime this host can run.
    pub fn resolve(&self, name: &str) -> Result<Runtime, CoreError> {
        let runtime = Runtime::parse(name)?;
        if runtime.is_provided() || self.installed.iter().any(|i| i == name) {
            Ok(runtime)
        } else {
            Err(CoreError::InvalidParameter(format!(
                "runtime {name} is not installed on this host; installed runtimes: {}",
                if self.installed.is_empty() {
                    "none".to_owned()
                } else {
                    self.installed.join(", ")
                }
            )))
        }
    }

    /// The default runtime: the newest installed `python3.N`.
    pub fn default_runtime(&self) -> Option<Runtime> {
        self.installed.last().and_then(|n| Runtime::parse(n).ok())
    }

    /// What every generic sandbox pre-starts: the default runtime's command with
    /// [`STARTUP_ENV`], as the agent's environment variable (name, JSON value). A cold start of
    /// a function on the default runtime without start-up overrides then skips the
    /// interpreter's start and the bootstrap's imports (skyscale-protocol, "The pre-started
    /// runtime"). `None` when no runtime is installed.
    pub fn prewarm_env(&self) -> Option<(String, String)> {
        let prewarm = Prewarm {
            command: Self::command(&self.default_runtime()?),
            env: STARTUP_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let json = serde_json::to_string(&prewarm).ok()?;
        Some((PREWARM_ENV.to_owned(), json))
    }

    /// argv of the runtime process inside the sandbox: the built-in bootstrap under the
    /// runtime's interpreter, or the code's own `bootstrap` for `provided`.
    pub fn command(runtime: &Runtime) -> Vec<String> {
        if runtime.is_provided() {
            return vec![format!("/var/task/{PROVIDED_BOOTSTRAP}")];
        }
        vec![
            format!("/usr/bin/{}", runtime.as_str()),
            BOOTSTRAP_IN_SANDBOX.to_owned(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_sdk_is_read_from_its_dist_info() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "boto3-1.44.18.dist-info",
            "python_dateutil-2.9.0.dist-info",
            "boto3",
        ] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let bin = tempfile::tempdir().unwrap();
        std::fs::write(bin.path().join("python3.11"), "").unwrap();
        let list = Runtimes::discover(bin.path())
            .with_python_sdk(dir.path())
            .list();
        assert_eq!(list[0].name, "python3.11");
        assert_eq!(list[0].packages["boto3"], "1.44.18");
        assert_eq!(list[0].packages["python-dateutil"], "2.9.0");
        assert_eq!(list[0].packages.len(), 2);
        assert!(list
            .iter()
            .any(|r| r.name == "provided.al2023" && r.packages.is_empty()));
    }

    #[test]
    fn the_newest_python_is_prewarmed() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "python3.9",
            "python3.12",
            "python3.11",
            "python3.12-config",
            "python3",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let runtimes = Runtimes::discover(dir.path());
        assert_eq!(
            runtimes.installed(),
            ["python3.9", "python3.11", "python3.12"]
        );
        assert_eq!(runtimes.default_runtime().unwrap().as_str(), "python3.12");
        let (name, json) = runtimes.prewarm_env().unwrap();
        assert_eq!(name, "SKYSCALE_PREWARM");
        let prewarm: Prewarm = serde_json::from_str(&json).unwrap();
        assert_eq!(
            prewarm.command,
            ["/usr/bin/python3.12", "/var/runtime/bootstrap.py"]
        );
        assert!(prewarm
            .env
            .contains(&("LANG".to_owned(), "C.UTF-8".to_owned())));
        assert!(Runtimes::discover(&dir.path().join("none"))
            .prewarm_env()
            .is_none());
    }

    #[test]
    fn provided_is_always_installed_and_runs_the_bootstrap() {
        let none = Runtimes::discover(Path::new("/nonexistent"));
        for name in ["provided", "provided.al2", "provided.al2023"] {
            let runtime = none.resolve(name).unwrap();
            assert_eq!(Runtimes::command(&runtime), ["/var/task/bootstrap"]);
        }
        assert!(none.resolve("python3.11").is_err());
        assert!(none.default_runtime().is_none());
    }
}
