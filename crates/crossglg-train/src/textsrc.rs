//! The per-class text tensors training needs: local (per-joint) embeddings and key-joint
//! targets, in the order of the classes being trained.
//!
//! They come from a text bank written by `crossglg text embed` (a frozen sentence encoder), or
//! from a description file embedded at start-up. When no sentence-encoder weights are at hand
//! (a fresh machine, the demo) the `hashed` encoder stands in: a bag of word uni- and bigrams
//! hashed into a fixed width and L2-normalised. It keeps the method runnable everywhere; it
//! knows no synonyms, so expect less from it than from a real encoder.

use std::path::Path;

use candle_core::{Device, Tensor};
use crossglg_data::Layout;
use crossglg_text::{key_joint_targets, DescriptionFile, KeyJointConfig, TextBank};

use crate::config::{KeyJointTargets, TextConfig};

#[derive(Debug, thiserror::Error)]
pub enum TextSourceError {
    #[error(transparent)]
    Text(#[from] crossglg_text::TextError),
    #[error("descriptions {path}: {message}")]
    Descriptions { path: String, message: String },
    #[error("text for class `{class}` is missing from {origin} (it has: {have})")]
    MissingClass {
        class: String,
        origin: String,
        have: String,
    },
    #[error("text {origin}: joints {got:?} do not match the layout's {want:?}")]
    Joints {
        origin: String,
        got: Vec<String>,
        want: Vec<String>,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Text tensors for a list of classes, row `i` belonging to class `i` of that list.
pub struct ClassText {
    /// `(K, D)`: the global descriptions.
    pub global: Tensor,
    /// `(K, V, D)`
    pub local: Tensor,
    /// `(K, V)`, rows sum to 1.
    pub key_joints: Tensor,
    pub dim: usize,
    /// What produced it, for the run record.
    pub origin: String,
}

fn norm_name(s: &str) -> String {
    s.trim().to_lowercase().replace(['_', '-'], " ")
}

/// Builds the text tensors of `classes` (dataset class names, in training-label order).
pub fn load_class_text(
    cfg: &TextConfig,
    layout: &Layout,
    classes: &[String],
    device: &Device,
) -> Result<ClassText, TextSourceError> {
    let bank = if let Some(p) = &cfg.bank {
        TextBank::load(p, &Device::Cpu)?
    } else if let Some(p) = &cfg.descriptions {
        let file = DescriptionFile::load(p).map_err(crossglg_text::TextError::from)?;
        crossglg_text::validate(&file, layout, &p.display().to_string())
            .map_err(crossglg_text::TextError::from)?;
        if cfg.encoder == "hashed" {
            hashed_bank(&file, layout, cfg.hashed_dim)?
        } else {
            let enc = crossglg_text::SentenceEncoder::load(Path::new(&cfg.encoder), &Device::Cpu)?;
            bank_with_encoder(&file, layout, &enc)?
        }
    } else {
        return Err(TextSourceError::Descriptions {
            path: "-".into(),
            message: "no [text] bank or descriptions configured".into(),
        });
    };
    let origin = cfg
        .bank
        .as_ref()
        .or(cfg.descriptions.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if bank.joints != layout.joints {
        return Err(TextSourceError::Joints {
            origin,
            got: bank.joints.clone(),
            want: layout.joints.clone(),
        });
    }
    let mut rows = Vec::with_capacity(classes.len());
    for c in classes {
        let i = bank
            .classes
            .iter()
            .position(|b| norm_name(b) == norm_name(c))
            .ok_or_else(|| TextSourceError::MissingClass {
                class: c.clone(),
                origin: origin.clone(),
                have: bank.classes.join(", "),
            })?;
        rows.push(i as u32);
    }
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu)?;
    let global = bank.global.index_select(&idx, 0)?.to_device(device)?;
    let local = bank.local.index_select(&idx, 0)?.to_device(device)?;
    let key_joints = bank.key_joints.index_select(&idx, 0)?;
    let key_joints = match cfg.key_joints {
        KeyJointTargets::Raw => key_joints,
        KeyJointTargets::Contrast => {
            let rows = contrast_targets(&key_joints.to_vec2::<f32>()?, KEY_JOINT_FLOOR);
            let (k, v) = key_joints.dims2()?;
            Tensor::from_vec(rows.concat(), (k, v), &Device::Cpu)?
        }
    }
    .to_device(device)?;
    let origin = format!(
        "{origin} ({})",
        if cfg.bank.is_some() {
            "text bank".to_string()
        } else {
            format!("encoder {}", cfg.encoder)
        }
    );
    Ok(ClassText {
        dim: bank.dim(),
        global,
        local,
        key_joints,
        origin,
    })
}

/// The uniform share of a key-joint target (as in `KeyJointConfig::default`).
const KEY_JOINT_FLOOR: f32 = 0.1;

/// Graded key-joint targets: each class keeps only what it has *above the mean of the training
/// classes* per joint, renormalised, with `floor` spread evenly. Where the key-joint lists are
/// nearly the same for every class (12 of MSR's 15 auxiliary classes name the right arm), the
/// raw targets all say the same thing; these say what sets each class apart. A class with
/// nothing above the mean gets the uniform distribution.
pub fn contrast_targets(rows: &[Vec<f32>], floor: f32) -> Vec<Vec<f32>> {
    let k = rows.len().max(1) as f32;
    let v = rows.first().map_or(0, Vec::len);
    let mean: Vec<f32> = (0..v)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / k)
        .collect();
    rows.iter()
        .map(|r| {
            let above: Vec<f32> = r.iter().zip(&mean).map(|(a, m)| (a - m).max(0.0)).collect();
            let s: f32 = above.iter().sum();
            if s <= 1e-9 {
                return vec![1.0 / v as f32; v];
            }
            above
                .iter()
                .map(|a| (1.0 - floor) * a / s + floor / v as f32)
                .collect()
        })
        .collect()
}

fn sorted_classes(file: &DescriptionFile) -> Vec<&crossglg_text::ClassDescription> {
    let mut classes: Vec<_> = file.classes.iter().collect();
    classes.sort_by_key(|c| c.id);
    classes
}

fn assemble(
    file: &DescriptionFile,
    layout: &Layout,
    dim: usize,
    embed: impl Fn(&[&str]) -> Result<Vec<Vec<f32>>, TextSourceError>,
) -> Result<TextBank, TextSourceError> {
    let classes = sorted_classes(file);
    let (k, v) = (classes.len(), layout.num_joints());
    let globals: Vec<&str> = classes.iter().map(|c| c.global.as_str()).collect();
    let mut locals: Vec<&str> = Vec::with_capacity(k * v);
    for c in &classes {
        for j in &layout.joints {
            locals.push(c.local.get(j).map(String::as_str).unwrap_or(""));
        }
    }
    let g: Vec<f32> = embed(&globals)?.concat();
    let l: Vec<f32> = embed(&locals)?.concat();
    let kj: Vec<f32> = key_joint_targets(
        file,
        layout,
        &KeyJointConfig {
            floor: KEY_JOINT_FLOOR,
        },
    )
    .concat();
    let dev = Device::Cpu;
    Ok(TextBank {
        global: Tensor::from_vec(g, (k, dim), &dev)?,
        local: Tensor::from_vec(l, (k, v, dim), &dev)?,
        key_joints: Tensor::from_vec(kj, (k, v), &dev)?,
        classes: classes.iter().map(|c| c.name.clone()).collect(),
        joints: layout.joints.clone(),
        meta: Default::default(),
    })
}

fn bank_with_encoder(
    file: &DescriptionFile,
    layout: &Layout,
    enc: &crossglg_text::SentenceEncoder,
) -> Result<TextBank, TextSourceError> {
    assemble(file, layout, enc.dim(), |t| Ok(enc.encode_vecs(t)?))
}

/// A text bank from the hashed bag-of-words encoder (see the module docs).
pub fn hashed_bank(
    file: &DescriptionFile,
    layout: &Layout,
    dim: usize,
) -> Result<TextBank, TextSourceError> {
    assemble(file, layout, dim, |t| {
        Ok(t.iter().map(|s| hashed_embedding(s, dim)).collect())
    })
}

/// Word uni- and bigrams, hashed (FNV-1a) with a sign bit into `dim` slots, L2-normalised.
pub fn hashed_embedding(text: &str, dim: usize) -> Vec<f32> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let mut v = vec![0f32; dim.max(1)];
    let mut add = |key: &str| {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % dim.max(1) as u64) as usize] += sign;
    };
    for w in &words {
        add(w);
    }
    for p in words.windows(2) {
        add(&format!("{} {}", p[0], p[1]));
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_targets_keep_what_sets_a_class_apart() {
        // Three classes over four joints; every class names joint 0 (the "right arm" case).
        let rows = vec![
            vec![0.7, 0.1, 0.1, 0.1],
            vec![0.4, 0.4, 0.1, 0.1],
            vec![0.4, 0.1, 0.4, 0.1],
        ];
        let c = contrast_targets(&rows, 0.1);
        for r in &c {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{r:?}");
            assert!(r.iter().all(|x| *x >= 0.1 / 4.0 - 1e-7));
        }
        // Class 0 stands out at joint 0, class 1 at joint 1, class 2 at joint 2.
        for (i, r) in c.iter().enumerate() {
            let best = (0..4).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
            assert_eq!(best, i, "{r:?}");
        }
        // Raw targets put joint 0 first for every class.
        assert!(rows.iter().all(|r| r[0] >= r[1] && r[0] >= r[2]));
        // Identical classes: nothing above the mean, uniform.
        let same = contrast_targets(&[vec![0.5, 0.5], vec![0.5, 0.5]], 0.1);
        assert_eq!(same, vec![vec![0.5, 0.5], vec![0.5, 0.5]]);
    }

    #[test]
    fn hashed_embedding_is_normalised_and_separates_texts() {
        let a = hashed_embedding("the right hand rises to the mouth", 256);
        let b = hashed_embedding("the right hand rises to the mouth", 256);
        let c = hashed_embedding("both feet leave the ground in a jump", 256);
        assert_eq!(a, b);
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        let dot: f32 = a.iter().zip(&c).map(|(x, y)| x * y).sum();
        assert!(dot.abs() < 0.5, "unrelated texts too similar: {dot}");
        assert!(hashed_embedding("", 8).iter().all(|x| *x == 0.0));
    }
}
