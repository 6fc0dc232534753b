//! Skeleton data for crossglg: layouts (joint graphs as data), readers for the field's
//! dataset formats, preprocessing, packed datasets and one-shot protocols.

pub mod inspect;
pub mod layout;
pub mod read;
pub mod sample;

pub use layout::{Layout, LayoutError};
pub use sample::{Dataset, Sample, SampleMeta, Skeleton};
