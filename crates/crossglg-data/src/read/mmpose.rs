//! MMPose predictions: what `MMPoseInferencer` writes with `pred_out_dir` for a video, one JSON
//! file per video, `[{"frame_id": 0, "instances": [{"keypoints": [[x, y], …],
//! "keypoint_scores": [s, …], "track_id": 3?}, …]}, …]`. 2-D keypoints read as `x, y, score`
//! (as OpenPose's); 3-D ones (the `pose3d` inferencer, `[x, y, z]`) as `x, y, z`.
//!
//! The layout is given, or follows from the keypoint count: 17 in 2-D is `coco17`, 17 in 3-D
//! `h36m17`; other counts (whole-body 133, Halpe 26) need a layout file. Instances are followed
//! by `track_id` when the inferencer tracked them, else ranked per frame by their mean score;
//! the first `DirOptions::max_bodies` are kept.

use std::path::Path;

use serde::Deserialize;

use super::{
    check_value, list_files, DirOptions, ReadError, ReadReport, MAX_FRAMES, MAX_SAMPLE_VALUES,
};
use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

#[derive(Deserialize)]
pub(crate) struct Frame {
    frame_id: i64,
    #[serde(default)]
    instances: Vec<Instance>,
}

#[derive(Deserialize)]
struct Instance {
    keypoints: Vec<Vec<f64>>,
    #[serde(default)]
    keypoint_scores: Vec<f64>,
    #[serde(default)]
    track_id: Option<i64>,
}

fn parse_file(path: &Path) -> Result<Vec<Frame>, ReadError> {
    let bytes = super::read_bytes(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ReadError::invalid(path, format!("not an MMPose video prediction: {e}")))
}

/// The frames of `bytes` when they are an MMPose video prediction (frames with `frame_id` and
/// `instances`), `None` otherwise: what tells these files from other JSON.
pub(crate) fn parse(bytes: &[u8]) -> Option<Vec<Frame>> {
    serde_json::from_slice::<Vec<Frame>>(bytes)
        .ok()
        .filter(|f| !f.is_empty())
}

/// True when `path` is an MMPose video prediction.
pub fn looks_like_mmpose_file(path: &Path) -> bool {
    super::read_bytes(path).is_ok_and(|b| parse(&b).is_some())
}

/// The layout the keypoints of `path` call for (see the module docs).
pub fn guess_layout(path: &Path) -> Result<String, ReadError> {
    layout_for(&parse_file(path)?, path)
}

/// [`guess_layout`] for frames already parsed.
pub(crate) fn layout_for(frames: &[Frame], path: &Path) -> Result<String, ReadError> {
    let Some(inst) = frames.iter().flat_map(|f| &f.instances).next() else {
        return Err(ReadError::invalid(
            path,
            "has no instances to tell the layout from; pass one",
        ));
    };
    let dims = inst.keypoints.first().map_or(0, Vec::len);
    match (inst.keypoints.len(), dims) {
        (17, 2) => Ok("coco17".into()),
        (17, 3) => Ok("h36m17".into()),
        (n, d) => Err(ReadError::field(
            path,
            "instances[0].keypoints",
            format!("{n} keypoints of {d} values: no built-in layout; pass --layout"),
        )),
    }
}

/// One video's predictions as a sample named after the file.
pub fn read_mmpose(path: &Path, layout: &Layout, max_bodies: usize) -> Result<Sample, ReadError> {
    build(path, parse_file(path)?, layout, max_bodies)
}

/// [`read_mmpose`] for frames already parsed (`path` names them).
pub(crate) fn build(
    path: &Path,
    frames: Vec<Frame>,
    layout: &Layout,
    max_bodies: usize,
) -> Result<Sample, ReadError> {
    if frames.is_empty() {
        return Err(ReadError::invalid(path, "has no frames"));
    }
    let joints = layout.num_joints();
    let (lo, hi) = frames.iter().fold((i64::MAX, i64::MIN), |(lo, hi), f| {
        (lo.min(f.frame_id), hi.max(f.frame_id))
    });
    let span = hi.saturating_sub(lo).saturating_add(1);
    let persons_max = max_bodies.max(1);
    if span <= 0
        || span as u64 > MAX_FRAMES as u64
        || span as usize * persons_max * joints * 3 > MAX_SAMPLE_VALUES
    {
        return Err(ReadError::field(
            path,
            "frame_id",
            format!("runs from {lo} to {hi}, more frames than a sample may hold"),
        ));
    }
    let t = span as usize;
    // every instance checked first, so a bad one is an error whichever person slot it would get
    for (fi, f) in frames.iter().enumerate() {
        for (k, inst) in f.instances.iter().enumerate() {
            let d = inst.keypoints.first().map_or(0, Vec::len);
            let fits = inst.keypoints.len() == joints
                && (d == 2 || d == 3)
                && inst.keypoints.iter().all(|p| p.len() == d)
                && (d == 3 || inst.keypoint_scores.len() == joints);
            if !fits {
                return Err(ReadError::field(
                    path,
                    format!("[{fi}].instances[{k}]"),
                    format!(
                        "has {} keypoints of {d} values and {} scores; layout `{}` needs {joints} \
                         keypoints of 2 values with {joints} scores, or of 3 values",
                        inst.keypoints.len(),
                        inst.keypoint_scores.len(),
                        layout.name
                    ),
                ));
            }
        }
    }
    let mut tracks: Vec<i64> = Vec::new();
    for f in &frames {
        for inst in &f.instances {
            if let Some(id) = inst.track_id {
                if !tracks.contains(&id) && tracks.len() < persons_max {
                    tracks.push(id);
                }
            }
        }
    }
    let persons = frames
        .iter()
        .map(|f| f.instances.len())
        .max()
        .unwrap_or(0)
        .clamp(1, persons_max);
    let mut sk = Skeleton::zeros(persons, t, joints, 3);
    for (fi, f) in frames.iter().enumerate() {
        let ti = (f.frame_id - lo) as usize;
        let mut order: Vec<(f64, usize)> = f
            .instances
            .iter()
            .enumerate()
            .map(|(k, i)| {
                let n = i.keypoint_scores.len().max(1) as f64;
                (i.keypoint_scores.iter().sum::<f64>() / n, k)
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (rank, &(_, k)) in order.iter().enumerate() {
            let inst = &f.instances[k];
            let slot = match inst.track_id {
                Some(id) if !tracks.is_empty() => tracks.iter().position(|&x| x == id),
                _ => Some(rank),
            };
            let Some(m) = slot.filter(|&m| m < persons) else {
                continue;
            };
            for (v, p) in inst.keypoints.iter().enumerate() {
                let third = if p.len() == 3 {
                    p[2]
                } else {
                    inst.keypoint_scores[v]
                };
                for (c, x) in [p[0], p[1], third].into_iter().enumerate() {
                    let x = x as f32;
                    check_value(x, "value").map_err(|msg| {
                        ReadError::field(path, format!("[{fi}].instances[{k}].keypoints[{v}]"), msg)
                    })?;
                    sk.set(m, ti, v, c, x);
                }
            }
        }
    }
    Ok(Sample {
        meta: SampleMeta {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Default::default()
        },
        skeleton: sk,
    })
}

/// True when the first `.json` file in `dir` is an MMPose video prediction.
pub fn looks_like_mmpose(dir: &Path) -> bool {
    list_files(dir, ".json")
        .ok()
        .and_then(|f| f.first().cloned())
        .is_some_and(|f| looks_like_mmpose_file(&f))
}

/// Every `.json` prediction in `dir`, one sample each.
pub fn read_mmpose_dir(
    dir: &Path,
    layout: &Layout,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport), ReadError> {
    let (samples, report) = super::collect_files(dir, ".json", opts, |f| {
        read_mmpose(f, layout, opts.max_bodies)
    })?;
    Ok((
        super::dataset_from(dir, layout, Vec::new(), samples),
        report,
    ))
}
