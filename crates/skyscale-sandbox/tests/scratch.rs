mod common;
use common::*;
use skyscale_sandbox::{Driver, Runtime};

const THREADS: &str = "import threading\nev = threading.Event()\nn = 0\nerr = None\ntry:\n    for i in range(300):\n        t = threading.Thread(target=ev.wait); t.start(); n += 1\nexcept BaseException as e:\n    err = repr(e)\nev.set()\nresult = [n, err]";
const FORKS: &str = "import time\nkids = []\nerr = None\ntry:\n    for i in range(300):\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(2); os._exit(0)\n        kids.append(pid)\nexcept BaseException as e:\n    err = repr(e)\nimport subprocess\nhost = 0\nfor k in kids: os.waitpid(k, 0)\nresult = [len(kids), err]";

async fn basic(rt: Runtime, pids: i64) {
    let mut f = fixture(rt.clone());
    if matches!(rt, Runtime::Runsc { .. }) {
        let mut cfg = f.driver.config().clone();
        cfg.debug_log = Some("/tmp/runsc-debug/".into());
        f.driver = skyscale_sandbox::OciDriver::new(cfg).unwrap();
    }
    let mut p = f.start(1024, pids).await;
    let dirs = f.driver.cgroup_dirs(&p.id);
    let pidsd = dirs
        .iter()
        .find(|d| d.to_string_lossy().contains("/pids/"))
        .unwrap()
        .clone();
    let rd = |p: &std::path::Path, f: &str| {
        std::fs::read_to_string(p.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    eprintln!(
        "pids.max {} pids.current {}",
        rd(&pidsd, "pids.max"),
        rd(&pidsd, "pids.current")
    );
    eprintln!("tmp: {:?}", p.exec("st = os.stat('/tmp'); result = [oct(st.st_mode), st.st_uid, os.getuid(), os.getgid(), os.getgroups()]").await);
    eprintln!(
        "tmp write: {:?}",
        p.exec("open('/tmp/small','wb').write(b'x'); result = 1")
            .await
    );
    eprintln!("threads: {:?}", p.exec(THREADS).await);
    eprintln!("pids.current {}", rd(&pidsd, "pids.current"));
    let t = tokio::spawn({let pidsd = pidsd.clone(); async move { let mut mx = 0; for _ in 0..300 { let c: i64 = std::fs::read_to_string(pidsd.join("pids.current")).unwrap_or_default().trim().parse().unwrap_or(0); mx = mx.max(c); tokio::time::sleep(std::time::Duration::from_millis(5)).await; } mx }});
    eprintln!("forks: {:?}", p.exec(FORKS).await);
    eprintln!("max pids.current during forks {}", t.await.unwrap());
    eprintln!("pids.current {}", rd(&pidsd, "pids.current"));
    f.driver.destroy(&p.id).await.unwrap();
    f.assert_gone(&p.id);
}
#[tokio::test]
async fn scratch_runsc() {
    basic(Runtime::runsc(), 32).await
}
#[tokio::test]
async fn scratch_runc() {
    basic(Runtime::Runc, 32).await
}
