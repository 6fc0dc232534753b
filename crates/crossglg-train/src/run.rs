//! A training run end to end: data and split, text, model, the epoch loop with checkpoints
//! and metrics, then base-class statistics and the one-shot evaluation.
//!
//! A run directory holds `config.toml` (resolved), `metrics.jsonl`, `checkpoints/epoch-NNN.safetensors`,
//! `last.safetensors`, `base_stats.safetensors`, `report.json` and `report.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use crossglg_data::preprocess::{Mode, Preprocessor};
use crossglg_data::protocol::{Assignment, Split};
use crossglg_data::rng::keyed_rng;
use crossglg_data::tagged::{format_tag, TaggedFile, FORMAT_KEY};
use crossglg_data::{Layout, Skeleton};
use crossglg_model::{
    build_seeded, frozen, set_text_centers, trainable_vars, CrossForm, CrossGlg, CrossGlgConfig,
    Graph, Guidance, StepText,
};
use rand::seq::SliceRandom;

use crate::checkpoint::{Checkpoint, Position};
use crate::config::{DataSource, TrainConfig};
use crate::optim::Optimizer;
use crate::source::{InMemory, SampleSource};
use crate::textsrc::{load_class_text, ExtraText};
use crossglg_infer::agreement::{self, AgreementRow};
use crossglg_infer::calibrate::{evaluate_calibrated_with_text, BaseStats, CalibrationConfig};
use crossglg_infer::embedder::{EmbedError, Embedder};
use crossglg_infer::eval::{
    evaluate_cosine, evaluate_draws, evaluate_with_text, Draws, EvalError, NovelPool, OneShotSet,
};
use crossglg_infer::gallery::{calibrate_rows, calibrate_threshold, Gallery, ThresholdCalibration};
use crossglg_infer::report::EvalReport;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Device(#[from] crossglg_model::DeviceError),
    #[error(transparent)]
    Layout(#[from] crossglg_data::LayoutError),
    #[error(transparent)]
    Synth(#[from] crossglg_data::synth::SynthError),
    #[error(transparent)]
    Pack(#[from] crossglg_data::pack::PackError),
    #[error(transparent)]
    Combine(#[from] crate::source::CombineError),
    #[error(transparent)]
    Protocol(#[from] crossglg_data::protocol::ProtocolError),
    #[error(transparent)]
    Preprocess(#[from] crossglg_data::preprocess::PreprocessError),
    /// The samples themselves do not fit the run (no labels, no training samples, ...).
    #[error("data: {0}")]
    Data(String),
    #[error(transparent)]
    Text(#[from] crate::textsrc::TextSourceError),
    #[error(transparent)]
    Model(#[from] crossglg_model::ModelError),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("run directory {path}: {message}")]
    RunDir { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not the JSON expected here: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("evaluation: {0}")]
    Eval(#[from] crossglg_infer::eval::EvalError),
    #[error("distribution calibration: {0}")]
    Calibrate(#[from] crossglg_infer::calibrate::CalibrateError),
    #[error(transparent)]
    Gallery(#[from] crossglg_infer::gallery::GalleryError),
}

fn data_err(message: impl Into<String>) -> RunError {
    RunError::Data(message.into())
}

pub fn device_from(name: &str) -> Result<Device, RunError> {
    Ok(crossglg_model::device_from(name)?)
}

/// Opens the configured dataset.
pub fn open_source(cfg: &TrainConfig) -> Result<Box<dyn SampleSource>, RunError> {
    let main: Box<dyn SampleSource> = match &cfg.data.source {
        DataSource::Synthetic(s) => {
            let layout = Layout::load(&s.layout)?;
            let dataset = crossglg_data::synth::generate_with_layout(s, &layout)?;
            Box::new(InMemory { dataset, layout })
        }
        DataSource::Packed(path) => crate::source::open_packed(path)?,
    };
    if cfg.data.extra.is_empty() {
        return Ok(main);
    }
    let mut extra = Vec::with_capacity(cfg.data.extra.len());
    for e in &cfg.data.extra {
        extra.push((
            e.packed.display().to_string(),
            crate::source::open_packed(&e.packed)?,
        ));
    }
    Ok(Box::new(crate::source::Combined::new(main, extra)?))
}

/// The config's split for the samples of `src`: [`resolve_split`], with the classes of the
/// datasets added for training (`[[data.extra]]`) as auxiliary classes.
pub fn resolve_split_for(cfg: &TrainConfig, src: &dyn SampleSource) -> Result<Split, RunError> {
    Ok(resolve_split(cfg)?.with_extra_auxiliary(src.extra_classes())?)
}

/// The split of the synthetic dataset: every 4th class novel (like MSR Action3D), the
/// exemplar is subject 1's first sample from view 1.
pub fn synthetic_split(num_classes: usize) -> Split {
    let novel: Vec<usize> = (0..num_classes).step_by(4).collect();
    Split {
        name: "synthetic".into(),
        description: "synthetic motions: every 4th class novel; exemplar subject 1, view 1".into(),
        auxiliary_classes: (0..num_classes).filter(|c| !novel.contains(c)).collect(),
        novel_classes: novel,
        exemplars: crossglg_data::protocol::Exemplars::Rule {
            subject: Some(1),
            view: Some(1),
            setup: None,
        },
        queries: Default::default(),
        excluded: Default::default(),
        sweep: vec![],
    }
}

/// The split the config names, restricted to `auxiliary` classes when set.
pub fn resolve_split(cfg: &TrainConfig) -> Result<Split, RunError> {
    let mut split = match (cfg.data.synthetic(), cfg.data.split.as_str()) {
        (Some(s), "synthetic") => synthetic_split(crossglg_data::synth::class_names(s)?.len()),
        (_, name) => Split::load(name)?,
    };
    if let Some(p) = &cfg.data.exclude_list {
        let names = crossglg_data::protocol::read_name_list(p)?;
        split = split.with_excluded(names);
    }
    if let Some(k) = cfg.data.fold {
        split = split.rotated(k)?;
    }
    if let Some(offset) = cfg.data.validation {
        let every = cfg.data.validation_every.unwrap_or(3);
        split = split.validation(offset, every)?;
    }
    if let Some(k) = cfg.data.auxiliary {
        split = split.with_auxiliary(k)?;
    }
    Ok(split)
}

/// The resolved model config: class count from the split, text width from the text.
fn model_config(
    cfg: &TrainConfig,
    num_classes: usize,
    channels: usize,
    text_dim: Option<usize>,
) -> CrossGlgConfig {
    let mut m = cfg.model.clone();
    m.num_classes = num_classes;
    if let Some(d) = text_dim {
        m.interaction.text_dim = d;
    }
    m.encoder.num_persons = cfg.preprocess.persons;
    m.encoder.in_channels = channels;
    m
}

pub fn graph_of(layout: &Layout) -> Result<Graph, RunError> {
    Ok(Graph::new(
        layout.num_joints(),
        layout.edges.clone(),
        layout.center,
    )?)
}

/// SHA-256 of the weights (names, shapes, f32 values in name order); see
/// [`TrainedModel::weights_hash`].
pub(crate) fn weights_hash(varmap: &VarMap) -> Result<String, RunError> {
    use sha2::{Digest, Sha256};
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = data[name].as_tensor();
        h.update(name.as_bytes());
        for d in t.dims() {
            h.update((*d as u64).to_le_bytes());
        }
        for x in t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()? {
            h.update(x.to_le_bytes());
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn load_weights(varmap: &VarMap, ck: &Checkpoint, origin: &Path) -> Result<(), RunError> {
    set_weights(varmap, &ck.tensors, "model.", origin)
}

/// Sets every variable of `varmap` from `tensors["<prefix><name>"]`.
fn set_weights(
    varmap: &VarMap,
    tensors: &std::collections::HashMap<String, Tensor>,
    prefix: &str,
    origin: &Path,
) -> Result<(), RunError> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    for (name, var) in data.iter() {
        let t = tensors
            .get(&format!("{prefix}{name}"))
            .ok_or_else(|| RunError::RunDir {
                path: origin.to_path_buf(),
                message: format!("the weights lack `{name}` (different model config?)"),
            })?;
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)
            .map_err(|e| RunError::RunDir {
                path: origin.to_path_buf(),
                message: format!("weight `{name}`: {e}"),
            })?;
    }
    Ok(())
}

/// A trained model's weights with what rebuilds it, read from a run directory's
/// `last.safetensors`, a checkpoint, or an exported folder's `model.safetensors`.
pub struct LoadedWeights {
    pub varmap: VarMap,
    pub cfg: TrainConfig,
    pub layout: Layout,
    pub graph: Graph,
    /// The file the weights came from.
    pub file: PathBuf,
}

/// Tagged-file kind of exported weights (`crossglg export`): the model's variables under their
/// own names, no optimiser state, the config and layout in the metadata.
pub const MODEL_KIND: &str = "model";
pub const MODEL_VERSION: u32 = 1;

impl LoadedWeights {
    /// A file of the run the weights belong to: beside them (a run directory or an export), or
    /// one folder up (a checkpoint in `checkpoints/`).
    pub fn run_file(&self, name: &str) -> Option<PathBuf> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        [dir.join(name), dir.join("..").join(name)]
            .into_iter()
            .find(|p| p.is_file())
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self, RunError> {
        let file = if path.is_dir() {
            let last = path.join("last.safetensors");
            let exported = path.join("model.safetensors");
            if !last.exists() && exported.exists() {
                exported
            } else {
                last
            }
        } else {
            path.to_path_buf()
        };
        let bytes = crossglg_data::bounded::read(&file, crossglg_data::bounded::DATA_FILE_BYTES)
            .map_err(|source| RunError::Read {
                path: file.clone(),
                source,
            })?;
        let tag = safetensors::SafeTensors::read_metadata(&bytes)
            .ok()
            .and_then(|(_, h)| h.metadata().as_ref()?.get(FORMAT_KEY).cloned());
        let (tensors, prefix, config_toml, meta) =
            if tag.as_deref() == Some(format_tag(MODEL_KIND, MODEL_VERSION).as_str()) {
                let f = TaggedFile::from_bytes(&file, bytes, MODEL_KIND, MODEL_VERSION)
                    .map_err(crate::checkpoint::CheckpointError::from)?;
                if f.meta.get("names").is_some_and(|n| n != "crossglg") {
                    return Err(RunError::RunDir {
                        path: file,
                        message: "these weights carry PyTorch names (`crossglg export --torch`); \
                                  load the folder's crossglg-named `model.safetensors` instead"
                            .into(),
                    });
                }
                let t = candle_core::safetensors::load_buffer(f.bytes(), device)?;
                let config = f
                    .meta_str("config")
                    .map_err(crate::checkpoint::CheckpointError::from)?
                    .to_string();
                (t, "", config, f.meta)
            } else {
                let ck = Checkpoint::from_bytes(&file, bytes, device)?;
                (ck.tensors, "model.", ck.config_toml, ck.metadata)
            };
        let cfg = TrainConfig::from_toml_str(&config_toml, &file.display().to_string())?;
        // The layout travels with the weights, so a model serves without its training data.
        let layout_toml = meta.get("layout").ok_or_else(|| RunError::RunDir {
            path: file.clone(),
            message: "the weights' metadata has no `layout`".into(),
        })?;
        let layout = Layout::from_toml_str(layout_toml, &file.display().to_string())?;
        let graph = graph_of(&layout)?;
        let (varmap, _) = build_seeded(&cfg.model, &graph, cfg.seed, DType::F32, device)?;
        set_weights(&varmap, &tensors, prefix, &file)?;
        Ok(Self {
            varmap,
            cfg,
            layout,
            graph,
            file,
        })
    }
}

/// Labels of the training samples, remapped to `0..aux.len()` in the split's auxiliary order.
fn train_labels(
    src: &dyn SampleSource,
    a: &Assignment,
    aux: &[usize],
) -> Result<Vec<u32>, RunError> {
    a.train
        .iter()
        .map(|&i| {
            let l = src
                .meta(i)
                .label
                .ok_or_else(|| data_err(format!("sample `{}` has no label", src.meta(i).name)))?;
            aux.iter()
                .position(|&c| c == l)
                .map(|p| p as u32)
                .ok_or_else(|| {
                    data_err(format!(
                        "train sample `{}` is not in an auxiliary class",
                        src.meta(i).name
                    ))
                })
        })
        .collect()
}

/// Preprocesses `indices` and returns the `(N, C, T, V, M)` tensor.
fn batch_tensor(
    pre: &Preprocessor,
    src: &dyn SampleSource,
    indices: &[usize],
    mode: Mode,
    seed: u64,
    epoch: u64,
    device: &Device,
) -> Result<Tensor, RunError> {
    let b = pre.batch(
        indices,
        |i| src.skeleton(i).map(|sk| (src.meta(i).name.clone(), sk)),
        mode,
        seed,
        epoch,
    )?;
    Ok(Tensor::from_vec(b.x, b.shape.to_vec(), device)?)
}

/// Writes a file of the run directory atomically; errors name the file.
/// A small JSON file of a run directory (centre, thresholds): read with a size cap, so a
/// wrong path (a device, a huge file) fails instead of filling memory.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RunError> {
    let text = crossglg_data::bounded::read(path, crossglg_data::bounded::SMALL_FILE_BYTES)
        .map_err(|source| RunError::Read {
            path: path.into(),
            source,
        })?;
    serde_json::from_slice(&text).map_err(|source| RunError::Json {
        path: path.into(),
        source,
    })
}

fn write_run_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    crossglg_data::atomic::write_atomic(path, bytes).map_err(|e| RunError::RunDir {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The dotted keys whose values differ between two configs (TOML texts).
fn config_changes(old: &str, new: &str) -> Vec<String> {
    fn walk(a: Option<&toml::Value>, b: Option<&toml::Value>, at: String, out: &mut Vec<String>) {
        match (a, b) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let key = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    walk(x.get(k), y.get(k), key, out);
                }
            }
            (x, y) if x != y => out.push(at),
            _ => {}
        }
    }
    let parse = |t: &str| t.parse::<toml::Table>().ok().map(toml::Value::Table);
    let mut out = Vec::new();
    walk(
        parse(old).as_ref(),
        parse(new).as_ref(),
        String::new(),
        &mut out,
    );
    out
}

/// Keeps the metric rows of steps up to `step` (those the checkpoint covers).
fn truncate_metrics(path: &Path, step: u64) -> Result<(), RunError> {
    let text = match crossglg_data::bounded::read_to_string(path, 1 << 30) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RunError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_run_file(path, kept.as_bytes())
}

/// [`write_run_file`] of a value as pretty JSON.
fn write_run_json(path: &Path, value: &impl serde::Serialize) -> Result<(), RunError> {
    write_run_file(
        path,
        serde_json::to_string_pretty(value)
            .expect("serialises")
            .as_bytes(),
    )
}

fn mean_row(rows: &[Vec<f32>]) -> Vec<f32> {
    let d = rows.first().map_or(0, Vec::len);
    let mut m = vec![0f32; d];
    for r in rows {
        m.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
    m.iter_mut().for_each(|a| *a /= rows.len().max(1) as f32);
    m
}

fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Summary of a finished `train` call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// SHA-256 of the trained weights (as `TrainedModel::weights_hash`): the same on every rank
    /// of a data-parallel run.
    pub weights_hash: String,
    pub epochs: usize,
    pub steps: u64,
    pub final_loss: f64,
    pub train_accuracy: f64,
    pub seconds: f64,
    /// Where `seconds` went: data, preprocessing, text and model set-up before the first
    /// step; the epochs (with their checkpoints); embedding, calibration and evaluation after.
    pub setup_seconds: f64,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub samples_per_second: f64,
    pub parameters: usize,
    /// The one-shot reports written to `report.json`; empty when training stopped before
    /// the last epoch (`max_epochs_this_call`).
    pub reports: Vec<EvalReport>,
    /// The unknown thresholds written to `unknown_threshold.json` (same condition).
    pub unknown: Option<ThresholdCalibration>,
}

pub struct TrainOptions {
    pub resume: bool,
    /// Resume although the config differs from the checkpoint's (otherwise refused).
    pub force: bool,
    pub progress: bool,
    /// Stop after this many epochs of this call (for tests of `--resume`).
    pub max_epochs_this_call: Option<usize>,
    /// Steps per read-back of losses and predictions; `None`: 25 on a GPU, 1 on the CPU.
    pub sync_every: Option<usize>,
    /// Data-parallel training: this process is one rank of several, and gradients are summed
    /// over them (`dist`). Every rank trains on its shard of each batch; rank 0 alone writes
    /// the run directory and evaluates.
    pub collective: Option<std::sync::Arc<dyn crate::dist::Collective>>,
    /// The device to train on instead of the config's (a data-parallel rank's GPU, opened
    /// once for its communicator and its training).
    pub device: Option<Device>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            resume: false,
            force: false,
            progress: true,
            max_epochs_this_call: None,
            sync_every: None,
            collective: None,
            device: None,
        }
    }
}

/// Trains per `cfg` into `run_dir`, then writes base statistics and the one-shot report.
pub fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    opts: &TrainOptions,
) -> Result<TrainSummary, RunError> {
    let t0 = Instant::now();
    if let Some(m) = cfg.preprocess.crop.min_frames {
        if m > cfg.preprocess.frames {
            return Err(crate::config::ConfigError::Invalid {
                origin: "training config".into(),
                message: format!(
                    "preprocess.crop.min_frames = {m} exceeds the {}-frame window: training crops could never be shorter than the window, so sequences up to {m} frames would never be cropped (unset it for frames / 2)",
                    cfg.preprocess.frames
                ),
            }
            .into());
        }
    }
    let device = match &opts.device {
        Some(d) => d.clone(),
        None => device_from(&cfg.device)?,
    };
    let src = open_source(cfg)?;
    let layout = src.layout().clone();
    let split = resolve_split_for(cfg, src.as_ref())?;
    let assignment = split.apply(&src.metas())?;
    if assignment.train.is_empty() {
        return Err(data_err("the split leaves no training samples"));
    }
    let aux = split.auxiliary_classes.clone();
    let labels = train_labels(src.as_ref(), &assignment, &aux)?;
    let aux_names: Vec<String> = aux.iter().map(|&c| src.classes()[c].clone()).collect();

    let text = if cfg.model.guidance != Guidance::None {
        Some(training_class_text(
            cfg,
            src.as_ref(),
            &aux_names,
            &layout,
            &device,
        )?)
    } else {
        None
    };
    let channels = src.skeleton(assignment.train[0])?.channels;
    let mcfg = model_config(cfg, aux.len(), channels, text.as_ref().map(|t| t.dim));
    let graph = graph_of(&layout)?;
    let (varmap, model) = build_seeded(&mcfg, &graph, cfg.seed, DType::F32, &device)?;
    if let Some(t) = &text {
        // a fixed text side is centred on the training classes (a no-op otherwise)
        set_text_centers(&varmap, &t.global, &t.local)?;
    }
    let vars = trainable_vars(&varmap);
    let parameters: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let reduced: Vec<candle_core::Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = Optimizer::new(cfg.optim.clone(), vars);
    let (rank, world) = opts
        .collective
        .as_ref()
        .map_or((0, 1), |c| (c.rank(), c.world()));
    // Rank 0 alone writes the run directory: the others train the same weights.
    let writer = rank == 0;
    let n = assignment.train.len();
    let bs = cfg.batch_size.min(n);
    if bs < world {
        return Err(data_err(format!(
            "a batch of {bs} samples cannot be shared by {world} ranks"
        )));
    }

    let mut resolved = cfg.clone();
    resolved.model = mcfg.clone();
    let config_toml = resolved.to_toml();
    let pre = Preprocessor::new(cfg.preprocess.clone(), &layout)?;

    if writer {
        std::fs::create_dir_all(run_dir.join("checkpoints")).map_err(|e| RunError::RunDir {
            path: run_dir.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    // A killed writer leaves its temporary files behind: sweep them before writing again.
    for d in [run_dir.to_path_buf(), run_dir.join("checkpoints")]
        .into_iter()
        .filter(|_| writer)
    {
        let n = crossglg_data::atomic::clean_leftovers(&d).map_err(|e| RunError::RunDir {
            path: d.clone(),
            message: format!("cannot remove leftover temporary files: {e}"),
        })?;
        if n > 0 {
            tracing::info!("removed {n} leftover temporary files in {}", d.display());
        }
    }
    let last = run_dir.join("last.safetensors");
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut start_epoch = 0;
    if opts.resume && last.exists() {
        let ck = Checkpoint::load(&last, &device)?;
        let changed = config_changes(&ck.config_toml, &config_toml);
        if !changed.is_empty() && !opts.force {
            return Err(RunError::RunDir {
                path: last.clone(),
                message: format!(
                    "the config differs from the one this run was started with ({}); resume with the same config, or force it (--force)",
                    changed.join(", ")
                ),
            });
        }
        load_weights(&varmap, &ck, &last)?;
        opt.load_state(|n| ck.tensors.get(n).cloned(), ck.position.step);
        start_epoch = ck.position.epoch;
        // Rows written after the checkpoint (an interrupted epoch) would be written again.
        if writer {
            truncate_metrics(&metrics_path, ck.position.step)?;
        }
        tracing::info!("resuming from {} at epoch {start_epoch}", last.display());
    } else if writer {
        // A fresh run starts a fresh metrics file.
        let _ = std::fs::remove_file(&metrics_path);
    }
    // Every variable by name: the ranks must list them in the same order.
    let all_vars: Vec<(String, candle_core::Var)> = {
        let data = varmap.data().lock().expect("VarMap lock poisoned");
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    if let Some(c) = &opts.collective {
        // every rank starts from rank 0's weights (batch-norm statistics included)
        let all: Vec<_> = all_vars.iter().map(|(_, v)| v.clone()).collect();
        crate::dist::broadcast_vars(c.as_ref(), &all)?;
    }
    let mut metrics: Box<dyn Write> = if writer {
        write_run_file(&run_dir.join("config.toml"), config_toml.as_bytes())?;
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&metrics_path)
                .map_err(|e| RunError::RunDir {
                    path: run_dir.to_path_buf(),
                    message: e.to_string(),
                })?,
        )
    } else {
        Box::new(std::io::sink())
    };
    let mut reducer = crate::dist::GradReducer::new();

    // With several ranks, a last batch smaller than the number of ranks is left out (every
    // rank needs a sample of it); one rank keeps every batch.
    let tail = n % bs;
    let steps_per_epoch = if tail != 0 && tail < world {
        n / bs
    } else {
        n.div_ceil(bs)
    };
    let end_epoch = match opts.max_epochs_this_call {
        Some(k) => (start_epoch + k).min(cfg.epochs),
        None => cfg.epochs,
    };
    let bar = crossglg_data::progress::Progress::new(
        "training steps",
        ((end_epoch - start_epoch) * steps_per_epoch) as u64,
        opts.progress,
    );
    let paper_form = mcfg.interaction.form == CrossForm::Paper;
    let mut final_loss = f64::NAN;
    let mut train_acc = 0.0;
    let mut seen = 0usize;
    let t_train = Instant::now();
    // On a GPU every read-back waits for the device: read the steps' losses and predictions
    // back every SYNC_EVERY_GPU steps instead of every step. On the CPU there is nothing to
    // wait for, and every step is written as it ends.
    let sync_every = opts
        .sync_every
        .unwrap_or(if device.is_cuda() { SYNC_EVERY_GPU } else { 1 })
        .max(1);
    let mut window = StepWindow::default();
    for epoch in start_epoch..end_epoch {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut keyed_rng(&[cfg.seed, epoch as u64, 0x5bff1e]));
        let (mut loss_sum, mut correct, mut count) = (0.0, 0usize, 0usize);
        for (step, batch) in order.chunks(bs).take(steps_per_epoch).enumerate() {
            let t_step = Instant::now();
            let part = crate::dist::shard(batch.len(), rank, world);
            let chunk = &batch[part];
            let idx: Vec<usize> = chunk.iter().map(|&k| assignment.train[k]).collect();
            let lab: Vec<u32> = chunk.iter().map(|&k| labels[k]).collect();
            let x = batch_tensor(
                &pre,
                src.as_ref(),
                &idx,
                Mode::Train,
                cfg.seed,
                epoch as u64,
                &device,
            )?;
            let t_data = t_step.elapsed().as_secs_f64();
            let y = Tensor::new(lab.as_slice(), &device)?;
            let (text_local, k_gt) = match &text {
                Some(t) => (
                    paper_form
                        .then(|| t.local.index_select(&y, 0))
                        .transpose()?,
                    Some(t.key_joints.index_select(&y, 0)?),
                ),
                None => (None, None),
            };
            let step_text = StepText {
                sample_local: text_local.as_ref(),
                class_global: text.as_ref().filter(|_| !paper_form).map(|t| &t.global),
                class_local: text.as_ref().filter(|_| !paper_form).map(|t| &t.local),
            };
            let out = model.forward_step(&x, &step_text, true)?;
            let parts = model.loss(&out, &y, k_gt.as_ref())?;
            let t_fwd = t_step.elapsed().as_secs_f64();
            let lr = cfg.optim.lr_at(epoch, step, steps_per_epoch, cfg.epochs);
            let mut grads = parts.total.backward()?;
            if let Some(c) = &opts.collective {
                let weight = chunk.len() as f64 / batch.len() as f64;
                reducer.reduce(c.as_ref(), &reduced, &mut grads, weight)?;
            }
            let t_bwd = t_step.elapsed().as_secs_f64();
            opt.step(&grads, lr)?;
            let t_opt = t_step.elapsed().as_secs_f64();
            // The step's numbers stay on the device until the window is read back in one go.
            let named = parts.named();
            window.scalars.extend(named.iter().map(|(_, t)| t.clone()));
            window.preds.push(out.logits_s.argmax(1)?);
            window.start.get_or_insert(t_step);
            window.rows.push(PendingStep {
                epoch,
                step: opt.steps_taken(),
                lr,
                labels: lab,
                names: named.into_iter().map(|(n, _)| n).collect(),
                times: [t_data, t_fwd - t_data, t_bwd - t_fwd, t_opt - t_bwd],
            });
            if window.rows.len() >= sync_every {
                let s = window.flush(&mut metrics, &bar)?;
                (loss_sum, correct, count) = (loss_sum + s.0, correct + s.1, count + s.2);
                seen += s.2;
            }
        }
        let s = window.flush(&mut metrics, &bar)?;
        (loss_sum, correct, count) = (loss_sum + s.0, correct + s.1, count + s.2);
        seen += s.2;
        final_loss = loss_sum / count.max(1) as f64;
        train_acc = correct as f64 / count.max(1) as f64;
        tracing::info!(
            "epoch {}: loss {final_loss:.4}, train accuracy {train_acc:.3}",
            epoch + 1
        );
        // the other ranks hold the same weights and write nothing
        if writer {
            let mut tensors: std::collections::HashMap<String, Tensor> = varmap
                .data()
                .lock()
                .expect("VarMap lock poisoned")
                .iter()
                .map(|(k, v)| (format!("model.{k}"), v.as_tensor().clone()))
                .collect();
            tensors.extend(opt.state());
            let ck = Checkpoint {
                tensors,
                config_toml: config_toml.clone(),
                position: Position {
                    epoch: epoch + 1,
                    step: opt.steps_taken(),
                },
                metadata: [
                    (
                        "aux_classes".to_string(),
                        serde_json::to_string(&aux_names).unwrap_or_default(),
                    ),
                    ("layout".to_string(), layout.to_toml()),
                ]
                .into_iter()
                .collect(),
            };
            ck.save(&run_dir.join(format!("checkpoints/epoch-{:03}.safetensors", epoch + 1)))?;
            ck.save(&last)?;
        }
    }
    bar.finish();
    if let Some(c) = &opts.collective {
        // Batch-norm statistics are each rank's own (from its shards); rank 0's are the run's,
        // as PyTorch's DDP broadcasts its buffers. The trained weights agree already.
        let trained: std::collections::HashSet<_> = reduced.iter().map(|v| v.id()).collect();
        let buffers: Vec<_> = all_vars
            .iter()
            .filter(|(_, v)| !trained.contains(&v.id()))
            .map(|(_, v)| v.clone())
            .collect();
        crate::dist::broadcast_vars(c.as_ref(), &buffers)?;
    }
    let train_secs = t_train.elapsed().as_secs_f64();
    let setup_secs = (t_train - t0).as_secs_f64();
    let hash = weights_hash(&varmap)?;

    let mut finished = (Vec::new(), None);
    if end_epoch == cfg.epochs && writer {
        let mut trained = TrainedModel {
            model: frozen(&mcfg, &graph, &varmap)?,
            pre,
            device: device.clone(),
            batch_size: cfg.eval.batch_size,
            center: None,
            weights_hash: hash.clone(),
            cohort: None,
        };
        // Base statistics for distribution calibration, from the training samples (test-mode
        // preprocessing: what the model sees at inference), after centring on their mean.
        let raw = trained.embed_indices(src.as_ref(), &assignment.train)?;
        let center = mean_row(&raw);
        write_run_file(
            &run_dir.join(CENTER_FILE),
            serde_json::to_string(&center)
                .expect("serialises")
                .as_bytes(),
        )?;
        let emb: Vec<Vec<f32>> = raw.iter().map(|r| sub(r, &center)).collect();
        trained.center = Some(center);
        if trained.model.has_text_target() {
            let cohort = TextCohort::of(&trained, src.as_ref(), &assignment, &split)?;
            cohort.save(&run_dir.join(TEXT_COHORT_FILE), &trained.weights_hash)?;
            trained.cohort = Some(cohort);
        }
        let base_labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let stats = BaseStats::from_embeddings(&emb, &base_labels)?;
        let unknown = if cfg.data.validation.is_some() {
            // A validation split holds classes the model never trained on: calibrate where a
            // user's new classes will be, enrolling one exemplar each.
            let (set, _) = one_shot_data(&trained, src.as_ref(), &split, &assignment)?;
            calibrate_unknown_novel(&set, &run_dir.display().to_string())?
        } else {
            calibrate_unknown(
                src.as_ref(),
                &assignment,
                &labels,
                &emb,
                &aux_names,
                &run_dir.display().to_string(),
            )?
        };
        write_run_json(&run_dir.join("unknown_threshold.json"), &unknown)?;
        stats.save(&run_dir.join("base_stats.safetensors"))?;
        let stats = calibration_stats(stats, cfg.eval.calibration_base, &split, src.as_ref());
        let reports = evaluate_one_shot(
            &trained,
            src.as_ref(),
            &split,
            &assignment,
            Some(&stats),
            cfg,
        )?;
        write_reports(run_dir, &reports)?;
        finished = (reports, Some(unknown));
    }
    let total_secs = t0.elapsed().as_secs_f64();
    Ok(TrainSummary {
        run_dir: run_dir.to_path_buf(),
        weights_hash: hash,
        epochs: end_epoch,
        steps: opt.steps_taken(),
        final_loss,
        train_accuracy: train_acc,
        seconds: total_secs,
        setup_seconds: setup_secs,
        train_seconds: train_secs,
        eval_seconds: (total_secs - setup_secs - train_secs).max(0.0),
        samples_per_second: seen as f64 / train_secs.max(1e-9),
        parameters,
        reports: finished.0,
        unknown: finished.1,
    })
}

/// Steps per read-back of losses and predictions when training on a GPU.
const SYNC_EVERY_GPU: usize = 25;

/// One training step whose numbers are still on the device.
struct PendingStep {
    epoch: usize,
    step: u64,
    lr: f64,
    labels: Vec<u32>,
    /// Names of its loss terms, in the order their scalars were queued.
    names: Vec<String>,
    /// Data, forward + loss, backward, update (seconds, as the host saw them).
    times: [f64; 4],
}

/// Steps queued for one read-back: their loss scalars and predictions.
#[derive(Default)]
struct StepWindow {
    rows: Vec<PendingStep>,
    scalars: Vec<Tensor>,
    preds: Vec<Tensor>,
    start: Option<Instant>,
}

impl StepWindow {
    /// Reads the queued steps back in one transfer each for scalars and predictions, writes one
    /// metrics row per step and advances the progress bar; returns `(loss × samples, correct,
    /// samples)`. `samples_per_s` is the window's samples over its wall time (one step's on
    /// the CPU).
    fn flush(
        &mut self,
        metrics: &mut impl Write,
        bar: &crossglg_data::progress::Progress,
    ) -> Result<(f64, usize, usize), RunError> {
        if self.rows.is_empty() {
            return Ok((0.0, 0, 0));
        }
        let flat: Vec<Tensor> = self
            .scalars
            .iter()
            .map(|t| t.to_dtype(DType::F64)?.reshape(1))
            .collect::<candle_core::Result<_>>()?;
        let values = Tensor::cat(&flat, 0)?.to_vec1::<f64>()?;
        let preds = Tensor::cat(&self.preds, 0)?.to_vec1::<u32>()?;
        let samples: usize = self.rows.iter().map(|r| r.labels.len()).sum();
        let secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let sps = samples as f64 / secs.max(1e-9);
        let (mut v, mut p) = (0, 0);
        let mut sums = (0.0, 0usize, 0usize);
        for row in self.rows.drain(..) {
            let n = row.labels.len();
            let ok = preds[p..p + n]
                .iter()
                .zip(&row.labels)
                .filter(|(a, b)| a == b)
                .count();
            p += n;
            let mut rec = serde_json::Map::new();
            rec.insert("epoch".into(), row.epoch.into());
            rec.insert("step".into(), row.step.into());
            rec.insert("lr".into(), row.lr.into());
            let mut loss = f64::NAN;
            for name in &row.names {
                if name == "total" {
                    loss = values[v];
                }
                rec.insert(format!("loss_{name}"), values[v].into());
                v += 1;
            }
            rec.insert("loss".into(), loss.into());
            rec.insert("batch_accuracy".into(), (ok as f64 / n as f64).into());
            rec.insert("samples_per_s".into(), sps.into());
            // Where the step's time went (seconds): data, forward + loss, backward, update.
            for (k, t) in ["time_data", "time_forward", "time_backward", "time_update"]
                .iter()
                .zip(row.times)
            {
                rec.insert((*k).into(), t.into());
            }
            let _ = writeln!(metrics, "{}", serde_json::Value::Object(rec));
            bar.set_message(format!(
                "epoch {} loss {loss:.3} {sps:.0} samples/s",
                row.epoch + 1
            ));
            bar.inc(1);
            sums = (sums.0 + loss * n as f64, sums.1 + ok, sums.2 + n);
        }
        self.scalars.clear();
        self.preds.clear();
        self.start = None;
        Ok(sums)
    }
}

/// How many of a split's `aux` training classes are the main dataset's: the split lists the
/// `[[data.extra]]` datasets' classes last.
fn main_auxiliary(aux: usize, src: &dyn SampleSource) -> usize {
    aux - src.extra_classes().len()
}

/// The texts of a run's training classes, in training-label order (the `[[data.extra]]`
/// datasets' classes last, each described by its own file).
fn training_class_text(
    cfg: &TrainConfig,
    src: &dyn SampleSource,
    aux_names: &[String],
    layout: &Layout,
    device: &Device,
) -> Result<crate::textsrc::ClassText, RunError> {
    let descriptions = cfg
        .data
        .extra
        .iter()
        .map(|e| {
            e.descriptions.as_deref().ok_or_else(|| {
                data_err(format!(
                    "[[data.extra]] {} has no `descriptions`, so its classes have no text (guidance {:?})",
                    e.packed.display(),
                    cfg.model.guidance
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let own = main_auxiliary(aux_names.len(), src);
    let extra = ExtraText {
        descriptions,
        classes: aux_names[own..].to_vec(),
    };
    Ok(load_class_text(
        &cfg.text,
        layout,
        &aux_names[..own],
        &extra,
        device,
    )?)
}

/// A trained model ready to embed skeletons (skeleton branch only, eval mode).
pub struct TrainedModel {
    pub model: CrossGlg,
    pub pre: Preprocessor,
    pub device: Device,
    pub batch_size: usize,
    /// Mean embedding of the training samples, subtracted from every embedding. Pooled
    /// post-ReLU features are all positive, so raw cosine similarities crowd near 1 for every
    /// pair; centring spreads them, which the nearest-exemplar rule and, above all, the
    /// "unknown" threshold need. Saved as `embedding_center.json` in the run directory.
    pub center: Option<Vec<f32>>,
    /// SHA-256 of the weights (names, shapes, f32 values in name order): the model's identity
    /// in galleries, the same whether the model was just trained or loaded from its checkpoint.
    pub weights_hash: String,
    /// Training samples' branch features, for normalising description similarities
    /// ([`TrainedModel::text_norm`]); `None` without the text-target branch or for a run made
    /// before training kept them.
    pub cohort: Option<TextCohort>,
}

pub(crate) const CENTER_FILE: &str = "embedding_center.json";
/// A run's [`TextCohort`].
pub(crate) const TEXT_COHORT_FILE: &str = "text_cohort.safetensors";
const COHORT_KIND: &str = "crossglg-text-cohort";
const COHORT_VERSION: u32 = 1;
/// Training samples in a text cohort at most, spread evenly over the training classes (a
/// bounded file at NTU's scale: about 13 MB with 25 joints of 256 channels).
const TEXT_COHORT_SIZE: usize = 500;

/// A fixed set of training samples' branch features (eval-mode embedding and per-joint
/// features, [`CrossGlg::eval_features`]), kept with a run (`text_cohort.safetensors`). The
/// description prior normalises each described class's similarities by the cohort's (Z-norm,
/// [`TrainedModel::text_norm`]): a description that every motion resembles stops outweighing
/// one that fits few. Chosen on validation splits (docs/results.md).
pub struct TextCohort {
    /// `(n, D)`
    pub embedding: Tensor,
    /// `(n, V, C)`
    pub joints: Tensor,
}

impl TextCohort {
    /// At most [`TEXT_COHORT_SIZE`] training samples, the same per class (a fixed draw), through
    /// `model`'s branch.
    fn of(
        model: &TrainedModel,
        src: &dyn SampleSource,
        a: &Assignment,
        split: &Split,
    ) -> Result<Self, RunError> {
        let aux = split.auxiliary_classes.len();
        let (idx, _) = capped_training(src, a, split, (TEXT_COHORT_SIZE / aux.max(1)).max(1))?;
        let (mut es, mut fs) = (Vec::new(), Vec::new());
        for chunk in idx.chunks(model.batch_size.max(1)) {
            let x = batch_tensor(&model.pre, src, chunk, Mode::Test, 0, 0, &model.device)?;
            let (e, f) = model.model.eval_features(&x)?;
            es.push(e.to_dtype(DType::F32)?.detach());
            fs.push(f.to_dtype(DType::F32)?.detach());
        }
        Ok(TextCohort {
            embedding: Tensor::cat(&es, 0)?,
            joints: Tensor::cat(&fs, 0)?,
        })
    }

    /// Writes the cohort with the hash of the weights that made it.
    fn save(&self, path: &Path, weights_hash: &str) -> Result<(), RunError> {
        let e = self.embedding.to_device(&Device::Cpu)?;
        let f = self.joints.to_device(&Device::Cpu)?;
        let tensors = vec![
            (
                "embedding",
                crossglg_data::tagged::Owned::f32(e.dims().to_vec(), &e.flatten_all()?.to_vec1()?),
            ),
            (
                "joints",
                crossglg_data::tagged::Owned::f32(f.dims().to_vec(), &f.flatten_all()?.to_vec1()?),
            ),
        ];
        let meta = [(
            "weights_sha256".to_string(),
            serde_json::to_string(weights_hash).expect("a string serialises"),
        )]
        .into();
        crossglg_data::tagged::write_owned(path, COHORT_KIND, COHORT_VERSION, meta, tensors)
            .map_err(|e| RunError::RunDir {
                path: path.into(),
                message: e.to_string(),
            })
    }

    /// Reads a cohort and checks it against `model`'s widths; `None` when other weights made it
    /// (a run's cohort beside an earlier checkpoint of it).
    fn load(
        path: &Path,
        model: &CrossGlg,
        weights_hash: &str,
        device: &Device,
    ) -> Result<Option<Self>, RunError> {
        let bad = |message: String| RunError::RunDir {
            path: path.into(),
            message,
        };
        let f =
            TaggedFile::read(path, COHORT_KIND, COHORT_VERSION).map_err(|e| bad(e.to_string()))?;
        let made_by: String = f
            .meta_json("weights_sha256")
            .map_err(|e| bad(e.to_string()))?;
        if made_by != weights_hash {
            return Ok(None);
        }
        let (es, e) = f.f32("embedding", 2).map_err(|e| bad(e.to_string()))?;
        let (fs, j) = f.f32("joints", 3).map_err(|e| bad(e.to_string()))?;
        if es[0] != fs[0] || es[0] == 0 || es[1] != model.embedding_dim() {
            return Err(bad(format!(
                "a text cohort of shapes {es:?} and {fs:?} does not fit the model (embedding width {})",
                model.embedding_dim()
            )));
        }
        Ok(Some(TextCohort {
            embedding: Tensor::from_vec(e, es, device)?,
            joints: Tensor::from_vec(j, fs, device)?,
        }))
    }
}

/// Per described class, the mean and deviation of the cohort's similarities to its
/// description ([`TrainedModel::text_norm`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TextNorm {
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
}

impl TextNorm {
    /// One row of similarities (one per class), normalised: `(s − mean) / sd`.
    pub fn apply(&self, row: &[f32]) -> Vec<f32> {
        row.iter()
            .zip(self.mean.iter().zip(&self.sd))
            .map(|(x, (m, s))| (x - m) / s)
            .collect()
    }
}

impl TrainedModel {
    /// Loads `last.safetensors` (or the given checkpoint file) of a run directory, or an
    /// exported folder (`crossglg export`).
    pub fn load(path: &Path, device: &Device) -> Result<(Self, TrainConfig, Layout), RunError> {
        let w = LoadedWeights::load(path, device)?;
        let center_path = w.run_file(CENTER_FILE);
        let cohort_path = w.run_file(TEXT_COHORT_FILE);
        let LoadedWeights {
            varmap,
            cfg,
            layout,
            graph,
            ..
        } = w;
        // serving only: no autograd graph
        let model = frozen(&cfg.model, &graph, &varmap)?;
        let pre = Preprocessor::new(cfg.preprocess.clone(), &layout)?;
        let center = match center_path {
            Some(p) => {
                let c: Vec<f32> = read_json(&p)?;
                if c.len() != model.embedding_dim() {
                    return Err(RunError::RunDir {
                        path: p,
                        message: format!(
                            "centre has width {}, the model {}",
                            c.len(),
                            model.embedding_dim()
                        ),
                    });
                }
                Some(c)
            }
            None => None,
        };
        let hash = weights_hash(&varmap)?;
        let cohort = match cohort_path {
            Some(p) if model.has_text_target() => TextCohort::load(&p, &model, &hash, device)?,
            _ => None,
        };
        Ok((
            TrainedModel {
                model,
                pre,
                device: device.clone(),
                batch_size: cfg.eval.batch_size,
                center,
                weights_hash: hash,
                cohort,
            },
            cfg,
            layout,
        ))
    }

    fn embed_tensor(&self, x: &Tensor) -> Result<Vec<Vec<f32>>, RunError> {
        self.center_rows(self.model.embed(x)?)
    }

    /// Embedding rows, less the stored centre when the run has one.
    fn center_rows(&self, e: Tensor) -> Result<Vec<Vec<f32>>, RunError> {
        let rows = e.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        Ok(match &self.center {
            Some(c) => rows.iter().map(|r| sub(r, c)).collect(),
            None => rows,
        })
    }

    /// Embeddings of dataset samples, in batches.
    pub fn embed_indices(
        &self,
        src: &dyn SampleSource,
        indices: &[usize],
    ) -> Result<Vec<Vec<f32>>, RunError> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(self.batch_size.max(1)) {
            let x = batch_tensor(&self.pre, src, chunk, Mode::Test, 0, 0, &self.device)?;
            out.extend(self.embed_tensor(&x)?);
        }
        Ok(out)
    }
}

impl TrainedModel {
    /// Similarity of dataset samples to class descriptions through the text-target branch
    /// (the mean of its global and per-joint cosines), `(samples, classes)`; `None` when the
    /// model has no such branch.
    pub fn text_similarity_indices(
        &self,
        src: &dyn SampleSource,
        indices: &[usize],
        text: &crate::textsrc::ClassText,
    ) -> Result<Option<Vec<Vec<f32>>>, RunError> {
        if !self.model.has_text_target() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(self.batch_size.max(1)) {
            let x = batch_tensor(&self.pre, src, chunk, Mode::Test, 0, 0, &self.device)?;
            out.extend(self.text_similarity_batch(&x, text)?);
        }
        Ok(Some(out))
    }

    /// [`TrainedModel::text_similarity_indices`] for sequences from outside a dataset (what
    /// `crossglg recognize --describe` reads), preprocessed as for embedding.
    pub fn text_similarity(
        &self,
        skeletons: &[Skeleton],
        text: &crate::textsrc::ClassText,
    ) -> Result<Option<Vec<Vec<f32>>>, RunError> {
        if !self.model.has_text_target() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(skeletons.len());
        for chunk in skeletons.chunks(self.batch_size.max(1)) {
            out.extend(self.text_similarity_batch(&self.skeleton_batch(chunk)?, text)?);
        }
        Ok(Some(out))
    }

    /// Sequences from outside a dataset, preprocessed for testing, as one input tensor.
    fn skeleton_batch(&self, skeletons: &[Skeleton]) -> Result<Tensor, RunError> {
        let items: Vec<(usize, &str, &Skeleton)> = skeletons
            .iter()
            .enumerate()
            .map(|(i, s)| (i, "input", s))
            .collect();
        let b = self.pre.batch_of(&items, Mode::Test, 0, 0)?;
        Ok(Tensor::from_vec(b.x, b.shape.to_vec(), &self.device)?)
    }

    /// The embeddings (as [`Embedder::embed`] gives them) and the description similarities
    /// (as [`TrainedModel::text_similarity`]) of outside sequences, from one pass of the encoder.
    #[allow(clippy::type_complexity)]
    pub fn embed_and_describe(
        &self,
        skeletons: &[Skeleton],
        text: &crate::textsrc::ClassText,
    ) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>), RunError> {
        let (mut emb, mut sims) = (Vec::new(), Vec::new());
        for chunk in skeletons.chunks(self.batch_size.max(1)) {
            let x = self.skeleton_batch(chunk)?;
            let (e, t) = self.model.embed_with_text(&x, &text.global, &text.local)?;
            let t = t.ok_or_else(|| data_err("the model has no text-target branch"))?;
            emb.extend(self.center_rows(e)?);
            sims.extend(text_rows(t)?);
        }
        Ok((emb, sims))
    }

    /// The cohort's normalisation for `text`'s classes: per class, the mean and deviation of
    /// the cohort's similarities to its description (deviations below 1e-6 taken as 1e-6).
    /// `None` without a cohort.
    pub fn text_norm(
        &self,
        text: &crate::textsrc::ClassText,
    ) -> Result<Option<TextNorm>, RunError> {
        match &self.cohort {
            Some(c) => Ok(Some(self.text_norm_of(c, text)?)),
            None => Ok(None),
        }
    }

    /// [`TrainedModel::text_norm`] with another cohort.
    fn text_norm_of(
        &self,
        c: &TextCohort,
        text: &crate::textsrc::ClassText,
    ) -> Result<TextNorm, RunError> {
        let n = c.embedding.dim(0)?;
        let mut rows = Vec::with_capacity(n);
        let step = self.batch_size.max(1);
        for start in (0..n).step_by(step) {
            let len = step.min(n - start);
            let t = self
                .model
                .text_similarity_of_features(
                    &c.embedding.narrow(0, start, len)?,
                    &c.joints.narrow(0, start, len)?,
                    &text.global,
                    &text.local,
                )?
                .ok_or_else(|| data_err("the model has no text-target branch"))?;
            rows.extend(text_rows(t)?);
        }
        let k = rows.first().map_or(0, Vec::len);
        let count = rows.len().max(1) as f64;
        let (mut mean, mut sd) = (vec![0f32; k], vec![0f32; k]);
        for c in 0..k {
            let m = rows.iter().map(|r| r[c] as f64).sum::<f64>() / count;
            let v = rows.iter().map(|r| (r[c] as f64 - m).powi(2)).sum::<f64>() / count;
            mean[c] = m as f32;
            sd[c] = (v.sqrt() as f32).max(1e-6);
        }
        Ok(TextNorm { mean, sd })
    }

    /// The mean of the branch's global and per-joint cosines for one batch, `(batch, classes)`.
    fn text_similarity_batch(
        &self,
        x: &Tensor,
        text: &crate::textsrc::ClassText,
    ) -> Result<Vec<Vec<f32>>, RunError> {
        let t = self
            .model
            .text_similarity(x, &text.global, &text.local)?
            .ok_or_else(|| data_err("the model has no text-target branch"))?;
        text_rows(t)
    }

    /// JID's joint importance of dataset samples, `None` without JID.
    pub fn joint_importance_indices(
        &self,
        src: &dyn SampleSource,
        indices: &[usize],
    ) -> Result<Option<Vec<Vec<f32>>>, RunError> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(self.batch_size.max(1)) {
            let x = batch_tensor(&self.pre, src, chunk, Mode::Test, 0, 0, &self.device)?;
            match self.model.joint_importance(&x)? {
                Some(k) => out.extend(k.to_dtype(DType::F32)?.to_vec2::<f32>()?),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// JID's joint importance for one sequence (mean over persons), `None` without JID.
    pub fn joint_importance(&self, skeleton: &Skeleton) -> Result<Option<Vec<f32>>, RunError> {
        let b = self
            .pre
            .batch_of(&[(0, "input", skeleton)], Mode::Test, 0, 0)?;
        let x = Tensor::from_vec(b.x, b.shape.to_vec(), &self.device)?;
        Ok(match self.model.joint_importance(&x)? {
            Some(k) => Some(k.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        })
    }
}

impl Embedder for TrainedModel {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let want = self.model.config().encoder.in_channels;
        if let Some((i, s)) = skeletons
            .iter()
            .enumerate()
            .find(|(_, s)| s.channels != want)
        {
            return Err(EmbedError::new(format!(
                "sequence {i} has {} values per joint; this model takes {want}",
                s.channels
            )));
        }
        let mut out = Vec::with_capacity(skeletons.len());
        for chunk in skeletons.chunks(self.batch_size.max(1)) {
            let x = self.skeleton_batch(chunk).map_err(EmbedError::new)?;
            out.extend(self.embed_tensor(&x).map_err(EmbedError::new)?);
        }
        Ok(out)
    }

    fn dim(&self) -> usize {
        self.model.embedding_dim()
    }

    fn model_hash(&self) -> Option<String> {
        Some(self.weights_hash.clone())
    }

    fn input_channels(&self) -> Option<usize> {
        Some(self.model.config().encoder.in_channels)
    }

    fn joint_importance(&self, skeleton: &Skeleton) -> Result<Option<Vec<f32>>, EmbedError> {
        TrainedModel::joint_importance(self, skeleton).map_err(EmbedError::new)
    }
}

/// The branch's similarity to each class text, one row per sequence: the mean of its global and
/// per-joint cosines.
fn text_rows(t: crossglg_model::TextLogits) -> Result<Vec<Vec<f32>>, RunError> {
    Ok(((t.global + t.local)? * 0.5)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?)
}

/// Embeddings of the split's exemplars and queries, labelled by novel-class position.
pub fn one_shot_set(
    model: &TrainedModel,
    src: &dyn SampleSource,
    split: &Split,
    a: &Assignment,
) -> Result<OneShotSet, RunError> {
    Ok(one_shot_data(model, src, split, a)?.0)
}

/// The protocol's one-shot set and the pool of every novel sample (for exemplar draws), from
/// one pass of embeddings. The pool is an error when a novel class has a single sample (no
/// query to draw against), which matters only when draws are asked for.
pub fn one_shot_data(
    model: &TrainedModel,
    src: &dyn SampleSource,
    split: &Split,
    a: &Assignment,
) -> Result<(OneShotSet, Result<NovelPool, EvalError>), RunError> {
    let novel = &split.novel_classes;
    let class_of = |i: usize| -> Result<usize, RunError> {
        let l = src
            .meta(i)
            .label
            .ok_or_else(|| data_err("unlabelled sample"))?;
        novel
            .iter()
            .position(|&c| c == l)
            .ok_or_else(|| data_err(format!("sample {} is not novel", src.meta(i).name)))
    };
    let all: Vec<usize> = a.exemplars.iter().chain(&a.queries).copied().collect();
    let mut emb = model.embed_indices(src, &all)?;
    let labels = all
        .iter()
        .map(|&i| class_of(i))
        .collect::<Result<Vec<_>, _>>()?;
    let classes: Vec<String> = novel.iter().map(|&c| src.classes()[c].clone()).collect();
    let pool = NovelPool::new(
        classes.clone(),
        all.iter().map(|&i| src.meta(i).name.clone()).collect(),
        emb.clone(),
        labels.clone(),
    );
    let queries = emb.split_off(a.exemplars.len());
    let set = OneShotSet {
        classes,
        exemplars: emb,
        exemplar_labels: labels[..a.exemplars.len()].to_vec(),
        queries,
        query_labels: labels[a.exemplars.len()..].to_vec(),
    };
    Ok((set, pool))
}

/// One-shot evaluation on the split's novel classes: cosine nearest exemplar, and
/// distribution calibration when base statistics are given and enabled; with `eval.draws`, each
/// method also over that many random exemplar draws.
pub fn evaluate_one_shot(
    model: &TrainedModel,
    src: &dyn SampleSource,
    split: &Split,
    a: &Assignment,
    base: Option<&BaseStats>,
    cfg: &TrainConfig,
) -> Result<Vec<EvalReport>, RunError> {
    let (set, pool) = one_shot_data(model, src, split, a)?;
    let draws = Draws {
        count: cfg.eval.draws,
        seed: cfg.eval.draw_seed,
    };
    let pool = match pool {
        Ok(p) => Some(p),
        Err(e) if draws.count > 0 => return Err(e.into()),
        Err(_) => None,
    };
    let mut cosine = evaluate_cosine(&set)?;
    if let (Some(pool), true) = (&pool, draws.count > 0) {
        cosine.draws = Some(evaluate_draws(pool, draws, |s, _| evaluate_cosine(s))?);
    }
    let mut reports = vec![cosine];
    if let (Some(stats), true) = (base, cfg.eval.calibration) {
        let text_weight = cfg.eval.calibration_text as f32;
        let text = if text_weight > 0.0 {
            Some(calibration_text_scores(cfg, src, split, stats)?)
        } else {
            None
        };
        let cc = CalibrationConfig {
            seed: cfg.seed,
            text_weight,
            ..Default::default()
        };
        let mut cal = evaluate_calibrated_with_text(&set, stats, &cc, text.as_deref())?;
        if let (Some(pool), true) = (&pool, draws.count > 0) {
            // The sampling seed follows the draw, not the training seed, so two runs draw the
            // same calibration samples for the same exemplars.
            cal.draws = Some(evaluate_draws(pool, draws, |s, d| {
                let cc = CalibrationConfig {
                    seed: crossglg_data::rng::hash_words(&[draws.seed, d as u64]),
                    text_weight,
                    ..Default::default()
                };
                evaluate_calibrated_with_text(s, stats, &cc, text.as_deref())
            })?);
        }
        reports.push(cal);
    }
    if cfg.eval.zero_shot || cfg.eval.text_prior > 0.0 {
        reports.extend(evaluate_text(
            model,
            src,
            split,
            a,
            &set,
            pool.as_ref(),
            cfg,
        )?);
    }
    Ok(reports)
}

/// For distribution calibration guided by the descriptions (`eval.calibration_text`): per
/// novel class of `split`, one score per row of `stats`, how alike the two classes'
/// descriptions are (the mean of the global descriptions' cosine and the per-joint
/// descriptions' mean cosine, embedded by the run's text encoder on the CPU).
fn calibration_text_scores(
    cfg: &TrainConfig,
    src: &dyn SampleSource,
    split: &Split,
    stats: &BaseStats,
) -> Result<Vec<Vec<f32>>, RunError> {
    let name = |c: &usize| src.classes()[*c].clone();
    let aux_names: Vec<String> = split.auxiliary_classes.iter().map(name).collect();
    let novel_names: Vec<String> = split.novel_classes.iter().map(name).collect();
    let cpu = Device::Cpu;
    let train = training_class_text(cfg, src, &aux_names, src.layout(), &cpu)?;
    let novel = load_class_text(
        &cfg.text,
        src.layout(),
        &novel_names,
        &Default::default(),
        &cpu,
    )?;
    let global = |t: &crate::textsrc::ClassText| -> Result<Vec<Vec<f64>>, RunError> {
        Ok(t.global.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    };
    let local = |t: &crate::textsrc::ClassText| -> Result<Vec<Vec<Vec<f32>>>, RunError> {
        Ok(t.local.to_dtype(DType::F32)?.to_vec3::<f32>()?)
    };
    let g = agreement::cosine_cross(&global(&novel)?, &global(&train)?);
    let l = agreement::per_joint_cross(&local(&novel)?, &local(&train)?);
    // the statistics' rows are training classes by their position in the split
    if let Some(b) = stats.labels.iter().find(|&&b| b >= aux_names.len()) {
        return Err(data_err(format!(
            "base statistics name training class {b}, but the split has {}",
            aux_names.len()
        )));
    }
    Ok(g.iter()
        .zip(&l)
        .map(|(gr, lr)| {
            stats
                .labels
                .iter()
                .map(|&b| (0.5 * (gr[b] + lr[b])) as f32)
                .collect()
        })
        .collect())
}

/// Zero-shot recognition from the novel classes' descriptions and the text prior (see
/// [`crate::config::EvalConfig::text_prior`]).
fn evaluate_text(
    model: &TrainedModel,
    src: &dyn SampleSource,
    split: &Split,
    a: &Assignment,
    set: &OneShotSet,
    pool: Option<&NovelPool>,
    cfg: &TrainConfig,
) -> Result<Vec<EvalReport>, RunError> {
    if !model.model.has_text_target() {
        return Err(crate::config::ConfigError::Invalid {
            origin: "eval config".into(),
            message: "eval.zero_shot / eval.text_prior need a model trained with the text-target branch (model.interaction.form = \"target\", guidance l2g or both)".into(),
        }
        .into());
    }
    let names: Vec<String> = split
        .novel_classes
        .iter()
        .map(|&c| src.classes()[c].clone())
        .collect();
    let text = load_class_text(
        &cfg.text,
        src.layout(),
        &names,
        &Default::default(),
        &model.device,
    )?;
    let all: Vec<usize> = a.exemplars.iter().chain(&a.queries).copied().collect();
    let sims = model
        .text_similarity_indices(src, &all, &text)?
        .expect("checked above");
    let query_sims = sims[a.exemplars.len()..].to_vec();
    let mut reports = Vec::new();
    if cfg.eval.zero_shot {
        reports.push(evaluate_with_text(set, &query_sims, 1.0)?);
    }
    let beta = cfg.eval.text_prior as f32;
    if beta > 0.0 {
        // the prior mixes similarities normalised by the training cohort's (the run's stored
        // cohort, or the same draw taken now for a run made before training kept one)
        let norm = match model.text_norm(&text)? {
            Some(n) => n,
            None => model.text_norm_of(&TextCohort::of(model, src, a, split)?, &text)?,
        };
        let sims: Vec<Vec<f32>> = sims.iter().map(|r| norm.apply(r)).collect();
        let query_sims = sims[a.exemplars.len()..].to_vec();
        let mut r = evaluate_with_text(set, &query_sims, beta)?;
        let draws = Draws {
            count: cfg.eval.draws,
            seed: cfg.eval.draw_seed,
        };
        if let (Some(pool), true) = (pool, draws.count > 0) {
            // the pool is sorted by (label, name): look each sample's similarities up by name
            let by_name: std::collections::HashMap<&str, &Vec<f32>> = all
                .iter()
                .zip(&sims)
                .map(|(&i, s)| (src.meta(i).name.as_str(), s))
                .collect();
            let pool_sims: Vec<&Vec<f32>> =
                pool.names.iter().map(|n| by_name[n.as_str()]).collect();
            r.draws = Some(evaluate_draws(pool, draws, |s, d| {
                let q: Vec<Vec<f32>> = pool
                    .query_indices(draws.seed, d)
                    .iter()
                    .map(|&i| pool_sims[i].clone())
                    .collect();
                evaluate_with_text(s, &q, beta)
            })?);
        }
        reports.push(r);
    }
    Ok(reports)
}

/// The "unknown" thresholds calibrated on a validation split's pseudo-novel classes: a gallery
/// of their protocol exemplars (one each), scored against their queries.
fn calibrate_unknown_novel(
    set: &OneShotSet,
    model_id: &str,
) -> Result<ThresholdCalibration, RunError> {
    let mut gallery = Gallery::new(set.exemplars.first().map_or(0, Vec::len), model_id);
    for (e, &l) in set.exemplars.iter().zip(&set.exemplar_labels) {
        gallery.enroll(&set.classes[l], std::slice::from_ref(e), None)?;
    }
    let names: Vec<String> = set
        .query_labels
        .iter()
        .map(|&l| set.classes[l].clone())
        .collect();
    let mut c = calibrate_threshold(&gallery, &set.queries, &names, 0.05)?;
    c.calibrated_on = "pseudo-novel classes of a validation split, one exemplar each".into();
    Ok(c)
}

/// The "unknown" threshold for galleries of this model, calibrated on the auxiliary classes:
/// a one-exemplar-per-class base gallery (each class's first training sample) scored against
/// the other training samples, at a 5 % false-accept rate.
fn calibrate_unknown(
    src: &dyn SampleSource,
    a: &Assignment,
    labels: &[u32],
    emb: &[Vec<f32>],
    aux_names: &[String],
    model_id: &str,
) -> Result<ThresholdCalibration, RunError> {
    let mut gallery = Gallery::new(emb.first().map_or(0, Vec::len), model_id);
    let mut first = vec![None; aux_names.len()];
    for (k, &l) in labels.iter().enumerate() {
        if first[l as usize].is_none() {
            first[l as usize] = Some(k);
            gallery.enroll(
                &aux_names[l as usize],
                &emb[k..k + 1],
                Some(&src.meta(a.train[k]).name),
            )?;
        }
    }
    let (samples, names): (Vec<Vec<f32>>, Vec<String>) = labels
        .iter()
        .enumerate()
        .filter(|(k, &l)| first[l as usize] != Some(*k))
        .map(|(k, &l)| (emb[k].clone(), aux_names[l as usize].clone()))
        .unzip();
    let mut c = calibrate_threshold(&gallery, &samples, &names, 0.05)?;
    c.calibrated_on = "base (training) classes".into();
    Ok(c)
}

/// Training samples per class the zero-shot calibration scores: enough for its quantiles, and
/// a bounded pass at NTU's scale.
const ZERO_SHOT_CALIBRATION_CAP: usize = 100;

/// Thresholds below which a zero-shot answer (the best similarity to a class description)
/// would count as "unknown", calibrated on a finished run's training classes as the gallery's
/// are: each training sample (at most [`ZERO_SHOT_CALIBRATION_CAP`] per class) scored against
/// every training class's description (the run's own), its own class left out for its
/// impostor score. What `crossglg eval --open-set --zero-shot` measures on the novel classes;
/// no answer uses it (docs/results.md: it rejects nearly every novel query). An error for a
/// model without the text-target branch.
pub fn zero_shot_calibration(run: &LoadedRun) -> Result<ThresholdCalibration, RunError> {
    if !run.model.model.has_text_target() {
        return Err(data_err(
            "the model has no text-target branch, so it answers nothing zero-shot",
        ));
    }
    let src = run.src.as_ref();
    let aux = &run.split.auxiliary_classes;
    let aux_names: Vec<String> = aux.iter().map(|&c| src.classes()[c].clone()).collect();
    let text = training_class_text(&run.cfg, src, &aux_names, &run.layout, &run.model.device)?;
    let (idx, own) = capped_training(src, &run.assignment, &run.split, ZERO_SHOT_CALIBRATION_CAP)?;
    let rows = run
        .model
        .text_similarity_indices(src, &idx, &text)?
        .expect("checked above");
    let mut c = calibrate_rows(&rows, &own, 0.05)?;
    c.calibrated_on = "training classes' descriptions, each sample's own class left out".into();
    Ok(c)
}

/// The zero-shot open-set table of a finished run (`crossglg eval --open-set --zero-shot`):
/// each novel class in turn left out of the described classes; its queries should come out
/// unknown (best description similarity below the threshold) and the others' be recognised
/// from their descriptions and accepted, at every operating point of
/// [`zero_shot_calibration`]. `descriptions` replaces the novel classes' texts.
pub fn zero_shot_open_set_table(
    run_dir: &Path,
    device: &Device,
    descriptions: Option<&Path>,
) -> Result<(ThresholdCalibration, Vec<crossglg_infer::eval::OpenSetRow>), RunError> {
    let mut run = load_run(run_dir, device)?;
    let cal = zero_shot_calibration(&run)?;
    if let Some(d) = descriptions {
        run.cfg.text.descriptions = Some(d.to_path_buf());
        run.cfg.text.bank = None;
    }
    let src = run.src.as_ref();
    let novel = &run.split.novel_classes;
    let names: Vec<String> = novel.iter().map(|&c| src.classes()[c].clone()).collect();
    let text = load_class_text(
        &run.cfg.text,
        src.layout(),
        &names,
        &Default::default(),
        &run.model.device,
    )?;
    let queries = &run.assignment.queries;
    let sims = run
        .model
        .text_similarity_indices(src, queries, &text)?
        .expect("the calibration needed the branch");
    let labels = queries
        .iter()
        .map(|&i| {
            src.meta(i)
                .label
                .and_then(|l| novel.iter().position(|&n| n == l))
                .ok_or_else(|| data_err("a query outside the novel classes"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = crossglg_infer::eval::open_set_rows(&sims, &labels, &operating_points(&cal))?;
    Ok((cal, rows))
}

/// A calibration's `(false-accept target, threshold)` pairs, for the open-set tables.
fn operating_points(cal: &ThresholdCalibration) -> Vec<(f64, f32)> {
    let mut points: Vec<(f64, f32)> = cal
        .operating_points
        .iter()
        .map(|p| (p.target_false_accept_rate, p.threshold))
        .collect();
    if points.is_empty() {
        points.push((cal.target_false_accept_rate, cal.threshold));
    }
    points
}

/// Writes `report.json` (all methods) and `report.md`.
pub fn write_reports(run_dir: &Path, reports: &[EvalReport]) -> Result<(), RunError> {
    let json = serde_json::to_string_pretty(reports).expect("reports serialise");
    let md: String = reports
        .iter()
        .map(|r| format!("{}\n", r.to_markdown()))
        .collect();
    for (name, bytes) in [
        ("report.json", json.as_bytes()),
        ("report.md", md.as_bytes()),
    ] {
        write_run_file(&run_dir.join(name), bytes)?;
    }
    Ok(())
}

/// A finished run with its data: the model, config, samples, split and assignment.
pub struct LoadedRun {
    pub model: TrainedModel,
    pub cfg: TrainConfig,
    pub layout: Layout,
    pub src: Box<dyn SampleSource>,
    pub split: Split,
    pub assignment: Assignment,
}

impl LoadedRun {
    /// The run's one-shot set (protocol exemplars and queries, embedded).
    pub fn one_shot_set(&self) -> Result<OneShotSet, RunError> {
        one_shot_set(
            &self.model,
            self.src.as_ref(),
            &self.split,
            &self.assignment,
        )
    }
}

pub fn load_run(run_dir: &Path, device: &Device) -> Result<LoadedRun, RunError> {
    let (model, cfg, layout) = TrainedModel::load(run_dir, device)?;
    let src = open_source(&cfg)?;
    let split = resolve_split_for(&cfg, src.as_ref())?;
    let assignment = split.apply(&src.metas())?;
    Ok(LoadedRun {
        model,
        cfg,
        layout,
        src,
        split,
        assignment,
    })
}

/// Re-evaluates a finished run (`crossglg eval`) with its own settings.
pub fn evaluate_run(run_dir: &Path, device: &Device) -> Result<Vec<EvalReport>, RunError> {
    evaluate_run_with(run_dir, device, &EvalOverrides::default())
}

/// The base statistics distribution calibration may use: every training class's, or with
/// `Main` the main dataset's only. The statistics' labels are training-label positions, in
/// which the classes of `[[data.extra]]` datasets come last.
pub fn calibration_stats(
    mut stats: BaseStats,
    base: crate::config::CalibrationBase,
    split: &Split,
    src: &dyn SampleSource,
) -> BaseStats {
    if base == crate::config::CalibrationBase::Main {
        let own = main_auxiliary(split.auxiliary_classes.len(), src);
        stats.retain_labels(|l| l < own);
    }
    stats
}

/// Evaluation settings that replace the run's own when given.
#[derive(Debug, Clone, Default)]
pub struct EvalOverrides {
    pub draws: Option<usize>,
    pub draw_seed: Option<u64>,
    pub zero_shot: Option<bool>,
    pub text_prior: Option<f64>,
    pub calibration_base: Option<crate::config::CalibrationBase>,
    pub calibration_text: Option<f64>,
    /// The classes' descriptions from this file instead of the run's `[text]` ones (the
    /// main dataset's classes, embedded by the run's text encoder).
    pub descriptions: Option<PathBuf>,
}

/// [`evaluate_run`] with some evaluation settings overridden.
pub fn evaluate_run_with(
    run_dir: &Path,
    device: &Device,
    o: &EvalOverrides,
) -> Result<Vec<EvalReport>, RunError> {
    let LoadedRun {
        mut model,
        mut cfg,
        src,
        split,
        assignment: a,
        ..
    } = load_run(run_dir, device)?;
    // a run made before training kept a text cohort gets it now, so that recognising with the
    // description prior (which has no dataset) decides as this evaluation does
    if model.model.has_text_target() && model.cohort.is_none() && run_dir.is_dir() {
        let cohort = TextCohort::of(&model, src.as_ref(), &a, &split)?;
        let path = run_dir.join(TEXT_COHORT_FILE);
        match cohort.save(&path, &model.weights_hash) {
            Ok(()) => tracing::info!("wrote the run's text cohort to {}", path.display()),
            // evaluating still works; only recognising without the dataset lacks it
            Err(e) => tracing::warn!("could not keep the run's text cohort: {e}"),
        }
        model.cohort = Some(cohort);
    }
    let e = &mut cfg.eval;
    e.draws = o.draws.unwrap_or(e.draws);
    e.draw_seed = o.draw_seed.unwrap_or(e.draw_seed);
    e.zero_shot = o.zero_shot.unwrap_or(e.zero_shot);
    e.text_prior = o.text_prior.unwrap_or(e.text_prior);
    e.calibration_base = o.calibration_base.unwrap_or(e.calibration_base);
    e.calibration_text = o.calibration_text.unwrap_or(e.calibration_text);
    if let Some(d) = &o.descriptions {
        cfg.text.descriptions = Some(d.clone());
        cfg.text.bank = None;
    }
    let stats_path = run_dir.join("base_stats.safetensors");
    let stats = if stats_path.exists() {
        let s = BaseStats::load(&stats_path)?;
        Some(calibration_stats(
            s,
            cfg.eval.calibration_base,
            &split,
            src.as_ref(),
        ))
    } else {
        None
    };
    evaluate_one_shot(&model, src.as_ref(), &split, &a, stats.as_ref(), &cfg)
}

/// Every class of a description file (or the ones named in `classes`, in that order; each must
/// be in the file), embedded by a run's text encoder (`text`, the run's `[text]` config) for
/// its layout, on the model's `device`: what recognising from descriptions compares skeletons
/// with. Errors name the file.
pub fn described_classes(
    text: &crate::config::TextConfig,
    layout: &Layout,
    file: &Path,
    classes: Option<&[String]>,
    device: &Device,
) -> Result<(Vec<String>, crate::textsrc::ClassText), RunError> {
    let names: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => crossglg_text::DescriptionFile::load(file)
            .map_err(|e| RunError::Text(crossglg_text::TextError::from(e).into()))?
            .classes
            .into_iter()
            .map(|c| c.name)
            .collect(),
    };
    let cfg = crate::config::TextConfig {
        descriptions: Some(file.to_path_buf()),
        bank: None,
        ..text.clone()
    };
    let t = load_class_text(&cfg, layout, &names, &Default::default(), device)?;
    Ok((names, t))
}

/// A trained model's text-target branch and a set of described classes
/// ([`described_classes`]), as the server's [`crossglg_infer::embedder::Describer`].
pub struct ClassDescriber {
    pub model: std::sync::Arc<TrainedModel>,
    pub classes: Vec<String>,
    pub text: crate::textsrc::ClassText,
    /// The model's cohort normalisation for these classes (what the description prior mixes);
    /// `None` for a run without a cohort, whose prior mixes the raw similarities.
    pub norm: Option<TextNorm>,
}

impl ClassDescriber {
    /// The classes of `file` (all, or `classes`) for `model`; an error when the model has no
    /// text-target branch or the file does not fit.
    pub fn new(
        model: std::sync::Arc<TrainedModel>,
        text: &crate::config::TextConfig,
        layout: &Layout,
        file: &Path,
        classes: Option<&[String]>,
    ) -> Result<Self, RunError> {
        if !model.model.has_text_target() {
            return Err(data_err(
                "the model has no text-target branch to compare sequences with descriptions (train with recipe = \"target\")",
            ));
        }
        let (classes, text) = described_classes(text, layout, file, classes, &model.device)?;
        let norm = model.text_norm(&text)?;
        Ok(ClassDescriber {
            model,
            classes,
            text,
            norm,
        })
    }
}

impl crossglg_infer::embedder::Describer for ClassDescriber {
    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn describe(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.model
            .text_similarity(skeletons, &self.text)
            .map_err(EmbedError::new)?
            .ok_or_else(|| EmbedError::new("the model has no text-target branch"))
    }

    fn model_hash(&self) -> Option<String> {
        Some(self.model.weights_hash.clone())
    }

    fn prior_row(&self, row: &[f32]) -> Vec<f32> {
        match &self.norm {
            Some(n) => n.apply(row),
            None => row.to_vec(),
        }
    }

    fn embed_and_describe(
        &self,
        skeletons: &[Skeleton],
    ) -> Result<Option<(Vec<Vec<f32>>, Vec<Vec<f32>>)>, EmbedError> {
        self.model
            .embed_and_describe(skeletons, &self.text)
            .map(Some)
            .map_err(EmbedError::new)
    }
}

/// `crossglg text compare`: two description files embedded by one encoder and compared class by
/// class ([`agreement::compare_sets`]): do the two authors call the same classes alike? Each
/// file is checked against its own layout first; an error names the file.
pub fn compare_description_files(
    a: &Path,
    b: &Path,
    encoder: &crossglg_text::TextEncoder,
    by: agreement::MatchBy,
) -> Result<agreement::SetComparison, RunError> {
    let embed = |path: &Path| -> Result<agreement::EmbeddedSet, RunError> {
        let named = |message: String| {
            RunError::Text(crate::textsrc::TextSourceError::Descriptions {
                path: path.display().to_string(),
                message,
            })
        };
        let file = crossglg_text::DescriptionFile::load(path)
            .map_err(|e| RunError::Text(crossglg_text::TextError::from(e).into()))?;
        let layout = Layout::load_named_in(&file.layout, path)?;
        let (bank, _) =
            crossglg_text::bank::build_bank(&file, &layout, encoder, &Default::default())
                .map_err(|e| named(e.to_string()))?;
        let mut ids: Vec<usize> = file.classes.iter().map(|c| c.id).collect();
        ids.sort_unstable(); // the bank's rows are in id order
        Ok(agreement::EmbeddedSet {
            global: bank.global.to_dtype(DType::F64)?.to_vec2::<f64>()?,
            local: bank.local.to_dtype(DType::F32)?.to_vec3::<f32>()?,
            names: bank.classes,
            ids,
            joints: bank.joints,
        })
    };
    Ok(agreement::compare_sets(&embed(a)?, &embed(b)?, by)?)
}

/// How far the descriptions' similarities agree with the run's skeleton embeddings
/// (`crossglg eval --text-agreement`): Spearman's ρ between the classes' text cosines (global,
/// and per joint) and the cosines of their mean embeddings, over training × training,
/// novel × training and novel × novel pairs. The training classes are embedded from their
/// training samples (test-time preprocessing), the novel ones from their exemplars and
/// queries. Any run whose config names descriptions or a bank works, one trained without
/// text included. Options: [`AgreementOptions`].
pub fn text_agreement(
    run: &LoadedRun,
    opts: &AgreementOptions,
) -> Result<Vec<AgreementRow>, RunError> {
    let src = run.src.as_ref();
    let aux = &run.split.auxiliary_classes;
    let novel = &run.split.novel_classes;
    let name = |c: &usize| src.classes()[*c].clone();
    let aux_names: Vec<String> = aux.iter().map(name).collect();
    let novel_names: Vec<String> = novel.iter().map(name).collect();
    let cpu = Device::Cpu;
    let train_text = training_class_text(&run.cfg, src, &aux_names, &run.layout, &cpu)?;
    let novel_text = load_class_text(
        &run.cfg.text,
        &run.layout,
        &novel_names,
        &Default::default(),
        &cpu,
    )?;
    let global: Vec<Vec<f64>> = [&train_text.global, &novel_text.global]
        .iter()
        .map(|t| t.to_dtype(DType::F64)?.to_vec2::<f64>())
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    let local: Vec<Vec<Vec<f32>>> = [&train_text.local, &novel_text.local]
        .iter()
        .map(|t| t.to_dtype(DType::F32)?.to_vec3::<f32>())
        .collect::<Result<Vec<_>, _>>()?
        .concat();

    let all: Vec<usize> = run
        .assignment
        .train
        .iter()
        .chain(&run.assignment.exemplars)
        .chain(&run.assignment.queries)
        .copied()
        .collect();
    let all_labels = all
        .iter()
        .map(|&i| {
            let l = src
                .meta(i)
                .label
                .ok_or_else(|| data_err("unlabelled sample"))?;
            aux.iter()
                .position(|&c| c == l)
                .or_else(|| novel.iter().position(|&c| c == l).map(|p| aux.len() + p))
                .ok_or_else(|| data_err(format!("sample of class {l}, outside the split")))
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    // Classes kept, in order (training first): the extra datasets' training classes are listed
    // last among them and left out with `main_only`.
    let own = main_auxiliary(aux.len(), src);
    let kept: Vec<usize> = (0..aux.len() + novel.len())
        .filter(|&c| !opts.main_only || c < own || c >= aux.len())
        .collect();
    let train = if opts.main_only { own } else { aux.len() };
    let mut new_index = vec![usize::MAX; aux.len() + novel.len()];
    kept.iter().enumerate().for_each(|(n, &c)| new_index[c] = n);
    let (all, all_labels): (Vec<usize>, Vec<usize>) = all
        .into_iter()
        .zip(all_labels)
        .filter(|&(_, l)| new_index[l] != usize::MAX)
        .map(|(i, l)| (i, new_index[l]))
        .unzip();
    let global: Vec<Vec<f64>> = kept.iter().map(|&c| global[c].clone()).collect();
    let local: Vec<Vec<Vec<f32>>> = kept.iter().map(|&c| local[c].clone()).collect();
    let k = kept.len();
    let (samples, labels) = cap_per_class(&all, &all_labels, k, opts.per_class);
    let rows = run.model.embed_indices(src, &samples)?;
    let skeleton = agreement::class_similarities(&rows, &labels, k)?;
    Ok(agreement::agreement(
        &skeleton,
        &[
            ("global", agreement::cosine_matrix(&global)),
            ("per-joint", agreement::per_joint_similarities(&local)),
        ],
        train,
    )?)
}

/// How [`text_agreement`] forms the classes' mean embeddings and which classes it compares.
#[derive(Debug, Clone, Default)]
pub struct AgreementOptions {
    /// Each class's mean from at most this many of its samples, drawn by a fixed keyed shuffle
    /// (NTU-120's ~950 a class need not all be embedded for a mean); `None`: all.
    pub per_class: Option<usize>,
    /// Leave out the training classes of `[[data.extra]]` datasets: pairs across datasets can
    /// differ in the texts' author and the skeletons' source at once, which alone moves ρ.
    pub main_only: bool,
}

/// At most `cap` samples of each of `k` classes, chosen by a keyed shuffle of each class's
/// samples (the same choice on every call), in their original order; everything without a cap.
/// At most `cap` training samples of each training class (a fixed draw, [`cap_per_class`]) and
/// their training-label positions.
fn capped_training(
    src: &dyn SampleSource,
    a: &Assignment,
    split: &Split,
    cap: usize,
) -> Result<(Vec<usize>, Vec<usize>), RunError> {
    let aux = &split.auxiliary_classes;
    let labels: Vec<usize> = train_labels(src, a, aux)?
        .iter()
        .map(|&l| l as usize)
        .collect();
    Ok(cap_per_class(&a.train, &labels, aux.len(), Some(cap)))
}

fn cap_per_class(
    samples: &[usize],
    labels: &[usize],
    k: usize,
    cap: Option<usize>,
) -> (Vec<usize>, Vec<usize>) {
    let Some(cap) = cap else {
        return (samples.to_vec(), labels.to_vec());
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    labels
        .iter()
        .enumerate()
        .for_each(|(n, &l)| members[l].push(n));
    let mut keep = vec![false; samples.len()];
    for (class, mut m) in members.into_iter().enumerate() {
        if m.len() > cap {
            m.shuffle(&mut keyed_rng(&[0x61_67_72_65, class as u64]));
            m.truncate(cap);
        }
        m.into_iter().for_each(|n| keep[n] = true);
    }
    (0..samples.len())
        .filter(|&n| keep[n])
        .map(|n| (samples[n], labels[n]))
        .unzip()
}

/// JID's output on the held-out (novel) classes of a finished run against their key-joint
/// targets from the descriptions (the raw targets, whatever form training used), averaged per
/// class; `None` when the model has no JID.
pub fn jid_on_novel(run: &LoadedRun) -> Result<Option<crossglg_plot::JidTargets>, RunError> {
    let src = run.src.as_ref();
    let names: Vec<String> = run
        .split
        .novel_classes
        .iter()
        .map(|&c| src.classes()[c].clone())
        .collect();
    let all: Vec<usize> = run
        .assignment
        .exemplars
        .iter()
        .chain(&run.assignment.queries)
        .copied()
        .collect();
    let Some(k) = run.model.joint_importance_indices(src, &all)? else {
        return Ok(None);
    };
    let mut text_cfg = run.cfg.text.clone();
    text_cfg.key_joints = crate::config::KeyJointTargets::Raw;
    let text = load_class_text(
        &text_cfg,
        &run.layout,
        &names,
        &Default::default(),
        &Device::Cpu,
    )?;
    let targets = text.key_joints.to_vec2::<f32>()?;
    let v = run.layout.num_joints();
    let uniform = vec![1.0 / v as f32; v];
    let mut outputs = vec![vec![0f32; v]; names.len()];
    let mut kl_model = vec![0f64; names.len()];
    let mut counts = vec![0usize; names.len()];
    for (&i, row) in all.iter().zip(&k) {
        let label = src
            .meta(i)
            .label
            .ok_or_else(|| data_err("unlabelled sample"))?;
        let c = run
            .split
            .novel_classes
            .iter()
            .position(|&n| n == label)
            .ok_or_else(|| data_err("sample outside the novel classes"))?;
        outputs[c].iter_mut().zip(row).for_each(|(a, b)| *a += b);
        kl_model[c] += crossglg_plot::kl(&targets[c], row);
        counts[c] += 1;
    }
    for c in 0..names.len() {
        let n = counts[c].max(1);
        outputs[c].iter_mut().for_each(|a| *a /= n as f32);
        kl_model[c] /= n as f64;
    }
    Ok(Some(crossglg_plot::JidTargets {
        kl_uniform: targets
            .iter()
            .map(|t| crossglg_plot::kl(t, &uniform))
            .collect(),
        classes: names,
        joints: run.layout.joints.clone(),
        targets,
        outputs,
        kl_model,
    }))
}

/// The open-set table of a finished run (`crossglg eval --open-set`): the run's one-shot set
/// (protocol exemplars) at every operating point of a threshold calibration file, the run's
/// own `unknown_threshold.json` by default (or another, e.g. a validation run's of the same
/// recipe). Returns the calibration used and one row per operating point.
pub fn open_set_table(
    run_dir: &Path,
    device: &Device,
    calibration: Option<&Path>,
) -> Result<(ThresholdCalibration, Vec<crossglg_infer::eval::OpenSetRow>), RunError> {
    let loaded = load_run(run_dir, device)?;
    let path = calibration
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join("unknown_threshold.json"));
    let cal: ThresholdCalibration = read_json(&path)?;
    let set = loaded.one_shot_set()?;
    let rows = crossglg_infer::eval::open_set(&set, &operating_points(&cal))?;
    Ok((cal, rows))
}

/// Re-calibrates a finished validation run's unknown thresholds on its pseudo-novel classes
/// (what training does for validation runs; for runs made before it did) and writes
/// `unknown_threshold.json`.
pub fn recalibrate_unknown(
    run_dir: &Path,
    device: &Device,
) -> Result<ThresholdCalibration, RunError> {
    let loaded = load_run(run_dir, device)?;
    if loaded.cfg.data.validation.is_none() {
        return Err(RunError::RunDir {
            path: run_dir.to_path_buf(),
            message: "not a validation run (data.validation is unset): its novel classes are test classes, which must not tune thresholds".into(),
        });
    }
    let set = loaded.one_shot_set()?;
    let c = calibrate_unknown_novel(&set, &run_dir.display().to_string())?;
    let path = run_dir.join("unknown_threshold.json");
    write_run_json(&path, &c)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::cap_per_class;

    #[test]
    fn cap_per_class_keeps_at_most_cap_of_each_class_in_order() {
        // class 0: 6 samples, class 1: 2, class 2: 4
        let labels = [0, 1, 0, 2, 0, 2, 0, 1, 0, 2, 0, 2];
        let samples: Vec<usize> = (100..112).collect();
        let (s, l) = cap_per_class(&samples, &labels, 3, Some(3));
        let count = |c: usize| l.iter().filter(|&&x| x == c).count();
        assert_eq!((count(0), count(1), count(2)), (3, 2, 3));
        // each kept sample keeps its label, and the original order
        for (x, y) in s.iter().zip(&l) {
            assert_eq!(labels[x - 100], *y);
        }
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        // the same draw every time; no cap keeps everything
        assert_eq!(cap_per_class(&samples, &labels, 3, Some(3)), (s, l));
        let (all, _) = cap_per_class(&samples, &labels, 3, None);
        assert_eq!(all, samples);
        let (big, _) = cap_per_class(&samples, &labels, 3, Some(100));
        assert_eq!(big, samples);
    }
}
