//! The training configuration: one TOML file (see `configs/`), overridable from the command
//! line with `--set section.key=value`. The fully resolved config is stored in every
//! checkpoint, so a run directory always says how it was made.

use std::path::{Path, PathBuf};

use crossglg_data::preprocess::PreprocessConfig;
use crossglg_data::synth::SynthConfig;
use crossglg_model::CrossGlgConfig;
use serde::{Deserialize, Serialize};

use crate::optim::OptimConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Where the samples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A packed dataset written by `crossglg data convert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<PathBuf>,
    /// Generate the synthetic dataset instead (the demo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SynthConfig>,
    /// One-shot split: a built-in name (`ntu120`, `ntu60`, `nwucla`, `msr`, …) or a TOML file.
    pub split: String,
    /// Train on the first `k` auxiliary classes only (the auxiliary sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auxiliary: Option<usize>,
    /// Sample names to exclude (e.g. NTU's missing-skeleton list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_list: Option<PathBuf>,
    /// Rotated fold `k`: every class label of the split shifted by `k` (needs an exemplar
    /// rule; MSR has folds 0..4 with distinct novel classes, NW-UCLA 0..2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    /// Validation split `offset`: the auxiliary classes at positions `offset mod
    /// validation_every` become pseudo-novel and the test classes are left out entirely, so
    /// settings can be chosen without touching them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<usize>,
    /// See `validation` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_every: Option<usize>,
}

/// Where the text knowledge comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// A text bank written by `crossglg text embed` (preferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<PathBuf>,
    /// Or a description file, embedded at start-up with `encoder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptions: Option<PathBuf>,
    /// A sentence-encoder folder, or `hashed` for the dependency-free bag-of-words fallback.
    #[serde(default = "default_encoder")]
    pub encoder: String,
    /// Width of the hashed fallback embedding.
    #[serde(default = "default_hashed_dim")]
    pub hashed_dim: usize,
    /// Key-joint targets of the JID loss: `raw` (each class's own key joints) or `contrast`
    /// (what each class has above the training classes' mean; see
    /// [`crate::textsrc::contrast_targets`]).
    #[serde(default)]
    pub key_joints: KeyJointTargets,
}

/// See [`TextConfig::key_joints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyJointTargets {
    #[default]
    Raw,
    Contrast,
}

fn default_encoder() -> String {
    "hashed".into()
}
fn default_hashed_dim() -> usize {
    256
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            bank: None,
            descriptions: None,
            encoder: default_encoder(),
            hashed_dim: default_hashed_dim(),
            key_joints: KeyJointTargets::Raw,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Also classify with distribution calibration from base-class statistics.
    pub calibration: bool,
    pub batch_size: usize,
    /// Also evaluate over this many random exemplar draws per novel class (0: only the
    /// protocol's fixed exemplars). Embeddings are computed once; each draw re-classifies.
    pub draws: usize,
    /// Fixes the draws: the same seed gives every run the same exemplars (independent of the
    /// training seed, so runs with different seeds or settings are compared on equal draws).
    pub draw_seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            calibration: true,
            batch_size: 64,
            draws: 0,
            draw_seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    /// `cpu` or `cuda` (`cuda:N`); CUDA needs a build with `--features cuda`.
    #[serde(default = "default_device")]
    pub device: String,
    pub data: DataConfig,
    #[serde(default)]
    pub text: TextConfig,
    #[serde(default)]
    pub preprocess: PreprocessConfig,
    /// `num_classes` and `interaction.text_dim` are filled in from the data and the text.
    pub model: CrossGlgConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub eval: EvalConfig,
}

fn default_device() -> String {
    "cpu".into()
}

impl TrainConfig {
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.into(),
            message: e.to_string(),
        })?;
        cfg.check(origin)?;
        Ok(cfg)
    }

    /// Reads a config file, applies `key=value` overrides (TOML values; bare words are taken
    /// as strings), and resolves relative paths against the file's folder.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        apply_overrides(&mut value, overrides, &origin)?;
        let text = toml::to_string(&value).expect("a table serialises");
        let mut cfg = Self::from_toml_str(&text, &origin)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config always serialises")
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(q) = p {
                if q.is_relative() {
                    *q = base.join(&*q);
                }
            }
        };
        fix(&mut self.data.packed);
        fix(&mut self.data.exclude_list);
        fix(&mut self.text.bank);
        fix(&mut self.text.descriptions);
        let enc = Path::new(&self.text.encoder);
        if self.text.encoder != "hashed" && enc.is_relative() && base.join(enc).exists() {
            self.text.encoder = base.join(enc).display().to_string();
        }
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |m: &str| {
            Err(ConfigError::Invalid {
                origin: origin.into(),
                message: m.into(),
            })
        };
        if self.data.packed.is_some() == self.data.synthetic.is_some() {
            return bad("[data] needs exactly one of `packed` or `synthetic`");
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("`epochs` and `batch_size` must be positive");
        }
        if self.model.guidance != crossglg_model::Guidance::None
            && self.text.bank.is_none()
            && self.text.descriptions.is_none()
        {
            return bad("guidance needs text: set [text] bank or descriptions (or model.guidance = \"none\")");
        }
        Ok(())
    }
}

/// `a.b.c=value` edits of a TOML table; the value is parsed as TOML, falling back to a string.
pub fn apply_overrides(
    table: &mut toml::Table,
    overrides: &[String],
    origin: &str,
) -> Result<(), ConfigError> {
    for o in overrides {
        let (key, raw) = o.split_once('=').ok_or_else(|| ConfigError::Invalid {
            origin: origin.into(),
            message: format!("override `{o}` is not key=value"),
        })?;
        let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").expect("just parsed"),
            Err(_) => toml::Value::String(raw.to_string()),
        };
        let mut cur = &mut *table;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for p in &parts[..parts.len() - 1] {
            let entry = cur
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            cur = entry.as_table_mut().ok_or_else(|| ConfigError::Invalid {
                origin: origin.into(),
                message: format!("override `{o}`: `{p}` is not a table"),
            })?;
        }
        cur.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
epochs = 2
batch_size = 8
[data]
split = "synthetic"
[data.synthetic]
samples_per_class = 4
[model]
guidance = "none"
"#;

    #[test]
    fn overrides_edit_nested_keys_and_unknown_keys_fail() {
        let mut t: toml::Table = toml::from_str(MIN).unwrap();
        apply_overrides(
            &mut t,
            &[
                "optim.lr=0.05".into(),
                "model.guidance=both".into(),
                "text.descriptions=x.json".into(),
            ],
            "t",
        )
        .unwrap();
        let cfg = TrainConfig::from_toml_str(&toml::to_string(&t).unwrap(), "t").unwrap();
        assert_eq!(cfg.optim.lr, 0.05);
        assert_eq!(cfg.model.guidance, crossglg_model::Guidance::Both);

        let e = TrainConfig::from_toml_str(&format!("{MIN}\nbogus = 1\n"), "my.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml") && e.contains("bogus"), "{e}");
    }
}
