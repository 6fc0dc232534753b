//! The one file layer for every safetensors file the project writes: packed datasets, text
//! banks, galleries, base statistics and checkpoints. Each carries its kind and version in the
//! metadata key `format` (`crossglg-<kind>/<version>`), so a reader can say exactly what a file
//! is when it is not what was expected, and a newer file is refused with a clear message rather
//! than misread. Files written before this layer carried older spellings of the same tag; they
//! keep loading (see [`LEGACY`]).
//!
//! Writing goes through the workspace's atomic writer. Reading checks the tag, then hands out
//! metadata entries and f32 / i64 tensors with errors that name the file and the key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::atomic::write_atomic;

/// The metadata key holding `crossglg-<kind>/<version>`.
pub const FORMAT_KEY: &str = "format";

/// Tags of files written before this layer, as `(tag, kind, version)`. Galleries kept theirs in
/// a JSON header instead; their reader recognises that form itself.
pub const LEGACY: &[(&str, &str, u32)] = &[
    ("crossglg.base_stats.v1", "base-stats", 1),
    ("crossglg-packed", "packed", 1),
];

#[derive(Debug, thiserror::Error)]
pub enum TaggedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {message}")]
    NotSafetensors { path: PathBuf, message: String },
    #[error("{path} is not a crossglg {expected} file ({found})")]
    Kind {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("{path} is a {kind} file of version {found}, newer than this build reads (up to {max}); update crossglg, or re-run the command that wrote it with this one")]
    Version {
        path: PathBuf,
        kind: &'static str,
        found: u32,
        max: u32,
    },
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
}

/// The tag of `kind` at `version`.
pub fn format_tag(kind: &str, version: u32) -> String {
    format!("crossglg-{kind}/{version}")
}

/// `(kind, version)` of a tag, current or legacy.
fn parse_tag(tag: &str) -> Option<(String, u32)> {
    if let Some(&(_, kind, v)) = LEGACY.iter().find(|(t, _, _)| *t == tag) {
        return Some((kind.to_string(), v));
    }
    let rest = tag.strip_prefix("crossglg-")?;
    let (kind, v) = rest.rsplit_once('/')?;
    Some((kind.to_string(), v.parse().ok()?))
}

/// Checks that `meta` tags a `kind` file this build reads (version 1 ..= `max_version`) and
/// returns its version.
pub fn check_tag(
    path: &Path,
    meta: &HashMap<String, String>,
    kind: &'static str,
    max_version: u32,
) -> Result<u32, TaggedError> {
    let found = match meta.get(FORMAT_KEY) {
        None => "it has no `format` metadata".to_string(),
        Some(tag) => match parse_tag(tag) {
            Some((k, v)) if k == kind => {
                if v == 0 || v > max_version {
                    return Err(TaggedError::Version {
                        path: path.to_path_buf(),
                        kind,
                        found: v,
                        max: max_version,
                    });
                }
                return Ok(v);
            }
            Some((k, v)) => format!("it is a {k} file, version {v}"),
            None => format!("its format is `{tag}`"),
        },
    };
    Err(TaggedError::Kind {
        path: path.to_path_buf(),
        expected: kind,
        found,
    })
}

/// An owned f32 or i64 tensor to write.
pub struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Owned {
    pub fn f32(shape: Vec<usize>, data: &[f32]) -> Self {
        Owned {
            dtype: Dtype::F32,
            shape,
            bytes: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn i64(shape: Vec<usize>, data: &[i64]) -> Self {
        Owned {
            dtype: Dtype::I64,
            shape,
            bytes: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Writes a tagged file of `kind` at `version` atomically: `meta` plus the tag, and `tensors`
/// (any safetensors view: [`Owned`], or a candle `Tensor`).
pub fn write<V: safetensors::View>(
    path: &Path,
    kind: &str,
    version: u32,
    mut meta: HashMap<String, String>,
    tensors: Vec<(String, V)>,
) -> Result<(), TaggedError> {
    meta.insert(FORMAT_KEY.into(), format_tag(kind, version));
    let data = safetensors::serialize(tensors, Some(meta)).map_err(|e| TaggedError::Content {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, &data).map_err(|source| TaggedError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes [`Owned`] tensors (see [`write`]).
pub fn write_owned(
    path: &Path,
    kind: &str,
    version: u32,
    meta: HashMap<String, String>,
    tensors: Vec<(&str, Owned)>,
) -> Result<(), TaggedError> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map_err(|e| {
            TaggedError::Content {
                path: path.to_path_buf(),
                message: format!("tensor `{name}`: {e}"),
            }
        })?;
        views.push((name.to_string(), view));
    }
    write(path, kind, version, meta, views)
}

/// A tagged file read into memory, its tag checked.
pub struct TaggedFile {
    pub path: PathBuf,
    pub version: u32,
    pub meta: HashMap<String, String>,
    bytes: Vec<u8>,
}

impl TaggedFile {
    /// Reads `path`, which must be a `kind` file of version 1 ..= `max_version`.
    pub fn read(path: &Path, kind: &'static str, max_version: u32) -> Result<Self, TaggedError> {
        let bytes =
            crate::bounded::read(path, crate::bounded::DATA_FILE_BYTES).map_err(|source| {
                TaggedError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Self::from_bytes(path, bytes, kind, max_version)
    }

    /// As [`TaggedFile::read`], for bytes already read (`path` names them in errors).
    pub fn from_bytes(
        path: &Path,
        bytes: Vec<u8>,
        kind: &'static str,
        max_version: u32,
    ) -> Result<Self, TaggedError> {
        Self::from_bytes_or_legacy(path, bytes, kind, max_version, |_| None)
    }

    /// As [`TaggedFile::from_bytes`], for a kind whose files from before this layer kept their
    /// tag elsewhere: when the metadata has no `format` entry, `legacy` may recognise such a
    /// file from its metadata and give its version.
    pub fn from_bytes_or_legacy(
        path: &Path,
        bytes: Vec<u8>,
        kind: &'static str,
        max_version: u32,
        legacy: impl Fn(&HashMap<String, String>) -> Option<u32>,
    ) -> Result<Self, TaggedError> {
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| TaggedError::NotSafetensors {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let meta = header.metadata().clone().unwrap_or_default();
        let version = match (meta.contains_key(FORMAT_KEY), legacy(&meta)) {
            (false, Some(v)) => v,
            _ => check_tag(path, &meta, kind, max_version)?,
        };
        Ok(TaggedFile {
            path: path.to_path_buf(),
            version,
            meta,
            bytes,
        })
    }

    /// The whole file, e.g. for candle's `safetensors::load_buffer`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// An error about this file's content.
    pub fn content_err(&self, message: impl Into<String>) -> TaggedError {
        TaggedError::Content {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// A metadata entry that must be present.
    pub fn meta_str(&self, key: &str) -> Result<&str, TaggedError> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.content_err(format!("metadata `{key}` is missing")))
    }

    /// A metadata entry holding JSON.
    pub fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, TaggedError> {
        serde_json::from_str(self.meta_str(key)?)
            .map_err(|e| self.content_err(format!("metadata `{key}`: {e}")))
    }

    /// Every metadata entry, sorted.
    pub fn meta_sorted(&self) -> BTreeMap<String, String> {
        self.meta.clone().into_iter().collect()
    }

    /// Tensor `name`, checked to be `dtype` of `rank`, its little-endian elements of
    /// `N` bytes converted by `from`.
    fn tensor<T, const N: usize>(
        &self,
        name: &str,
        dtype: Dtype,
        rank: usize,
        from: fn([u8; N]) -> T,
    ) -> Result<(Vec<usize>, Vec<T>), TaggedError> {
        let st =
            SafeTensors::deserialize(&self.bytes).map_err(|e| TaggedError::NotSafetensors {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let t = st
            .tensor(name)
            .map_err(|e| self.content_err(format!("tensor `{name}`: {e}")))?;
        if t.dtype() != dtype || t.shape().len() != rank {
            return Err(self.content_err(format!(
                "tensor `{name}` is {:?} {:?}, expected {dtype:?} of rank {rank}",
                t.dtype(),
                t.shape()
            )));
        }
        let values = t
            .data()
            .chunks_exact(N)
            .map(|c| from(c.try_into().expect("chunks of N bytes")))
            .collect();
        Ok((t.shape().to_vec(), values))
    }

    /// An f32 tensor of the given rank: its shape and values.
    pub fn f32(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>), TaggedError> {
        self.tensor(name, Dtype::F32, rank, f32::from_le_bytes)
    }

    /// An i64 tensor of the given rank: its shape and values.
    pub fn i64(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<i64>), TaggedError> {
        self.tensor(name, Dtype::I64, rank, i64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        let meta = HashMap::from([("classes".to_string(), "[\"a\",\"b\"]".to_string())]);
        write_owned(
            &p,
            "thing",
            2,
            meta,
            vec![
                ("w", Owned::f32(vec![2, 3], &[0., 1., 2., 3., 4., 5.])),
                ("n", Owned::i64(vec![2], &[7, -1])),
            ],
        )
        .unwrap();
        let f = TaggedFile::read(&p, "thing", 2).unwrap();
        assert_eq!(f.version, 2);
        assert_eq!(f.meta_str(FORMAT_KEY).unwrap(), "crossglg-thing/2");
        let classes: Vec<String> = f.meta_json("classes").unwrap();
        assert_eq!(classes, ["a", "b"]);
        assert_eq!(
            f.f32("w", 2).unwrap(),
            (vec![2, 3], vec![0., 1., 2., 3., 4., 5.])
        );
        assert_eq!(f.i64("n", 1).unwrap(), (vec![2], vec![7, -1]));

        let e = |r: Result<TaggedFile, TaggedError>| r.err().unwrap().to_string();
        // Newer than this build reads.
        let m = e(TaggedFile::read(&p, "thing", 1));
        assert!(
            m.contains("x.safetensors") && m.contains("version 2") && m.contains("up to 1"),
            "{m}"
        );
        // Another kind.
        let m = e(TaggedFile::read(&p, "gallery", 1));
        assert!(
            m.contains("not a crossglg gallery") && m.contains("thing file"),
            "{m}"
        );
        // Missing keys and tensors, wrong dtype or rank.
        let m = f.meta_str("nope").unwrap_err().to_string();
        assert!(m.contains("x.safetensors") && m.contains("`nope`"), "{m}");
        assert!(f
            .f32("missing", 1)
            .unwrap_err()
            .to_string()
            .contains("`missing`"));
        assert!(f
            .f32("n", 1)
            .unwrap_err()
            .to_string()
            .contains("expected F32"));
        assert!(f.f32("w", 3).unwrap_err().to_string().contains("rank 3"));
        // Not safetensors at all.
        std::fs::write(&p, b"hello").unwrap();
        assert!(e(TaggedFile::read(&p, "thing", 1)).contains("not a safetensors file"));
        // A missing file.
        assert!(e(TaggedFile::read(&dir.path().join("none"), "thing", 1)).contains("cannot read"));
    }

    #[test]
    fn legacy_tags_still_read() {
        let meta = |t: &str| HashMap::from([(FORMAT_KEY.to_string(), t.to_string())]);
        let p = Path::new("old.safetensors");
        assert_eq!(
            check_tag(p, &meta("crossglg.base_stats.v1"), "base-stats", 1).unwrap(),
            1
        );
        assert_eq!(
            check_tag(p, &meta("crossglg-packed"), "packed", 1).unwrap(),
            1
        );
        assert_eq!(
            check_tag(p, &meta("crossglg-textbank/1"), "textbank", 1).unwrap(),
            1
        );
        let m = check_tag(p, &HashMap::new(), "textbank", 1)
            .unwrap_err()
            .to_string();
        assert!(m.contains("no `format` metadata"), "{m}");
        let m = check_tag(p, &meta("something-else"), "textbank", 1)
            .unwrap_err()
            .to_string();
        assert!(m.contains("`something-else`"), "{m}");
    }
}
