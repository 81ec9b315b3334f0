//! Python bytecode compiled once, when a code package (a function's or a layer version's) is
//! stored, instead of on every cold start.
//!
//! A sandbox sees its package read-only (`/var/task`, `/opt`), so Python cannot write
//! `__pycache__` there and compiles every module it imports from source, in memory, on every
//! cold start. Here every `.py` file of a freshly unpacked package is compiled by each
//! installed `python3.N` (the host's `/usr/bin`, which the sandboxes bind read-only: the very
//! interpreter that will import it) into `__pycache__/<stem>.<cache tag>.pyc` beside it, as
//! an *unchecked hash-based* pyc (PEP 552): a package never changes under its SHA-256, so
//! checking the source on every import would be wasted work. The files are hard-linked into
//! sandboxes with the rest of the package.
//!
//! What is kept: a pyc the package itself ships at that path stays when it is hash-based (a
//! checked one is checked by Python, an unchecked one is the author's choice); a
//! timestamp-based one is replaced, since unpacking gives the sources new times and Python
//! would never use it. Layers merged into `/opt` drop the pycs of a module a later layer
//! replaces (`scheduler::merge_tree`), so a pyc never outlives its source.
//!
//! Hostile input: compiling parses and compiles, it runs nothing of the package; it is
//! bounded anyway (see ARCHITECTURE.md, "Bytecode at deploy"). The compiler is a separate
//! `python3 -I -S` process fed the sources over a pipe, one at a time, and answering each
//! with the pyc's bytes or the compile error: it needs no file system access, and it runs
//! with an empty environment, in `/`, under rlimits (address space, CPU time, no file
//! writes, few descriptors, no core dumps, no new processes or threads), with `no_new_privs` and, when the control plane
//! is root, as `nobody` in a network namespace of its own. A wall-clock deadline kills it.
//! The control plane writes the pycs itself, within the byte allowance the code store
//! reserved for them. Nothing here fails an upload: a file that does not compile (or a
//! compiler that dies or runs out of time or allowance) is left to be compiled at import,
//! as before, and logged.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use skyscale_sandbox::{spawn_tracked_std, StdTracked};
use skyscale_store::{charged_size, Derive, CHARGE_BLOCK};

/// The compiler: reads `u32 name length, u32 source length, name, source` frames from
/// stdin until EOF; answers each with `u8 status (0 pyc, 1 error), u32 length, bytes`.
/// The first line it writes is its cache tag (`cpython-311`). The pyc is what `py_compile`
/// writes with `PycInvalidationMode.UNCHECKED_HASH`: magic, flags 0b01, the source's hash,
/// the marshalled code, compiled as `importlib` compiles a source (`dont_inherit`, the
/// interpreter's optimisation level: none).
const COMPILER: &str = r#"
import sys, marshal, importlib.util
inp, out = sys.stdin.buffer, sys.stdout.buffer
magic = importlib.util.MAGIC_NUMBER
out.write(sys.implementation.cache_tag.encode() + b"\n")
out.flush()
def read(n):
    b = inp.read(n)
    if len(b) != n:
        raise SystemExit(0)
    return b
while True:
    head = inp.read(8)
    if len(head) != 8:
        break
    name = read(int.from_bytes(head[:4], "little")).decode("utf-8", "surrogateescape")
    source = read(int.from_bytes(head[4:], "little"))
    try:
        code = compile(source, name, "exec", dont_inherit=True)
        data = magic + (1).to_bytes(4, "little") + importlib.util.source_hash(source) + marshal.dumps(code)
        status = 0
    except BaseException as e:
        data = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")[:500]
        status = 1
    out.write(bytes([status]) + len(data).to_bytes(4, "little") + data)
    out.flush()
"#;

/// Limits of one compiler process.
const ADDRESS_SPACE: u64 = 1 << 30;
const OPEN_FILES: u64 = 64;
/// The uid and gid a root control plane runs the compiler as.
const NOBODY: u32 = 65_534;

/// Compiles the `.py` files of packages as they are stored (see the module documentation).
#[derive(Debug)]
pub struct Bytecode {
    /// The interpreters to compile for: every installed `python3.N`.
    interpreters: Vec<PathBuf>,
    /// How long one compiler may take for one package (also its CPU-time limit).
    deadline: Duration,
}

impl Bytecode {
    /// Compiles for these interpreters; `None` when there are none.
    pub fn new(interpreters: Vec<PathBuf>, deadline: Duration) -> Option<Self> {
        (!interpreters.is_empty()).then_some(Self {
            interpreters,
            deadline,
        })
    }
}

/// Whether `path` is a source Python imports (`.py`, and a name before it).
fn is_source(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "py")
        && path
            .file_stem()
            .is_some_and(|s| !s.is_empty() && s != "." && s != "..")
}

/// What the pycs of these files may be charged, for one interpreter: twice each source's
/// charge (compiled code is about the size of its source: 1.1 times for FastAPI and its
/// dependencies on Python 3.11), and one block for each `__pycache__` directory.
pub fn allowance_for<'a>(files: impl Iterator<Item = (&'a Path, u64)>) -> u64 {
    let mut dirs = HashSet::new();
    let mut total = 0u64;
    for (path, size) in files.filter(|(p, _)| is_source(p)) {
        total = total.saturating_add(2 * charged_size(size));
        dirs.insert(path.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    total.saturating_add(dirs.len() as u64 * CHARGE_BLOCK)
}

/// Where the pyc of `source` goes: `<dir>/__pycache__/<stem>.<tag>.pyc`, as
/// `importlib.util.cache_from_source` puts it.
pub fn cache_path(source: &Path, tag: &str) -> Option<PathBuf> {
    let stem = source.file_stem()?.to_str()?;
    let dir = source.parent().unwrap_or(Path::new(""));
    Some(dir.join("__pycache__").join(format!("{stem}.{tag}.pyc")))
}

/// Whether the file at `path` is a hash-based pyc (checked or not), which is kept.
fn is_hash_based_pyc(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| u32::from_le_bytes([head[4], head[5], head[6], head[7]]) & 1 == 1)
}

/// Every `.py` file under `dir`, relative to it.
fn sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && is_source(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What compiling one package did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub written: usize,
    /// Shipped hash-based pycs left as they were.
    pub kept: usize,
    /// Sources that did not compile, with the first few errors.
    pub failed: usize,
    pub errors: Vec<String>,
    /// Sources not compiled because the compiler stopped (died, deadline) or the allowance
    /// ran out.
    pub skipped: usize,
    pub stopped: Option<String>,
    /// What the written pycs and directories are charged.
    pub charged: u64,
}

impl Compiled {
    fn error(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.failed += 1;
        if self.errors.len() < 3 {
            self.errors.push(format!("{}: {e}", path.display()));
        }
    }
}

/// A running compiler, killed when dropped (or at its deadline, by its watchdog).
struct Compiler {
    /// Registered with the sandbox crate's reaper (the control plane's invariant: no child
    /// outside it), so its pid is not reaped, nor reused, before it is waited for here.
    child: StdTracked,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    tag: String,
    /// Dropped to stop the watchdog (before the compiler is reaped: its pid is then free).
    stop: Option<mpsc::Sender<()>>,
}

impl Compiler {
    fn start(interpreter: &Path, deadline: Duration) -> std::io::Result<Compiler> {
        let mut cmd = confined(deadline, is_root());
        cmd.arg(interpreter)
            .args(["-I", "-S", "-B", "-W", "ignore", "-c", COMPILER])
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = spawn_tracked_std(&mut cmd)?;
        let (stdin, stdout) = match (child.child.stdin.take(), child.child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(std::io::Error::other("the compiler's pipes are missing")),
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let pid = Pid::from_raw(i32::try_from(child.child.id()).unwrap_or(i32::MAX));
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(deadline) {
                // Not reaped yet: dropping `Compiler` ends this wait (drops the sender)
                // before it reaps it, so the pid is still the compiler's.
                let _ = kill(pid, Signal::SIGKILL);
            }
        });
        let mut stdout = BufReader::new(stdout);
        let mut tag = String::new();
        stdout.read_line(&mut tag)?;
        let tag = tag.trim().to_owned();
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(std::io::Error::other(format!(
                "the compiler did not start (its first line was {tag:?})"
            )));
        }
        Ok(Compiler {
            child,
            stdin,
            stdout,
            tag,
            stop: Some(stop),
        })
    }

    /// Compiles one source: `Ok(Ok(pyc))`, `Ok(Err(compile error))`, or `Err` when the
    /// compiler is gone.
    fn compile(&mut self, name: &Path, source: &[u8]) -> std::io::Result<Result<Vec<u8>, String>> {
        let name = name.as_os_str().as_encoded_bytes();
        let len = |n: usize| {
            u32::try_from(n)
                .map(u32::to_le_bytes)
                .map_err(|_| std::io::Error::other("source too large"))
        };
        self.stdin.write_all(&len(name.len())?)?;
        self.stdin.write_all(&len(source.len())?)?;
        self.stdin.write_all(name)?;
        self.stdin.write_all(source)?;
        self.stdin.flush()?;
        let mut head = [0u8; 5];
        self.stdout.read_exact(&mut head)?;
        let n = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = Vec::new();
        (&mut self.stdout).take(n as u64).read_to_end(&mut data)?;
        if data.len() != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(match head[0] {
            0 => Ok(data),
            _ => Err(String::from_utf8_lossy(&data).into_owned()),
        })
    }
}

impl Drop for Compiler {
    fn drop(&mut self) {
        drop(self.stop.take());
        self.child.kill_and_wait();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The command that runs the compiler confined (the interpreter and its arguments follow):
/// util-linux's `unshare`, `setpriv` and `prlimit`, each of which execs the next in place, so
/// the child's pid is the interpreter's. `--nproc=1` (counted per uid) keeps it from
/// forking or starting threads, which compiling never needs. `unshare --net` (a network namespace with nothing
/// in it) and `setpriv --reuid` (to `nobody`) need root: a control plane that is not root
/// runs the compiler as itself.
fn confined(deadline: Duration, root: bool) -> Command {
    let mut cmd = Command::new(if root {
        "/usr/bin/unshare"
    } else {
        "/usr/bin/setpriv"
    });
    if root {
        cmd.args(["--net", "--", "/usr/bin/setpriv"]);
        let nobody = NOBODY.to_string();
        cmd.args(["--reuid", &nobody, "--regid", &nobody, "--clear-groups"]);
    }
    cmd.args(["--no-new-privs", "--", "/usr/bin/prlimit"])
        .arg(format!("--as={ADDRESS_SPACE}"))
        .arg(format!("--cpu={}", deadline.as_secs().max(1)))
        .args(["--fsize=0", "--core=0", "--nproc=1"])
        .arg(format!("--nofile={OPEN_FILES}"))
        .arg("--");
    cmd
}

/// Compiles every `.py` file of `dir` with `interpreter` into its `__pycache__`, charging
/// what it writes against `budget` (reduced by it).
pub fn compile_tree(
    dir: &Path,
    interpreter: &Path,
    deadline: Duration,
    budget: &mut u64,
) -> Compiled {
    let mut done = Compiled::default();
    let files = match sources(dir) {
        Ok(f) => f,
        Err(e) => {
            done.stopped = Some(format!("listing the sources: {e}"));
            return done;
        }
    };
    if files.is_empty() {
        return done;
    }
    let mut compiler = match Compiler::start(interpreter, deadline) {
        Ok(c) => c,
        Err(e) => {
            done.skipped = files.len();
            done.stopped = Some(format!("starting {}: {e}", interpreter.display()));
            return done;
        }
    };
    for (i, rel) in files.iter().enumerate() {
        let Some(target) = cache_path(rel, &compiler.tag) else {
            continue;
        };
        let target = dir.join(target);
        if is_hash_based_pyc(&target) {
            done.kept += 1;
            continue;
        }
        let source = match std::fs::read(dir.join(rel)) {
            Ok(s) => s,
            Err(e) => {
                done.error(rel, e);
                continue;
            }
        };
        let pyc = match compiler.compile(rel, &source) {
            Ok(Ok(pyc)) => pyc,
            Ok(Err(e)) => {
                done.error(rel, e);
                continue;
            }
            Err(e) => {
                done.skipped = files.len() - i;
                done.stopped = Some(format!(
                    "the compiler stopped at {} ({e}): deadline, limit or crash",
                    rel.display()
                ));
                break;
            }
        };
        let cache_dir = target.parent().unwrap_or(dir);
        let new_dir = !cache_dir.exists();
        let charge = charged_size(pyc.len() as u64) + if new_dir { CHARGE_BLOCK } else { 0 };
        if charge > *budget {
            done.skipped = files.len() - i;
            done.stopped = Some(format!(
                "the pycs outgrew their allowance at {}",
                rel.display()
            ));
            break;
        }
        let written = (|| {
            if new_dir {
                std::fs::create_dir(cache_dir)?;
                set_mode(cache_dir, 0o755)?;
            }
            if target.exists() {
                std::fs::remove_file(&target)?;
            }
            std::fs::write(&target, &pyc)?;
            set_mode(&target, 0o644)
        })();
        match written {
            Ok(()) => {
                *budget -= charge;
                done.charged += charge;
                done.written += 1;
            }
            Err(e) => done.error(rel, e),
        }
    }
    done
}

/// Removes the pycs of the module `stem` from the cache directory `cache` (any
/// interpreter's, any optimisation level's: `<stem>.<tag>[.opt-N].pyc`, tags having no
/// dot); nothing if there is no such directory.
pub(crate) fn remove_pycs(cache: &Path, stem: &str) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(cache) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(stem))
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".pyc"))
        else {
            continue;
        };
        let mut parts = rest.split('.');
        let tag_ok = parts.next().is_some_and(|t| !t.is_empty());
        let opt_ok = parts.next().is_none_or(|o| o.starts_with("opt-"));
        if tag_ok && opt_ok && parts.next().is_none() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Derive for Bytecode {
    fn allowance(&self, files: &mut dyn Iterator<Item = (&Path, u64)>) -> u64 {
        allowance_for(files).saturating_mul(self.interpreters.len() as u64)
    }

    fn derive(&self, dir: &Path, budget: u64) {
        let mut budget = budget;
        for interpreter in &self.interpreters {
            let started = Instant::now();
            let done = compile_tree(dir, interpreter, self.deadline, &mut budget);
            if done.written + done.failed + done.skipped + done.kept == 0 {
                continue;
            }
            let took_ms = started.elapsed().as_millis() as u64;
            if done.failed + done.skipped > 0 {
                tracing::warn!(
                    interpreter = %interpreter.display(),
                    written = done.written,
                    failed = done.failed,
                    skipped = done.skipped,
                    errors = ?done.errors,
                    stopped = done.stopped.as_deref().unwrap_or(""),
                    took_ms,
                    "some Python sources of a code package were not compiled at deploy: they compile at import"
                );
            } else {
                tracing::info!(
                    interpreter = %interpreter.display(),
                    written = done.written,
                    kept = done.kept,
                    bytes = done.charged,
                    took_ms,
                    "compiled a code package's Python sources"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_path_is_importlibs() {
        assert_eq!(
            cache_path(Path::new("pkg/mod.py"), "cpython-311").unwrap(),
            Path::new("pkg/__pycache__/mod.cpython-311.pyc")
        );
        assert_eq!(
            cache_path(Path::new("handler.py"), "cpython-312").unwrap(),
            Path::new("__pycache__/handler.cpython-312.pyc")
        );
        assert_eq!(
            cache_path(Path::new("a/foo.bar.py"), "cpython-311").unwrap(),
            Path::new("a/__pycache__/foo.bar.cpython-311.pyc")
        );
        assert!(is_source(Path::new("a/b.py")));
        assert!(!is_source(Path::new("a/.py")));
        assert!(!is_source(Path::new("a/b.pyc")));
        assert!(!is_source(Path::new("a/b.pyi")));
    }

    #[test]
    fn the_allowance_is_twice_the_sources_and_a_block_per_cache_directory() {
        let files = [
            (Path::new("a.py"), 10),
            (Path::new("pkg/b.py"), 5000),
            (Path::new("pkg/c.py"), 0),
            (Path::new("pkg/data.bin"), 1 << 20),
            (Path::new("README"), 100),
        ];
        let allowance = allowance_for(files.iter().map(|(p, s)| (*p, *s)));
        assert_eq!(allowance, 2 * (4096 + 8192 + 4096) + 2 * 4096);
        assert_eq!(allowance_for(std::iter::empty()), 0);
    }

    #[test]
    fn a_replaced_modules_pycs_go_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("__pycache__");
        std::fs::create_dir(&cache).unwrap();
        let names = [
            "foo.cpython-311.pyc",
            "foo.cpython-312.opt-1.pyc",
            "foo.bar.cpython-311.pyc",
            "foobar.cpython-311.pyc",
            "foo.cpython-311.pyc.txt",
        ];
        for n in names {
            std::fs::write(cache.join(n), "").unwrap();
        }
        remove_pycs(&cache, "foo").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "foo.bar.cpython-311.pyc",
                "foo.cpython-311.pyc.txt",
                "foobar.cpython-311.pyc"
            ]
        );
        remove_pycs(&dir.path().join("none"), "foo").unwrap();
    }

    #[test]
    fn a_later_layer_replacing_a_module_drops_the_earlier_pyc() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |name: &str, source: &str, pyc: Option<&str>| {
            let root = dir.path().join(name);
            std::fs::create_dir_all(root.join("python/__pycache__")).unwrap();
            std::fs::write(root.join("python/foo.py"), source).unwrap();
            if let Some(pyc) = pyc {
                std::fs::write(root.join("python/__pycache__/foo.cpython-311.pyc"), pyc).unwrap();
            }
            root
        };
        let a = layer("a", "A", Some("pyc of A"));
        let b = layer("b", "B", None);
        let c = layer("c", "C", Some("pyc of C"));
        let opt = dir.path().join("opt");
        std::fs::create_dir(&opt).unwrap();
        let pyc = opt.join("python/__pycache__/foo.cpython-311.pyc");
        crate::scheduler::merge_tree(&a, &opt).unwrap();
        assert_eq!(std::fs::read_to_string(&pyc).unwrap(), "pyc of A");
        crate::scheduler::merge_tree(&b, &opt).unwrap();
        assert_eq!(
            std::fs::read_to_string(opt.join("python/foo.py")).unwrap(),
            "B"
        );
        assert!(!pyc.exists(), "A's pyc would run instead of B's source");
        crate::scheduler::merge_tree(&c, &opt).unwrap();
        assert_eq!(std::fs::read_to_string(&pyc).unwrap(), "pyc of C");
        // The package directories are untouched.
        assert!(a.join("python/__pycache__/foo.cpython-311.pyc").exists());
    }

    /// The flags word of a pyc (bit 0: hash-based; bit 1: check the source).
    fn flags(pyc: &Path) -> u32 {
        let b = std::fs::read(pyc).unwrap();
        u32::from_le_bytes([b[4], b[5], b[6], b[7]])
    }

    /// The real host interpreter: the tests compile with what the sandboxes run.
    const PYTHON: &str = "/usr/bin/python3";

    #[test]
    fn a_tree_is_compiled_to_unchecked_hash_pycs_that_python_imports() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg/sub")).unwrap();
        std::fs::write(root.join("handler.py"), "import pkg.sub.mod\nX = 1\n").unwrap();
        std::fs::write(root.join("pkg/__init__.py"), "").unwrap();
        std::fs::write(root.join("pkg/sub/__init__.py"), "").unwrap();
        std::fs::write(root.join("pkg/sub/mod.py"), "def f():\n    return 42\n").unwrap();
        std::fs::write(root.join("broken.py"), "def (:\n").unwrap();
        std::fs::write(root.join("data.txt"), "not python").unwrap();
        let mut budget = 1 << 20;
        let done = compile_tree(
            root,
            Path::new(PYTHON),
            Duration::from_secs(30),
            &mut budget,
        );
        assert_eq!(
            (done.written, done.failed, done.skipped),
            (4, 1, 0),
            "{done:?}"
        );
        assert!(
            done.errors[0].starts_with("broken.py: SyntaxError"),
            "{done:?}"
        );
        assert_eq!(budget, (1 << 20) - done.charged);
        let tag = std::process::Command::new(PYTHON)
            .args(["-c", "import sys; print(sys.implementation.cache_tag)"])
            .output()
            .unwrap();
        let tag = String::from_utf8(tag.stdout).unwrap();
        let pyc = root.join(cache_path(Path::new("pkg/sub/mod.py"), tag.trim()).unwrap());
        assert_eq!(flags(&pyc), 0b01, "unchecked hash-based");
        assert!(!root
            .join(cache_path(Path::new("broken.py"), tag.trim()).unwrap())
            .exists());
        // Python takes them as they are: with the sources gone, a hash-based pyc beside
        // its (missing) source is not used, so check with the sources changed instead: an
        // unchecked pyc wins over a changed source.
        std::fs::write(root.join("pkg/sub/mod.py"), "def f():\n    return 0\n").unwrap();
        let out = std::process::Command::new(PYTHON)
            .args(["-B", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import handler, pkg.sub.mod as m; print(m.f(), m.__cached__)"])
            .arg(root)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.starts_with("42 "), "{out}");
    }

    #[test]
    fn shipped_hash_pycs_are_kept_and_timestamp_ones_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.py"), "A = 1\n").unwrap();
        std::fs::write(root.join("b.py"), "B = 1\n").unwrap();
        let mut budget = 1 << 20;
        let first = compile_tree(
            root,
            Path::new(PYTHON),
            Duration::from_secs(30),
            &mut budget,
        );
        assert_eq!(first.written, 2);
        let cache = root.join("__pycache__");
        let mut pycs: Vec<PathBuf> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        pycs.sort();
        // a's pyc shipped timestamp-based (flags 0), b's hash-based with its own bytes.
        let mut a = std::fs::read(&pycs[0]).unwrap();
        a[4..8].copy_from_slice(&0u32.to_le_bytes());
        std::fs::write(&pycs[0], &a).unwrap();
        let mut b = std::fs::read(&pycs[1]).unwrap();
        b.extend_from_slice(b"shipped");
        std::fs::write(&pycs[1], &b).unwrap();
        let again = compile_tree(
            root,
            Path::new(PYTHON),
            Duration::from_secs(30),
            &mut budget,
        );
        assert_eq!((again.written, again.kept), (1, 1), "{again:?}");
        assert_eq!(flags(&pycs[0]), 0b01);
        assert_eq!(std::fs::read(&pycs[1]).unwrap(), b);
    }

    #[test]
    fn the_allowance_stops_the_writes_and_a_dead_compiler_fails_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for i in 0..4 {
            std::fs::write(root.join(format!("m{i}.py")), "X = 1\n").unwrap();
        }
        // A new __pycache__ and one pyc: two blocks; the second pyc does not fit.
        let mut budget = 2 * CHARGE_BLOCK + 100;
        let done = compile_tree(
            root,
            Path::new(PYTHON),
            Duration::from_secs(30),
            &mut budget,
        );
        assert_eq!((done.written, done.skipped), (1, 3), "{done:?}");
        assert!(done.stopped.unwrap().contains("allowance"));
        assert_eq!(budget, 100);
        // No interpreter there: nothing written, the upload goes on.
        let none = compile_tree(
            root,
            Path::new("/nonexistent/python3"),
            Duration::from_secs(5),
            &mut budget,
        );
        assert_eq!((none.written, none.skipped), (0, 4), "{none:?}");
    }
}
