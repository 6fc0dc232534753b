//! A folder of `.npy` arrays with a `manifest.csv`, for data that comes from elsewhere
//! (a pose estimator, another toolkit). Each array is `[T, V, C]` (one person) or
//! `[M, T, V, C]`, float32 or float64, C order.
//!
//! `manifest.csv` has a header row starting `file,label`; further columns are optional:
//! `subject`, `view`, `setup`, `replication` (whole numbers) go to the sample metadata, any
//! other column goes to `SampleMeta::extra`. `label` is either a class name or a 0-based
//! class index (a whole number); an empty label means unlabelled. The class list comes from
//! `classes.txt` (one name per line) in the folder when present, else from the sorted distinct
//! label names (or `0..=max` for numeric labels).
//!
//! The `.npy` parser is ours (version 1-3 headers, `<f4`/`<f8`/`>f4`/`>f8`), so no extra
//! dependency is pulled in for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{
    check_value, read_bytes, Collector, DirOptions, Lines, ReadError, ReadReport,
    MAX_BODIES_PER_FRAME, MAX_FRAMES, MAX_JOINTS,
};
use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

/// A decoded `.npy` array as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read_npy_array(path: &Path) -> Result<NpyArray, ReadError> {
    parse_npy(&read_bytes(path)?, path)
}

/// Reads one `.npy` file as a skeleton (`[T,V,C]` gets M = 1).
pub fn read_npy(path: &Path) -> Result<Skeleton, ReadError> {
    let a = read_npy_array(path)?;
    array_to_skeleton(a, path)
}

pub(crate) fn array_to_skeleton(a: NpyArray, path: &Path) -> Result<Skeleton, ReadError> {
    let (m, t, v, c) = match a.shape[..] {
        [t, v, c] => (1, t, v, c),
        [m, t, v, c] => (m, t, v, c),
        _ => {
            return Err(ReadError::field(
                path,
                "shape",
                format!("{:?} is not [T, V, C] or [M, T, V, C]", a.shape),
            ))
        }
    };
    let limits = [
        (m, MAX_BODIES_PER_FRAME, "persons"),
        (t, MAX_FRAMES, "frames"),
        (v, MAX_JOINTS, "joints"),
        (c, 16, "channels"),
    ];
    for (n, max, what) in limits {
        if n == 0 || n > max {
            return Err(ReadError::field(
                path,
                "shape",
                format!("{:?}: {n} {what} is outside 1..={max}", a.shape),
            ));
        }
    }
    Ok(Skeleton {
        persons: m,
        frames: t,
        joints: v,
        channels: c,
        data: a.data,
    })
}

/// Parses the bytes of a `.npy` file; `path` names the file in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray, ReadError> {
    let bad = |field: &str, m: String| ReadError::field(path, field, m);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("magic", "not a .npy file (missing \\x93NUMPY)".into()));
    }
    let major = bytes[6];
    let (len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("version", format!("unsupported .npy version {major}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(len))
        .ok_or_else(|| bad("header", "file ends inside the header".into()))?;
    let header =
        std::str::from_utf8(header).map_err(|_| bad("header", "header is not text".into()))?;
    let h = parse_header(header).map_err(|m| bad("header", m))?;
    if h.fortran_order {
        return Err(bad(
            "header",
            "fortran_order arrays are not supported; save with np.ascontiguousarray".into(),
        ));
    }
    // floats, and whole numbers for label arrays (`.npz` archives carry those beside the data)
    let (kind, little, size) = match h.descr.as_str() {
        "<f4" | "=f4" => ('f', true, 4),
        "<f8" | "=f8" => ('f', true, 8),
        ">f4" => ('f', false, 4),
        ">f8" => ('f', false, 8),
        "|i1" => ('i', true, 1),
        "|u1" | "|b1" => ('u', true, 1),
        "<i2" | "=i2" => ('i', true, 2),
        "<i4" | "=i4" => ('i', true, 4),
        "<i8" | "=i8" => ('i', true, 8),
        "<u2" | "=u2" => ('u', true, 2),
        "<u4" | "=u4" => ('u', true, 4),
        "<u8" | "=u8" => ('u', true, 8),
        other => {
            return Err(bad(
                "descr",
                format!(
                    "dtype `{other}` is not supported (use float32 or float64, or little-endian \
                     integers for labels)"
                ),
            ))
        }
    };
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|n| n.checked_mul(size).is_some())
        .ok_or_else(|| bad("shape", format!("{:?} is too large", h.shape)))?;
    let body = &bytes[start + len..];
    if body.len() != count * size {
        return Err(bad(
            "data",
            format!(
                "shape {:?} needs {} bytes of data, file has {} (truncated or wrong shape)",
                h.shape,
                count * size,
                body.len()
            ),
        ));
    }
    let mut data = Vec::with_capacity(count);
    for (i, chunk) in body.chunks_exact(size).enumerate() {
        let mut b = [0u8; 8];
        if little {
            b[..size].copy_from_slice(chunk);
        } else {
            b[8 - size..].copy_from_slice(chunk);
        }
        let x = match (kind, size, little) {
            ('f', 4, true) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            ('f', 4, false) => f32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ('f', _, true) => f64::from_le_bytes(b) as f32,
            ('f', _, false) => f64::from_be_bytes(b) as f32,
            ('i', _, _) => {
                // sign-extend from `size` bytes
                let shift = 64 - 8 * size as u32;
                ((i64::from_le_bytes(b) << shift) >> shift) as f32
            }
            _ => u64::from_le_bytes(b) as f32,
        };
        check_value(x, "value").map_err(|m| bad(&format!("data[{i}]"), m))?;
        data.push(x);
    }
    Ok(NpyArray {
        shape: h.shape,
        data,
    })
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses numpy's header, a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 25, 3), }`.
fn parse_header(h: &str) -> Result<Header, String> {
    let inner = h
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| format!("`{}` is not a dict", h.trim()))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (key, r) = quoted(rest).ok_or("expected a quoted key")?;
        let r = r
            .trim_start()
            .strip_prefix(':')
            .ok_or("expected `:`")?
            .trim_start();
        rest = match key {
            "descr" => {
                let (v, r) = quoted(r).ok_or("descr must be a quoted string")?;
                descr = Some(v.to_string());
                r
            }
            "fortran_order" => {
                if let Some(r) = r.strip_prefix("True") {
                    fortran = Some(true);
                    r
                } else if let Some(r) = r.strip_prefix("False") {
                    fortran = Some(false);
                    r
                } else {
                    return Err("fortran_order must be True or False".into());
                }
            }
            "shape" => {
                let r = r.strip_prefix('(').ok_or("shape must be a tuple")?;
                let end = r.find(')').ok_or("shape tuple is not closed")?;
                let dims = r[..end]
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<usize>().map_err(|_| format!("shape entry `{s}`")))
                    .collect::<Result<Vec<_>, _>>()?;
                shape = Some(dims);
                &r[end + 1..]
            }
            other => return Err(format!("unexpected key `{other}`")),
        }
        .trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(Header {
        descr: descr.ok_or("no descr")?,
        fortran_order: fortran.ok_or("no fortran_order")?,
        shape: shape.ok_or("no shape")?,
    })
}

fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.find(q)?;
    Some((&body[..end], &body[end + 1..]))
}

/// One manifest row, resolved.
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    file: PathBuf,
    meta: SampleMeta,
}

/// Splits one CSV line; fields may be double-quoted (with `""` for a quote inside).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    while let Some(ch) = chars.next() {
        match (ch, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                in_quotes = true
            }
            (',', false) => out.push(std::mem::take(&mut cur).trim().to_string()),
            (c, _) => cur.push(c),
        }
    }
    if in_quotes {
        return Err("unclosed quote".into());
    }
    out.push(cur.trim().to_string());
    Ok(out)
}

/// Reads `manifest.csv` (and `classes.txt` if present) into rows and the class list.
fn read_manifest(dir: &Path, opts: &DirOptions) -> Result<(Vec<Row>, Vec<String>), ReadError> {
    let path = dir.join("manifest.csv");
    let bytes = read_bytes(&path)?;
    let mut lines = Lines::new(&bytes);
    let err = |line: usize, m: String| ReadError::line(&path, line, m);
    let header = loop {
        match lines.next_line() {
            None => {
                return Err(ReadError::invalid(
                    &path,
                    "is empty (expected a header `file,label,...`)",
                ))
            }
            Some(l) if l.iter().all(u8::is_ascii_whitespace) => continue,
            Some(l) => break l,
        }
    };
    let header =
        std::str::from_utf8(header).map_err(|_| err(lines.line, "header is not UTF-8".into()))?;
    let cols = split_csv(header.trim_start_matches('\u{feff}')).map_err(|m| err(lines.line, m))?;
    if cols.len() < 2 || cols[0] != "file" || cols[1] != "label" {
        return Err(err(
            lines.line,
            format!("header must start with `file,label`, found `{header}`"),
        ));
    }
    let mut raw = Vec::new();
    while let Some(l) = lines.next_line() {
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = lines.line;
        let text = std::str::from_utf8(l).map_err(|_| err(line, "row is not UTF-8".into()))?;
        let fields = split_csv(text).map_err(|m| err(line, m))?;
        if fields.len() != cols.len() {
            return Err(err(
                line,
                format!("has {} fields, the header has {}", fields.len(), cols.len()),
            ));
        }
        if fields[0].is_empty() {
            return Err(err(line, "empty `file`".into()));
        }
        let mut meta = SampleMeta {
            name: Path::new(&fields[0])
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Default::default()
        };
        for (col, value) in cols.iter().zip(&fields).skip(2) {
            if value.is_empty() {
                continue;
            }
            let num = || {
                value.parse::<u32>().map_err(|_| {
                    err(
                        line,
                        format!("column `{col}`: `{value}` is not a whole number"),
                    )
                })
            };
            match col.as_str() {
                "subject" => meta.subject = Some(num()?),
                "view" => meta.view = Some(num()?),
                "setup" => meta.setup = Some(num()?),
                "replication" => meta.replication = Some(num()?),
                _ => {
                    meta.extra.insert(col.clone(), value.clone());
                }
            }
        }
        raw.push((line, fields[0].clone(), fields[1].clone(), meta));
    }
    if raw.is_empty() {
        return Err(ReadError::invalid(&path, "lists no files"));
    }

    let classes_path = dir.join("classes.txt");
    let given: Option<Vec<String>> = if classes_path.exists() {
        Some(super::read_class_names(&classes_path)?)
    } else {
        None
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let labelled: Vec<&str> = raw
        .iter()
        .map(|r| r.2.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let all_numeric = labelled.iter().all(|s| numeric(s));
    let any_numeric = labelled.iter().any(|s| numeric(s));
    let classes = match given {
        Some(c) => c,
        None if all_numeric => {
            let max = labelled
                .iter()
                .filter_map(|s| s.parse::<usize>().ok())
                .max();
            (0..max.map_or(0, |m| m.saturating_add(1)).min(1_000_000))
                .map(|i| i.to_string())
                .collect()
        }
        None => {
            if any_numeric {
                let (line, ..) = raw
                    .iter()
                    .find(|r| numeric(&r.2))
                    .cloned()
                    .unwrap_or_default();
                return Err(err(
                    line,
                    "labels mix class names and numbers; use one kind (or add classes.txt)".into(),
                ));
            }
            let set: std::collections::BTreeSet<&str> = labelled.iter().copied().collect();
            set.into_iter().map(str::to_string).collect()
        }
    };
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut rows = Vec::with_capacity(raw.len());
    for (line, file, label, mut meta) in raw {
        if !label.is_empty() {
            let l = if numeric(&label) && !index.contains_key(label.as_str()) {
                label.parse::<usize>().ok().filter(|&l| l < classes.len())
            } else {
                index.get(label.as_str()).copied()
            };
            let l = l.ok_or_else(|| {
                err(
                    line,
                    format!(
                        "label `{label}` is not one of the {} classes",
                        classes.len()
                    ),
                )
            })?;
            meta.label = Some(l);
        }
        let file = if opts.allow_outside_paths {
            dir.join(&file)
        } else {
            crate::bounded::confined(dir, &file).map_err(|m| {
                err(
                    line,
                    format!("file `{file}`: {m} of the manifest (--allow-outside-paths allows it)"),
                )
            })?
        };
        rows.push(Row { line, file, meta });
    }
    Ok((rows, classes))
}

/// Reads a folder of `.npy` files listed in its `manifest.csv`, checking each array against
/// the joint count of `layout` (a built-in name or a layout TOML path).
pub fn read_npy_dir(
    dir: &Path,
    layout: &str,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport), ReadError> {
    let layout = Layout::load(layout).map_err(|e| ReadError::layout(dir, e))?;
    let (rows, classes) = read_manifest(dir, opts)?;
    let joints = layout.num_joints();
    let results: Vec<(Row, Result<Sample, ReadError>)> = rows
        .into_par_iter()
        .filter(|r| !opts.exclude.contains(&r.meta.name))
        .map(|row| {
            let r = read_npy(&row.file).and_then(|sk| {
                if sk.joints != joints {
                    return Err(ReadError::field(
                        &row.file,
                        "shape",
                        format!(
                            "has {} joints but layout `{}` has {joints} (manifest line {})",
                            sk.joints, layout.name, row.line
                        ),
                    ));
                }
                Ok(Sample {
                    meta: row.meta.clone(),
                    skeleton: sk,
                })
            });
            (row, r)
        })
        .collect();
    let report = ReadReport {
        files: results.len(),
        ..Default::default()
    };
    let mut c = Collector::new(opts, dir, report);
    for (row, r) in results {
        c.add(row.file, r)?;
    }
    let (samples, report) = c.finish();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "npy".into());
    Ok((
        Dataset {
            name,
            layout: layout.name,
            classes,
            samples,
        },
        report,
    ))
}

/// Writes a float32 `.npy` file (C order); used by tests and by tools that export samples.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), ReadError> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Pad so the data starts on a 64-byte boundary, as numpy does.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    crate::atomic::write_atomic(path, &out).map_err(|e| ReadError::io(path, e))
}

/// Writes a dataset as a folder this module reads back: one `[M, T, V, C]` float32 `.npy` per
/// sample (named after the sample), `manifest.csv` (file, label, subject, view, setup,
/// replication) and `classes.txt`. Used by `crossglg data synth` to hand users files to try
/// `enroll` and `recognize` on. The folder is created; existing files of the same names are
/// replaced.
pub fn write_npy_folder(dataset: &crate::sample::Dataset, dir: &Path) -> Result<(), ReadError> {
    std::fs::create_dir_all(dir).map_err(|e| ReadError::io(dir, e))?;
    let opt = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut manifest = String::from("file,label,subject,view,setup,replication\n");
    for s in &dataset.samples {
        let name = &s.meta.name;
        if name.is_empty() || name.contains(['/', '\\', ',', '"', '\n']) {
            return Err(ReadError::field(
                dir,
                "sample name",
                format!("`{name}` cannot be a file name in a manifest"),
            ));
        }
        let file = format!("{name}.npy");
        let k = &s.skeleton;
        write_npy_f32(
            &dir.join(&file),
            &[k.persons, k.frames, k.joints, k.channels],
            &k.data,
        )?;
        let label = s
            .meta
            .label
            .and_then(|l| dataset.classes.get(l))
            .cloned()
            .unwrap_or_default();
        manifest += &format!(
            "{file},{},{},{},{},{}\n",
            csv_field(&label),
            opt(s.meta.subject),
            opt(s.meta.view),
            opt(s.meta.setup),
            opt(s.meta.replication)
        );
    }
    let classes: String = dataset.classes.iter().map(|c| format!("{c}\n")).collect();
    crate::atomic::write_atomic(&dir.join("classes.txt"), classes.as_bytes())
        .map_err(|e| ReadError::io(&dir.join("classes.txt"), e))?;
    crate::atomic::write_atomic(&dir.join("manifest.csv"), manifest.as_bytes())
        .map_err(|e| ReadError::io(&dir.join("manifest.csv"), e))
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
