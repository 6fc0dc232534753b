//! Recognising from class descriptions as well as exemplars: the user's side of the text
//! prior and of zero-shot recognition (`docs/evaluation.md` measures both).
//!
//! The similarities of a sequence to class descriptions come from a model's text-target branch
//! (`crossglg-train`'s `TrainedModel::text_similarity`); here they are plain numbers, one per
//! class, so this module needs no model.

use serde::{Deserialize, Serialize};

use crate::eval::fused_scores;
use crate::gallery::{Gallery, GalleryError};

/// The answer for one sequence when descriptions take part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescribedRecognition {
    pub class: String,
    pub class_index: usize,
    /// Cosine similarity of the class's nearest exemplar; `None` when recognised from the
    /// descriptions alone.
    pub similarity: Option<f32>,
    /// The sequence's similarity to the class's description.
    pub text_similarity: f32,
    /// What decided: the text similarity alone (zero-shot), or the exemplar and description
    /// similarities, each standardised over the classes, mixed by the prior's weight.
    pub score: f32,
    /// Best minus second-best `score`.
    pub margin: f32,
    /// The exemplar similarity is below the gallery's threshold (never from descriptions
    /// alone: thresholds calibrated on training classes reject nearly every novel action there,
    /// docs/results.md).
    pub unknown: bool,
}

/// Zero-shot: the class whose description is most similar (`text[c]` for `classes[c]`); ties go
/// to the first. Needs at least two classes.
pub fn recognize_zero_shot(
    classes: &[String],
    text: &[f32],
) -> Result<DescribedRecognition, GalleryError> {
    check_text(classes.len(), text)?;
    let (best, margin) = best_two(text);
    Ok(DescribedRecognition {
        class: classes[best].clone(),
        class_index: best,
        similarity: None,
        text_similarity: text[best],
        score: text[best],
        margin,
        unknown: false,
    })
}

/// One-shot with the description prior: each enrolled class scored by
/// `(1 − beta)·z(exemplar) + beta·z(text)` over the gallery's classes (`text[c]` for the
/// gallery's class `c`), as `eval::predict_with_text` does. `unknown` keeps the gallery's rule on
/// the chosen class's exemplar similarity. Classes without exemplars take no part.
pub fn recognize_with_prior(
    gallery: &Gallery,
    embedding: &[f32],
    text: &[f32],
    beta: f32,
) -> Result<DescribedRecognition, GalleryError> {
    recognize_with_prior_mixing(gallery, embedding, text, text, beta)
}

/// [`recognize_with_prior`] mixing `mixed` (e.g. [`crate::embedder::Describer::prior_row`]'s
/// normalised similarities, gallery order) while reporting `text` as the similarities.
pub fn recognize_with_prior_mixing(
    gallery: &Gallery,
    embedding: &[f32],
    text: &[f32],
    mixed: &[f32],
    beta: f32,
) -> Result<DescribedRecognition, GalleryError> {
    if !(0.0..=1.0).contains(&beta) {
        return Err(GalleryError::Invalid(format!(
            "the text prior's weight must be in [0, 1], got {beta}"
        )));
    }
    check_text(gallery.classes.len(), text)?;
    check_text(gallery.classes.len(), mixed)?;
    let sims = gallery.class_similarities(embedding)?;
    let enrolled: Vec<usize> = (0..sims.len()).filter(|&c| sims[c].is_finite()).collect();
    if enrolled.len() < 2 {
        return Err(GalleryError::Invalid(
            "the text prior needs at least two enrolled classes".into(),
        ));
    }
    let pick = |v: &[f32]| -> Vec<f32> { enrolled.iter().map(|&c| v[c]).collect() };
    let fused = fused_scores(&pick(&sims), &pick(mixed), beta);
    let (k, margin) = best_two(&fused);
    let best = enrolled[k];
    Ok(DescribedRecognition {
        class: gallery.classes[best].clone(),
        class_index: best,
        similarity: Some(sims[best]),
        text_similarity: text[best],
        score: fused[k],
        margin,
        unknown: gallery.threshold.is_some_and(|t| sims[best] < t),
    })
}

/// Both answers from the descriptions for one sequence, as the server and the stream give them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Described {
    /// The described class the sequence is most like, with no exemplar.
    pub zero_shot: DescribedRecognition,
    /// The gallery's decision with the description prior; `None` when some gallery class is
    /// not described (listed in `undescribed`) or fewer than two are enrolled.
    pub prior: Option<DescribedRecognition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undescribed: Vec<String>,
}

/// For each gallery class, its column among the described `classes` (`None`: not described).
pub fn gallery_columns(gallery: &Gallery, classes: &[String]) -> Vec<Option<usize>> {
    gallery
        .classes
        .iter()
        .map(|c| classes.iter().position(|n| n == c))
        .collect()
}

/// [`Described`] for one sequence: `text` its similarities to the described `classes` (what
/// zero-shot ranks), `mixed` what the prior mixes for the same classes (`text` itself, or the
/// describer's [`crate::embedder::Describer::prior_row`]), `columns` from [`gallery_columns`],
/// `embedding` its embedding, `beta` the prior's weight.
#[allow(clippy::too_many_arguments)]
pub fn describe_one(
    classes: &[String],
    text: &[f32],
    mixed: &[f32],
    gallery: &Gallery,
    columns: &[Option<usize>],
    embedding: &[f32],
    beta: f32,
) -> Result<Described, GalleryError> {
    let zero_shot = recognize_zero_shot(classes, text)?;
    let undescribed: Vec<String> = columns
        .iter()
        .zip(&gallery.classes)
        .filter(|(c, _)| c.is_none())
        .map(|(_, n)| n.clone())
        .collect();
    let enrolled = gallery.class_counts().iter().filter(|&&n| n > 0).count();
    let prior = if undescribed.is_empty() && enrolled >= 2 {
        let col = |v: &[f32]| -> Vec<f32> { columns.iter().map(|c| v[c.unwrap_or(0)]).collect() };
        Some(recognize_with_prior_mixing(
            gallery,
            embedding,
            &col(text),
            &col(mixed),
            beta,
        )?)
    } else {
        None
    };
    Ok(Described {
        zero_shot,
        prior,
        undescribed,
    })
}

fn check_text(classes: usize, text: &[f32]) -> Result<(), GalleryError> {
    if classes < 2 {
        return Err(GalleryError::Invalid(format!(
            "recognising from descriptions needs at least two classes, got {classes}"
        )));
    }
    if text.len() != classes || text.iter().any(|v| !v.is_finite()) {
        return Err(GalleryError::Invalid(format!(
            "description similarities: {} values for {classes} classes, all finite",
            text.len()
        )));
    }
    Ok(())
}

/// Index of the largest value (the first of equal ones) and its lead over the next.
fn best_two(v: &[f32]) -> (usize, f32) {
    let best = v
        .iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
    let second = v
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, &x)| x)
        .fold(f32::NEG_INFINITY, f32::max);
    (best, v[best] - second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn zero_shot_takes_the_most_similar_description() {
        let r = recognize_zero_shot(&names(3), &[0.1, 0.7, 0.4]).unwrap();
        assert_eq!((r.class.as_str(), r.class_index), ("c1", 1));
        assert!((r.margin - 0.3).abs() < 1e-6 && r.similarity.is_none() && !r.unknown);
        // ties: the first
        assert_eq!(
            recognize_zero_shot(&names(2), &[0.5, 0.5])
                .unwrap()
                .class_index,
            0
        );
        for (n, t) in [(1, vec![0.3]), (2, vec![0.3]), (2, vec![0.3, f32::NAN])] {
            assert!(recognize_zero_shot(&names(n), &t).is_err());
        }
    }

    #[test]
    fn the_prior_moves_close_calls_and_keeps_the_threshold() {
        let mut g = Gallery::new(2, "m");
        g.enroll("a", &[vec![1.0, 0.0]], None).unwrap();
        g.enroll("b", &[vec![0.0, 1.0]], None).unwrap();
        g.enroll("c", &[vec![-1.0, 0.0]], None).unwrap();
        // nearer a's exemplar, but described like b
        let q = [0.75f32, 0.66];
        let text = [0.1f32, 0.9, 0.0];
        let plain = g.recognize(&q).unwrap();
        assert_eq!(plain.class, "a");
        let none = recognize_with_prior(&g, &q, &text, 0.0).unwrap();
        assert_eq!(none.class, "a");
        assert_eq!(none.similarity, Some(plain.similarity));
        let with = recognize_with_prior(&g, &q, &text, 0.5).unwrap();
        assert_eq!((with.class.as_str(), with.text_similarity), ("b", 0.9));
        let cos_b = g.class_similarities(&q).unwrap()[1];
        assert_eq!(with.similarity, Some(cos_b));
        assert!(with.margin > 0.0);
        // the threshold judges the chosen class's exemplar similarity
        g.threshold = Some(cos_b + 0.01);
        assert!(recognize_with_prior(&g, &q, &text, 0.5).unwrap().unknown);
        assert!(recognize_with_prior(&g, &q, &text, 1.5).is_err());
        assert!(recognize_with_prior(&g, &q, &text[..2], 0.5).is_err());
        // mixing other scores (a describer's normalised row) decides by them and still reports
        // the similarities given as `text`
        let mixed = [0.9f32, 0.1, 0.0];
        let m = recognize_with_prior_mixing(&g, &q, &text, &mixed, 0.5).unwrap();
        assert_eq!((m.class.as_str(), m.text_similarity), ("a", 0.1));
        assert!(recognize_with_prior_mixing(&g, &q, &text, &mixed[..2], 0.5).is_err());
        let t = &["a", "b", "c"].map(String::from);
        let cols = gallery_columns(&g, t);
        let d = describe_one(t, &text, &mixed, &g, &cols, &q, 0.5).unwrap();
        assert_eq!(d.prior.unwrap().class, "a");
        assert_eq!(d.zero_shot.class, "b");
    }
}
