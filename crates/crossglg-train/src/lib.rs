//! Training CrossGLG: the config, the optimiser, checkpoints, the training loop and its run
//! directory, the trained model ([`run::TrainedModel`], an [`crossglg_infer::embedder::Embedder`]),
//! comparisons of runs. Evaluation, calibration, galleries and streaming live in `crossglg-infer`;
//! training calls down into it.
//!
//! Using a trained run from Rust (what `crossglg enroll` / `recognize` do):
//!
//! ```no_run
//! use std::path::Path;
//! use crossglg_data::read::{read_path, DirOptions};
//! use crossglg_infer::embedder::Embedder;
//! use crossglg_infer::gallery::Gallery;
//! use crossglg_train::run::TrainedModel;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (model, _config, _layout) = TrainedModel::load(Path::new("runs/demo"), &candle_core::Device::Cpu)?;
//! // Any supported file or folder; the layout is guessed for .npy files.
//! let (wave, _, _) = read_path(Path::new("samples/wave.npy"), None, &DirOptions::default())?;
//! let (query, _, _) = read_path(Path::new("samples/query.npy"), None, &DirOptions::default())?;
//!
//! let mut gallery = Gallery::new(model.dim(), "runs/demo");
//! gallery.enroll("wave", &model.embed(&[wave.samples[0].skeleton.clone()])?, None)?;
//! gallery.threshold = Some(0.5); // or a calibrated one: see `gallery::calibrate_threshold`
//! let r = gallery.recognize(&model.embed(&[query.samples[0].skeleton.clone()])?[0])?;
//! println!("{} (similarity {:.2}, margin {:.2}, unknown {})", r.class, r.similarity, r.margin, r.unknown);
//! gallery.save(Path::new("my.gallery"))?;
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod dist;
pub mod export;
pub mod optim;
pub mod run;
pub mod source;
pub mod sweep;
pub mod textsrc;
