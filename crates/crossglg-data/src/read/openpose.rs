//! OpenPose output: a folder of per-frame JSON files, `NAME_000000000012_keypoints.json`, each
//! `{"people": [{"person_id": [-1], "pose_keypoints_2d": [x0, y0, c0, x1, …]}, …]}`. Files
//! sharing NAME are one sequence (frames in number order). Channels are `x, y, confidence` in
//! image coordinates, as pyskl's 2-D annotations; a keypoint OpenPose did not find is `0, 0, 0`.
//!
//! BODY_25 output (25 keypoints) reads with the `body25` layout, the COCO model's (18) with
//! `openpose18` (chosen from the keypoint count unless a layout is given); `body25_to_ntu25`
//! and `openpose18_to_ntu25` map them to the NTU layout. People are kept in the order OpenPose lists them (it does not track them
//! across frames; `person_id` is -1 unless a tracker filled it, in which case it is followed),
//! up to `DirOptions::max_bodies`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    check_value, list_files, Collector, DirOptions, ReadError, ReadReport, MAX_FRAMES,
    MAX_SAMPLE_VALUES,
};
use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

#[derive(Deserialize)]
struct FrameFile {
    #[serde(default)]
    people: Vec<Person>,
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    person_id: Option<serde_json::Value>,
    #[serde(default)]
    pose_keypoints_2d: Vec<f64>,
}

/// `(sequence name, frame number)` of an OpenPose file name, `None` for other files.
pub fn split_name(file: &str) -> Option<(String, u64)> {
    let stem = file.strip_suffix("_keypoints.json")?;
    let (name, num) = stem.rsplit_once('_')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((name.to_string(), num.parse().ok()?))
}

/// True when `dir` holds OpenPose per-frame files.
pub fn looks_like_openpose(dir: &Path) -> bool {
    list_files(dir, "_keypoints.json").is_ok_and(|f| !f.is_empty())
}

/// The layout of the OpenPose model that wrote `dir`, from the keypoint count of the first
/// person found: 25 → `body25`, 18 → `openpose18` (the COCO model).
pub fn guess_layout(dir: &Path) -> Result<String, ReadError> {
    for f in list_files(dir, "_keypoints.json")? {
        let bytes = super::read_bytes(&f)?;
        let frame: FrameFile = serde_json::from_slice(&bytes)
            .map_err(|e| ReadError::invalid(&f, format!("not an OpenPose frame: {e}")))?;
        if let Some(p) = frame.people.first() {
            return match p.pose_keypoints_2d.len() {
                75 => Ok("body25".into()),
                54 => Ok("openpose18".into()),
                n => Err(ReadError::field(
                    &f,
                    "people[0].pose_keypoints_2d",
                    format!("has {n} values: neither BODY_25 (75) nor COCO-18 (54); pass --layout"),
                )),
            };
        }
    }
    Ok("body25".into())
}

/// Reads every sequence in `dir` (see the module docs) with `layout` (`body25` for BODY_25).
pub fn read_openpose_dir(
    dir: &Path,
    layout: &Layout,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport), ReadError> {
    let mut sequences: BTreeMap<String, Vec<(u64, PathBuf)>> = BTreeMap::new();
    for f in list_files(dir, "_keypoints.json")? {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some((seq, n)) = split_name(name) {
            sequences.entry(seq).or_default().push((n, f));
        }
    }
    if sequences.is_empty() {
        return Err(ReadError::invalid(
            dir,
            "has no OpenPose files (NAME_<frame number>_keypoints.json)",
        ));
    }
    let report = ReadReport {
        files: sequences.values().map(Vec::len).sum(),
        ..Default::default()
    };
    let mut c = Collector::new(opts, dir, report);
    for (name, mut frames) in sequences {
        frames.sort();
        let r = read_sequence(&name, &frames, layout, opts);
        c.add(dir.join(&name), r)?;
    }
    let (samples, report) = c.finish();
    Ok((
        super::dataset_from(dir, layout, Vec::new(), samples),
        report,
    ))
}

fn read_sequence(
    name: &str,
    frames: &[(u64, PathBuf)],
    layout: &Layout,
    opts: &DirOptions,
) -> Result<Sample, ReadError> {
    let joints = layout.num_joints();
    let t = frames.len();
    let persons_max = opts.max_bodies.max(1);
    if t > MAX_FRAMES || t * persons_max * joints * 3 > MAX_SAMPLE_VALUES {
        return Err(ReadError::invalid(
            &frames[0].1,
            format!("sequence `{name}` has {t} frames, more than a sample may hold"),
        ));
    }
    // people per frame, then who is who: tracked ids when OpenPose's tracker set them, else
    // the order it lists people in
    let mut per_frame: Vec<Vec<(Option<i64>, Vec<f64>)>> = Vec::with_capacity(t);
    for (_, path) in frames {
        let bytes = super::read_bytes(path)?;
        let f: FrameFile = serde_json::from_slice(&bytes)
            .map_err(|e| ReadError::invalid(path, format!("not an OpenPose frame: {e}")))?;
        let mut people = Vec::with_capacity(f.people.len());
        for (k, p) in f.people.into_iter().enumerate() {
            if p.pose_keypoints_2d.len() != joints * 3 {
                return Err(ReadError::field(
                    path,
                    format!("people[{k}].pose_keypoints_2d"),
                    format!(
                        "has {} values; layout `{}` needs {} (x, y, confidence per joint)",
                        p.pose_keypoints_2d.len(),
                        layout.name,
                        joints * 3
                    ),
                ));
            }
            let id = p
                .person_id
                .as_ref()
                .and_then(|v| v.as_array().and_then(|a| a.first()).or(Some(v)))
                .and_then(serde_json::Value::as_i64)
                .filter(|&i| i >= 0);
            people.push((id, p.pose_keypoints_2d));
        }
        per_frame.push(people);
    }
    let mut ids: Vec<i64> = Vec::new();
    for people in &per_frame {
        for (id, _) in people {
            if let Some(i) = id {
                if !ids.contains(i) && ids.len() < persons_max {
                    ids.push(*i);
                }
            }
        }
    }
    let persons = per_frame
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .clamp(1, persons_max);
    let mut sk = Skeleton::zeros(persons, t, joints, 3);
    for (ti, people) in per_frame.iter().enumerate() {
        for (k, (id, kp)) in people.iter().enumerate() {
            let slot = match id {
                Some(i) => ids.iter().position(|x| x == i),
                None => Some(k),
            };
            let Some(m) = slot.filter(|&m| m < persons) else {
                continue;
            };
            for v in 0..joints {
                for c in 0..3 {
                    let x = kp[v * 3 + c] as f32;
                    check_value(x, "value").map_err(|msg| {
                        ReadError::field(
                            &frames[ti].1,
                            format!("people[{k}].pose_keypoints_2d[{}]", v * 3 + c),
                            msg,
                        )
                    })?;
                    sk.set(m, ti, v, c, x);
                }
            }
        }
    }
    Ok(Sample {
        meta: SampleMeta {
            name: name.to_string(),
            ..Default::default()
        },
        skeleton: sk,
    })
}
