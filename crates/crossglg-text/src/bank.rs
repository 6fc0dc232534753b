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

use crate::encoder::TextEncoder;
use crate::format::{validate_content, ClassDescription, DescriptionFile};
use crate::keyjoints::{key_joint_targets, KeyJointConfig};
use crate::TextError;
use crossglg_data::tagged::{self, Owned, TaggedFile};

/// The tagged-file kind and version of text banks (`format` = `crossglg-textbank/1`).
pub const BANK_KIND: &str = "textbank";
pub const BANK_VERSION: u32 = 1;

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
    // The texts against the layout's joints; whether the file was written for this layout is
    // the caller's check (`validate`, which needs the file's path to resolve a layout file).
    validate_content(file, layout, &format!("descriptions for {}", file.dataset))?;
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
    let bar = crossglg_data::progress::Progress::new(
        "texts embedded",
        unique.len() as u64,
        opts.progress,
    );
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
    bar.finish();

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
        (
            tagged::FORMAT_KEY,
            tagged::format_tag(BANK_KIND, BANK_VERSION),
        ),
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
    /// Reads a bank written by [`TextBank::save`] (`crossglg text embed`).
    pub fn load(path: &Path, device: &Device) -> Result<Self, TextError> {
        let f = TaggedFile::read(path, BANK_KIND, BANK_VERSION)?;
        let classes: Vec<String> = f.meta_json("classes")?;
        let joints: Vec<String> = f.meta_json("joints")?;
        let (k, v) = (classes.len(), joints.len());
        let tensor = |name: &str, rank: usize| -> Result<Tensor, TextError> {
            let (shape, vals) = f.f32(name, rank)?;
            Tensor::from_vec(vals, shape, device).map_err(|source| TextError::Candle {
                context: format!("text bank {}", path.display()),
                source,
            })
        };
        let global = tensor("global", 2)?;
        let d = global.dims()[1];
        let local = tensor("local", 3)?;
        let key_joints = tensor("key_joints", 2)?;
        for (name, got, want) in [
            ("global", global.dims(), vec![k, d]),
            ("local", local.dims(), vec![k, v, d]),
            ("key_joints", key_joints.dims(), vec![k, v]),
        ] {
            if got != want.as_slice() {
                return Err(f
                    .content_err(format!(
                        "tensor `{name}` has shape {got:?}, expected {want:?} ({k} classes, {v} joints, width {d})"
                    ))
                    .into());
            }
        }
        Ok(Self {
            global,
            local,
            key_joints,
            classes,
            joints,
            meta: f.meta_sorted(),
        })
    }

    pub fn dim(&self) -> usize {
        self.global.dims().get(1).copied().unwrap_or(0)
    }

    /// Writes the bank (tensors as f32, every metadata entry) to `path` atomically, as a
    /// tagged `textbank` file.
    pub fn save(&self, path: &Path) -> Result<(), TextError> {
        let err = |message: String| TextError::Bank {
            path: path.to_path_buf(),
            message,
        };
        let owned = |t: &Tensor| -> Result<Owned, TextError> {
            let v = t
                .flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(|e| err(e.to_string()))?;
            Ok(Owned::f32(t.dims().to_vec(), &v))
        };
        let tensors = vec![
            ("global", owned(&self.global)?),
            ("local", owned(&self.local)?),
            ("key_joints", owned(&self.key_joints)?),
        ];
        let mut meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        meta.remove(tagged::FORMAT_KEY);
        tagged::write_owned(path, BANK_KIND, BANK_VERSION, meta, tensors)?;
        Ok(())
    }
}
