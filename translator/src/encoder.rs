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
    /// Encoder frames per attention chunk (None: full attention). Upstream's agent sets it apart
    /// from the convolutions' chunk: see [`agent_chunk_sizes`].
    pub attention_chunk: Option<usize>,
}

/// The chunk sizes StreamSpeech's agent sets for a source segment of `segment_ms`
/// (agent/speech_to_speech.streamspeech.agent.py): the attention chunk is `segment_ms / 40`
/// encoder frames (40 ms each after subsampling); the subsampler's and the depthwise
/// convolutions' chunk is 16 when that is at least 16, else 8. Returns (attention, convolutions).
pub fn agent_chunk_sizes(segment_ms: usize) -> (usize, usize) {
    let attention = segment_ms / 40;
    (attention, if attention >= 16 { 16 } else { 8 })
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
        let mask = self.cfg.attention_chunk.map(|c| chunk_mask(t, c, x.device())).transpose()?;
        let mut x = self.linear.forward(&x)?;
        let mut states = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = layer.forward(&x, &pos, mask.as_ref())?;
            states.push(x.clone());
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::agent_chunk_sizes;

    #[test]
    fn chunk_sizes_follow_the_agent() {
        assert_eq!(agent_chunk_sizes(320), (8, 8));
        assert_eq!(agent_chunk_sizes(160), (4, 8));
        assert_eq!(agent_chunk_sizes(640), (16, 16));
        assert_eq!(agent_chunk_sizes(1280), (32, 16));
    }
}
