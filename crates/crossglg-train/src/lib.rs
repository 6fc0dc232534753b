//! Training, one-shot evaluation and inference for CrossGLG.

pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod embedder;
pub mod eval;
pub mod gallery;
pub mod mapping;
pub mod optim;
pub mod plot;
pub mod report;
pub mod run;
pub mod source;
pub mod stream;
pub mod textsrc;
