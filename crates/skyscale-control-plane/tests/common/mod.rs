//! Test harness: runs the real `skyscale-control-plane` binary on 127.0.0.1:0 with a
//! temporary database and data directory, real sandboxes, and drives it over HTTP and
//! through the real `skyscale` CLI binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const ADMIN_KEY: &str = "SKYTESTADMIN0001.test-secret-test-secret-test-secret-0001";

/// The directory holding this build's binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skyscale-control-plane"))
        .parent()
        .expect("binary has a parent directory")
        .to_path_buf()
}

/// Path of a workspace binary, with a clear message when it was not built.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test does)",
        path.display()
    );
    path
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The virtualenv python with boto3, awscli and prometheus_client: `SKYSCALE_TEST_PYTHON`
/// (scripts/test sets it), else `target/test-venv`. Missing is a failure, never a skip.
pub fn test_python() -> PathBuf {
    let path = std::env::var_os("SKYSCALE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv/bin/python"));
    assert!(
        path.is_file(),
        "{} is missing: the boto3/AWS CLI and metrics tests need a virtualenv with boto3, \
         awscli and prometheus_client; create it with `scripts/test-venv` (scripts/test does) \
         or point SKYSCALE_TEST_PYTHON at a python that has them",
        path.display()
    );
    path
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// The driver of tests about the HTTP surfaces and the core (API shapes, errors, auth,
/// records, metrics, the CLI): the process driver runs the real agent and runtime without
/// isolation, so these tests need neither runsc nor runc and take seconds. Isolation,
/// limits and the sandbox drivers themselves are tested on runc and gVisor.
#[allow(dead_code)] // not every test file uses it
pub const API_DRIVER: &str = "process";

/// A running control plane. Dropping it stops it with SIGTERM.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub driver: String,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    /// Soft and hard `RLIMIT_NOFILE` of the process (through `prlimit`), if set.
    open_files: Option<u64>,
    /// With `SKYSCALE_TEST_E2E_DATABASE_URL` (a PostgreSQL server's base URL, as
    /// `scripts/test-postgres` prints): this server's own database there (base URL, name),
    /// used instead of a SQLite file and dropped with the server. Unset: SQLite.
    pg: Option<(String, String)>,
    /// A PostgreSQL database this server shares with others ([`Server::start_shared`]).
    shared_url: Option<String>,
}

/// A fresh PostgreSQL database on the server `SKYSCALE_TEST_DATABASE_URL` names (as
/// `scripts/test-postgres` prints it; a test that needs one fails without it), dropped with
/// this value: for several control planes sharing one database.
pub struct SharedDatabase {
    base: String,
    name: String,
}

impl SharedDatabase {
    pub fn create() -> Self {
        let base = std::env::var("SKYSCALE_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "SKYSCALE_TEST_DATABASE_URL is not set: this test needs a PostgreSQL server. Run \
                 `export SKYSCALE_TEST_DATABASE_URL=\"$(scripts/test-postgres)\"` (scripts/test does)"
            )
        });
        let base = base.trim_end_matches('/').to_owned();
        let name = format!("skyscale_shared_{}", uuid::Uuid::new_v4().simple());
        postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
            .and_then(|mut c| c.batch_execute(&format!("CREATE DATABASE {name}")))
            .unwrap_or_else(|e| panic!("creating database {name} at {base}: {e}"));
        Self { base, name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        let dropped =
            postgres::Client::connect(&format!("{}/postgres", self.base), postgres::NoTls)
                .and_then(|mut c| {
                    c.batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                });
        if let Err(e) = dropped {
            eprintln!("dropping test database {}: {e}", self.name);
        }
    }
}

/// Creates a fresh PostgreSQL database for one server when `SKYSCALE_TEST_E2E_DATABASE_URL`
/// asks for the end-to-end tests to run on PostgreSQL.
pub fn e2e_database() -> Option<(String, String)> {
    let base = std::env::var("SKYSCALE_TEST_E2E_DATABASE_URL").ok()?;
    let base = base.trim_end_matches('/').to_owned();
    let name = format!("skyscale_e2e_{}", uuid::Uuid::new_v4().simple());
    postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .and_then(|mut c| c.batch_execute(&format!("CREATE DATABASE {name}")))
        .unwrap_or_else(|e| panic!("creating database {name} at {base}: {e}"));
    Some((base, name))
}

impl Server {
    pub fn start(driver: &str) -> Server {
        Self::start_with(driver, &[])
    }

    pub fn start_with(driver: &str, env: &[(&str, &str)]) -> Server {
        Self::start_limited(driver, env, None)
    }

    /// Like [`Server::start_with`], with the open-file limit (soft and hard) set to
    /// `open_files` when given, as a host with the common default of 1,024 would.
    pub fn start_limited(driver: &str, env: &[(&str, &str)], open_files: Option<u64>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server {
            dir,
            url: String::new(),
            driver: driver.to_owned(),
            child: None,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            open_files,
            pg: e2e_database(),
            shared_url: None,
        };
        s.spawn();
        s
    }

    /// A control plane on the PostgreSQL database `db`, which other servers may share.
    pub fn start_shared(driver: &str, db: &SharedDatabase, env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            dir: tempfile::tempdir().unwrap(),
            url: String::new(),
            driver: driver.to_owned(),
            child: None,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            open_files: None,
            pg: None,
            shared_url: Some(db.url()),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("control-plane.log"))
            .unwrap();
        let binary = env!("CARGO_BIN_EXE_skyscale-control-plane");
        // `prlimit` sets the limits and execs the binary: the pid stays the server's.
        let mut cmd = match self.open_files {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("SKYSCALE_DATA_DIR", self.dir.path().join("data"))
            .env("SKYSCALE_DRIVER", &self.driver)
            .env("SKYSCALE_ADMIN_KEY", ADMIN_KEY)
            .env("SKYSCALE_AGENT_PATH", workspace_bin("skyscale-agent"))
            .env("LOG_LEVEL", "debug")
            // One generic sandbox keeps the pool's path in every test without booting five
            // sandboxes per test on a 2-core CI machine; pool tests set their own size.
            .env("WARM_POOL_SIZE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        match (&self.shared_url, &self.pg) {
            (Some(url), _) => cmd.env("SKYSCALE_DATABASE_URL", url),
            (None, Some((base, name))) => {
                cmd.env("SKYSCALE_DATABASE_URL", format!("{base}/{name}"))
            }
            (None, None) => cmd.env("DB_PATH", self.dir.path().join("skyscale.db")),
        };
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting skyscale-control-plane");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("skyscale-control-plane listening on ") {
                        self.url = url.trim().to_owned();
                        break;
                    }
                    seen.push(line);
                }
                Err(_) => panic!(
                    "control plane did not start; stdout: {seen:?}\nlog:\n{}",
                    self.log()
                ),
            }
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control-plane.log")).unwrap_or_default()
    }

    /// Stops with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("control plane did not stop within 60 s\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the control plane with SIGKILL, as a crash would: no cleanup runs.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("server is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the control plane to exit by itself (a failpoint killed it), or panics.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "control plane still running after {within:?}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.extra_env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.extra_env.push((key.to_owned(), v.to_owned()));
        }
    }

    /// Where this instance keeps what its sandboxes see (bundles, `/var/task`,
    /// `/var/runtime`): `/run/skyscale/sandboxes/<instance>`, the instance derived from the
    /// data directory as the daemon does.
    pub fn sandbox_root(&self) -> PathBuf {
        use sha2::Digest;
        let data = self.dir.path().join("data");
        let data = data.canonicalize().unwrap_or(data);
        let digest = hex::encode(sha2::Sha256::digest(data.as_os_str().as_encoded_bytes()));
        Path::new("/run/skyscale/sandboxes").join(&digest[..12])
    }

    /// Starts the control plane again on the same database and data directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn();
    }

    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "control plane exited with {status}\n{}",
            self.log()
        );
        self.spawn();
    }

    /// Runs the real `skyscale` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_in(args, None, None)
    }

    pub fn cli_in(&self, args: &[&str], cwd: Option<&Path>, stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(workspace_bin("skyscale"));
        cmd.args(args)
            .env("SKYSCALE_ENDPOINT", &self.url)
            .env("SKYSCALE_API_KEY", ADMIN_KEY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "skyscale {args:?} failed: {}\nstdout: {}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            tail(&self.log(), 40)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI and asserts it fails with exit status `code` and an `error:` line that
    /// contains `needle`.
    pub fn cli_fails(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "skyscale {args:?}: stdout {} stderr {err}",
            String::from_utf8_lossy(&out.stdout),
        );
        assert!(
            err.contains("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
    }

    pub fn http(&self) -> Http {
        Http {
            base: self.url.clone(),
            key: Some(ADMIN_KEY.to_owned()),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    /// Ids of this server's sandboxes: those with running processes or a bundle on disk.
    pub fn sandbox_ids(&self) -> std::collections::BTreeSet<String> {
        let bundles = std::fs::read_dir(self.sandbox_root().join("bundles"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok());
        self.sandbox_processes()
            .iter()
            .flat_map(|cmd| {
                cmd.split(['/', ' ', '='])
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .chain(bundles)
            .filter(|w| {
                w.len() == 35
                    && w.starts_with("sky")
                    && w[3..].bytes().all(|b| b.is_ascii_hexdigit())
            })
            .collect()
    }

    /// Polls `GET /v1/health` until `cond` holds for it, or panics after `within`.
    pub fn wait_health(
        &self,
        within: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let h = self.http().get("/v1/health").json();
            if cond(&h) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "health never satisfied the condition: {h}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The control plane's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// The control plane's resident memory (`VmRSS` of `/proc/<pid>/status`), KiB.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Processes whose command line mentions this server's data directory (sandboxes).
    pub fn sandbox_processes(&self) -> Vec<String> {
        let needle = self.dir.path().to_string_lossy().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let mut cmdline = String::new();
            if std::fs::File::open(entry.path().join("cmdline"))
                .and_then(|mut f| f.read_to_string(&mut cmdline))
                .is_ok()
                && cmdline.contains(&needle)
            {
                found.push(cmdline.replace('\0', " "));
            }
        }
        found
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if let Some((base, name)) = &self.pg {
            let dropped = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
                .and_then(|mut c| {
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                });
            if let Err(e) = dropped {
                eprintln!("dropping test database {name}: {e}");
            }
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A small HTTP client with the admin key.
pub struct Http {
    pub base: String,
    pub key: Option<String>,
    pub client: reqwest::blocking::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error.code` of a `/v1` error response.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Http {
    pub fn without_key(mut self) -> Self {
        self.key = None;
        self
    }

    pub fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    pub fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().expect("request failed");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().unwrap().to_vec(),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None)
    }

    pub fn post_json(&self, path: &str, v: &serde_json::Value) -> Resp {
        self.send("POST", path, Some(serde_json::to_vec(v).unwrap()))
    }

    pub fn invoke(&self, name: &str, payload: &str) -> Resp {
        self.send(
            "POST",
            &format!("/v1/functions/{name}/invoke"),
            Some(payload.as_bytes().to_vec()),
        )
    }
}

/// Starts the daemon with one bad setting and returns what it said on stderr, after
/// checking that it refused to start.
pub fn refused_setting(name: &str, value: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skyscale-control-plane"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DB_PATH", dir.path().join("skyscale.db"))
        .env("SKYSCALE_AGENT_PATH", workspace_bin("skyscale-agent"))
        .env(name, value)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{name}={value:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Builds a zip in memory from (name, contents) pairs.
pub fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, SimpleFileOptions::default()).unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Creates a function over HTTP with the given handler source.
pub fn create_fn(http: &Http, name: &str, source: &str, extra: serde_json::Value) -> Resp {
    use base64::Engine;
    let zip = zip_of(&[("handler.py", source)]);
    let mut body = serde_json::json!({
        "name": name,
        "runtime": "python3.11",
        "code_zip_base64": base64::engine::general_purpose::STANDARD.encode(zip),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    http.post_json("/v1/functions", &body)
}

/// Polls `f` every 100 ms until it gives a value; past `within`, fails with `what` and the
/// end of the server's log.
#[allow(dead_code)] // not every test file uses it
pub fn wait_for<T>(
    server: &Server,
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            tail(&server.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
