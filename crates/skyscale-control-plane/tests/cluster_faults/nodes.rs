//! The cluster's processes: API nodes in the root namespace, workers each in its network
//! namespace and in a PID namespace of its own, so that "kill -9 every process of the
//! worker's host" is one SIGKILL to that namespace's init (the worker; the kernel kills its
//! sandboxes with it).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{tail, workspace_bin, ADMIN_KEY};

/// One daemon process of the cluster. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Node {
    /// `api-1`, `worker-2`: also its `SKYSCALE_NODE_NAME`.
    pub name: String,
    pub dir: tempfile::TempDir,
    /// The public API (API nodes), from the line the daemon prints when it listens.
    pub url: Option<String>,
    /// The network namespace a worker runs in.
    pub netns: Option<String>,
    child: Option<Child>,
    /// Killed with SIGKILL by the test: its sandboxes may be left behind.
    killed: bool,
    lines: Option<mpsc::Receiver<String>>,
    /// A worker's own settings, to start it again.
    env: Vec<(String, String)>,
}

/// `setpriv --pdeathsig KILL -- nsenter --net=/run/netns/<ns> -- unshare --pid --fork
/// --kill-child --mount-proc -- <daemon>`: the worker in network namespace `netns` and as
/// init of a new PID namespace. `nsenter` rather than `ip netns exec`, which remounts `/sys`
/// in a mount namespace of its own and so hides the cgroup hierarchies runc needs; `/proc`
/// mounted for the new PID namespace, since runc reads its own processes there. The
/// parent-death signal stops the worker should the test process die.
fn worker_command(dir: &Path, name: &str, netns: &str, env: &[(String, String)]) -> Command {
    let mut cmd = base_command(Path::new("setpriv"), dir);
    cmd.args(["--pdeathsig", "KILL", "--", "nsenter"])
        .arg(format!("--net=/run/netns/{netns}"))
        .args([
            "--",
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_skyscale-control-plane"))
        .env("SKYSCALE_ROLE", "worker")
        .env("SKYSCALE_NODE_NAME", name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// What every node gets: the admin key, the agent, a data directory.
fn base_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SKYSCALE_DATA_DIR", dir.join("data"))
        .env("SKYSCALE_ADMIN_KEY", ADMIN_KEY)
        .env("SKYSCALE_AGENT_PATH", workspace_bin("skyscale-agent"))
        .env("LOG_LEVEL", "info")
        // Relative paths (a default `DB_PATH`) land in the node's own directory.
        .current_dir(dir);
    cmd
}

impl Node {
    /// Starts an API node on 127.0.0.1 (port 0) and waits until it listens.
    pub fn api(name: &str, env: &[(&str, String)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = base_command(
            Path::new(env!("CARGO_BIN_EXE_skyscale-control-plane")),
            dir.path(),
        );
        cmd.env("PORT", "0")
            .env("SKYSCALE_ROLE", "api")
            .env("SKYSCALE_NODE_NAME", name);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut node = Node::spawn(name, dir, None, cmd);
        node.url = Some(node.wait_line(
            "skyscale-control-plane listening on ",
            Duration::from_secs(60),
        ));
        node
    }

    /// Starts a worker in network namespace `netns`, in a new PID namespace (see
    /// [`worker_command`]).
    pub fn worker(name: &str, netns: &str, env: &[(&str, String)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let cmd = worker_command(dir.path(), name, netns, &env);
        let mut node = Node::spawn(name, dir, Some(netns.to_owned()), cmd);
        node.env = env;
        node
    }

    fn spawn(name: &str, dir: tempfile::TempDir, netns: Option<String>, mut cmd: Command) -> Node {
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut stdout_log = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(stdout_log, "{line}");
                let _ = tx.send(line);
            }
        });
        Node {
            name: name.to_owned(),
            dir,
            url: None,
            netns,
            child: Some(child),
            killed: false,
            lines: Some(rx),
            env: Vec::new(),
        }
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str, within: Duration) -> String {
        self.try_wait_line(prefix, within)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_wait_line(&mut self, prefix: &str, within: Duration) -> Result<String, String> {
        let rx = self.lines.as_ref().expect("stdout is read");
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(_) => {
                    let exited = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    return Err(format!(
                        "{} printed no `{prefix}` line within {within:?} (exit: {exited:?})\n{}",
                        self.name,
                        self.tails(60)
                    ));
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        self.url.as_deref().expect("an API node")
    }

    /// The end of the node's stdout and stderr.
    pub fn tails(&self, n: usize) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- {} stdout (tail) ---\n{}\n--- {} stderr (tail) ---\n{}",
            self.name,
            tail(&read("stdout.log"), n),
            self.name,
            tail(&read("stderr.log"), n)
        )
    }

    /// The daemon's pid in the root PID namespace: the child itself for an API node; for a
    /// worker, `unshare`'s one child, the new PID namespace's init.
    pub fn daemon_pid(&self) -> u32 {
        let pid = self.child.as_ref().expect("running").id();
        if self.netns.is_none() {
            return pid;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(c) = children.split_whitespace().next() {
                return c.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{}: unshare ({pid}) has no child",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: for a worker, its PID namespace's init, which takes every process of the
    /// namespace (its sandboxes included) with it. Waits until they are gone.
    pub fn kill9(&mut self) {
        let target = self.daemon_pid();
        let members = if self.netns.is_some() {
            pid_namespace_members(target)
        } else {
            vec![target]
        };
        let status = Command::new("kill")
            .args(["-KILL", &target.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {target} ({})", self.name);
        self.killed = true;
        let mut child = self.child.take().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: Vec<u32> = members
                .iter()
                .copied()
                .filter(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
                .collect();
            if alive.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: processes {alive:?} of its PID namespace outlived its init",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let target = if self.netns.is_some() {
            // unshare forwards nothing: signal the worker itself.
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                    .unwrap_or_default();
            children.split_whitespace().next().map(str::to_owned)
        } else {
            Some(child.id().to_string())
        };
        if let Some(pid) = &target {
            let _ = Command::new("kill").args(["-TERM", pid]).status();
        }
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                eprintln!(
                    "cluster test: {} did not stop within {grace:?}: SIGKILL",
                    self.name
                );
                if let Some(pid) = &target {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
                self.killed = true;
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After a SIGKILL, removes what the worker's sandboxes left on the host (bundles,
    /// cgroups, runc state, uid claims) the way the daemon does after any crash: starts the
    /// worker again (its cleanup runs before it listens), then stops it. Needs its network
    /// namespace and the database, so the cluster runs it before removing them.
    pub fn scrub(&mut self) {
        let Some(netns) = self.netns.clone().filter(|_| self.killed) else {
            return;
        };
        self.killed = false;
        let cmd = worker_command(self.dir.path(), &self.name, &netns, &self.env);
        let name = format!("{}-restarted", self.name);
        let mut again = Node::spawn(&name, tempfile::tempdir().unwrap(), Some(netns), cmd);
        // Never panics: this runs in drops, also while a failed test unwinds.
        match again.try_wait_line(
            "skyscale-control-plane worker listening on ",
            Duration::from_secs(60),
        ) {
            Ok(_) => {
                again.stop(Duration::from_secs(30));
                again.killed = false;
            }
            Err(e) => eprintln!("cluster test: cleaning up after {}: {e}", self.name),
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// Processes of the PID namespace whose init is `init` (by `/proc/<pid>/ns/pid`).
pub fn pid_namespace_members(init: u32) -> Vec<u32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    // Processes of nested namespaces (runc's sandboxes) belong to the worker's too: every
    // descendant of init is a member.
    let mut members = vec![init];
    let mut frontier = vec![init];
    while let Some(p) = frontier.pop() {
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                if !members.contains(&c) {
                    members.push(c);
                    frontier.push(c);
                }
            }
        }
    }
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !members.contains(&pid)
            && std::fs::read_link(entry.path().join("ns/pid")).is_ok_and(|n| n == ns)
        {
            members.push(pid);
        }
    }
    members
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Duration::from_secs(20));
        }
        self.scrub();
        // `SKYSCALE_CLUSTER_TEST_LOGS=<dir>` keeps every node's output there.
        if let Some(keep) = std::env::var_os("SKYSCALE_CLUSTER_TEST_LOGS") {
            let keep = Path::new(&keep);
            let _ = std::fs::create_dir_all(keep);
            for (from, to) in [("stdout.log", "stdout"), ("stderr.log", "stderr")] {
                let _ = std::fs::copy(
                    self.dir.path().join(from),
                    keep.join(format!("{}.{to}.log", self.name)),
                );
            }
        }
    }
}
