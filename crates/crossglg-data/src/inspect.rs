//! `inspect`: what is in a file or folder of skeletons — frames, bodies, joints, value ranges
//! per channel, non-finite values, zero frames, per-class counts, and what could not be read.
//!
//! The report is plain data (`Serialize` for JSON) and prints as a short table (`Display`).
//! Packed datasets plug in through [`PackedSource`]; [`inspect_path`] uses [`PackedFile`]
//! (`crate::pack`, `.safetensors` files), [`inspect_path_with`] takes any other source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::read::{self, DirOptions, Flagged, Quality, ReadError, ReadReport, Skipped};
use crate::sample::Dataset;

/// Min / max / mean of one channel over every (person, frame, joint) of every sample.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ChannelStats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct CountStats {
    pub min: usize,
    pub max: usize,
    pub mean: f64,
    pub total: usize,
}

impl CountStats {
    fn of(values: impl Iterator<Item = usize>) -> Self {
        let mut s = CountStats {
            min: usize::MAX,
            ..Default::default()
        };
        let mut n = 0usize;
        for v in values {
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            s.total += v;
            n += 1;
        }
        if n == 0 {
            s.min = 0;
        } else {
            s.mean = s.total as f64 / n as f64;
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// The file or folder inspected.
    pub source: String,
    /// The format it was read as (`ntu`, `nw-ucla`, `msr`, `npy`, `pyskl`, `packed`, ...).
    pub format: String,
    pub layout: String,
    pub samples: usize,
    /// Frames per sample.
    pub frames: CountStats,
    /// Persons (bodies) per sample.
    pub bodies: CountStats,
    /// Distinct joint counts seen (one entry for a consistent dataset).
    pub joints: Vec<usize>,
    /// Distinct channel counts seen.
    pub channels: Vec<usize>,
    /// Per channel, over samples that have that channel; zeros of absent persons and lost
    /// frames are excluded so the ranges describe real joints.
    pub channel_stats: Vec<ChannelStats>,
    pub nan_count: usize,
    pub inf_count: usize,
    /// Frames whose every joint is zero, over all samples.
    pub zero_frames: usize,
    /// Samples per class name (`unlabelled` for samples without a label).
    pub class_counts: BTreeMap<String, usize>,
    pub skipped: Vec<Skipped>,
    pub flagged: Vec<Flagged>,
}

/// Something that can open a packed dataset file; `pack.rs` implements it so `inspect` can
/// read packed files without this module knowing the packed format.
pub trait PackedSource {
    /// Whether `path` looks like a packed dataset this source can open.
    fn recognises(&self, path: &Path) -> bool;
    fn open(&self, path: &Path) -> Result<Dataset, ReadError>;
}

/// The crate's own packed format (`crate::pack`): any `.safetensors` file.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackedFile;

impl PackedSource for PackedFile {
    fn recognises(&self, path: &Path) -> bool {
        path.is_file() && path.extension().is_some_and(|e| e == "safetensors")
    }

    fn open(&self, path: &Path) -> Result<Dataset, ReadError> {
        crate::pack::Packed::open(path)
            .and_then(|p| p.to_dataset())
            .map_err(|e| ReadError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }
}

/// Options for [`inspect_path`].
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Layout for `.npy` folders and pyskl pickles (default: guessed from the joint count).
    pub layout: Option<String>,
    pub dir: DirOptions,
}

/// Inspects a dataset already in memory.
pub fn inspect_dataset(ds: &Dataset, source: &str, format: &str) -> InspectReport {
    let samples = &ds.samples;
    let mut joints: Vec<usize> = samples.iter().map(|s| s.skeleton.joints).collect();
    joints.sort_unstable();
    joints.dedup();
    let mut channels: Vec<usize> = samples.iter().map(|s| s.skeleton.channels).collect();
    channels.sort_unstable();
    channels.dedup();
    let max_c = channels.last().copied().unwrap_or(0);
    let mut mins = vec![f32::INFINITY; max_c];
    let mut maxs = vec![f32::NEG_INFINITY; max_c];
    let mut sums = vec![0f64; max_c];
    let mut counts = vec![0usize; max_c];
    let (mut nan, mut inf, mut zero_frames) = (0, 0, 0);
    for s in samples {
        let sk = &s.skeleton;
        let c = sk.channels;
        if c == 0 {
            continue;
        }
        for x in &sk.data {
            nan += usize::from(x.is_nan());
            inf += usize::from(x.is_infinite());
        }
        if let Quality::ZeroFrames { zero_frames: z, .. } | Quality::AllZero { frames: z } =
            Quality::of(sk)
        {
            zero_frames += z;
        }
        for joint in sk.data.chunks_exact(c) {
            if joint.iter().all(|&x| x == 0.0) {
                continue;
            }
            for (k, &x) in joint.iter().enumerate() {
                if x.is_finite() {
                    mins[k] = mins[k].min(x);
                    maxs[k] = maxs[k].max(x);
                    sums[k] += x as f64;
                    counts[k] += 1;
                }
            }
        }
    }
    let channel_stats = (0..max_c)
        .map(|k| ChannelStats {
            min: if counts[k] > 0 { mins[k] } else { 0.0 },
            max: if counts[k] > 0 { maxs[k] } else { 0.0 },
            mean: if counts[k] > 0 {
                sums[k] / counts[k] as f64
            } else {
                0.0
            },
        })
        .collect();
    let mut class_counts = BTreeMap::new();
    for s in samples {
        let key = match s.meta.label {
            Some(l) => ds
                .classes
                .get(l)
                .map_or_else(|| format!("#{l}"), |n| format!("{l:>3} {n}")),
            None => "unlabelled".to_string(),
        };
        *class_counts.entry(key).or_insert(0) += 1;
    }
    InspectReport {
        source: source.to_string(),
        format: format.to_string(),
        layout: ds.layout.clone(),
        samples: samples.len(),
        frames: CountStats::of(samples.iter().map(|s| s.skeleton.frames)),
        bodies: CountStats::of(samples.iter().map(|s| s.skeleton.persons)),
        joints,
        channels,
        channel_stats,
        nan_count: nan,
        inf_count: inf,
        zero_frames,
        class_counts,
        skipped: Vec::new(),
        flagged: Vec::new(),
    }
}

fn with_report(mut r: InspectReport, rep: ReadReport) -> InspectReport {
    r.skipped = rep.skipped;
    r.flagged = rep.flagged;
    r
}

/// Inspects a file or folder, choosing the reader from the extension (`.skeleton`, `.json`,
/// `.txt`, `.npy`, `.pkl`/`.pickle`, packed `.safetensors`) or, for a folder, from
/// `manifest.csv` or the most common extension inside.
pub fn inspect_path(path: &Path, opts: &InspectOptions) -> Result<InspectReport, ReadError> {
    inspect_path_with(path, opts, Some(&PackedFile))
}

/// As [`inspect_path`], with a packed-dataset source tried first.
pub fn inspect_path_with(
    path: &Path,
    opts: &InspectOptions,
    packed: Option<&dyn PackedSource>,
) -> Result<InspectReport, ReadError> {
    let source = path.display().to_string();
    if let Some(p) = packed.filter(|p| p.recognises(path)) {
        let ds = p.open(path)?;
        return Ok(inspect_dataset(&ds, &source, "packed"));
    }
    let (ds, rep, format) = read::read_path(path, opts.layout.as_deref(), &opts.dir)?;
    Ok(with_report(
        inspect_dataset(&ds, &source, format.name()),
        rep,
    ))
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "source:   {} ({}, layout {})",
            self.source, self.format, self.layout
        )?;
        writeln!(f, "samples:  {}", self.samples)?;
        let c = |s: &CountStats| {
            format!(
                "min {} / mean {:.1} / max {} (total {})",
                s.min, s.mean, s.max, s.total
            )
        };
        writeln!(f, "frames:   {}", c(&self.frames))?;
        writeln!(f, "bodies:   {}", c(&self.bodies))?;
        writeln!(f, "joints:   {}", list(&self.joints))?;
        writeln!(f, "channels: {}", list(&self.channels))?;
        for (k, s) in self.channel_stats.iter().enumerate() {
            let name = ["x", "y", "z", "c3", "c4"].get(k).copied().unwrap_or("c");
            writeln!(
                f,
                "  {name:<3} min {:>10.4}  max {:>10.4}  mean {:>10.4}",
                s.min, s.max, s.mean
            )?;
        }
        writeln!(
            f,
            "non-finite: {} NaN, {} inf; all-zero frames: {}",
            self.nan_count, self.inf_count, self.zero_frames
        )?;
        if !self.class_counts.is_empty() {
            writeln!(f, "classes:  {}", self.class_counts.len())?;
            for (k, n) in &self.class_counts {
                writeln!(f, "  {k}: {n}")?;
            }
        }
        if !self.flagged.is_empty() {
            writeln!(f, "flagged:  {}", self.flagged.len())?;
            for fl in &self.flagged {
                let what = match &fl.quality {
                    Quality::Ok => "ok".to_string(),
                    Quality::ZeroFrames {
                        zero_frames,
                        frames,
                    } => {
                        format!("{zero_frames} of {frames} frames all zero")
                    }
                    Quality::AllZero { frames } => format!("all {frames} frames zero"),
                };
                let kept = if fl.kept { "kept" } else { "left out" };
                writeln!(f, "  {}: {what} ({kept})", fl.path.display())?;
            }
        }
        if !self.skipped.is_empty() {
            writeln!(f, "skipped:  {}", self.skipped.len())?;
            for s in &self.skipped {
                writeln!(f, "  {}", s.reason)?;
            }
        }
        Ok(())
    }
}
