//! The pre-started runtime ("zygote") of a generic sandbox: started right after `Hello` from the
//! [`Prewarm`] in the agent's environment, handed the function's `Init` over the runtime pipe
//! when that `Init` may use it, killed otherwise. The contract with the runtime is in
//! skyscale-protocol ("The pre-started runtime").
//!
//! Why: on a pre-booted sandbox almost all of a cold start is the interpreter starting and the
//! bootstrap importing its modules (about 7.5 times slower under gVisor than on the host). The
//! zygote does that while the sandbox waits in the pool.
//!
//! Exactness: the handler must not be able to tell a zygote from a fresh start. What a process
//! does with its environment later (`os.environ`, `getenv`) the runtime replays when it applies
//! the `Init`; what the interpreter and the C library fixed at start-up from the environment
//! cannot be replayed: the locale and the standard streams' encoding (`LANG`, `LC_*`),
//! `sys.flags`, `sys.path` and the hash seed (`PYTHON*`, the user site under `HOME`), the
//! dynamic loader's and malloc's settings (`LD_*`, `GLIBC_TUNABLES`, `MALLOC_*`), what `.pth`
//! files read (`SETUPTOOLS_USE_DISTUTILS`). Those must agree between the zygote's environment
//! and `Init.env` ([`unfit`]). `TZ` need not: the runtime re-reads it. Everything the zygote
//! was given is treated as significant too, so the control plane decides what the zygote's
//! environment holds (the defaults of `Init.env`). Changes the start-up itself made to the
//! environment (locale coercion's `LC_CTYPE`) the runtime replays.
//!
//! Concurrency: none of its own. The zygote is the agent's only child until `Init`; the main
//! thread checks it with `waitpid(pid, WNOHANG)` and kills and reaps a zygote it does not use,
//! all before the reaper thread starts ([`crate::process`]).

use std::collections::BTreeMap;

use rustix::fs::Access;
use skyscale_protocol::{Frame, Init, Prewarm};

use crate::pipe::{self, RuntimePipe};
use crate::process::{self, kill_and_reap, kill_group, try_reap, Runtime};

/// Variables read at start-up that a runtime cannot re-apply later, by exact name.
/// `SETUPTOOLS_USE_DISTUTILS` is read by Debian's `distutils-precedence.pth`, which every
/// start of the host's Python runs.
const STARTUP_NAMES: [&str; 7] = [
    "LANG",
    "LANGUAGE",
    "HOME",
    "LOCPATH",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "SETUPTOOLS_USE_DISTUTILS",
];
/// The same, by prefix.
const STARTUP_PREFIXES: [&str; 4] = ["PYTHON", "LC_", "LD_", "MALLOC_"];

/// Whether the interpreter or the C library reads `name` at start-up for good.
pub fn is_startup_var(name: &str) -> bool {
    STARTUP_NAMES.contains(&name) || STARTUP_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A started zygote; dropping it kills it.
pub struct Zygote {
    /// `None` once handed over or gotten rid of.
    inner: Option<Started>,
}

struct Started {
    prewarm: Prewarm,
    runtime: Runtime,
    pipe: RuntimePipe,
}

/// The zygote, handed over to run the function: it has its `Init` (or the rest of it waits in
/// the pipe's outbox).
pub struct Adopted {
    pub runtime: Runtime,
    pub pipe: RuntimePipe,
}

impl Zygote {
    /// Starts `prewarm.command` as a zygote. An error says why it could not start.
    pub fn start(prewarm: &Prewarm) -> Result<Zygote, String> {
        let (pipe, child_ends) = pipe::pair().map_err(|e| e.to_string())?;
        let spawned = process::spawn_zygote(prewarm, &child_ends);
        // The zygote holds its ends now; closing ours lets either side see end of file.
        drop(child_ends);
        let runtime = spawned.map_err(|e| e.0)?;
        Ok(Zygote {
            inner: Some(Started {
                prewarm: prewarm.clone(),
                runtime,
                pipe,
            }),
        })
    }

    /// Hands the zygote over to run `init` and sends it the `Init` (its env plus
    /// `AWS_LAMBDA_RUNTIME_API` = `runtime_api`). `Err` says why the zygote cannot be used;
    /// it is then killed and reaped, and the caller starts the runtime as usual.
    pub fn adopt(mut self, init: &Init, runtime_api: &str) -> Result<Adopted, String> {
        let Some(Started {
            prewarm,
            runtime,
            mut pipe,
        }) = self.inner.take()
        else {
            return Err("it is gone".to_string());
        };
        if let Some(reason) = unfit(&prewarm, init) {
            kill_and_reap(runtime.pid);
            return Err(reason);
        }
        if let Some(status) = try_reap(runtime.pid) {
            return Err(format!("it exited before Init ({status})"));
        }
        let mut env = init.env.clone();
        env.push((
            "AWS_LAMBDA_RUNTIME_API".to_string(),
            runtime_api.to_string(),
        ));
        let frame = Frame::Init(Init {
            env,
            ..init.clone()
        });
        if let Err(e) = pipe.send(&frame) {
            // It closed its end: it is exiting.
            kill_and_reap(runtime.pid);
            return Err(format!("it did not take its Init: {e}"));
        }
        Ok(Adopted { runtime, pipe })
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Some(z) = &self.inner {
            kill_group(z.runtime.pid);
        }
    }
}

/// Why a runtime started for `init` would differ from the zygote started from `prewarm`, or
/// `None` when it would not. Names variables, never their values.
pub fn unfit(prewarm: &Prewarm, init: &Init) -> Option<String> {
    if init.command != prewarm.command {
        return Some(format!(
            "the function's runtime command {:?} is not the pre-started {:?}",
            init.command, prewarm.command
        ));
    }
    // A spawn refuses NUL bytes and passes `A=B` as `A` = `B=..`; leave both to a spawn.
    if let Some((name, _)) = init
        .env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
    {
        return Some(format!("the environment variable {name:?} is malformed"));
    }
    // A spawn reports a working directory it cannot enter; leave that to it.
    let enterable = std::fs::metadata(&init.cwd).is_ok_and(|m| m.is_dir())
        && rustix::fs::access(init.cwd.as_str(), Access::EXEC_OK).is_ok();
    if !enterable {
        return Some(format!("cannot enter the working directory {:?}", init.cwd));
    }
    // Later duplicates win, as in a spawn.
    let zygote: BTreeMap<&str, &str> = prewarm
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let wanted: BTreeMap<&str, &str> = init
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let significant = zygote
        .keys()
        .chain(wanted.keys().filter(|k| is_startup_var(k)));
    for name in significant {
        if zygote.get(name) != wanted.get(name) {
            return Some(format!(
                "{name} must be the same as the pre-started runtime's at start-up"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prewarm() -> Prewarm {
        Prewarm {
            command: vec![
                "/usr/bin/python3".into(),
                "/var/runtime/bootstrap.py".into(),
            ],
            env: vec![
                ("LANG".into(), "C.UTF-8".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ],
        }
    }

    fn init(env: &[(&str, &str)]) -> Init {
        Init {
            function_name: "f".into(),
            function_version: "$LATEST".into(),
            memory_mb: 128,
            command: prewarm().command,
            cwd: "/".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            init_timeout_ms: 1000,
        }
    }

    const BASE: [(&str, &str); 4] = [
        ("PATH", "/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("TZ", ":UTC"),
    ];

    #[test]
    fn startup_variables_must_agree() {
        let p = prewarm();
        assert_eq!(unfit(&p, &init(&BASE)), None);
        // Ordinary variables, TZ and PATH may be anything.
        let mut env = BASE.to_vec();
        env.extend([("TZ", "Europe/Paris"), ("PATH", "/x"), ("TABLE", "t")]);
        assert_eq!(unfit(&p, &init(&env)), None);
        // The zygote's own variables must be there with the same value (last one wins).
        for changed in [
            vec![("LANG", "en_US.UTF-8")],
            vec![("PYTHONDONTWRITEBYTECODE", "")],
        ] {
            let mut env = BASE.to_vec();
            env.extend(changed);
            assert!(unfit(&p, &init(&env)).is_some(), "{env:?}");
        }
        let without_lang: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != "LANG").collect();
        assert!(unfit(&p, &init(&without_lang)).unwrap().contains("LANG"));
        let mut env = BASE.to_vec();
        env.insert(0, ("LANG", "fr_FR.UTF-8")); // overridden by the later LANG
        assert_eq!(unfit(&p, &init(&env)), None);
        // Start-up variables the zygote lacks must be absent.
        for name in [
            "PYTHONPATH",
            "PYTHONHASHSEED",
            "LC_ALL",
            "LD_PRELOAD",
            "HOME",
            "MALLOC_ARENA_MAX",
        ] {
            let mut env = BASE.to_vec();
            env.push((name, "x"));
            let why = unfit(&p, &init(&env)).unwrap_or_default();
            assert!(why.contains(name), "{name}: {why:?}");
            assert!(!why.contains("\"x\""), "values are not logged: {why}");
        }
    }

    #[test]
    fn other_commands_bad_variables_and_bad_directories_are_unfit() {
        let p = prewarm();
        let mut other = init(&BASE);
        other.command[0] = "/usr/bin/python3.12".into();
        assert!(unfit(&p, &other).unwrap().contains("python3.12"));
        for bad in [("A=B", "1"), ("", "1"), ("A\0", "1"), ("A", "x\0y")] {
            let mut env = BASE.to_vec();
            env.push(bad);
            assert!(unfit(&p, &init(&env)).is_some(), "{bad:?}");
        }
        let mut nowhere = init(&BASE);
        nowhere.cwd = "/nonexistent/dir".into();
        assert!(unfit(&p, &nowhere).is_some());
        nowhere.cwd = "/etc/hostname".into();
        assert!(unfit(&p, &nowhere).is_some());
    }
}
