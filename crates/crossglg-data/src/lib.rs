//! Skeleton data for crossglg: layouts (joint graphs as data), readers for the field's
//! dataset formats, mappings between layouts, preprocessing, packed datasets and one-shot
//! protocols.

pub mod atomic;
pub mod bounded;
pub mod fuzz;
pub mod inspect;
pub mod layout;
pub mod mapping;
pub mod pack;
pub mod preprocess;
pub mod progress;
pub mod protocol;
pub mod read;
pub mod rng;
pub mod sample;
pub mod synth;
pub mod tagged;

pub use layout::{Layout, LayoutError};
pub use sample::{Dataset, Sample, SampleMeta, Skeleton};
