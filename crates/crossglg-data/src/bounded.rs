//! Reading a file whole, safely: only regular files (a device such as `/dev/zero` or a FIFO
//! would read forever or block), and never more than a cap (a file that grows while it is read
//! stops at the cap). Every reader of the workspace that takes a whole file goes through here.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Cap for configuration-sized files: TOML, JSON, CSV manifests, class lists, descriptions.
pub const SMALL_FILE_BYTES: u64 = 64 << 20;
/// Cap for data files: skeleton files, `.npy` arrays, pyskl pickles (NTU-120's 3-D pickle is
/// about 4 GB), safetensors.
pub const DATA_FILE_BYTES: u64 = 16 << 30;

/// The bytes of the regular file at `path`, at most `cap` of them (more is an error of kind
/// `FileTooLarge`; not a regular file is `InvalidInput`).
pub fn read(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_large = |n: u64| {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("{n} bytes or more; at most {cap} are read"),
        )
    };
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

/// [`read`] as UTF-8 text (a leading byte-order mark is dropped).
pub fn read_to_string(path: &Path, cap: u64) -> std::io::Result<String> {
    let bytes = read(path, cap)?;
    let mut s = String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))?;
    if s.starts_with('\u{feff}') {
        s.drain(..3);
    }
    Ok(s)
}

/// `file`, a path named inside a data file (a manifest row, a description's layout), resolved
/// inside `dir`: relative, without `..`, and after resolving symbolic links still inside `dir`
/// and a regular file; a file that does not exist is returned as is, for its reader to report.
/// Such files are data from elsewhere: without this, an entry could read any file the user can
/// (`../x`, `/etc/…`) or a device that never ends (`/dev/zero`).
pub fn confined(dir: &Path, file: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let rel = Path::new(file);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("must be a path inside the folder (no `..`, not absolute)".into());
    }
    let joined = dir.join(rel);
    let real = match joined.canonicalize() {
        Ok(r) => r,
        // a missing file is the reader's to report (and skip, unless strict)
        Err(_) if !joined.exists() && joined.symlink_metadata().is_err() => return Ok(joined),
        Err(e) => return Err(format!("cannot be opened: {e}")),
    };
    let root = dir
        .canonicalize()
        .map_err(|e| format!("its folder cannot be opened: {e}"))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "leads outside the folder (to {}) through a link",
            real.display()
        ));
    }
    if !real.is_file() {
        return Err("is not a regular file".into());
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_and_caps_size() {
        let e = read(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"\xef\xbb\xbfhello").unwrap();
        assert_eq!(read_to_string(&p, 100).unwrap(), "hello");
        let e = read(&p, 4).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(read(dir.path(), 100).is_err());
    }
}
