//! Skeleton layouts as data: joint names, bone edges, a centre joint, left/right sides and
//! body parts. Built-in layouts are TOML files compiled into the binary; users add their own
//! with a file of the same shape (`Layout::from_toml_file`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sample::Skeleton;

/// Names of the layouts shipped with crossglg, in the order `crossglg` lists them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("ntu25", include_str!("../layouts/ntu25.toml")),
    ("nwucla20", include_str!("../layouts/nwucla20.toml")),
    ("msr20", include_str!("../layouts/msr20.toml")),
    ("coco17", include_str!("../layouts/coco17.toml")),
    ("mediapipe33", include_str!("../layouts/mediapipe33.toml")),
    ("body25", include_str!("../layouts/body25.toml")),
    ("openpose18", include_str!("../layouts/openpose18.toml")),
    ("h36m17", include_str!("../layouts/h36m17.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("unknown layout `{0}` (built-in: {list}); pass a path to a layout TOML file to use your own", list = builtin_names().join(", "))]
    Unknown(String),
    #[error("cannot read layout file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("layout {origin}: {message}")]
    Invalid { origin: String, message: String },
    /// A layout named inside another file that leads outside that file's folder.
    #[error(
        "{file}: layout `{value}` {message}; name a built-in layout or a layout file beside it"
    )]
    Named {
        file: PathBuf,
        value: String,
        message: String,
    },
}

/// The on-disk form: joints are referred to by name everywhere, so a file reads on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    name: String,
    #[serde(default)]
    description: String,
    center: String,
    joints: Vec<String>,
    edges: Vec<[String; 2]>,
    #[serde(default)]
    left: Vec<String>,
    #[serde(default)]
    right: Vec<String>,
    #[serde(default)]
    parts: BTreeMap<String, Vec<String>>,
}

/// A skeleton layout, resolved to joint indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub name: String,
    pub description: String,
    pub joints: Vec<String>,
    /// Bones as (child, parent) index pairs; together they form the graph the encoders use.
    pub edges: Vec<(usize, usize)>,
    pub center: usize,
    pub left: Vec<usize>,
    pub right: Vec<usize>,
    /// Body parts by name (head, torso, arms, hands, legs, feet), each a list of joint indices.
    pub parts: BTreeMap<String, Vec<usize>>,
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

impl Layout {
    /// A built-in layout by name, or a layout TOML file when `name_or_path` is a path to one.
    pub fn load(name_or_path: &str) -> Result<Self, LayoutError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_toml_str(text, &format!("built-in `{name_or_path}`"));
        }
        let p = Path::new(name_or_path);
        if p.extension().is_some_and(|e| e == "toml") || p.exists() {
            return Self::from_toml_file(p);
        }
        Err(LayoutError::Unknown(name_or_path.to_string()))
    }

    /// A layout named inside another file (a description file's `layout`): a built-in name,
    /// or a layout TOML file inside the folder of `file` (see [`crate::bounded::confined`]);
    /// a file's content must not make the program read elsewhere.
    pub fn load_named_in(value: &str, file: &Path) -> Result<Self, LayoutError> {
        if BUILTIN.iter().any(|(n, _)| *n == value) {
            return Self::builtin(value);
        }
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let p = crate::bounded::confined(dir, value).map_err(|m| LayoutError::Named {
            file: file.to_path_buf(),
            value: value.to_string(),
            message: m,
        })?;
        if !p.exists() {
            return Err(LayoutError::Unknown(value.to_string()));
        }
        Self::from_toml_file(&p)
    }

    /// How this layout's joints differ from `other`'s, briefly (`None` when they are the same
    /// joints in the same order, whatever the names of the layouts): a layout is its joints.
    pub fn joint_difference(&self, other: &Layout) -> Option<String> {
        let (a, b) = (&self.joints, &other.joints);
        if a == b {
            return None;
        }
        if a.len() != b.len() {
            return Some(format!("{} joints against {}", a.len(), b.len()));
        }
        let diff: Vec<String> = a
            .iter()
            .zip(b)
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .take(5)
            .map(|(i, (x, y))| format!("joint {i} is `{x}` against `{y}`"))
            .collect();
        Some(diff.join(", "))
    }

    pub fn builtin(name: &str) -> Result<Self, LayoutError> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Self::from_toml_str(text, &format!("built-in `{name}`")),
            None => Err(LayoutError::Unknown(name.to_string())),
        }
    }

    pub fn from_toml_file(path: &Path) -> Result<Self, LayoutError> {
        let text = crate::bounded::read_to_string(path, crate::bounded::SMALL_FILE_BYTES).map_err(
            |source| LayoutError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and checks a layout; `origin` names the file in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, LayoutError> {
        let invalid = |message: String| LayoutError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let file: LayoutFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.joints.is_empty() {
            return Err(invalid("has no joints".into()));
        }
        let mut index = BTreeMap::new();
        for (i, j) in file.joints.iter().enumerate() {
            if index.insert(j.as_str(), i).is_some() {
                return Err(invalid(format!("joint `{j}` is listed twice")));
            }
        }
        let idx = |name: &str, what: &str| {
            index
                .get(name)
                .copied()
                .ok_or_else(|| invalid(format!("{what} names unknown joint `{name}`")))
        };
        let edges = file
            .edges
            .iter()
            .map(|[a, b]| Ok((idx(a, "an edge")?, idx(b, "an edge")?)))
            .collect::<Result<Vec<_>, LayoutError>>()?;
        if let Some((a, _)) = edges.iter().find(|(a, b)| a == b) {
            return Err(invalid(format!(
                "edge joins `{}` to itself",
                file.joints[*a]
            )));
        }
        let list = |names: &[String], what: &str| {
            names
                .iter()
                .map(|n| idx(n, what))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut parts = BTreeMap::new();
        for (part, names) in &file.parts {
            parts.insert(part.clone(), list(names, &format!("part `{part}`"))?);
        }
        let left = list(&file.left, "`left`")?;
        let right = list(&file.right, "`right`")?;
        // `left[k]` and `right[k]` are mirror images of each other (see `mirror_permutation`).
        if left.len() != right.len() {
            return Err(invalid(format!(
                "`left` lists {} joints but `right` lists {}; they must pair up in order",
                left.len(),
                right.len()
            )));
        }
        let mut sided = vec![false; file.joints.len()];
        for &j in left.iter().chain(&right) {
            if std::mem::replace(&mut sided[j], true) {
                return Err(invalid(format!(
                    "joint `{}` appears more than once in `left`/`right`",
                    file.joints[j]
                )));
            }
        }
        Ok(Layout {
            center: idx(&file.center, "the center")?,
            left,
            right,
            name: file.name,
            description: file.description,
            joints: file.joints,
            edges,
            parts,
        })
    }

    pub fn num_joints(&self) -> usize {
        self.joints.len()
    }

    pub fn joint_index(&self, name: &str) -> Option<usize> {
        self.joints.iter().position(|j| j == name)
    }

    /// Checks that the edges form one tree over all joints (what the graph encoders assume).
    pub fn check_tree(&self) -> Result<(), LayoutError> {
        let n = self.joints.len();
        let invalid = |message: String| LayoutError::Invalid {
            origin: format!("`{}`", self.name),
            message,
        };
        if self.edges.len() + 1 != n {
            return Err(invalid(format!(
                "{} edges over {n} joints is not a tree (a tree has {})",
                self.edges.len(),
                n.saturating_sub(1)
            )));
        }
        // Union-find: n-1 edges without a cycle connect all n joints.
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        for &(a, b) in &self.edges {
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            if ra == rb {
                return Err(invalid(format!(
                    "edge `{}`-`{}` closes a cycle",
                    self.joints[a], self.joints[b]
                )));
            }
            parent[ra] = rb;
        }
        Ok(())
    }

    /// `p[i]` is the joint that joint `i` becomes in the mirror image (left and right swapped);
    /// joints on neither side map to themselves.
    pub fn mirror_permutation(&self) -> Vec<usize> {
        let mut p: Vec<usize> = (0..self.joints.len()).collect();
        for (&l, &r) in self.left.iter().zip(&self.right) {
            p[l] = r;
            p[r] = l;
        }
        p
    }

    /// The mirror image of a skeleton in this layout, for augmentation: left and right joints
    /// swap places and channel `flip_channel` (the horizontal axis, usually 0 = x) is negated.
    /// Returns `None` if the skeleton has a different joint count than the layout.
    pub fn mirror(&self, skeleton: &Skeleton, flip_channel: Option<usize>) -> Option<Skeleton> {
        if skeleton.joints != self.joints.len() {
            return None;
        }
        let perm = self.mirror_permutation();
        let mut out = skeleton.clone();
        let c = skeleton.channels;
        let per_frame = skeleton.joints * c;
        for (dst, src) in out
            .data
            .chunks_exact_mut(per_frame)
            .zip(skeleton.data.chunks_exact(per_frame))
        {
            for (v, &pv) in perm.iter().enumerate() {
                dst[pv * c..pv * c + c].copy_from_slice(&src[v * c..v * c + c]);
            }
            if let Some(fc) = flip_channel.filter(|&fc| fc < c) {
                for j in 0..skeleton.joints {
                    dst[j * c + fc] = -dst[j * c + fc];
                }
            }
        }
        Some(out)
    }

    /// The layout as TOML, in the same shape `from_toml_str` reads.
    pub fn to_toml(&self) -> String {
        let names = |ix: &[usize]| ix.iter().map(|&i| self.joints[i].clone()).collect();
        let file = LayoutFile {
            name: self.name.clone(),
            description: self.description.clone(),
            center: self.joints[self.center].clone(),
            joints: self.joints.clone(),
            edges: self
                .edges
                .iter()
                .map(|&(a, b)| [self.joints[a].clone(), self.joints[b].clone()])
                .collect(),
            left: names(&self.left),
            right: names(&self.right),
            parts: self
                .parts
                .iter()
                .map(|(k, v)| (k.clone(), names(v)))
                .collect(),
        };
        toml::to_string(&file).expect("a layout always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntu25_is_a_tree_over_all_joints() {
        let l = Layout::builtin("ntu25").unwrap();
        assert_eq!(l.num_joints(), 25);
        assert_eq!(l.edges.len(), 24);
        assert_eq!(l.joints[l.center], "spine_mid");
        let back = Layout::from_toml_str(&l.to_toml(), "roundtrip").unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn unknown_joint_in_edge_is_named() {
        let text = "name='x'\ncenter='a'\njoints=['a','b']\nedges=[['a','c']]\n";
        let err = Layout::from_toml_str(text, "mine.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mine.toml") && err.contains("`c`"), "{err}");
    }
}
