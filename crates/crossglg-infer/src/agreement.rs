//! Do the descriptions' similarities agree with the skeletons'? Spearman's rank correlation
//! between the cosine similarities of the classes' texts and those of the classes' mean
//! embeddings, over three groups of class pairs: training × training, novel × training and
//! novel × novel. A text whose geometry agrees with how the encoder sees the motions carries
//! little the skeletons do not already show; one that disagrees asks the encoder for a geometry
//! the motions do not have (docs/results.md, "Does the texts' geometry match the motions'?").

use serde::{Deserialize, Serialize};

use crate::eval::EvalError;
use crate::stats::spearman;

/// One text form over one group of class pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementRow {
    /// Which text: `global` or `per-joint`.
    pub text: String,
    /// `training × training`, `novel × training` or `novel × novel`.
    pub pairs: String,
    pub count: usize,
    /// Spearman's ρ; `None` with fewer than three pairs or a constant side.
    pub rho: Option<f64>,
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter()
        .map(|x| if n > 0.0 { x / n } else { 0.0 })
        .collect()
}

/// Cosine similarities between rows, `(K, K)`.
pub fn cosine_matrix(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let u: Vec<Vec<f64>> = rows.iter().map(|r| unit(r)).collect();
    u.iter()
        .map(|a| {
            u.iter()
                .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect()
}

/// The classes' similarities as the encoder sees them: every embedding L2-normalised (as the
/// nearest-exemplar rule compares them), averaged per class, and the means' cosines. `labels`
/// index `0..k`; every class needs a sample.
pub fn class_similarities(
    rows: &[Vec<f32>],
    labels: &[usize],
    k: usize,
) -> Result<Vec<Vec<f64>>, EvalError> {
    if rows.len() != labels.len() {
        return Err(EvalError::Invalid(format!(
            "{} embeddings but {} labels",
            rows.len(),
            labels.len()
        )));
    }
    let dim = rows.first().map_or(0, Vec::len);
    let mut sums = vec![vec![0f64; dim]; k];
    let mut counts = vec![0usize; k];
    for (r, &l) in rows.iter().zip(labels) {
        if l >= k || r.len() != dim {
            return Err(EvalError::Invalid(format!(
                "label {l} of {k} classes, or an embedding of width {} among width {dim}",
                r.len()
            )));
        }
        let u = unit(&r.iter().map(|&x| x as f64).collect::<Vec<_>>());
        sums[l].iter_mut().zip(u).for_each(|(s, x)| *s += x);
        counts[l] += 1;
    }
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(EvalError::Invalid(format!("class {c} has no sample")));
    }
    Ok(cosine_matrix(&sums))
}

/// The per-joint texts' similarity of two classes: the mean over joints of the cosine between
/// their descriptions of that joint. `local` is `(K, V, D)`.
pub fn per_joint_similarities(local: &[Vec<Vec<f32>>]) -> Vec<Vec<f64>> {
    let joints: Vec<Vec<Vec<f64>>> = local
        .iter()
        .map(|c| {
            c.iter()
                .map(|j| unit(&j.iter().map(|&x| x as f64).collect::<Vec<_>>()))
                .collect()
        })
        .collect();
    joints
        .iter()
        .map(|a| {
            joints
                .iter()
                .map(|b| {
                    let v = a.len().min(b.len()).max(1);
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
                        .sum::<f64>()
                        / v as f64
                })
                .collect()
        })
        .collect()
}

/// Spearman's ρ between the skeleton similarities and each text's, for the three groups of
/// pairs. Classes `0..train` are the training classes, the rest the novel ones; every matrix
/// is `(K, K)` over the same classes.
pub fn agreement(
    skeleton: &[Vec<f64>],
    texts: &[(&str, Vec<Vec<f64>>)],
    train: usize,
) -> Result<Vec<AgreementRow>, EvalError> {
    let k = skeleton.len();
    let square = |m: &[Vec<f64>]| m.len() == k && m.iter().all(|r| r.len() == k);
    if train > k || !square(skeleton) || texts.iter().any(|(_, m)| !square(m)) {
        return Err(EvalError::Invalid(format!(
            "similarity matrices must all be {k} × {k}, with at most {k} training classes (got {train})"
        )));
    }
    let (tr, nv): (Vec<usize>, Vec<usize>) = ((0..train).collect(), (train..k).collect());
    let within = |g: &[usize]| -> Vec<(usize, usize)> {
        g.iter()
            .flat_map(|&i| g.iter().filter(move |&&j| j > i).map(move |&j| (i, j)))
            .collect()
    };
    let across: Vec<(usize, usize)> = nv
        .iter()
        .flat_map(|&i| tr.iter().map(move |&j| (i, j)))
        .collect();
    let groups = [
        ("training × training", within(&tr)),
        ("novel × training", across),
        ("novel × novel", within(&nv)),
    ];
    let mut rows = Vec::new();
    for (name, text) in texts {
        for (group, pairs) in &groups {
            let a: Vec<f64> = pairs.iter().map(|&(i, j)| skeleton[i][j]).collect();
            let b: Vec<f64> = pairs.iter().map(|&(i, j)| text[i][j]).collect();
            rows.push(AgreementRow {
                text: name.to_string(),
                pairs: group.to_string(),
                count: pairs.len(),
                rho: spearman(&a, &b),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classes on a circle: class i at angle i·step. Similarity falls with angular distance.
    fn circle(k: usize, step: f64, order: &[usize]) -> Vec<Vec<f64>> {
        let rows: Vec<Vec<f64>> = order
            .iter()
            .map(|&i| vec![(i as f64 * step).cos(), (i as f64 * step).sin()])
            .collect();
        assert_eq!(rows.len(), k);
        cosine_matrix(&rows)
    }

    #[test]
    fn same_geometry_agrees_and_a_shuffled_one_does_not() {
        let k = 8;
        let id: Vec<usize> = (0..k).collect();
        let skel = circle(k, 0.3, &id);
        let same = circle(k, 0.3, &id);
        let shuffled = circle(k, 0.3, &[5, 2, 7, 0, 3, 6, 1, 4]);
        let rows = agreement(&skel, &[("global", same), ("shuffled", shuffled)], 5).unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(
            rows.iter().map(|r| r.count).collect::<Vec<_>>(),
            vec![10, 15, 3, 10, 15, 3]
        );
        for r in &rows[..3] {
            assert!((r.rho.unwrap() - 1.0).abs() < 1e-9, "{r:?}");
        }
        for r in &rows[3..5] {
            assert!(r.rho.unwrap() < 0.5, "{r:?}");
        }
        // a mismatched matrix is an error, not a number
        assert!(agreement(&skel, &[("x", circle(7, 0.3, &id[..7]))], 5).is_err());
        assert!(agreement(&skel, &[], 9).is_err());
    }

    #[test]
    fn class_means_of_unit_embeddings() {
        // class 0 along x (one long, one short vector: normalised first, so the same), class 1
        // along y, class 2 on the diagonal
        let rows = vec![
            vec![10.0, 0.0],
            vec![0.1, 0.0],
            vec![0.0, 3.0],
            vec![1.0, 1.0],
        ];
        let s = class_similarities(&rows, &[0, 0, 1, 2], 3).unwrap();
        assert!((s[0][1]).abs() < 1e-9);
        assert!((s[0][2] - 0.5f64.sqrt()).abs() < 1e-9);
        assert!((s[2][2] - 1.0).abs() < 1e-9);
        assert!(class_similarities(&rows, &[0, 0, 1, 1], 3).is_err()); // class 2 empty
        assert!(class_similarities(&rows, &[0, 0, 1, 3], 3).is_err()); // label out of range
        assert!(class_similarities(&rows, &[0, 0, 1], 3).is_err());
    }

    #[test]
    fn per_joint_similarity_is_the_mean_of_joint_cosines() {
        // two joints: the classes agree on joint 0 (cos 1) and are orthogonal on joint 1
        let local = vec![
            vec![vec![1.0, 0.0], vec![1.0, 0.0]],
            vec![vec![2.0, 0.0], vec![0.0, 5.0]],
        ];
        let s = per_joint_similarities(&local);
        assert!((s[0][1] - 0.5).abs() < 1e-9);
        assert!((s[1][1] - 1.0).abs() < 1e-9);
    }
}
