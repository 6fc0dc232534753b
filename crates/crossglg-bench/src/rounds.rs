//! Repeated side-by-side rounds, summarised per variant.
//!
//! On a shared 2-core VM one PyTorch run and one Rust run minutes apart can see very different
//! machines (PyTorch's own ST-GCN inference moved 989–1318 ms between identical commands), so a
//! single pair's ratio is off by ±0.15. `bench/run.sh` with `ROUNDS=N` therefore runs N rounds,
//! PyTorch and Rust back to back in each (alternating which goes first), and writes
//! `rust-<r>.json` (a [`BenchReport`]) and `torch-<r>.json` per round into one directory. This
//! module pairs them by round and reports, per variant and quantity, the median of the per-round
//! ratios and their range: slow drift hits both sides of a round alike and cancels in its ratio.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{load_torch, torch_base, BenchError, BenchReport, TorchRow};
use crossglg_infer::stats::median;

/// One quantity of one variant over all rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Median over rounds of the Rust value.
    pub rust: f64,
    /// Median over rounds of PyTorch's value.
    pub torch: f64,
    /// Per-round Rust / PyTorch, in round order.
    pub ratios: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn new(pairs: &[(f64, f64)]) -> Self {
        let ratios: Vec<f64> = pairs.iter().map(|(r, t)| r / t).collect();
        let finite = || ratios.iter().copied().filter(|r| r.is_finite());
        Self {
            rust: median(pairs.iter().map(|p| p.0).collect()),
            torch: median(pairs.iter().map(|p| p.1).collect()),
            median: median(finite().collect()),
            min: finite().fold(f64::NAN, f64::min),
            max: finite().fold(f64::NAN, f64::max),
            ratios,
        }
    }

    /// Rounds whose ratio is at most `limit`.
    pub fn at_most(&self, limit: f64) -> usize {
        self.ratios.iter().filter(|r| **r <= limit).count()
    }
}

/// One variant over all rounds (wall times, process CPU times, peak memory).
#[derive(Debug, Clone, Serialize)]
pub struct VariantSummary {
    pub name: String,
    pub train_ms: Spread,
    pub train_cpu_ms: Spread,
    pub infer_ms: Spread,
    pub infer_cpu_ms: Spread,
    pub peak_rss_mb: Spread,
    /// Median over rounds of the achieved training / inference rate as a share of that round's
    /// measured gemm peak, Rust and PyTorch (the same FLOP count over PyTorch's time); NaN for
    /// reports written before the peak was measured.
    pub train_peak_share: (f64, f64),
    pub infer_peak_share: (f64, f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundsSummary {
    pub dir: PathBuf,
    pub rounds: usize,
    pub threads: usize,
    pub variants: Vec<VariantSummary>,
}

/// Reads `rust-<r>.json` / `torch-<r>.json` pairs (r = 1, 2, ...) from `dir` and summarises
/// them. Fails on a missing or unreadable file, a round without the other side, or a variant
/// that is not in every round.
pub fn summarize(dir: &Path) -> Result<RoundsSummary, BenchError> {
    let io = |path: PathBuf| move |source| BenchError::Io { path, source };
    let mut rounds: Vec<(BenchReport, Vec<TorchRow>)> = Vec::new();
    loop {
        let r = rounds.len() + 1;
        let (rp, tp) = (
            dir.join(format!("rust-{r}.json")),
            dir.join(format!("torch-{r}.json")),
        );
        match (rp.exists(), tp.exists()) {
            (false, false) => break,
            (true, true) => {}
            (has_rust, _) => {
                return Err(BenchError::RoundFile {
                    dir: dir.into(),
                    round: r,
                    side: if has_rust { "PyTorch" } else { "Rust" },
                })
            }
        }
        let text =
            crossglg_data::bounded::read_to_string(&rp, crossglg_data::bounded::SMALL_FILE_BYTES)
                .map_err(io(rp.clone()))?;
        let report: BenchReport =
            serde_json::from_str(&text).map_err(|source| BenchError::Report {
                path: rp.clone(),
                source,
            })?;
        rounds.push((report, load_torch(&tp)?));
    }
    let Some((first, _)) = rounds.first() else {
        return Err(BenchError::NoRounds(dir.into()));
    };
    let mut variants = Vec::new();
    for name in first.rows.iter().map(|r| r.name.clone()) {
        let mut q: [Vec<(f64, f64)>; 5] = Default::default();
        let mut shares: [Vec<(f64, f64)>; 2] = Default::default();
        for (r, (report, torch)) in rounds.iter().enumerate() {
            let missing = |side: &'static str| BenchError::RoundRow {
                dir: dir.into(),
                round: r + 1,
                side,
                variant: name.clone(),
            };
            let row = report
                .rows
                .iter()
                .find(|x| x.name == name)
                .ok_or_else(|| missing("Rust"))?;
            let t = torch
                .iter()
                .find(|t| t.name == torch_base(&name))
                .ok_or_else(|| missing("PyTorch"))?;
            for (dst, pair) in q.iter_mut().zip([
                (row.train_ms, t.train_ms),
                (row.train_cpu_ms, t.train_cpu_ms),
                (row.infer_ms, t.infer_ms),
                (row.infer_cpu_ms, t.infer_cpu_ms),
                (row.peak_rss_mb, t.peak_rss_mb),
            ]) {
                dst.push(pair);
            }
            let pk = row.gemm_peak_gflops;
            shares[0].push((
                row.train_gflops / pk,
                row.train_gflops * row.train_ms / t.train_ms / pk,
            ));
            shares[1].push((
                row.infer_gflops / pk,
                row.infer_gflops * row.infer_ms / t.infer_ms / pk,
            ));
        }
        let med = |v: &[(f64, f64)]| {
            (
                median(v.iter().map(|p| p.0).collect()),
                median(v.iter().map(|p| p.1).collect()),
            )
        };
        let [train_ms, train_cpu_ms, infer_ms, infer_cpu_ms, peak_rss_mb] =
            q.map(|pairs| Spread::new(&pairs));
        variants.push(VariantSummary {
            name,
            train_ms,
            train_cpu_ms,
            infer_ms,
            infer_cpu_ms,
            peak_rss_mb,
            train_peak_share: med(&shares[0]),
            infer_peak_share: med(&shares[1]),
        });
    }
    Ok(RoundsSummary {
        dir: dir.into(),
        rounds: rounds.len(),
        threads: first.threads,
        variants,
    })
}

impl RoundsSummary {
    /// One line per variant: medians of each side, the per-round ratio as
    /// `median [min–max] (rounds ≤ target)` with the targets of issue 18 (train 0.8, infer
    /// 0.7, memory 0.8), and each side's share of the measured gemm peak.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} rounds from {}, {} threads; Rust / PyTorch per round: median [min-max] \
             (rounds at or under the target: train <= 0.8, infer <= 0.7, memory <= 0.8); \
             %pk = median share of the f32 gemm peak measured in each round, Rust / PyTorch\n",
            self.rounds,
            self.dir.display(),
            self.threads
        );
        s += &format!(
            "{:<18} {:>17} {:>24} {:>17} {:>24} {:>24} {:>13} {:>11} {:>11}\n",
            "variant",
            "train ms R / T",
            "train x",
            "infer ms R / T",
            "infer x",
            "cpu x (tr, inf)",
            "mem x",
            "tr %pk",
            "in %pk"
        );
        let cell = |sp: &Spread, limit: f64| {
            format!(
                "{:.2} [{:.2}-{:.2}] ({}/{})",
                sp.median,
                sp.min,
                sp.max,
                sp.at_most(limit),
                sp.ratios.len()
            )
        };
        for v in &self.variants {
            let pct = |(r, t): (f64, f64)| format!("{:.0} / {:.0}", 100.0 * r, 100.0 * t);
            s += &format!(
                "{:<18} {:>17} {:>24} {:>17} {:>24} {:>24} {:>13} {:>11} {:>11}\n",
                v.name,
                format!("{:.0} / {:.0}", v.train_ms.rust, v.train_ms.torch),
                cell(&v.train_ms, 0.8),
                format!("{:.0} / {:.0}", v.infer_ms.rust, v.infer_ms.torch),
                cell(&v.infer_ms, 0.7),
                format!("{:.2}, {:.2}", v.train_cpu_ms.median, v.infer_cpu_ms.median),
                format!(
                    "{:.2} ({}/{})",
                    v.peak_rss_mb.median,
                    v.peak_rss_mb.at_most(0.8),
                    self.rounds
                ),
                pct(v.train_peak_share),
                pct(v.infer_peak_share),
            );
        }
        s
    }
}
