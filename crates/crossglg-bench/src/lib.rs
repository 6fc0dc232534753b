//! CPU benchmarks of the GCN encoders: training step (forward + backward + SGD with momentum) and
//! inference per batch, samples/s, peak RSS, parameters, FLOPs and achieved GFLOP/s, for the
//! plain candle path vs the fused `crossglg-kernels` path, optionally next to PyTorch numbers
//! produced by `bench/torch_reference.py`.
//!
//! Each variant runs in a child process (the current executable re-run with [`CHILD_ARG`]) so
//! its peak RSS is its own and allocator settings do not leak between variants. A binary that
//! calls [`run`] must therefore call [`child_main_if_requested`] first thing in `main`.

pub mod load;
pub mod models;
pub mod rounds;
pub mod stgcn;
pub mod stream;

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crossglg_infer::stats::median;
use stgcn::{Path, RefStgcn};

/// Hidden first argument that turns the executable into a benchmark child.
pub const CHILD_ARG: &str = "__crossglg-bench-child";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("unknown variant `{0}` (known: {known}, {models})", known = VARIANTS.join(", "), models = models::MODEL_VARIANTS.join(", "))]
    UnknownVariant(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid PyTorch result file: {source}")]
    TorchJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("model: {0}")]
    Model(#[from] crossglg_model::ModelError),
    #[error(transparent)]
    Device(#[from] crossglg_model::DeviceError),
    #[error("{0} runs on the CPU only (the model variants take --device)")]
    CpuOnly(String),
    #[error("{variant} uses the NTU 25-joint graph; got --joints {joints}")]
    Joints { variant: String, joints: usize },
    #[error("{dir}: round {round} has no {side} file")]
    RoundFile {
        dir: PathBuf,
        round: usize,
        side: &'static str,
    },
    #[error("{path}: not a bench report: {source}")]
    Report {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}: no rust-1.json / torch-1.json (run bench/run.sh with ROUNDS=N)")]
    NoRounds(PathBuf),
    #[error("{dir}: round {round} has no {side} row for {variant}")]
    RoundRow {
        dir: PathBuf,
        round: usize,
        side: &'static str,
        variant: String,
    },
    #[error("stream benchmark: --window, --hop and --windows must be at least 1")]
    StreamArgs,
    #[error("load test: {0}")]
    Load(String),
    #[error("stream benchmark: synthetic sample `{0}` has no label")]
    Unlabelled(String),
    #[error("stream benchmark: {0}")]
    Synth(#[from] crossglg_data::synth::SynthError),
    #[error("stream benchmark: {0}")]
    Embed(#[from] crossglg_infer::embedder::EmbedError),
    #[error("stream benchmark: {0}")]
    Gallery(#[from] crossglg_infer::gallery::GalleryError),
    #[error("stream benchmark: {0}")]
    Stream(#[from] crossglg_infer::stream::StreamError),
    #[error("variant `{variant}`: child process failed: {msg}")]
    Child { variant: String, msg: String },
}

/// The built-in NTU RGB+D layout, the one source of the NTU graph for every benchmark model.
pub(crate) fn ntu25() -> crossglg_data::Layout {
    crossglg_data::Layout::load("ntu25")
        .expect("the built-in ntu25 layout parses (tested in crossglg-data)")
}

/// All variants, in report order. `-tuned` variants call `crossglg_kernels::tune_allocator()`
/// at start-up; the others keep glibc's defaults.
pub const VARIANTS: [&str; 4] = [
    "stgcn-ref-plain",
    "stgcn-ref-plain-tuned",
    "stgcn-ref-fused",
    "stgcn-ref-fused-tuned",
];

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    pub batch: usize,
    /// Skeletons per sample (folded into the batch, as in ST-GCN).
    pub persons: usize,
    pub frames: usize,
    pub joints: usize,
    pub classes: usize,
    pub warmup: usize,
    pub iters: usize,
    /// Rayon threads (0 = rayon's default, one per core).
    pub threads: usize,
    /// Variants to run; empty = all of [`VARIANTS`]. [`models::MODEL_VARIANTS`] are opt-in.
    pub variants: Vec<String>,
    /// Run each variant in its own child process (fair peak RSS). If false, all run in-process.
    pub isolate: bool,
    /// PyTorch results written by `bench/torch_reference.py --json`, for the ratio columns.
    pub torch_json: Option<PathBuf>,
    /// Fused CPU kernels or plain candle for the model variants (the reference variants name
    /// their path themselves).
    #[serde(default)]
    pub kernels: crossglg_model::layers::Kernels,
    /// Where the model variants run: `cpu`, `cuda` or `cuda:N` (the reference ST-GCN variants
    /// are CPU-only).
    #[serde(default = "cpu")]
    pub device: String,
}

fn cpu() -> String {
    "cpu".into()
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            batch: 16,
            persons: 2,
            frames: 64,
            joints: 25,
            classes: 60,
            warmup: 1,
            iters: 5,
            threads: 0,
            variants: Vec::new(),
            isolate: true,
            torch_json: None,
            kernels: crossglg_model::layers::Kernels::Fused,
            device: cpu(),
        }
    }
}

/// One measured variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    pub name: String,
    /// Median wall time over `iters` steps.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub infer_ms: f64,
    /// Median process CPU time (user + system, all threads) per step: less sensitive than wall
    /// time to other processes on a shared machine.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_cpu_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub infer_cpu_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_samples_per_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub infer_samples_per_s: f64,
    /// VmHWM of the process that ran the variant (MiB); whole-run peak when not isolated.
    #[serde(deserialize_with = "nan_if_null")]
    pub peak_rss_mb: f64,
    pub params: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub gflop_fwd_per_sample: f64,
    /// Achieved rate, counting a training step as 3× the forward FLOPs.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_gflops: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub infer_gflops: f64,
    /// This process's measured f32 matrix-product rate ([`gemm_peak_gflops`]), measured after
    /// the variant on the same threads: what the achieved rates are fractions of.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub gemm_peak_gflops: f64,
    /// PyTorch's numbers for the matching architecture, if given.
    pub torch: Option<TorchRow>,
}

fn nan() -> f64 {
    f64::NAN
}

/// serde_json writes NaN (e.g. FLOPs not counted) as null; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A row of `bench/torch_reference.py --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorchRow {
    pub name: String,
    pub train_ms: f64,
    pub infer_ms: f64,
    pub train_cpu_ms: f64,
    pub infer_cpu_ms: f64,
    pub peak_rss_mb: f64,
    pub params: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub threads: usize,
    /// The machine the rows were measured on.
    #[serde(default)]
    pub cpu: CpuInfo,
    pub rows: Vec<BenchRow>,
}

/// Which CPU, and which vector paths the code takes on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuInfo {
    /// `model name` of /proc/cpuinfo.
    pub model: String,
    /// Vector features detected at run time (avx512f, avx2, fma, ...).
    pub features: Vec<String>,
    /// The path crossglg-kernels' own kernels take ([`crossglg_kernels::simd_path`]).
    pub kernels: String,
    /// The microkernels candle's matrix products take ([`crossglg_kernels::gemm_path`]).
    #[serde(default)]
    pub gemm: String,
}

impl CpuInfo {
    pub fn detect() -> Self {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        CpuInfo {
            model,
            features: crossglg_kernels::cpu_features()
                .into_iter()
                .map(str::to_string)
                .collect(),
            kernels: crossglg_kernels::simd_path().to_string(),
            gemm: crossglg_kernels::gemm_path().to_string(),
        }
    }
}

/// The rate of a 1024 × 1024 × 1024 f32 matrix product through candle (the gemm crate) on this
/// process's threads, best of five after a warm-up, GFLOP/s: the machine's practical peak for the
/// work the encoders are made of.
pub fn gemm_peak_gflops(dev: &Device) -> Result<f64, BenchError> {
    // a GPU needs a larger product to reach its rate
    let n = if dev.is_cpu() { 1024 } else { 8192 };
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let _ = a.matmul(&b)?;
    dev.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        dev.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

impl BenchReport {
    /// The table printed by [`run`]; ratios are Rust / PyTorch (lower is better).
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "batch {} x {} persons x 3 x {} frames x {} joints, {} threads; times are medians per batch \
             (wall ms, and process CPU ms over all threads); x = Rust / PyTorch\n",
            c.batch, c.persons, c.frames, c.joints, self.threads
        );
        if c.device != "cpu" {
            s += &format!(
                "device: {} (the model variants; peak memory is the host's, pkGF/s the device's)\n",
                c.device
            );
        }
        s += &format!(
            "CPU: {} ({}); crossglg kernels: {}; matrix products: {}; pkGF/s = f32 gemm peak \
             measured in the variant's process, tr%/in% = achieved training / inference GFLOP/s \
             as a share of it\n",
            self.cpu.model,
            self.cpu.features.join(" "),
            self.cpu.kernels,
            self.cpu.gemm
        );
        let head = [
            "train ms", "cpu ms", "infer ms", "cpu ms", "train/s", "infer/s", "peak MB", "params",
            "GF/smp", "trGF/s", "pkGF/s", "tr%", "in%", "train x", "cpu x", "infer x", "cpu x",
            "mem x",
        ];
        s += &format!("{:<22}", "variant");
        for h in head {
            s += &format!(" {h:>8}");
        }
        s += "\n";
        let ratio = |a: f64, b: Option<f64>| {
            b.map(|b| format!("{:.2}", a / b))
                .unwrap_or_else(|| "-".into())
        };
        for r in &self.rows {
            let t = r.torch.as_ref();
            s += &format!(
                "{:<22} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.1} {:>8.1} {:>8.0} {:>8} {:>8.2} {:>8.1} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                r.name,
                r.train_ms,
                r.train_cpu_ms,
                r.infer_ms,
                r.infer_cpu_ms,
                r.train_samples_per_s,
                r.infer_samples_per_s,
                r.peak_rss_mb,
                r.params,
                r.gflop_fwd_per_sample,
                r.train_gflops,
                r.gemm_peak_gflops,
                100.0 * r.train_gflops / r.gemm_peak_gflops,
                100.0 * r.infer_gflops / r.gemm_peak_gflops,
                ratio(r.train_ms, t.map(|t| t.train_ms)),
                ratio(r.train_cpu_ms, t.map(|t| t.train_cpu_ms)),
                ratio(r.infer_ms, t.map(|t| t.infer_ms)),
                ratio(r.infer_cpu_ms, t.map(|t| t.infer_cpu_ms)),
                ratio(r.peak_rss_mb, t.map(|t| t.peak_rss_mb)),
            );
        }
        let mut seen: Vec<&TorchRow> = Vec::new();
        for t in self.rows.iter().filter_map(|r| r.torch.as_ref()) {
            if !seen.iter().any(|s| s.name == t.name) {
                seen.push(t);
            }
        }
        for t in seen {
            s += &format!(
                "{:<22} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.1} {:>8.1} {:>8.0} {:>8}  (PyTorch)\n",
                format!("torch:{}", t.name),
                t.train_ms,
                t.train_cpu_ms,
                t.infer_ms,
                t.infer_cpu_ms,
                c.batch as f64 * 1e3 / t.train_ms,
                c.batch as f64 * 1e3 / t.infer_ms,
                t.peak_rss_mb,
                t.params
            );
        }
        s
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), NaN elsewhere.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs the configured variants, prints the table to stdout and returns the report.
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let names: Vec<String> = if config.variants.is_empty() {
        VARIANTS.iter().map(|s| s.to_string()).collect()
    } else {
        config.variants.clone()
    };
    for n in &names {
        if !VARIANTS.contains(&n.as_str()) && !models::MODEL_VARIANTS.contains(&n.as_str()) {
            return Err(BenchError::UnknownVariant(n.clone()));
        }
    }
    let torch = match &config.torch_json {
        Some(p) => load_torch(p)?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for name in &names {
        eprintln!("bench: running {name} ...");
        let mut row = if config.isolate {
            run_child(config, name)?
        } else {
            run_variant(config, name)?
        };
        row.torch = torch.iter().find(|t| t.name == torch_base(name)).cloned();
        rows.push(row);
    }
    let report = BenchReport {
        cpu: CpuInfo::detect(),
        config: config.clone(),
        threads: if config.threads == 0 {
            rayon::current_num_threads()
        } else {
            config.threads
        },
        rows,
    };
    print!("{}", report.table());
    let _ = std::io::stdout().flush();
    Ok(report)
}

/// The PyTorch variant a Rust variant is compared with: stgcn-ref-* all compare with PyTorch's
/// stgcn-ref, the model variants with their twins of the same name.
fn torch_base(name: &str) -> &str {
    name.split("-plain")
        .next()
        .and_then(|s| s.split("-fused").next())
        .unwrap_or(name)
}

fn load_torch(p: &FsPath) -> Result<Vec<TorchRow>, BenchError> {
    let s = crossglg_data::bounded::read_to_string(p, crossglg_data::bounded::SMALL_FILE_BYTES)
        .map_err(|source| BenchError::Io {
            path: p.into(),
            source,
        })?;
    serde_json::from_str(&s).map_err(|source| BenchError::TorchJson {
        path: p.into(),
        source,
    })
}

fn run_child(config: &BenchConfig, name: &str) -> Result<BenchRow, BenchError> {
    let child_err = |msg: String| BenchError::Child {
        variant: name.into(),
        msg,
    };
    let exe = std::env::current_exe()
        .map_err(|e| child_err(format!("cannot find own executable: {e}")))?;
    let cfg = serde_json::to_string(config).map_err(|e| child_err(e.to_string()))?;
    let out = Command::new(&exe)
        .arg(CHILD_ARG)
        .arg(name)
        .arg(cfg)
        .output()
        .map_err(|e| child_err(format!("cannot start {}: {e}", exe.display())))?;
    if !out.status.success() {
        return Err(child_err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| child_err(format!("bad result line `{last}`: {e}")))
}

/// If this process was started as a benchmark child, runs the variant, prints its result as one
/// JSON line and returns the exit code; otherwise returns `None`. Call first thing in `main`.
pub fn child_main_if_requested() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let pos = args.iter().position(|a| a == CHILD_ARG)?;
    let (Some(name), Some(cfg)) = (args.get(pos + 1), args.get(pos + 2)) else {
        eprintln!("{CHILD_ARG} needs a variant name and a JSON config");
        return Some(ExitCode::from(2));
    };
    let config: BenchConfig = match serde_json::from_str(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{CHILD_ARG}: bad config: {e}");
            return Some(ExitCode::from(2));
        }
    };
    match run_variant(&config, name) {
        Ok(row) => match serde_json::to_string(&row) {
            Ok(s) => {
                println!("{s}");
                Some(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Some(ExitCode::FAILURE)
            }
        },
        Err(e) => {
            eprintln!("{e}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// Process CPU time (user + system, all threads) in ms from `/proc/self/stat`; NaN elsewhere.
/// Resolution is one clock tick (10 ms), fine for steps of 100 ms and more.
pub fn process_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // fields after the parenthesised command name; utime and stime are fields 14 and 15
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) * 10.0)
        })
        .unwrap_or(f64::NAN)
}

/// Median (wall ms, CPU ms) over `iters` runs after `warmup` runs.
pub(crate) fn time_ms(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<(), BenchError>,
) -> Result<(f64, f64), BenchError> {
    for _ in 0..warmup {
        f()?;
    }
    let (mut ts, mut cs) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        let c0 = process_cpu_ms();
        let t0 = Instant::now();
        f()?;
        ts.push(t0.elapsed().as_secs_f64() * 1e3);
        cs.push(process_cpu_ms() - c0);
    }
    Ok((median(ts), median(cs)))
}

/// SGD with momentum, PyTorch semantics (dampening 0, no Nesterov): `v = μv + g; p -= lr·v`.
pub(crate) struct Sgd {
    pub(crate) lr: f64,
    pub(crate) momentum: f64,
    pub(crate) state: Vec<(Var, Option<Tensor>)>,
}

impl Sgd {
    pub(crate) fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
    ) -> candle_core::Result<()> {
        for (var, buf) in self.state.iter_mut() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let v = match buf.take() {
                Some(b) => ((b * self.momentum)? + g)?,
                None => g.clone(),
            };
            var.set(&(var.as_tensor() - (&v * self.lr)?)?)?;
            *buf = Some(v);
        }
        Ok(())
    }
}

/// Sizes rayon's global pool to `config.threads` (0 = rayon's default), with subnormals flushed
/// to zero as in `crossglg` itself. Does nothing to the pool if it already exists (in-process
/// runs after the first).
pub(crate) fn set_threads(config: &BenchConfig) {
    crossglg_kernels::flush_denormals(config.threads);
}

/// Runs one variant in this process.
pub fn run_variant(config: &BenchConfig, name: &str) -> Result<BenchRow, BenchError> {
    if models::MODEL_VARIANTS.contains(&name) {
        return models::run(config, name);
    }
    if !VARIANTS.contains(&name) {
        return Err(BenchError::UnknownVariant(name.into()));
    }
    if config.device != "cpu" {
        return Err(BenchError::CpuOnly(name.into()));
    }
    if name.ends_with("-tuned") {
        crossglg_kernels::tune_allocator();
    }
    set_threads(config);
    let path = if name.contains("fused") {
        Path::Fused
    } else {
        Path::Plain
    };
    let c = config;
    let model = RefStgcn::new(c.classes, c.frames, c.joints, 0)?;
    let x = Tensor::randn(
        0f32,
        1.0,
        (c.batch, c.persons, 3, c.frames, c.joints),
        &Device::Cpu,
    )?;
    let labels: Vec<u32> = (0..c.batch).map(|i| (i % c.classes) as u32).collect();
    let y = Tensor::from_vec(labels, c.batch, &Device::Cpu)?;
    let mut opt = Sgd {
        lr: 0.01,
        momentum: 0.9,
        state: model
            .vars()
            .into_iter()
            .map(|v| (v.clone(), None))
            .collect(),
    };
    let (train_ms, train_cpu_ms) = time_ms(c.warmup, c.iters, || {
        let logits = model.forward(&x, path, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let grads = loss.backward()?;
        opt.step(&grads)?;
        let _ = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let (infer_ms, infer_cpu_ms) = time_ms(c.warmup, c.iters, || {
        let logits = model.forward(&x.detach(), path, false)?;
        let _ = logits.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let gf = model.flops_per_sample(c.persons) / 1e9;
    let b = c.batch as f64;
    Ok(BenchRow {
        name: name.into(),
        train_ms,
        infer_ms,
        train_cpu_ms,
        infer_cpu_ms,
        train_samples_per_s: b * 1e3 / train_ms,
        infer_samples_per_s: b * 1e3 / infer_ms,
        peak_rss_mb: peak_rss_mb(),
        params: model.num_params(),
        gflop_fwd_per_sample: gf,
        train_gflops: 3.0 * gf * b / (train_ms / 1e3),
        infer_gflops: gf * b / (infer_ms / 1e3),
        // after the variant, so its matrices do not count in the peak RSS above
        gemm_peak_gflops: gemm_peak_gflops(&Device::Cpu)?,
        torch: None,
    })
}
