//! Errors raised while building a model from a configuration or a graph.

/// Everything that can go wrong before a tensor is touched (bad graph, inconsistent config), plus
/// tensor errors passed through unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The skeleton graph handed in by the caller is not usable.
    #[error("invalid skeleton graph: {0}")]
    Graph(String),
    /// A configuration value is out of range or inconsistent with another one.
    #[error("invalid model config: field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;

pub(crate) fn config_err<T>(field: &'static str, reason: impl Into<String>) -> Result<T> {
    Err(ModelError::Config {
        field,
        reason: reason.into(),
    })
}

/// A name outside a closed set of choices (an encoder kind, a guidance mode), as typed by a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}
