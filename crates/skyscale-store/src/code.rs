//! Content-addressed code packages: each zip is stored once under its SHA-256, next to the
//! directory it unpacks to. Sandboxes bind that directory read-only at `/var/task`.
//!
//! A package is checked completely before anything is written, and both the zip and its
//! directory appear by atomic rename, so a failed or concurrent upload never leaves a
//! half-written package where a sandbox could see it.

use std::fs;
use std::io::{self, Cursor, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// A stored package: hex SHA-256 of the zip bytes and their size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRef {
    pub sha256: String,
    pub size: u64,
}

/// Size limits for one package (Lambda's: 50 MB zipped, 250 MB unzipped).
#[derive(Debug, Clone, Copy)]
pub struct CodeLimits {
    pub max_zip_bytes: u64,
    pub max_unzipped_bytes: u64,
    pub max_entries: usize,
}

impl Default for CodeLimits {
    fn default() -> Self {
        Self {
            max_zip_bytes: 50 * 1024 * 1024,
            max_unzipped_bytes: 250 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

/// Why a package was refused. Every message says what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The package is larger than allowed.
    #[error("code package is {size} bytes: the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// Not a zip archive.
    #[error("code package is not a valid zip archive: {0}")]
    NotZip(String),
    /// The archive has no files.
    #[error("code package is empty: the zip contains no files")]
    Empty,
    /// An entry would land outside the code directory.
    #[error("code package entry {0:?} has an absolute path or '..': refusing to unpack it")]
    UnsafePath(String),
    /// Symlinks could point anywhere in the sandbox; they are refused.
    #[error("code package entry {0:?} is a symbolic link: links are not supported")]
    Symlink(String),
    /// Unzipped size over the limit (a zip bomb, or just too big).
    #[error("code package unzips to more than {limit} bytes")]
    UnzippedTooLarge { limit: u64 },
    /// Too many entries.
    #[error("code package has {count} entries: the limit is {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("storing code package: {0}")]
    Io(#[from] io::Error),
}

/// The package directory under the data directory.
#[derive(Debug, Clone)]
pub struct CodeStore {
    root: PathBuf,
    limits: CodeLimits,
}

impl CodeStore {
    pub fn open(root: impl Into<PathBuf>, limits: CodeLimits) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root, limits })
    }

    pub fn limits(&self) -> CodeLimits {
        self.limits
    }

    /// The unpacked directory of a stored package.
    pub fn dir(&self, sha256: &str) -> PathBuf {
        self.root.join(sha256)
    }

    /// Checks, stores and unpacks a zip. Storing the same bytes twice is a no-op.
    pub fn put_zip(&self, bytes: &[u8]) -> Result<CodeRef, CodeError> {
        let size = bytes.len() as u64;
        if size > self.limits.max_zip_bytes {
            return Err(CodeError::TooLarge {
                size,
                limit: self.limits.max_zip_bytes,
            });
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let code = CodeRef { sha256, size };
        let dir = self.dir(&code.sha256);
        // Validate even when present: the caller learns about a bad package the same way
        // every time, and a present directory proves the bytes were valid once.
        let entries = self.validate(bytes)?;
        if dir.is_dir() {
            return Ok(code);
        }
        let tmp = self
            .root
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let result = unpack(bytes, &entries, &tmp, self.limits.max_unzipped_bytes).and_then(|()| {
            fs::write(self.root.join(format!("{}.zip", code.sha256)), bytes)?;
            match fs::rename(&tmp, &dir) {
                Ok(()) => Ok(()),
                // Another upload of the same bytes won the race: same content, keep theirs.
                Err(_) if dir.is_dir() => Ok(fs::remove_dir_all(&tmp)?),
                Err(e) => Err(e.into()),
            }
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result?;
        Ok(code)
    }

    /// Checks every entry of the archive; returns the entries to unpack.
    fn validate(&self, bytes: &[u8]) -> Result<Vec<Entry>, CodeError> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| CodeError::NotZip(e.to_string()))?;
        if archive.len() > self.limits.max_entries {
            return Err(CodeError::TooManyEntries {
                count: archive.len(),
                limit: self.limits.max_entries,
            });
        }
        let mut entries = Vec::with_capacity(archive.len());
        let mut declared: u64 = 0;
        for i in 0..archive.len() {
            let file = archive
                .by_index(i)
                .map_err(|e| CodeError::NotZip(e.to_string()))?;
            let name = file.name().to_owned();
            let path = safe_relative_path(&name)?;
            if file.is_symlink() {
                return Err(CodeError::Symlink(name));
            }
            declared = declared.saturating_add(file.size());
            if declared > self.limits.max_unzipped_bytes {
                return Err(CodeError::UnzippedTooLarge {
                    limit: self.limits.max_unzipped_bytes,
                });
            }
            let executable = file.unix_mode().is_some_and(|m| m & 0o111 != 0);
            entries.push(Entry {
                index: i,
                path,
                is_dir: file.is_dir(),
                executable,
            });
        }
        if !entries.iter().any(|e| !e.is_dir) {
            return Err(CodeError::Empty);
        }
        Ok(entries)
    }
}

struct Entry {
    index: usize,
    path: PathBuf,
    is_dir: bool,
    executable: bool,
}

/// Only plain relative components: no root, no `..`, no drive prefixes, no backslashes
/// (which some zip tools write as separators).
fn safe_relative_path(name: &str) -> Result<PathBuf, CodeError> {
    let unsafe_path = || CodeError::UnsafePath(name.to_owned());
    if name.contains('\\') || name.contains('\0') {
        return Err(unsafe_path());
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(unsafe_path()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(unsafe_path());
    }
    Ok(out)
}

fn unpack(bytes: &[u8], entries: &[Entry], dest: &Path, limit: u64) -> Result<(), CodeError> {
    use std::os::unix::fs::PermissionsExt;

    fs::create_dir_all(dest)?;
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| CodeError::NotZip(e.to_string()))?;
    let mut budget = limit;
    for e in entries {
        let target = dest.join(&e.path);
        if e.is_dir {
            fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = archive
            .by_index(e.index)
            .map_err(|err| CodeError::NotZip(err.to_string()))?;
        // The declared sizes were checked, but a crafted archive can lie about them: count
        // the bytes really written, too.
        let mut limited = file.take(budget + 1);
        let mut out = fs::File::create(&target)?;
        let written = io::copy(&mut limited, &mut out)?;
        if written > budget {
            return Err(CodeError::UnzippedTooLarge { limit });
        }
        budget -= written;
        let mode = if e.executable { 0o755 } else { 0o644 };
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
    }
    // Directories readable by the unprivileged sandbox user.
    set_dir_modes(dest)?;
    Ok(())
}

fn set_dir_modes(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_dir_modes(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn make_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn store() -> (tempfile::TempDir, CodeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code"), CodeLimits::default()).unwrap();
        (dir, store)
    }

    #[test]
    fn stores_once_and_unpacks() {
        let (_d, s) = store();
        let zip = make_zip(&[("handler.py", b"x = 1\n"), ("pkg/mod.py", b"y = 2\n")]);
        let a = s.put_zip(&zip).unwrap();
        let b = s.put_zip(&zip).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size, zip.len() as u64);
        let dir = s.dir(&a.sha256);
        assert_eq!(fs::read(dir.join("handler.py")).unwrap(), b"x = 1\n");
        assert_eq!(fs::read(dir.join("pkg/mod.py")).unwrap(), b"y = 2\n");
    }

    #[test]
    fn refuses_bad_packages_and_writes_nothing() {
        let (d, s) = store();
        assert!(matches!(s.put_zip(b"not a zip"), Err(CodeError::NotZip(_))));
        let slip = make_zip(&[("../evil.py", b"x")]);
        assert!(matches!(s.put_zip(&slip), Err(CodeError::UnsafePath(_))));
        let abs = make_zip(&[("/etc/evil", b"x")]);
        assert!(matches!(s.put_zip(&abs), Err(CodeError::UnsafePath(_))));
        let empty = make_zip(&[]);
        assert!(matches!(s.put_zip(&empty), Err(CodeError::Empty)));
        let left: Vec<_> = fs::read_dir(d.path().join("code")).unwrap().collect();
        assert!(left.is_empty(), "bad uploads left files behind: {left:?}");
    }

    #[test]
    fn refuses_zip_bombs() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CodeLimits {
            max_unzipped_bytes: 1000,
            ..CodeLimits::default()
        };
        let s = CodeStore::open(dir.path(), limits).unwrap();
        let big = vec![0u8; 5000];
        let zip = make_zip(&[("big.bin", &big)]);
        assert!(matches!(
            s.put_zip(&zip),
            Err(CodeError::UnzippedTooLarge { .. })
        ));
    }
}
