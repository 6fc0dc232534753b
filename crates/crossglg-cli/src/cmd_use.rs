//! Using a trained model: `embed`, `enroll`, `recognize`, `stream`, `plot`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use crossglg_data::mapping::{map_skeleton, Mapping};
use crossglg_data::read::{read_path, DirOptions};
use crossglg_data::{Layout, Skeleton};
use crossglg_infer::embedder::Embedder;
use crossglg_infer::gallery::{Gallery, ThresholdCalibration};
use crossglg_infer::stream::{json_lines, run_stream_with, PoseFormat, StreamConfig, StreamItem};
use crossglg_train::run::{self, TrainedModel};

#[derive(Args)]
pub struct ModelArgs {
    /// A run directory (or checkpoint) from `crossglg train` / `crossglg demo`.
    #[arg(long, short)]
    model: PathBuf,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Joint mapping from the input's layout to the model's (e.g. coco17_to_ntu25, or a TOML file).
    #[arg(long)]
    mapping: Option<String>,
    /// Layout of `.npy` inputs (default: guessed from the joint count).
    #[arg(long)]
    layout: Option<String>,
}

struct Loaded {
    /// Shared with a description scorer when descriptions are given.
    model: std::sync::Arc<TrainedModel>,
    layout: Layout,
    mapping: Option<Mapping>,
    model_dir: PathBuf,
    /// The run's `[text]` config: its encoder embeds descriptions given at recognition.
    text: crossglg_train::config::TextConfig,
}

fn load_model(a: &ModelArgs) -> Result<Loaded> {
    let device = run::device_from(&a.device)?;
    let (model, cfg, layout) = TrainedModel::load(&a.model, &device)?;
    let mapping = a.mapping.as_deref().map(Mapping::load).transpose()?;
    let model_dir = if a.model.is_dir() {
        a.model.clone()
    } else {
        a.model.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    Ok(Loaded {
        model: std::sync::Arc::new(model),
        layout,
        mapping,
        model_dir,
        text: cfg.text,
    })
}

/// Reads every sample in `files` (files or folders), mapped to the model's layout.
fn read_inputs(
    l: &Loaded,
    files: &[PathBuf],
    layout: Option<&str>,
) -> Result<Vec<(String, Skeleton)>> {
    let mut out = Vec::new();
    for f in files {
        let (ds, report, _) = read_path(f, layout, &DirOptions::default())?;
        for s in &report.skipped {
            eprintln!("skipped {}: {}", s.path.display(), s.reason);
        }
        for s in ds.samples {
            let sk = match &l.mapping {
                Some(m) => map_skeleton(&s.skeleton, m)?,
                None => s.skeleton,
            };
            if let Some(problem) = crossglg_infer::embedder::input_problem(&*l.model, &sk) {
                bail!("{}: {problem}", f.display());
            }
            if sk.joints != l.layout.num_joints() {
                bail!(
                    "{}: {} joints, but the model uses layout {} ({} joints); pass --mapping",
                    f.display(),
                    sk.joints,
                    l.layout.name,
                    l.layout.num_joints()
                );
            }
            let name = if s.meta.name.is_empty() {
                f.display().to_string()
            } else {
                s.meta.name
            };
            out.push((name, sk));
        }
    }
    if out.is_empty() {
        bail!("no samples in the given files");
    }
    Ok(out)
}

fn embed_all(l: &Loaded, inputs: &[(String, Skeleton)]) -> Result<Vec<Vec<f32>>> {
    let sk: Vec<Skeleton> = inputs.iter().map(|(_, s)| s.clone()).collect();
    Ok(l.model.embed(&sk)?)
}

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Skeleton files or folders (any supported format).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output: `.json` (names + vectors) or `.npy` (`[N, D]` f32, rows in input order).
    #[arg(long, short)]
    out: PathBuf,
}

pub fn embed(a: EmbedArgs) -> Result<()> {
    let l = load_model(&a.model)?;
    let inputs = read_inputs(&l, &a.files, a.model.layout.as_deref())?;
    let emb = embed_all(&l, &inputs)?;
    match a.out.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            let flat: Vec<f32> = emb.concat();
            crossglg_data::read::npy::write_npy_f32(&a.out, &[emb.len(), l.model.dim()], &flat)?;
        }
        Some("json") => {
            let rows: Vec<serde_json::Value> = inputs
                .iter()
                .zip(&emb)
                .map(|((n, _), e)| serde_json::json!({"name": n, "embedding": e}))
                .collect();
            crossglg_data::atomic::write_atomic(
                &a.out,
                serde_json::to_string_pretty(&rows)?.as_bytes(),
            )
            .with_context(|| format!("writing {}", a.out.display()))?;
        }
        _ => bail!("{}: use a .json or .npy output file", a.out.display()),
    }
    println!(
        "wrote {} embeddings of width {} to {}",
        emb.len(),
        l.model.dim(),
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Gallery file (created when missing).
    #[arg(long, short)]
    gallery: PathBuf,
    /// Class name for the new exemplar(s).
    #[arg(long)]
    name: String,
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn new_gallery(l: &Loaded, threshold: Option<f32>) -> Gallery {
    let id = l.model_dir.display().to_string();
    Gallery::for_embedder(&*l.model, &id, &l.layout, threshold)
}

/// The gallery at `path`, refused when another model made it.
fn load_gallery(l: &Loaded, path: &Path) -> Result<Gallery> {
    let g = Gallery::load(path)?;
    g.check_for(path, &*l.model, &l.layout)?;
    Ok(g)
}

/// The model's `unknown_threshold.json`, when training wrote one.
fn read_calibration(l: &Loaded) -> Result<Option<ThresholdCalibration>> {
    let t = l.model_dir.join("unknown_threshold.json");
    if !t.exists() {
        return Ok(None);
    }
    let c = serde_json::from_str(
        &crossglg_data::bounded::read_to_string(&t, crossglg_data::bounded::SMALL_FILE_BYTES)
            .with_context(|| format!("reading {}", t.display()))?,
    )
    .with_context(|| format!("{}: not a threshold calibration", t.display()))?;
    Ok(Some(c))
}

pub fn enroll(a: EnrollArgs) -> Result<()> {
    let l = load_model(&a.model)?;
    let threshold = read_calibration(&l)?.map(|c| c.threshold);
    let inputs = read_inputs(&l, &a.files, a.model.layout.as_deref())?;
    let emb = embed_all(&l, &inputs)?;
    // under the gallery's lock from read to write: concurrent enrolls lose nothing
    let (g, ()) = Gallery::update(
        &a.gallery,
        || new_gallery(&l, threshold),
        |g| {
            g.check_for(&a.gallery, &*l.model, &l.layout)?;
            for ((n, _), e) in inputs.iter().zip(&emb) {
                g.enroll(&a.name, std::slice::from_ref(e), Some(n))?;
            }
            Ok::<_, crossglg_infer::gallery::GalleryError>(())
        },
    )?;
    if a.json {
        let v = serde_json::json!({
            "gallery": a.gallery.display().to_string(),
            "class": a.name,
            "added": emb.len(),
            "classes": g.classes.len(),
            "exemplars": g.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "enrolled {} exemplar(s) as `{}`; {} now has {} classes, {} exemplars",
        emb.len(),
        a.name,
        a.gallery.display(),
        g.classes.len(),
        g.len()
    );
    Ok(())
}

/// `--classes` of `recognize` and `stream`: which described classes zero-shot ranks.
#[derive(Args)]
pub struct OnlyClasses {
    /// Without --gallery: only these of the file's classes (comma-separated names).
    #[arg(
        long,
        value_delimiter = ',',
        requires = "describe",
        conflicts_with = "gallery"
    )]
    classes: Vec<String>,
}

impl OnlyClasses {
    fn get(&self) -> Option<&[String]> {
        Some(self.classes.as_slice()).filter(|c| !c.is_empty())
    }
}

#[derive(Args)]
pub struct RecognizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The gallery of enrolled classes (leave it out to recognise from --describe alone).
    #[arg(long, short, required_unless_present = "describe")]
    gallery: Option<PathBuf>,
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A description file (`docs/text.md`) of the classes, embedded by the run's text encoder
    /// (models trained with the text-target branch). Without --gallery: zero-shot, the class
    /// whose description the sequence is most like; with it, the description prior for the
    /// gallery's classes, which the file must all describe.
    #[arg(long, value_name = "FILE")]
    describe: Option<PathBuf>,
    #[command(flatten)]
    only: OnlyClasses,
    /// The description prior's weight with --gallery and --describe (0..1; 0.1 was chosen on
    /// MSR Action3D's validation splits, docs/results.md).
    #[arg(long, value_name = "WEIGHT", default_value_t = 0.1, requires_all = ["describe", "gallery"])]
    text_prior: f32,
    /// Override the gallery's unknown threshold.
    #[arg(long, conflicts_with = "far")]
    threshold: Option<f32>,
    /// Use the model's threshold calibrated for this false-accept rate on the base classes
    /// (0.01, 0.05 (the default), 0.1, 0.2 or 0.3; see `unknown_threshold.json`). Higher
    /// accepts more of the enrolled actions and rejects fewer unseen ones.
    #[arg(long)]
    far: Option<f64>,
    #[arg(long)]
    json: bool,
}

pub fn recognize(a: RecognizeArgs) -> Result<()> {
    let l = load_model(&a.model)?;
    let Some(gallery) = &a.gallery else {
        return recognize_described(&a, &l, None);
    };
    let mut g = load_gallery(&l, gallery)?;
    if a.threshold.is_some() {
        g.threshold = a.threshold;
    }
    if let Some(far) = a.far {
        let c = read_calibration(&l)?.with_context(|| {
            format!(
                "--far needs {}, which training writes; it is missing",
                l.model_dir.join("unknown_threshold.json").display()
            )
        })?;
        g.threshold = Some(c.threshold_for(far).with_context(|| {
            format!(
                "no threshold for false-accept rate {far} in {} (calibrated: {:?})",
                l.model_dir.join("unknown_threshold.json").display(),
                c.targets()
            )
        })?);
    }
    if a.describe.is_some() {
        return recognize_described(&a, &l, Some(&g));
    }
    let inputs = read_inputs(&l, &a.files, a.model.layout.as_deref())?;
    let emb = embed_all(&l, &inputs)?;
    let mut rows = Vec::new();
    for ((n, _), e) in inputs.iter().zip(&emb) {
        let r = g.recognize(e)?;
        if a.json {
            rows.push(serde_json::json!({"input": n, "recognition": r}));
        } else {
            println!(
                "{n}\t{}\tsimilarity {:.3}\tmargin {:.3}",
                if r.unknown {
                    format!("unknown (closest: {})", r.class)
                } else {
                    r.class.clone()
                },
                r.similarity,
                r.margin
            );
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// The run's describer of `file`'s classes (all, or `classes`); with `prior` (a gallery to mix
/// with) says so when the run has no text cohort, whose description prior then mixes raw
/// similarities.
fn describer(
    l: &Loaded,
    file: &Path,
    classes: Option<&[String]>,
    prior: bool,
) -> Result<run::ClassDescriber> {
    let d = run::ClassDescriber::new(l.model.clone(), &l.text, &l.layout, file, classes)?;
    if prior && d.norm.is_none() {
        eprintln!(
            "note: {} has no text cohort (made before training kept one): the description prior \
             mixes raw similarities; `crossglg eval {}` writes it",
            l.model_dir.display(),
            l.model_dir.display()
        );
    }
    Ok(d)
}

/// `recognize --describe`: zero-shot from the descriptions, or with a gallery the description
/// prior over its classes.
fn recognize_described(a: &RecognizeArgs, l: &Loaded, g: Option<&Gallery>) -> Result<()> {
    use crossglg_infer::described::{recognize_with_prior_mixing, recognize_zero_shot};
    use crossglg_infer::embedder::Describer;
    let file = a
        .describe
        .as_deref()
        .context("--describe is needed without --gallery")?;
    if !(0.0..=1.0).contains(&a.text_prior) {
        bail!("--text-prior must be between 0 and 1, got {}", a.text_prior);
    }
    let d = describer(
        l,
        file,
        match g {
            Some(g) => Some(g.classes.as_slice()),
            None => a.only.get(),
        },
        g.is_some(),
    )?;
    let inputs = read_inputs(l, &a.files, a.model.layout.as_deref())?;
    let skeletons: Vec<Skeleton> = inputs.iter().map(|(_, s)| s.clone()).collect();
    // with a gallery both from one pass of the model
    let (emb, sims) = match g {
        Some(_) => l.model.embed_and_describe(&skeletons, &d.text)?,
        None => (Vec::new(), d.describe(&skeletons)?),
    };
    let mut rows = Vec::new();
    for (i, ((n, _), t)) in inputs.iter().zip(&sims).enumerate() {
        let r = match g {
            Some(g) => recognize_with_prior_mixing(g, &emb[i], t, &d.prior_row(t), a.text_prior)?,
            None => recognize_zero_shot(&d.classes, t)?,
        };
        if a.json {
            rows.push(serde_json::json!({"input": n, "recognition": r}));
        } else {
            let class = if r.unknown {
                format!("unknown (closest: {})", r.class)
            } else {
                r.class.clone()
            };
            let exemplar = r
                .similarity
                .map(|s| format!("\tsimilarity {s:.3}"))
                .unwrap_or_default();
            println!(
                "{n}\t{class}{exemplar}\ttext similarity {:.3}\tmargin {:.3}",
                r.text_similarity, r.margin
            );
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Gallery file (created on the first enroll when missing).
    #[arg(long, short)]
    gallery: PathBuf,
    /// Address to listen on. Loopback by default; anything else is reachable from the network,
    /// so give it a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// File holding the bearer token the API requires (or set CROSSGLG_SERVE_TOKEN). Not a
    /// command-line value, which other users of the machine could read.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Stream window and hop, in frames.
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value_t = 16)]
    hop: usize,
    /// Largest request body, MiB.
    #[arg(long, default_value_t = 32)]
    max_body_mb: usize,
    /// Most frames per sequence.
    #[arg(long, default_value_t = 10_000)]
    max_frames: usize,
    /// Model computations at once (more requests wait, then get 503).
    #[arg(long, default_value_t = 4)]
    max_concurrent: usize,
    /// Open stream connections at once.
    #[arg(long, default_value_t = 16)]
    max_streams: usize,
    /// A description file of the classes (models trained with the text-target branch): every
    /// recognition also answers from the descriptions (zero-shot among the file's classes, and
    /// the description prior when the file describes every gallery class).
    #[arg(long, value_name = "FILE")]
    describe: Option<PathBuf>,
}

fn read_token(a: &ServeArgs) -> Result<Option<String>> {
    let token = match &a.token_file {
        Some(f) => {
            let meta =
                std::fs::metadata(f).with_context(|| format!("token file {}", f.display()))?;
            if !meta.is_file() || meta.len() > 4096 {
                bail!(
                    "token file {}: not a regular file of at most 4 KiB",
                    f.display()
                );
            }
            Some(
                crossglg_data::bounded::read_to_string(f, 4096)
                    .with_context(|| format!("reading token file {}", f.display()))?
                    .trim()
                    .to_string(),
            )
        }
        None => std::env::var("CROSSGLG_SERVE_TOKEN").ok(),
    };
    match token {
        Some(t) if t.is_empty() => bail!("the token is empty"),
        t => Ok(t),
    }
}

pub fn serve(a: ServeArgs) -> Result<()> {
    use crossglg_infer::server::{ServeOptions, ServedModel, Server};
    let token = read_token(&a)?;
    let l = load_model(&a.model)?;
    let threshold = read_calibration(&l)?.map(|c| c.threshold);
    let opts = ServeOptions {
        addr: a.addr,
        token,
        max_body_bytes: a.max_body_mb.saturating_mul(1 << 20),
        max_frames: a.max_frames,
        max_concurrent: a.max_concurrent,
        max_streams: a.max_streams,
        window: a.window,
        hop: a.hop,
        ..ServeOptions::default()
    };
    if !a.addr.ip().is_loopback() && opts.token.is_none() {
        eprintln!(
            "warning: serving on {} without a token: anyone who reaches it can enroll and delete classes",
            a.addr
        );
    }
    let has_token = opts.token.is_some();
    let describer = match &a.describe {
        Some(file) => {
            let d = describer(&l, file, None, true)?;
            Some(std::sync::Arc::new(d) as std::sync::Arc<_>)
        }
        None => None,
    };
    let model = ServedModel {
        embedder: l.model.clone(),
        layout: l.layout,
        mapping: l.mapping,
        model_id: l.model_dir.display().to_string(),
        threshold,
        describer,
    };
    let server = Server::new(model, a.gallery.clone(), opts)?;
    server.run(|addr| {
        // one line a script can wait for
        println!(
            "listening on http://{addr} (gallery {}{})",
            a.gallery.display(),
            if has_token { ", token required" } else { "" }
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StreamFormat {
    Jsonl,
    Csv,
}

#[derive(Args)]
pub struct StreamArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The gallery of enrolled classes (leave it out to recognise from --describe alone).
    #[arg(long, short, required_unless_present = "describe")]
    gallery: Option<PathBuf>,
    /// Input format on stdin: JSON lines (`{"t": s, "joints": [[x,y,z(,c)], ...]}`) or CSV
    /// (`t, x1, y1, z1, ...`).
    #[arg(long, value_enum, default_value = "jsonl")]
    format: StreamFormat,
    /// Joints per input frame (default: the mapping's source layout, else the model's).
    #[arg(long)]
    joints: Option<usize>,
    /// Coordinates per joint: 2 or 3.
    #[arg(long, default_value_t = 3)]
    dims: usize,
    /// Each joint carries a trailing confidence value.
    #[arg(long)]
    confidence: bool,
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value_t = 16)]
    hop: usize,
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Negate y (image coordinates).
    #[arg(long)]
    flip_y: bool,
    /// Stop at the first bad input line (default: report it on stderr and go on).
    #[arg(long)]
    strict: bool,
    /// A description file of the classes (models trained with the text-target branch): every
    /// window also answers from the descriptions (zero-shot, and the description prior over the
    /// gallery when the file describes all its classes). Without --gallery: zero-shot alone.
    #[arg(long, value_name = "FILE")]
    describe: Option<PathBuf>,
    #[command(flatten)]
    only: OnlyClasses,
    /// The description prior's weight with --describe (0..1).
    #[arg(
        long,
        value_name = "WEIGHT",
        default_value_t = 0.1,
        requires = "describe"
    )]
    text_prior: f32,
}

pub fn stream(a: StreamArgs) -> Result<()> {
    let l = load_model(&a.model)?;
    let g = match &a.gallery {
        Some(path) => load_gallery(&l, path)?,
        // --describe alone: every window answers zero-shot
        None => Gallery::new(l.model.dim(), &l.model_dir.display().to_string()),
    };
    let joints = a.joints.unwrap_or_else(|| match &l.mapping {
        Some(m) => m.source.num_joints(),
        None => l.layout.num_joints(),
    });
    let cfg = StreamConfig {
        format: match a.format {
            StreamFormat::Jsonl => PoseFormat::JsonLines,
            StreamFormat::Csv => PoseFormat::Csv,
        },
        joints,
        dims: a.dims,
        confidence: a.confidence,
        fps: a.fps,
        flip_y: a.flip_y,
        window: a.window,
        hop: a.hop,
        strict: a.strict,
        ..Default::default()
    };
    let describer = match &a.describe {
        Some(file) => Some(describer(&l, file, a.only.get(), a.gallery.is_some())?),
        None => None,
    };
    let mut events = json_lines(std::io::stdout().lock());
    let s = run_stream_with(
        std::io::stdin().lock(),
        &cfg,
        &*l.model,
        &g,
        l.mapping.as_ref(),
        describer.as_ref().map(|d| {
            (
                d as &(dyn crossglg_infer::embedder::Describer + Sync),
                a.text_prior,
            )
        }),
        Ok,
        |item| match item {
            StreamItem::Event(e) => events(e),
            StreamItem::Skipped(e) => {
                eprintln!("skipped {e}");
                Ok(())
            }
        },
    )?;
    eprintln!(
        "{} frames, {} windows, {} bad lines skipped; latency per window: mean {:.1} ms, p50 {:.1} ms, p95 {:.1} ms",
        s.frames, s.events, s.skipped, s.latency_mean_ms, s.latency_p50_ms, s.latency_p95_ms
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum PlotCommand {
    /// Training curves from a run's metrics.jsonl.
    Curves {
        run: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
        /// Only these metrics (e.g. `loss_skel,loss_cross,loss_cal,batch_accuracy`); default all.
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
    },
    /// The confusion matrix of a run's one-shot report.
    Confusion {
        run: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
        /// Which report: 0 = cosine, 1 = calibrated.
        #[arg(long, default_value_t = 0)]
        method: usize,
    },
    /// JID joint importance of one sequence, drawn on the skeleton.
    Importance {
        #[command(flatten)]
        model: ModelArgs,
        file: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// The key-joint target of a class from a description file, drawn on the skeleton.
    ClassJoints {
        descriptions: PathBuf,
        class: String,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// JID's joint importance on a run's held-out (novel) classes next to their key-joint
    /// targets, with the KL divergence of each to the target.
    Jid {
        run: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// A 2-D PCA map of a run's exemplar and query embeddings.
    Embeddings {
        run: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

pub fn plot(cmd: PlotCommand) -> Result<()> {
    use crossglg_plot as plot;
    let out = match cmd {
        PlotCommand::Curves { run, out, metrics } => {
            plot::plot_training_curves(&out, &run.join("metrics.jsonl"), &metrics)?;
            out
        }
        PlotCommand::Confusion { run, out, method } => {
            let p = run.join("report.json");
            let reports: Vec<crossglg_infer::report::EvalReport> = serde_json::from_str(
                &crossglg_data::bounded::read_to_string(
                    &p,
                    crossglg_data::bounded::SMALL_FILE_BYTES,
                )
                .with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a report", p.display()))?;
            let r = reports
                .get(method)
                .with_context(|| format!("{} has {} reports", p.display(), reports.len()))?;
            plot::plot_report_confusion(&out, r)?;
            out
        }
        PlotCommand::Importance { model, file, out } => {
            let l = load_model(&model)?;
            let inputs = read_inputs(&l, std::slice::from_ref(&file), model.layout.as_deref())?;
            let w = l
                .model
                .joint_importance(&inputs[0].1)?
                .context("the model has no JID head (guidance none or l2g)")?;
            let pose = plot::rest_pose(&l.layout);
            plot::plot_joint_importance(
                &out,
                &l.layout,
                pose.as_deref(),
                &w,
                &format!("JID joint importance: {}", inputs[0].0),
            )?;
            out
        }
        PlotCommand::ClassJoints {
            descriptions,
            class,
            out,
        } => {
            let d = crossglg_text::DescriptionFile::load(&descriptions)?;
            let layout = Layout::load_named_in(&d.layout, &descriptions)?;
            let c = d
                .find_class(&class)
                .with_context(|| format!("{}: no class `{class}`", descriptions.display()))?;
            let targets = crossglg_text::key_joint_targets(
                &d,
                &layout,
                &crossglg_text::KeyJointConfig::default(),
            );
            let mut ids: Vec<usize> = d.classes.iter().map(|c| c.id).collect();
            ids.sort();
            let row = ids
                .iter()
                .position(|&i| i == c.id)
                .expect("class is in the file");
            let pose = plot::rest_pose(&layout);
            plot::plot_joint_importance(
                &out,
                &layout,
                pose.as_deref(),
                &targets[row],
                &format!("key joints: {}", c.name),
            )?;
            out
        }
        PlotCommand::Jid { run, out, device } => {
            let loaded = run::load_run(&run, &run::device_from(&device)?)?;
            let s = run::jid_on_novel(&loaded)?
                .context("the model has no JID head (guidance none or l2g)")?;
            plot::plot_jid_targets(
                &out,
                &s,
                &format!("JID on held-out classes: {}", run.display()),
            )?;
            for c in 0..s.classes.len() {
                println!(
                    "{}: KL to target {:.3} (uniform {:.3})",
                    s.classes[c], s.kl_model[c], s.kl_uniform[c]
                );
            }
            out
        }
        PlotCommand::Embeddings { run, out, device } => {
            let loaded = run::load_run(&run, &run::device_from(&device)?)?;
            let set = loaded.one_shot_set()?;
            plot::plot_embedding_map(
                &out,
                &set.exemplars,
                &set.exemplar_labels,
                &set.queries,
                &set.query_labels,
                &set.classes,
                "one-shot embeddings (PCA): exemplars and queries",
            )?;
            out
        }
    };
    println!("wrote {}", out.display());
    Ok(())
}

/// `crossglg bench --stream RUN`: `crossglg_bench::stream` on the run's model, as a table.
pub fn bench_stream(model: &Path, window: usize, hop: usize, windows: usize) -> Result<()> {
    let l = load_model(&ModelArgs {
        model: model.to_path_buf(),
        device: "cpu".into(),
        mapping: None,
        layout: None,
    })?;
    let b = crossglg_bench::stream::bench_stream(&*l.model, &l.layout, window, hop, windows)?;
    println!(
        "stream latency, model {} ({} layout), window {window}, hop {hop}, {} windows:",
        model.display(),
        l.layout.name,
        b.windows
    );
    print!("{}", b.to_markdown());
    Ok(())
}
