//! `crossglg export`: a trained model as a folder other programs can load.
//!
//! The folder holds the weights alone (`model.safetensors`, no optimiser state, loadable by every
//! crossglg command that takes `--model`), `config.json` (the architecture spelled out, the
//! preprocessing, the embedding width), the layout, the embedding centre, a golden input with
//! this build's outputs on it (`golden.safetensors`), and a model card (`README.md`). With
//! `torch` the weights are also written under the parameter names of the PyTorch twins in
//! `bench/torch_reference.py` (`pytorch_model.safetensors`), which `bench/check_export.py` loads
//! to compare PyTorch's outputs with the golden ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use crossglg_data::tagged::{self, TaggedError};
use crossglg_model::{
    frozen, ClassifierKind, CrossForm, CrossGlgConfig, EncoderKind, Graph, StepText,
};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::run::{
    weights_hash, LoadedWeights, RunError, CENTER_FILE, MODEL_KIND, MODEL_VERSION, TEXT_COHORT_FILE,
};

/// What marks a folder as an export (and lets `--force` replace it).
const FORMAT: &str = "crossglg-export/1";
const GOLDEN_KIND: &str = "golden";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    File(#[from] TaggedError),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path} exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("{path} exists and is not a crossglg export (no config.json with format `{FORMAT}`); not replacing it")]
    NotAnExport { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weight `{name}` has no PyTorch twin name ({why})")]
    Unmapped { name: String, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Also write `pytorch_model.safetensors` under the PyTorch twins' names.
    pub torch: bool,
    /// Replace an existing export folder.
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub files: Vec<String>,
    /// Weights in `model.safetensors`.
    pub tensors: usize,
    pub parameters: usize,
    /// Weights without a PyTorch twin, left out of `pytorch_model.safetensors`.
    pub torch_left_out: Vec<String>,
    /// Outputs stored in `golden.safetensors`.
    pub golden: Vec<String>,
}

/// The architecture as a PyTorch (or any) reimplementation needs it: every size spelled out,
/// nothing left to a preset or a clamp.
#[derive(Debug, Clone, Serialize)]
pub struct Architecture {
    pub encoder: &'static str,
    pub in_channels: usize,
    pub persons: usize,
    pub joints: usize,
    /// Spatial partitions of the graph (`K` of the `(K, V, V)` adjacency).
    pub partitions: usize,
    /// `(channels, stride)` per block.
    pub blocks: Vec<(usize, usize)>,
    pub temporal_kernel: usize,
    pub dilations: Vec<usize>,
    pub edge_importance: bool,
    pub attention_heads: usize,
    pub input_transform_power: usize,
    /// JID after this many blocks, its hidden width and how it re-weights the later blocks.
    pub jid: Option<JidArch>,
    pub info_bottleneck: bool,
    /// The paper-form cross-modal branch.
    pub cross: Option<CrossArch>,
    /// The text-target branch (no PyTorch twin).
    pub text_align: bool,
    pub classifier: &'static str,
    pub classifier_hidden: usize,
    pub classifier_scale: f64,
    pub num_classes: usize,
    pub embedding_dim: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct JidArch {
    pub after_block: usize,
    pub hidden: usize,
    pub reweight: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossArch {
    pub text_dim: usize,
    pub dim: usize,
    pub heads: usize,
    pub depth: usize,
    pub mlp_ratio: usize,
    pub text_residual: bool,
}

impl Architecture {
    pub fn of(cfg: &CrossGlgConfig, graph: &Graph, partitions: usize) -> Self {
        let e = &cfg.encoder;
        let ic = &cfg.interaction;
        let jid = cfg.guidance.uses_jid().then(|| JidArch {
            after_block: cfg.effective_jid_after(),
            hidden: cfg.jid.hidden,
            reweight: match cfg.jid.reweight {
                crossglg_model::Reweight::Off => "off",
                crossglg_model::Reweight::Multiplicative => "multiplicative",
                crossglg_model::Reweight::Residual => "residual",
            },
        });
        let cross_on = cfg.guidance.uses_cross_modal();
        let c_out = e.out_channels();
        Self {
            encoder: match e.kind {
                EncoderKind::StGcn => "st_gcn",
                EncoderKind::CtrGcn => "ctr_gcn",
                EncoderKind::InfoGcn => "info_gcn",
            },
            in_channels: e.in_channels,
            persons: e.num_persons,
            joints: graph.num_joints,
            partitions,
            blocks: e.blocks.iter().map(|b| (b.channels, b.stride)).collect(),
            temporal_kernel: e.temporal_kernel,
            dilations: e.dilations.clone(),
            edge_importance: e.edge_importance,
            attention_heads: e.info.heads,
            input_transform_power: e.info.k,
            jid,
            info_bottleneck: e.kind == EncoderKind::InfoGcn,
            cross: (cross_on && ic.form == CrossForm::Paper).then_some(CrossArch {
                text_dim: ic.text_dim,
                dim: ic.dim,
                heads: ic.heads,
                depth: ic.depth,
                mlp_ratio: ic.mlp_ratio,
                text_residual: ic.text_residual,
            }),
            text_align: cross_on && ic.form == CrossForm::Target,
            classifier: match cfg.classifier.kind {
                ClassifierKind::Linear => "linear",
                ClassifierKind::Mlp => "mlp",
                ClassifierKind::Cosine => "cosine",
            },
            classifier_hidden: if cfg.classifier.hidden == 0 {
                c_out
            } else {
                cfg.classifier.hidden
            },
            classifier_scale: cfg.classifier.scale,
            num_classes: cfg.num_classes,
            embedding_dim: c_out,
        }
    }
}

#[derive(Serialize)]
struct ExportConfig<'a> {
    format: &'static str,
    architecture: &'a Architecture,
    /// `(N, C, T, V, M)` per batch: `C` values per joint, `T` frames, `V` joints, `M` persons.
    input: [usize; 4],
    preprocess: &'a crossglg_data::preprocess::PreprocessConfig,
    layout: &'a str,
    weights_sha256: &'a str,
    /// Files and what they hold.
    files: &'a [String],
}

/// Exports the model of `run` (a run directory, a checkpoint file or another export) to `out`.
pub fn export(run: &Path, out: &Path, opts: &ExportOptions) -> Result<ExportSummary, ExportError> {
    let device = Device::Cpu;
    let w = LoadedWeights::load(run, &device)?;
    check_target(out, opts.force)?;

    let named: Vec<(String, Tensor)> = {
        let data = w.varmap.data().lock().expect("VarMap lock poisoned");
        let mut v: Vec<(String, Tensor)> = data
            .iter()
            .map(|(k, var)| (k.clone(), var.as_tensor().detach()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let parameters: usize = named.iter().map(|(_, t)| t.elem_count()).sum();
    let a = w.graph.spatial_tensor(&device)?;
    let arch = Architecture::of(&w.cfg.model, &w.graph, a.dim(0)?);
    let model = frozen(&w.cfg.model, &w.graph, &w.varmap).map_err(RunError::from)?;
    // the identity galleries know the model by
    let hash = weights_hash(&w.varmap)?;

    // Everything goes into a fresh folder beside `out`, renamed into place at the end: a
    // failure never leaves half an export.
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".crossglg-export-")
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    let dir = tmp.path();

    let mut files = Vec::new();
    let mut meta = HashMap::from([
        ("config".to_string(), w.cfg.to_toml()),
        ("layout".to_string(), w.layout.to_toml()),
        ("names".to_string(), "crossglg".to_string()),
    ]);
    tagged::write(
        &dir.join("model.safetensors"),
        MODEL_KIND,
        MODEL_VERSION,
        meta.clone(),
        named.iter().map(|(n, t)| (n.clone(), t)).collect(),
    )?;
    files.push("model.safetensors: the weights under crossglg's names".to_string());

    let mut torch_left_out = Vec::new();
    if opts.torch {
        let (mapped, left) = torch_names(&w.cfg.model, &w.graph, &a, &named)?;
        torch_left_out = left;
        meta.insert("names".into(), "torch".into());
        tagged::write(
            &dir.join("pytorch_model.safetensors"),
            MODEL_KIND,
            MODEL_VERSION,
            meta,
            mapped.iter().map(|(n, t)| (n.clone(), t)).collect(),
        )?;
        files.push(
            "pytorch_model.safetensors: the weights and graph buffers under the names of \
             bench/torch_reference.py's twins"
                .to_string(),
        );
    }

    let golden = golden(&model, &arch, w.cfg.preprocess.frames)?;
    let golden_names: Vec<String> = golden.iter().map(|(n, _)| n.clone()).collect();
    tagged::write(
        &dir.join("golden.safetensors"),
        GOLDEN_KIND,
        1,
        HashMap::new(),
        golden.iter().map(|(n, t)| (n.clone(), t)).collect(),
    )?;
    files.push(format!(
        "golden.safetensors: a fixed input and this build's outputs on it ({})",
        golden_names.join(", ")
    ));

    write_file(&dir.join("layout.toml"), w.layout.to_toml().as_bytes())?;
    files.push("layout.toml: the joints and bones the model was trained on".into());
    write_file(
        &dir.join("training-config.toml"),
        w.cfg.to_toml().as_bytes(),
    )?;
    files.push("training-config.toml: the resolved training config".into());
    if let Some(center) = w.run_file(CENTER_FILE) {
        let bytes = crossglg_data::bounded::read(&center, 64 << 20).map_err(io_err(&center))?;
        write_file(&dir.join(CENTER_FILE), &bytes)?;
        files.push(
            "embedding_center.json: the mean training embedding, subtracted before cosine \
             similarities"
                .into(),
        );
    }
    if let Some(cohort) = w.run_file(TEXT_COHORT_FILE) {
        let bytes = crossglg_data::bounded::read(&cohort, 256 << 20).map_err(io_err(&cohort))?;
        write_file(&dir.join(TEXT_COHORT_FILE), &bytes)?;
        files.push(
            "text_cohort.safetensors: training samples' features, which normalise description \
             similarities for the description prior"
                .into(),
        );
    }
    let report_md = match w.run_file("report.md") {
        Some(report) => Some(
            crossglg_data::bounded::read_to_string(&report, 16 << 20).map_err(io_err(&report))?,
        ),
        None => None,
    };
    files.push("README.md: this model card".into());
    files.push("config.json: the architecture, input and preprocessing".into());

    let frames = w.cfg.preprocess.frames;
    let cfg_json = ExportConfig {
        format: FORMAT,
        architecture: &arch,
        input: [arch.in_channels, frames, arch.joints, arch.persons],
        preprocess: &w.cfg.preprocess,
        layout: &w.layout.name,
        weights_sha256: &hash,
        files: &files,
    };
    let json = serde_json::to_string_pretty(&cfg_json).expect("the export config serialises");
    write_file(&dir.join("config.json"), json.as_bytes())?;
    let card = model_card(&w, &arch, parameters, &hash, report_md.as_deref(), &files);
    write_file(&dir.join("README.md"), card.as_bytes())?;

    let staged = tmp.keep();
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io_err(out))?;
    }
    std::fs::rename(&staged, out).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staged);
        ExportError::Io {
            path: out.to_path_buf(),
            source,
        }
    })?;
    Ok(ExportSummary {
        dir: out.to_path_buf(),
        files,
        tensors: named.len(),
        parameters,
        torch_left_out,
        golden: golden_names,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    crossglg_data::atomic::write_atomic(path, bytes).map_err(io_err(path))
}

/// `out` must not exist, or (with `force`) be an earlier export.
fn check_target(out: &Path, force: bool) -> Result<(), ExportError> {
    if !out.exists() {
        return Ok(());
    }
    if !force {
        return Err(ExportError::Exists {
            path: out.to_path_buf(),
        });
    }
    let cfg = out.join("config.json");
    let is_export = crossglg_data::bounded::read_to_string(&cfg, 16 << 20)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(FORMAT));
    if is_export {
        Ok(())
    } else {
        Err(ExportError::NotAnExport {
            path: out.to_path_buf(),
        })
    }
}

/// A fixed pseudo-random batch of two sequences and the model's eval-mode outputs on it: the
/// embedding, the classifier's logits, JID's joint importance and (paper form) the cross-modal
/// logits on fixed pseudo-random text. Raw model outputs: the centre is not subtracted.
fn golden(
    model: &crossglg_model::CrossGlg,
    arch: &Architecture,
    frames: usize,
) -> Result<Vec<(String, Tensor)>, ExportError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x601d);
    let n = 2;
    let shape = (n, arch.in_channels, frames, arch.joints, arch.persons);
    let count = n * arch.in_channels * frames * arch.joints * arch.persons;
    let x: Vec<f32> = (0..count).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let x = Tensor::from_vec(x, shape, &Device::Cpu)?;
    let text = match &arch.cross {
        Some(c) => {
            let t: Vec<f32> = (0..n * arch.joints * c.text_dim)
                .map(|_| rng.random_range(-0.1f32..0.1))
                .collect();
            Some(Tensor::from_vec(
                t,
                (n, arch.joints, c.text_dim),
                &Device::Cpu,
            )?)
        }
        None => None,
    };
    let out = model.forward_step(
        &x,
        &StepText {
            sample_local: text.as_ref(),
            ..Default::default()
        },
        false,
    )?;
    let mut v = vec![
        ("input".to_string(), x),
        ("embedding".to_string(), out.embedding),
        ("logits".to_string(), out.logits_s),
    ];
    if let Some(k) = out.k_out {
        v.push(("joint_importance".into(), k));
    }
    if let (Some(t), Some(l)) = (text, out.logits_c) {
        v.push(("text_local".into(), t));
        v.push(("logits_cross".into(), l));
    }
    Ok(v)
}

/// Tensors by name.
type Named = Vec<(String, Tensor)>;

/// `encoder.l{j}.rest` (1-based `j`) as `(j - 1, rest)`.
fn numbered<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (num, rest) = rest.split_once('.')?;
    Some((num.parse().ok()?, rest))
}

/// The weights under the PyTorch twins' names, plus the graph buffers the twins hold; returns
/// the names left out (heads the twins do not have).
fn torch_names(
    cfg: &CrossGlgConfig,
    graph: &Graph,
    a: &Tensor,
    named: &[(String, Tensor)],
) -> Result<(Named, Vec<String>), ExportError> {
    let kind = cfg.encoder.kind;
    let v = graph.num_joints;
    let mut out: Vec<(String, Tensor)> = Vec::with_capacity(named.len());
    let mut left = Vec::new();
    // q, k, v of each attention, concatenated into PyTorch's in_proj after the loop
    let mut in_proj: std::collections::BTreeMap<(String, &str), [Option<Tensor>; 3]> =
        Default::default();
    for (name, t) in named {
        let unmapped = |why: &str| ExportError::Unmapped {
            name: name.clone(),
            why: why.into(),
        };
        let mapped: String = if let Some(rest) = name.strip_prefix("encoder.") {
            match kind {
                EncoderKind::StGcn => {
                    if let Some((i, rest)) = numbered(name, "encoder.st_gcn_networks.") {
                        let rest = rest
                            .strip_prefix("gcn.conv.")
                            .map_or_else(|| rest.to_string(), |w| format!("gcn.{w}"));
                        format!("encoder.blocks.{i}.{rest}")
                    } else if let Some(i) = rest
                        .strip_prefix("edge_importance.")
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        // the twin multiplies the source-first (transposed) adjacency
                        out.push((
                            format!("encoder.blocks.{i}.edge_importance"),
                            t.transpose(1, 2)?.contiguous()?,
                        ));
                        continue;
                    } else {
                        name.clone()
                    }
                }
                EncoderKind::CtrGcn | EncoderKind::InfoGcn => {
                    if let Some((j, rest)) = numbered(name, "encoder.l") {
                        let i = j.checked_sub(1).ok_or_else(|| unmapped("block 0"))?;
                        if rest == "gcn1.pa_delta" {
                            // the twin learns PA itself; crossglg learns PA - A
                            out.push((format!("encoder.blocks.{i}.gcn1.PA"), (a + t)?));
                            continue;
                        }
                        if rest == "agcn.shared_topology_delta" {
                            let eye = Tensor::eye(v, t.dtype(), t.device())?
                                .unsqueeze(0)?
                                .broadcast_as(t.shape())?;
                            out.push((
                                format!("encoder.blocks.{i}.gcn1.shared_topology"),
                                (eye + t)?,
                            ));
                            continue;
                        }
                        let rest = if let Some(r) = rest.strip_prefix("agcn.") {
                            format!("gcn1.{r}")
                        } else if let Some(r) = rest.strip_prefix("tcn.") {
                            format!("tcn1.{r}")
                        } else {
                            rest.to_string()
                        };
                        format!("encoder.blocks.{i}.{rest}")
                    } else {
                        name.clone()
                    }
                }
            }
        } else if name.starts_with("align.") {
            left.push(name.clone());
            continue;
        } else if let Some(rest) = name.strip_prefix("cross.") {
            // InteractionBlock q/k/v/o -> nn.MultiheadAttention's in_proj and out_proj
            let attn = ["self_attn", "cross_attn"]
                .into_iter()
                .find_map(|a| rest.split_once(&format!(".{a}.")).map(|(b, r)| (b, a, r)));
            match attn {
                Some((block, attn, r)) => {
                    let (which, param) = r.split_once('.').ok_or_else(|| unmapped("attention"))?;
                    let prefix = format!("cross.{block}.{attn}");
                    let slot = match which {
                        "q" => 0,
                        "k" => 1,
                        "v" => 2,
                        "o" => {
                            out.push((format!("{prefix}.out_proj.{param}"), t.clone()));
                            continue;
                        }
                        _ => return Err(unmapped("attention part")),
                    };
                    let param: &'static str = match param {
                        "weight" => "weight",
                        "bias" => "bias",
                        _ => return Err(unmapped("attention parameter")),
                    };
                    in_proj.entry((prefix, param)).or_default()[slot] = Some(t.clone());
                    continue;
                }
                None => name.clone(),
            }
        } else if let Some(rest) = name.strip_prefix("classifier.") {
            match (cfg.classifier.kind, rest) {
                (ClassifierKind::Mlp, r) if r.starts_with("fc1.") => {
                    format!("classifier.0.{}", &r[4..])
                }
                (ClassifierKind::Mlp, r) if r.starts_with("fc2.") => {
                    format!("classifier.2.{}", &r[4..])
                }
                _ => name.clone(),
            }
        } else {
            name.clone()
        };
        out.push((mapped, t.clone()));
    }
    for ((prefix, param), parts) in in_proj {
        let parts: Vec<Tensor> =
            parts
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ExportError::Unmapped {
                    name: format!("{prefix}.{param}"),
                    why: "q, k or v missing".into(),
                })?;
        out.push((format!("{prefix}.in_proj_{param}"), Tensor::cat(&parts, 0)?));
    }
    // graph buffers: the twins take them from the file, so any layout works
    match kind {
        EncoderKind::StGcn => {
            let a_t = a.transpose(1, 2)?.contiguous()?;
            for i in 0..cfg.encoder.blocks.len() {
                out.push((format!("encoder.blocks.{i}.A"), a_t.clone()));
                if !cfg.encoder.edge_importance {
                    out.push((
                        format!("encoder.blocks.{i}.edge_importance"),
                        Tensor::ones(a.shape(), a.dtype(), a.device())?,
                    ));
                }
            }
        }
        EncoderKind::InfoGcn => {
            let av = crossglg_model::infogcn::input_transform(graph, cfg.encoder.info.k);
            out.push((
                "encoder.A_vector".into(),
                Tensor::from_vec(av, (v, v), &Device::Cpu)?,
            ));
            let info = &cfg.encoder.info;
            let d = cfg.encoder.out_channels();
            let prior = crossglg_model::infogcn::orthogonal_rows(
                cfg.num_classes,
                d,
                info.prior_gain,
                info.prior_seed,
            );
            let prior: Vec<f32> = prior.into_iter().map(|x| x as f32).collect();
            out.push((
                "ib.z_prior".into(),
                Tensor::from_vec(prior, (cfg.num_classes, d), &Device::Cpu)?,
            ));
        }
        EncoderKind::CtrGcn => {}
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, left))
}

fn model_card(
    w: &LoadedWeights,
    arch: &Architecture,
    parameters: usize,
    hash: &str,
    report_md: Option<&str>,
    files: &[String],
) -> String {
    use std::fmt::Write;
    let cfg = &w.cfg;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# crossglg model: {} on `{}`\n",
        arch.encoder, w.layout.name
    );
    let _ = writeln!(
        s,
        "A skeleton encoder trained with CrossGLG (guidance `{:?}`, recipe `{:?}`) for \
         one-shot action recognition: it maps a sequence of {} joints ({} values each, {} \
         frames, up to {} persons after preprocessing) to a {}-dimensional embedding; \
         recognition compares embeddings with those of one example per action.\n",
        cfg.model.guidance,
        cfg.recipe,
        arch.joints,
        arch.in_channels,
        cfg.preprocess.frames,
        arch.persons,
        arch.embedding_dim
    );
    let _ = writeln!(s, "- parameters: {parameters}");
    let _ = writeln!(
        s,
        "- weights SHA-256 (crossglg's identity for galleries): `{hash}`"
    );
    let _ = writeln!(s, "- auxiliary (training) classes: {}", arch.num_classes);
    let _ = writeln!(s, "- seed: {}, epochs: {}\n", cfg.seed, cfg.epochs);
    let _ = writeln!(s, "## Training data\n");
    let data = toml::to_string(&cfg.data).unwrap_or_default();
    let _ = writeln!(s, "```toml\n[data]\n{}```\n", data);
    let _ = writeln!(
        s,
        "The whole resolved config is `training-config.toml`; `crossglg train --config \
         training-config.toml` repeats the run where the same data is at the same paths.\n"
    );
    let _ = writeln!(s, "## Results\n");
    match report_md {
        Some(r) => {
            let _ = writeln!(s, "From the run's `report.md`:\n\n{}", r.trim_end());
        }
        None => {
            let _ = writeln!(s, "The run directory had no `report.md`.");
        }
    }
    let _ = writeln!(s, "\n## Using it\n");
    let _ = writeln!(
        s,
        "```sh\ncrossglg enroll --model THIS_FOLDER --gallery my.gallery --name wave wave.npy\n\
         crossglg recognize --model THIS_FOLDER --gallery my.gallery query.npy\n\
         crossglg serve --model THIS_FOLDER --gallery my.gallery\n```\n"
    );
    let _ = writeln!(
        s,
        "From PyTorch: `pytorch_model.safetensors` (when exported with `--torch`) loads into the \
         twins of `bench/torch_reference.py` built from `config.json`'s `architecture`; \
         `bench/check_export.py THIS_FOLDER` does that and compares PyTorch's outputs on \
         `golden.safetensors`' input with the ones stored there.\n"
    );
    let _ = writeln!(s, "## Files\n");
    for f in files {
        let _ = writeln!(s, "- {f}");
    }
    s
}
