//! Readers for the field's skeleton formats, one file per format. Every reader names the file
//! (and the line or field) in its errors and never panics on bad input; folder readers parse
//! files in parallel, skip bad files and list them in a [`ReadReport`].
//!
//! | format | file | folder |
//! |---|---|---|
//! | NTU RGB+D `.skeleton` | [`ntu::read_ntu`], [`ntu::read_ntu_recording`] | [`ntu::read_ntu_dir`] |
//! | NW-UCLA `all_sqe` JSON | [`ucla::read_ucla`] | [`ucla::read_ucla_dir`] |
//! | MSR Action3D txt | [`msr::read_msr`] | [`msr::read_msr_dir`] |
//! | `.npy` + `manifest.csv` | [`npy::read_npy`] | [`npy::read_npy_dir`] |
//! | pyskl annotation pickle | — | [`pyskl::read_pyskl`] |

pub mod kinetics;
pub mod mmpose;
pub mod msr;
pub mod npy;
pub mod npz;
pub mod ntu;
pub mod openpose;
pub mod pickle;
pub mod pyskl;
pub mod ucla;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::sample::{Dataset, Sample, SampleMeta};

/// Values beyond this magnitude are rejected as corrupt: skeleton coordinates are metres or
/// pixels, and NTU's largest fields (colour pixels) stay below 2000.
pub const MAX_ABS_VALUE: f32 = 1.0e6;

/// Caps applied to counts read from a file before anything is allocated from them.
pub const MAX_FRAMES: usize = 1_000_000;
pub const MAX_BODIES_PER_FRAME: usize = 64;
/// The most values (persons × frames × joints × channels) one sample may hold: 2^26, 256 MiB of
/// f32 (a 25-joint, 2-person sequence of about 7 hours at 30 fps). Checked before its array is
/// allocated.
pub const MAX_SAMPLE_VALUES: usize = 1 << 26;
pub const MAX_JOINTS: usize = 1_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line-oriented file (NTU, MSR, CSV) is wrong at `line` (1-based).
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A structured file (JSON, npy, pickle) is wrong at `field` (a path like
    /// `skeletons[3][7]`, `header` or `annotations[2].keypoint`).
    #[error("{}: {field}: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// The layout asked for (or guessed) for this file does not load.
    #[error("{}: {source}", path.display())]
    Layout {
        path: PathBuf,
        source: crate::layout::LayoutError,
    },
}

impl ReadError {
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::Line { path, .. }
            | ReadError::Field { path, .. }
            | ReadError::Invalid { path, .. }
            | ReadError::Layout { path, .. } => path,
        }
    }

    pub(crate) fn line(path: &Path, line: usize, message: impl Into<String>) -> Self {
        ReadError::Line {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn field(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ReadError::Field {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        ReadError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn layout(path: &Path, source: crate::layout::LayoutError) -> Self {
        ReadError::Layout {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReadError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A non-fatal finding about a file that did parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Quality {
    Ok,
    /// Some frames have every joint at exactly (0, 0, 0): the tracker lost the person.
    ZeroFrames {
        zero_frames: usize,
        frames: usize,
    },
    /// Every value is zero: the file holds no skeleton at all. Folder readers leave such
    /// samples out of the dataset and list them in the report.
    AllZero {
        frames: usize,
    },
}

impl Quality {
    /// Classifies a `[M, T, V, C]` array by its all-zero frames (a frame is zero when every
    /// person's every joint is zero).
    pub fn of(skeleton: &crate::sample::Skeleton) -> Quality {
        let per_frame = skeleton.joints * skeleton.channels;
        let frames = skeleton.frames;
        let zero_frames = (0..frames)
            .filter(|&t| {
                (0..skeleton.persons).all(|m| {
                    let s = (m * frames + t) * per_frame;
                    skeleton.data[s..s + per_frame].iter().all(|&x| x == 0.0)
                })
            })
            .count();
        if zero_frames == 0 {
            Quality::Ok
        } else if zero_frames == frames {
            Quality::AllZero { frames }
        } else {
            Quality::ZeroFrames {
                zero_frames,
                frames,
            }
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Quality::Ok)
    }
}

/// A file a folder reader could not use.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// A file that was read but has a [`Quality`] finding; `kept` says whether its sample is in
/// the dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    pub path: PathBuf,
    pub quality: Quality,
    pub kept: bool,
}

/// What a folder reader did besides returning samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadReport {
    /// Candidate files found in the folder.
    pub files: usize,
    /// Samples in the returned dataset.
    pub read: usize,
    /// Files that failed to parse (or were excluded, e.g. by the NTU missing-skeleton list).
    pub skipped: Vec<Skipped>,
    pub flagged: Vec<Flagged>,
}

impl std::fmt::Display for ReadReport {
    /// A summary line, then one line per skipped or flagged file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} files: {} samples read, {} skipped, {} flagged",
            self.files,
            self.read,
            self.skipped.len(),
            self.flagged.len()
        )?;
        for s in &self.skipped {
            writeln!(f, "  skipped {}: {}", s.path.display(), s.reason)?;
        }
        for fl in &self.flagged {
            let what = match &fl.quality {
                Quality::Ok => "ok".to_string(),
                Quality::ZeroFrames {
                    zero_frames,
                    frames,
                } => format!("{zero_frames} of {frames} frames all zero"),
                Quality::AllZero { frames } => format!("all {frames} frames zero"),
            };
            let kept = if fl.kept { "kept" } else { "left out" };
            writeln!(f, "  flagged {}: {what} ({kept})", fl.path.display())?;
        }
        Ok(())
    }
}

/// Options shared by the folder readers.
#[derive(Debug, Clone)]
pub struct DirOptions {
    /// Fail on the first bad file instead of skipping it.
    pub strict: bool,
    /// Most persons kept per sample (NTU keeps the bodies seen in most frames).
    pub max_bodies: usize,
    /// Sample names to leave out (e.g. the NTU missing-skeleton list); listed as skipped.
    pub exclude: std::collections::BTreeSet<String>,
    /// Keep samples whose every value is zero (default: leave them out, list them as flagged).
    pub keep_all_zero: bool,
    /// The most values (f32) the whole dataset may hold; reading stops with an error beyond.
    pub max_total_values: usize,
    /// Let a `.npy` folder's manifest name files outside its folder (default: refused).
    pub allow_outside_paths: bool,
}

impl Default for DirOptions {
    fn default() -> Self {
        DirOptions {
            strict: false,
            max_bodies: 2,
            exclude: Default::default(),
            keep_all_zero: false,
            max_total_values: DEFAULT_MAX_TOTAL_VALUES,
            allow_outside_paths: false,
        }
    }
}

/// The default of [`DirOptions::max_total_values`]: 2^30 values, 4 GiB of f32 (NTU-120 whole,
/// 114 480 samples of about 300 frames × 25 joints × 2 persons × 3, is about 5 · 10^9 values
/// before resampling: pack it in parts or raise the budget).
pub const DEFAULT_MAX_TOTAL_VALUES: usize = 1 << 30;

/// Collects samples as a reader produces them: the quality flags, the strict / skip choice and
/// the dataset's value budget, in one place for every reader.
pub(crate) struct Collector<'a> {
    opts: &'a DirOptions,
    origin: &'a Path,
    samples: Vec<Sample>,
    report: ReadReport,
    values: usize,
}

impl<'a> Collector<'a> {
    pub fn new(opts: &'a DirOptions, origin: &'a Path, report: ReadReport) -> Self {
        Collector {
            opts,
            origin,
            samples: Vec::new(),
            report,
            values: 0,
        }
    }

    /// Takes one reader result (`path` names it in the report): flagged when its quality is
    /// off, left out when all zero (unless kept), an error in strict mode or skipped otherwise;
    /// an error once the dataset's values pass the budget.
    pub fn add(
        &mut self,
        path: PathBuf,
        result: Result<Sample, ReadError>,
    ) -> Result<(), ReadError> {
        match result {
            Ok(sample) => {
                let quality = Quality::of(&sample.skeleton);
                let kept = self.opts.keep_all_zero || !matches!(quality, Quality::AllZero { .. });
                if !quality.is_ok() {
                    self.report.flagged.push(Flagged {
                        path,
                        quality,
                        kept,
                    });
                }
                if kept && !self.opts.exclude.contains(&sample.meta.name) {
                    self.values += sample.skeleton.data.len();
                    if self.values > self.opts.max_total_values {
                        return Err(ReadError::invalid(
                            self.origin,
                            format!(
                                "the dataset would hold more than {} values ({:.3} GiB of f32) after {} samples; raise the budget (--max-gib) or read it in parts",
                                self.opts.max_total_values,
                                self.opts.max_total_values as f64 * 4.0 / (1u64 << 30) as f64,
                                self.samples.len()
                            ),
                        ));
                    }
                    self.samples.push(sample);
                }
                Ok(())
            }
            Err(e) if self.opts.strict => Err(e),
            Err(e) => {
                self.report.skipped.push(Skipped {
                    path,
                    reason: e.to_string(),
                });
                Ok(())
            }
        }
    }

    pub fn finish(mut self) -> (Vec<Sample>, ReadReport) {
        self.report.read = self.samples.len();
        (self.samples, self.report)
    }
}

/// Reads each file of `dir` ending in `suffix` as one sample through a [`Collector`], which
/// skips, flags and budgets as every folder reader does; a folder without such files is an
/// error.
pub(crate) fn collect_files(
    dir: &Path,
    suffix: &str,
    opts: &DirOptions,
    mut read: impl FnMut(&Path) -> Result<Sample, ReadError>,
) -> Result<(Vec<Sample>, ReadReport), ReadError> {
    let files = list_files(dir, suffix)?;
    if files.is_empty() {
        return Err(ReadError::invalid(dir, format!("has no {suffix} files")));
    }
    let report = ReadReport {
        files: files.len(),
        ..Default::default()
    };
    let mut c = Collector::new(opts, dir, report);
    for f in files {
        let r = read(&f);
        c.add(f, r)?;
    }
    Ok(c.finish())
}

/// A dataset named after `origin`: a folder's name, or a file's stem.
pub(crate) fn dataset_from(
    origin: &Path,
    layout: &crate::layout::Layout,
    classes: Vec<String>,
    samples: Vec<Sample>,
) -> Dataset {
    let name = if origin.is_dir() {
        origin.file_name()
    } else {
        origin.file_stem()
    };
    Dataset {
        name: name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        layout: layout.name.clone(),
        classes,
        samples,
    }
}

/// The files directly inside `dir` whose name ends with `suffix`, sorted by name so datasets
/// come out in the same order everywhere.
pub fn list_files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, ReadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ReadError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::io(dir, e))?;
        let path = entry.path();
        let is_match = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(suffix));
        if is_match && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The file's name without directory and without `suffix` (lossy for non-UTF-8 names).
pub(crate) fn stem(path: &Path, suffix: &str) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(suffix).unwrap_or(&name).to_string()
}

/// A class-name list: one name per line, in label order, surrounding blanks trimmed, empty
/// lines skipped (`classes.txt` of `.npy` folders, `--classes` files).
pub fn read_class_names(path: &Path) -> Result<Vec<String>, ReadError> {
    let text = crate::bounded::read_to_string(path, crate::bounded::SMALL_FILE_BYTES)
        .map_err(|e| ReadError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    crate::bounded::read(path, crate::bounded::DATA_FILE_BYTES).map_err(|e| ReadError::io(path, e))
}

/// Reads every file with `read_one` on rayon's pool and assembles a dataset in file order.
pub(crate) fn read_files_parallel<F>(
    origin: &Path,
    files: Vec<PathBuf>,
    opts: &DirOptions,
    name: &str,
    layout: &str,
    classes: Vec<String>,
    read_one: F,
) -> Result<(Dataset, ReadReport), ReadError>
where
    F: Fn(&Path) -> Result<Sample, ReadError> + Sync,
{
    let mut report = ReadReport {
        files: files.len(),
        ..Default::default()
    };
    let (todo, excluded): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|p| !opts.exclude.contains(&sample_name_of(p)));
    for path in excluded {
        report.skipped.push(Skipped {
            path,
            reason: "excluded (listed in the exclusion list)".into(),
        });
    }
    // In chunks, so the budget stops a large folder after at most one chunk past it.
    let mut c = Collector::new(opts, origin, report);
    for chunk in todo.chunks(64) {
        let results: Vec<(PathBuf, Result<Sample, ReadError>)> =
            chunk.par_iter().map(|p| (p.clone(), read_one(p))).collect();
        for (path, result) in results {
            c.add(path, result)?;
        }
    }
    let (samples, report) = c.finish();
    Ok((
        Dataset {
            name: name.to_string(),
            layout: layout.to_string(),
            classes,
            samples,
        },
        report,
    ))
}

/// The sample name a file stands for: its file name up to the first `.` or `_skeleton`.
fn sample_name_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.split('.').next().unwrap_or("").to_string();
    name.strip_suffix("_skeleton3D")
        .map(str::to_string)
        .unwrap_or(name)
}

/// Splits a byte buffer into lines (LF or CRLF), numbering them from 1, without requiring
/// UTF-8: numeric fields are parsed from bytes, and a stray non-UTF-8 byte becomes a "not a
/// number" error on its line.
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
    pub line: usize,
}

impl<'a> Lines<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Lines {
            rest: data,
            line: 0,
        }
    }

    /// The next line, without its terminator, or `None` at the end of the data.
    pub fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.line += 1;
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => self.rest.split_at(i + 1),
            None => (self.rest, &self.rest[self.rest.len()..]),
        };
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        self.rest = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// True when only whitespace remains.
    pub fn only_blank_left(&self) -> bool {
        self.rest.iter().all(|b| b.is_ascii_whitespace())
    }
}

/// Whitespace-separated tokens of one line.
pub(crate) fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
}

/// Exactly `N` whitespace-separated tokens of a line, or the number found (`N + 1` meaning
/// "more"). A plain loop: this runs once per joint line.
pub(crate) fn split_n<const N: usize>(line: &[u8]) -> Result<[&[u8]; N], usize> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    let mut i = 0;
    let len = line.len();
    while i < len {
        while i < len && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == len {
            break;
        }
        let start = i;
        while i < len && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        if n == N {
            return Err(N + 1);
        }
        out[n] = &line[start..i];
        n += 1;
    }
    if n == N {
        Ok(out)
    } else {
        Err(n)
    }
}

pub(crate) fn show(token: &[u8]) -> String {
    let s = String::from_utf8_lossy(&token[..token.len().min(40)]).into_owned();
    if token.len() > 40 {
        format!("{s}…")
    } else {
        s
    }
}

/// Parses a finite, plausible f32 from a token; the error text names the field. Nothing is
/// allocated unless the token is bad (this is the NTU/MSR hot loop).
pub(crate) fn parse_f32(token: &[u8], field: &str) -> Result<f32, String> {
    if let Some(x) = fast_f32(token) {
        return Ok(x);
    }
    let x: f32 = std::str::from_utf8(token)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("field {field}: `{}` is not a number", show(token)))?;
    if !x.is_finite() || x.abs() > MAX_ABS_VALUE {
        check_value(x, &format!("field {field}"))?;
    }
    Ok(x)
}

/// Exact powers of ten in f32 (all up to 10^10 are exactly representable).
const POW10: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// Plain decimals (`-0.7201789`, `1184.537`) with at most 2^24 as digit value: the integer and
/// the power of ten are both exact in f32, so one division is correctly rounded and gives the
/// same bits as `str::parse` (Clinger's fast path, which std takes too). Anything else (exponents,
/// more digits, junk) returns `None` and goes through `str::parse`.
#[inline]
fn fast_f32(token: &[u8]) -> Option<f32> {
    let (neg, digits) = match token.first() {
        Some(b'-') => (true, &token[1..]),
        _ => (false, token),
    };
    let mut m: u32 = 0;
    let mut frac = 0usize;
    let mut dot = false;
    let mut any = false;
    for &b in digits {
        if b.is_ascii_digit() {
            m = m * 10 + u32::from(b - b'0');
            if m > 1 << 24 {
                return None;
            }
            frac += usize::from(dot);
            any = true;
        } else if b == b'.' && !dot {
            dot = true;
        } else {
            return None;
        }
    }
    if !any || frac >= POW10.len() {
        return None;
    }
    // m <= 2^24 and frac <= 10 keep the value far inside the plausible range.
    let x = m as f32 / POW10[frac];
    Some(if neg { -x } else { x })
}

pub(crate) fn check_value(x: f32, what: &str) -> Result<(), String> {
    if !x.is_finite() {
        return Err(format!("{what} is {x} (not finite)"));
    }
    if x.abs() > MAX_ABS_VALUE {
        return Err(format!(
            "{what} is {x:e}, beyond the plausible range ±{MAX_ABS_VALUE:e}"
        ));
    }
    Ok(())
}

/// Parses an unsigned integer token no larger than `max`.
pub(crate) fn parse_count(token: &[u8], what: &str, max: usize) -> Result<usize, String> {
    let s = std::str::from_utf8(token).unwrap_or("");
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{what} `{}` is not a whole number", show(token)))?;
    if n > max as u64 {
        return Err(format!("{what} is {n}, more than the limit {max}"));
    }
    Ok(n as usize)
}

/// Parses names like `a01_s02_e03_v01` (NW-UCLA) or `a01_s02_e03` (MSR): letter + number
/// groups separated by `_`. Returns the number for each letter in `keys`, or `None` when the
/// name has another shape.
pub(crate) fn parse_tagged_name(name: &str, keys: &[char]) -> Option<Vec<u32>> {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() != keys.len() {
        return None;
    }
    parts
        .iter()
        .zip(keys)
        .map(|(p, &k)| {
            let rest = p.strip_prefix(k)?;
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.len() > 6 {
                return None;
            }
            rest.parse().ok()
        })
        .collect()
}

/// The formats [`read_path`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Ntu,
    NwUcla,
    Msr,
    Npy,
    Pyskl,
    OpenPose,
    Kinetics,
    Npz,
    MmPose,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ntu => "ntu",
            Format::NwUcla => "nw-ucla",
            Format::Msr => "msr",
            Format::Npy => "npy",
            Format::Pyskl => "pyskl",
            Format::OpenPose => "openpose",
            Format::Kinetics => "kinetics",
            Format::Npz => "npz",
            Format::MmPose => "mmpose",
        }
    }
}

/// Reads a file or a folder in whichever supported format it is, for callers (the CLI's
/// `prepare`/`inspect`) that take a path from the user:
///
/// - a folder with `manifest.csv` is an `.npy` folder (needs `layout`); one with OpenPose's
///   `*_keypoints.json` files is OpenPose output (layout from the keypoint count: `body25` or
///   `openpose18`, unless given); one whose `.json` files are Kinetics-skeleton videos is
///   Kinetics (layout `openpose18`); one of MMPose video predictions is MMPose (layout from the
///   keypoints); otherwise the most common of `.skeleton` / `.json` /
///   `.txt` decides between NTU, NW-UCLA and MSR;
/// - a file is read by its extension (`.skeleton`, `.json`, `.txt`, `.npy`, `.pkl`/`.pickle`)
///   into a one-sample dataset (all samples for a pickle).
///
/// `layout` is needed for `.npy` folders and optional for `.npy` files and pickles (guessed
/// from the joint count: 25 → ntu25, 20 → nwucla20, 17 → coco17, 18 → openpose18,
/// 33 → mediapipe33).
pub fn read_path(
    path: &Path,
    layout: Option<&str>,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport, Format), ReadError> {
    if path.is_dir() {
        return read_dir_any(path, layout, opts);
    }
    let name = path.to_string_lossy();
    let one = |sample: Sample, layout: &str, classes: Vec<String>, format| {
        let quality = Quality::of(&sample.skeleton);
        let report = ReadReport {
            files: 1,
            read: 1,
            skipped: Vec::new(),
            flagged: if quality.is_ok() {
                Vec::new()
            } else {
                vec![Flagged {
                    path: path.to_path_buf(),
                    quality,
                    kept: true,
                }]
            },
        };
        let ds = Dataset {
            name: stem(path, ""),
            layout: layout.to_string(),
            classes,
            samples: vec![sample],
        };
        (ds, report, format)
    };
    if name.ends_with(".skeleton") {
        let s = ntu::read_ntu(path, opts.max_bodies)?;
        let classes = ntu::NTU120_CLASSES.iter().map(|s| s.to_string()).collect();
        Ok(one(s, "ntu25", classes, Format::Ntu))
    } else if name.ends_with(".json") {
        // one read and one parse: Kinetics, MMPose, else NW-UCLA
        let bytes = read_bytes(path)?;
        if let Some(video) = kinetics::parse(&bytes) {
            let l = crate::layout::Layout::load(layout.unwrap_or("openpose18"))
                .map_err(|e| ReadError::layout(path, e))?;
            let (s, label) = kinetics::build(path, video, &l, opts.max_bodies)?;
            let names = s.meta.label.zip(label).into_iter().collect();
            let classes = kinetics::class_list(&names, s.meta.label.into_iter());
            Ok(one(s, &l.name, classes, Format::Kinetics))
        } else if let Some(frames) = mmpose::parse(&bytes) {
            let l = match layout {
                Some(l) => l.to_string(),
                None => mmpose::layout_for(&frames, path)?,
            };
            let l = crate::layout::Layout::load(&l).map_err(|e| ReadError::layout(path, e))?;
            let s = mmpose::build(path, frames, &l, opts.max_bodies)?;
            Ok(one(s, &l.name, Vec::new(), Format::MmPose))
        } else {
            let s = ucla::parse_ucla(&bytes, path)?;
            let classes = ucla::UCLA_CLASSES
                .iter()
                .map(|(_, n)| n.to_string())
                .collect();
            Ok(one(s, "nwucla20", classes, Format::NwUcla))
        }
    } else if name.ends_with(".txt") {
        let (s, _) = msr::read_msr(path, false)?;
        let classes = msr::MSR_CLASSES.iter().map(|s| s.to_string()).collect();
        Ok(one(s, "msr20", classes, Format::Msr))
    } else if name.ends_with(".npy") {
        let sk = npy::read_npy(path)?;
        let layout = match layout {
            Some(l) => l.to_string(),
            None => guess_layout(sk.joints, path)?,
        };
        let meta = SampleMeta {
            name: stem(path, ".npy"),
            ..Default::default()
        };
        Ok(one(
            Sample { meta, skeleton: sk },
            &layout,
            Vec::new(),
            Format::Npy,
        ))
    } else if name.ends_with(".npz") {
        let (ds, rep) = npz::read_npz(path, layout, opts)?;
        Ok((ds, rep, Format::Npz))
    } else if name.ends_with(".pkl") || name.ends_with(".pickle") {
        let bytes = read_bytes(path)?;
        let layout = match layout {
            Some(l) => l.to_string(),
            None => {
                let root = pickle::unpickle(&bytes).map_err(|e| {
                    ReadError::field(path, format!("pickle byte {}", e.offset), e.message)
                })?;
                let joints = root
                    .get("annotations")
                    .and_then(|a| a.as_seq())
                    .and_then(|a| a.first())
                    .and_then(|a| match a.get("keypoint") {
                        Some(pickle::Value::Array(k)) => k.shape.get(2).copied(),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        ReadError::invalid(
                            path,
                            "cannot guess the layout (no keypoint array); pass one",
                        )
                    })?;
                guess_layout(joints, path)?
            }
        };
        let layout =
            crate::layout::Layout::load(&layout).map_err(|e| ReadError::layout(path, e))?;
        let d = pyskl::parse_pyskl(&bytes, path, &layout, None, opts)?;
        Ok((d.dataset, d.report, Format::Pyskl))
    } else {
        Err(ReadError::invalid(
            path,
            "unknown file type (expected .skeleton, .json, .txt, .npy, .npz, .pkl or a folder)",
        ))
    }
}

fn read_dir_any(
    dir: &Path,
    layout: Option<&str>,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport, Format), ReadError> {
    if dir.join("manifest.csv").exists() {
        let layout = layout.ok_or_else(|| {
            ReadError::invalid(
                dir,
                "a .npy folder needs a layout (e.g. ntu25 or a TOML path)",
            )
        })?;
        let (ds, rep) = npy::read_npy_dir(dir, layout, opts)?;
        return Ok((ds, rep, Format::Npy));
    }
    if openpose::looks_like_openpose(dir) {
        let name = match layout {
            Some(l) => l.to_string(),
            None => openpose::guess_layout(dir)?,
        };
        let layout = crate::layout::Layout::load(&name).map_err(|e| ReadError::layout(dir, e))?;
        let (ds, rep) = openpose::read_openpose_dir(dir, &layout, opts)?;
        return Ok((ds, rep, Format::OpenPose));
    }
    if kinetics::looks_like_kinetics(dir) {
        let layout = crate::layout::Layout::load(layout.unwrap_or("openpose18"))
            .map_err(|e| ReadError::layout(dir, e))?;
        let (ds, rep) = kinetics::read_kinetics_dir(dir, &layout, opts)?;
        return Ok((ds, rep, Format::Kinetics));
    }
    if mmpose::looks_like_mmpose(dir) {
        let name = match layout {
            Some(l) => l.to_string(),
            None => mmpose::guess_layout(&list_files(dir, ".json")?[0])?,
        };
        let layout = crate::layout::Layout::load(&name).map_err(|e| ReadError::layout(dir, e))?;
        let (ds, rep) = mmpose::read_mmpose_dir(dir, &layout, opts)?;
        return Ok((ds, rep, Format::MmPose));
    }
    let candidates = [
        (list_files(dir, ".skeleton")?.len(), Format::Ntu),
        (list_files(dir, ".json")?.len(), Format::NwUcla),
        (list_files(dir, ".txt")?.len(), Format::Msr),
    ];
    let (n, format) = candidates
        .iter()
        .copied()
        .max_by_key(|(n, _)| *n)
        .unwrap_or((0, Format::Ntu));
    if n == 0 {
        return Err(ReadError::invalid(
            dir,
            "has no .skeleton, .json or .txt files and no manifest.csv",
        ));
    }
    let (ds, rep) = match format {
        Format::Ntu => ntu::read_ntu_dir(dir, opts)?,
        Format::NwUcla => ucla::read_ucla_dir(dir, opts)?,
        _ => msr::read_msr_dir(dir, opts)?,
    };
    Ok((ds, rep, format))
}

pub(crate) fn guess_layout(joints: usize, path: &Path) -> Result<String, ReadError> {
    match joints {
        25 => Ok("ntu25".into()),
        20 => Ok("nwucla20".into()),
        17 => Ok("coco17".into()),
        18 => Ok("openpose18".into()),
        33 => Ok("mediapipe33".into()),
        v => Err(ReadError::invalid(
            path,
            format!("no built-in layout has {v} joints; pass a layout name or TOML path"),
        )),
    }
}
