//! StreamSpeech's speech encoder (`ChunkS2TConformerEncoder`, researches/chunk_unity/models/
//! s2t_conformer.py): chunk-causal subsampler → × √d → linear → conformer layers with relative
//! positions and the chunk attention mask.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::conformer::{ConformerConfig, ConformerLayer, chunk_mask, rel_positions};
use crate::subsampler::{Conv1dSubsampler, SubsamplerConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub subsampler: SubsamplerConfig,
    pub layer: ConformerConfig,
    pub layers: usize,
    /// `no_scale_embedding` upstream: false scales the subsampler's output by √d.
    pub scale_embedding: bool,
}

pub struct ChunkConformerEncoder {
    cfg: EncoderConfig,
    subsample: Conv1dSubsampler,
    linear: Linear,
    layers: Vec<ConformerLayer>,
}

impl ChunkConformerEncoder {
    /// Weights `subsample.*`, `linear.*`, `conformer_layers.{i}.*` under `vb` (`encoder.` in a
    /// StreamSpeech checkpoint).
    pub fn new(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.layer.embed_dim;
        let layers = (0..cfg.layers).map(|i| ConformerLayer::new(&cfg.layer, vb.pp(format!("conformer_layers.{i}")))).collect::<Result<_>>()?;
        Ok(ChunkConformerEncoder {
            cfg: cfg.clone(),
            subsample: Conv1dSubsampler::new(&cfg.subsampler, vb.pp("subsample"))?,
            linear: candle_nn::linear(d, d, vb.pp("linear"))?,
            layers,
        })
    }

    /// Features `[1, frames, in_channels]` → the state after each layer, `[1, frames', d]`
    /// (the last is the encoder's output).
    pub fn forward(&self, features: &Tensor) -> Result<Vec<Tensor>> {
        let d = self.cfg.layer.embed_dim;
        let mut x = self.subsample.forward(features)?;
        if self.cfg.scale_embedding {
            x = (x * (d as f64).sqrt())?;
        }
        let t = x.dim(1)?;
        let pos = rel_positions(t, d, x.device())?;
        let mask = self.cfg.layer.chunk_size.map(|c| chunk_mask(t, c, x.device())).transpose()?;
        let mut x = self.linear.forward(&x)?;
        let mut states = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = layer.forward(&x, &pos, mask.as_ref())?;
            states.push(x.clone());
        }
        Ok(states)
    }
}
