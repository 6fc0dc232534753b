//! The per-class text tensors training needs: local (per-joint) embeddings and key-joint
//! targets, in the order of the classes being trained.
//!
//! They come from a text bank written by `crossglg text embed` (a frozen sentence encoder), or
//! from a description file embedded at start-up by `crossglg_text::build_bank` (the same
//! builder `text embed` uses) with the configured encoder: a sentence-encoder folder or the
//! `hashed` fallback (`crossglg_text::hashed`).

use std::path::Path;

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

/// Embeds a description file for `layout` (its own layout when `None`, named in the file).
fn bank_from_descriptions(
    path: &Path,
    layout: Option<&Layout>,
    enc: &TextEncoder,
) -> Result<TextBank, TextSourceError> {
    let file = DescriptionFile::load(path).map_err(crossglg_text::TextError::from)?;
    let own;
    let layout = match layout {
        Some(l) => l,
        None => {
            own = Layout::load_named_in(&file.layout, path)
                .map_err(crossglg_text::TextError::from)?;
            &own
        }
    };
    crossglg_text::validate(&file, layout, &path.display().to_string())
        .map_err(crossglg_text::TextError::from)?;
    let opts = EmbedOptions {
        key_joints: KeyJointConfig {
            floor: KEY_JOINT_FLOOR,
        },
        ..Default::default()
    };
    Ok(build_bank(&file, layout, enc, &opts)?.0)
}

/// The rows of `bank` for `classes`, in that order; each name must match one class of the bank.
fn select(bank: &TextBank, classes: &[String], origin: &str) -> Result<Rows, TextSourceError> {
    let mut rows = Vec::with_capacity(classes.len());
    for c in classes {
        let mut hits = bank
            .classes
            .iter()
            .enumerate()
            .filter(|(_, b)| norm_name(b) == norm_name(c));
        let (i, _) = hits.next().ok_or_else(|| TextSourceError::MissingClass {
            class: c.clone(),
            origin: origin.to_string(),
            have: bank.classes.join(", "),
        })?;
        if let Some((_, other)) = hits.next() {
            return Err(TextSourceError::Descriptions {
                path: origin.to_string(),
                message: format!("class `{c}` is described twice (also as `{other}`)"),
            });
        }
        rows.push(i as u32);
    }
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu)?;
    Ok(Rows {
        global: bank.global.index_select(&idx, 0)?,
        local: bank.local.index_select(&idx, 0)?,
        key_joints: bank.key_joints.index_select(&idx, 0)?,
    })
}

/// Text tensors of some classes, on the CPU.
struct Rows {
    global: Tensor,
    local: Tensor,
    key_joints: Tensor,
}

/// `bank` with its per-joint rows put in `joints`' order (a layout naming the same joints).
fn reorder_joints(
    mut bank: TextBank,
    joints: &[String],
    origin: &str,
) -> Result<TextBank, TextSourceError> {
    if bank.joints == joints {
        return Ok(bank);
    }
    let perm: Option<Vec<u32>> = (bank.joints.len() == joints.len())
        .then(|| {
            joints
                .iter()
                .map(|j| bank.joints.iter().position(|b| b == j).map(|p| p as u32))
                .collect()
        })
        .flatten();
    let perm = perm.ok_or_else(|| TextSourceError::Joints {
        origin: origin.to_string(),
        got: bank.joints.clone(),
        want: joints.to_vec(),
    })?;
    let idx = Tensor::new(perm.as_slice(), &Device::Cpu)?;
    bank.local = bank.local.index_select(&idx, 1)?;
    bank.key_joints = bank.key_joints.index_select(&idx, 1)?;
    bank.joints = joints.to_vec();
    Ok(bank)
}

/// The classes of the datasets added for training (`[[data.extra]]`), in training-label
/// order, and their description files, each written for a layout with the same joints as the
/// main one (in any order).
#[derive(Debug, Default)]
pub struct ExtraText<'a> {
    pub descriptions: Vec<&'a Path>,
    pub classes: Vec<String>,
}

/// Builds the text tensors of `classes` (dataset class names, in training-label order), then
/// of `extra.classes`, which are looked up in `extra.descriptions` only.
pub fn load_class_text(
    cfg: &TextConfig,
    layout: &Layout,
    classes: &[String],
    extra: &ExtraText,
    device: &Device,
) -> Result<ClassText, TextSourceError> {
    let origin = cfg
        .bank
        .as_ref()
        .or(cfg.descriptions.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let enc = match (&cfg.bank, &cfg.descriptions) {
        (Some(_), _) if !extra.classes.is_empty() => {
            return Err(TextSourceError::Descriptions {
                path: origin,
                message: "with [[data.extra]] datasets the text must come from `[text] descriptions`, not a bank, so that every class is embedded by the same encoder".into(),
            })
        }
        (None, Some(_)) => Some(TextEncoder::load(&cfg.encoder, cfg.hashed_dim, &Device::Cpu)?),
        _ => None,
    };
    let bank = match (&cfg.bank, &cfg.descriptions, &enc) {
        (Some(p), _, _) => TextBank::load(p, &Device::Cpu)?,
        (None, Some(p), Some(enc)) => bank_from_descriptions(p, Some(layout), enc)?,
        _ => {
            return Err(TextSourceError::Descriptions {
                path: "-".into(),
                message: "no [text] bank or descriptions configured".into(),
            })
        }
    };
    if bank.joints != layout.joints {
        return Err(TextSourceError::Joints {
            origin,
            got: bank.joints.clone(),
            want: layout.joints.clone(),
        });
    }
    let dim = bank.dim();
    let mut parts = vec![select(&bank, classes, &origin)?];
    if !extra.classes.is_empty() {
        let enc = enc.as_ref().expect("descriptions, checked above");
        let mut banks = Vec::new();
        for p in &extra.descriptions {
            let at = p.display().to_string();
            let b = reorder_joints(bank_from_descriptions(p, None, enc)?, &layout.joints, &at)?;
            banks.push((b, at));
        }
        // Each class from the one file that describes it.
        let mut rows = Vec::with_capacity(extra.classes.len());
        for c in &extra.classes {
            let found: Vec<&(TextBank, String)> = banks
                .iter()
                .filter(|(b, _)| b.classes.iter().any(|n| norm_name(n) == norm_name(c)))
                .collect();
            match found.as_slice() {
                [(b, at)] => rows.push(select(b, std::slice::from_ref(c), at)?),
                [] => {
                    let files: Vec<String> = banks.iter().map(|(_, at)| at.clone()).collect();
                    return Err(TextSourceError::MissingClass {
                        class: c.clone(),
                        origin: files.join(", "),
                        have: banks
                            .iter()
                            .flat_map(|(b, _)| b.classes.iter().cloned())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                [(_, a), (_, b), ..] => {
                    return Err(TextSourceError::Descriptions {
                        path: a.clone(),
                        message: format!("class `{c}` is described here and in {b}; a training class needs one description"),
                    })
                }
            }
        }
        parts.extend(rows);
    }
    let cat = |f: fn(&Rows) -> &Tensor| -> Result<Tensor, candle_core::Error> {
        Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0)
    };
    let global = cat(|r| &r.global)?.to_device(device)?;
    let local = cat(|r| &r.local)?.to_device(device)?;
    let key_joints = cat(|r| &r.key_joints)?;
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
        dim,
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
