//! The one seam between inference code and a model: anything that turns skeletons into
//! fixed-size vectors. Gallery, streaming and evaluation code only ever see this trait (or plain
//! vectors), so they work with a trained CrossGLG checkpoint, a baseline encoder or a test fake.

use crossglg_data::Skeleton;

/// An error from an [`Embedder`]; wraps whatever the model code returns.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub Box<dyn std::error::Error + Send + Sync>);

impl EmbedError {
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        EmbedError(e.into())
    }
}

/// Turns skeleton sequences into embeddings of length [`Embedder::dim`].
///
/// Implementations must be deterministic for a given input (no dropout at inference) and
/// return exactly one vector per input skeleton.
///
/// ```
/// use crossglg_data::Skeleton;
/// use crossglg_infer::embedder::{EmbedError, Embedder};
///
/// /// Mean position of every joint over time: a crude, model-free embedding.
/// struct MeanPose;
///
/// impl Embedder for MeanPose {
///     fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
///         Ok(skeletons
///             .iter()
///             .map(|sk| {
///                 let n = (sk.persons * sk.frames).max(1) as f32;
///                 let per_frame = sk.joints * sk.channels;
///                 let mut e = vec![0.0; per_frame];
///                 for chunk in sk.data.chunks(per_frame) {
///                     e.iter_mut().zip(chunk).for_each(|(a, x)| *a += x / n);
///                 }
///                 e
///             })
///             .collect())
///     }
///     fn dim(&self) -> usize {
///         25 * 3
///     }
/// }
///
/// let e = MeanPose.embed(&[Skeleton::zeros(1, 8, 25, 3)]).unwrap();
/// assert_eq!(e[0].len(), MeanPose.dim());
/// ```
pub trait Embedder {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError>;
    fn dim(&self) -> usize;
    /// Values per joint the embedder takes (3 for xyz), when it needs a fixed number; inputs
    /// with another count are refused before they reach the model.
    fn input_channels(&self) -> Option<usize> {
        None
    }
    /// A hash of the weights, so a gallery can refuse embeddings of another model. `None`:
    /// unknown (galleries then only compare widths).
    fn model_hash(&self) -> Option<String> {
        None
    }
    /// How much the model weighs each joint of `skeleton` (one value per joint of the model's
    /// layout), for models that have such a head (CrossGLG's JID); `None` otherwise.
    fn joint_importance(&self, skeleton: &Skeleton) -> Result<Option<Vec<f32>>, EmbedError> {
        let _ = skeleton;
        Ok(None)
    }
}

/// Scores skeletons against a fixed set of class descriptions: a model's text-target branch
/// and a description file (`crossglg-train`'s `ClassDescriber`). What recognising from
/// descriptions (`crate::described`) and the server's `described` answers read.
pub trait Describer {
    /// The described classes, in the order of each row of [`Describer::describe`].
    fn classes(&self) -> &[String];
    /// One row per skeleton: its similarity to each class's description.
    fn describe(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// What the description prior mixes for one row of [`Describer::describe`]: the row as it
    /// is, or normalised per class (a trained model's cohort normalisation, chosen on
    /// validation splits: docs/results.md). Zero-shot answers take the row as it is.
    fn prior_row(&self, row: &[f32]) -> Vec<f32> {
        row.to_vec()
    }
    /// The hash of the weights that score, when the describer runs a model: with the
    /// embedder's own hash it says the two share one model (see
    /// [`Describer::embed_and_describe`]).
    fn model_hash(&self) -> Option<String> {
        None
    }
    /// The embeddings and the description rows from one pass of the model, for describers
    /// built on the embedder's model; `None` when the describer cannot (callers then embed and
    /// describe apart). Use it only when [`Describer::model_hash`] equals the embedder's
    /// ([`shares_model`]).
    #[allow(clippy::type_complexity)]
    fn embed_and_describe(
        &self,
        skeletons: &[Skeleton],
    ) -> Result<Option<(Vec<Vec<f32>>, Vec<Vec<f32>>)>, EmbedError> {
        let _ = skeletons;
        Ok(None)
    }
}

/// Whether `describer` runs the same weights as `embedder` (both say so by hash), so that its
/// [`Describer::embed_and_describe`] embeddings may stand in for the embedder's.
pub fn shares_model(
    embedder: &(impl Embedder + ?Sized),
    describer: &(impl Describer + ?Sized),
) -> bool {
    matches!((embedder.model_hash(), describer.model_hash()), (Some(a), Some(b)) if a == b)
}

impl<E: Embedder + ?Sized> Embedder for &E {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(skeletons)
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn model_hash(&self) -> Option<String> {
        (**self).model_hash()
    }
    fn input_channels(&self) -> Option<usize> {
        (**self).input_channels()
    }
    fn joint_importance(&self, skeleton: &Skeleton) -> Result<Option<Vec<f32>>, EmbedError> {
        (**self).joint_importance(skeleton)
    }
}

impl<E: Embedder + ?Sized> Embedder for Box<E> {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(skeletons)
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn model_hash(&self) -> Option<String> {
        (**self).model_hash()
    }
    fn input_channels(&self) -> Option<usize> {
        (**self).input_channels()
    }
    fn joint_importance(&self, skeleton: &Skeleton) -> Result<Option<Vec<f32>>, EmbedError> {
        (**self).joint_importance(skeleton)
    }
}

/// Why `embedder` cannot take `skeleton`, if it cannot: no pose at all (every value zero, what
/// a pose estimator writes when it found nobody), or another number of values per joint than
/// it takes. What the CLI and the server check before embedding, so neither fails deep inside
/// the model.
pub fn input_problem<E: Embedder + ?Sized>(embedder: &E, skeleton: &Skeleton) -> Option<String> {
    if skeleton.data.iter().all(|&x| x == 0.0) {
        return Some("every coordinate is zero (no pose detected?); nothing to embed".into());
    }
    match embedder.input_channels() {
        Some(c) if c != skeleton.channels => Some(format!(
            "{} values per joint, but the model takes {c}",
            skeleton.channels
        )),
        _ => None,
    }
}
