//! StreamSpeech's text-to-unit stage: the T2U encoder (`UniTransformerEncoderNoEmb`, pre-LN
//! fairseq encoder layers with a causal mask, over the MT decoder's final states) and the
//! non-autoregressive CTC unit decoder (`CTCTransformerUnitDecoder`).
//!
//! The unit decoder repeats every T2U state `ctc_upsample_rate` times and adds a position
//! embedding. Upstream asks fairseq's sinusoidal embedding for the positions of a time-major
//! tensor as if it were batch-major. That gives a "sequence" of length 1 for every frame, so every
//! frame gets the sinusoid of position `padding_idx + 1` = 2. This is reproduced, as the issue
//! asks. Causal pre-LN decoder layers (cross-attention to the T2U states) follow, then LayerNorm,
//! then the tied output projection. Units come from greedy CTC (pad/unk masked, repeats merged,
//! blank and pad dropped).

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::linear::Linear;

use crate::mt_decoder::{Attention, DecoderLayer, causal_mask_with_pads, key_padding_mask, sinusoidal_table};

#[derive(Debug, Clone, PartialEq)]
pub struct T2uConfig {
    pub embed_dim: usize,
    pub ffn_embed_dim: usize,
    pub attention_heads: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    /// The unit dictionary's size (units + specials + blank).
    pub vocab: usize,
    pub ctc_upsample_rate: usize,
    pub padding_idx: usize,
}

/// fairseq's pre-LN `TransformerEncoderLayer` (ReLU FFN).
struct EncoderLayer {
    self_attn: Attention,
    self_attn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_norm: LayerNorm,
}

impl EncoderLayer {
    fn new(cfg: &T2uConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embed_dim;
        Ok(EncoderLayer {
            self_attn: Attention::new(d, d, cfg.attention_heads, false, vb.pp("self_attn"))?,
            self_attn_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
            fc1: crate::linear::linear(d, cfg.ffn_embed_dim, false, vb.pp("fc1"))?,
            fc2: crate::linear::linear(cfg.ffn_embed_dim, d, false, vb.pp("fc2"))?,
            final_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = self.self_attn_norm.forward(x)?;
        let x = (self.self_attn.forward(&h, &h, Some(mask))? + x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }
}

pub struct T2uEncoder {
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
}

impl T2uEncoder {
    /// Weights `layers.{i}.*` and `layer_norm.*` under `vb` (`synthesizer_encoder.` upstream).
    pub fn new(cfg: &T2uConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.encoder_layers).map(|i| EncoderLayer::new(cfg, vb.pp(format!("layers.{i}")))).collect::<Result<_>>()?;
        Ok(T2uEncoder { layers, norm: candle_nn::layer_norm(cfg.embed_dim, 1e-5, vb.pp("layer_norm"))? })
    }

    /// MT decoder states `[1, n, d]` → `[1, n, d]`, each state seeing only those before it.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_masked(x, &vec![false; x.dim(1)?])
    }

    /// [`forward`](Self::forward) with the states of pad tokens (`pads`) masked as keys, as
    /// upstream passes the MT decoder's padding mask.
    pub fn forward_masked(&self, x: &Tensor, pads: &[bool]) -> Result<Tensor> {
        let mask = causal_mask_with_pads(pads, x.device())?;
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        self.norm.forward(&x)
    }
}

pub struct UnitDecoder {
    cfg: T2uConfig,
    position: Tensor,
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
    output: Linear,
}

impl UnitDecoder {
    /// Weights `layers.{i}.*`, `layer_norm.*`, `output_projection.weight` under `vb` (`decoder.`
    /// upstream; the projection is tied to `embed_tokens.weight`).
    pub fn new(cfg: &T2uConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embed_dim;
        let layers = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(d, cfg.ffn_embed_dim, cfg.attention_heads, d, false, vb.pp(format!("layers.{i}"))))
            .collect::<Result<_>>()?;
        let position = sinusoidal_table(cfg.padding_idx + 2, d, cfg.padding_idx, vb.device())?.get(cfg.padding_idx + 1)?;
        Ok(UnitDecoder {
            cfg: cfg.clone(),
            position,
            layers,
            norm: candle_nn::layer_norm(d, 1e-5, vb.pp("layer_norm"))?,
            output: Linear::new(vb.pp("output_projection").get((cfg.vocab, d), "weight")?, None, false)?,
        })
    }

    /// T2U states `[1, n, d]` → unit logits `[1, n · ctc_upsample_rate, vocab]`.
    pub fn forward(&self, states: &Tensor) -> Result<Tensor> {
        self.forward_masked(states, &vec![false; states.dim(1)?])
    }

    /// [`forward`](Self::forward) with the states of pad tokens (`pads`) masked: as keys of the
    /// cross-attention, and their upsampled frames as keys of the self-attention. Their frames
    /// are still decoded (upstream emits units from them too).
    pub fn forward_masked(&self, states: &Tensor, pads: &[bool]) -> Result<Tensor> {
        let r = self.cfg.ctc_upsample_rate;
        let cross = if pads.iter().any(|&p| p) { Some(key_padding_mask(pads, states.device())?) } else { None };
        // Every frame of a token enters the first layer with the same row (the token's state plus
        // the one position), so its self-attention runs per token.
        let x = states.broadcast_add(&self.position)?;
        let Some((first, rest)) = self.layers.split_first() else {
            let (b, n, d) = x.dims3()?;
            return self.output.forward(&self.norm.forward(&x.unsqueeze(2)?.broadcast_as((b, n, r, d))?.reshape((b, n * r, d))?)?);
        };
        let mut x = first.forward_repeated(&x, r, pads, states, cross.as_ref())?;
        if !rest.is_empty() {
            let frame_pads: Vec<bool> = pads.iter().flat_map(|&p| std::iter::repeat_n(p, r)).collect();
            let mask = causal_mask_with_pads(&frame_pads, states.device())?;
            for layer in rest {
                x = layer.forward_masked(&x, states, &mask, cross.as_ref())?;
            }
        }
        self.output.forward(&self.norm.forward(&x)?)
    }

    /// [`forward_masked`](Self::forward_masked) computed directly over every frame, the first
    /// layer included: the reference its per-token first layer is checked against.
    pub fn forward_masked_frames(&self, states: &Tensor, pads: &[bool]) -> Result<Tensor> {
        let (b, n, d) = states.dims3()?;
        let r = self.cfg.ctc_upsample_rate;
        let x = states.unsqueeze(2)?.broadcast_as((b, n, r, d))?.reshape((b, n * r, d))?;
        let mut x = x.broadcast_add(&self.position)?;
        let frame_pads: Vec<bool> = pads.iter().flat_map(|&p| std::iter::repeat_n(p, r)).collect();
        let mask = causal_mask_with_pads(&frame_pads, states.device())?;
        let cross = if pads.iter().any(|&p| p) { Some(key_padding_mask(pads, states.device())?) } else { None };
        for layer in &self.layers {
            x = layer.forward_masked(&x, states, &mask, cross.as_ref())?;
        }
        self.output.forward(&self.norm.forward(&x)?)
    }
}
