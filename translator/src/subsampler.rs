//! The encoder's front: StreamSpeech's `Conv1dSubsampler` (researches/chunk_unity/modules/
//! convolution.py). A stack of stride-2 Conv1d + GLU layers, each a `ChunkCausalConv1d` when the
//! model has a chunk size.
//!
//! A chunk-causal convolution cuts its input into chunks of `chunk_size` frames. Each chunk
//! sees `kernel // 2` frames of left context (zeros before the first chunk) and zeros on the
//! right, so no output depends on a later chunk. Upstream passes the same `chunk_size` to every
//! layer although the second runs at half the frame rate; that is reproduced. Without a chunk
//! size the convolutions are ordinary centred ones.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};

/// Hyper-parameters (upstream: `input_feat_per_channel × input_channels`, `conv_channels`,
/// `encoder_embed_dim`, `conv_kernel_sizes`, `chunk_size`).
#[derive(Debug, Clone, PartialEq)]
pub struct SubsamplerConfig {
    pub in_channels: usize,
    pub mid_channels: usize,
    pub out_channels: usize,
    pub kernel_sizes: Vec<usize>,
    /// `Some(c)` with 0 < c < 999: chunk-causal (upstream treats other values as no chunking).
    pub chunk_size: Option<usize>,
}

/// upstream's `ChunkCausalConv1d` (also the conformer's depthwise conv): `conv` has no padding.
pub(crate) struct ChunkCausalConv1d {
    pub(crate) conv: Conv1d,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) chunk: Option<usize>,
}

impl ChunkCausalConv1d {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.kernel / 2;
        let (b, c, t) = x.dims3()?;
        let out_len = (t + 2 * p - self.kernel) / self.stride + 1;
        let Some(chunk) = self.chunk.filter(|c| (1..999).contains(c)) else {
            return self.conv.forward(&x.pad_with_zeros(D::Minus1, p, p)?);
        };
        // Left context of p frames, the tail zero-padded to whole chunks; window i covers
        // [i·chunk, i·chunk + p + chunk) of that, then p zeros on its right.
        let tail = (chunk - t % chunk) % chunk;
        let padded = x.pad_with_zeros(D::Minus1, p, tail)?;
        let n = (t + tail) / chunk;
        let windows = (0..n).map(|i| padded.narrow(D::Minus1, i * chunk, p + chunk)).collect::<Result<Vec<_>>>()?;
        // [b, n, c, p + chunk] → [b·n, c, p + chunk + p]
        let stacked = Tensor::stack(&windows, 1)?.reshape((b * n, c, p + chunk))?.pad_with_zeros(D::Minus1, 0, p)?;
        let y = self.conv.forward(&stacked)?;
        let (_, out_c, l) = y.dims3()?;
        y.reshape((b, n, out_c, l))?.transpose(1, 2)?.reshape((b, out_c, n * l))?.narrow(D::Minus1, 0, out_len)
    }
}

pub struct Conv1dSubsampler {
    layers: Vec<ChunkCausalConv1d>,
}

impl Conv1dSubsampler {
    /// Weights `conv_layers.{i}.weight` / `.bias` under `vb`.
    pub fn new(cfg: &SubsamplerConfig, vb: VarBuilder) -> Result<Self> {
        let n = cfg.kernel_sizes.len();
        let mut layers = Vec::with_capacity(n);
        for (i, &k) in cfg.kernel_sizes.iter().enumerate() {
            let cin = if i == 0 { cfg.in_channels } else { cfg.mid_channels / 2 };
            let cout = if i + 1 < n { cfg.mid_channels } else { cfg.out_channels * 2 };
            let vb = vb.pp(format!("conv_layers.{i}"));
            let w = vb.get((cout, cin, k), "weight")?;
            let bias = vb.get(cout, "bias")?;
            let conv = Conv1d::new(w, Some(bias), Conv1dConfig { padding: 0, stride: 2, dilation: 1, groups: 1, cudnn_fwd_algo: None });
            layers.push(ChunkCausalConv1d { conv, kernel: k, stride: 2, chunk: cfg.chunk_size });
        }
        Ok(Conv1dSubsampler { layers })
    }

    /// `[batch, frames, in_channels]` → `[batch, frames', out_channels]` (upstream returns it
    /// time-major; the values are the same).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.transpose(1, 2)?.contiguous()?;
        for layer in &self.layers {
            x = glu(&layer.forward(&x)?)?;
        }
        x.transpose(1, 2)?.contiguous()
    }

    /// Output frames for `t` input frames (upstream's `get_out_seq_lens_tensor`).
    pub fn out_frames(&self, mut t: usize) -> usize {
        for _ in &self.layers {
            t = if t == 0 { 0 } else { (t - 1) / 2 + 1 };
        }
        t
    }
}

/// Gated linear unit over channels (dim 1): first half × sigmoid(second half).
pub(crate) fn glu(x: &Tensor) -> Result<Tensor> {
    let h = x.dim(1)? / 2;
    x.narrow(1, 0, h)?.mul(&candle_nn::ops::sigmoid(&x.narrow(1, h, h)?)?)
}
