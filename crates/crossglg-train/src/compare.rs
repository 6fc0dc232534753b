//! Paired comparison of two groups of finished runs (`crossglg compare`): runs are matched by
//! seed, fold and validation split (read from each run's `config.toml`), and for every
//! evaluation method the differences `b − a` of top-1 accuracy are summarised: per pair, their
//! mean with a 95 % interval, and how many are positive. Both the protocol's fixed exemplars
//! and, when both runs have them on the same draws, the mean over random exemplar draws.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::TrainConfig;
use crossglg_infer::report::EvalReport;
use crossglg_infer::stats::{paired, Paired};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("run {path}: {message}")]
    Run { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// What one finished run contributes: its pairing key and its reports.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub dir: PathBuf,
    pub key: String,
    pub reports: Vec<EvalReport>,
}

/// The pairing key of a run: what must be equal for two runs to differ only in the setting
/// under test.
pub fn run_key(cfg: &TrainConfig) -> String {
    let mut k = format!("seed {}", cfg.seed);
    if let Some(f) = cfg.data.fold {
        if f > 0 {
            k.push_str(&format!(", fold {f}"));
        }
    }
    if let Some(v) = cfg.data.validation {
        k.push_str(&format!(
            ", validation {v}/{}",
            cfg.data.validation_every.unwrap_or(3)
        ));
    }
    if let Some(a) = cfg.data.auxiliary {
        k.push_str(&format!(", {a} auxiliary"));
    }
    k
}

/// Reads `config.toml` and `report.json` of a run directory.
pub fn read_run(dir: &Path) -> Result<RunResult, CompareError> {
    let err = |message: String| CompareError::Run {
        path: dir.to_path_buf(),
        message,
    };
    let cfg_path = dir.join("config.toml");
    let text =
        crossglg_data::bounded::read_to_string(&cfg_path, crossglg_data::bounded::SMALL_FILE_BYTES)
            .map_err(|e| err(format!("cannot read config.toml: {e}")))?;
    let cfg = TrainConfig::from_toml_str(&text, &cfg_path.display().to_string())
        .map_err(|e| err(e.to_string()))?;
    let report_path = dir.join("report.json");
    let text = crossglg_data::bounded::read_to_string(
        &report_path,
        crossglg_data::bounded::SMALL_FILE_BYTES,
    )
    .map_err(|e| {
        err(format!(
            "cannot read report.json (did the run finish?): {e}"
        ))
    })?;
    let reports: Vec<EvalReport> = serde_json::from_str(&text)
        .map_err(|e| err(format!("report.json is not a list of reports: {e}")))?;
    Ok(RunResult {
        dir: dir.to_path_buf(),
        key: run_key(&cfg),
        reports,
    })
}

/// One metric's paired comparison.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    /// e.g. `cosine-nn, protocol exemplars` or `cosine-nn, mean of 50 draws (seed 0)`.
    pub metric: String,
    /// In percentage points.
    pub paired: Paired,
}

/// Everything `crossglg compare` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metrics: Vec<MetricComparison>,
}

fn keyed(
    runs: &[RunResult],
    pick: impl Fn(&EvalReport) -> Option<f64>,
    method: &str,
) -> Vec<(String, f64)> {
    runs.iter()
        .filter_map(|r| {
            r.reports
                .iter()
                .find(|x| x.method == method)
                .and_then(&pick)
                .map(|v| (r.key.clone(), 100.0 * v))
        })
        .collect()
}

fn check_unique(runs: &[RunResult], side: &str) -> Result<(), CompareError> {
    for (i, r) in runs.iter().enumerate() {
        if let Some(o) = runs[..i].iter().find(|o| o.key == r.key) {
            return Err(CompareError::Invalid(format!(
                "group {side}: {} and {} are both `{}`; each seed (and fold) may appear once per group",
                o.dir.display(),
                r.dir.display(),
                r.key
            )));
        }
    }
    Ok(())
}

/// Compares group `b` against group `a` (differences are `b − a`, in points of top-1 %).
pub fn compare(a: &[RunResult], b: &[RunResult]) -> Result<Comparison, CompareError> {
    check_unique(a, "a")?;
    check_unique(b, "b")?;
    let mut methods: Vec<String> = Vec::new();
    for r in a.iter().chain(b) {
        for x in &r.reports {
            if !methods.contains(&x.method) {
                methods.push(x.method.clone());
            }
        }
    }
    let mut metrics = Vec::new();
    for m in &methods {
        let p = paired(
            &keyed(a, |r| Some(r.accuracy), m),
            &keyed(b, |r| Some(r.accuracy), m),
        );
        if !p.pairs.is_empty() {
            metrics.push(MetricComparison {
                metric: format!("{m}, protocol exemplars"),
                paired: p,
            });
        }
        // Draw means pair only when both runs drew the same exemplars.
        let draws: Vec<crossglg_infer::eval::Draws> = a
            .iter()
            .chain(b)
            .filter_map(|r| r.reports.iter().find(|x| &x.method == m))
            .filter_map(|x| x.draws.as_ref().map(|d| d.draws))
            .collect();
        if let Some(d0) = draws.first() {
            if let Some(other) = draws.iter().find(|d| *d != d0) {
                return Err(CompareError::Invalid(format!(
                    "method {m}: runs were evaluated on different exemplar draws ({} draws, seed {} vs {} draws, seed {}); re-run `crossglg eval --draws N --draw-seed S` on both groups",
                    d0.count, d0.seed, other.count, other.seed
                )));
            }
            let mean = |r: &EvalReport| r.draws.as_ref().map(|d| d.mean);
            let p = paired(&keyed(a, mean, m), &keyed(b, mean, m));
            if !p.pairs.is_empty() {
                metrics.push(MetricComparison {
                    metric: format!("{m}, mean of {} draws (seed {})", d0.count, d0.seed),
                    paired: p,
                });
            }
        }
    }
    if metrics.is_empty() {
        return Err(CompareError::Invalid(
            "no run of group a shares a seed (and fold) and a method with a run of group b".into(),
        ));
    }
    Ok(Comparison { metrics })
}

impl Comparison {
    /// Markdown: one row per metric with both means, the mean difference and its interval, and
    /// how many pairs are positive.
    pub fn summary_markdown(&self, name_a: &str, name_b: &str) -> String {
        let mut s = format!(
            "| metric | {name_a} | {name_b} | {name_b} − {name_a} (95 % CI) | positive |\n|---|---:|---:|---|---:|\n"
        );
        for m in &self.metrics {
            let p = &m.paired;
            s.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:+.1} ({:+.1} to {:+.1}) | {}/{} |\n",
                m.metric,
                p.mean_a,
                p.mean_b,
                p.diff.mean,
                p.diff.lo,
                p.diff.hi,
                p.positive,
                p.pairs.len()
            ));
        }
        s
    }

    /// Markdown: one table of per-pair values per metric, then the summary line.
    pub fn to_markdown(&self, name_a: &str, name_b: &str) -> String {
        let mut s = String::new();
        for m in &self.metrics {
            let p = &m.paired;
            s.push_str(&format!(
                "### {}\n\n| run | {name_a} | {name_b} | difference |\n|---|---:|---:|---:|\n",
                m.metric
            ));
            for x in &p.pairs {
                s.push_str(&format!(
                    "| {} | {:.2} | {:.2} | {:+.2} |\n",
                    x.key, x.a, x.b, x.diff
                ));
            }
            s.push_str(&format!(
                "\n{name_b} − {name_a}: **{:+.2} points** (95 % CI {:+.2} to {:+.2}), {} of {} positive; means {:.2} vs {:.2}\n",
                p.diff.mean, p.diff.lo, p.diff.hi, p.positive, p.pairs.len(), p.mean_a, p.mean_b
            ));
            if !p.only_a.is_empty() || !p.only_b.is_empty() {
                s.push_str(&format!(
                    "unpaired: {name_a} only {:?}, {name_b} only {:?}\n",
                    p.only_a, p.only_b
                ));
            }
            s.push('\n');
        }
        s
    }
}
