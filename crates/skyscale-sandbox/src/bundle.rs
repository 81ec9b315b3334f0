//! The OCI bundle of one sandbox: `config.json` (built with `oci-spec`) and a skeleton root.
//!
//! The root directory is empty but for mount points, the host's top-level symlinks mirrored
//! (on a merged-/usr host `bin`, `lib`, `lib64`, `sbin` → `usr/...`) and a curated `/etc`
//! written here (passwd, group, hosts, resolv.conf, nsswitch.conf, hostname, a copy of the
//! linker cache and of `openssl.cnf`). The host's `/usr` (and any top-level `/lib*`, `/bin`,
//! `/sbin` that are real directories) and `/etc/ssl/certs` are bound read-only. Not
//! `/etc/ssl/private`, not the host's `/etc`, nothing else of the host.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::seccomp::Enforcer;
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// Hostname inside every sandbox.
pub(crate) const HOSTNAME: &str = "sandbox";

/// Top-level entries of the host root a sandbox may see.
const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// How the host's system directories appear inside a sandbox; detected once per driver.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostLayout {
    /// Top-level symlinks to recreate in the root: (name, target).
    symlinks: Vec<(String, PathBuf)>,
    /// Top-level directories to bind read-only.
    binds: Vec<String>,
    /// Whether `/etc/ssl/certs` exists (bound read-only).
    ssl_certs: bool,
}

impl HostLayout {
    pub(crate) fn detect() -> Self {
        let mut layout = Self::default();
        for name in SYSTEM_DIRS {
            let path = Path::new("/").join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&path) {
                    layout.symlinks.push((name.to_owned(), target));
                }
            } else if meta.is_dir() {
                layout.binds.push(name.to_owned());
            }
        }
        layout.ssl_certs = Path::new("/etc/ssl/certs").is_dir();
        layout
    }
}

/// Everything that varies per sandbox.
#[derive(Debug)]
pub(crate) struct BundleParams<'a> {
    pub code_dir: &'a Path,
    /// Bound read-only at `/opt` when set (the function's layers).
    pub opt_dir: Option<&'a Path>,
    /// Bound read-write at `/var/build` when set (a requirements build's output).
    pub output_dir: Option<&'a Path>,
    pub runtime_dir: &'a Path,
    /// Bound read-only at `/var/runtime/sdk` when set.
    pub python_sdk_dir: Option<&'a Path>,
    pub args: &'a [String],
    pub env: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub memory_limit_bytes: i64,
    pub tmp_mb: u32,
    pub pids_limit: i64,
    /// Absolute, e.g. `/skyscale/<instance>/<id>`.
    pub cgroups_path: String,
    /// `RLIMIT_NPROC` of the init process, if any.
    pub nproc: Option<u64>,
    /// Relative CPU weight (`cpu.shares`).
    pub cpu_shares: u64,
    /// A named network namespace to join (outbound network); `None`: a new, empty one.
    pub netns: Option<&'a Path>,
    /// `/etc/resolv.conf` of a sandbox with network.
    pub resolv_conf: Option<String>,
    /// Who enforces the seccomp profile (see `seccomp`).
    pub seccomp: Enforcer,
}

/// Writes `<dir>/config.json` and `<dir>/rootfs`. `dir` must exist and be empty (the driver
/// creates it first, as the record of the sandbox that a cleanup after a crash finds).
pub(crate) fn write_bundle(dir: &Path, layout: &HostLayout, p: &BundleParams) -> io::Result<()> {
    let rootfs = dir.join("rootfs");
    write_rootfs(&rootfs, layout, p)?;
    let spec = build_spec(&rootfs, layout, p).map_err(io::Error::other)?;
    spec.save(dir.join("config.json")).map_err(io::Error::other)
}

fn write_rootfs(rootfs: &Path, layout: &HostLayout, p: &BundleParams) -> io::Result<()> {
    let (uid, gid) = (p.uid, p.gid);
    for d in [
        "",
        "proc",
        "dev",
        "sys",
        "tmp",
        "etc",
        "var",
        "opt",
        "var/task",
        "var/runtime",
    ] {
        std::fs::create_dir(rootfs.join(d))?;
    }
    // runc gives a tmpfs the mode of the directory it is mounted on, whatever `mode=` says.
    // The sandbox's own uid owns its /tmp (mount options `uid=`, `gid=`).
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o700))?;
    for name in &layout.binds {
        std::fs::create_dir(rootfs.join(name))?;
    }
    for (name, target) in &layout.symlinks {
        std::os::unix::fs::symlink(target, rootfs.join(name))?;
    }
    let etc = rootfs.join("etc");
    if layout.ssl_certs {
        std::fs::create_dir_all(etc.join("ssl/certs"))?;
        copy_if_present("/etc/ssl/openssl.cnf", &etc.join("ssl/openssl.cnf"))?;
    }
    copy_if_present("/etc/ld.so.cache", &etc.join("ld.so.cache"))?;
    let user = if uid == 0 {
        String::new()
    } else {
        format!("sbx_user:x:{uid}:{gid}:sandbox:/tmp:/usr/sbin/nologin\n")
    };
    let group = if gid == 0 {
        String::new()
    } else {
        format!("sbx_user:x:{gid}:\n")
    };
    let files = [
        (
            "passwd",
            format!("root:x:0:0:root:/root:/usr/sbin/nologin\n{user}nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ),
        ("group", format!("root:x:0:\n{group}nogroup:x:65534:\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ),
        ("hostname", format!("{HOSTNAME}\n")),
        (
            "resolv.conf",
            p.resolv_conf
                .clone()
                .unwrap_or_else(|| "# no network\n".to_owned()),
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_owned(),
        ),
    ];
    for (name, content) in files {
        std::fs::write(etc.join(name), content)?;
    }
    Ok(())
}

fn copy_if_present(from: &str, to: &Path) -> io::Result<()> {
    match std::fs::copy(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn mount(
    dest: &str,
    typ: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source.into())
        .options(strings(options))
        .build()
        .map_err(|e| e.to_string())
}

/// A read-only, non-recursive bind: submounts of the source stay invisible.
fn ro_bind(dest: &str, source: impl Into<PathBuf>) -> Result<Mount, String> {
    mount(dest, "bind", source, &["bind", "ro", "nosuid", "nodev"])
}

fn mounts(layout: &HostLayout, p: &BundleParams) -> Result<Vec<Mount>, String> {
    let tmp = [
        format!("size={}m", p.tmp_mb),
        format!("uid={}", p.uid),
        format!("gid={}", p.gid),
    ];
    let mut m = vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=0700", &tmp[0], &tmp[1], &tmp[2]],
        )?,
    ];
    for name in &layout.binds {
        m.push(ro_bind(&format!("/{name}"), Path::new("/").join(name))?);
    }
    if layout.ssl_certs {
        m.push(ro_bind("/etc/ssl/certs", "/etc/ssl/certs")?);
    }
    m.push(ro_bind("/var/task", p.code_dir)?);
    if let Some(opt) = p.opt_dir {
        m.push(ro_bind("/opt", opt)?);
    }
    if let Some(out) = p.output_dir {
        m.push(mount(
            "/var/build",
            "bind",
            out,
            &["bind", "rw", "nosuid", "nodev"],
        )?);
    }
    m.push(ro_bind("/var/runtime", p.runtime_dir)?);
    if let Some(sdk) = p.python_sdk_dir {
        m.push(ro_bind("/var/runtime/sdk", sdk)?);
    }
    Ok(m)
}

/// The OCI runtime spec of one sandbox.
pub(crate) fn build_spec(
    rootfs: &Path,
    layout: &HostLayout,
    p: &BundleParams,
) -> Result<Spec, String> {
    let err = |e: oci_spec::OciSpecError| e.to_string();
    let no_caps = Capabilities::new();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(no_caps.clone())
        .effective(no_caps.clone())
        .inheritable(no_caps.clone())
        .permitted(no_caps.clone())
        .ambient(no_caps)
        .build()
        .map_err(err)?;
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .map_err(err)?;
    let mut rlimits = vec![nofile];
    if let Some(n) = p.nproc {
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNproc)
                .hard(n)
                .soft(n)
                .build()
                .map_err(err)?,
        );
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(p.uid)
                .gid(p.gid)
                .build()
                .map_err(err)?,
        )
        .args(p.args.to_vec())
        .env(p.env.clone())
        .cwd("/")
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(true)
        .build()
        .map_err(err)?;
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| {
        let ns = LinuxNamespaceBuilder::default().typ(typ);
        match (typ, p.netns) {
            (LinuxNamespaceType::Network, Some(path)) => ns.path(path),
            _ => ns,
        }
        .build()
        .map_err(err)
    })
    .collect::<Result<Vec<_>, _>>()?;
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(err)?])
        .memory(
            LinuxMemoryBuilder::default()
                .limit(p.memory_limit_bytes)
                // memory+swap = memory: no swap.
                .swap(p.memory_limit_bytes)
                .build()
                .map_err(err)?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(p.cpu_shares)
                .build()
                .map_err(err)?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(p.pids_limit)
                .build()
                .map_err(err)?,
        )
        .build()
        .map_err(err)?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(&p.cgroups_path))
        .seccomp(crate::seccomp::profile(p.seccomp)?)
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .build()
        .map_err(err)?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(true)
                .build()
                .map_err(err)?,
        )
        .hostname(HOSTNAME)
        .mounts(mounts(layout, p)?)
        .process(process)
        .linux(linux)
        .build()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_limits_and_no_capabilities() {
        let layout = HostLayout::detect();
        let p = BundleParams {
            code_dir: Path::new("/code"),
            opt_dir: Some(Path::new("/layers")),
            output_dir: None,
            runtime_dir: Path::new("/rt"),
            python_sdk_dir: None,
            args: &["/var/runtime/agent".to_owned()],
            env: vec!["PATH=/usr/bin".to_owned()],
            uid: 993,
            gid: 993,
            memory_limit_bytes: 128 << 20,
            tmp_mb: 64,
            pids_limit: 32,
            cgroups_path: "/skyscale/test/sky0".to_owned(),
            nproc: None,
            cpu_shares: 74,
            netns: None,
            resolv_conf: None,
            seccomp: Enforcer::Kernel,
        };
        let spec = build_spec(Path::new("/b/rootfs"), &layout, &p).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(
            json["process"]["capabilities"]["bounding"],
            serde_json::json!([])
        );
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 128 << 20);
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 32);
        assert_eq!(json["linux"]["cgroupsPath"], "/skyscale/test/sky0");
        let mounts = json["mounts"].as_array().unwrap();
        let task = mounts
            .iter()
            .find(|m| m["destination"] == "/var/task")
            .unwrap();
        assert_eq!(task["source"], "/code");
        assert!(task["options"].as_array().unwrap().contains(&"ro".into()));
        let opt = mounts.iter().find(|m| m["destination"] == "/opt").unwrap();
        assert_eq!(opt["source"], "/layers");
        assert!(opt["options"].as_array().unwrap().contains(&"ro".into()));
        assert!(
            !mounts.iter().any(|m| m["destination"] == "/var/build"),
            "no build output without one"
        );
        let tmp = mounts.iter().find(|m| m["destination"] == "/tmp").unwrap();
        for option in ["size=64m", "uid=993", "gid=993", "mode=0700"] {
            assert!(
                tmp["options"].as_array().unwrap().contains(&option.into()),
                "{option}"
            );
        }
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        assert!(!mounts.iter().any(|m| m["destination"] == "/etc"));
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 74);
        let net = |json: &serde_json::Value| {
            json["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "network")
                .cloned()
                .unwrap()
        };
        assert!(net(&json).get("path").is_none(), "a new, empty namespace");
        let p = BundleParams {
            netns: Some(Path::new("/run/netns/sky1")),
            ..p
        };
        let json =
            serde_json::to_value(build_spec(Path::new("/b/rootfs"), &layout, &p).unwrap()).unwrap();
        assert_eq!(net(&json)["path"], "/run/netns/sky1");
        // A build's output directory: the one writable bind.
        let p = BundleParams {
            output_dir: Some(Path::new("/out")),
            ..p
        };
        let json =
            serde_json::to_value(build_spec(Path::new("/b/rootfs"), &layout, &p).unwrap()).unwrap();
        let out = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/var/build")
            .cloned()
            .unwrap();
        assert_eq!(out["source"], "/out");
        let options = out["options"].as_array().unwrap();
        assert!(options.contains(&"rw".into()) && !options.contains(&"ro".into()));
    }
}
