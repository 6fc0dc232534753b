//! pyskl annotation pickles:
//! `{"split": {name: [frame_dir, ...]}, "annotations": [{"frame_dir", "label", "keypoint":
//! float array [M, T, V, C], "total_frames", "keypoint_score"?: [M, T, V], ...}]}`.
//!
//! `label` is pyskl's 0-based class index. When `keypoint_score` is present (2D data) it is
//! appended as the last channel, so 2D keypoints become `(x, y, score)` as pyskl's GCN
//! pipelines feed them. Sample names in NTU, NW-UCLA or MSR shape also fill subject/view/....

use std::collections::BTreeMap;
use std::path::Path;

use super::msr::parse_msr_name;
use super::ntu::parse_ntu_name;
use super::pickle::{unpickle, Value};
use super::ucla::parse_ucla_name;
use super::{
    check_value, read_bytes, Collector, DirOptions, ReadError, ReadReport, MAX_BODIES_PER_FRAME,
    MAX_FRAMES, MAX_JOINTS,
};
use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

/// What a pyskl pickle holds, as crossglg types.
#[derive(Debug, Clone)]
pub struct PysklData {
    pub dataset: Dataset,
    /// The file's `split` dict (e.g. `xsub_train` -> sample names); empty when absent.
    pub split: BTreeMap<String, Vec<String>>,
    pub report: ReadReport,
}

/// Reads a pyskl annotation pickle. `layout` (built-in name or TOML path) must match the
/// joint count of the keypoints; `classes` names the classes (default: `"0"`, `"1"`, ...).
/// Bad annotations are skipped and listed in the report unless `opts.strict`.
pub fn read_pyskl(
    path: &Path,
    layout: &str,
    classes: Option<Vec<String>>,
    opts: &DirOptions,
) -> Result<PysklData, ReadError> {
    let layout = Layout::load(layout).map_err(|e| ReadError::layout(path, e))?;
    let bytes = read_bytes(path)?;
    parse_pyskl(&bytes, path, &layout, classes, opts)
}

pub fn parse_pyskl(
    bytes: &[u8],
    path: &Path,
    layout: &Layout,
    classes: Option<Vec<String>>,
    opts: &DirOptions,
) -> Result<PysklData, ReadError> {
    let root = unpickle(bytes)
        .map_err(|e| ReadError::field(path, format!("pickle byte {}", e.offset), e.message))?;
    if !matches!(root, Value::Dict(_)) {
        return Err(ReadError::field(
            path,
            "(top level)",
            format!(
                "is a {}, expected a dict with `annotations`",
                root.type_name()
            ),
        ));
    }
    let mut split = BTreeMap::new();
    match root.get("split") {
        None | Some(Value::None) => {}
        Some(Value::Dict(m)) => {
            for (k, v) in &m.items {
                let key = k.as_str().ok_or_else(|| {
                    ReadError::field(path, "split", format!("has a {} key", k.type_name()))
                })?;
                let names = v
                    .as_seq()
                    .ok_or_else(|| ReadError::field(path, format!("split.{key}"), "is not a list"))?
                    .iter()
                    .map(|n| n.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        ReadError::field(path, format!("split.{key}"), "holds a non-string")
                    })?;
                split.insert(key.to_string(), names);
            }
        }
        Some(other) => {
            return Err(ReadError::field(
                path,
                "split",
                format!("is a {}, expected a dict", other.type_name()),
            ))
        }
    }
    let anns = root
        .get("annotations")
        .ok_or_else(|| ReadError::field(path, "annotations", "is missing"))?
        .as_seq()
        .ok_or_else(|| ReadError::field(path, "annotations", "is not a list"))?;

    let report = ReadReport {
        files: anns.len(),
        ..Default::default()
    };
    let mut c = Collector::new(opts, path, report);
    for (i, ann) in anns.iter().enumerate() {
        let r = annotation(ann, i, path, layout);
        let at = match &r {
            Ok(s) => path.join(&s.meta.name),
            Err(_) => path.to_path_buf(),
        };
        c.add(at, r)?;
    }
    let (samples, report) = c.finish();
    let classes = match classes {
        Some(c) => c,
        None => {
            // pyskl labels are class indices: name them "0".."max". A label beyond any real
            // dataset's class count would make that many names (10^9 of them, or a
            // capacity-overflow panic for 2^63 - 1): refused instead.
            let max = samples.iter().filter_map(|s| s.meta.label).max();
            if let Some((s, l)) = samples
                .iter()
                .find_map(|s| s.meta.label.filter(|&l| l >= MAX_CLASSES).map(|l| (s, l)))
            {
                return Err(ReadError::field(
                    path,
                    format!("annotations[{}].label", s.meta.name),
                    format!(
                        "is {l}, more classes than any dataset has (at most {MAX_CLASSES}); pass the class names"
                    ),
                ));
            }
            let n = max.map_or(0, |m| m + 1);
            // An NTU RGB+D pickle (pyskl's ntu60/ntu120 files, 25 Kinect joints): its labels
            // are the official action indices, so the official names (NTU-60's are the first
            // 60 of NTU-120's), which description files match by.
            let ntu = Layout::builtin("ntu25").is_ok_and(|l| l.joints == layout.joints);
            if ntu && n <= super::ntu::NTU120_CLASSES.len() {
                super::ntu::NTU120_CLASSES[..n]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                (0..n).map(|i| i.to_string()).collect()
            }
        }
    };
    if let Some(s) = samples
        .iter()
        .find(|s| s.meta.label.is_some_and(|l| l >= classes.len()))
    {
        return Err(ReadError::field(
            path,
            format!("annotations[{}].label", s.meta.name),
            format!(
                "is {}, but only {} class names were given",
                s.meta.label.unwrap_or(0),
                classes.len()
            ),
        ));
    }
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(PysklData {
        dataset: Dataset {
            name,
            layout: layout.name.clone(),
            classes,
            samples,
        },
        split,
        report,
    })
}

/// The most classes a pickle's labels may imply without class names (Kinetics-700 has 700).
pub const MAX_CLASSES: usize = 100_000;

fn meta_from_name(name: &str) -> SampleMeta {
    parse_ntu_name(name)
        .or_else(|| parse_ucla_name(name))
        .or_else(|| parse_msr_name(name))
        .unwrap_or_else(|| SampleMeta {
            name: name.to_string(),
            ..Default::default()
        })
}

fn annotation(ann: &Value, i: usize, path: &Path, layout: &Layout) -> Result<Sample, ReadError> {
    let at = |f: &str| format!("annotations[{i}]{f}");
    let err = |f: &str, m: String| ReadError::field(path, at(f), m);
    if !matches!(ann, Value::Dict(_)) {
        return Err(err(
            "",
            format!("is a {}, expected a dict", ann.type_name()),
        ));
    }
    let name = ann
        .get("frame_dir")
        .and_then(Value::as_str)
        .ok_or_else(|| err(".frame_dir", "is missing or not a string".into()))?;
    let mut meta = meta_from_name(name);
    meta.label = match ann.get("label") {
        None | Some(Value::None) => None,
        Some(v) => Some(
            v.as_int()
                .and_then(|l| usize::try_from(l).ok())
                .ok_or_else(|| {
                    err(
                        ".label",
                        format!("is not a class index ({})", v.type_name()),
                    )
                })?,
        ),
    };
    let Some(Value::Array(kp)) = ann.get("keypoint") else {
        return Err(err(".keypoint", "is missing or not a numpy array".into()));
    };
    let [m, t, v, c] = kp.shape[..] else {
        return Err(err(
            ".keypoint",
            format!("has shape {:?}, expected [M, T, V, C]", kp.shape),
        ));
    };
    for (n, max, what) in [
        (m, MAX_BODIES_PER_FRAME, "persons"),
        (t, MAX_FRAMES, "frames"),
        (v, MAX_JOINTS, "joints"),
        (c, 16, "channels"),
    ] {
        if n == 0 || n > max {
            return Err(err(
                ".keypoint",
                format!("shape {:?}: {n} {what} is outside 1..={max}", kp.shape),
            ));
        }
    }
    if v != layout.num_joints() {
        return Err(err(
            ".keypoint",
            format!(
                "has {v} joints but layout `{}` has {}",
                layout.name,
                layout.num_joints()
            ),
        ));
    }
    if kp.dtype.kind != 'f' {
        return Err(err(
            ".keypoint",
            format!(
                "has dtype {}{}, expected float",
                kp.dtype.kind, kp.dtype.size
            ),
        ));
    }
    if let Some(total) = ann.get("total_frames").and_then(Value::as_int) {
        if total != t as i64 {
            return Err(err(
                ".total_frames",
                format!("is {total} but keypoint has {t} frames"),
            ));
        }
    }
    let values = kp.to_f32().map_err(|e| err(".keypoint", e))?;
    let score = match ann.get("keypoint_score") {
        None | Some(Value::None) => None,
        Some(Value::Array(s)) if s.shape == [m, t, v] => {
            Some(s.to_f32().map_err(|e| err(".keypoint_score", e))?)
        }
        Some(other) => {
            return Err(err(
                ".keypoint_score",
                format!("is a {} that is not a [M, T, V] array", other.type_name()),
            ))
        }
    };
    let channels = c + usize::from(score.is_some());
    let mut sk = Skeleton::zeros(m, t, v, channels);
    for (j, joint) in values.chunks_exact(c).enumerate() {
        let dst = &mut sk.data[j * channels..(j + 1) * channels];
        dst[..c].copy_from_slice(joint);
        if let Some(s) = &score {
            dst[c] = s[j];
        }
    }
    for (k, &x) in sk.data.iter().enumerate() {
        check_value(x, "value").map_err(|e| err(&format!(".keypoint (flat index {k})"), e))?;
    }
    Ok(Sample { meta, skeleton: sk })
}
