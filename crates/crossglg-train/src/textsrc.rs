//! The per-class text tensors training needs: local (per-joint) embeddings and key-joint
//! targets, in the order of the classes being trained.
//!
//! They come from a text bank written by `crossglg text embed` (a frozen sentence encoder), or
//! from a description file embedded at start-up by `crossglg_text::build_bank` (the same
//! builder `text embed` uses) with the configured encoder: a sentence-encoder folder or the
//! `hashed` fallback (`crossglg_text::hashed`).

use candle_core::{Device, Tensor};
use crossglg_data::Layout;
use crossglg_text::bank::EmbedOptions;
use crossglg_text::{build_bank, DescriptionFile, KeyJointConfig, TextBank, TextEncoder};

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
        let enc = TextEncoder::load(&cfg.encoder, cfg.hashed_dim, &Device::Cpu)?;
        let opts = EmbedOptions {
            key_joints: KeyJointConfig {
                floor: KEY_JOINT_FLOOR,
            },
            ..Default::default()
        };
        build_bank(&file, layout, &enc, &opts)?.0
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
}
