//! One-shot evaluation on plain embeddings: every query is classified by the exemplar it is
//! most similar to (cosine similarity), the paper's baseline. The calibrated classifier lives in
//! [`crate::calibrate`]; both produce an [`EvalReport`].
//!
//! Embeddings are `Vec<f32>` rows; a candle `N×D` tensor converts with [`rows_from_tensor`].
//!
//! ```
//! use crossglg_train::eval::{evaluate_cosine, OneShotSet};
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
    Ok(EvalReport::from_predictions(
        "cosine-nn",
        &set.classes,
        set.exemplar_counts(),
        &set.query_labels,
        &predicted,
    )?)
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
}
