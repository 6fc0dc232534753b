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
    cosine_cross(rows, rows)
}

/// Cosine similarities of every row of `a` with every row of `b`, `(Ka, Kb)`.
pub fn cosine_cross(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let ub: Vec<Vec<f64>> = b.iter().map(|r| unit(r)).collect();
    a.iter()
        .map(|r| {
            let ua = unit(r);
            ub.iter()
                .map(|v| ua.iter().zip(v).map(|(x, y)| x * y).sum())
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
    per_joint_cross(local, local)
}

/// [`per_joint_similarities`] between the classes of two sets over the same joints, `(Ka, Kb)`.
pub fn per_joint_cross(a: &[Vec<Vec<f32>>], b: &[Vec<Vec<f32>>]) -> Vec<Vec<f64>> {
    let units = |set: &[Vec<Vec<f32>>]| -> Vec<Vec<Vec<f64>>> {
        set.iter()
            .map(|c| {
                c.iter()
                    .map(|j| unit(&j.iter().map(|&x| x as f64).collect::<Vec<_>>()))
                    .collect()
            })
            .collect()
    };
    let (ja, jb) = (units(a), units(b));
    ja.iter()
        .map(|x| {
            jb.iter()
                .map(|y| {
                    let v = x.len().min(y.len()).max(1);
                    x.iter()
                        .zip(y)
                        .map(|(p, q)| p.iter().zip(q).map(|(s, t)| s * t).sum::<f64>())
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

/// One description set, embedded: its classes' names and ids, their global texts `(K, D)` and
/// per-joint texts `(K, V, D)` over `joints`.
#[derive(Debug, Clone)]
pub struct EmbeddedSet {
    pub names: Vec<String>,
    pub ids: Vec<usize>,
    pub global: Vec<Vec<f64>>,
    pub local: Vec<Vec<Vec<f32>>>,
    pub joints: Vec<String>,
}

/// How two description sets of the same classes relate, at one text level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetRow {
    /// `global` or `per-joint`.
    pub text: String,
    /// Class pairs compared: `K·(K−1)/2` over the common classes.
    pub pairs: usize,
    /// Spearman's ρ between the two sets' class-pair similarities: do they call the same
    /// classes alike?
    pub rho: Option<f64>,
    /// Mean cosine between different classes' texts within each set: how much of every
    /// class's text the set's classes share.
    pub mean_pair_a: f64,
    pub mean_pair_b: f64,
    /// Mean cosine between the two sets' texts of the same class.
    pub same_class: f64,
    /// Share of classes whose text in one set is nearest to the same class's text in the other
    /// (both directions; chance is 1/K).
    pub matched: f64,
}

/// [`compare_sets`]' answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetComparison {
    /// The classes both sets describe, in set A's order.
    pub common: Vec<String>,
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
    /// `global`, then `per-joint` where the sets share their joints.
    pub rows: Vec<SetRow>,
    /// Per common class (A's order): the cosine of its two texts at each level of `rows`, and
    /// the class whose text in B is nearest to A's global text.
    pub classes: Vec<ClassRow>,
}

/// One class in [`SetComparison`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    pub name: String,
    /// Same-class cosine per level, in the order of [`SetComparison::rows`].
    pub same: Vec<f64>,
    /// The common class whose global text in B is nearest to this class's global text in A
    /// (its own name when the texts find each other).
    pub nearest_in_b: String,
}

/// A class name as both sets are matched on it: lower case, anything but letters and digits a
/// space, spaces collapsed (GAP writes "person’s", others "person's").
pub fn name_key(name: &str) -> String {
    let spaced: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The position of the first largest value (0 for an empty or all-NaN sequence).
fn first_max(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (n, x) in values.enumerate() {
        if x > best.1 {
            best = (n, x);
        }
    }
    best.0
}

/// How [`compare_sets`] pairs the two sets' classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    /// By [`name_key`] of the class names.
    Name,
    /// By class id (files of one dataset whose authors name the classes differently, as GAP's
    /// short NTU names against the dataset's own).
    Id,
}

/// Compares two description sets of (mostly) the same classes: whether they call the same
/// classes alike (ρ), how distinct each set's classes are, and whether each class's text is
/// closer to its own class in the other set than to any other. Needs three common classes; the
/// per-joint level only when both sets have the same joints. Both sets must come from the same
/// encoder.
pub fn compare_sets(
    a: &EmbeddedSet,
    b: &EmbeddedSet,
    by: MatchBy,
) -> Result<SetComparison, EvalError> {
    for (side, s) in [("A", a), ("B", b)] {
        if s.global.len() != s.names.len()
            || s.local.len() != s.names.len()
            || s.ids.len() != s.names.len()
        {
            return Err(EvalError::Invalid(format!(
                "set {side}: {} names, {} global and {} per-joint rows",
                s.names.len(),
                s.global.len(),
                s.local.len()
            )));
        }
    }
    let key = |s: &EmbeddedSet, i: usize| match by {
        MatchBy::Name => name_key(&s.names[i]),
        MatchBy::Id => s.ids[i].to_string(),
    };
    let mut index_b = std::collections::HashMap::new();
    for j in 0..b.names.len() {
        if index_b.insert(key(b, j), j).is_some() {
            return Err(EvalError::Invalid(format!(
                "set B has class `{}` (id {}) twice",
                b.names[j], b.ids[j]
            )));
        }
    }
    let mut seen_a = std::collections::HashSet::new();
    let (mut ia, mut ib) = (Vec::new(), Vec::new());
    let mut only_a = Vec::new();
    for (i, n) in a.names.iter().enumerate() {
        let key = key(a, i);
        if !seen_a.insert(key.clone()) {
            return Err(EvalError::Invalid(format!(
                "set A has class `{n}` (id {}) twice",
                a.ids[i]
            )));
        }
        match index_b.get(&key) {
            Some(&j) => {
                ia.push(i);
                ib.push(j);
            }
            None => only_a.push(n.clone()),
        }
    }
    let only_b: Vec<String> = (0..b.names.len())
        .filter(|&j| !seen_a.contains(&key(b, j)))
        .map(|j| b.names[j].clone())
        .collect();
    let k = ia.len();
    if k < 3 {
        return Err(EvalError::Invalid(format!(
            "the two sets share {k} class names; comparing them needs at least 3"
        )));
    }
    let pick = |rows: &[Vec<f64>], idx: &[usize]| -> Vec<Vec<f64>> {
        idx.iter().map(|&i| rows[i].clone()).collect()
    };
    let pick_local = |rows: &[Vec<Vec<f32>>], idx: &[usize]| -> Vec<Vec<Vec<f32>>> {
        idx.iter().map(|&i| rows[i].clone()).collect()
    };
    let (ga, gb) = (pick(&a.global, &ia), pick(&b.global, &ib));
    let mut levels = vec![(
        "global",
        cosine_matrix(&ga),
        cosine_matrix(&gb),
        cosine_cross(&ga, &gb),
    )];
    if a.joints == b.joints && !a.joints.is_empty() {
        let (la, lb) = (pick_local(&a.local, &ia), pick_local(&b.local, &ib));
        levels.push((
            "per-joint",
            per_joint_similarities(&la),
            per_joint_similarities(&lb),
            per_joint_cross(&la, &lb),
        ));
    }
    let pairs: Vec<(usize, usize)> = (0..k)
        .flat_map(|i| (i + 1..k).map(move |j| (i, j)))
        .collect();
    let rows: Vec<SetRow> = levels
        .iter()
        .map(|(text, sa, sb, cross)| {
            let va: Vec<f64> = pairs.iter().map(|&(i, j)| sa[i][j]).collect();
            let vb: Vec<f64> = pairs.iter().map(|&(i, j)| sb[i][j]).collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let hits: usize = (0..k)
                .map(|i| {
                    usize::from(first_max(cross[i].iter().copied()) == i)
                        + usize::from(first_max((0..k).map(|j| cross[j][i])) == i)
                })
                .sum();
            SetRow {
                text: text.to_string(),
                pairs: pairs.len(),
                rho: spearman(&va, &vb),
                mean_pair_a: mean(&va),
                mean_pair_b: mean(&vb),
                same_class: (0..k).map(|i| cross[i][i]).sum::<f64>() / k as f64,
                matched: hits as f64 / (2 * k) as f64,
            }
        })
        .collect();
    let common: Vec<String> = ia.iter().map(|&i| a.names[i].clone()).collect();
    let classes = (0..k)
        .map(|i| {
            let nearest = first_max(levels[0].3[i].iter().copied());
            ClassRow {
                name: common[i].clone(),
                same: levels.iter().map(|l| l.3[i][i]).collect(),
                nearest_in_b: common[nearest].clone(),
            }
        })
        .collect();
    Ok(SetComparison {
        common,
        only_a,
        only_b,
        rows,
        classes,
    })
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

    fn set(names: &[&str], global: Vec<Vec<f64>>, joints: usize) -> EmbeddedSet {
        let local = global
            .iter()
            .map(|g| vec![g.iter().map(|&x| x as f32).collect(); joints])
            .collect();
        EmbeddedSet {
            names: names.iter().map(|s| s.to_string()).collect(),
            ids: (0..names.len()).collect(),
            global,
            local,
            joints: (0..joints).map(|j| format!("j{j}")).collect(),
        }
    }

    fn on_circle(angles: &[f64]) -> Vec<Vec<f64>> {
        angles.iter().map(|a| vec![a.cos(), a.sin()]).collect()
    }

    #[test]
    fn description_sets_compared_by_class_name() {
        let angles = [0.0, 0.4, 0.9, 1.5, 2.2];
        let a = set(
            &["Drink water", "eat meal", "clap", "jump", "wave"],
            on_circle(&angles),
            2,
        );
        // B: the same geometry, classes in another order, names written differently, one extra
        let order = [4, 2, 0, 3, 1];
        let names_b = ["WAVE", "clap ", "drink-water", "jump", "eat  meal", "kick"];
        let mut g: Vec<f64> = order.iter().map(|&i| angles[i]).collect();
        g.push(3.0);
        let b = set(&names_b, on_circle(&g), 2);
        let c = compare_sets(&a, &b, MatchBy::Name).unwrap();
        assert_eq!(c.common.len(), 5);
        assert!(c.only_a.is_empty());
        assert_eq!(c.only_b, vec!["kick".to_string()]);
        assert_eq!(c.rows.len(), 2);
        for r in &c.rows {
            assert_eq!(r.pairs, 10);
            assert!((r.rho.unwrap() - 1.0).abs() < 1e-9, "{r:?}");
            assert!((r.same_class - 1.0).abs() < 1e-6, "{r:?}");
            assert!((r.matched - 1.0).abs() < 1e-12, "{r:?}");
            assert!((r.mean_pair_a - r.mean_pair_b).abs() < 1e-6);
        }
        assert!(c.classes.iter().all(|r| r.nearest_in_b == r.name));
        // the mean pair cosine by hand: cos of the ten angle differences
        let mut want = 0.0;
        for i in 0..5 {
            for j in i + 1..5 {
                want += (angles[i] - angles[j]).cos() / 10.0;
            }
        }
        assert!((c.rows[0].mean_pair_a - want).abs() < 1e-9);

        // B's texts deranged among its classes: same-class matching falls, and the rank
        // agreement is no longer perfect
        let deranged = [1, 2, 3, 4, 0];
        let g2: Vec<f64> = deranged.iter().map(|&i| angles[i]).collect();
        let d = set(
            &["drink water", "eat meal", "clap", "jump", "wave"],
            on_circle(&g2),
            2,
        );
        let c = compare_sets(&a, &d, MatchBy::Name).unwrap();
        assert!(c.rows[0].matched < 0.5, "{:?}", c.rows[0]);
        // per class: each of a's texts is nearest to the class whose text d moved onto it
        assert_eq!(c.classes.len(), 5);
        assert_eq!(c.classes[1].nearest_in_b, "Drink water");
        assert_eq!(c.classes[0].nearest_in_b, "wave");
        assert_eq!(c.classes[0].same.len(), 2);
        assert!((c.classes[0].same[0] - (angles[0] - angles[1]).cos()).abs() < 1e-9);
        assert!(c.rows[0].rho.unwrap() < 0.9, "{:?}", c.rows[0]);
        assert!(c.rows[0].same_class < 0.95);

        // other joints: the global level only
        let e = set(
            &["drink water", "eat meal", "clap"],
            on_circle(&angles[..3]),
            3,
        );
        let c = compare_sets(&a, &e, MatchBy::Name).unwrap();
        assert_eq!(c.rows.len(), 1);
        assert_eq!(c.only_a, vec!["jump".to_string(), "wave".to_string()]);
        // fewer than three shared classes, or a name twice, is an error
        let f = set(
            &["drink water", "eat meal", "x"],
            on_circle(&angles[..3]),
            2,
        );
        assert!(compare_sets(&a, &f, MatchBy::Name).is_err());
        let twice = set(&["clap", "Clap", "jump"], on_circle(&angles[..3]), 2);
        assert!(compare_sets(&a, &twice, MatchBy::Name).is_err());
        assert!(compare_sets(&twice, &a, MatchBy::Name).is_err());
        // by id, the names do not matter: d (ids 0..5) pairs class by class with a
        let c = compare_sets(&a, &d, MatchBy::Id).unwrap();
        assert_eq!(c.common.len(), 5);
        let mut renamed = a.clone();
        renamed.names = ["v", "w", "x", "y", "z"].map(String::from).to_vec();
        let c = compare_sets(&a, &renamed, MatchBy::Id).unwrap();
        assert!((c.rows[0].matched - 1.0).abs() < 1e-12);
        assert!(compare_sets(&a, &renamed, MatchBy::Name).is_err());
    }

    #[test]
    fn cross_similarities_match_the_square_ones() {
        let rows = on_circle(&[0.0, 1.0, 2.5]);
        assert_eq!(cosine_cross(&rows, &rows), cosine_matrix(&rows));
        let local = vec![
            vec![vec![1.0f32, 0.0], vec![0.0, 1.0]],
            vec![vec![1.0, 1.0], vec![1.0, 0.0]],
        ];
        let one = vec![local[1].clone()];
        let cross = per_joint_cross(&local, &one);
        let square = per_joint_similarities(&local);
        assert_eq!(cross.len(), 2);
        assert!((cross[0][0] - square[0][1]).abs() < 1e-12);
        assert!((cross[1][0] - 1.0).abs() < 1e-9);
    }
}
