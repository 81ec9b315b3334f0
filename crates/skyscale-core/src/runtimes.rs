//! Which language runtimes this host can run, and the process a sandbox starts for each.
//!
//! The OCI sandboxes bind the host's `/usr` read-only, so a runtime is installed exactly
//! when its interpreter is in the host's `/usr/bin`.

use std::path::Path;

use skyscale_types::Runtime;

use crate::CoreError;

/// Path of the built-in Python bootstrap inside a sandbox.
pub const BOOTSTRAP_IN_SANDBOX: &str = "/var/runtime/bootstrap.py";

/// The Python bootstrap, shipped inside the control-plane binary and written to the
/// runtime directory at start.
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtime/python/bootstrap.py");

/// The installed runtimes, found once at start.
#[derive(Debug, Clone)]
pub struct Runtimes {
    installed: Vec<String>,
}

impl Runtimes {
    /// Looks for `python3.N` interpreters in `bin_dir` (the host's `/usr/bin`).
    pub fn discover(bin_dir: &Path) -> Self {
        let mut installed: Vec<String> = std::fs::read_dir(bin_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| Runtime::parse(name).is_ok())
            .collect();
        installed.sort_by_key(|n| {
            n.trim_start_matches("python3.")
                .parse::<u32>()
                .unwrap_or_default()
        });
        Self { installed }
    }

    pub fn installed(&self) -> &[String] {
        &self.installed
    }

    /// Checks that `name` is a runtime this host can run.
    pub fn resolve(&self, name: &str) -> Result<Runtime, CoreError> {
        let runtime = Runtime::parse(name)?;
        if self.installed.iter().any(|i| i == name) {
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

    /// argv of the runtime process inside the sandbox.
    pub fn command(runtime: &Runtime) -> Vec<String> {
        vec![
            format!("/usr/bin/{}", runtime.as_str()),
            BOOTSTRAP_IN_SANDBOX.to_owned(),
        ]
    }
}
