//! The StreamSpeech speech-to-speech translator in candle (issue #19).
//!
//! - [`fbank`]: the speech front end (Kaldi filter banks as torchaudio computes them for fairseq,
//!   and global CMVN), checked against torchaudio.
//! - [`subsampler`]: the encoder's chunk-causal Conv1d subsampler, checked against upstream's
//!   module.
//! - [`conformer`], [`encoder`]: the chunk conformer encoder (relative-position attention with
//!   the chunk mask, chunk-causal depthwise convolution), checked against upstream's encoder.
//! - [`ctc`]: the ASR/ST CTC heads and StreamSpeech's greedy CTC decoding.
//! - [`mt_decoder`]: the first-pass MT decoder (pre-LN transformer decoder with cross-attention,
//!   sinusoidal positions, tied output) and greedy decoding, checked against upstream's.
//! - [`model`]: the whole model's hyper-parameters from a real checkpoint and the exact
//!   state-dict entries they imply (checked against upstream's model, small and full size).
//! - [`t2u`]: the T2U encoder and the non-autoregressive CTC unit decoder, checked against
//!   upstream's.
//!
//! - [`linear`], [`packed`]: linear layers, with the weight packed for calls of few rows.
//! - [`data`]: the data directory (CMVN, dictionaries, multitask config) and detokenization.
//! - [`latency`]: SimulEval's latency metrics (AL, LAAL, AP, DAL, StartOffset, EndOffset).
//! - [`simultaneous`]: StreamSpeech's simultaneous policy, segment by segment as upstream's agent
//!   runs it (traces equal upstream's).
//! - [`synthetic`]: a full-size checkpoint in the real fairseq format with generated weights, for
//!   the memory test and the benchmark.

pub mod conformer;
pub mod data;
pub mod ctc;
pub mod encoder;
pub mod error;
pub mod fbank;
pub mod latency;
pub mod linear;
pub mod model;
pub mod mt_decoder;
pub mod packed;
pub mod simultaneous;
pub mod subsampler;
pub mod synthetic;
pub mod t2u;

pub use error::TranslatorError;
