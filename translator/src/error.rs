//! One error type for the translator: each variant says what and where.

#[derive(Debug, thiserror::Error)]
pub enum TranslatorError {
    #[error("invalid translator config: {0}")]
    Config(String),

    /// A data file (gcmvn.npz, dictionaries) that cannot be used.
    #[error("{0}")]
    Data(String),

    #[error(transparent)]
    Vocoder(#[from] vocoder::VocoderError),
}
