//! StreamSpeech's speech encoder (`ChunkS2TConformerEncoder`, researches/chunk_unity/models/
//! s2t_conformer.py): chunk-causal subsampler → × √d → linear → conformer layers with relative
//! positions and the chunk attention mask.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::Linear;

use crate::conformer::{ConformerConfig, ConformerLayer, LayerCache, chunk_mask, chunk_mask_rows, rel_positions};
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
            linear: crate::linear::linear(d, d, true, vb.pp("linear"))?,
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

    /// Encoder frames per finality step: after a whole number of these, no later input changes
    /// an output (the attention chunk and the depthwise convolutions' chunk both end there).
    /// None when attention or a convolution sees the whole sequence.
    pub fn final_unit(&self) -> Option<usize> {
        let attention = self.cfg.attention_chunk.filter(|&c| c > 0)?;
        let mut unit = attention;
        for layer in &self.layers {
            let c = layer.conv_chunk()?;
            unit = unit / gcd(unit, c) * c;
        }
        Some(unit)
    }

    /// Encoder frames whose outputs no later input can change, of `features` input frames.
    pub fn final_frames(&self, features: usize) -> usize {
        let Some(unit) = self.final_unit() else { return 0 };
        let frames = self.subsample.final_frames(features).min(self.subsample.out_frames(features));
        frames / unit * unit
    }

    /// The encoder's output `[1, frames', d]` for `features` `[1, frames, in_channels]`, the
    /// whole source so far, computing only the frames after the final ones in `cache` (which
    /// must hold this source's earlier calls: a source only grows). Equal to the last state of
    /// [`forward`](Self::forward) on the same features (the tests bound the difference).
    pub fn forward_incremental(&self, features: &Tensor, cache: &mut EncoderCache) -> Result<Tensor> {
        let d = self.cfg.layer.embed_dim;
        let n_features = features.dim(1)?;
        if n_features < cache.features {
            candle_core::bail!("the source shrank from {} to {n_features} feature frames: reset the encoder cache", cache.features);
        }
        cache.features = n_features;
        let total = self.subsample.out_frames(n_features);
        let offset = cache.done;
        if offset == total && let Some(out) = &cache.output {
            return Ok(out.clone());
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![LayerCache::default(); self.layers.len()];
        }
        let mut x = self.subsample.forward_from(features, offset)?;
        if self.cfg.scale_embedding {
            x = (x * (d as f64).sqrt())?;
        }
        let mut x = self.linear.forward(&x)?;
        let keep = self.final_frames(n_features).saturating_sub(offset);
        let mask = self.cfg.attention_chunk.map(|c| chunk_mask_rows(offset, total, c, x.device())).transpose()?;
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward_cached(&x, offset, mask.as_ref(), layer_cache, keep)?;
        }
        let out = match &cache.output {
            Some(done) => Tensor::cat(&[done, &x], 1)?,
            None => x,
        };
        if keep > 0 {
            cache.output = Some(out.narrow(1, 0, offset + keep)?.contiguous()?);
            cache.done = offset + keep;
        }
        Ok(out)
    }
}

/// What [`ChunkConformerEncoder::forward_incremental`] keeps of a growing source: every layer's
/// keys, values and convolution context for the final frames, and their outputs.
#[derive(Debug, Clone, Default)]
pub struct EncoderCache {
    /// Encoder frames whose outputs are final and cached.
    done: usize,
    /// Feature frames of the last call.
    features: usize,
    output: Option<Tensor>,
    layers: Vec<LayerCache>,
}

impl EncoderCache {
    /// Encoder frames whose outputs are kept (final).
    pub fn final_frames(&self) -> usize {
        self.done
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
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
