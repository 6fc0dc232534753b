//! The few statistics the reports and benchmarks need: mean and standard deviation, median,
//! percentiles, a 95 %
//! interval of a mean (Student's t), the paired comparison of two groups of runs, and
//! Spearman's rank correlation.
//!
//! Hand-written on purpose: the only non-trivial piece is the t quantile at 97.5 % (a short
//! table plus the Cornish-Fisher expansion), and the statistics crates that have it bring a
//! linear-algebra library along.

use serde::{Deserialize, Serialize};

/// Mean and sample standard deviation (`n − 1`); the deviation is 0 for fewer than two values.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The middle value (the mean of the two middle ones for an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p` quantile (0..=1, nearest rank) of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 %).
pub fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => {
            // Cornish-Fisher expansion around the normal quantile; < 1e-4 off beyond 30 df.
            let z: f64 = 1.959_963_984_540_054;
            let n = df as f64;
            let g1 = (z.powi(3) + z) / 4.0;
            let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
            z + g1 / n + g2 / (n * n)
        }
    }
}

/// A mean with its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// Mean of `v` with a t-based 95 % interval (infinite half-width for one value).
pub fn mean_ci95(v: &[f64]) -> Interval {
    let (mean, std) = mean_std(v);
    let half = if v.len() < 2 {
        f64::INFINITY
    } else {
        t975(v.len() - 1) * std / (v.len() as f64).sqrt()
    };
    Interval {
        mean,
        lo: mean - half,
        hi: mean + half,
        n: v.len(),
    }
}

/// One matched pair of a paired comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub key: String,
    pub a: f64,
    pub b: f64,
    /// `b − a`.
    pub diff: f64,
}

/// `b − a` over matched pairs: the differences, their mean and 95 % interval, and how many
/// are positive. Keys present on one side only are listed, never silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub pairs: Vec<Pair>,
    pub diff: Interval,
    pub positive: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

/// Pairs `a` and `b` by key (first occurrence wins; keys are sorted in the result).
pub fn paired(a: &[(String, f64)], b: &[(String, f64)]) -> Paired {
    let mut pairs = Vec::new();
    let mut only_a = Vec::new();
    for (k, va) in a {
        match b.iter().find(|(kb, _)| kb == k) {
            Some((_, vb)) => {
                if !pairs.iter().any(|p: &Pair| &p.key == k) {
                    pairs.push(Pair {
                        key: k.clone(),
                        a: *va,
                        b: *vb,
                        diff: vb - va,
                    })
                }
            }
            None => only_a.push(k.clone()),
        }
    }
    let only_b = b
        .iter()
        .filter(|(k, _)| !a.iter().any(|(ka, _)| ka == k))
        .map(|(k, _)| k.clone())
        .collect();
    pairs.sort_by(|x, y| x.key.cmp(&y.key));
    let diffs: Vec<f64> = pairs.iter().map(|p| p.diff).collect();
    let ma: Vec<f64> = pairs.iter().map(|p| p.a).collect();
    let mb: Vec<f64> = pairs.iter().map(|p| p.b).collect();
    Paired {
        positive: diffs.iter().filter(|d| **d > 0.0).count(),
        diff: mean_ci95(&diffs),
        mean_a: mean_std(&ma).0,
        mean_b: mean_std(&mb).0,
        pairs,
        only_a,
        only_b,
    }
}

/// Ranks from 1, ties given the mean of the ranks they span.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| out[k] = mean);
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation: Pearson's correlation of the ranks (ties averaged). `None`
/// for unequal lengths, fewer than three pairs, a non-finite value, or a constant side.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 || a.iter().chain(b).any(|x| !x.is_finite()) {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let (ma, _) = mean_std(&ra);
    let (mb, _) = mean_std(&rb);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_ranks_and_ties() {
        // monotone but not linear: 1 and -1
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [1.0, 4.0, 9.0, 16.0, 100.0];
        assert!((spearman(&a, &b).unwrap() - 1.0).abs() < 1e-12);
        let rev: Vec<f64> = b.iter().map(|x| -x).collect();
        assert!((spearman(&a, &rev).unwrap() + 1.0).abs() < 1e-12);
        // d = (0, 0, 1, -1, 0): 1 - 6 * 2 / (5 * 24) = 0.9
        let c = [10.0, 20.0, 40.0, 30.0, 50.0];
        assert!((spearman(&a, &c).unwrap() - 0.9).abs() < 1e-12);
        // ties take their mean rank: ranks of [1, 1, 2] are [1.5, 1.5, 3]
        assert_eq!(ranks(&[1.0, 1.0, 2.0]), vec![1.5, 1.5, 3.0]);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // with ties, Pearson's r of the ranks: x = [1.5, 1.5, 3], y = [1, 2, 3] gives sqrt(3)/2
        let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((r - 3f64.sqrt() / 2.0).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn t_quantiles_match_tables() {
        assert_eq!(t975(4), 2.776);
        assert!((t975(40) - 2.021).abs() < 2e-3, "{}", t975(40));
        assert!((t975(120) - 1.980).abs() < 2e-3, "{}", t975(120));
        assert!((t975(100_000) - 1.960).abs() < 1e-3);
    }

    #[test]
    fn interval_and_pairs() {
        let iv = mean_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(iv.mean, 3.0);
        // std = sqrt(2.5), half-width = 2.776 * sqrt(2.5) / sqrt(5)
        assert!((iv.hi - 3.0 - 2.776 * (0.5f64).sqrt()).abs() < 1e-9);
        assert!(mean_ci95(&[1.0]).hi.is_infinite());

        let a: Vec<(String, f64)> = [("s0", 50.0), ("s1", 60.0), ("s2", 55.0), ("s9", 1.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let b: Vec<(String, f64)> = [("s2", 54.0), ("s0", 53.0), ("s1", 64.0), ("s7", 9.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let p = paired(&a, &b);
        let d: Vec<f64> = p.pairs.iter().map(|p| p.diff).collect();
        assert_eq!(d, vec![3.0, 4.0, -1.0]);
        assert_eq!(p.positive, 2);
        assert!((p.diff.mean - 2.0).abs() < 1e-12);
        assert_eq!(p.only_a, vec!["s9"]);
        assert_eq!(p.only_b, vec!["s7"]);
        assert!((p.mean_a - 55.0).abs() < 1e-12);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
