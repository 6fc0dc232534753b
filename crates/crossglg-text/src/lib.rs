//! Text knowledge for crossglg: prompt templates and an LLM client that writes description
//! files, the description file format and its validation, importers for published
//! descriptions, key-joint targets for the JID loss, and a frozen sentence encoder that turns a
//! description file into a text bank (safetensors) for training.
//!
//! Nothing here runs during training or inference except [`bank::TextBank::load`].

pub mod bank;
pub mod encoder;
pub mod format;
pub mod hashed;
pub mod import;
pub mod keyjoints;
pub mod llm;
pub mod models;
pub mod prompt;
pub mod util;

use std::path::PathBuf;

pub use bank::{build_bank, embed_descriptions, TextBank};
pub use encoder::{EncoderKind, EncoderSpec, SentenceEncoder, TextEncoder};
pub use format::{validate, validate_path, ClassDescription, DescriptionFile, Provenance, FORMAT};
pub use keyjoints::{key_joint_targets, show_class, KeyJointConfig, KeyJointSource, Lexicon};
pub use llm::{describe, describe_to_file, DescribeError, DescribeStats, LlmConfig};
pub use prompt::{PromptKind, PromptTemplate};

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error(transparent)]
    Layout(#[from] crossglg_data::LayoutError),
    #[error(transparent)]
    Prompt(#[from] prompt::PromptError),
    #[error(transparent)]
    Describe(#[from] llm::DescribeError),
    #[error(transparent)]
    Import(#[from] import::ImportError),
    #[error("model folder {dir}: {message}")]
    Model { dir: PathBuf, message: String },
    #[error("{context}: {source}")]
    Candle {
        context: String,
        source: candle_core::Error,
    },
    #[error("text bank {path}: {message}")]
    Bank { path: PathBuf, message: String },
    #[error(transparent)]
    File(#[from] crossglg_data::tagged::TaggedError),
    #[error("{0}")]
    Other(String),
}

/// The default sentence encoder's folder, found where [`models::find_model`] looks.
pub fn default_model() -> Result<PathBuf, String> {
    models::find_model(DEFAULT_MODEL)
}

/// The sentence encoder used unless another is named.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
