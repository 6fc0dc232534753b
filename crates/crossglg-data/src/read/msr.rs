//! MSR Action3D skeletons in real-world coordinates (`aAA_sSS_eEE_skeleton3D.txt`): one row
//! `x y z c` per joint (c = a confidence-like value in 0..1), 20 rows per frame, no header.
//! Joint order: the `msr20` layout.

use std::path::Path;

use super::{
    list_files, parse_f32, parse_tagged_name, read_bytes, read_files_parallel, show, stem, tokens,
    DirOptions, Lines, Quality, ReadError, ReadReport, MAX_FRAMES,
};
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

pub const MSR_JOINTS: usize = 20;

/// MSR Action3D's 20 classes in action-code order (a01 = label 0).
pub const MSR_CLASSES: [&str; 20] = [
    "high arm wave",
    "horizontal arm wave",
    "hammer",
    "hand catch",
    "forward punch",
    "high throw",
    "draw x",
    "draw tick",
    "draw circle",
    "hand clap",
    "two hand wave",
    "side-boxing",
    "bend",
    "forward kick",
    "side kick",
    "jogging",
    "tennis swing",
    "tennis serve",
    "golf swing",
    "pick up & throw",
];

/// Metadata from `aAA_sSS_eEE` (label = AA - 1, replication = EE); `None` for other names.
pub fn parse_msr_name(name: &str) -> Option<SampleMeta> {
    let [a, s, e] = parse_tagged_name(name, &['a', 's', 'e'])?[..] else {
        return None;
    };
    if a == 0 || a as usize > MSR_CLASSES.len() {
        return None;
    }
    Some(SampleMeta {
        name: name.to_string(),
        label: Some(a as usize - 1),
        subject: Some(s),
        view: None,
        setup: None,
        replication: Some(e),
        extra: Default::default(),
    })
}

/// Reads one file as xyz (`with_confidence` adds `c` as a 4th channel). The [`Quality`] says
/// whether frames (or the whole file) are all zeros, which is not an error.
pub fn read_msr(path: &Path, with_confidence: bool) -> Result<(Sample, Quality), ReadError> {
    let data = read_bytes(path)?;
    parse_msr(&data, path, with_confidence)
}

pub fn parse_msr(
    data: &[u8],
    path: &Path,
    with_confidence: bool,
) -> Result<(Sample, Quality), ReadError> {
    let channels = if with_confidence { 4 } else { 3 };
    let mut lines = Lines::new(data);
    let mut values: Vec<f32> = Vec::with_capacity(data.len() / 9);
    let mut rows = 0usize;
    const FIELDS: [&str; 4] = ["x", "y", "z", "c"];
    while let Some(line) = lines.next_line() {
        let mut toks = tokens(line);
        let Some(first) = toks.next() else {
            // Blank lines are only allowed at the end of the file.
            if lines.only_blank_left() {
                break;
            }
            return Err(ReadError::line(
                path,
                lines.line,
                "blank line inside the data",
            ));
        };
        let mut row = [0f32; 4];
        let mut n = 0;
        for tok in std::iter::once(first).chain(toks) {
            if n == 4 {
                return Err(ReadError::line(
                    path,
                    lines.line,
                    format!("expected 4 values (x y z c), found more (`{}`)", show(tok)),
                ));
            }
            row[n] = parse_f32(tok, FIELDS[n]).map_err(|m| ReadError::line(path, lines.line, m))?;
            n += 1;
        }
        if n != 4 {
            return Err(ReadError::line(
                path,
                lines.line,
                format!("expected 4 values (x y z c), found {n}"),
            ));
        }
        values.extend_from_slice(&row[..channels]);
        rows += 1;
        if rows > MAX_FRAMES * MSR_JOINTS {
            return Err(ReadError::line(path, lines.line, "too many rows"));
        }
    }
    if rows == 0 {
        return Err(ReadError::invalid(path, "is empty (no joint rows)"));
    }
    if !rows.is_multiple_of(MSR_JOINTS) {
        return Err(ReadError::line(
            path,
            lines.line,
            format!(
                "{rows} joint rows is not a whole number of {MSR_JOINTS}-joint frames \
                 (last frame has {} rows; truncated?)",
                rows % MSR_JOINTS
            ),
        ));
    }
    let frames = rows / MSR_JOINTS;
    let skeleton = Skeleton {
        persons: 1,
        frames,
        joints: MSR_JOINTS,
        channels,
        data: values,
    };
    let name = stem(path, ".txt");
    let name = name
        .strip_suffix("_skeleton3D")
        .unwrap_or(&name)
        .to_string();
    let meta = parse_msr_name(&name).unwrap_or(SampleMeta {
        name,
        ..Default::default()
    });
    // Zero frames are judged on xyz only: a zero confidence alone is not a lost frame.
    let quality = if with_confidence {
        let mut xyz = Skeleton::zeros(1, frames, MSR_JOINTS, 3);
        for (dst, src) in xyz
            .data
            .chunks_exact_mut(3)
            .zip(skeleton.data.chunks_exact(4))
        {
            dst.copy_from_slice(&src[..3]);
        }
        Quality::of(&xyz)
    } else {
        Quality::of(&skeleton)
    };
    Ok((Sample { meta, skeleton }, quality))
}

/// Reads every `*_skeleton3D.txt` (or `*.txt`) file of `dir` in parallel, xyz only. All-zero
/// files are listed in the report's `flagged` (and left out unless `opts.keep_all_zero`);
/// files with some zero frames are kept and flagged.
pub fn read_msr_dir(dir: &Path, opts: &DirOptions) -> Result<(Dataset, ReadReport), ReadError> {
    let files = list_files(dir, ".txt")?;
    read_files_parallel(
        dir,
        files,
        opts,
        "msr-action3d",
        "msr20",
        MSR_CLASSES.iter().map(|s| s.to_string()).collect(),
        |p| read_msr(p, false).map(|(s, _)| s),
    )
}
