//! StreamSpeech's chunk conformer encoder layer (researches/chunk_unity/modules/
//! conformer_layer.py with uni_unity's ESPnet relative-position attention) and fairseq's
//! `RelPositionalEncoding`.
//!
//! Layer: ½·FFN (macaron) → relative-position MHSA (`pos_bias_u/v`, Transformer-XL rel-shift,
//! chunk mask) → convolution module (pointwise → GLU → chunk-causal depthwise conv → BatchNorm
//! (eval) → swish → pointwise) → ½·FFN → LayerNorm, each with its residual.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, VarBuilder};

use crate::linear::Linear;

use crate::subsampler::ChunkCausalConv1d;

#[derive(Debug, Clone, PartialEq)]
pub struct ConformerConfig {
    pub embed_dim: usize,
    pub ffn_embed_dim: usize,
    pub attention_heads: usize,
    pub depthwise_conv_kernel_size: usize,
    /// Encoder frames per attention chunk (and the depthwise conv's chunk); None: full context.
    pub chunk_size: Option<usize>,
}

struct FeedForward {
    norm: LayerNorm,
    w1: Linear,
    w2: Linear,
}

impl FeedForward {
    fn new(cfg: &ConformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(FeedForward {
            norm: candle_nn::layer_norm(cfg.embed_dim, 1e-5, vb.pp("layer_norm"))?,
            w1: crate::linear::linear(cfg.embed_dim, cfg.ffn_embed_dim, true, vb.pp("w_1"))?,
            w2: crate::linear::linear(cfg.ffn_embed_dim, cfg.embed_dim, true, vb.pp("w_2"))?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.w2.forward(&self.w1.forward(&self.norm.forward(x)?)?.silu()?)
    }
}

struct RelPositionAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    pos: Linear,
    bias_u: Tensor,
    bias_v: Tensor,
    heads: usize,
    d_k: usize,
}

impl RelPositionAttention {
    fn new(cfg: &ConformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embed_dim;
        let (h, d_k) = (cfg.attention_heads, d / cfg.attention_heads);
        Ok(RelPositionAttention {
            q: crate::linear::linear(d, d, true, vb.pp("linear_q"))?,
            k: crate::linear::linear(d, d, true, vb.pp("linear_k"))?,
            v: crate::linear::linear(d, d, true, vb.pp("linear_v"))?,
            out: crate::linear::linear(d, d, true, vb.pp("linear_out"))?,
            pos: crate::linear::linear_no_bias(d, d, true, vb.pp("linear_pos"))?,
            bias_u: vb.get((h, d_k), "pos_bias_u")?,
            bias_v: vb.get((h, d_k), "pos_bias_v")?,
            heads: h,
            d_k,
        })
    }

    /// x `[b, t, d]`, pos_emb `[1, 2t−1, d]`, mask `[t, t]` (0 or −∞) added to the scores.
    fn forward(&self, x: &Tensor, pos_emb: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let split = |y: Tensor| y.reshape((b, t, self.heads, self.d_k));
        let q = split(self.q.forward(x)?)?;
        let k = split(self.k.forward(x)?)?.transpose(1, 2)?.contiguous()?;
        let v = split(self.v.forward(x)?)?.transpose(1, 2)?.contiguous()?;
        let p = self.pos.forward(pos_emb)?.reshape((1, 2 * t - 1, self.heads, self.d_k))?.transpose(1, 2)?.contiguous()?;
        let q_u = q.broadcast_add(&self.bias_u)?.transpose(1, 2)?.contiguous()?;
        let q_v = q.broadcast_add(&self.bias_v)?.transpose(1, 2)?.contiguous()?;
        let ac = q_u.matmul(&k.t()?)?;
        let bd = rel_shift(&q_v.broadcast_matmul(&p.t()?)?)?;
        let mut scores = ((ac + bd)? / (self.d_k as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}

impl RelPositionAttention {
    /// [`forward`](Self::forward) for the queries of frames `offset..offset + n` (x `[1, n, d]`)
    /// against the cached keys and values of frames `..offset` and those of x; `mask` `[n, T]`
    /// (T = offset + n). The first `keep` frames of x become part of the cache.
    fn forward_cached(&self, x: &Tensor, offset: usize, mask: Option<&Tensor>, cache: &mut LayerCache, keep: usize) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let total = offset + n;
        let split = |y: Tensor| y.reshape((b, n, self.heads, self.d_k));
        let q = split(self.q.forward(x)?)?;
        let k_new = split(self.k.forward(x)?)?.transpose(1, 2)?.contiguous()?;
        let v_new = split(self.v.forward(x)?)?.transpose(1, 2)?.contiguous()?;
        let (k, v) = match (&cache.keys, &cache.values) {
            (Some(k), Some(v)) => (Tensor::cat(&[k, &k_new], 2)?, Tensor::cat(&[v, &v_new], 2)?),
            _ => (k_new.clone(), v_new.clone()),
        };
        // The projected positions depend on the relative distance only: kept for distances
        // up to `reach − 1`, grown when the sequence outgrows them.
        if cache.reach < total {
            let reach = total.max(2 * cache.reach).max(64);
            let table = rel_positions(reach, d, x.device())?;
            cache.positions = Some(self.pos.forward(&table)?.reshape((1, 2 * reach - 1, self.heads, self.d_k))?.transpose(1, 2)?.contiguous()?);
            cache.reach = reach;
        }
        let positions = cache.positions.as_ref().expect("set above");
        // Distances total−1 … −(n−1) (query offset+i, key j: offset + i − j).
        let p = positions.narrow(2, cache.reach - total, total + n - 1)?;
        let q_u = q.broadcast_add(&self.bias_u)?.transpose(1, 2)?.contiguous()?;
        let q_v = q.broadcast_add(&self.bias_v)?.transpose(1, 2)?.contiguous()?;
        let ac = q_u.matmul(&k.t()?)?;
        let bd = rel_shift(&q_v.broadcast_matmul(&p.t()?)?)?;
        let mut scores = ((ac + bd)? / (self.d_k as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        if keep > 0 {
            let (k_keep, v_keep) = (k.narrow(2, 0, offset + keep)?, v.narrow(2, 0, offset + keep)?);
            cache.keys = Some(k_keep.contiguous()?);
            cache.values = Some(v_keep.contiguous()?);
        }
        self.out.forward(&y)
    }
}

/// What a conformer layer keeps of a growing sequence's final frames (those no later input can
/// change) between incremental calls.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Attention keys and values of the final frames, `[1, heads, final, d_k]`.
    keys: Option<Tensor>,
    values: Option<Tensor>,
    /// The depthwise convolution's input over the last final frames (its left context).
    conv_context: Option<Tensor>,
    /// `linear_pos` of the relative positions reach−1 … −(reach−1), `[1, heads, 2·reach−1, d_k]`.
    positions: Option<Tensor>,
    reach: usize,
}

/// Transformer-XL's shift, as ESPnet writes it: `[b, h, t, 2t−1]` scores against positions
/// t−1 … −(t−1) become `[b, h, t, t]` scores against keys (out[i][j] = in[i][t−1−i+j]). For the
/// last t of T queries, `[b, h, t, T+t−1]` against positions T−1 … −(t−1) become `[b, h, t, T]`.
fn rel_shift(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, n) = x.dims4()?;
    let padded = Tensor::cat(&[Tensor::zeros((b, h, t, 1), x.dtype(), x.device())?, x.clone()], 3)?;
    padded.reshape((b, h, n + 1, t))?.narrow(2, 1, n)?.contiguous()?.reshape((b, h, t, n))?.narrow(3, 0, n + 1 - t)
}

struct ConvModule {
    norm: LayerNorm,
    pointwise1: Conv1d,
    depthwise: ChunkCausalConv1d,
    bn_scale: Tensor,
    bn_shift: Tensor,
    pointwise2: Conv1d,
}

impl ConvModule {
    fn new(cfg: &ConformerConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.embed_dim;
        let k = cfg.depthwise_conv_kernel_size;
        let plain = Conv1dConfig { padding: 0, stride: 1, dilation: 1, groups: 1, cudnn_fwd_algo: None };
        let pointwise1 = Conv1d::new(vb.pp("pointwise_conv1").get((2 * c, c, 1), "weight")?, None, plain);
        let pointwise2 = Conv1d::new(vb.pp("pointwise_conv2").get((c, c, 1), "weight")?, None, plain);
        let dw = Conv1d::new(vb.pp("depthwise_conv").get((c, 1, k), "weight")?, None, Conv1dConfig { groups: c, ..plain });
        // BatchNorm in eval: (x − mean) / √(var + 1e−5) · γ + β, folded into one scale and shift.
        let bn = vb.pp("batch_norm");
        let (gamma, beta) = (bn.get(c, "weight")?, bn.get(c, "bias")?);
        let (mean, var) = (bn.get(c, "running_mean")?, bn.get(c, "running_var")?);
        let scale = (gamma / (var + 1e-5)?.sqrt()?)?;
        let shift = (beta - (mean * &scale)?)?;
        Ok(ConvModule {
            norm: candle_nn::layer_norm(c, 1e-5, vb.pp("layer_norm"))?,
            pointwise1,
            depthwise: ChunkCausalConv1d { conv: dw, kernel: k, stride: 1, chunk: cfg.chunk_size },
            bn_scale: scale.reshape((1, c, 1))?,
            bn_shift: shift.reshape((1, c, 1))?,
            pointwise2,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.norm.forward(x)?.transpose(1, 2)?.contiguous()?;
        let y = crate::subsampler::glu(&self.pointwise1.forward(&y)?)?;
        let y = self.depthwise.forward(&y)?.broadcast_mul(&self.bn_scale)?.broadcast_add(&self.bn_shift)?.silu()?;
        self.pointwise2.forward(&y)?.transpose(1, 2)?.contiguous()
    }

    /// [`forward`](Self::forward) for frames after the cached ones (the first `keep` become
    /// cached context).
    fn forward_cached(&self, x: &Tensor, cache: &mut LayerCache, keep: usize) -> Result<Tensor> {
        let y = self.norm.forward(x)?.transpose(1, 2)?.contiguous()?;
        let g = crate::subsampler::glu(&self.pointwise1.forward(&y)?)?;
        let y = self.depthwise.forward_with_context(&g, cache.conv_context.as_ref())?;
        let y = y.broadcast_mul(&self.bn_scale)?.broadcast_add(&self.bn_shift)?.silu()?;
        if keep > 0 {
            let kept = g.narrow(2, 0, keep)?;
            let context = match &cache.conv_context {
                Some(c) => Tensor::cat(&[c, &kept], 2)?,
                None => kept,
            };
            let p = (self.depthwise.kernel / 2).min(context.dim(2)?);
            cache.conv_context = Some(context.narrow(2, context.dim(2)? - p, p)?.contiguous()?);
        }
        self.pointwise2.forward(&y)?.transpose(1, 2)?.contiguous()
    }

    fn aligned_chunk(&self) -> Option<usize> {
        self.depthwise.aligned_chunk()
    }
}

pub struct ConformerLayer {
    ffn1: FeedForward,
    attn_norm: LayerNorm,
    attn: RelPositionAttention,
    conv: ConvModule,
    ffn2: FeedForward,
    final_norm: LayerNorm,
}

impl ConformerLayer {
    pub fn new(cfg: &ConformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(ConformerLayer {
            ffn1: FeedForward::new(cfg, vb.pp("ffn1"))?,
            attn_norm: candle_nn::layer_norm(cfg.embed_dim, 1e-5, vb.pp("self_attn_layer_norm"))?,
            attn: RelPositionAttention::new(cfg, vb.pp("self_attn"))?,
            conv: ConvModule::new(cfg, vb.pp("conv_module"))?,
            ffn2: FeedForward::new(cfg, vb.pp("ffn2"))?,
            final_norm: candle_nn::layer_norm(cfg.embed_dim, 1e-5, vb.pp("final_layer_norm"))?,
        })
    }

    /// x `[b, t, d]` (upstream is time-major; same values), pos_emb from [`rel_positions`],
    /// mask from [`chunk_mask`].
    pub fn forward(&self, x: &Tensor, pos_emb: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = ((self.ffn1.forward(x)? * 0.5)? + x)?;
        let x = (self.attn.forward(&self.attn_norm.forward(&x)?, pos_emb, mask)? + &x)?;
        let x = (self.conv.forward(&x)? + &x)?;
        let x = ((self.ffn2.forward(&x)? * 0.5)? + &x)?;
        self.final_norm.forward(&x)
    }

    /// [`forward`](Self::forward) for frames `offset..offset + n` of a growing sequence (x
    /// `[1, n, d]`) whose frames `..offset` are in `cache`; `mask` is [`chunk_mask_rows`]'s.
    /// The first `keep` frames of x join the cache: they must be final (no later frame can
    /// change them), and `offset` a multiple of the depthwise convolution's chunk.
    pub fn forward_cached(&self, x: &Tensor, offset: usize, mask: Option<&Tensor>, cache: &mut LayerCache, keep: usize) -> Result<Tensor> {
        let x = ((self.ffn1.forward(x)? * 0.5)? + x)?;
        let x = (self.attn.forward_cached(&self.attn_norm.forward(&x)?, offset, mask, cache, keep)? + &x)?;
        let x = (self.conv.forward_cached(&x, cache, keep)? + &x)?;
        let x = ((self.ffn2.forward(&x)? * 0.5)? + &x)?;
        self.final_norm.forward(&x)
    }

    /// The depthwise convolution's chunk when it is chunk-causal.
    pub fn conv_chunk(&self) -> Option<usize> {
        self.conv.aligned_chunk()
    }
}

/// fairseq's `RelPositionalEncoding` for `t` frames: `[1, 2t−1, d]`, relative positions t−1 …
/// −(t−1), sin on even and cos on odd channels; computed in f32 step by step as torch does.
pub fn rel_positions(t: usize, d: usize, device: &Device) -> Result<Tensor> {
    let step = -(10000f64.ln() / d as f64);
    let div: Vec<f32> = (0..d / 2).map(|i| ((2 * i) as f32 * step as f32).exp()).collect();
    let mut pe = Vec::with_capacity((2 * t - 1) * d);
    for m in 0..2 * t - 1 {
        let rel = t as i64 - 1 - m as i64;
        for w in &div {
            let arg = rel as f32 * w;
            pe.push(arg.sin());
            pe.push(arg.cos());
        }
    }
    Tensor::from_vec(pe, (1, 2 * t - 1, d), device)
}

/// Rows `from..t` of [`chunk_mask`]`(t, chunk)`: `[t − from, t]`.
pub fn chunk_mask_rows(from: usize, t: usize, chunk: usize, device: &Device) -> Result<Tensor> {
    let chunk = chunk.max(1);
    let rows = t - from;
    let mut m = vec![0f32; rows * t];
    for r in 0..rows {
        let limit = (((from + r) / chunk + 1) * chunk).clamp(1, t);
        m[r * t + limit..(r + 1) * t].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
    }
    Tensor::from_vec(m, (rows, t), device)
}

/// Upstream's chunk mask: query i attends to keys j < min((i / chunk + 1) · chunk, t); `[t, t]`
/// of 0 and −∞ added to the scores.
pub fn chunk_mask(t: usize, chunk: usize, device: &Device) -> Result<Tensor> {
    chunk_mask_rows(0, t, chunk, device)
}
