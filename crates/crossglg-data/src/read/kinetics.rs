//! Kinetics-skeleton, as ST-GCN released it: one JSON file per video,
//! `{"data": [{"frame_index": 1, "skeleton": [{"pose": [x0, y0, x1, y1, …], "score": [s0, …]}, …]}, …],
//! "label": "…", "label_index": n}`, OpenPose COCO-18 keypoints (layout `openpose18`) with
//! coordinates normalised to the frame. Channels are `x, y, score`, the three ST-GCN feeds its
//! network; a keypoint OpenPose did not find is `0, 0, 0`.
//!
//! As ST-GCN's feeder does, each frame's people are ranked by their summed keypoint score and the
//! best `DirOptions::max_bodies` (2) kept; frames are placed by `frame_index` (a frame without
//! people is all zero). Classes come from the files' `label_index` / `label`; an index no file
//! names gets the name `label_<index>`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    check_value, list_files, DirOptions, ReadError, ReadReport, MAX_FRAMES, MAX_SAMPLE_VALUES,
};
use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

/// Kinetics-400 has 400 classes; a label far beyond that is a broken file, not a class list
/// to allocate.
const MAX_LABEL: i64 = 100_000;

#[derive(Deserialize)]
pub(crate) struct Video {
    data: Vec<Frame>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    label_index: Option<i64>,
}

#[derive(Deserialize)]
struct Frame {
    frame_index: i64,
    #[serde(default)]
    skeleton: Vec<Body>,
}

#[derive(Deserialize)]
struct Body {
    pose: Vec<f64>,
    score: Vec<f64>,
}

/// True when the first `.json` file in `dir` is a Kinetics-skeleton video, which tells such a
/// folder from NW-UCLA's JSON files.
pub fn looks_like_kinetics(dir: &Path) -> bool {
    list_files(dir, ".json")
        .ok()
        .and_then(|f| f.first().cloned())
        .is_some_and(|f| looks_like_kinetics_file(&f))
}

/// True when `path` parses as a Kinetics-skeleton video (`data` frames with a `frame_index`).
pub fn looks_like_kinetics_file(path: &Path) -> bool {
    super::read_bytes(path).is_ok_and(|b| parse(&b).is_some())
}

/// The video of `bytes` when they are a Kinetics-skeleton video, `None` otherwise: what tells
/// these files from other JSON.
pub(crate) fn parse(bytes: &[u8]) -> Option<Video> {
    serde_json::from_slice(bytes).ok()
}

/// The class list for the labels seen: `names[i]` where a file named class `i`, else
/// `label_<i>`, up to the largest label.
pub(crate) fn class_list(
    names: &BTreeMap<usize, String>,
    labels: impl Iterator<Item = usize>,
) -> Vec<String> {
    let count = labels.max().map_or(0, |m| m + 1);
    (0..count)
        .map(|i| {
            names
                .get(&i)
                .cloned()
                .unwrap_or_else(|| format!("label_{i}"))
        })
        .collect()
}

/// Reads every `.json` video in `dir` with `layout` (`openpose18`).
pub fn read_kinetics_dir(
    dir: &Path,
    layout: &Layout,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport), ReadError> {
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    let (samples, report) = super::collect_files(dir, ".json", opts, |f| {
        let (sample, label) = read_kinetics(f, layout, opts.max_bodies)?;
        if let (Some(i), Some(name)) = (sample.meta.label, label) {
            names.entry(i).or_insert(name);
        }
        Ok(sample)
    })?;
    let classes = class_list(&names, samples.iter().filter_map(|s| s.meta.label));
    Ok((super::dataset_from(dir, layout, classes, samples), report))
}

/// One video: the sample (labelled when the file has `label_index`) and its label name.
pub fn read_kinetics(
    path: &Path,
    layout: &Layout,
    max_bodies: usize,
) -> Result<(Sample, Option<String>), ReadError> {
    let bytes = super::read_bytes(path)?;
    let video: Video = serde_json::from_slice(&bytes)
        .map_err(|e| ReadError::invalid(path, format!("not a Kinetics-skeleton video: {e}")))?;
    build(path, video, layout, max_bodies)
}

/// [`read_kinetics`] for a video already parsed (`path` names it).
pub(crate) fn build(
    path: &Path,
    video: Video,
    layout: &Layout,
    max_bodies: usize,
) -> Result<(Sample, Option<String>), ReadError> {
    let joints = layout.num_joints();
    let persons_max = max_bodies.max(1);
    let label = match video.label_index {
        Some(i) if !(0..=MAX_LABEL).contains(&i) => {
            return Err(ReadError::field(
                path,
                "label_index",
                format!("{i} is outside 0..={MAX_LABEL}"),
            ))
        }
        Some(i) => Some(i as usize),
        None => None,
    };
    let (lo, hi) = video
        .data
        .iter()
        .map(|f| f.frame_index)
        .fold((i64::MAX, i64::MIN), |(lo, hi), i| (lo.min(i), hi.max(i)));
    if video.data.is_empty() {
        return Err(ReadError::invalid(path, "has no frames (`data` is empty)"));
    }
    let span = hi.saturating_sub(lo).saturating_add(1);
    if span <= 0 || span as u64 > MAX_FRAMES as u64 {
        return Err(ReadError::field(
            path,
            "data[].frame_index",
            format!("runs from {lo} to {hi}, more than {MAX_FRAMES} frames"),
        ));
    }
    let t = span as usize;
    if t * persons_max * joints * 3 > MAX_SAMPLE_VALUES {
        return Err(ReadError::invalid(
            path,
            format!("{t} frames are more than a sample may hold"),
        ));
    }
    let persons = video
        .data
        .iter()
        .map(|f| f.skeleton.len())
        .max()
        .unwrap_or(0)
        .clamp(1, persons_max);
    let mut sk = Skeleton::zeros(persons, t, joints, 3);
    for (fi, frame) in video.data.iter().enumerate() {
        let ti = (frame.frame_index - lo) as usize;
        for (k, b) in frame.skeleton.iter().enumerate() {
            if b.pose.len() != 2 * joints || b.score.len() != joints {
                return Err(ReadError::field(
                    path,
                    format!("data[{fi}].skeleton[{k}]"),
                    format!(
                        "has {} pose values and {} scores; layout `{}` needs {} and {}",
                        b.pose.len(),
                        b.score.len(),
                        layout.name,
                        2 * joints,
                        joints
                    ),
                ));
            }
        }
        // the best-scored people first, as ST-GCN's feeder ranks them
        let mut order: Vec<(f64, usize)> = frame
            .skeleton
            .iter()
            .enumerate()
            .map(|(k, b)| (b.score.iter().sum::<f64>(), k))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (m, &(_, k)) in order.iter().take(persons).enumerate() {
            let b = &frame.skeleton[k];
            for v in 0..joints {
                let values = [b.pose[2 * v], b.pose[2 * v + 1], b.score[v]];
                for (ch, x) in values.into_iter().enumerate() {
                    let x = x as f32;
                    check_value(x, "value").map_err(|msg| {
                        ReadError::field(path, format!("data[{fi}].skeleton[{k}]"), msg)
                    })?;
                    sk.set(m, ti, v, ch, x);
                }
            }
        }
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        Sample {
            meta: SampleMeta {
                name,
                label,
                ..Default::default()
            },
            skeleton: sk,
        },
        video.label,
    ))
}
