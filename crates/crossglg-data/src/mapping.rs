//! Joint mappings between skeleton layouts, so a sequence from one layout (COCO-17,
//! MediaPipe-33, ...) can feed a model trained on another (NTU-25).
//!
//! A mapping file is TOML:
//!
//! ```toml
//! source = "coco17"
//! target = "ntu25"
//! [joints]
//! left_shoulder = "left_shoulder"                              # copy one joint
//! spine_base = ["left_hip", "right_hip"]                       # average of several
//! # target joints not listed are missing and stay zero
//! ```
//!
//! ```
//! use crossglg_data::Skeleton;
//! use crossglg_data::mapping::{map_skeleton, Mapping};
//!
//! let m = Mapping::load("coco17_to_ntu25").unwrap();
//! let coco = Skeleton::zeros(1, 30, 17, 3);
//! let ntu = map_skeleton(&coco, &m).unwrap();
//! assert_eq!(ntu.shape(), [1, 30, 25, 3]);
//! ```
//!
//! Averages skip source joints that are missing in a frame (all coordinates zero, the
//! convention for absent joints); when all are missing the target joint is zero too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Layout, Skeleton};
use serde::{Deserialize, Serialize};

/// Mapping files shipped with crossglg: (name, TOML text).
pub const BUILTIN_MAPPINGS: &[(&str, &str)] = &[
    (
        "body25_to_ntu25",
        include_str!("../mappings/body25_to_ntu25.toml"),
    ),
    (
        "coco17_to_ntu25",
        include_str!("../mappings/coco17_to_ntu25.toml"),
    ),
    (
        "mediapipe33_to_ntu25",
        include_str!("../mappings/mediapipe33_to_ntu25.toml"),
    ),
    (
        "openpose18_to_ntu25",
        include_str!("../mappings/openpose18_to_ntu25.toml"),
    ),
    (
        "h36m17_to_ntu25",
        include_str!("../mappings/h36m17_to_ntu25.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mapping {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("mapping {origin}: {source}")]
    Layout {
        origin: String,
        source: crate::LayoutError,
    },
    #[error(
        "skeleton has {found} joints but the mapping's source layout `{layout}` has {expected}"
    )]
    JointCount {
        layout: String,
        expected: usize,
        found: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JointSource {
    One(String),
    Average(Vec<String>),
}

/// The on-disk form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// Source layout: a built-in name or a path to a layout TOML file.
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub description: String,
    pub joints: BTreeMap<String, JointSource>,
}

/// A mapping resolved against its two layouts: for each target joint, the source joints to
/// average (empty: missing, stays zero).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub source: Layout,
    pub target: Layout,
    pub sources: Vec<Vec<usize>>,
}

impl MappingFile {
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, MappingError> {
        toml::from_str(text).map_err(|e| MappingError::Invalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }
}

impl Mapping {
    /// A shipped mapping by name (`coco17_to_ntu25`, `mediapipe33_to_ntu25`) or a mapping TOML
    /// file by path; its layouts are loaded with [`Layout::load`].
    pub fn load(name_or_path: &str) -> Result<Self, MappingError> {
        if let Some((_, text)) = BUILTIN_MAPPINGS.iter().find(|(n, _)| *n == name_or_path) {
            let origin = format!("built-in `{name_or_path}`");
            let file = MappingFile::from_toml_str(text, &origin)?;
            return Self::from_file_layouts(&file, &origin, None);
        }
        let path = Path::new(name_or_path);
        let text = crate::bounded::read_to_string(path, crate::bounded::SMALL_FILE_BYTES).map_err(
            |source| MappingError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let origin = path.display().to_string();
        let file = MappingFile::from_toml_str(&text, &origin)?;
        Self::from_file_layouts(&file, &origin, Some(path))
    }

    /// Resolves the file's layouts: built-in names, or (for a mapping read from `path`) layout
    /// files beside it.
    fn from_file_layouts(
        file: &MappingFile,
        origin: &str,
        path: Option<&Path>,
    ) -> Result<Self, MappingError> {
        let layout = |n: &str| {
            match path {
                Some(p) => Layout::load_named_in(n, p),
                None => Layout::builtin(n),
            }
            .map_err(|source| MappingError::Layout {
                origin: origin.to_string(),
                source,
            })
        };
        Self::resolve(file, &layout(&file.source)?, &layout(&file.target)?, origin)
    }

    /// Checks every joint name against the layouts; `origin` names the file in errors.
    pub fn resolve(
        file: &MappingFile,
        source: &Layout,
        target: &Layout,
        origin: &str,
    ) -> Result<Self, MappingError> {
        let invalid = |message: String| MappingError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut sources = vec![Vec::new(); target.num_joints()];
        for (t, src) in &file.joints {
            let ti = target.joint_index(t).ok_or_else(|| {
                invalid(format!(
                    "target joint `{t}` is not in layout `{}`",
                    target.name
                ))
            })?;
            let names: Vec<&String> = match src {
                JointSource::One(s) => vec![s],
                JointSource::Average(v) => v.iter().collect(),
            };
            for s in names {
                let si = source.joint_index(s).ok_or_else(|| {
                    invalid(format!(
                        "source joint `{s}` (for target `{t}`) is not in layout `{}`",
                        source.name
                    ))
                })?;
                sources[ti].push(si);
            }
        }
        Ok(Mapping {
            source: source.clone(),
            target: target.clone(),
            sources,
        })
    }

    /// The joint-for-joint mapping between two layouts that name the same joints, in any
    /// order (NW-UCLA's and MSR Action3D's Kinect v1 skeletons), so data of one can join data
    /// of the other. `None` when the joint names differ: a real mapping file is needed then.
    pub fn by_name(source: &Layout, target: &Layout) -> Option<Self> {
        if source.num_joints() != target.num_joints() {
            return None;
        }
        let sources = target
            .joints
            .iter()
            .map(|j| source.joint_index(j).map(|i| vec![i]))
            .collect::<Option<Vec<_>>>()?;
        Some(Mapping {
            source: source.clone(),
            target: target.clone(),
            sources,
        })
    }

    /// For a joint-for-joint mapping (every target joint from exactly one source joint, each
    /// source joint used once), the source index of each target joint.
    pub fn permutation(&self) -> Option<Vec<usize>> {
        let perm: Vec<usize> = self
            .sources
            .iter()
            .map(|s| match s.as_slice() {
                [i] => Some(*i),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let mut seen = vec![false; self.source.num_joints()];
        for &i in &perm {
            if std::mem::replace(&mut seen[i], true) {
                return None;
            }
        }
        (perm.len() == self.source.num_joints()).then_some(perm)
    }

    /// Target joints with no source (they stay zero).
    pub fn missing(&self) -> Vec<&str> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_empty())
            .map(|(i, _)| self.target.joints[i].as_str())
            .collect()
    }
}

/// Re-expresses `sk` (in the mapping's source layout) in its target layout; persons, frames
/// and channels are kept.
pub fn map_skeleton(sk: &Skeleton, mapping: &Mapping) -> Result<Skeleton, MappingError> {
    if sk.joints != mapping.source.num_joints() {
        return Err(MappingError::JointCount {
            layout: mapping.source.name.clone(),
            expected: mapping.source.num_joints(),
            found: sk.joints,
        });
    }
    let v_out = mapping.target.num_joints();
    let mut out = Skeleton::zeros(sk.persons, sk.frames, v_out, sk.channels);
    for m in 0..sk.persons {
        for t in 0..sk.frames {
            for (tv, srcs) in mapping.sources.iter().enumerate() {
                let mut n = 0usize;
                let mut acc = vec![0f32; sk.channels];
                for &sv in srcs {
                    let base = sk.index(m, t, sv, 0);
                    let p = &sk.data[base..base + sk.channels];
                    if p.iter().any(|&x| x != 0.0) {
                        acc.iter_mut().zip(p).for_each(|(a, &x)| *a += x);
                        n += 1;
                    }
                }
                if n > 0 {
                    for (c, a) in acc.iter().enumerate() {
                        out.set(m, t, tv, c, a / n as f32);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(name: &str, joints: &[&str]) -> Layout {
        let j: Vec<String> = joints.iter().map(|s| format!("'{s}'")).collect();
        let text = format!(
            "name='{name}'\ncenter='{}'\njoints=[{}]\nedges=[]\n",
            joints[0],
            j.join(",")
        );
        Layout::from_toml_str(&text, name).unwrap()
    }

    #[test]
    fn averages_skip_missing_joints() {
        let src = tiny("s", &["a", "b", "c"]);
        let tgt = tiny("t", &["x", "y", "z"]);
        let file = MappingFile::from_toml_str(
            "source='s'\ntarget='t'\n[joints]\nx='c'\ny=['a','b']\n",
            "m.toml",
        )
        .unwrap();
        let m = Mapping::resolve(&file, &src, &tgt, "m.toml").unwrap();
        assert_eq!(m.missing(), vec!["z"]);
        let mut sk = Skeleton::zeros(1, 2, 3, 2);
        // frame 0: a=(1,1) b=(3,3) c=(5,0); frame 1: a missing, b=(2,4)
        for (t, v, c, x) in [
            (0, 0, 0, 1.),
            (0, 0, 1, 1.),
            (0, 1, 0, 3.),
            (0, 1, 1, 3.),
            (0, 2, 0, 5.),
        ] {
            sk.set(0, t, v, c, x);
        }
        sk.set(0, 1, 1, 0, 2.0);
        sk.set(0, 1, 1, 1, 4.0);
        let out = map_skeleton(&sk, &m).unwrap();
        assert_eq!(out.frame(0, 0), &[5., 0., 2., 2., 0., 0.]);
        assert_eq!(out.frame(0, 1), &[0., 0., 2., 4., 0., 0.]);
    }

    #[test]
    fn unknown_joint_is_named_with_file() {
        let src = tiny("s", &["a"]);
        let tgt = tiny("t", &["x"]);
        let file =
            MappingFile::from_toml_str("source='s'\ntarget='t'\n[joints]\nx='q'\n", "m.toml")
                .unwrap();
        let e = Mapping::resolve(&file, &src, &tgt, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.toml") && e.contains("`q`"), "{e}");
    }
}
