//! Using a trained CrossGLG encoder, whatever trained it: one-shot evaluation (nearest exemplar,
//! exemplar draws, the text prior, open set), distribution calibration, the gallery with its
//! unknown thresholds, recognising from class descriptions, streaming recognition, and the reports they produce.
//!
//! Everything here sees a model only through [`embedder::Embedder`] (skeletons in, embedding
//! rows out), so serving builds neither the training code nor the plotting library.
//! `crossglg-train`'s `TrainedModel` is the embedder a trained run provides.

pub mod agreement;
pub mod calibrate;
pub mod described;
pub mod embedder;
pub mod eval;
pub mod gallery;
pub mod report;
#[cfg(feature = "server")]
pub mod server;
pub mod stats;
pub mod stream;
