//! Checkpoint and restore (SnapStart's driver half) against the real runtimes: runsc restores
//! a checkpointed sandbox any number of times under new ids, with its memory intact and new
//! stdio; runc refuses by name (CRIU cannot run on these hosts).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::*;
use skyscale_sandbox::{Driver, DriverError, Runtime, SandboxId};

/// A sandbox whose state was set before its checkpoint restores twice, under new ids with new
/// uids and a new code directory at the same place inside, each reading its own new stdin;
/// nothing of either is left after destroy.
#[tokio::test]
async fn runsc_restores_a_checkpoint_twice_with_its_memory() {
    let f = fixture(Runtime::runsc());
    f.driver.snapshots(false).expect("runsc snapshots");
    let mut p = f.start(128, 64).await;
    let booted = p
        .exec("import random; os.state = [os.getpid(), random.random()]; result = os.state")
        .await
        .unwrap();
    let booted_uid = p.exec("result = os.getuid()").await.unwrap();
    let image = f.tmp.path().join("image");
    std::fs::create_dir(&image).unwrap();
    let started = Instant::now();
    f.driver
        .checkpoint(&p.id, &image)
        .await
        .expect("checkpoint");
    let checkpoint_took = started.elapsed();
    f.driver.destroy(&p.id).await.unwrap();
    f.assert_gone(&p.id);
    assert!(
        std::fs::read_dir(&image).unwrap().next().is_some(),
        "an image was written"
    );

    let mut restored = Vec::new();
    for _ in 0..2 {
        // The restored sandbox's code directory is its own, with the same files.
        let code = f.tmp.path().join(format!("code-{}", restored.len()));
        std::fs::create_dir(&code).unwrap();
        std::fs::copy(f.code_dir.join("handler.py"), code.join("handler.py")).unwrap();
        let mut spec = f.spec(128, 64);
        spec.code_dir = code;
        let started = Instant::now();
        let sandbox = f.driver.restore(&spec, &image).await.expect("restore");
        let mut q = Probe::new(sandbox);
        let state = q.exec("result = os.state").await.unwrap();
        eprintln!(
            "checkpoint {checkpoint_took:?}, restore to first answer {:?}",
            started.elapsed()
        );
        assert_eq!(state, booted, "memory survives the restore");
        let code = q
            .exec("result = open('/var/task/handler.py').read()")
            .await
            .unwrap();
        assert!(code.as_str().unwrap().contains("def handler"), "{code}");
        let claimed = f
            .driver
            .uid_of(&q.id)
            .expect("a uid claimed for the new sandbox");
        // Inside, the processes keep the credentials they had (they are in the image):
        // under gVisor a uid is the sandbox kernel's own, not a host process's.
        let inside = q.exec("result = os.getuid()").await.unwrap();
        assert_eq!(inside, booted_uid, "credentials come from the image");
        eprintln!("uid inside after restore: {inside}, claimed for the new sandbox: {claimed}");
        restored.push(q);
    }
    assert_ne!(restored[0].id, restored[1].id);
    // Each answers on its own channel.
    for (i, q) in restored.iter_mut().enumerate() {
        let reply = q.exec(&format!("result = {i} * 2")).await.unwrap();
        assert_eq!(reply, serde_json::json!(i * 2));
    }
    for q in &restored {
        f.driver.destroy(&q.id).await.unwrap();
        f.assert_gone(&q.id);
    }
}

/// A damaged image fails the restore with the runtime's message, and the failed sandbox is
/// cleaned up like a failed create.
#[tokio::test]
async fn runsc_restore_of_a_damaged_image_fails_and_cleans_up() {
    let f = fixture(Runtime::runsc());
    let mut p = f.start(128, 64).await;
    p.exec("result = 1").await.unwrap();
    let image = f.tmp.path().join("image");
    std::fs::create_dir(&image).unwrap();
    f.driver
        .checkpoint(&p.id, &image)
        .await
        .expect("checkpoint");
    f.driver.destroy(&p.id).await.unwrap();
    for entry in std::fs::read_dir(&image).unwrap().flatten() {
        let len = entry.metadata().unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(entry.path())
            .unwrap();
        file.set_len(len / 3).unwrap();
    }
    let spec = f.spec(128, 64);
    let err = match f.driver.restore(&spec, &image).await {
        Ok(sandbox) => {
            // runsc may start and then die reading the rest of the image: the channel closes.
            let mut q = Probe::new(sandbox);
            q.send("result = 1").await;
            assert_eq!(q.recv_line().await, None, "a truncated image cannot answer");
            f.driver.destroy(&q.id).await.unwrap();
            None
        }
        Err(e) => Some(e),
    };
    if let Some(err) = err {
        assert!(matches!(err, DriverError::Command { .. }), "{err:?}");
        assert!(err.to_string().contains("restore"), "{err}");
    }
    f.assert_gone(&spec.id);
}

/// runc says why it cannot snapshot, and its checkpoint and restore refuse by name.
#[tokio::test]
async fn runc_refuses_snapshots_by_name() {
    let f = fixture(Runtime::Runc);
    let why = f.driver.snapshots(false).unwrap_err();
    assert!(why.contains("runc") && why.contains("CRIU"), "{why}");
    let image = f.tmp.path().join("image");
    let id = SandboxId::generate();
    let err = f.driver.checkpoint(&id, &image).await.unwrap_err();
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err:?}");
    let err = f
        .driver
        .restore(&f.spec(128, 64), &image)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CRIU"), "{err}");
}

/// A sandbox with outbound network (runsc `--network=host`) cannot be checkpointed: the
/// driver says so up front, and runsc itself refuses (the sandbox is then destroyed).
#[tokio::test]
async fn runsc_cannot_snapshot_a_networked_sandbox() {
    let f = fixture(Runtime::runsc());
    let why = f.driver.snapshots(true).unwrap_err();
    assert!(why.contains("network"), "{why}");
    let mut spec = f.spec(128, 64);
    spec.network = true;
    let mut p = Probe::new(f.driver.create(&spec).await.expect("create"));
    p.exec("result = 1").await.unwrap();
    let image = f.tmp.path().join("image");
    std::fs::create_dir(&image).unwrap();
    let err = f.driver.checkpoint(&p.id, &image).await.unwrap_err();
    assert!(err.to_string().contains("hostinet"), "{err}");
    f.driver.destroy(&p.id).await.unwrap();
    f.assert_gone(&p.id);
}
