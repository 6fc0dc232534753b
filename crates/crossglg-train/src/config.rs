//! The training configuration: one TOML file (see `configs/`), overridable from the command
//! line with `--set section.key=value`. The fully resolved config is stored in every
//! checkpoint, so a run directory always says how it was made.

use std::path::{Path, PathBuf};

use crossglg_data::preprocess::PreprocessConfig;
use crossglg_data::synth::SynthConfig;
use crossglg_model::CrossGlgConfig;
use crossglg_text::EncoderSpec;
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
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A packed dataset written by `crossglg data convert` (`packed = "FILE"`).
    Packed(PathBuf),
    /// The built-in synthetic dataset, the demo's (`[data.synthetic]`).
    Synthetic(SynthConfig),
}

/// The samples, the split and how it is varied (`[data]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DataConfigFile", into = "DataConfigFile")]
pub struct DataConfig {
    pub source: DataSource,
    /// One-shot split: a built-in name (`ntu120`, `ntu60`, `nwucla`, `msr`, …) or a TOML file.
    pub split: String,
    /// Train on the first `k` auxiliary classes only (the auxiliary sweep).
    pub auxiliary: Option<usize>,
    /// Sample names to exclude (e.g. NTU's missing-skeleton list).
    pub exclude_list: Option<PathBuf>,
    /// Rotated fold `k`: every class label of the split shifted by `k` (needs an exemplar
    /// rule; MSR has folds 0..4 with distinct novel classes, NW-UCLA 0..2).
    pub fold: Option<usize>,
    /// Validation split `offset`: the auxiliary classes at positions `offset mod
    /// validation_every` become pseudo-novel and the test classes are left out entirely, so
    /// settings can be chosen without touching them.
    pub validation: Option<usize>,
    /// See `validation` (default 3).
    pub validation_every: Option<usize>,
    /// Other datasets whose classes join the auxiliary (training) classes only
    /// (`[[data.extra]]`): more classes for the text to contrast, never evaluated.
    pub extra: Vec<ExtraData>,
}

/// A dataset whose classes are added to the training classes (`[[data.extra]]`). Its layout
/// must name the same joints as the main dataset's, in any order (NW-UCLA and MSR Action3D
/// both have Kinect v1's 20); its samples are put in the main layout's joint order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraData {
    /// A packed dataset written by `crossglg data convert`.
    pub packed: PathBuf,
    /// Its classes' descriptions, embedded with `[text] encoder` like the main ones; needed
    /// when the model uses text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptions: Option<PathBuf>,
}

impl DataConfig {
    /// The synthetic dataset's settings, when that is the source.
    pub fn synthetic(&self) -> Option<&SynthConfig> {
        match &self.source {
            DataSource::Synthetic(s) => Some(s),
            DataSource::Packed(_) => None,
        }
    }
}

/// `[data]` sets both or neither of `packed` and `synthetic`.
#[derive(Debug, thiserror::Error)]
#[error("[data] needs exactly one of `packed` or `synthetic`")]
pub struct DataSourceChoice;

impl TryFrom<DataConfigFile> for DataConfig {
    type Error = DataSourceChoice;
    fn try_from(f: DataConfigFile) -> Result<Self, DataSourceChoice> {
        let source = match (f.packed, f.synthetic) {
            (Some(p), None) => DataSource::Packed(p),
            (None, Some(s)) => DataSource::Synthetic(s),
            _ => return Err(DataSourceChoice),
        };
        Ok(DataConfig {
            source,
            split: f.split,
            auxiliary: f.auxiliary,
            exclude_list: f.exclude_list,
            fold: f.fold,
            validation: f.validation,
            validation_every: f.validation_every,
            extra: f.extra,
        })
    }
}

impl From<DataConfig> for DataConfigFile {
    fn from(d: DataConfig) -> Self {
        let (packed, synthetic) = match d.source {
            DataSource::Packed(p) => (Some(p), None),
            DataSource::Synthetic(s) => (None, Some(s)),
        };
        DataConfigFile {
            packed,
            synthetic,
            split: d.split,
            auxiliary: d.auxiliary,
            exclude_list: d.exclude_list,
            fold: d.fold,
            validation: d.validation,
            validation_every: d.validation_every,
            extra: d.extra,
        }
    }
}

/// `[data]` as written in TOML: the source as two optional keys, exactly one of them set.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataConfigFile {
    /// A packed dataset written by `crossglg data convert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    packed: Option<PathBuf>,
    /// Generate the synthetic dataset instead (the demo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    synthetic: Option<SynthConfig>,
    /// One-shot split: a built-in name (`ntu120`, `ntu60`, `nwucla`, `msr`, …) or a TOML file.
    split: String,
    /// Train on the first `k` auxiliary classes only (the auxiliary sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auxiliary: Option<usize>,
    /// Sample names to exclude (e.g. NTU's missing-skeleton list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exclude_list: Option<PathBuf>,
    /// Rotated fold `k`: every class label of the split shifted by `k` (needs an exemplar
    /// rule; MSR has folds 0..4 with distinct novel classes, NW-UCLA 0..2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fold: Option<usize>,
    /// Validation split `offset`: the auxiliary classes at positions `offset mod
    /// validation_every` become pseudo-novel and the test classes are left out entirely, so
    /// settings can be chosen without touching them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validation: Option<usize>,
    /// See `validation` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validation_every: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extra: Vec<ExtraData>,
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
    pub encoder: EncoderSpec,
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

fn default_encoder() -> EncoderSpec {
    EncoderSpec::Hashed
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
    /// With a text-target branch (`model.interaction.form = "target"`): also recognise the
    /// novel classes from their descriptions alone (`zero-shot-text`), and mix the
    /// descriptions into the one-shot decision with this weight (`cosine+text`; 0: off). Needs
    /// descriptions of the novel classes in the configured text.
    pub zero_shot: bool,
    pub text_prior: f64,
    /// Which training classes lend distribution calibration their statistics: `all`, or
    /// `main`, the main dataset's only (the classes of `[[data.extra]]` datasets left out).
    /// Not written when `all`, so runs made before the key existed still resume.
    #[serde(skip_serializing_if = "CalibrationBase::is_all")]
    pub calibration_base: CalibrationBase,
    /// How much the classes' descriptions choose the base classes that distribution
    /// calibration borrows from (0..1; `CalibrationConfig::text_weight`): 0, the exemplar's
    /// nearest base means (the paper); 1, the base classes described most alike. Needs
    /// descriptions of the training and novel classes in the configured text; any model.
    /// Not written when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub calibration_text: f64,
}

fn is_zero(w: &f64) -> bool {
    *w == 0.0
}

/// `eval.calibration_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationBase {
    #[default]
    All,
    Main,
}

impl CalibrationBase {
    fn is_all(&self) -> bool {
        *self == CalibrationBase::All
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            calibration: true,
            batch_size: 64,
            draws: 0,
            draw_seed: 0,
            zero_shot: false,
            text_prior: 0.0,
            calibration_base: CalibrationBase::All,
            calibration_text: 0.0,
        }
    }
}

/// Which family of defaults the guidance keys take when a config does not set them.
///
/// A recipe only fills keys that are absent, at load time; the resolved config (`config.toml`
/// of a run) lists every key, so it says exactly what ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// The paper's form: the cross-modal branch fed the sample's own class text (`L_c` weight
    /// 0.2), the MSE key-joint loss (weight 0.5) on each class's own key joints, features
    /// re-weighted by `V·k`. Also what a config without `recipe` gets, so older configs and
    /// checkpoints keep their meaning.
    #[default]
    Paper,
    /// This project's form (docs/results.md): the text as the target of the local-to-global
    /// branch (weight 1) with its class scores distilled into the skeleton branch (weight 1,
    /// temperature 2), a per-sample KL key-joint loss (weight 1) on contrast targets, and
    /// residual re-weighting `1 + k`.
    Target,
}

/// `(dotted key, TOML value)` pairs the target recipe fills in when absent.
const TARGET_RECIPE: &[(&str, &str)] = &[
    ("model.interaction.form", "\"target\""),
    ("model.loss.cross", "1.0"),
    ("model.loss.distill", "1.0"),
    ("model.loss.cal_form", "\"kl\""),
    ("model.loss.cal", "1.0"),
    ("model.jid.reweight", "\"residual\""),
    ("text.key_joints", "\"contrast\""),
];

/// Sets `parts` (a dotted path) to `v` unless it is present; a non-table in the way is left
/// for the deserializer to report.
fn insert_absent(t: &mut toml::Table, parts: &[&str], v: toml::Value) {
    match parts {
        [] => {}
        [last] => {
            t.entry(last.to_string()).or_insert(v);
        }
        [first, rest @ ..] => {
            let e = t
                .entry(first.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            if let Some(inner) = e.as_table_mut() {
                insert_absent(inner, rest, v);
            }
        }
    }
}

/// Fills the keys of the table's `recipe` that the table does not set.
fn expand_recipe(table: &mut toml::Table, origin: &str) -> Result<(), ConfigError> {
    let recipe = match table.get("recipe") {
        None => return Ok(()),
        Some(v) => v
            .clone()
            .try_into::<Recipe>()
            .map_err(|_| ConfigError::Invalid {
                origin: origin.into(),
                message: format!("recipe = {v}: expected \"paper\" or \"target\""),
            })?,
    };
    let keys = match recipe {
        Recipe::Paper => return Ok(()),
        Recipe::Target => TARGET_RECIPE,
    };
    for (key, raw) in keys {
        let parts: Vec<&str> = key.split('.').collect();
        let v: toml::Table = toml::from_str(&format!("v = {raw}")).expect("static value");
        insert_absent(table, &parts, v["v"].clone());
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The defaults of the guidance keys: `paper` or `target` (see [`Recipe`]).
    #[serde(default)]
    pub recipe: Recipe,
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
        let invalid = |e: &dyn std::fmt::Display| ConfigError::Invalid {
            origin: origin.into(),
            message: e.to_string(),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(&e))?;
        expand_recipe(&mut table, origin)?;
        let cfg: TrainConfig = table.try_into().map_err(|e| invalid(&e))?;
        cfg.check(origin)?;
        Ok(cfg)
    }

    /// Reads a config file, applies `key=value` overrides (TOML values; bare words are taken
    /// as strings), and resolves relative paths against the file's folder.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text =
            crossglg_data::bounded::read_to_string(path, crossglg_data::bounded::SMALL_FILE_BYTES)
                .map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
        let origin = path.display().to_string();
        let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        let overrides = anchor_override_paths(overrides, &origin)?;
        apply_overrides(&mut value, &overrides, &origin)?;
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
        if let DataSource::Packed(p) = &mut self.data.source {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        fix(&mut self.data.exclude_list);
        for e in &mut self.data.extra {
            if e.packed.is_relative() {
                e.packed = base.join(&e.packed);
            }
            fix(&mut e.descriptions);
        }
        fix(&mut self.text.bank);
        fix(&mut self.text.descriptions);
        if let EncoderSpec::Folder(enc) = &mut self.text.encoder {
            if enc.is_relative() && base.join(&*enc).exists() {
                *enc = base.join(&*enc);
            }
        }
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |m: &str| {
            Err(ConfigError::Invalid {
                origin: origin.into(),
                message: m.into(),
            })
        };
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("`epochs` and `batch_size` must be positive");
        }
        // Every number must be finite (checked first, so the comparisons below see no NaN):
        // `--set optim.lr=nan` used to train to NaN weights and report chance with exit 0.
        let v = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return bad(&format!("cannot be written back as TOML: {e}")),
        };
        if let Some(key) = first_non_finite(&v, String::new()) {
            return bad(&format!("`{key}` is not a finite number"));
        }
        let o = &self.optim;
        if o.lr <= 0.0 {
            return bad(&format!("`optim.lr` must be positive, got {}", o.lr));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad(&format!(
                "`optim.momentum` must be in [0, 1), got {}",
                o.momentum
            ));
        }
        if o.weight_decay < 0.0 || o.gamma <= 0.0 {
            return bad("`optim.weight_decay` must be at least 0 and `optim.gamma` positive");
        }
        if self.model.guidance != crossglg_model::Guidance::None
            && self.text.bank.is_none()
            && self.text.descriptions.is_none()
        {
            return bad("guidance needs text: set [text] bank or descriptions (or model.guidance = \"none\")");
        }
        // checked here rather than at the end of training, where evaluation reads them
        let e = &self.eval;
        for (key, w) in [
            ("eval.text_prior", e.text_prior),
            ("eval.calibration_text", e.calibration_text),
        ] {
            if !(0.0..=1.0).contains(&w) {
                return bad(&format!("`{key}` must be in [0, 1], got {w}"));
            }
        }
        if e.calibration_text > 0.0 && self.text.descriptions.is_none() && self.text.bank.is_none()
        {
            return bad(
                "`eval.calibration_text` needs the classes' texts: set [text] descriptions or bank",
            );
        }
        Ok(())
    }
}

/// The dotted key of the first NaN or infinite float in `v`, if any.
fn first_non_finite(v: &toml::Value, at: String) -> Option<String> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(at),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
            let key = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            first_non_finite(v, key)
        }),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_non_finite(v, format!("{at}[{i}]"))),
        _ => None,
    }
}

/// One `key=value` override: the key, and the value as TOML (a bare word is a string).
fn parse_override<'a>(o: &'a str, origin: &str) -> Result<(&'a str, toml::Value), ConfigError> {
    let (key, raw) = o.split_once('=').ok_or_else(|| ConfigError::Invalid {
        origin: origin.into(),
        message: format!("override `{o}` is not key=value"),
    })?;
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("just parsed"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    Ok((key.trim(), value))
}

/// Keys whose values are paths (what [`TrainConfig::resolve_paths`] resolves).
const PATH_KEYS: [&str; 5] = [
    "data.packed",
    "data.exclude_list",
    "text.bank",
    "text.descriptions",
    "text.encoder",
];

/// A relative path typed in `--set` means what it means on the command line: relative to the
/// current directory, not to the config file's folder. Such values are made absolute here,
/// before the file's own relative paths are resolved against its folder. `text.encoder` may
/// also name a model looked up in the model caches; it is anchored only when the path exists.
fn anchor_override_paths(overrides: &[String], origin: &str) -> Result<Vec<String>, ConfigError> {
    let cwd = std::env::current_dir().ok();
    overrides
        .iter()
        .map(|o| {
            let (key, value) = parse_override(o, origin)?;
            let (Some(cwd), Some(raw)) = (&cwd, value.as_str()) else {
                return Ok(o.clone());
            };
            let path = Path::new(raw);
            let keep = !PATH_KEYS.contains(&key)
                || path.is_absolute()
                || raw.is_empty()
                || (key == "text.encoder" && (raw == "hashed" || !cwd.join(path).exists()));
            if keep {
                return Ok(o.clone());
            }
            match cwd.join(path).to_str() {
                Some(abs) => Ok(format!("{key}={}", toml::Value::String(abs.to_string()))),
                None => Ok(o.clone()),
            }
        })
        .collect()
}

/// `a.b.c=value` edits of a TOML table; the value is parsed as TOML, falling back to a string.
pub fn apply_overrides(
    table: &mut toml::Table,
    overrides: &[String],
    origin: &str,
) -> Result<(), ConfigError> {
    for o in overrides {
        let (key, value) = parse_override(o, origin)?;
        let mut cur = &mut *table;
        let parts: Vec<&str> = key.split('.').collect();
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
    fn numbers_must_be_finite_and_in_range() {
        for (set, key) in [
            ("optim.lr=nan", "optim.lr"),
            ("optim.lr=inf", "optim.lr"),
            ("optim.lr=-0.1", "optim.lr"),
            ("optim.momentum=1.5", "optim.momentum"),
            ("model.loss.cross=nan", "model.loss.cross"),
            ("eval.text_prior=1.5", "eval.text_prior"),
            ("eval.calibration_text=-0.5", "eval.calibration_text"),
            ("eval.calibration_text=0.5", "[text] descriptions or bank"),
        ] {
            let mut t: toml::Table = toml::from_str(MIN).unwrap();
            apply_overrides(&mut t, &[set.to_string()], "t").unwrap();
            let e = TrainConfig::from_toml_str(&toml::to_string(&t).unwrap(), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{set}: {e}");
        }
    }

    #[test]
    fn set_paths_are_relative_to_the_current_directory_file_paths_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_dir = dir.path().join("configs");
        std::fs::create_dir_all(cfg_dir.join("model")).unwrap();
        let file = cfg_dir.join("c.toml");
        let text = format!("{MIN}\n[text]\ndescriptions = \"d.json\"\nencoder = \"model\"\n");
        std::fs::write(&file, text).unwrap();
        let cwd = std::env::current_dir().unwrap();

        // the file's own relative paths: against its folder
        let c = TrainConfig::load(&file, &[]).unwrap();
        assert_eq!(c.text.descriptions.unwrap(), cfg_dir.join("d.json"));
        assert_eq!(c.text.encoder, EncoderSpec::Folder(cfg_dir.join("model")));

        // paths typed in --set: against the current directory, quoted or bare
        let sets = [
            "text.descriptions=runs/x.json".to_string(),
            "text.bank=\"b c.safetensors\"".to_string(),
            format!("data.exclude_list={}", dir.path().join("abs.txt").display()),
            "optim.lr=0.01".to_string(),
        ];
        let c = TrainConfig::load(&file, &sets).unwrap();
        assert_eq!(c.text.descriptions.unwrap(), cwd.join("runs/x.json"));
        assert_eq!(c.text.bank.unwrap(), cwd.join("b c.safetensors"));
        assert_eq!(c.data.exclude_list.unwrap(), dir.path().join("abs.txt"));
        assert_eq!(c.optim.lr, 0.01);

        // an encoder that is not a path here stays a name (or the hashed encoder)
        let c = TrainConfig::load(&file, &["text.encoder=hashed".into()]).unwrap();
        assert_eq!(c.text.encoder, EncoderSpec::Hashed);
        let c = TrainConfig::load(&file, &["text.encoder=no-such-model-here".into()]).unwrap();
        assert_eq!(
            c.text.encoder,
            EncoderSpec::Folder(PathBuf::from("no-such-model-here"))
        );
        // a folder that exists here is anchored here
        let c = TrainConfig::load(&file, &["text.encoder=src".into()]).unwrap();
        assert_eq!(c.text.encoder, EncoderSpec::Folder(cwd.join("src")));
    }

    #[test]
    fn data_source_is_one_of_packed_or_synthetic() {
        let c = TrainConfig::from_toml_str(MIN, "t").unwrap();
        assert!(matches!(c.data.source, DataSource::Synthetic(_)));
        let packed = MIN
            .replace("[data.synthetic]\nsamples_per_class = 4\n", "")
            .replace(
                "split = \"synthetic\"",
                "split = \"msr\"\npacked = \"x.safetensors\"",
            );
        let p = TrainConfig::from_toml_str(&packed, "t").unwrap();
        assert_eq!(p.data.source, DataSource::Packed("x.safetensors".into()));
        assert!(p.data.synthetic().is_none());
        // The resolved config writes the source back as the key it came from.
        let back = TrainConfig::from_toml_str(&p.to_toml(), "t").unwrap();
        assert_eq!(back.data, p.data);
        for bad in [
            MIN.replace(
                "split = \"synthetic\"",
                "split = \"synthetic\"\npacked = \"x\"",
            ),
            MIN.replace("[data.synthetic]\nsamples_per_class = 4\n", ""),
        ] {
            let e = TrainConfig::from_toml_str(&bad, "mine.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("mine.toml") && e.contains("exactly one"), "{e}");
        }
    }

    #[test]
    fn recipes_fill_absent_keys_only() {
        let paper = TrainConfig::from_toml_str(MIN, "t").unwrap();
        assert_eq!(paper.recipe, Recipe::Paper);
        assert_eq!(
            paper.model.interaction.form,
            crossglg_model::CrossForm::Paper
        );
        assert_eq!(paper.model.loss.cross, 0.2);

        let text = format!("recipe = \"target\"\n{MIN}");
        let t = TrainConfig::from_toml_str(&text, "t").unwrap();
        assert_eq!(t.model.interaction.form, crossglg_model::CrossForm::Target);
        assert_eq!(t.model.loss.cal_form, crossglg_model::CalLoss::Kl);
        assert_eq!(
            (t.model.loss.cross, t.model.loss.distill, t.model.loss.cal),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(t.model.jid.reweight, crossglg_model::Reweight::Residual);
        assert_eq!(t.text.key_joints, KeyJointTargets::Contrast);
        // an explicit key wins over the recipe
        let mut table: toml::Table = toml::from_str(&text).unwrap();
        apply_overrides(&mut table, &["model.loss.cross=0.3".into()], "t").unwrap();
        let o = TrainConfig::from_toml_str(&toml::to_string(&table).unwrap(), "t").unwrap();
        assert_eq!(o.model.loss.cross, 0.3);
        assert_eq!(o.model.loss.distill, 1.0);
        // the resolved config reads back to the same config (what checkpoints store)
        let again = TrainConfig::from_toml_str(&t.to_toml(), "t").unwrap();
        assert_eq!(again, t);
        let bad = TrainConfig::from_toml_str(&format!("recipe = \"nope\"\n{MIN}"), "my.toml")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("my.toml") && bad.contains("paper"), "{bad}");
    }

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
