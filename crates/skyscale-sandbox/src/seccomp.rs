//! The seccomp profile of every sandbox, modelled on the container default of Docker and
//! containerd for an unprivileged container: the system calls that manage the machine, other
//! processes, namespaces and in-kernel engines are refused with `EPERM`; everything else is
//! allowed. A deny list rather than Docker's allow list: the sandbox already runs with no
//! capabilities and `no_new_privs`, so what matters is the surface an unprivileged process can
//! still reach, and a deny list cannot break a runtime by forgetting a harmless new call.
//!
//! runc loads it with libseccomp. runsc (started with `--oci-seccomp`) enforces it inside the
//! Sentry, where it narrows the Sentry's own surface (its io_uring, user namespaces, ptrace).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Refused outright (`EPERM`), grouped by what they would give a function.
const DENIED: &[&str] = &[
    // New namespaces (a user namespace hands out capabilities over fresh namespaces, and
    // with them mounts and much of the kernel's attack surface).
    "unshare",
    "setns",
    // Mounting and the new mount API.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // Other processes' memory and file descriptors.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    // Kernel keyrings (shared per uid, and a frequent source of kernel bugs).
    "keyctl",
    "add_key",
    "request_key",
    // In-kernel engines with a long record of privilege escalations.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    // The machine itself.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    // File handles bypass path permissions (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
];

/// `clone` flags that create namespaces: `clone` with any of them is refused, as in Docker's
/// profile (one masked-equal rule per flag, since rules on one call are alternatives).
const CLONE_NAMESPACE_FLAGS: [u64; 8] = [
    0x0000_0080, // CLONE_NEWTIME
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// `personality` bits that weaken the process's own memory protections (no ASLR,
/// readable-implies-executable, a mappable page zero).
const PERSONALITY_DENIED: [u64; 3] = [
    0x0004_0000, // ADDR_NO_RANDOMIZE
    0x0040_0000, // READ_IMPLIES_EXEC
    0x0010_0000, // MMAP_PAGE_ZERO
];

const PERSONALITY_QUERY_BIT: u64 = 0x8000_0000;

/// Which enforcer loads the profile; they differ in one rule (see [`profile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enforcer {
    /// The host kernel (runc).
    Kernel,
    /// gVisor's Sentry (runsc `--oci-seccomp`).
    Sentry,
}

/// The architectures a filter covers on this host: the native one and the compatibility
/// ABIs a native process can also call through (i386 `int 0x80`, x32), so that no ABI
/// bypasses the deny list.
fn architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        _ => vec![Arch::ScmpArchNative],
    }
}

fn rule(names: &[&str], errno: u32) -> Result<LinuxSyscall, String> {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno)
        .build()
        .map_err(|e| e.to_string())
}

/// Refuses `name` when argument 0 masked with `mask` equals `value`.
fn masked_rule(name: &str, mask: u64, value: u64) -> Result<LinuxSyscall, String> {
    let arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(mask)
        .value_two(value)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .map_err(|e| e.to_string())?;
    LinuxSyscallBuilder::default()
        .names(vec![name.to_owned()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .args(vec![arg])
        .build()
        .map_err(|e| e.to_string())
}

/// The profile for `enforcer`. `clone3` passes its flags in memory, where a filter cannot
/// look, so the kernel profile answers `ENOSYS` and glibc falls back to `clone`, whose flags
/// the rules above see (Docker does the same). Not in the Sentry's profile: this gVisor does
/// not implement `clone3` at all (its own `ENOSYS`), and there a filter rule on it made
/// thread creation fail.
pub(crate) fn profile(enforcer: Enforcer) -> Result<LinuxSeccomp, String> {
    let mut syscalls = vec![rule(DENIED, EPERM)?];
    if enforcer == Enforcer::Kernel {
        syscalls.push(rule(&["clone3"], ENOSYS)?);
    }
    for flag in CLONE_NAMESPACE_FLAGS {
        syscalls.push(masked_rule("clone", flag, flag)?);
    }
    for bit in PERSONALITY_DENIED {
        // The top bit is in the mask so that `personality(0xffffffff)`, the query, passes.
        syscalls.push(masked_rule(
            "personality",
            bit | PERSONALITY_QUERY_BIT,
            bit,
        )?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_refuses_the_escape_list() {
        let json = serde_json::to_value(profile(Enforcer::Kernel).unwrap()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        let rules = json["syscalls"].as_array().unwrap();
        let denied = rules[0]["names"].as_array().unwrap();
        for name in [
            "unshare",
            "ptrace",
            "keyctl",
            "io_uring_setup",
            "bpf",
            "mount",
        ] {
            assert!(denied.contains(&name.into()), "{name}");
        }
        assert_eq!(rules[0]["errnoRet"], EPERM);
        let clone3 = rules.iter().find(|r| r["names"][0] == "clone3").unwrap();
        assert_eq!(clone3["errnoRet"], ENOSYS);
        let newuser = rules
            .iter()
            .find(|r| r["names"][0] == "clone" && r["args"][0]["value"] == 0x1000_0000)
            .unwrap();
        assert_eq!(newuser["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let sentry = serde_json::to_value(profile(Enforcer::Sentry).unwrap()).unwrap();
        assert!(!sentry["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["names"][0] == "clone3"));
    }
}
