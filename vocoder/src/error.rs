//! One error type for everything a user can get wrong: each variant says what and where.

use std::path::PathBuf;

use crate::health::HealthVerdict;
use crate::report::CheckpointReport;

#[derive(Debug, thiserror::Error)]
pub enum VocoderError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// The file is not a checkpoint we can read (truncated, corrupt, unknown format).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    #[error("invalid config: {0}")]
    Config(String),

    /// The checkpoint does not match the model: the report says exactly how.
    #[error("checkpoint does not match the model\n{0}")]
    Mismatch(Box<CheckpointReport>),

    /// A tensor that matches by name and shape but cannot be used.
    #[error("tensor `{key}`: {reason}")]
    BadTensor { key: String, reason: String },

    #[error("the model failed its health probe: {0}")]
    Unhealthy(Box<HealthVerdict>),

    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl VocoderError {
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        VocoderError::Format { path: path.into(), message: message.into() }
    }

    /// The message without the path, for callers that name the file themselves (so a message
    /// never says the path twice).
    pub fn detail(&self) -> String {
        match self {
            VocoderError::Format { message, .. } => message.clone(),
            VocoderError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }
}
