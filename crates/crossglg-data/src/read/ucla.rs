//! NW-UCLA in CTR-GCN's `all_sqe` JSON release: one file per sample,
//! `{"file_name": "a01_s01_e00_v01", "skeletons": [T][20][3], "label": 1..10}`.
//! Joint order: the `nwucla20` layout.

use std::path::Path;

use serde::Deserialize;

use super::{
    check_value, list_files, parse_tagged_name, read_bytes, read_files_parallel, DirOptions,
    ReadError, ReadReport, MAX_FRAMES,
};
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

pub const UCLA_JOINTS: usize = 20;

/// NW-UCLA's 10 classes: (action code in file names, class name); label = position here.
pub const UCLA_CLASSES: [(u32, &str); 10] = [
    (1, "pick up with one hand"),
    (2, "pick up with two hands"),
    (3, "drop trash"),
    (4, "walk around"),
    (5, "sit down"),
    (6, "stand up"),
    (8, "donning"),
    (9, "doffing"),
    (11, "throw"),
    (12, "carry"),
];

#[derive(Deserialize)]
struct UclaFile {
    file_name: String,
    skeletons: Vec<Vec<Vec<f64>>>,
    label: i64,
}

/// Metadata from `aAA_sSS_eEE_vVV`: label from the action code, subject, replication = e,
/// view = v. `None` for other names or unknown action codes.
pub fn parse_ucla_name(name: &str) -> Option<SampleMeta> {
    let [a, s, e, v] = parse_tagged_name(name, &['a', 's', 'e', 'v'])?[..] else {
        return None;
    };
    let label = UCLA_CLASSES.iter().position(|(code, _)| *code == a)?;
    Some(SampleMeta {
        name: name.to_string(),
        label: Some(label),
        subject: Some(s),
        view: Some(v),
        setup: None,
        replication: Some(e),
        extra: Default::default(),
    })
}

pub fn read_ucla(path: &Path) -> Result<Sample, ReadError> {
    let data = read_bytes(path)?;
    parse_ucla(&data, path)
}

/// Parses the bytes of one `all_sqe` JSON file; `path` names the file in errors.
pub fn parse_ucla(data: &[u8], path: &Path) -> Result<Sample, ReadError> {
    let file: UclaFile = serde_json::from_slice(data).map_err(|e| {
        if e.line() > 0 {
            ReadError::line(path, e.line(), format!("invalid NW-UCLA JSON: {e}"))
        } else {
            ReadError::invalid(path, format!("invalid NW-UCLA JSON: {e}"))
        }
    })?;
    let frames = file.skeletons.len();
    if frames == 0 {
        return Err(ReadError::field(path, "skeletons", "has no frames"));
    }
    if frames > MAX_FRAMES {
        return Err(ReadError::field(
            path,
            "skeletons",
            format!("has {frames} frames, more than the limit {MAX_FRAMES}"),
        ));
    }
    let classes = UCLA_CLASSES.len() as i64;
    if !(1..=classes).contains(&file.label) {
        return Err(ReadError::field(
            path,
            "label",
            format!("is {}, expected 1..={classes}", file.label),
        ));
    }
    let label = (file.label - 1) as usize;
    let mut meta = match parse_ucla_name(&file.file_name) {
        Some(m) if m.label != Some(label) => {
            return Err(ReadError::field(
                path,
                "label",
                format!(
                    "is {} but the action code of `{}` means label {}",
                    file.label,
                    file.file_name,
                    m.label.map_or(0, |l| l + 1)
                ),
            ))
        }
        Some(m) => m,
        None => SampleMeta {
            name: file.file_name.clone(),
            ..Default::default()
        },
    };
    meta.label = Some(label);
    let mut sk = Skeleton::zeros(1, frames, UCLA_JOINTS, 3);
    for (t, frame) in file.skeletons.iter().enumerate() {
        if frame.len() != UCLA_JOINTS {
            return Err(ReadError::field(
                path,
                format!("skeletons[{t}]"),
                format!("has {} joints, expected {UCLA_JOINTS}", frame.len()),
            ));
        }
        for (v, joint) in frame.iter().enumerate() {
            if joint.len() != 3 {
                return Err(ReadError::field(
                    path,
                    format!("skeletons[{t}][{v}]"),
                    format!("has {} values, expected 3 (x, y, z)", joint.len()),
                ));
            }
            for (c, &x) in joint.iter().enumerate() {
                let x = x as f32;
                check_value(x, "value")
                    .map_err(|m| ReadError::field(path, format!("skeletons[{t}][{v}][{c}]"), m))?;
                sk.set(0, t, v, c, x);
            }
        }
    }
    Ok(Sample { meta, skeleton: sk })
}

/// Reads every `*.json` file of an `all_sqe` folder in parallel.
pub fn read_ucla_dir(dir: &Path, opts: &DirOptions) -> Result<(Dataset, ReadReport), ReadError> {
    let files = list_files(dir, ".json")?;
    read_files_parallel(
        dir,
        files,
        opts,
        "nw-ucla",
        "nwucla20",
        UCLA_CLASSES.iter().map(|(_, n)| n.to_string()).collect(),
        read_ucla,
    )
}
