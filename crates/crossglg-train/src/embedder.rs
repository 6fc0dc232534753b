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
pub trait Embedder {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError>;
    fn dim(&self) -> usize;
}

impl<E: Embedder + ?Sized> Embedder for &E {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(skeletons)
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
}

impl<E: Embedder + ?Sized> Embedder for Box<E> {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(skeletons)
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
}
