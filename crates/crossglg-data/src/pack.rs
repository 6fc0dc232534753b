//! Packed datasets: one safetensors file per dataset, memory-mapped and read lazily.
//!
//! Tensors (little-endian, in file order):
//! - `offsets` i64 `[N + 1]`: first row of each sample in `data` (row = one person in one frame);
//! - `frames`, `persons` i64 `[N]`: each sample's `T` and `M`;
//! - `labels` i64 `[N]`: 0-based class, `-1` when unlabelled;
//! - `data` f32 `[rows, V, C]`: every sample's `[M, T, V, C]` array, concatenated.
//!
//! The safetensors `__metadata__` map holds `format` (`crossglg-packed`), `version`, `dataset`,
//! `layout` (name), `layout_toml` (the full layout, so the file reads on its own), `classes`
//! (JSON array) and `samples` (JSON array of [`SampleMeta`]). Any safetensors reader can open it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::progress::Progress;
use safetensors::tensor::{Dtype, SafeTensors};

use crate::layout::Layout;
use crate::sample::{Dataset, Sample, SampleMeta, Skeleton};

/// The tagged-file kind and version of packed datasets (`format` = `crossglg-packed/1`; files
/// tagged `crossglg-packed` with `version = "1"` before the tagged layer still load). Packed
/// files are written by their own streaming writer (sample by sample, never all in memory)
/// and memory-mapped when read, so only the tag goes through [`crate::tagged`].
pub const KIND: &str = "packed";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The tag names another kind of file, or a newer version (the message names the file).
    #[error(transparent)]
    Tag(#[from] crate::tagged::TaggedError),
    #[error("{path} is not a crossglg packed dataset: {message}")]
    Foreign { path: PathBuf, message: String },
    #[error("{path} is a corrupt packed dataset: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot pack dataset `{dataset}`: {message}")]
    Input { dataset: String, message: String },
    #[error("{path}: sample {index} out of range ({len} samples)")]
    OutOfRange {
        path: PathBuf,
        index: usize,
        len: usize,
    },
}

impl From<crate::atomic::AtomicError> for PackError {
    fn from(e: crate::atomic::AtomicError) -> Self {
        PackError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PackError + 'a {
    move |source| PackError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Packed::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    pub samples: usize,
    pub rows: usize,
    pub bytes: u64,
}

/// A memory-mapped packed dataset.
#[derive(Debug)]
pub struct Packed {
    path: PathBuf,
    mmap: memmap2::Mmap,
    /// Absolute byte offset of the `data` tensor.
    data_start: usize,
    joints: usize,
    channels: usize,
    offsets: Vec<usize>,
    frames: Vec<usize>,
    persons: Vec<usize>,
    labels: Vec<Option<usize>>,
    metas: Vec<SampleMeta>,
    dataset: String,
    layout_name: String,
    layout_toml: String,
    classes: Vec<String>,
}

impl Packed {
    /// Writes `dataset` packed, resolving its layout by name (built-in or layout file) so the
    /// file carries the full layout.
    pub fn write(dataset: &Dataset, path: &Path) -> Result<PackSummary, PackError> {
        let layout = Layout::load(&dataset.layout).map_err(|e| PackError::Input {
            dataset: dataset.name.clone(),
            message: e.to_string(),
        })?;
        Self::write_with(dataset, &layout, path, &Progress::new("packing", 0, false))
    }

    /// Writes `dataset` with an explicit layout; `progress` ticks once per sample. The file is
    /// written next to `path` under a temporary name and renamed into place when complete.
    pub fn write_with(
        dataset: &Dataset,
        layout: &Layout,
        path: &Path,
        progress: &Progress,
    ) -> Result<PackSummary, PackError> {
        let input = |message: String| PackError::Input {
            dataset: dataset.name.clone(),
            message,
        };
        let joints = layout.num_joints();
        let channels = dataset.samples.first().map_or(3, |s| s.skeleton.channels);
        let mut offsets = Vec::with_capacity(dataset.samples.len() + 1);
        offsets.push(0i64);
        let mut rows = 0usize;
        for s in &dataset.samples {
            let k = &s.skeleton;
            if k.joints != joints || k.channels != channels {
                return Err(input(format!(
                    "sample {} has {} joints x {} channels, expected {joints} x {channels} (layout `{}`)",
                    s.meta.name, k.joints, k.channels, layout.name
                )));
            }
            if k.data.len() != k.persons * k.frames * k.joints * k.channels {
                return Err(input(format!(
                    "sample {}: data length {} does not match shape {:?}",
                    s.meta.name,
                    k.data.len(),
                    k.shape()
                )));
            }
            if let Some(l) = s.meta.label {
                if l >= dataset.classes.len() {
                    return Err(input(format!(
                        "sample {} has label {l} but there are {} classes",
                        s.meta.name,
                        dataset.classes.len()
                    )));
                }
            }
            rows += k.persons * k.frames;
            offsets.push(rows as i64);
        }
        let n = dataset.samples.len();
        let frames: Vec<i64> = dataset
            .samples
            .iter()
            .map(|s| s.skeleton.frames as i64)
            .collect();
        let persons: Vec<i64> = dataset
            .samples
            .iter()
            .map(|s| s.skeleton.persons as i64)
            .collect();
        let labels: Vec<i64> = dataset
            .samples
            .iter()
            .map(|s| s.meta.label.map_or(-1, |l| l as i64))
            .collect();
        let metas: Vec<&SampleMeta> = dataset.samples.iter().map(|s| &s.meta).collect();
        let mut meta = serde_json::Map::new();
        for (k, v) in [
            (
                crate::tagged::FORMAT_KEY,
                crate::tagged::format_tag(KIND, VERSION),
            ),
            ("dataset", dataset.name.clone()),
            ("layout", layout.name.clone()),
            ("layout_toml", layout.to_toml()),
            ("classes", to_json(&dataset.classes)),
            ("samples", to_json(&metas)),
        ] {
            meta.insert(k.into(), serde_json::Value::String(v));
        }
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        let mut at = 0usize;
        let mut entry = |dtype: &str, shape: Vec<usize>, bytes: usize| {
            let v = serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + bytes]});
            at += bytes;
            v
        };
        header.insert("offsets".into(), entry("I64", vec![n + 1], 8 * (n + 1)));
        header.insert("frames".into(), entry("I64", vec![n], 8 * n));
        header.insert("persons".into(), entry("I64", vec![n], 8 * n));
        header.insert("labels".into(), entry("I64", vec![n], 8 * n));
        header.insert(
            "data".into(),
            entry(
                "F32",
                vec![rows, joints, channels],
                4 * rows * joints * channels,
            ),
        );
        let mut head = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| input(format!("header: {e}")))?;
        // Pad so the tensors start 8-byte aligned, as safetensors' own writer does.
        while (8 + head.len()) % 8 != 0 {
            head.push(b' ');
        }

        crate::atomic::write_atomic_with(path, |tmp: &Path| {
            let file = File::create(tmp).map_err(io("create", tmp))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let wr = |w: &mut BufWriter<File>, b: &[u8]| w.write_all(b).map_err(io("write", tmp));
            wr(&mut w, &(head.len() as u64).to_le_bytes())?;
            wr(&mut w, &head)?;
            for list in [&offsets, &frames, &persons, &labels] {
                let bytes: Vec<u8> = list.iter().flat_map(|x| x.to_le_bytes()).collect();
                wr(&mut w, &bytes)?;
            }
            progress.set_length(n as u64);
            let mut buf = Vec::new();
            for s in &dataset.samples {
                buf.clear();
                buf.extend(s.skeleton.data.iter().flat_map(|x| x.to_le_bytes()));
                wr(&mut w, &buf)?;
                progress.inc(1);
            }
            w.flush().map_err(io("write", tmp))
        })?;
        progress.finish();
        let bytes = std::fs::metadata(path).map_err(io("stat", path))?.len();
        Ok(PackSummary {
            samples: n,
            rows,
            bytes,
        })
    }

    /// Opens a packed file: maps it and reads the header and the small per-sample index;
    /// joint data stay on disk until [`Packed::sample`] asks for them.
    pub fn open(path: &Path) -> Result<Packed, PackError> {
        let file = File::open(path).map_err(io("open", path))?;
        // SAFETY: the map is read-only and private to this value; like every mmap user we
        // assume the file is not truncated by another process while it is open.
        #[allow(unsafe_code)]
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io("memory-map", path))?;
        let foreign = |message: String| PackError::Foreign {
            path: path.to_path_buf(),
            message,
        };
        let corrupt = |message: String| PackError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let (header_len, meta) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| foreign(format!("not a valid safetensors file ({e})")))?;
        let map = meta.metadata().clone().unwrap_or_default();
        let get = |k: &str| {
            map.get(k)
                .cloned()
                .ok_or_else(|| corrupt(format!("header has no `{k}` entry")))
        };
        crate::tagged::check_tag(path, &map, KIND, VERSION)?;
        let base = 8 + header_len;
        let tensor = |name: &str, dtype: Dtype| {
            let info = meta
                .info(name)
                .ok_or_else(|| corrupt(format!("no `{name}` tensor")))?;
            if info.dtype != dtype {
                return Err(corrupt(format!(
                    "`{name}` is {:?}, expected {dtype:?}",
                    info.dtype
                )));
            }
            Ok((
                info.shape.clone(),
                base + info.data_offsets.0,
                base + info.data_offsets.1,
            ))
        };
        let ints = |name: &str| -> Result<Vec<i64>, PackError> {
            let (_, s, e) = tensor(name, Dtype::I64)?;
            Ok(mmap[s..e]
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect())
        };
        let offsets = ints("offsets")?;
        let frames = ints("frames")?;
        let persons = ints("persons")?;
        let labels = ints("labels")?;
        let (dshape, data_start, _) = tensor("data", Dtype::F32)?;
        let [rows, joints, channels] = dshape[..] else {
            return Err(corrupt(format!(
                "`data` has shape {dshape:?}, expected [rows, V, C]"
            )));
        };
        let n = frames.len();
        if offsets.len() != n + 1 || persons.len() != n || labels.len() != n {
            return Err(corrupt(
                "index tensors disagree on the number of samples".into(),
            ));
        }
        let classes: Vec<String> = serde_json::from_str(&get("classes")?)
            .map_err(|e| corrupt(format!("`classes` entry: {e}")))?;
        let metas: Vec<SampleMeta> = serde_json::from_str(&get("samples")?)
            .map_err(|e| corrupt(format!("`samples` entry: {e}")))?;
        if metas.len() != n {
            return Err(corrupt(format!(
                "{} sample records for {n} samples",
                metas.len()
            )));
        }
        let to_usize = |x: i64, what: &str, i: usize| {
            usize::try_from(x).map_err(|_| corrupt(format!("sample {i}: negative {what} {x}")))
        };
        let mut off = Vec::with_capacity(n + 1);
        for (i, &o) in offsets.iter().enumerate() {
            off.push(to_usize(o, "offset", i)?);
        }
        let mut fr = Vec::with_capacity(n);
        let mut pe = Vec::with_capacity(n);
        let mut la = Vec::with_capacity(n);
        for i in 0..n {
            fr.push(to_usize(frames[i], "frame count", i)?);
            pe.push(to_usize(persons[i], "person count", i)?);
            if off[i + 1] < off[i] || off[i + 1] - off[i] != fr[i] * pe[i] {
                return Err(corrupt(format!(
                    "sample {i}: offsets {}..{} do not hold {} persons x {} frames",
                    off[i],
                    off[i + 1],
                    pe[i],
                    fr[i]
                )));
            }
            let label = match labels[i] {
                -1 => None,
                l if l >= 0 && (l as usize) < classes.len() => Some(l as usize),
                l => return Err(corrupt(format!("sample {i}: label {l} out of range"))),
            };
            if metas[i].label != label {
                return Err(corrupt(format!(
                    "sample {i}: label tensor says {label:?}, metadata says {:?}",
                    metas[i].label
                )));
            }
            la.push(label);
        }
        if off[0] != 0 || off[n] != rows {
            return Err(corrupt(format!(
                "offsets end at {}, data has {rows} rows",
                off[n]
            )));
        }
        let layout_toml = get("layout_toml")?;
        Ok(Packed {
            path: path.to_path_buf(),
            data_start,
            joints,
            channels,
            offsets: off,
            frames: fr,
            persons: pe,
            labels: la,
            metas,
            dataset: get("dataset")?,
            layout_name: get("layout")?,
            layout_toml,
            classes,
            mmap,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn len(&self) -> usize {
        self.metas.len()
    }
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }
    pub fn dataset_name(&self) -> &str {
        &self.dataset
    }
    pub fn layout_name(&self) -> &str {
        &self.layout_name
    }
    pub fn layout_toml(&self) -> &str {
        &self.layout_toml
    }
    /// The layout stored in the file.
    pub fn layout(&self) -> Result<Layout, PackError> {
        Layout::from_toml_str(
            &self.layout_toml,
            &format!("{} (layout_toml)", self.path.display()),
        )
        .map_err(|e| PackError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
    pub fn joints(&self) -> usize {
        self.joints
    }
    pub fn channels(&self) -> usize {
        self.channels
    }
    pub fn labels(&self) -> &[Option<usize>] {
        &self.labels
    }
    pub fn metas(&self) -> &[SampleMeta] {
        &self.metas
    }
    pub fn meta(&self, i: usize) -> Result<&SampleMeta, PackError> {
        self.check(i)?;
        Ok(&self.metas[i])
    }
    /// `(persons, frames)` of sample `i` without reading its data.
    pub fn shape(&self, i: usize) -> Result<(usize, usize), PackError> {
        self.check(i)?;
        Ok((self.persons[i], self.frames[i]))
    }

    fn check(&self, i: usize) -> Result<(), PackError> {
        if i < self.len() {
            Ok(())
        } else {
            Err(PackError::OutOfRange {
                path: self.path.clone(),
                index: i,
                len: self.len(),
            })
        }
    }

    /// Sample `i`'s joints, copied out of the map.
    pub fn skeleton(&self, i: usize) -> Result<Skeleton, PackError> {
        self.check(i)?;
        let row = self.joints * self.channels * 4;
        let s = self.data_start + self.offsets[i] * row;
        let e = self.data_start + self.offsets[i + 1] * row;
        let data = self.mmap[s..e]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok(Skeleton {
            persons: self.persons[i],
            frames: self.frames[i],
            joints: self.joints,
            channels: self.channels,
            data,
        })
    }

    pub fn sample(&self, i: usize) -> Result<Sample, PackError> {
        Ok(Sample {
            skeleton: self.skeleton(i)?,
            meta: self.metas[i].clone(),
        })
    }

    /// Reads everything back into memory.
    pub fn to_dataset(&self) -> Result<Dataset, PackError> {
        Ok(Dataset {
            name: self.dataset.clone(),
            layout: self.layout_name.clone(),
            classes: self.classes.clone(),
            samples: (0..self.len())
                .map(|i| self.sample(i))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Writes a dataset that has already been read into memory as a packed file, with a progress
/// bar on stderr when `show_progress`. The layout is resolved from `dataset.layout` unless
/// given.
pub fn convert(
    dataset: &Dataset,
    layout: Option<&Layout>,
    out: &Path,
    show_progress: bool,
) -> Result<PackSummary, PackError> {
    let resolved;
    let layout = match layout {
        Some(l) => l,
        None => {
            resolved = Layout::load(&dataset.layout).map_err(|e| PackError::Input {
                dataset: dataset.name.clone(),
                message: e.to_string(),
            })?;
            &resolved
        }
    };
    let bar = crate::progress::Progress::new(
        &format!("packing {}", dataset.name),
        dataset.samples.len() as u64,
        show_progress,
    );
    Packed::write_with(dataset, layout, out, &bar)
}

/// A metadata value as a JSON string (plain data always serialises).
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data always serialises to JSON")
}
