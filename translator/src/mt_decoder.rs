//! StreamSpeech's first-pass MT decoder (researches/ctc_unity/modules/transformer_decoder.py, a
//! fairseq `TransformerDecoder` built by `multitask_text_transformer_decoder_arch`): token
//! embeddings × √d plus fairseq's sinusoidal positions, pre-LN layers (causal self-attention,
//! cross-attention to the speech encoder whose width may differ, ReLU FFN), final LayerNorm, and
//! the output projection tied to the embeddings. Greedy decoding from EOS until EOS.

use candle_core::{Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::linear::Linear;

#[derive(Debug, Clone, PartialEq)]
pub struct MtDecoderConfig {
    pub vocab: usize,
    pub embed_dim: usize,
    pub ffn_embed_dim: usize,
    pub attention_heads: usize,
    pub layers: usize,
    /// The speech encoder's width (the cross-attention's key/value input).
    pub encoder_dim: usize,
    pub padding_idx: usize,
    pub eos: u32,
    pub max_positions: usize,
}

/// fairseq's `MultiheadAttention` (separate q/k/v/out projections with bias, q scaled by
/// head_dim^−½ before the product).
pub(crate) struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    pub(crate) fn new(d: usize, kdim: usize, heads: usize, pack: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Attention {
            q: crate::linear::linear(d, d, pack, vb.pp("q_proj"))?,
            k: crate::linear::linear(kdim, d, pack, vb.pp("k_proj"))?,
            v: crate::linear::linear(kdim, d, pack, vb.pp("v_proj"))?,
            out: crate::linear::linear(d, d, pack, vb.pp("out_proj"))?,
            heads,
            head_dim: d / heads,
        })
    }

    /// query `[1, t, d]`, keys/values from `kv` `[1, s, kdim]`; `mask` `[t, s]` added.
    pub(crate) fn forward(&self, query: &Tensor, kv: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (k, v) = self.keys_values(kv)?;
        self.attend(query, &k, &v, mask)
    }

    /// Keys and values of `kv` `[1, s, kdim]`, split into heads: `[1, heads, s, head_dim]` each.
    pub(crate) fn keys_values(&self, kv: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, s, _) = kv.dims3()?;
        let heads = |x: Tensor| x.reshape((b, s, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous();
        Ok((heads(self.k.forward(kv)?)?, heads(self.v.forward(kv)?)?))
    }

    /// query `[1, t, d]` against keys/values already split into heads.
    pub(crate) fn attend(&self, query: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, d) = query.dims3()?;
        let q = (self.q.forward(query)? * (self.head_dim as f64).powf(-0.5))?.reshape((b, t, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let y = candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}

impl Attention {
    /// Self-attention over frames that repeat each of `n` tokens `r` times (the unit decoder's
    /// first layer: every frame of a token has the same input), causal over frames, with the
    /// frames of `pads` tokens masked as keys. `x` `[1, n, d]` holds one row per token; returns
    /// `[1, n·r, d]`, one row per frame.
    ///
    /// Equal to attending over the `n·r` frames (up to float summation order): a frame's query,
    /// and each token's key and value, are the token's, so frame f of token j sees token i < j
    /// r times and its own token f + 1 times. Its softmax over frames is a softmax over tokens
    /// with those multiplicities: Σ_{i<j} r·e_ji·v_i + (f+1)·e_jj·v_j over Σ_{i<j} r·e_ji +
    /// (f+1)·e_jj, with e = exp(score − the row's maximum). Projections and scores cost one
    /// token instead of r frames, the scores n² instead of (n·r)².
    pub(crate) fn attend_repeated(&self, x: &Tensor, r: usize, pads: &[bool]) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let dev = x.device();
        let (k, v) = self.keys_values(x)?;
        let q = (self.q.forward(x)? * (self.head_dim as f64).powf(-0.5))?.reshape((b, n, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(&causal_mask_with_pads(pads, dev)?)?;
        let e = scores.broadcast_sub(&scores.max_keepdim(3)?)?.exp()?;
        // Earlier tokens' weight r each; a token's own weight (f + 1) per frame, kept apart.
        let mut earlier = vec![0f32; n * n];
        let mut own = vec![0f32; n * n];
        for j in 0..n {
            for i in 0..j {
                earlier[j * n + i] = r as f32;
            }
            own[j * n + j] = 1.0;
        }
        let earlier = e.broadcast_mul(&Tensor::from_vec(earlier, (n, n), dev)?)?;
        let own = e.broadcast_mul(&Tensor::from_vec(own, (n, n), dev)?)?.sum_keepdim(3)?; // [b, h, n, 1]
        let num = earlier.matmul(&v)?.unsqueeze(3)?; // [b, h, n, 1, hd]
        let den = earlier.sum_keepdim(3)?.unsqueeze(3)?; // [b, h, n, 1, 1]
        let frames = Tensor::from_vec((1..=r).map(|f| f as f32).collect::<Vec<_>>(), (1, 1, 1, r, 1), dev)?;
        let own_frames = own.unsqueeze(3)?.broadcast_mul(&frames)?; // [b, h, n, r, 1]
        let num = num.broadcast_add(&own_frames.broadcast_mul(&v.unsqueeze(3)?)?)?; // [b, h, n, r, hd]
        let den = den.broadcast_add(&own_frames)?;
        let y = num.broadcast_div(&den)?.permute((0, 2, 3, 1, 4))?.reshape((b, n * r, d))?;
        self.out.forward(&y)
    }
}

/// One decoder layer's cached keys and values for incremental decoding: self-attention's grow
/// by one position per step; cross-attention's are the encoder output's, projected once.
pub(crate) struct LayerCache {
    self_kv: Option<(Tensor, Tensor)>,
    cross_kv: (Tensor, Tensor),
}

/// The cross-attention keys and values of every decoder layer over one encoder output: `[1,
/// heads, frames, head_dim]` each, per layer.
#[derive(Clone)]
pub struct CrossKeysValues(Vec<(Tensor, Tensor)>);

/// Cross-attention keys and values kept across calls for an encoder output that only grows at
/// its end and whose first frames never change (the incremental encoder's final frames): those
/// frames are projected once.
#[derive(Default)]
pub struct CrossCache {
    /// Per layer, the keys and values of the first `frames` encoder frames.
    kept: Vec<(Tensor, Tensor)>,
    frames: usize,
}

impl CrossCache {
    /// Encoder frames whose keys and values are kept.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

/// fairseq's pre-LN `TransformerDecoderLayer` (also the unit decoder's).
pub(crate) struct DecoderLayer {
    self_attn: Attention,
    self_attn_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_norm: LayerNorm,
}

impl DecoderLayer {
    pub(crate) fn new(d: usize, ffn: usize, heads: usize, encoder_dim: usize, pack: bool, vb: VarBuilder) -> Result<Self> {
        Ok(DecoderLayer {
            self_attn: Attention::new(d, d, heads, pack, vb.pp("self_attn"))?,
            self_attn_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
            encoder_attn: Attention::new(d, encoder_dim, heads, pack, vb.pp("encoder_attn"))?,
            encoder_attn_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("encoder_attn_layer_norm"))?,
            fc1: crate::linear::linear(d, ffn, pack, vb.pp("fc1"))?,
            fc2: crate::linear::linear(ffn, d, pack, vb.pp("fc2"))?,
            final_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
        })
    }

    /// [`forward`](Self::forward) with `enc_mask` `[1, s]` added to the cross-attention scores.
    pub(crate) fn forward_masked(&self, x: &Tensor, enc: &Tensor, causal: &Tensor, enc_mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.self_attn_norm.forward(x)?;
        let x = (self.self_attn.forward(&h, &h, Some(causal))? + x)?;
        let h = self.encoder_attn_norm.forward(&x)?;
        let x = (self.encoder_attn.forward(&h, enc, enc_mask)? + &x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }

    /// [`forward_masked`](Self::forward_masked) over frames that repeat each token's row of `x`
    /// `[1, n, d]` `r` times (see [`Attention::attend_repeated`]); `pads` per token. Returns
    /// `[1, n·r, d]`.
    pub(crate) fn forward_repeated(&self, x: &Tensor, r: usize, pads: &[bool], enc: &Tensor, enc_mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let h = self.self_attn_norm.forward(x)?;
        let frames = x.unsqueeze(2)?.broadcast_as((b, n, r, d))?.reshape((b, n * r, d))?;
        let x = (self.self_attn.attend_repeated(&h, r, pads)? + frames)?;
        let h = self.encoder_attn_norm.forward(&x)?;
        let x = (self.encoder_attn.forward(&h, enc, enc_mask)? + &x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }

    /// As [`forward`](Self::forward) with the cross-attention's keys and values given.
    fn forward_cross(&self, x: &Tensor, cross: &(Tensor, Tensor), causal: &Tensor) -> Result<Tensor> {
        let h = self.self_attn_norm.forward(x)?;
        let x = (self.self_attn.forward(&h, &h, Some(causal))? + x)?;
        let h = self.encoder_attn_norm.forward(&x)?;
        let x = (self.encoder_attn.attend(&h, &cross.0, &cross.1, None)? + &x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }

    /// Every position of `x` `[1, n, d]` at once (causal), filling the self-attention cache with
    /// their keys and values, as n [`step`](Self::step)s would.
    pub(crate) fn prefill(&self, x: &Tensor, causal: &Tensor, cache: &mut LayerCache) -> Result<Tensor> {
        let h = self.self_attn_norm.forward(x)?;
        let (k, v) = self.self_attn.keys_values(&h)?;
        let x = (self.self_attn.attend(&h, &k, &v, Some(causal))? + x)?;
        cache.self_kv = Some((k, v));
        let h = self.encoder_attn_norm.forward(&x)?;
        let x = (self.encoder_attn.attend(&h, &cache.cross_kv.0, &cache.cross_kv.1, None)? + &x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }

    /// The newest position only, `x` `[1, 1, d]`: it attends to every earlier position (the
    /// cache) and itself, which is what the causal mask lets the last row see.
    pub(crate) fn step(&self, x: &Tensor, cache: &mut LayerCache) -> Result<Tensor> {
        let h = self.self_attn_norm.forward(x)?;
        let (k, v) = self.self_attn.keys_values(&h)?;
        let (k, v) = match cache.self_kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        let x = (self.self_attn.attend(&h, &k, &v, None)? + x)?;
        cache.self_kv = Some((k, v));
        let h = self.encoder_attn_norm.forward(&x)?;
        let x = (self.encoder_attn.attend(&h, &cache.cross_kv.0, &cache.cross_kv.1, None)? + &x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }

    /// A position whose own key nobody sees (a pad, fairseq's key padding mask), `x` `[1, 1,
    /// d]`: it attends to the first `visible` cached positions only and leaves the cache as it
    /// is.
    pub(crate) fn step_unseen(&self, x: &Tensor, cache: &LayerCache, visible: usize) -> Result<Tensor> {
        let Some((k, v)) = &cache.self_kv else {
            candle_core::bail!("a pad position needs earlier positions to attend to");
        };
        let h = self.self_attn_norm.forward(x)?;
        let (k, v) = (k.narrow(2, 0, visible)?, v.narrow(2, 0, visible)?);
        let x = (self.self_attn.attend(&h, &k, &v, None)? + x)?;
        let h = self.encoder_attn_norm.forward(&x)?;
        let x = (self.encoder_attn.attend(&h, &cache.cross_kv.0, &cache.cross_kv.1, None)? + &x)?;
        let h = self.fc1.forward(&self.final_norm.forward(&x)?)?.relu()?;
        self.fc2.forward(&h)? + &x
    }
}

/// A greedy decoding's tokens with what it computed on the way: every fed position's
/// final-layer states (before the LayerNorm) and the self-attention caches, so that the states
/// of the same sequence (or of a prefix of it, padded) need no second pass through the layers.
pub struct GreedyRun {
    /// The decoded tokens after the forced prefix, prefix included, without EOS.
    pub tokens: Vec<u32>,
    /// `[1, k, d]` pieces, in order: the states of positions 0 (EOS) … `positions − 1`.
    hidden: Vec<Tensor>,
    /// Positions fed through the layers (EOS first); 0 when nothing was decoded.
    positions: usize,
    caches: Vec<LayerCache>,
}

pub struct MtDecoder {
    cfg: MtDecoderConfig,
    embed: Embedding,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
    output: Linear,
}

/// fairseq's `SinusoidalPositionalEmbedding` table: `[n, d]`, sin in the first half of the
/// channels and cos in the second, row `padding_idx` zero; computed in f32 step by step as torch
/// does.
pub fn sinusoidal_table(n: usize, d: usize, padding_idx: usize, device: &Device) -> Result<Tensor> {
    let half = d / 2;
    let step = (10000f64.ln() / (half as f64 - 1.0)) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut t = vec![0f32; n * d];
    for p in 0..n {
        if p == padding_idx {
            continue;
        }
        for (i, f) in freqs.iter().enumerate() {
            let a = p as f32 * f;
            t[p * d + i] = a.sin();
            t[p * d + half + i] = a.cos();
        }
    }
    Tensor::from_vec(t, (n, d), device)
}

impl MtDecoder {
    /// Weights `embed_tokens.weight`, `layers.{i}.*`, `layer_norm.*`, `output_projection.weight`
    /// (tied: equal to the embeddings in a real checkpoint) under `vb`.
    pub fn new(cfg: &MtDecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embed_dim;
        let embed = candle_nn::embedding(cfg.vocab, d, vb.pp("embed_tokens"))?;
        let output = Linear::new(vb.pp("output_projection").get((cfg.vocab, d), "weight")?, None, true)?;
        let layers = (0..cfg.layers)
            .map(|i| DecoderLayer::new(d, cfg.ffn_embed_dim, cfg.attention_heads, cfg.encoder_dim, true, vb.pp(format!("layers.{i}"))))
            .collect::<Result<_>>()?;
        // fairseq sizes the table init_size = max_positions + padding_idx + 1.
        let positions = sinusoidal_table(cfg.max_positions + cfg.padding_idx + 1, d, cfg.padding_idx, vb.device())?;
        Ok(MtDecoder { cfg: cfg.clone(), embed, positions, layers, norm: candle_nn::layer_norm(d, 1e-5, vb.pp("layer_norm"))?, output })
    }

    /// Logits `[1, len, vocab]` for `tokens` (the previous outputs, starting with EOS) against the
    /// encoder output `enc` `[1, s, encoder_dim]`.
    pub fn forward(&self, tokens: &[u32], enc: &Tensor) -> Result<Tensor> {
        self.output.forward(&self.states(tokens, enc)?)
    }

    /// The cross-attention keys and values of every layer over `enc` `[1, s, encoder_dim]`.
    pub fn cross_keys_values(&self, enc: &Tensor) -> Result<CrossKeysValues> {
        Ok(CrossKeysValues(self.layers.iter().map(|l| l.encoder_attn.keys_values(enc)).collect::<Result<_>>()?))
    }

    /// [`cross_keys_values`](Self::cross_keys_values) of `enc`, projecting only the frames after
    /// those `cache` keeps; then keeps the first `final_frames` (frames that later calls give
    /// unchanged). `enc` must begin with the frames the cache was filled from.
    pub fn cross_keys_values_cached(&self, enc: &Tensor, cache: &mut CrossCache, final_frames: usize) -> Result<CrossKeysValues> {
        let total = enc.dim(1)?;
        if cache.frames > total || final_frames > total {
            candle_core::bail!("the encoder output ({total} frames) is shorter than the cached cross-attention frames ({} kept, {final_frames} final)", cache.frames);
        }
        let fresh = enc.narrow(1, cache.frames, total - cache.frames)?;
        let mut all = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let (k, v) = layer.encoder_attn.keys_values(&fresh)?;
            let (k, v) = match cache.kept.get(i) {
                Some((pk, pv)) if cache.frames > 0 => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                _ => (k, v),
            };
            all.push((k, v));
        }
        if final_frames > cache.frames {
            cache.kept = all.iter().map(|(k, v)| Ok((k.narrow(2, 0, final_frames)?.contiguous()?, v.narrow(2, 0, final_frames)?.contiguous()?))).collect::<Result<_>>()?;
            cache.frames = final_frames;
        }
        Ok(CrossKeysValues(all))
    }

    /// The final-layer states `[1, 1, d]` (before the LayerNorm) and the logits `[vocab]` of the
    /// token at `position` (0-based) given the earlier ones in `caches`.
    fn step(&self, token: u32, position: usize, caches: &mut [LayerCache]) -> Result<(Tensor, Tensor)> {
        let dev = self.positions.device();
        let id = Tensor::new(&[token], dev)?.unsqueeze(0)?;
        let pos = self.positions.narrow(0, self.cfg.padding_idx + 1 + position, 1)?.unsqueeze(0)?;
        let mut x = ((self.embed.forward(&id)? * (self.cfg.embed_dim as f64).sqrt())? + pos)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            x = layer.step(&x, cache)?;
        }
        let logits = self.output.forward(&self.norm.forward(&x)?)?.i((0, 0))?;
        Ok((x, logits))
    }

    /// The final states after the decoder's LayerNorm, `[1, len, d]`: what the T2U encoder
    /// reads (upstream: `inner_states[-1]` through `layer_norm`).
    pub fn states(&self, tokens: &[u32], enc: &Tensor) -> Result<Tensor> {
        self.states_with(tokens, &self.cross_keys_values(enc)?)
    }

    /// [`states`](Self::states) with the encoder output's cross-attention keys and values given.
    pub fn states_with(&self, tokens: &[u32], cross: &CrossKeysValues) -> Result<Tensor> {
        let dev = cross.0[0].0.device();
        let pad = self.cfg.padding_idx as u32;
        let ids = Tensor::new(tokens, dev)?.unsqueeze(0)?;
        // fairseq's make_positions: the k-th non-pad token has position padding_idx + k; a pad
        // token position padding_idx, the table's zero row.
        let mut seen = 0;
        let rows: Vec<u32> = tokens
            .iter()
            .map(|&t| {
                if t == pad {
                    pad
                } else {
                    seen += 1;
                    pad + seen
                }
            })
            .collect();
        let pos = self.positions.index_select(&Tensor::new(rows, dev)?, 0)?.unsqueeze(0)?;
        let mut x = ((self.embed.forward(&ids)? * (self.cfg.embed_dim as f64).sqrt())? + pos)?;
        // Pad tokens are masked as keys (fairseq's self-attention padding mask).
        let pads: Vec<bool> = tokens.iter().map(|&t| t == pad).collect();
        let causal = causal_mask_with_pads(&pads, dev)?;
        for (layer, kv) in self.layers.iter().zip(&cross.0) {
            x = layer.forward_cross(&x, kv, &causal)?;
        }
        self.norm.forward(&x)
    }

    /// Greedy decoding: from EOS, the arg-max token each step, until EOS (barred before
    /// `min_len` tokens) or `max_len` tokens. Returns the tokens without EOS.
    pub fn greedy(&self, enc: &Tensor, min_len: usize, max_len: usize) -> Result<Vec<u32>> {
        self.greedy_from(&[], enc, min_len, max_len)
    }

    /// Greedy decoding after a forced `prefix`, as fairseq's `SequenceGenerator` with beam 1
    /// runs it (StreamSpeech's agent passes the committed tokens this way): steps `prefix.len()`
    /// … `max_len`, the arg-max of each with pad never chosen, EOS barred while the step is below
    /// `min_len` and forced at step `max_len`. Returns prefix + new tokens, without EOS. A prefix
    /// longer than `max_len` gets no new tokens (upstream's generator returns nothing then).
    ///
    /// Incremental: each step runs only the newest position against cached keys/values (the
    /// encoder's projected once, the prefix's in one pass), so a step costs one token, not the
    /// whole prefix; the logits equal [`forward`](Self::forward)'s last row.
    pub fn greedy_from(&self, prefix: &[u32], enc: &Tensor, min_len: usize, max_len: usize) -> Result<Vec<u32>> {
        self.greedy_with(prefix, &self.cross_keys_values(enc)?, min_len, max_len)
    }

    /// [`greedy_from`](Self::greedy_from) with the encoder output's cross-attention keys and
    /// values given.
    pub fn greedy_with(&self, prefix: &[u32], cross: &CrossKeysValues, min_len: usize, max_len: usize) -> Result<Vec<u32>> {
        Ok(self.greedy_run(prefix, cross, min_len, max_len)?.tokens)
    }

    /// [`greedy_with`](Self::greedy_with), keeping the states and caches it computed for
    /// [`states_from_run`](Self::states_from_run).
    pub fn greedy_run(&self, prefix: &[u32], cross: &CrossKeysValues, min_len: usize, max_len: usize) -> Result<GreedyRun> {
        let mut tokens = vec![self.cfg.eos];
        tokens.extend_from_slice(prefix);
        if prefix.len() >= max_len {
            return Ok(GreedyRun { tokens: prefix.to_vec(), hidden: Vec::new(), positions: 0, caches: Vec::new() });
        }
        let mut caches: Vec<LayerCache> = cross.0.iter().map(|kv| LayerCache { self_kv: None, cross_kv: kv.clone() }).collect();
        let (x, mut logits) = self.prefill(&tokens, &mut caches)?;
        let mut hidden = vec![x];
        let (pad, eos) = (self.cfg.padding_idx, self.cfg.eos as usize);
        loop {
            let step = tokens.len() - 1;
            let mut v = logits.to_vec1::<f32>()?;
            v[pad] = f32::NEG_INFINITY;
            if step >= max_len {
                break;
            }
            if step < min_len {
                v[eos] = f32::NEG_INFINITY;
            }
            // NaN never wins (fairseq sets NaN log-probabilities to −∞); ties go to the lowest id.
            let next = v.iter().enumerate().fold((eos, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u32;
            if next == self.cfg.eos {
                break;
            }
            tokens.push(next);
            let (x, next_logits) = self.step(next, tokens.len() - 1, &mut caches)?;
            hidden.push(x);
            logits = next_logits;
        }
        let positions = tokens.len();
        Ok(GreedyRun { tokens: tokens[1..].to_vec(), hidden, positions, caches })
    }

    /// [`states_with`](Self::states_with) of `tokens` from what `run` (decoded against the same
    /// cross-attention keys and values) already computed, or `None` when `tokens` is not EOS,
    /// then a prefix of the run's tokens, then only pads. The causal mask makes each kept
    /// position's states the run's; every pad sees the kept positions only (its own key and the
    /// other pads' are masked), so the pads' states are one pass of one position, repeated.
    pub fn states_from_run(&self, tokens: &[u32], run: &GreedyRun) -> Result<Option<Tensor>> {
        let pad = self.cfg.padding_idx as u32;
        let kept = tokens.iter().take_while(|&&t| t != pad).count();
        let pads = tokens.len() - kept;
        if kept == 0 || kept > run.positions || tokens[0] != self.cfg.eos || tokens[1..kept] != run.tokens[..kept - 1] {
            return Ok(None);
        }
        let hidden = Tensor::cat(&run.hidden, 1)?.narrow(1, 0, kept)?;
        let x = if pads == 0 {
            hidden
        } else {
            let dev = hidden.device();
            let id = Tensor::new(&[pad], dev)?.unsqueeze(0)?;
            // A pad's position is padding_idx: the table's zero row.
            let pos = self.positions.narrow(0, self.cfg.padding_idx, 1)?.unsqueeze(0)?;
            let mut x = ((self.embed.forward(&id)? * (self.cfg.embed_dim as f64).sqrt())? + pos)?;
            for (layer, cache) in self.layers.iter().zip(&run.caches) {
                x = layer.step_unseen(&x, cache, kept)?;
            }
            Tensor::cat(&[&hidden, &x.repeat((1, pads, 1))?], 1)?
        };
        Ok(Some(self.norm.forward(&x)?))
    }

    /// Runs `tokens` (from EOS, no pads) through the layers in one causal pass, filling
    /// `caches`: every position's final-layer states `[1, n, d]` (before the LayerNorm) and the
    /// last position's logits.
    fn prefill(&self, tokens: &[u32], caches: &mut [LayerCache]) -> Result<(Tensor, Tensor)> {
        let dev = self.positions.device();
        let n = tokens.len();
        let ids = Tensor::new(tokens, dev)?.unsqueeze(0)?;
        let pos = self.positions.narrow(0, self.cfg.padding_idx + 1, n)?.unsqueeze(0)?;
        let mut x = ((self.embed.forward(&ids)? * (self.cfg.embed_dim as f64).sqrt())? + pos)?;
        let causal = causal_mask_with_pads(&vec![false; n], dev)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            x = layer.prefill(&x, &causal, cache)?;
        }
        let logits = self.output.forward(&self.norm.forward(&x.narrow(1, n - 1, 1)?)?)?.i((0, 0))?;
        Ok((x, logits))
    }
}

/// `[n, n]`: 0 on and below the diagonal, −∞ above (keys after the query are not seen), and
/// −∞ in the columns of pad positions (keys nobody sees).
pub(crate) fn causal_mask_with_pads(pads: &[bool], device: &Device) -> Result<Tensor> {
    let n = pads.len();
    let mut m = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if j > i || pads[j] {
                m[i * n + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (n, n), device)
}

/// `[1, n]`: −∞ for pad positions, added to every query's scores (a key padding mask).
pub(crate) fn key_padding_mask(pads: &[bool], device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = pads.iter().map(|&p| if p { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(m, (1, pads.len()), device)
}

