//! Host-wide claims on numbered resources (network address slots, sandbox uids). Several
//! control planes share one host (the tests run many), so a number is claimed with a file
//! `<dir>/<number>` created with `O_EXCL` that holds the sandbox id: whoever creates the file
//! owns the number until the file is removed. Releasing is by id, so a destroy or the cleanup
//! of a crashed run needs nothing but the sandbox id.

use std::io::Write;
use std::path::Path;

use crate::SandboxId;

/// Claims a free number in `first..first + count` for `id` under `dir` (created if missing).
/// The search starts at a point derived from the id, so concurrent claimers rarely collide.
pub(crate) fn claim(dir: &Path, first: u32, count: u32, id: &SandboxId) -> Result<u32, String> {
    if count == 0 {
        return Err(format!("no numbers to claim in {}", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let hex = &id.as_str()[SandboxId::PREFIX.len()..];
    let start = u32::from_str_radix(&hex[..8], 16).unwrap_or(0) % count;
    for i in 0..count {
        let n = first + (start + i) % count;
        let path = dir.join(n.to_string());
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                if let Err(e) = f.write_all(id.as_str().as_bytes()) {
                    let _ = std::fs::remove_file(&path);
                    return Err(format!("writing {}: {e}", path.display()));
                }
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("claiming {}: {e}", path.display())),
        }
    }
    Err(format!(
        "all {count} numbers in {} are claimed",
        dir.display()
    ))
}

/// Releases every claim under `dir` that holds `id` (normally one). Idempotent.
pub(crate) fn release(dir: &Path, id: &SandboxId) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if std::fs::read_to_string(entry.path()).is_ok_and(|owner| owner == id.as_str()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The numbers under `dir` claimed for `id`.
pub(crate) fn held(dir: &Path, id: &SandboxId) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|o| o == id.as_str()))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_released_by_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("claims");
        let ids: Vec<SandboxId> = (0..3).map(|_| SandboxId::generate()).collect();
        let got: Vec<u32> = ids
            .iter()
            .map(|id| claim(&dir, 100, 3, id).unwrap())
            .collect();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![100, 101, 102], "every number once");
        let extra = SandboxId::generate();
        let err = claim(&dir, 100, 3, &extra).unwrap_err();
        assert!(err.contains("all 3 numbers"), "{err}");
        release(&dir, &ids[1]);
        assert!(held(&dir, &ids[1]).is_empty());
        assert_eq!(claim(&dir, 100, 3, &extra).unwrap(), got[1]);
        assert_eq!(held(&dir, &ids[0]), vec![got[0]]);
    }
}
