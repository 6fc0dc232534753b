//! The text bank: a description file embedded by a frozen sentence encoder, stored as one
//! safetensors file that training reads (the text model is never loaded during training).
//!
//! Tensors (f32): `global` [classes, D], `local` [classes, joints, D] (joints in layout order),
//! `key_joints` [classes, joints] (key-joint targets, rows sum to 1). Classes are in id order.
//! Metadata (strings): `format` = `crossglg-textbank/1`, `dataset`, `layout`, `encoder`, `dim`,
//! `classes` and `joints` (JSON arrays of names), `descriptions_model`, `key_joint_floor`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use crossglg_data::Layout;
use safetensors::tensor::{Dtype, TensorView};

use crate::encoder::TextEncoder;
use crate::format::{validate, ClassDescription, DescriptionFile};
use crate::keyjoints::{key_joint_targets, KeyJointConfig};
use crate::TextError;
use crossglg_data::atomic::write_atomic;

pub const BANK_FORMAT: &str = "crossglg-textbank/1";

#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Sentences per encoder call.
    pub batch: usize,
    pub key_joints: KeyJointConfig,
    pub progress: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            batch: 64,
            key_joints: KeyJointConfig::default(),
            progress: false,
        }
    }
}

/// What `embed_descriptions` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedSummary {
    pub classes: usize,
    pub joints: usize,
    pub dim: usize,
    /// Distinct texts actually embedded (identical texts are embedded once).
    pub unique_texts: usize,
}

/// Validates `file` against `layout` and embeds every global and local text in batches: the one
/// text-bank builder, for `crossglg text embed` (then [`TextBank::save`]) and for training
/// straight from a description file. The bank lives on the CPU.
pub fn build_bank(
    file: &DescriptionFile,
    layout: &Layout,
    encoder: &TextEncoder,
    opts: &EmbedOptions,
) -> Result<(TextBank, EmbedSummary), TextError> {
    validate(file, layout, &format!("descriptions for {}", file.dataset))?;
    let mut classes: Vec<&ClassDescription> = file.classes.iter().collect();
    classes.sort_by_key(|c| c.id);
    let (k, v, d) = (classes.len(), layout.num_joints(), encoder.dim());

    // Body-part imports repeat texts across joints ("remains stationary"); embed each once.
    let mut unique: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut refs = Vec::with_capacity(k * (v + 1));
    for c in &classes {
        let texts = std::iter::once(c.global.as_str())
            .chain(layout.joints.iter().map(|j| c.local[j].as_str()));
        for t in texts {
            let i = *index.entry(t).or_insert_with(|| {
                unique.push(t);
                unique.len() - 1
            });
            refs.push(i);
        }
    }
    let bar = if opts.progress {
        indicatif::ProgressBar::new(unique.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Batches of similar length waste little work on padding (global texts are long, joint
    // texts short).
    let mut order: Vec<usize> = (0..unique.len()).collect();
    order.sort_by_key(|&i| unique[i].len());
    let mut vecs: Vec<f32> = vec![0.0; unique.len() * d];
    for chunk in order.chunks(opts.batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|&i| unique[i]).collect();
        for (&i, row) in chunk.iter().zip(encoder.encode_vecs(&texts)?) {
            vecs[i * d..(i + 1) * d].copy_from_slice(&row);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let mut global = Vec::with_capacity(k * d);
    let mut local = Vec::with_capacity(k * v * d);
    for (n, &r) in refs.iter().enumerate() {
        let row = &vecs[r * d..(r + 1) * d];
        if n % (v + 1) == 0 {
            global.extend_from_slice(row);
        } else {
            local.extend_from_slice(row);
        }
    }
    let targets: Vec<f32> = key_joint_targets(file, layout, &opts.key_joints)
        .into_iter()
        .flatten()
        .collect();

    let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
    let meta: BTreeMap<String, String> = [
        ("format", BANK_FORMAT.to_string()),
        ("dataset", file.dataset.clone()),
        ("layout", layout.name.clone()),
        ("encoder", encoder.name()),
        ("dim", d.to_string()),
        (
            "classes",
            serde_json::to_string(&names).expect("strings serialise"),
        ),
        (
            "joints",
            serde_json::to_string(&layout.joints).expect("strings serialise"),
        ),
        ("descriptions_model", file.provenance.model.clone()),
        ("key_joint_floor", opts.key_joints.floor.to_string()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    let cpu = Device::Cpu;
    let tensor = |data: Vec<f32>, shape: &[usize]| {
        Tensor::from_vec(data, shape, &cpu).map_err(|source| TextError::Candle {
            context: "assembling the text bank".into(),
            source,
        })
    };
    let bank = TextBank {
        global: tensor(global, &[k, d])?,
        local: tensor(local, &[k, v, d])?,
        key_joints: tensor(targets, &[k, v])?,
        classes: names,
        joints: layout.joints.clone(),
        meta,
    };
    let summary = EmbedSummary {
        classes: k,
        joints: v,
        dim: d,
        unique_texts: unique.len(),
    };
    Ok((bank, summary))
}

/// [`build_bank`], then [`TextBank::save`] to `out`.
pub fn embed_descriptions(
    file: &DescriptionFile,
    layout: &Layout,
    encoder: &TextEncoder,
    opts: &EmbedOptions,
    out: &Path,
) -> Result<EmbedSummary, TextError> {
    let (bank, summary) = build_bank(file, layout, encoder, opts)?;
    bank.save(out)?;
    Ok(summary)
}

/// A text bank read back for training.
#[derive(Debug, Clone)]
pub struct TextBank {
    /// [classes, D]
    pub global: Tensor,
    /// [classes, joints, D]
    pub local: Tensor,
    /// [classes, joints], rows sum to 1.
    pub key_joints: Tensor,
    pub classes: Vec<String>,
    pub joints: Vec<String>,
    /// Every metadata entry, including `dataset`, `layout` and `encoder`.
    pub meta: BTreeMap<String, String>,
}

impl TextBank {
    pub fn load(path: &Path, device: &Device) -> Result<Self, TextError> {
        let err = |message: String| TextError::Bank {
            path: path.to_path_buf(),
            message,
        };
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| err(e.to_string()))?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&data).map_err(|e| err(e.to_string()))?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        match meta.get("format") {
            Some(f) if f == BANK_FORMAT => {}
            other => {
                return Err(err(format!(
                    "format is {other:?}, expected `{BANK_FORMAT}` (made by `crossglg text embed`?)"
                )))
            }
        }
        let names = |key: &str| -> Result<Vec<String>, TextError> {
            let s = meta
                .get(key)
                .ok_or_else(|| err(format!("metadata `{key}` missing")))?;
            serde_json::from_str(s).map_err(|e| err(format!("metadata `{key}`: {e}")))
        };
        let classes = names("classes")?;
        let joints = names("joints")?;
        let tensor = |name: &str, shape: &[usize]| -> Result<Tensor, TextError> {
            let t = st
                .tensor(name)
                .map_err(|e| err(format!("tensor `{name}`: {e}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(err(format!(
                    "tensor `{name}` is {:?}, expected F32",
                    t.dtype()
                )));
            }
            let got = t.shape();
            if got.len() != shape.len() || got.iter().zip(shape).any(|(a, b)| *b != 0 && a != b) {
                return Err(err(format!(
                    "tensor `{name}` has shape {got:?}, expected {shape:?} (0 = any)"
                )));
            }
            let vals: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Tensor::from_vec(vals, got, device).map_err(|e| err(e.to_string()))
        };
        let (k, v) = (classes.len(), joints.len());
        let global = tensor("global", &[k, 0])?;
        let d = global.dim(1).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            local: tensor("local", &[k, v, d])?,
            key_joints: tensor("key_joints", &[k, v])?,
            global,
            classes,
            joints,
            meta,
        })
    }

    pub fn dim(&self) -> usize {
        self.global.dims().get(1).copied().unwrap_or(0)
    }

    /// Writes the bank (tensors as f32, every metadata entry) to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), TextError> {
        let err = |message: String| TextError::Bank {
            path: path.to_path_buf(),
            message,
        };
        let bytes = |t: &Tensor| -> Result<(Vec<u8>, Vec<usize>), TextError> {
            let v = t
                .flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(|e| err(e.to_string()))?;
            Ok((
                v.iter().flat_map(|f| f.to_le_bytes()).collect(),
                t.dims().to_vec(),
            ))
        };
        let parts = [
            ("global", bytes(&self.global)?),
            ("local", bytes(&self.local)?),
            ("key_joints", bytes(&self.key_joints)?),
        ];
        let mut views = Vec::with_capacity(parts.len());
        for (name, (data, shape)) in &parts {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| err(e.to_string()))?;
            views.push((*name, view));
        }
        let meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        let data =
            safetensors::tensor::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
        write_atomic(path, &data).map_err(|e| err(e.to_string()))
    }
}
