//! The floor reference: the same hello-world handler behind a minimal Python `http.server`
//! on loopback, with no isolation (keep-alive, TCP_NODELAY, one write per answer).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::daemon::HELLO_HANDLER;

const SERVER: &str = r#"
import json, sys, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[1])
import handler as fn

class Context:
    def __init__(self):
        self.aws_request_id = self.request_id = str(uuid.uuid4())

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 65536  # headers and body leave in one write (flushed after each request)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        event = json.loads(self.rfile.read(n))
        body = json.dumps(fn.handler(event, Context())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print("PORT", srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// The running floor server; killed on drop.
pub struct Floor {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Floor {
    pub async fn start() -> anyhow::Result<Floor> {
        let dir = tempfile::Builder::new()
            .prefix("skyscale-bench-floor-")
            .tempdir()
            .context("creating a temporary directory")?;
        std::fs::write(dir.path().join("handler.py"), HELLO_HANDLER)?;
        std::fs::write(dir.path().join("floor.py"), SERVER)?;
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(dir.path().join("floor.py"))
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting /usr/bin/python3")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the floor server did not start within 20 s")??
            .ok_or_else(|| anyhow!("the floor server exited"))?;
        let Some(port) = line.strip_prefix("PORT ") else {
            bail!("unexpected line from the floor server: {line:?}");
        };
        let port: u16 = port.trim().parse().context("floor server port")?;
        Ok(Floor {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}
