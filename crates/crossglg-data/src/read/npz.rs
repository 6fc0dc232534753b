//! `.npz` archives (numpy's `np.savez` / `np.savez_compressed`: a zip of `.npy` files), in the
//! two forms skeleton data comes in:
//!
//! - **CTR-GCN's** `NTU60_CS.npz` and kin: `x_train` / `x_test` of shape `(N, T, M·V·C)` (frames
//!   padded with zeros to a fixed length, `C = 3`) and `y_train` / `y_test`, one-hot `(N, K)` or
//!   class indices `(N,)`. Every row is a sample named `train_000123` / `test_000045` (its part
//!   also in `extra["part"]`), trailing all-zero frames dropped as CTR-GCN's feeder does; `M`
//!   follows from the layout's joint count (`ntu25` when none is given and `M·V·C` is a
//!   multiple of 75). Classes are NTU's official names for 60 or 120 classes on `ntu25`, else
//!   `label_<i>`.
//! - **One array per sequence**, as `np.savez("clips.npz", wave=a, kick=b)` writes: each
//!   `[T, V, C]` or `[M, T, V, C]` array is an unlabelled sample named after its entry; the
//!   layout is given or guessed from the joint count.
//!
//! Zip entries are decompressed through a cap (the dataset budget), never trusting the sizes the
//! archive declares.

use std::io::Read;
use std::path::Path;

use super::npy::{array_to_skeleton, parse_npy, NpyArray};
use super::{Collector, DirOptions, ReadError, ReadReport, MAX_FRAMES};
use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

/// The archive's `.npy` entries, decompressed (each capped at `max_bytes`), in archive order.
fn entries(path: &Path, max_bytes: u64) -> Result<Vec<(String, NpyArray)>, ReadError> {
    let bytes = super::read_bytes(path)?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ReadError::invalid(path, format!("not an .npz (zip) archive: {e}")))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| ReadError::invalid(path, format!("zip entry {i}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let name = f
            .name()
            .map_err(|e| ReadError::invalid(path, format!("zip entry {i}: {e}")))?
            .into_owned();
        let Some(stem) = name.strip_suffix(".npy") else {
            return Err(ReadError::field(
                path,
                name,
                "is not an .npy entry (an .npz holds only .npy arrays)",
            ));
        };
        let stem = stem.to_string();
        let mut data = Vec::new();
        (&mut f)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| ReadError::field(path, &name, format!("cannot decompress: {e}")))?;
        if data.len() as u64 > max_bytes {
            return Err(ReadError::field(
                path,
                &name,
                format!("holds more than {max_bytes} bytes, beyond the dataset budget (--max-gib)"),
            ));
        }
        let inner = path.join(&name);
        out.push((stem, parse_npy(&data, &inner)?));
    }
    Ok(out)
}

/// Reads an `.npz` archive (see the module docs); `layout` is a name or TOML path.
pub fn read_npz(
    path: &Path,
    layout: Option<&str>,
    opts: &DirOptions,
) -> Result<(Dataset, ReadReport), ReadError> {
    // f64 arrays take 8 bytes per value; headers are small
    let max_bytes = (opts.max_total_values as u64)
        .saturating_mul(8)
        .saturating_add(1 << 16);
    let arrays = entries(path, max_bytes)?;
    if arrays.is_empty() {
        return Err(ReadError::invalid(path, "the archive holds no arrays"));
    }
    let load = |name: &str| Layout::load(name).map_err(|e| ReadError::layout(path, e));
    let ctr_gcn = arrays.iter().any(|(n, _)| n == "x_train" || n == "x_test");
    let (layout, samples, classes) = if ctr_gcn {
        let layout = load(layout.unwrap_or("ntu25"))?;
        let (samples, classes) = ctr_gcn_samples(path, &arrays, &layout)?;
        (layout, samples, classes)
    } else {
        let v = arrays[0]
            .1
            .shape
            .len()
            .checked_sub(2)
            .map(|i| arrays[0].1.shape[i]);
        let name = match (layout, v) {
            (Some(l), _) => l.to_string(),
            (None, Some(v)) => super::guess_layout(v, path)?,
            (None, None) => {
                return Err(ReadError::field(
                    path,
                    &arrays[0].0,
                    "is not a [T, V, C] or [M, T, V, C] array",
                ))
            }
        };
        let layout = load(&name)?;
        let mut samples = Vec::with_capacity(arrays.len());
        for (name, a) in arrays {
            let inner = path.join(format!("{name}.npy"));
            let r = array_to_skeleton(a, &inner).and_then(|skeleton| {
                if skeleton.joints != layout.num_joints() {
                    return Err(ReadError::field(
                        &inner,
                        "shape",
                        format!(
                            "has {} joints; layout `{}` has {}",
                            skeleton.joints,
                            layout.name,
                            layout.num_joints()
                        ),
                    ));
                }
                Ok(Sample {
                    meta: SampleMeta {
                        name: name.clone(),
                        ..Default::default()
                    },
                    skeleton,
                })
            });
            samples.push((inner, r));
        }
        (layout, samples, Vec::new())
    };
    let report = ReadReport {
        files: samples.len(),
        ..Default::default()
    };
    let mut c = Collector::new(opts, path, report);
    for (p, r) in samples {
        c.add(p, r)?;
    }
    let (samples, report) = c.finish();
    Ok((super::dataset_from(path, &layout, classes, samples), report))
}

type Results = Vec<(std::path::PathBuf, Result<Sample, ReadError>)>;

fn ctr_gcn_samples(
    path: &Path,
    arrays: &[(String, NpyArray)],
    layout: &Layout,
) -> Result<(Results, Vec<String>), ReadError> {
    let get = |n: &str| arrays.iter().find(|(k, _)| k == n).map(|(_, a)| a);
    let v = layout.num_joints();
    let mut out = Vec::new();
    let mut num_classes = 0usize;
    for part in ["train", "test"] {
        let Some(x) = get(&format!("x_{part}")) else {
            continue;
        };
        let xname = format!("x_{part}");
        let y = get(&format!("y_{part}")).ok_or_else(|| {
            ReadError::invalid(path, format!("has {xname} but no y_{part} (the labels)"))
        })?;
        let [n, t, k] = x.shape[..] else {
            return Err(ReadError::field(
                path,
                &xname,
                format!("shape {:?} is not (N, T, M·V·C)", x.shape),
            ));
        };
        if k == 0 || !k.is_multiple_of(3 * v) || t > MAX_FRAMES {
            return Err(ReadError::field(
                path,
                &xname,
                format!(
                    "shape {:?}: {k} values per frame are not M × {v} joints (layout `{}`) × 3, or {t} frames are too many",
                    x.shape, layout.name
                ),
            ));
        }
        let m = k / (3 * v);
        let labels: Vec<usize> = match y.shape[..] {
            [yn, kc] if yn == n && kc > 0 => {
                num_classes = num_classes.max(kc);
                y.data
                    .chunks_exact(kc)
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .fold(
                                (0, f32::MIN),
                                |best, (i, &p)| if p > best.1 { (i, p) } else { best },
                            )
                            .0
                    })
                    .collect()
            }
            [yn] if yn == n => {
                let mut l = Vec::with_capacity(n);
                for (i, &c) in y.data.iter().enumerate() {
                    if c < 0.0 || c.fract() != 0.0 || c > 100_000.0 {
                        return Err(ReadError::field(
                            path,
                            format!("y_{part}[{i}]"),
                            format!("{c} is not a class index"),
                        ));
                    }
                    num_classes = num_classes.max(c as usize + 1);
                    l.push(c as usize);
                }
                l
            }
            _ => {
                return Err(ReadError::field(
                    path,
                    format!("y_{part}"),
                    format!(
                        "shape {:?} is neither one-hot ({n}, K) nor indices ({n},)",
                        y.shape
                    ),
                ))
            }
        };
        for (i, row) in x.data.chunks_exact(t * k).enumerate() {
            // trailing all-zero frames are padding
            let frames = (0..t)
                .rev()
                .find(|&f| row[f * k..(f + 1) * k].iter().any(|&x| x != 0.0))
                .map_or(0, |f| f + 1);
            let mut sk = Skeleton::zeros(m, frames.max(1), v, 3);
            for f in 0..frames {
                for p in 0..m {
                    for j in 0..v {
                        for c in 0..3 {
                            sk.set(p, f, j, c, row[f * k + (p * v + j) * 3 + c]);
                        }
                    }
                }
            }
            let mut meta = SampleMeta {
                name: format!("{part}_{i:06}"),
                label: Some(labels[i]),
                ..Default::default()
            };
            meta.extra.insert("part".into(), part.into());
            out.push((path.join(&meta.name), Ok(Sample { meta, skeleton: sk })));
        }
    }
    let classes = if layout.name == "ntu25" && (num_classes == 60 || num_classes == 120) {
        super::ntu::NTU120_CLASSES[..num_classes]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..num_classes).map(|i| format!("label_{i}")).collect()
    };
    Ok((out, classes))
}
