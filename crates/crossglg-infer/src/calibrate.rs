//! Distribution calibration for one-shot classification (Yang, Liu & Xu, "Free Lunch for
//! Few-shot Learning: Distribution Calibration", ICLR 2021), as CrossGLG's inference uses it.
//!
//! 1. At the end of training, [`BaseStats::from_embeddings`] stores each base (auxiliary) class's
//!    mean and covariance of power-transformed embeddings (saved as safetensors).
//! 2. Each novel exemplar is power-transformed (Tukey's ladder, λ = 0.5), its `k` nearest base
//!    classes (Euclidean distance between means and the exemplar) are found, and its
//!    distribution is calibrated: mean = average of those `k` base means and the exemplar,
//!    covariance = average of their covariances plus `alpha` (paper Eq. 6–7).
//! 3. Features are sampled from each calibrated Gaussian (seeded), and a classifier is trained
//!    on exemplars + samples: multinomial logistic regression as in the paper (default), or the
//!    Gaussian likelihood of the calibrated distributions without sampling.
//!
//! ```
//! use crossglg_infer::calibrate::{evaluate_calibrated, BaseStats, CalibrationConfig};
//! use crossglg_infer::eval::OneShotSet;
//!
//! // Base-class embeddings from the end of training (two classes, a few samples each).
//! let base_emb = vec![
//!     vec![4.0, 0.1], vec![4.2, 0.0], vec![3.9, 0.2],
//!     vec![0.1, 4.0], vec![0.0, 4.1], vec![0.2, 3.8],
//! ];
//! let stats = BaseStats::from_embeddings(&base_emb, &[0, 0, 0, 1, 1, 1]).unwrap();
//! let set = OneShotSet {
//!     classes: vec!["novel a".into(), "novel b".into()],
//!     exemplars: vec![vec![5.0, 0.5], vec![0.5, 5.0]],
//!     exemplar_labels: vec![0, 1],
//!     queries: vec![vec![4.5, 0.3], vec![0.2, 4.4]],
//!     query_labels: vec![0, 1],
//! };
//! let cfg = CalibrationConfig { k: 1, samples_per_class: 100, ..Default::default() };
//! let report = evaluate_calibrated(&set, &stats, &cfg).unwrap();
//! assert_eq!(report.correct, 2);
//! ```
//!
//! Choices the paper leaves open are documented in `docs/evaluation.md`: the base statistics
//! are computed on *transformed* features (the reference code mixes raw base statistics with
//! transformed exemplars); `alpha` is added to every covariance entry, as the paper's equation
//! reads, or to the diagonal only (`AlphaOn::Diagonal`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::eval::{EvalError, OneShotSet};
use crate::report::EvalReport;
use crossglg_data::tagged::{self, Owned, TaggedFile};

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read base statistics {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write base statistics {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("base statistics: {0}")]
    File(#[from] crossglg_data::tagged::TaggedError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

/// What the power transform does with negative feature values. Tukey's transform `x^λ` is only
/// defined for `x ≥ 0` (the paper's features are ReLU outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NegativeFeatures {
    /// `sign(x)·|x|^λ`: identical to Tukey's transform on non-negative features and a monotone,
    /// sign-preserving extension elsewhere.
    #[default]
    Signed,
    /// Shift each dimension by the negated minimum seen in the base features, then clamp at 0
    /// and apply `x^λ` (values below the base minimum become 0).
    Shift,
    /// No transform at all (λ is ignored).
    Skip,
}

/// Tukey's ladder of powers, `x ↦ x^λ` with `0 < λ ≤ 1` (λ = 1 is the identity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerTransform {
    pub lambda: f32,
    pub negatives: NegativeFeatures,
    /// Per-dimension shift for [`NegativeFeatures::Shift`], filled in from the base features.
    #[serde(default)]
    pub shift: Vec<f32>,
}

impl Default for PowerTransform {
    fn default() -> Self {
        PowerTransform {
            lambda: 0.5,
            negatives: NegativeFeatures::Signed,
            shift: Vec::new(),
        }
    }
}

impl PowerTransform {
    fn check(&self) -> Result<(), CalibrateError> {
        if !(self.lambda > 0.0 && self.lambda <= 1.0) {
            return Err(CalibrateError::Invalid(format!(
                "power transform lambda must be in (0, 1], got {}",
                self.lambda
            )));
        }
        Ok(())
    }

    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        let l = self.lambda;
        match self.negatives {
            NegativeFeatures::Skip => v.to_vec(),
            NegativeFeatures::Signed => v.iter().map(|&x| x.signum() * x.abs().powf(l)).collect(),
            NegativeFeatures::Shift => v
                .iter()
                .enumerate()
                .map(|(d, &x)| {
                    (x + self.shift.get(d).copied().unwrap_or(0.0))
                        .max(0.0)
                        .powf(l)
                })
                .collect(),
        }
    }
}

/// Per-class mean and covariance of (transformed) base-class embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseStats {
    pub dim: usize,
    /// The caller's label of each stored class, in ascending order.
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    pub counts: Vec<usize>,
    pub transform: PowerTransform,
    /// `C × D`.
    pub means: Vec<Vec<f32>>,
    /// `C × (D·D)`, row-major, unbiased (divides by n − 1 as numpy's `cov`).
    pub covariances: Vec<Vec<f32>>,
}

/// The tagged-file kind and version of base statistics (`format` = `crossglg-base-stats/1`;
/// files tagged `crossglg.base_stats.v1` before the tagged layer still load).
const STATS_KIND: &str = "base-stats";
const STATS_VERSION: u32 = 1;

impl BaseStats {
    /// Statistics with the default transform (λ = 0.5, signed) and class names `base_<label>`.
    pub fn from_embeddings(emb: &[Vec<f32>], labels: &[usize]) -> Result<Self, CalibrateError> {
        Self::from_embeddings_with(emb, labels, &BTreeMap::new(), PowerTransform::default())
    }

    /// Statistics of `emb` grouped by `labels` (every class needs at least 2 samples); `names`
    /// maps labels to class names (missing ones become `base_<label>`).
    pub fn from_embeddings_with(
        emb: &[Vec<f32>],
        labels: &[usize],
        names: &BTreeMap<usize, String>,
        mut transform: PowerTransform,
    ) -> Result<Self, CalibrateError> {
        transform.check()?;
        let inv = |m: String| Err(CalibrateError::Invalid(m));
        if emb.len() != labels.len() {
            return inv(format!(
                "{} embeddings but {} labels",
                emb.len(),
                labels.len()
            ));
        }
        let Some(dim) = emb.first().map(|e| e.len()) else {
            return inv("no base embeddings".into());
        };
        for (i, e) in emb.iter().enumerate() {
            if e.len() != dim {
                return inv(format!(
                    "base embedding {i} has dimension {}, expected {dim}",
                    e.len()
                ));
            }
            if e.iter().any(|x| !x.is_finite()) {
                return inv(format!("base embedding {i} contains NaN or infinity"));
            }
        }
        if transform.negatives == NegativeFeatures::Shift {
            transform.shift = (0..dim)
                .map(|d| {
                    let m = emb.iter().map(|e| e[d]).fold(f32::INFINITY, f32::min);
                    (-m).max(0.0)
                })
                .collect();
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, &l) in labels.iter().enumerate() {
            groups.entry(l).or_default().push(i);
        }
        if let Some((l, g)) = groups.iter().find(|(_, g)| g.len() < 2) {
            return inv(format!(
                "base class {l} has {} sample(s); a covariance needs at least 2",
                g.len()
            ));
        }
        let transformed: Vec<Vec<f32>> = emb.par_iter().map(|e| transform.apply(e)).collect();
        let per_class: Vec<(Vec<f32>, Vec<f32>)> = groups
            .par_iter()
            .map(|(_, idx)| mean_cov(idx.iter().map(|&i| transformed[i].as_slice()), dim))
            .collect();
        let (means, covariances) = per_class.into_iter().unzip();
        Ok(BaseStats {
            dim,
            labels: groups.keys().copied().collect(),
            classes: groups
                .keys()
                .map(|l| names.get(l).cloned().unwrap_or_else(|| format!("base_{l}")))
                .collect(),
            counts: groups.values().map(|g| g.len()).collect(),
            transform,
            means,
            covariances,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.means.len()
    }

    /// Keeps the classes whose label passes `keep` (all of their statistics, in order).
    pub fn retain_labels(&mut self, keep: impl Fn(usize) -> bool) {
        fn by_flags<T>(v: &mut Vec<T>, kept: &[bool]) {
            let mut k = kept.iter();
            v.retain(|_| *k.next().expect("one flag per class"));
        }
        let kept: Vec<bool> = self.labels.iter().map(|&l| keep(l)).collect();
        by_flags(&mut self.labels, &kept);
        by_flags(&mut self.classes, &kept);
        by_flags(&mut self.counts, &kept);
        by_flags(&mut self.means, &kept);
        by_flags(&mut self.covariances, &kept);
    }

    /// Saves as safetensors: `means` `[C, D]`, `covariances` `[C, D, D]` (f32), `counts` and
    /// `labels` `[C]` (i64); class names and the transform go in the header metadata.
    pub fn save(&self, path: &Path) -> Result<(), CalibrateError> {
        let c = self.num_classes();
        let d = self.dim;
        let counts: Vec<i64> = self.counts.iter().map(|&x| x as i64).collect();
        let labels: Vec<i64> = self.labels.iter().map(|&x| x as i64).collect();
        let mut meta = HashMap::new();
        meta.insert(
            "classes".to_string(),
            serde_json::to_string(&self.classes).expect("strings serialise"),
        );
        meta.insert(
            "transform".to_string(),
            serde_json::to_string(&self.transform).expect("transform serialises"),
        );
        let tensors = vec![
            ("counts", Owned::i64(vec![c], &counts)),
            (
                "covariances",
                Owned::f32(vec![c, d, d], &self.covariances.concat()),
            ),
            ("labels", Owned::i64(vec![c], &labels)),
            ("means", Owned::f32(vec![c, d], &self.means.concat())),
        ];
        tagged::write_owned(path, STATS_KIND, STATS_VERSION, meta, tensors)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self, CalibrateError> {
        let f = TaggedFile::read(path, STATS_KIND, STATS_VERSION)?;
        let bad = |message: String| f.content_err(message);
        let classes: Vec<String> = f.meta_json("classes")?;
        let transform: PowerTransform = f.meta_json("transform")?;
        let means = f.f32("means", 2)?;
        let covs = f.f32("covariances", 3)?;
        let counts = f.i64("counts", 1)?.1;
        let labels = f.i64("labels", 1)?.1;
        let (c, d) = (means.0[0], means.0[1]);
        if covs.0 != [c, d, d] || counts.len() != c || labels.len() != c || classes.len() != c {
            return Err(bad(format!(
                "inconsistent shapes: means {:?}, covariances {:?}, {} counts, {} labels, {} class names",
                means.0,
                covs.0,
                counts.len(),
                labels.len(),
                classes.len()
            ))
            .into());
        }
        if d == 0 {
            return Err(bad("embedding dimension is 0".into()).into());
        }
        Ok(BaseStats {
            dim: d,
            labels: labels.iter().map(|&x| x.max(0) as usize).collect(),
            classes,
            counts: counts.iter().map(|&x| x.max(0) as usize).collect(),
            transform,
            means: means.1.chunks(d).map(<[f32]>::to_vec).collect(),
            covariances: covs.1.chunks(d * d).map(<[f32]>::to_vec).collect(),
        })
    }

    /// Calibrates one *transformed* exemplar: the `k` base classes whose means are nearest
    /// (Euclidean), mean = average of their means and the exemplar, covariance = average of
    /// their covariances plus `alpha` (every entry or the diagonal). Returns the chosen base
    /// classes (indices into this table), the mean and the `D·D` covariance.
    pub fn calibrate(
        &self,
        x: &[f32],
        k: usize,
        alpha: f32,
        alpha_on: AlphaOn,
    ) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
        let nearest = self.neighbours(x, k, None);
        let (mean, cov) = self.calibrate_from(x, &nearest, alpha, alpha_on);
        (nearest, mean, cov)
    }

    /// The `k` base classes to calibrate the transformed exemplar `x` with. Without `text`, the
    /// nearest means (Euclidean; ties by table order). With `text = Some((scores, w))`, one
    /// score per base class (how alike the exemplar's class description and the base class's
    /// are), the classes ranked by `(1 − w)·z(−distance) + w·z(score)`, each term standardised
    /// over the base classes so that neither scale decides: `w = 1` ranks by the descriptions
    /// alone, and the same base classes then serve every exemplar of a class.
    pub fn neighbours(&self, x: &[f32], k: usize, text: Option<(&[f32], f32)>) -> Vec<usize> {
        let dist: Vec<f64> = self
            .means
            .iter()
            .map(|m| m.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() as f64)
            .collect();
        let mut order: Vec<(usize, f64)> = match text {
            Some((scores, w)) if w > 0.0 => {
                let near: Vec<f64> = dist.iter().map(|d| -d).collect();
                let alike: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
                let (zn, za) = (standardised(&near), standardised(&alike));
                let w = w as f64;
                // sorted ascending below: the negated mix puts the best first
                (0..dist.len())
                    .map(|i| (i, -((1.0 - w) * zn[i] + w * za[i])))
                    .collect()
            }
            _ => dist.iter().copied().enumerate().collect(),
        };
        order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        order.iter().take(k.max(1)).map(|p| p.0).collect()
    }

    /// The calibrated mean and `D·D` covariance of the transformed exemplar `x` from the given
    /// base classes (see [`BaseStats::calibrate`]).
    pub fn calibrate_from(
        &self,
        x: &[f32],
        nearest: &[usize],
        alpha: f32,
        alpha_on: AlphaOn,
    ) -> (Vec<f64>, Vec<f64>) {
        let d = self.dim;
        let kk = nearest.len() as f64;
        let mut mean: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for &i in nearest {
            for (m, &b) in mean.iter_mut().zip(&self.means[i]) {
                *m += b as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= kk + 1.0);
        let mut cov = vec![0f64; d * d];
        for &i in nearest {
            for (c, &b) in cov.iter_mut().zip(&self.covariances[i]) {
                *c += b as f64 / kk;
            }
        }
        match alpha_on {
            AlphaOn::Every => cov.iter_mut().for_each(|c| *c += alpha as f64),
            AlphaOn::Diagonal => (0..d).for_each(|j| cov[j * d + j] += alpha as f64),
        }
        (mean, cov)
    }
}

/// `(v − mean) / std` over the entries; all zeros when they are constant.
fn standardised(v: &[f64]) -> Vec<f64> {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    if sd > 0.0 && sd.is_finite() {
        v.iter().map(|x| (x - mean) / sd).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// Mean and unbiased covariance (f64 accumulation, stored as f32).
fn mean_cov<'a>(rows: impl Iterator<Item = &'a [f32]> + Clone, d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = rows.clone().count() as f64;
    let mut mean = vec![0f64; d];
    for r in rows.clone() {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut cov = vec![0f64; d * d];
    let mut c = vec![0f64; d];
    for r in rows {
        for (ci, (&x, &m)) in c.iter_mut().zip(r.iter().zip(&mean)) {
            *ci = x as f64 - m;
        }
        for i in 0..d {
            let ci = c[i];
            let row = &mut cov[i * d..(i + 1) * d];
            for (o, &cj) in row.iter_mut().zip(&c) {
                *o += ci * cj;
            }
        }
    }
    let denom = (n - 1.0).max(1.0);
    (
        mean.iter().map(|&m| m as f32).collect(),
        cov.iter().map(|&v| (v / denom) as f32).collect(),
    )
}

/// Where `alpha` is added to the calibrated covariance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlphaOn {
    /// Every entry (`Σ + α·11ᵀ`), as the paper's Eq. 7 and reference code do.
    #[default]
    Every,
    /// The diagonal only (`Σ + α·I`), an isotropic spread.
    Diagonal,
}

/// How queries are classified after calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Classifier {
    /// Multinomial logistic regression on exemplars + sampled features (the paper's choice),
    /// trained full-batch with Adam on standardised features.
    LogisticRegression {
        epochs: usize,
        learning_rate: f64,
        l2: f64,
    },
    /// Highest log-likelihood under each class's calibrated Gaussian (no sampling, no training).
    Gaussian,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::LogisticRegression {
            epochs: 100,
            learning_rate: 0.05,
            l2: 1e-4,
        }
    }
}

/// Distribution-calibration settings; defaults are the paper's 1-shot values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Base classes per exemplar (paper: 2).
    pub k: usize,
    /// Covariance spread (paper: 0.21).
    pub alpha: f32,
    pub alpha_on: AlphaOn,
    /// Sampled features per novel class, split evenly over its exemplars (paper: 750 / shots).
    pub samples_per_class: usize,
    pub seed: u64,
    pub classifier: Classifier,
    /// How much the class descriptions choose the `k` base classes (0..1): 0, the nearest
    /// means only (the paper); 1, the base classes whose descriptions are most like the
    /// exemplar's class's ([`BaseStats::neighbours`]). Needs description scores
    /// ([`evaluate_calibrated_with_text`]). Not written when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub text_weight: f32,
}

fn is_zero(w: &f32) -> bool {
    *w == 0.0
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            k: 2,
            alpha: 0.21,
            alpha_on: AlphaOn::Every,
            samples_per_class: 750,
            seed: 0,
            classifier: Classifier::default(),
            text_weight: 0.0,
        }
    }
}

/// Lower-triangular Cholesky factor of a symmetric `d×d` matrix; adds a growing multiple of the
/// mean diagonal when the matrix is only semi-definite (few samples per base class).
fn cholesky_jittered(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let scale = ((0..d).map(|i| a[i * d + i]).sum::<f64>() / d as f64)
        .abs()
        .max(1e-12);
    for jitter in [0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1e-1] {
        if let Some(l) = cholesky(a, d, jitter * scale) {
            return Some(l);
        }
    }
    None
}

fn cholesky(a: &[f64], d: usize, jitter: f64) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            if i == j {
                s += jitter;
            }
            s -= l[i * d..i * d + j]
                .iter()
                .zip(&l[j * d..j * d + j])
                .map(|(a, b)| a * b)
                .sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box–Muller; u1 in (0, 1] keeps ln finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A calibrated Gaussian for one exemplar.
#[derive(Debug, Clone)]
pub struct Calibrated {
    pub label: usize,
    /// Indices into the [`BaseStats`] table of the base classes used.
    pub base_classes: Vec<usize>,
    pub mean: Vec<f64>,
    /// Cholesky factor of the covariance (`D·D`, lower triangular).
    pub chol: Vec<f64>,
}

/// Calibrates every exemplar of `set` against `base`. `text`: with `cfg.text_weight > 0`, per
/// class of `set` one score per base class of `base` (how alike their descriptions are).
pub fn calibrate_exemplars(
    set: &OneShotSet,
    base: &BaseStats,
    cfg: &CalibrationConfig,
    text: Option<&[Vec<f32>]>,
) -> Result<Vec<Calibrated>, CalibrateError> {
    let dim = set.validate()?;
    let w = cfg.text_weight;
    if !(0.0..=1.0).contains(&w) {
        return Err(CalibrateError::Invalid(format!(
            "text_weight = {w} must be between 0 and 1"
        )));
    }
    let text =
        match text {
            _ if w == 0.0 => None,
            None => return Err(CalibrateError::Invalid(
                "text_weight > 0 needs description scores of the classes against the base classes"
                    .into(),
            )),
            Some(t) => {
                if t.len() != set.classes.len()
                    || t.iter().any(|r| r.len() != base.num_classes())
                    || t.iter().flatten().any(|v| !v.is_finite())
                {
                    return Err(CalibrateError::Invalid(format!(
                        "description scores must be {} classes × {} base classes of finite values",
                        set.classes.len(),
                        base.num_classes()
                    )));
                }
                Some(t)
            }
        };
    base.transform.check()?;
    if dim != base.dim {
        return Err(CalibrateError::Invalid(format!(
            "embeddings have dimension {dim} but the base statistics have {}",
            base.dim
        )));
    }
    if cfg.k == 0 || cfg.k > base.num_classes() {
        return Err(CalibrateError::Invalid(format!(
            "k = {} must be between 1 and the {} base classes",
            cfg.k,
            base.num_classes()
        )));
    }
    set.exemplars
        .par_iter()
        .zip(&set.exemplar_labels)
        .enumerate()
        .map(|(i, (e, &label))| {
            let x = base.transform.apply(e);
            let base_classes = base.neighbours(&x, cfg.k, text.map(|t| (&t[label][..], w)));
            let (mean, cov) = base.calibrate_from(&x, &base_classes, cfg.alpha, cfg.alpha_on);
            let chol = cholesky_jittered(&cov, dim).ok_or_else(|| {
                CalibrateError::Invalid(format!(
                    "exemplar {i}: calibrated covariance is not positive definite even with jitter"
                ))
            })?;
            Ok(Calibrated {
                label,
                base_classes,
                mean,
                chol,
            })
        })
        .collect()
}

/// Samples features from calibrated distributions: `samples_per_class` per class, split over
/// its exemplars. Deterministic for a seed (one RNG walked in exemplar order).
pub fn sample_features(
    calibrated: &[Calibrated],
    num_classes: usize,
    samples_per_class: usize,
    seed: u64,
) -> (Vec<Vec<f32>>, Vec<usize>) {
    // Labels past `num_classes` count as their own classes rather than panicking.
    let mut shots =
        vec![0usize; num_classes.max(calibrated.iter().map(|c| c.label + 1).max().unwrap_or(0))];
    for c in calibrated {
        shots[c.label] += 1;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for c in calibrated {
        let d = c.mean.len();
        let n = samples_per_class.div_ceil(shots[c.label].max(1));
        let mut z = vec![0f64; d];
        for _ in 0..n {
            z.iter_mut().for_each(|v| *v = standard_normal(&mut rng));
            let x: Vec<f32> = (0..d)
                .map(|i| {
                    let row = &c.chol[i * d..i * d + i + 1];
                    (c.mean[i] + row.iter().zip(&z).map(|(a, b)| a * b).sum::<f64>()) as f32
                })
                .collect();
            feats.push(x);
            labels.push(c.label);
        }
    }
    (feats, labels)
}

/// A trained multinomial logistic regression (on standardised inputs).
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    mean: Vec<f32>,
    std: Vec<f32>,
    /// `D × K`.
    w: Tensor,
    b: Tensor,
}

impl LogisticRegression {
    /// Full-batch Adam on the mean cross-entropy plus `l2/2·|W|²`, from zero weights
    /// (deterministic: no random init).
    pub fn fit(
        x: &[Vec<f32>],
        y: &[usize],
        num_classes: usize,
        epochs: usize,
        lr: f64,
        l2: f64,
    ) -> Result<Self, CalibrateError> {
        let n = x.len();
        let d = x.first().map_or(0, |r| r.len());
        if n == 0 || d == 0 || y.len() != n {
            return Err(CalibrateError::Invalid(
                "logistic regression needs a non-empty training set".into(),
            ));
        }
        if let Some(i) = x.iter().position(|r| r.len() != d) {
            return Err(CalibrateError::Invalid(format!(
                "training row {i} has dimension {}, expected {d}",
                x[i].len()
            )));
        }
        if let Some(&l) = y.iter().find(|&&l| l >= num_classes) {
            return Err(CalibrateError::Invalid(format!(
                "training label {l} outside the {num_classes} classes"
            )));
        }
        let dev = Device::Cpu;
        let mut mean = vec![0f32; d];
        let mut std = vec![0f32; d];
        for r in x {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n as f32;
            }
        }
        for r in x {
            for ((s, v), m) in std.iter_mut().zip(r).zip(&mean) {
                *s += (v - m) * (v - m) / n as f32;
            }
        }
        std.iter_mut().for_each(|s| *s = s.sqrt().max(1e-6));
        let xs = standardise(x, &mean, &std);
        let xt = Tensor::from_vec(xs, (n, d), &dev)?;
        let xtt = xt.t()?.contiguous()?;
        let mut onehot = vec![0f32; n * num_classes];
        for (i, &l) in y.iter().enumerate() {
            onehot[i * num_classes + l] = 1.0;
        }
        let yt = Tensor::from_vec(onehot, (n, num_classes), &dev)?;
        let mut w = Tensor::zeros((d, num_classes), DType::F32, &dev)?;
        let mut b = Tensor::zeros(num_classes, DType::F32, &dev)?;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let mut mw = w.zeros_like()?;
        let mut vw = w.zeros_like()?;
        let mut mb = b.zeros_like()?;
        let mut vb = b.zeros_like()?;
        for t in 1..=epochs {
            let logits = xt.matmul(&w)?.broadcast_add(&b)?;
            let p = candle_nn::ops::softmax_last_dim(&logits)?;
            let g = ((p - &yt)? / n as f64)?;
            let gw = (xtt.matmul(&g)? + (&w * l2)?)?;
            let gb = g.sum(0)?;
            let c1 = 1.0 - b1.powi(t as i32);
            let c2 = 1.0 - b2.powi(t as i32);
            mw = ((mw * b1)? + (&gw * (1.0 - b1))?)?;
            vw = ((vw * b2)? + (gw.sqr()? * (1.0 - b2))?)?;
            mb = ((mb * b1)? + (&gb * (1.0 - b1))?)?;
            vb = ((vb * b2)? + (gb.sqr()? * (1.0 - b2))?)?;
            let sw = ((&mw / c1)? / ((&vw / c2)?.sqrt()? + eps)?)?;
            let sb = ((&mb / c1)? / ((&vb / c2)?.sqrt()? + eps)?)?;
            w = (w - (sw * lr)?)?;
            b = (b - (sb * lr)?)?;
        }
        Ok(LogisticRegression { mean, std, w, b })
    }

    pub fn predict(&self, x: &[Vec<f32>]) -> Result<Vec<usize>, CalibrateError> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.mean.len();
        let xs = standardise(x, &self.mean, &self.std);
        let xt = Tensor::from_vec(xs, (x.len(), d), &Device::Cpu)?;
        let logits = xt.matmul(&self.w)?.broadcast_add(&self.b)?;
        Ok(logits
            .argmax(1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|v| v as usize)
            .collect())
    }
}

fn standardise(x: &[Vec<f32>], mean: &[f32], std: &[f32]) -> Vec<f32> {
    x.iter()
        .flat_map(|r| {
            r.iter()
                .zip(mean.iter().zip(std))
                .map(|(v, (m, s))| (v - m) / s)
        })
        .collect()
}

/// Log-likelihoods (up to a constant) of every query under N(mean, L·Lᵀ): with `M = L⁻¹`,
/// `-½(|M(x − mean)|² + log det Σ)`. One matrix product per exemplar instead of a triangular
/// solve per query.
fn gaussian_logliks(c: &Calibrated, queries: &Tensor) -> Result<Vec<f64>, CalibrateError> {
    let d = c.mean.len();
    // Columns of L⁻¹ by forward substitution on the identity.
    let mut inv = vec![0f64; d * d];
    for col in 0..d {
        for i in col..d {
            let row = &c.chol[i * d..i * d + i + 1];
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in col..i {
                s -= row[k] * inv[k * d + col];
            }
            inv[i * d + col] = s / row[i];
        }
    }
    let dev = queries.device();
    let m = Tensor::from_vec(
        inv.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (d, d),
        dev,
    )?;
    let mean = Tensor::from_vec(c.mean.iter().map(|&v| v as f32).collect::<Vec<_>>(), d, dev)?;
    let z = queries.broadcast_sub(&mean)?.matmul(&m.t()?)?;
    let maha = z.sqr()?.sum(1)?.to_vec1::<f32>()?;
    let logdet: f64 = (0..d).map(|i| c.chol[i * d + i].ln()).sum::<f64>() * 2.0;
    Ok(maha.iter().map(|&q| -0.5 * (q as f64 + logdet)).collect())
}

/// Predicts query classes with distribution calibration (`text` as for
/// [`calibrate_exemplars`]).
pub fn predict_calibrated(
    set: &OneShotSet,
    base: &BaseStats,
    cfg: &CalibrationConfig,
    text: Option<&[Vec<f32>]>,
) -> Result<Vec<usize>, CalibrateError> {
    let calibrated = calibrate_exemplars(set, base, cfg, text)?;
    let k = set.classes.len();
    let queries: Vec<Vec<f32>> = set
        .queries
        .par_iter()
        .map(|q| base.transform.apply(q))
        .collect();
    match &cfg.classifier {
        Classifier::Gaussian => {
            let n = queries.len();
            let q = Tensor::from_vec(queries.concat(), (n, base.dim), &Device::Cpu)?;
            let mut best = vec![(f64::NEG_INFINITY, 0usize); n];
            for c in &calibrated {
                for (b, ll) in best.iter_mut().zip(gaussian_logliks(c, &q)?) {
                    if ll > b.0 {
                        *b = (ll, c.label);
                    }
                }
            }
            Ok(best.into_iter().map(|b| b.1).collect())
        }
        Classifier::LogisticRegression {
            epochs,
            learning_rate,
            l2,
        } => {
            let (mut x, mut y) = sample_features(&calibrated, k, cfg.samples_per_class, cfg.seed);
            for (e, &l) in set.exemplars.iter().zip(&set.exemplar_labels) {
                x.push(base.transform.apply(e));
                y.push(l);
            }
            let lr = LogisticRegression::fit(&x, &y, k, *epochs, *learning_rate, *l2)?;
            lr.predict(&queries)
        }
    }
}

/// Distribution-calibrated one-shot evaluation; the report's `settings` record `cfg`.
pub fn evaluate_calibrated(
    set: &OneShotSet,
    base: &BaseStats,
    cfg: &CalibrationConfig,
) -> Result<EvalReport, CalibrateError> {
    evaluate_calibrated_with_text(set, base, cfg, None)
}

/// [`evaluate_calibrated`] with description scores for choosing the base classes
/// (`cfg.text_weight`; `text` as for [`calibrate_exemplars`]).
pub fn evaluate_calibrated_with_text(
    set: &OneShotSet,
    base: &BaseStats,
    cfg: &CalibrationConfig,
    text: Option<&[Vec<f32>]>,
) -> Result<EvalReport, CalibrateError> {
    let predicted = predict_calibrated(set, base, cfg, text)?;
    let method = match cfg.classifier {
        Classifier::LogisticRegression { .. } => "calibrated-logreg",
        Classifier::Gaussian => "calibrated-gaussian",
    };
    let mut report = EvalReport::for_set(method, set, &predicted)?;
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(cfg) {
        report.settings = m;
    }
    report.settings.insert(
        "transform".into(),
        serde_json::to_value(&base.transform).unwrap_or_default(),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_reconstructs() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2, 0.0).unwrap();
        assert!((l[0] - 2.0).abs() < 1e-12 && (l[2] - 1.0).abs() < 1e-12);
        assert!((l[3] - 2f64.sqrt()).abs() < 1e-12);
        assert!(cholesky(&[1.0, 1.0, 1.0, 1.0], 2, 0.0).is_none());
        assert!(cholesky_jittered(&[1.0, 1.0, 1.0, 1.0], 2).is_some());
    }

    #[test]
    fn transform_variants() {
        let t = PowerTransform::default();
        assert_eq!(t.apply(&[4.0, -9.0, 0.0]), vec![2.0, -3.0, 0.0]);
        let s = PowerTransform {
            negatives: NegativeFeatures::Shift,
            shift: vec![1.0, 1.0],
            ..Default::default()
        };
        assert_eq!(s.apply(&[3.0, -2.0]), vec![2.0, 0.0]);
    }

    #[test]
    fn calibrated_mean_averages_exemplar_and_nearest_bases() {
        let emb = vec![
            vec![0.0, 0.0],
            vec![2.0, 0.0],
            vec![10.0, 0.0],
            vec![12.0, 0.0],
            vec![100.0, 0.0],
            vec![102.0, 0.0],
        ];
        let t = PowerTransform {
            negatives: NegativeFeatures::Skip,
            ..Default::default()
        };
        let s = BaseStats::from_embeddings_with(&emb, &[0, 0, 1, 1, 2, 2], &BTreeMap::new(), t)
            .unwrap();
        assert_eq!(s.means[1], vec![11.0, 0.0]);
        assert!((s.covariances[1][0] - 2.0).abs() < 1e-6);
        let (near, mean, cov) = s.calibrate(&[5.0, 0.0], 2, 0.5, AlphaOn::Diagonal);
        assert_eq!(near, vec![0, 1]);
        assert!((mean[0] - (1.0 + 11.0 + 5.0) / 3.0).abs() < 1e-9);
        assert!((cov[0] - 2.5).abs() < 1e-6 && (cov[3] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn descriptions_choose_the_base_classes_by_weight() {
        let t = PowerTransform {
            negatives: NegativeFeatures::Skip,
            ..Default::default()
        };
        let emb: Vec<Vec<f32>> = [0.0f32, 2.0, 10.0, 12.0, 100.0, 102.0, 200.0, 202.0]
            .iter()
            .map(|&v| vec![v, 0.0])
            .collect();
        let s =
            BaseStats::from_embeddings_with(&emb, &[0, 0, 1, 1, 2, 2, 3, 3], &BTreeMap::new(), t)
                .unwrap();
        let x = [5.0, 0.0];
        // means 1, 11, 101, 201: nearest 0 and 1; the descriptions prefer 3, then 2
        let text = [0.1f32, 0.2, 0.8, 0.9];
        assert_eq!(s.neighbours(&x, 2, None), vec![0, 1]);
        assert_eq!(s.neighbours(&x, 2, Some((&text, 0.0))), vec![0, 1]);
        assert_eq!(s.neighbours(&x, 2, Some((&text, 1.0))), vec![3, 2]);
        // half and half: class 2, fairly near and described alike, first; class 3, far, last
        assert_eq!(s.neighbours(&x, 4, Some((&text, 0.5))), vec![2, 1, 0, 3]);
        // constant scores leave the distances to decide
        assert_eq!(s.neighbours(&x, 2, Some((&[0.5; 4], 0.5))), vec![0, 1]);
        let (mean, _) = s.calibrate_from(&x, &[3, 2], 0.0, AlphaOn::Diagonal);
        assert!((mean[0] - (201.0 + 101.0 + 5.0) / 3.0).abs() < 1e-9);

        let set = OneShotSet {
            classes: vec!["a".into(), "b".into()],
            exemplars: vec![vec![5.0, 0.0], vec![150.0, 0.0]],
            exemplar_labels: vec![0, 1],
            queries: vec![vec![6.0, 0.0]],
            query_labels: vec![0],
        };
        let cfg = CalibrationConfig {
            k: 2,
            text_weight: 1.0,
            ..Default::default()
        };
        let scores = vec![text.to_vec(), vec![0.9, 0.8, 0.1, 0.0]];
        let c = calibrate_exemplars(&set, &s, &cfg, Some(&scores)).unwrap();
        assert_eq!(c[0].base_classes, vec![3, 2]);
        assert_eq!(c[1].base_classes, vec![0, 1]);
        // the weight without scores, scores of the wrong shape or a weight out of range
        let err = |r: Result<Vec<Calibrated>, CalibrateError>| r.unwrap_err().to_string();
        assert!(err(calibrate_exemplars(&set, &s, &cfg, None)).contains("description scores"));
        let short = vec![text.to_vec()];
        assert!(err(calibrate_exemplars(&set, &s, &cfg, Some(&short))).contains("2 classes × 4"));
        let nan = vec![text.to_vec(), vec![f32::NAN; 4]];
        assert!(err(calibrate_exemplars(&set, &s, &cfg, Some(&nan))).contains("finite"));
        let over = CalibrationConfig {
            text_weight: 1.5,
            ..cfg.clone()
        };
        assert!(err(calibrate_exemplars(&set, &s, &over, Some(&scores))).contains("text_weight"));
        // weight 0 ignores the scores: the paper's choice
        let paper = CalibrationConfig {
            text_weight: 0.0,
            ..cfg
        };
        let c = calibrate_exemplars(&set, &s, &paper, Some(&scores)).unwrap();
        assert_eq!(c[0].base_classes, vec![0, 1]);
        assert!(!serde_json::to_string(&paper)
            .unwrap()
            .contains("text_weight"));
    }
}
