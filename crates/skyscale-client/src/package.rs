//! Turns what a user points at (a directory or a `.zip` file) into the zip archive the API
//! takes.
//!
//! A directory is packed deterministically: entries in byte order of their relative paths,
//! fixed timestamps, only the permission bits kept. The same tree therefore always gives
//! the same archive and the same `code_sha256`.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Directory names never packed: caches and version control.
const SKIPPED_DIRS: &[&str] = &["__pycache__", ".git"];
/// File extensions never packed: compiled Python, rebuilt by the runtime.
const SKIPPED_EXTENSIONS: &[&str] = &["pyc"];
/// The local-file-header signature every non-empty zip archive starts with.
const ZIP_SIGNATURE: &[u8] = b"PK\x03\x04";

/// Why a code package could not be made. Messages name the path.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The path cannot be read at all (missing, no permission).
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that does not start with the zip signature.
    #[error("{path} is not a zip archive: expected a directory or a .zip file")]
    NotZip { path: PathBuf },
    /// Something that is neither a file nor a directory (socket, device).
    #[error("{path} is neither a directory nor a .zip file")]
    Unsupported { path: PathBuf },
    /// A directory with nothing to pack once caches are skipped.
    #[error("{path} contains no files to package")]
    Empty { path: PathBuf },
    /// A symlink whose target is outside the packaged directory, missing, or a directory.
    #[error("refusing to package symlink {path}: {reason}")]
    Symlink { path: PathBuf, reason: String },
    /// A file name that is not UTF-8 cannot be a zip entry name the runtime will find.
    #[error("cannot package {path}: file name is not valid UTF-8")]
    NonUtf8Name { path: PathBuf },
    /// The zip writer failed.
    #[error("cannot build the zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
}

/// Reads `path` as a code package: a zip file is returned as it is (after checking its
/// signature), a directory is zipped.
///
/// In a directory, `__pycache__` and `.git` directories and `*.pyc` files are skipped.
/// A symlink to a file inside the directory is packed as a regular file; any other symlink
/// (pointing outside, dangling, or to a directory) is an error, so that nothing outside the
/// directory leaks into the package.
pub fn zip_path(path: &Path) -> Result<Vec<u8>, PackageError> {
    let meta = fs::metadata(path).map_err(|source| io_err(path, source))?;
    if meta.is_dir() {
        zip_dir(path)
    } else if meta.is_file() {
        let bytes = fs::read(path).map_err(|source| io_err(path, source))?;
        if bytes.starts_with(ZIP_SIGNATURE) {
            Ok(bytes)
        } else {
            Err(PackageError::NotZip {
                path: path.to_owned(),
            })
        }
    } else {
        Err(PackageError::Unsupported {
            path: path.to_owned(),
        })
    }
}

/// One file to pack: where its bytes are and its name in the archive.
struct Entry {
    source: PathBuf,
    name: String,
    mode: u32,
}

fn zip_dir(dir: &Path) -> Result<Vec<u8>, PackageError> {
    let root = fs::canonicalize(dir).map_err(|source| io_err(dir, source))?;
    let mut entries = Vec::new();
    collect(&root, &root, "", &mut entries)?;
    if entries.is_empty() {
        return Err(PackageError::Empty {
            path: dir.to_owned(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));

    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for entry in &entries {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(DateTime::default())
            .unix_permissions(entry.mode);
        let bytes = fs::read(&entry.source).map_err(|source| io_err(&entry.source, source))?;
        zip.start_file(entry.name.as_str(), options)?;
        zip.write_all(&bytes)
            .map_err(|e| PackageError::Zip(zip::result::ZipError::Io(e)))?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Walks `dir` (below `root`), adding every file to `out` with its `/`-separated name
/// relative to `root`.
fn collect(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Entry>,
) -> Result<(), PackageError> {
    let read = fs::read_dir(dir).map_err(|source| io_err(dir, source))?;
    for item in read {
        let item = item.map_err(|source| io_err(dir, source))?;
        let path = item.path();
        let Some(file_name) = item.file_name().to_str().map(str::to_owned) else {
            return Err(PackageError::NonUtf8Name { path });
        };
        let name = format!("{prefix}{file_name}");
        let file_type = item.file_type().map_err(|source| io_err(&path, source))?;

        if file_type.is_dir() {
            if !SKIPPED_DIRS.contains(&file_name.as_str()) {
                collect(root, &path, &format!("{name}/"), out)?;
            }
        } else if skipped_file(&file_name) {
            continue;
        } else if file_type.is_symlink() {
            let source = symlink_target(root, &path)?;
            let mode = file_mode(&source)?;
            out.push(Entry { source, name, mode });
        } else if file_type.is_file() {
            let mode = file_mode(&path)?;
            out.push(Entry {
                source: path,
                name,
                mode,
            });
        }
        // Sockets, FIFOs and devices have no place in a code package: they are skipped.
    }
    Ok(())
}

fn skipped_file(file_name: &str) -> bool {
    Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SKIPPED_EXTENSIONS.contains(&e))
}

/// The file a symlink inside `root` stands for, when it is a regular file inside `root`.
fn symlink_target(root: &Path, link: &Path) -> Result<PathBuf, PackageError> {
    let refuse = |reason: &str| PackageError::Symlink {
        path: link.to_owned(),
        reason: reason.to_owned(),
    };
    let target = fs::canonicalize(link).map_err(|_| refuse("its target does not exist"))?;
    if !target.starts_with(root) {
        return Err(refuse(&format!(
            "it points to {}, outside {}",
            target.display(),
            root.display()
        )));
    }
    let meta = fs::metadata(&target).map_err(|source| io_err(&target, source))?;
    if !meta.is_file() {
        return Err(refuse("it does not point to a regular file"));
    }
    Ok(target)
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Result<u32, PackageError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| io_err(path, source))?;
    // Only whether the file is executable matters in the sandbox (a `bootstrap` must be);
    // normalising the rest keeps archives identical across umasks.
    Ok(if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    })
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> Result<u32, PackageError> {
    Ok(0o644)
}

fn io_err(path: &Path, source: std::io::Error) -> PackageError {
    PackageError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn names(zip: &[u8]) -> Vec<String> {
        let archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        archive.file_names().map(str::to_owned).collect::<Vec<_>>()
    }

    fn read_entry(zip: &[u8], name: &str) -> String {
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        let mut s = String::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    #[test]
    fn directory_is_zipped_with_relative_names_and_caches_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "handler.py", "def handler(e, c): return e\n");
        write(dir.path(), "lib/util.py", "X = 1\n");
        write(dir.path(), "lib/deep/data.json", "{}");
        write(dir.path(), "__pycache__/handler.cpython-311.pyc", "junk");
        write(dir.path(), "lib/__pycache__/util.pyc", "junk");
        write(dir.path(), "lib/stale.pyc", "junk");
        write(dir.path(), ".git/HEAD", "ref: refs/heads/main");
        fs::create_dir_all(dir.path().join("empty")).unwrap();

        let zip = zip_path(dir.path()).unwrap();
        let mut got = names(&zip);
        got.sort();
        assert_eq!(got, ["handler.py", "lib/deep/data.json", "lib/util.py"]);
        assert_eq!(read_entry(&zip, "lib/util.py"), "X = 1\n");
    }

    #[test]
    fn zipping_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.py", "b");
        write(dir.path(), "a.py", "a");
        write(dir.path(), "sub/c.py", "c");
        let first = zip_path(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        write(dir.path(), "a.py", "a"); // new mtime, same content
        assert_eq!(zip_path(dir.path()).unwrap(), first);
        assert_eq!(names(&first), ["a.py", "b.py", "sub/c.py"]);
    }

    #[cfg(unix)]
    #[test]
    fn executable_bit_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bootstrap", "#!/bin/sh\n");
        write(dir.path(), "data.txt", "x");
        fs::set_permissions(
            dir.path().join("bootstrap"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let zip = zip_path(dir.path()).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(
            archive.by_name("bootstrap").unwrap().unix_mode(),
            Some(0o100755)
        );
        assert_eq!(
            archive.by_name("data.txt").unwrap().unix_mode(),
            Some(0o100644)
        );
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "__pycache__/x.pyc", "junk");
        let err = zip_path(dir.path()).unwrap_err();
        assert!(matches!(err, PackageError::Empty { .. }), "{err}");
        assert!(err.to_string().ends_with("contains no files to package"));
    }

    #[test]
    fn zip_file_passes_through() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/handler.py", "x");
        let zip = zip_path(&dir.path().join("src")).unwrap();
        let file = dir.path().join("code.zip");
        fs::write(&file, &zip).unwrap();
        assert_eq!(zip_path(&file).unwrap(), zip);
    }

    #[test]
    fn non_zip_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "handler.py", "def handler(e, c): pass\n");
        let err = zip_path(&dir.path().join("handler.py")).unwrap_err();
        assert!(matches!(err, PackageError::NotZip { .. }));
        assert!(err.to_string().contains("handler.py is not a zip archive"));
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let err = zip_path(Path::new("/nonexistent/skyscale-pkg")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/skyscale-pkg: "),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_are_packed_and_outside_refused() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "secret");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "handler.py", "h");
        symlink(dir.path().join("handler.py"), dir.path().join("alias.py")).unwrap();
        let zip = zip_path(dir.path()).unwrap();
        assert_eq!(names(&zip), ["alias.py", "handler.py"]);
        assert_eq!(read_entry(&zip, "alias.py"), "h");

        symlink(
            outside.path().join("secret.txt"),
            dir.path().join("leak.txt"),
        )
        .unwrap();
        let err = zip_path(dir.path()).unwrap_err();
        assert!(matches!(err, PackageError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("outside"), "{err}");
    }
}
