//! The workspace's one atomic writer: every file the project writes goes through here. A
//! temporary file is created beside the target (`tempfile`, so concurrent writers never share
//! one), filled, synced, renamed over the target, and the folder is synced so the rename itself
//! survives a crash. A reader never sees half a file, and an interrupted write leaves the old
//! file intact and no temporary file behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failure of the atomic machinery itself (not of the caller's writing), naming the target.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}: {source}")]
pub struct AtomicError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl AtomicError {
    fn new<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<AtomicError> for std::io::Error {
    fn from(e: AtomicError) -> Self {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temporary file beside `path` (created with the folder if needed), named
/// `.NAME.XXXXXX.EXT`: hidden, and with the target's extension, which some writers (image
/// encoders) read the format from.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile, AtomicError> {
    let dir = folder_of(path);
    std::fs::create_dir_all(dir).map_err(AtomicError::new("create the folder of", path))?;
    let name = path.file_name().ok_or_else(|| AtomicError {
        action: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other("the path has no file name"),
    })?;
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(&suffix);
    // tempfile creates 0600 files; outputs are ordinary files others may read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o644));
    }
    b.tempfile_in(dir)
        .map_err(AtomicError::new("create a temporary file beside", path))
}

/// Removes the temporary files an interrupted writer (a killed process) left in `dir`:
/// `.NAME.XXXXXX.EXT`, the name this writer gives them, whose extension matches NAME's.
/// Returns how many were removed. For folders the project owns (run directories).
pub fn clean_leftovers(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_leftover(name) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `.TARGET.XXXXXX` or `.TARGET.XXXXXX.EXT` where EXT is TARGET's extension.
fn is_leftover(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let random = |s: &str| s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric());
    // without an extension: TARGET has none either
    if let Some((target, r)) = rest.rsplit_once('.') {
        if random(r) && !target.is_empty() && Path::new(target).extension().is_none() {
            return true;
        }
    }
    // with one: `.TARGET.XXXXXX.EXT`, TARGET ending in `.EXT`
    let Some((head, ext)) = rest.rsplit_once('.') else {
        return false;
    };
    let Some((target, r)) = head.rsplit_once('.') else {
        return false;
    };
    random(r) && target.ends_with(&format!(".{ext}")) && target.len() > ext.len() + 1
}

/// Syncs the temporary file's contents, renames it over `path` and syncs the folder.
fn commit(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), AtomicError> {
    // Reopened: the caller may have written through its own handle to the temporary path.
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(AtomicError::new("sync the temporary file of", path))?;
    tmp.persist(path)
        .map_err(|e| AtomicError::new("rename into", path)(e.error))?;
    sync_folder(folder_of(path)).map_err(AtomicError::new("sync the folder of", path))
}

#[cfg(unix)]
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_dir: &Path) -> std::io::Result<()> {
    // Folders cannot be opened for syncing on Windows; the rename is durable there once the
    // file is.
    Ok(())
}

/// Lets `write` fill a temporary file at the path it is given, then commits it over `path`.
/// On any error the temporary file is removed and `path` is untouched. Errors of the machinery
/// itself arrive as [`AtomicError`], converted into the caller's error type.
pub fn write_atomic_with<E: From<AtomicError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temp_beside(path)?;
    write(tmp.path())?;
    commit(tmp, path)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
    })?;
    commit(tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_recognised_and_only_they() {
        assert!(is_leftover(".last.safetensors.a1B2c3.safetensors"));
        assert!(is_leftover(".metrics.jsonl.Zz09aa.jsonl"));
        assert!(is_leftover(".LOCK.abcdef"));
        assert!(!is_leftover("last.safetensors"));
        assert!(!is_leftover(".gitignore"));
        assert!(!is_leftover(".last.safetensors.toolong1.safetensors"));
        assert!(!is_leftover(".a.b1c2d3.json"));
        let d = tempfile::tempdir().unwrap();
        let keep = d.path().join("config.toml");
        std::fs::write(&keep, "x").unwrap();
        std::fs::write(d.path().join(".config.toml.q1w2e3.toml"), "half").unwrap();
        assert_eq!(clean_leftovers(d.path()).unwrap(), 1);
        assert_eq!(clean_leftovers(d.path()).unwrap(), 0);
        assert!(keep.exists());
    }

    #[test]
    fn replaces_whole_file_and_cleans_up_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let e = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary file left behind");
    }

    #[test]
    fn temporary_keeps_the_extension_and_output_is_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pic.png");
        let mut seen = None;
        write_atomic_with(&p, |tmp| {
            seen = Some(tmp.to_path_buf());
            std::fs::write(tmp, b"x")
        })
        .unwrap();
        let seen = seen.unwrap();
        assert_eq!(seen.extension().unwrap(), "png");
        assert!(seen
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".pic.png."));
        assert!(!seen.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn errors_name_the_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), b"x").unwrap();
        let p = dir.path().join("blocker/out.json");
        let e = write_atomic(&p, b"{}").unwrap_err().to_string();
        assert!(e.contains("blocker/out.json"), "{e}");
    }
}
