//! Content-addressed code packages: each zip is stored once under its SHA-256, next to the
//! directory it unpacks to. A cold start hard-links that directory's files into the
//! sandbox's `/var/task`.
//!
//! A package is checked completely before anything is written, and both the zip and its
//! directory appear by atomic rename, so a failed or concurrent upload never leaves a
//! half-written package where a sandbox could see it. What the packages take on disk is
//! bounded by `CodeLimits::max_total_bytes`, and packages nothing references any more are
//! removed by [`CodeStore::collect`] (see `space.rs` for both).
//!
//! A [`Derive`] (the core's Python bytecode compiler) may add files to an unpacked package
//! before it is published; they are charged with it, within an allowance reserved with it.

mod space;

use std::fs;
use std::io::{self, Cursor, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use space::{blocks as charged_size, CodePin, CodeUsage, Collected, BLOCK as CHARGE_BLOCK};
use space::{Admission, Ledger, TMP_PREFIX};

/// A stored package: hex SHA-256 of the zip bytes and their size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRef {
    pub sha256: String,
    pub size: u64,
}

/// Size limits for one package (Lambda's: 50 MB zipped, 250 MB unzipped) and for all of
/// them together (Lambda's default code storage: 75 GB).
#[derive(Debug, Clone, Copy)]
pub struct CodeLimits {
    pub max_zip_bytes: u64,
    pub max_unzipped_bytes: u64,
    pub max_entries: usize,
    /// Most bytes all stored packages may be charged together (see `space.rs`).
    pub max_total_bytes: u64,
}

impl Default for CodeLimits {
    fn default() -> Self {
        Self {
            max_zip_bytes: 50 * 1024 * 1024,
            max_unzipped_bytes: 250 * 1024 * 1024,
            max_entries: 10_000,
            max_total_bytes: 75 * 1024 * 1024 * 1024,
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
    TooManyEntries { count: u64, limit: usize },
    /// An entry unzips to more than its header says (a zip bomb that lies about its size).
    #[error("code package entry {0:?} unzips to more bytes than its header declares")]
    SizeMismatch(String),
    /// An entry's data cannot be unzipped (bad compressed data or checksum).
    #[error("code package entry {name:?} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
    /// One path is both a file and a directory (or a file twice) in the archive.
    #[error("code package entry {0:?} clashes with another entry of the same path")]
    Clash(String),
    /// A path no file system takes: a component over 255 bytes or the whole over 1024.
    #[error("code package entry {0:?} has a name that is too long")]
    NameTooLong(String),
    /// Storing the package would take the code storage past its limit.
    #[error(
        "code storage limit exceeded: the package needs {needed} bytes of storage and \
         {used} of the {limit} bytes allowed are in use; delete functions or versions that \
         are no longer needed"
    )]
    StorageFull { needed: u64, used: u64, limit: u64 },
    #[error("storing code package: {0}")]
    Io(#[from] io::Error),
}

/// Adds files derived from a package to its unpacked directory, once, before the package
/// is published (and so before any sandbox can see it): the core compiles Python bytecode.
/// The zip stays as uploaded. The derived files are charged with the package.
pub trait Derive: Send + Sync + std::fmt::Debug {
    /// The most the derived files of a package with these files (path relative to the
    /// package's root, size) may be charged: reserved with the package before it is written.
    fn allowance(&self, files: &mut dyn Iterator<Item = (&Path, u64)>) -> u64;

    /// Adds the derived files to `dir` (the unpacked package, not yet visible), charged at
    /// most `budget` bytes as `space.rs` charges: each file in whole [`CHARGE_BLOCK`]s
    /// ([`charged_size`]), each new directory one block. It cannot fail the upload: what
    /// it cannot derive it leaves out (and logs).
    fn derive(&self, dir: &Path, budget: u64);
}

/// The package directory under the data directory.
#[derive(Debug, Clone)]
pub struct CodeStore {
    root: PathBuf,
    limits: CodeLimits,
    ledger: Arc<Ledger>,
    derive: Option<Arc<dyn Derive>>,
}

/// A package just stored (or found stored), pinned until the caller has committed the row
/// that references it: dropping `pin` earlier would let a collection remove it.
#[derive(Debug)]
pub struct StoredCode {
    pub code: CodeRef,
    pub pin: CodePin,
}

impl CodeStore {
    /// Opens (creating it if needed) a package directory, removing what a crash left
    /// half-written or half-removed in it.
    pub fn open(root: impl Into<PathBuf>, limits: CodeLimits) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let ledger = Arc::new(Ledger::scan(&root)?);
        Ok(Self {
            root,
            limits,
            ledger,
            derive: None,
        })
    }

    /// Stores packages from now on with the files `derive` adds (see [`Derive`]).
    pub fn with_derive(mut self, derive: Arc<dyn Derive>) -> Self {
        self.derive = Some(derive);
        self
    }

    pub fn limits(&self) -> CodeLimits {
        self.limits
    }

    /// What the stored packages take.
    pub fn usage(&self) -> CodeUsage {
        self.ledger.usage()
    }

    /// The zip a stored package was unpacked from, byte for byte as uploaded.
    pub fn zip_path(&self, sha256: &str) -> PathBuf {
        self.root.join(format!("{sha256}.zip"))
    }

    /// The unpacked directory of a stored package.
    pub fn dir(&self, sha256: &str) -> PathBuf {
        self.root.join(sha256)
    }

    /// Keeps a stored package from being collected while the pin is held (a cold start
    /// linking it into a sandbox); `None` if it is not stored, e.g. collected after the
    /// function record naming it was read.
    pub fn pin(&self, sha256: &str) -> Option<CodePin> {
        self.ledger.pin_stored(sha256)
    }

    /// Removes every stored package that the list `referenced` returns does not name and
    /// that no one has pinned. `referenced` must read the references at the time it is
    /// called (it runs after the collection starts noting pins).
    pub fn collect<E>(
        &self,
        referenced: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<Collected, E> {
        self.ledger.collect(&self.root, referenced)
    }

    /// Checks, stores and unpacks a zip, pinned (see [`StoredCode`]). Storing the same bytes
    /// twice writes nothing the second time. A package that would take the storage past
    /// its limit is refused before anything is written.
    pub fn put_zip(&self, bytes: &[u8]) -> Result<StoredCode, CodeError> {
        let size = bytes.len() as u64;
        if size > self.limits.max_zip_bytes {
            return Err(CodeError::TooLarge {
                size,
                limit: self.limits.max_zip_bytes,
            });
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        // Validate even when present: the caller learns about a bad package the same way
        // every time, and a present directory proves the bytes were valid once.
        let entries = self.validate(bytes)?;
        let pin = self.ledger.pin_any(&sha256);
        let code = CodeRef { sha256, size };
        let allowance = self.derive.as_ref().map_or(0, |d| {
            d.allowance(
                &mut entries
                    .iter()
                    .filter(|e| !e.is_dir)
                    .map(|e| (e.path.as_path(), e.size)),
            )
        });
        let needed = charge_at_most(size, &entries).saturating_add(allowance);
        let limit = self.limits.max_total_bytes;
        let _reservation = match self.ledger.admit(&code.sha256, needed, limit) {
            Admission::Present => return Ok(StoredCode { code, pin }),
            Admission::Full { used } => {
                return Err(CodeError::StorageFull {
                    needed,
                    used,
                    limit,
                })
            }
            Admission::Reserved(r) => r,
        };
        let stem = format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let tmp = self.root.join(&stem);
        let tmp_zip = self.root.join(format!("{stem}.zip"));
        let result = unpack(bytes, &entries, &tmp, self.limits.max_unzipped_bytes).and_then(|()| {
            if let Some(derive) = &self.derive {
                derive.derive(&tmp, allowance);
            }
            fs::write(&tmp_zip, bytes)?;
            let charge = space::measure(&tmp)? + space::blocks(size);
            // The zip first: a crash before the directory is renamed leaves a zip of no
            // package, which the next open removes.
            let stored = self.ledger.publish(&code.sha256, charge, || {
                fs::rename(&tmp_zip, self.root.join(format!("{}.zip", code.sha256)))?;
                fs::rename(&tmp, self.dir(&code.sha256))
            })?;
            // `false`: another upload of the same bytes won the race; keep theirs.
            Ok(stored)
        });
        if !matches!(result, Ok(true)) {
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::remove_file(&tmp_zip);
        }
        result?;
        Ok(StoredCode { code, pin })
    }

    /// The unpacked size of a stored package (the sum of its files' sizes, as Lambda counts
    /// a function's and its layers' 250 MB): read from its zip.
    pub fn unzipped_size(&self, sha256: &str) -> Result<u64, CodeError> {
        let bytes = fs::read(self.zip_path(sha256))?;
        Ok(self.validate(&bytes)?.iter().map(|e| e.size).sum())
    }

    /// Checks every entry of the archive; returns the entries to unpack.
    fn validate(&self, bytes: &[u8]) -> Result<Vec<Entry>, CodeError> {
        // The entry count the archive declares is checked before the zip crate parses the
        // central directory: a 50 MB zip can hold half a million entries, and parsing them
        // all would cost the control plane hundreds of megabytes before the count is known.
        if let Some(count) = declared_entries(bytes) {
            if count > self.limits.max_entries as u64 {
                return Err(CodeError::TooManyEntries {
                    count,
                    limit: self.limits.max_entries,
                });
            }
        }
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| CodeError::NotZip(e.to_string()))?;
        if archive.len() > self.limits.max_entries {
            return Err(CodeError::TooManyEntries {
                count: archive.len() as u64,
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
                name,
                path,
                is_dir: file.is_dir(),
                size: file.size(),
                executable,
            });
        }
        if !entries.iter().any(|e| !e.is_dir) {
            return Err(CodeError::Empty);
        }
        check_clashes(&entries)?;
        Ok(entries)
    }
}

struct Entry {
    index: usize,
    /// The name as the archive spells it (for messages).
    name: String,
    path: PathBuf,
    is_dir: bool,
    /// Unzipped size as declared in the central directory.
    size: u64,
    executable: bool,
}

/// The most a package can be charged once unpacked (see `space.rs`): its entries unzip to
/// at most their declared sizes (`unpack` stops any that would not), and every directory,
/// named or implied by a path, takes a block.
fn charge_at_most(zip_bytes: u64, entries: &[Entry]) -> u64 {
    let mut dirs = std::collections::HashSet::new();
    let mut files = 0u64;
    for e in entries {
        if e.is_dir {
            dirs.insert(e.path.as_path());
        } else {
            files = files.saturating_add(space::blocks(e.size));
        }
        dirs.extend(
            e.path
                .ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty()),
        );
    }
    let root_and_dirs = (dirs.len() as u64 + 1) * space::BLOCK;
    space::blocks(zip_bytes)
        .saturating_add(files)
        .saturating_add(root_and_dirs)
}

/// The total number of entries the end-of-central-directory record (or its zip64 twin)
/// declares, if the archive has a readable one; the zip crate judges the rest.
fn declared_entries(bytes: &[u8]) -> Option<u64> {
    const EOCD: &[u8] = b"PK\x05\x06";
    const EOCD64_LOCATOR: &[u8] = b"PK\x06\x07";
    const EOCD64: &[u8] = b"PK\x06\x06";
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    // The record is 22 bytes plus a comment of at most 65,535 at the very end.
    let search_from = bytes.len().saturating_sub(22 + usize::from(u16::MAX));
    let eocd = search_from + bytes[search_from..].windows(4).rposition(|w| w == EOCD)?;
    let count = u16_at(eocd + 10)?;
    if count != u16::MAX {
        return Some(count.into());
    }
    // zip64: the locator sits right before the record and points at the zip64 record.
    let locator = eocd.checked_sub(20)?;
    if bytes.get(locator..locator + 4)? != EOCD64_LOCATOR {
        return Some(count.into());
    }
    let record = usize::try_from(u64_at(locator + 8)?).ok()?;
    if bytes.get(record..record + 4)? != EOCD64 {
        return None;
    }
    u64_at(record + 32)
}

/// Refuses an archive in which a file's path is also a directory (`a` and `a/b`, or `a` and
/// `a/`) or in which two files share a path: unpacking it would fail half-way.
fn check_clashes(entries: &[Entry]) -> Result<(), CodeError> {
    let mut files = std::collections::HashSet::new();
    let mut dirs = std::collections::HashSet::new();
    for e in entries {
        if e.is_dir {
            dirs.insert(e.path.as_path());
        } else if !files.insert(e.path.as_path()) {
            return Err(CodeError::Clash(e.name.clone()));
        }
        dirs.extend(e.path.ancestors().skip(1));
    }
    match entries
        .iter()
        .find(|e| !e.is_dir && dirs.contains(e.path.as_path()))
    {
        Some(e) => Err(CodeError::Clash(e.name.clone())),
        None => Ok(()),
    }
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
    if name.len() > MAX_PATH_BYTES || out.iter().any(|c| c.len() > MAX_NAME_BYTES) {
        return Err(CodeError::NameTooLong(name.to_owned()));
    }
    Ok(out)
}

/// Longest file name component the file systems under the data directory take.
const MAX_NAME_BYTES: usize = 255;
/// Longest entry path accepted (well below `PATH_MAX` once under the data directory).
const MAX_PATH_BYTES: usize = 1024;

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
        let mut file = archive
            .by_index(e.index)
            .map_err(|err| CodeError::NotZip(err.to_string()))?;
        let mut out = fs::File::create(&target)?;
        // The declared sizes were checked, but a crafted archive can lie about them: no
        // entry may unzip to more than it declares, nor the whole to more than the limit.
        let cap = e.size.min(budget);
        let written = copy_entry(&mut file, &mut out, cap + 1, &e.name)?;
        if written > e.size {
            return Err(CodeError::SizeMismatch(e.name.clone()));
        }
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

/// Copies at most `max` bytes of an entry. A failure to read is the archive's fault
/// (corrupt data, a bad checksum); a failure to write is ours.
fn copy_entry(
    from: &mut impl Read,
    to: &mut impl io::Write,
    max: u64,
    name: &str,
) -> Result<u64, CodeError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    while copied < max {
        let want = usize::try_from(max - copied).map_or(buf.len(), |left| left.min(buf.len()));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(CodeError::Corrupt {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        to.write_all(&buf[..n])?;
        copied += n as u64;
    }
    Ok(copied)
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
        let a = s.put_zip(&zip).unwrap().code;
        let b = s.put_zip(&zip).unwrap().code;
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
        // The same entry declaring 10 bytes: stopped at the 11th byte.
        let lying = with_declared_size(zip, 10);
        assert!(
            matches!(s.put_zip(&lying), Err(CodeError::SizeMismatch(ref n)) if n == "big.bin"),
            "{:?}",
            s.put_zip(&lying)
        );
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(
            left.is_empty(),
            "a refused bomb left files behind: {left:?}"
        );
    }

    /// Patches the unzipped size of the first entry in its local header and of the last
    /// entry in the central directory (the same one in a single-entry zip).
    fn with_declared_size(mut zip: Vec<u8>, declared: u32) -> Vec<u8> {
        zip[22..26].copy_from_slice(&declared.to_le_bytes());
        let central = zip.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        zip[central + 24..central + 28].copy_from_slice(&declared.to_le_bytes());
        zip
    }

    #[test]
    fn refuses_more_entries_than_the_limit_before_parsing_them() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CodeLimits {
            max_entries: 3,
            ..CodeLimits::default()
        };
        let s = CodeStore::open(dir.path(), limits).unwrap();
        let names: Vec<String> = (0..4).map(|i| format!("f{i}.py")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let zip = make_zip(&files);
        assert_eq!(declared_entries(&zip), Some(4));
        assert!(matches!(
            s.put_zip(&zip),
            Err(CodeError::TooManyEntries { count: 4, limit: 3 })
        ));
        assert!(s.put_zip(&make_zip(&files[..3])).is_ok());
    }

    #[test]
    fn refuses_corrupt_clashing_and_overlong_entries() {
        let (d, s) = store();
        // A wrong CRC-32 (in both headers) is found while unpacking: the archive's fault.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("handler.py", stored).unwrap();
        w.write_all(b"x = 1\n").unwrap();
        let mut bad_crc = w.finish().unwrap().into_inner();
        bad_crc[14] ^= 0xff;
        let central = bad_crc
            .windows(4)
            .rposition(|w| w == b"PK\x01\x02")
            .unwrap();
        bad_crc[central + 16] ^= 0xff;
        let err = s.put_zip(&bad_crc).unwrap_err();
        assert!(matches!(err, CodeError::Corrupt { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("code package entry \"handler.py\" is corrupt: "));

        let clash = make_zip(&[("a", b"x"), ("a/b.py", b"y")]);
        assert!(matches!(s.put_zip(&clash), Err(CodeError::Clash(n)) if n == "a"));
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_directory("pkg/", SimpleFileOptions::default())
            .unwrap();
        w.start_file("pkg", SimpleFileOptions::default()).unwrap();
        let dir_and_file = w.finish().unwrap().into_inner();
        assert!(matches!(s.put_zip(&dir_and_file), Err(CodeError::Clash(_))));
        let same_dir_twice = make_zip(&[("pkg/a.py", b"x"), ("pkg/b.py", b"y")]);
        assert!(s.put_zip(&same_dir_twice).is_ok());

        let long_name = format!("{}.py", "n".repeat(300));
        let long = make_zip(&[(long_name.as_str(), b"x")]);
        assert!(matches!(s.put_zip(&long), Err(CodeError::NameTooLong(_))));
        let deep_name = format!("{}x.py", "d/".repeat(600));
        let deep = make_zip(&[(deep_name.as_str(), b"x")]);
        assert!(matches!(s.put_zip(&deep), Err(CodeError::NameTooLong(_))));

        let left: Vec<_> = fs::read_dir(d.path().join("code"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(
            left.is_empty(),
            "refused uploads left files behind: {left:?}"
        );
    }

    /// The names directly under `dir`.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn none() -> Result<Vec<String>, io::Error> {
        Ok(Vec::new())
    }

    #[test]
    fn unreferenced_packages_are_collected_and_their_space_returns() {
        let (d, s) = store();
        let root = d.path().join("code");
        assert_eq!(s.usage(), CodeUsage::default());
        let a = s.put_zip(&make_zip(&[("a.py", b"a")])).unwrap();
        let b_zip = make_zip(&[("b.py", &[7u8; 10_000][..]), ("pkg/c.py", b"")]);
        let b = s.put_zip(&b_zip).unwrap();
        // Charged: the zip and each file in whole blocks, each directory a block.
        let a_charge = 3 * space::BLOCK;
        let b_charge = space::blocks(b_zip.len() as u64) + (3 + 1 + 2) * space::BLOCK;
        assert_eq!(
            s.usage(),
            CodeUsage {
                bytes: a_charge + b_charge,
                packages: 2
            }
        );
        let (a_sha, b_sha) = (a.code.sha256.clone(), b.code.sha256.clone());
        drop((a, b));
        let keep = a_sha.clone();
        let gone = s.collect(|| Ok::<_, io::Error>(vec![keep])).unwrap();
        assert_eq!(
            gone,
            Collected {
                packages: 1,
                bytes: b_charge
            }
        );
        assert_eq!(names(&root), vec![a_sha.clone(), format!("{a_sha}.zip")]);
        assert!(
            s.pin(&b_sha).is_none(),
            "a collected package cannot be pinned"
        );
        s.collect(none).unwrap();
        assert!(names(&root).is_empty());
        assert_eq!(s.usage(), CodeUsage::default());
        // Stored again after its collection: unpacked afresh.
        let again = s.put_zip(&b_zip).unwrap();
        assert!(s.dir(&again.code.sha256).join("pkg/c.py").is_file());
        assert_eq!(s.usage().bytes, b_charge);
    }

    #[test]
    fn pinned_packages_survive_a_collection() {
        let (_d, s) = store();
        // An upload whose row is not committed yet: its package stays.
        let up = s.put_zip(&make_zip(&[("a.py", b"a")])).unwrap();
        let sha = up.code.sha256.clone();
        s.collect(none).unwrap();
        assert!(s.dir(&sha).is_dir());
        // The reference is committed (and the pin dropped) after the collection read the
        // references: still kept, since the package was pinned while it ran.
        let gone = s
            .collect(move || {
                drop(up);
                none()
            })
            .unwrap();
        assert_eq!(gone.packages, 0);
        assert!(s.dir(&sha).is_dir());
        // A cold start linking it: kept while the pin is held, removed after.
        let linking = s.pin(&sha).unwrap();
        s.collect(none).unwrap();
        assert!(s.dir(&sha).is_dir());
        drop(linking);
        assert_eq!(s.collect(none).unwrap().packages, 1);
        assert!(!s.dir(&sha).exists());
        assert!(s.pin(&sha).is_none());
        // A failed read of the references removes nothing.
        let kept = s.put_zip(&make_zip(&[("b.py", b"b")])).unwrap().code;
        let failed = s.collect(|| Err::<Vec<String>, _>(io::Error::other("database gone")));
        assert!(failed.is_err());
        assert!(s.dir(&kept.sha256).is_dir());
    }

    #[test]
    fn the_storage_limit_refuses_a_package_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CodeLimits {
            max_total_bytes: 88 * 1024,
            ..CodeLimits::default()
        };
        let s = CodeStore::open(dir.path(), limits).unwrap();
        let small = make_zip(&[("a.py", b"a")]);
        let stored = s.put_zip(&small).unwrap().code;
        let before = names(dir.path());
        let used = s.usage().bytes;
        let big = make_zip(&[("big.bin", &[1u8; 70 * 1024][..])]);
        match s.put_zip(&big) {
            Err(CodeError::StorageFull {
                needed,
                used: u,
                limit,
            }) => {
                assert_eq!((u, limit), (used, 88 * 1024));
                assert!(needed > 70 * 1024, "{needed}");
            }
            other => panic!("expected StorageFull, got {other:?}"),
        }
        assert!(s
            .put_zip(&big)
            .unwrap_err()
            .to_string()
            .starts_with("code storage limit exceeded: the package needs"));
        assert_eq!(names(dir.path()), before, "a refused package left files");
        assert_eq!(s.usage().bytes, used);
        // A package already stored costs nothing more, however full the storage is.
        assert_eq!(s.put_zip(&small).unwrap().code, stored);
        // Collected, it makes room.
        s.collect(none).unwrap();
        assert!(s.put_zip(&big).is_ok());
    }

    /// Adds `derived/<name>.out` (5,000 bytes) for every `.py` file: an allowance of
    /// three blocks per file and one for the directory.
    #[derive(Debug)]
    struct Outputs;

    impl Derive for Outputs {
        fn allowance(&self, files: &mut dyn Iterator<Item = (&Path, u64)>) -> u64 {
            let py = files
                .filter(|(p, _)| p.extension().is_some_and(|e| e == "py"))
                .count() as u64;
            if py == 0 {
                0
            } else {
                (3 * py + 1) * space::BLOCK
            }
        }

        fn derive(&self, dir: &Path, budget: u64) {
            let names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".py"))
                .collect();
            assert_eq!(
                budget,
                self.allowance(&mut names.iter().map(|n| (Path::new(n.as_str()), 1)))
            );
            fs::create_dir(dir.join("derived")).unwrap();
            for n in names {
                fs::write(dir.join("derived").join(format!("{n}.out")), [0u8; 5000]).unwrap();
            }
        }
    }

    #[test]
    fn derived_files_are_charged_and_reserved_and_the_zip_stays_as_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("code");
        let limits = CodeLimits {
            max_total_bytes: 64 * 1024,
            ..CodeLimits::default()
        };
        let s = CodeStore::open(&root, limits)
            .unwrap()
            .with_derive(Arc::new(Outputs));
        let zip = make_zip(&[("a.py", b"a"), ("b.txt", b"b")]);
        let stored = s.put_zip(&zip).unwrap().code;
        let pkg = s.dir(&stored.sha256);
        assert_eq!(fs::read(pkg.join("derived/a.py.out")).unwrap().len(), 5000);
        assert_eq!(fs::read(s.zip_path(&stored.sha256)).unwrap(), zip);
        // The zip, the root, two files, the derived directory and its 5,000-byte file.
        let charge = space::blocks(zip.len() as u64) + (1 + 2 + 1 + 2) * space::BLOCK;
        assert_eq!(s.usage().bytes, charge);
        // Reopened, the directory is measured to the same charge.
        let reopened = CodeStore::open(&root, limits).unwrap();
        assert_eq!(reopened.usage(), s.usage());
        // Admission counts the allowance: 10 sources need 31 blocks more than they take.
        let names: Vec<String> = (0..10).map(|i| format!("m{i}.py")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let many = make_zip(&files);
        assert!(
            matches!(s.put_zip(&many), Err(CodeError::StorageFull { .. })),
            "the allowance was not reserved"
        );
        let plain = CodeStore::open(dir.path().join("plain"), limits).unwrap();
        assert!(plain.put_zip(&many).is_ok());
    }

    #[test]
    fn open_removes_crash_leftovers_and_counts_what_is_stored() {
        let (d, s) = store();
        let root = d.path().join("code");
        let kept = s
            .put_zip(&make_zip(&[("a.py", b"a"), ("p/b.py", b"b")]))
            .unwrap();
        let usage = s.usage();
        fs::create_dir_all(root.join(".tmp-0123/pkg")).unwrap();
        fs::write(root.join(".tmp-0123/pkg/x.py"), b"x").unwrap();
        fs::write(root.join(".tmp-0123.zip"), b"zip").unwrap();
        fs::create_dir(root.join(".trash-4567")).unwrap();
        let orphan = format!("{}.zip", "ab".repeat(32));
        fs::write(root.join(&orphan), b"a zip whose directory never appeared").unwrap();
        let reopened = CodeStore::open(&root, CodeLimits::default()).unwrap();
        let sha = kept.code.sha256.clone();
        assert_eq!(names(&root), vec![sha.clone(), format!("{sha}.zip")]);
        assert_eq!(reopened.usage(), usage);
        assert!(reopened.pin(&sha).is_some());
    }
}
