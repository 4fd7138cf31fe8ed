//! StreamSpeech mel vocoders in candle.
//!
//! - [`config`]: the reference HiFi-GAN config fields plus the GRC-MRF ones.
//! - [`checkpoint`]: safetensors / PyTorch zip / PyTorch legacy readers and key normalisation.
//! - [`report`], [`arch`]: the strict `CheckpointReport` and architecture inference.
//! - [`hifigan`], [`grc`]: the two generator families (pure: tensor in, tensor out).
//! - [`model`]: the single loading path, and `inspect`.
//! - [`mel`]: the reference mel front end. [`health`]: the white-noise detector.
//! - [`convert`]: writing our one-file model format; [`fetch`]: the default models.
//! - [`device`]: the CPU/GPU choice, with a CPU fallback that never crashes.

pub mod arch;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod device;
pub mod error;
pub mod fetch;
pub mod files;
pub mod grc;
pub mod health;
pub mod hifigan;
pub mod kernels;
pub mod layers;
pub mod mel;
pub mod model;
pub mod pickle;
pub mod report;
pub mod streaming;
pub mod units;
pub mod weights;

pub use config::{Family, VocoderConfig};
pub use error::VocoderError;
pub use layers::Kernels;
pub use model::{Inspection, LoadedVocoder, Vocoder, load_healthy, load_vocoder};
