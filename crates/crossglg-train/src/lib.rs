//! Training and evaluation for crossglg.

pub mod calibrate;
pub mod embedder;
pub mod eval;
pub mod gallery;
pub mod mapping;
pub mod plot;
pub mod report;
pub mod stream;
