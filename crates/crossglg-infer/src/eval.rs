//! One-shot evaluation on plain embeddings: every query is classified by the exemplar it is
//! most similar to (cosine similarity), the paper's baseline. The calibrated classifier lives in
//! [`crate::calibrate`]; both produce an [`EvalReport`].
//!
//! Embeddings are `Vec<f32>` rows; a candle `N×D` tensor converts with [`rows_from_tensor`].
//!
//! ```
//! use crossglg_infer::eval::{evaluate_cosine, OneShotSet};
//!
//! let set = OneShotSet {
//!     classes: vec!["wave".into(), "clap".into()],
//!     exemplars: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
//!     exemplar_labels: vec![0, 1],
//!     queries: vec![vec![0.9, 0.2], vec![0.1, 0.8], vec![0.7, 0.6]],
//!     query_labels: vec![0, 1, 1],
//! };
//! let report = evaluate_cosine(&set).unwrap();
//! assert_eq!((report.correct, report.queries), (2, 3));
//! assert_eq!(report.confusion, vec![vec![1, 0], vec![1, 1]]);
//! println!("{}", report.to_markdown());
//! ```

use serde::{Deserialize, Serialize};

use crate::report::EvalReport;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("evaluation input: {0}")]
    Invalid(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

/// Exemplars and labelled queries of the novel classes, as embeddings. Labels index `classes`.
#[derive(Debug, Clone, Default)]
pub struct OneShotSet {
    pub classes: Vec<String>,
    pub exemplars: Vec<Vec<f32>>,
    pub exemplar_labels: Vec<usize>,
    pub queries: Vec<Vec<f32>>,
    pub query_labels: Vec<usize>,
}

impl OneShotSet {
    /// Checks lengths, labels and dimensions; returns the embedding dimension.
    pub fn validate(&self) -> Result<usize, EvalError> {
        let bad = |m: String| Err(EvalError::Invalid(m));
        if self.exemplars.len() != self.exemplar_labels.len() {
            return bad(format!(
                "{} exemplars but {} exemplar labels",
                self.exemplars.len(),
                self.exemplar_labels.len()
            ));
        }
        if self.queries.len() != self.query_labels.len() {
            return bad(format!(
                "{} queries but {} query labels",
                self.queries.len(),
                self.query_labels.len()
            ));
        }
        let Some(first) = self.exemplars.first() else {
            return bad("no exemplars".into());
        };
        let dim = first.len();
        if dim == 0 {
            return bad("exemplar 0 is empty".into());
        }
        for (what, rows, labels) in [
            ("exemplar", &self.exemplars, &self.exemplar_labels),
            ("query", &self.queries, &self.query_labels),
        ] {
            for (i, (r, &l)) in rows.iter().zip(labels.iter()).enumerate() {
                if r.len() != dim {
                    return bad(format!(
                        "{what} {i} has dimension {}, expected {dim}",
                        r.len()
                    ));
                }
                if l >= self.classes.len() {
                    return bad(format!(
                        "{what} {i} has label {l} but there are {} classes",
                        self.classes.len()
                    ));
                }
                if r.iter().any(|x| !x.is_finite()) {
                    return bad(format!("{what} {i} contains NaN or infinity"));
                }
            }
        }
        for (c, name) in self.classes.iter().enumerate() {
            if !self.exemplar_labels.contains(&c) {
                return bad(format!("class {c} `{name}` has no exemplar"));
            }
        }
        Ok(dim)
    }

    /// A set from `N×D` embedding tensors (any float dtype, any device), validated.
    pub fn from_tensors(
        classes: Vec<String>,
        exemplars: &candle_core::Tensor,
        exemplar_labels: Vec<usize>,
        queries: &candle_core::Tensor,
        query_labels: Vec<usize>,
    ) -> Result<Self, EvalError> {
        let set = OneShotSet {
            classes,
            exemplars: rows_from_tensor(exemplars)?,
            exemplar_labels,
            queries: rows_from_tensor(queries)?,
            query_labels,
        };
        set.validate()?;
        Ok(set)
    }

    pub fn exemplar_counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.classes.len()];
        for &l in &self.exemplar_labels {
            n[l] += 1;
        }
        n
    }
}

/// Rows of an `N×D` tensor (any float dtype) as `f32` vectors.
pub fn rows_from_tensor(t: &candle_core::Tensor) -> Result<Vec<Vec<f32>>, EvalError> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// `v / |v|`; the zero vector stays zero (its similarity to everything is 0).
pub fn l2_normalized(v: &[f32]) -> Vec<f32> {
    let n = norm(v);
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// Cosine similarity in [-1, 1]; 0 when either vector is zero.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let d = norm(a) * norm(b);
    if d > 0.0 {
        (dot(a, b) / d).clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// Index of the row of `rows` most cosine-similar to `q`, and that similarity. Rows must be
/// non-empty; ties go to the first row.
pub fn nearest_cosine(rows: &[Vec<f32>], q: &[f32]) -> Option<(usize, f32)> {
    let qn = l2_normalized(q);
    rows.iter()
        .enumerate()
        .map(|(i, r)| (i, cosine_similarity(r, &qn)))
        .fold(None, |best, (i, s)| match best {
            Some((_, bs)) if bs >= s => best,
            _ => Some((i, s)),
        })
}

/// Predicted class of every query by its nearest exemplar (cosine similarity).
pub fn predict_cosine(set: &OneShotSet) -> Result<Vec<usize>, EvalError> {
    set.validate()?;
    let ex: Vec<Vec<f32>> = set.exemplars.iter().map(|e| l2_normalized(e)).collect();
    Ok(set
        .queries
        .iter()
        .map(|q| {
            let (i, _) = nearest_cosine(&ex, q).expect("validate checked exemplars exist");
            set.exemplar_labels[i]
        })
        .collect())
}

/// The paper's baseline: nearest exemplar by cosine similarity, top-1 accuracy and friends.
pub fn evaluate_cosine(set: &OneShotSet) -> Result<EvalReport, EvalError> {
    let predicted = predict_cosine(set)?;
    Ok(EvalReport::for_set("cosine-nn", set, &predicted)?)
}

/// Per-class cosine similarity of `q` to the exemplars (the best exemplar of each class).
fn class_similarities(set: &OneShotSet, q: &[f32]) -> Vec<f32> {
    let mut best = vec![f32::NEG_INFINITY; set.classes.len()];
    for (e, &l) in set.exemplars.iter().zip(&set.exemplar_labels) {
        best[l] = best[l].max(cosine_similarity(e, q));
    }
    best
}

/// Standard scores over classes (mean 0, deviation 1; all zero when the row is constant).
fn zscores(v: &[f32]) -> Vec<f32> {
    let n = v.len().max(1) as f32;
    let m = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / n).sqrt();
    v.iter()
        .map(|x| if sd > 0.0 { (x - m) / sd } else { 0.0 })
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// One-shot with a text prior: each query's similarity to the class exemplars and its
/// similarity to the class descriptions (`query_text[q][c]`, from the model's text-target
/// branch), each standardised over the classes, mixed as `(1 − beta)·exemplar + beta·text`.
/// `beta = 0` is [`predict_cosine`]; `beta = 1` ignores the exemplars (zero-shot).
pub fn predict_with_text(
    set: &OneShotSet,
    query_text: &[Vec<f32>],
    beta: f32,
) -> Result<Vec<usize>, EvalError> {
    set.validate()?;
    if query_text.len() != set.queries.len()
        || query_text.iter().any(|r| r.len() != set.classes.len())
    {
        return Err(EvalError::Invalid(format!(
            "text similarities: {} rows for {} queries, each needs {} classes",
            query_text.len(),
            set.queries.len(),
            set.classes.len()
        )));
    }
    if !(0.0..=1.0).contains(&beta) {
        return Err(EvalError::Invalid(format!(
            "text prior weight must be in [0, 1], got {beta}"
        )));
    }
    Ok(set
        .queries
        .iter()
        .zip(query_text)
        .map(|(q, t)| argmax(&fused_scores(&class_similarities(set, q), t, beta)))
        .collect())
}

/// The text prior's decision scores: exemplar and description similarities of one query, one
/// each per class, standardised over the classes and mixed as `(1 − beta)·exemplar +
/// beta·text`.
pub fn fused_scores(exemplar: &[f32], text: &[f32], beta: f32) -> Vec<f32> {
    zscores(exemplar)
        .iter()
        .zip(&zscores(text))
        .map(|(a, b)| (1.0 - beta) * a + beta * b)
        .collect()
}

/// [`predict_with_text`] as a report (`cosine+text`, or `zero-shot-text` at `beta = 1`).
pub fn evaluate_with_text(
    set: &OneShotSet,
    query_text: &[Vec<f32>],
    beta: f32,
) -> Result<EvalReport, EvalError> {
    let predicted = predict_with_text(set, query_text, beta)?;
    let method = if beta >= 1.0 {
        "zero-shot-text"
    } else {
        "cosine+text"
    };
    let mut r = EvalReport::for_set(method, set, &predicted)?;
    r.settings
        .insert("text_weight".into(), (beta as f64).into());
    Ok(r)
}

/// One row of the open-set table: at a threshold, how many queries of enrolled classes are
/// recognised correctly and accepted, and how many queries of a class left out of the gallery
/// come out unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSetRow {
    /// The false-accept target the threshold was calibrated for (or NaN for a bare threshold).
    pub target_false_accept_rate: f64,
    pub threshold: f32,
    /// Queries of enrolled classes recognised as their class with similarity ≥ threshold.
    pub known_correct_accepted: f64,
    /// Queries of the left-out class whose best similarity is below the threshold.
    pub unknown_rejected: f64,
    pub known_queries: usize,
    pub unknown_queries: usize,
}

/// The open-set table of a one-shot set: every class in turn is left out of the gallery (its
/// exemplar removed) and its queries should come out unknown, while the other classes' queries
/// should be recognised and accepted; counts are summed over the left-out classes. One row per
/// `(false-accept target, threshold)`.
pub fn open_set(set: &OneShotSet, thresholds: &[(f64, f32)]) -> Result<Vec<OpenSetRow>, EvalError> {
    set.validate()?;
    // best similarity per class for every query
    let sims: Vec<Vec<f32>> = set
        .queries
        .iter()
        .map(|q| class_similarities(set, q))
        .collect();
    open_set_rows(&sims, &set.query_labels, thresholds)
}

/// [`open_set`] on scores already computed: `sims[i][c]` is query `i`'s score for class `c`
/// (its best exemplar similarity, or its similarity to the class's description for zero-shot
/// recognition), `labels[i]` its class.
pub fn open_set_rows(
    sims: &[Vec<f32>],
    labels: &[usize],
    thresholds: &[(f64, f32)],
) -> Result<Vec<OpenSetRow>, EvalError> {
    let k = sims.first().map_or(0, Vec::len);
    if k < 2 {
        return Err(EvalError::Invalid(
            "the open-set table needs at least 2 classes".into(),
        ));
    }
    if sims.len() != labels.len()
        || sims.iter().any(|s| s.len() != k)
        || labels.iter().any(|&l| l >= k)
    {
        return Err(EvalError::Invalid(format!(
            "the open-set table needs one score per class ({k}) and one class below {k} for each of {} queries",
            sims.len()
        )));
    }
    Ok(thresholds
        .iter()
        .map(|&(far, t)| {
            let (mut ka, mut kn, mut ur, mut un) = (0usize, 0usize, 0usize, 0usize);
            for out in 0..k {
                for (s, &l) in sims.iter().zip(labels) {
                    let (best, score) = s.iter().enumerate().filter(|(c, _)| *c != out).fold(
                        (usize::MAX, f32::NEG_INFINITY),
                        |b, (c, &x)| {
                            if x > b.1 {
                                (c, x)
                            } else {
                                b
                            }
                        },
                    );
                    if l == out {
                        un += 1;
                        ur += usize::from(score < t);
                    } else {
                        kn += 1;
                        ka += usize::from(best == l && score >= t);
                    }
                }
            }
            OpenSetRow {
                target_false_accept_rate: far,
                threshold: t,
                known_correct_accepted: ka as f64 / kn.max(1) as f64,
                unknown_rejected: ur as f64 / un.max(1) as f64,
                known_queries: kn,
                unknown_queries: un,
            }
        })
        .collect())
}

/// Every labelled sample of the novel classes, embedded once, from which exemplars are drawn:
/// one random exemplar per class, all other samples of those classes are the queries.
/// One fixed exemplar per class decides much of a small dataset's number; the mean over many
/// draws does not depend on that choice.
#[derive(Debug, Clone, Default)]
pub struct NovelPool {
    pub classes: Vec<String>,
    /// Sorted by (label, name), so a draw picks the same sample whatever the dataset order.
    pub names: Vec<String>,
    pub embeddings: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

/// Exemplar draws: how many, and the seed that fixes them. The same seed gives the same
/// exemplars for every model evaluated on the same samples, which is what makes two runs'
/// draw means a paired comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draws {
    pub count: usize,
    pub seed: u64,
}

fn name_key(s: &str) -> u64 {
    crossglg_data::rng::hash_words(&s.bytes().map(u64::from).collect::<Vec<_>>())
}

impl NovelPool {
    /// A pool from samples in any order; checks shapes and that every class has at least two
    /// samples (an exemplar and a query).
    pub fn new(
        classes: Vec<String>,
        names: Vec<String>,
        embeddings: Vec<Vec<f32>>,
        labels: Vec<usize>,
    ) -> Result<Self, EvalError> {
        if names.len() != embeddings.len() || labels.len() != embeddings.len() {
            return Err(EvalError::Invalid(format!(
                "pool: {} names, {} embeddings, {} labels",
                names.len(),
                embeddings.len(),
                labels.len()
            )));
        }
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| (labels[a], &names[a]).cmp(&(labels[b], &names[b])));
        let pool = NovelPool {
            names: order.iter().map(|&i| names[i].clone()).collect(),
            embeddings: order.iter().map(|&i| embeddings[i].clone()).collect(),
            labels: order.iter().map(|&i| labels[i]).collect(),
            classes,
        };
        for (c, name) in pool.classes.iter().enumerate() {
            let n = pool.labels.iter().filter(|&&l| l == c).count();
            if n < 2 {
                return Err(EvalError::Invalid(format!(
                    "class {c} `{name}` has {n} sample(s); drawing an exemplar needs at least 2"
                )));
            }
        }
        if let Some(&l) = pool.labels.iter().find(|&&l| l >= pool.classes.len()) {
            return Err(EvalError::Invalid(format!(
                "pool label {l} outside the {} classes",
                pool.classes.len()
            )));
        }
        Ok(pool)
    }

    /// Pool indices of draw `d`'s exemplars, one per class in class order.
    pub fn draw_indices(&self, seed: u64, d: usize) -> Vec<usize> {
        use rand::Rng;
        (0..self.classes.len())
            .map(|c| {
                let members: Vec<usize> = (0..self.labels.len())
                    .filter(|&i| self.labels[i] == c)
                    .collect();
                let mut rng = crossglg_data::rng::keyed_rng(&[
                    seed,
                    d as u64,
                    name_key(&self.classes[c]),
                    0xd7a3,
                ]);
                members[rng.random_range(0..members.len())]
            })
            .collect()
    }

    /// Pool indices of draw `d`'s queries, in the order [`NovelPool::draw`] lists them.
    pub fn query_indices(&self, seed: u64, d: usize) -> Vec<usize> {
        let ex = self.draw_indices(seed, d);
        (0..self.labels.len()).filter(|i| !ex.contains(i)).collect()
    }

    /// The one-shot set of draw `d`.
    pub fn draw(&self, seed: u64, d: usize) -> OneShotSet {
        let ex = self.draw_indices(seed, d);
        let mut set = OneShotSet {
            classes: self.classes.clone(),
            ..Default::default()
        };
        for (i, (e, &l)) in self.embeddings.iter().zip(&self.labels).enumerate() {
            if ex.contains(&i) {
                set.exemplars.push(e.clone());
                set.exemplar_labels.push(l);
            } else {
                set.queries.push(e.clone());
                set.query_labels.push(l);
            }
        }
        set
    }
}

/// Top-1 accuracy over exemplar draws: mean, a 95 % interval of the mean, the 2.5–97.5 %
/// range of single draws (what one user with one exemplar per class may see), and every draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawSummary {
    pub draws: Draws,
    pub mean: f64,
    pub std: f64,
    pub ci95: [f64; 2],
    pub range95: [f64; 2],
    pub accuracies: Vec<f64>,
}

impl DrawSummary {
    pub fn new(draws: Draws, accuracies: Vec<f64>) -> Self {
        let iv = crate::stats::mean_ci95(&accuracies);
        let (_, std) = crate::stats::mean_std(&accuracies);
        let mut sorted = accuracies.clone();
        sorted.sort_by(f64::total_cmp);
        DrawSummary {
            draws,
            mean: iv.mean,
            std,
            ci95: [iv.lo, iv.hi],
            range95: [
                crate::stats::percentile(&sorted, 0.025),
                crate::stats::percentile(&sorted, 0.975),
            ],
            accuracies,
        }
    }

    /// One line for reports: `72.4 % (95 % CI 71.0–73.8; draws 61.2–83.0; 50 draws, seed 0)`.
    pub fn line(&self) -> String {
        format!(
            "{:.2} % (95 % CI {:.2}–{:.2}; single draws {:.1}–{:.1}; {} draws, seed {})",
            100.0 * self.mean,
            100.0 * self.ci95[0],
            100.0 * self.ci95[1],
            100.0 * self.range95[0],
            100.0 * self.range95[1],
            self.draws.count,
            self.draws.seed
        )
    }
}

/// Accuracy of `classify` on each of `draws` exemplar draws of `pool` (draws run in parallel;
/// `classify` gets the draw index for any seeding of its own).
pub fn evaluate_draws<F, E>(pool: &NovelPool, draws: Draws, classify: F) -> Result<DrawSummary, E>
where
    F: Fn(&OneShotSet, usize) -> Result<EvalReport, E> + Sync,
    E: From<EvalError> + Send,
{
    use rayon::prelude::*;
    if draws.count == 0 {
        return Err(EvalError::Invalid("draws: count must be positive".into()).into());
    }
    let accs = (0..draws.count)
        .into_par_iter()
        .map(|d| classify(&pool.draw(draws.seed, d), d).map(|r| r.accuracy))
        .collect::<Result<Vec<f64>, E>>()?;
    Ok(DrawSummary::new(draws, accs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_basics() {
        assert!((cosine_similarity(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(nearest_cosine(&rows, &[0.1, 0.9]).unwrap().0, 1);
    }

    #[test]
    fn from_tensors_reads_rows() {
        let dev = candle_core::Device::Cpu;
        let ex = candle_core::Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        let q = candle_core::Tensor::new(&[[0.9f32, 0.1]], &dev).unwrap();
        let set =
            OneShotSet::from_tensors(vec!["a".into(), "b".into()], &ex, vec![0, 1], &q, vec![0])
                .unwrap();
        assert_eq!(set.queries, vec![vec![0.9, 0.1]]);
        assert_eq!(evaluate_cosine(&set).unwrap().correct, 1);
    }

    #[test]
    fn missing_exemplar_is_named() {
        let set = OneShotSet {
            classes: vec!["a".into(), "b".into()],
            exemplars: vec![vec![1.0]],
            exemplar_labels: vec![0],
            ..Default::default()
        };
        let e = set.validate().unwrap_err().to_string();
        assert!(e.contains("`b` has no exemplar"), "{e}");
    }

    #[test]
    fn open_set_counts_leave_one_class_out() {
        let set = OneShotSet {
            classes: vec!["a".into(), "b".into()],
            exemplars: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            exemplar_labels: vec![0, 1],
            queries: vec![vec![1.0, 0.1], vec![0.1, 1.0], vec![0.7, 0.7]],
            query_labels: vec![0, 1, 1],
        };
        // Threshold 0.9: with `a` left out, its query (similarity 0.1 to b) is rejected; the
        // two `b` queries: 0.995 accepted, 0.707 not. With `b` left out, both `b` queries are
        // rejected only if below 0.9 against `a` (0.1 yes, 0.707 yes); `a`'s query accepted.
        let rows = open_set(&set, &[(0.05, 0.9), (0.5, -1.0)]).unwrap();
        assert_eq!((rows[0].known_queries, rows[0].unknown_queries), (3, 3));
        assert!((rows[0].known_correct_accepted - 2.0 / 3.0).abs() < 1e-12);
        assert!((rows[0].unknown_rejected - 1.0).abs() < 1e-12);
        // A threshold of -1 accepts everything: nothing is rejected.
        assert_eq!(rows[1].unknown_rejected, 0.0);
        assert!(open_set(
            &OneShotSet {
                classes: vec!["a".into()],
                exemplars: vec![vec![1.0]],
                exemplar_labels: vec![0],
                ..Default::default()
            },
            &[]
        )
        .is_err());
    }

    #[test]
    fn text_prior_mixes_standardised_scores() {
        // Exemplars put query 0 in class 0 and query 1 in class 1; the text says the opposite
        // for query 1 only.
        let set = OneShotSet {
            classes: vec!["a".into(), "b".into(), "c".into()],
            exemplars: vec![
                vec![1.0, 0.0, 0.0],
                vec![0.0, 1.0, 0.0],
                vec![0.0, 0.0, 1.0],
            ],
            exemplar_labels: vec![0, 1, 2],
            queries: vec![vec![0.9, 0.1, 0.0], vec![0.1, 0.6, 0.5]],
            query_labels: vec![0, 2],
        };
        let text = vec![vec![0.9, 0.1, 0.1], vec![0.1, 0.1, 0.9]];
        assert_eq!(predict_with_text(&set, &text, 0.0).unwrap(), vec![0, 1]);
        assert_eq!(predict_with_text(&set, &text, 0.5).unwrap(), vec![0, 2]);
        assert_eq!(predict_with_text(&set, &text, 1.0).unwrap(), vec![0, 2]);
        assert_eq!(
            predict_with_text(&set, &text, 0.0).unwrap(),
            predict_cosine(&set).unwrap()
        );
        let r = evaluate_with_text(&set, &text, 1.0).unwrap();
        assert_eq!((r.method.as_str(), r.correct), ("zero-shot-text", 2));
        assert!(predict_with_text(&set, &text[..1], 0.5).is_err());
        assert!(predict_with_text(&set, &text, 1.5).is_err());
    }

    #[test]
    fn draws_are_deterministic_shared_and_cover_the_pool() {
        // Two classes, 6 samples each, given in a shuffled order.
        let mut names = Vec::new();
        let mut emb = Vec::new();
        let mut labels = Vec::new();
        for i in [3, 0, 5, 1, 4, 2] {
            for c in [1usize, 0] {
                names.push(format!("c{c}_s{i}"));
                emb.push(vec![c as f32, i as f32 + 1.0]);
                labels.push(c);
            }
        }
        let classes = vec!["a".to_string(), "b".to_string()];
        let pool =
            NovelPool::new(classes.clone(), names.clone(), emb.clone(), labels.clone()).unwrap();
        // Same samples in another order: the same exemplars, by name.
        let rev = NovelPool::new(
            classes.clone(),
            names.iter().rev().cloned().collect(),
            emb.iter().rev().cloned().collect(),
            labels.iter().rev().cloned().collect(),
        )
        .unwrap();
        let mut picked = std::collections::BTreeSet::new();
        for d in 0..40 {
            let a: Vec<&str> = pool
                .draw_indices(7, d)
                .iter()
                .map(|&i| pool.names[i].as_str())
                .collect();
            let b: Vec<&str> = rev
                .draw_indices(7, d)
                .iter()
                .map(|&i| rev.names[i].as_str())
                .collect();
            assert_eq!(a, b, "draw {d} depends on the sample order");
            assert!(a[0].starts_with("c0") && a[1].starts_with("c1"));
            picked.extend(a.iter().map(|s| s.to_string()));
            let set = pool.draw(7, d);
            assert_eq!((set.exemplars.len(), set.queries.len()), (2, 10));
            let qi = pool.query_indices(7, d);
            let q: Vec<Vec<f32>> = qi.iter().map(|&i| pool.embeddings[i].clone()).collect();
            assert_eq!(q, set.queries);
            assert!(set.validate().is_ok());
        }
        assert_eq!(picked.len(), 12, "40 draws should reach every sample");
        assert!(
            (0..40).any(|d| pool.draw_indices(7, d) != pool.draw_indices(8, d)),
            "the seed does not change the draws"
        );
        let s = evaluate_draws(&pool, Draws { count: 30, seed: 7 }, |set, _| {
            evaluate_cosine(set)
        })
        .unwrap();
        assert_eq!(s.accuracies.len(), 30);
        assert!(s.ci95[0] <= s.mean && s.mean <= s.ci95[1]);
        let again = evaluate_draws(&pool, Draws { count: 30, seed: 7 }, |set, _| {
            evaluate_cosine(set)
        })
        .unwrap();
        assert_eq!(s, again);
        // A class with one sample cannot be drawn from.
        let e = NovelPool::new(
            classes,
            vec!["x".into(), "y".into(), "z".into()],
            vec![vec![1.0]; 3],
            vec![0, 0, 1],
        )
        .unwrap_err();
        assert!(e.to_string().contains("`b` has 1 sample"), "{e}");
    }
}
