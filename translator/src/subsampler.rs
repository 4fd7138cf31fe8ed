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
        self.forward_with_context(x, None)
    }

    /// The chunks' real `kernel / 2` frames of left context are `context`'s last frames (fewer
    /// than that: zeros before them, as at the start of a sequence). `x` starts at a chunk
    /// boundary; its outputs are those a run over the whole sequence gives there.
    pub(crate) fn forward_with_context(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let p = self.kernel / 2;
        let (b, c, t) = x.dims3()?;
        let out_len = (t + 2 * p - self.kernel) / self.stride + 1;
        let Some(chunk) = self.chunked() else {
            return self.conv.forward(&x.pad_with_zeros(D::Minus1, p, p)?);
        };
        // Left context of p frames, the tail zero-padded to whole chunks; window i covers
        // [i·chunk, i·chunk + p + chunk) of that, then p zeros on its right.
        let tail = (chunk - t % chunk) % chunk;
        let padded = match context {
            Some(ctx) if ctx.dim(D::Minus1)? > 0 => {
                let have = ctx.dim(D::Minus1)?.min(p);
                let ctx = ctx.narrow(D::Minus1, ctx.dim(D::Minus1)? - have, have)?;
                Tensor::cat(&[&ctx, x], D::Minus1)?.pad_with_zeros(D::Minus1, p - have, tail)?
            }
            _ => x.pad_with_zeros(D::Minus1, p, tail)?,
        };
        let n = (t + tail) / chunk;
        let windows = (0..n).map(|i| padded.narrow(D::Minus1, i * chunk, p + chunk)).collect::<Result<Vec<_>>>()?;
        // [b, n, c, p + chunk] → [b·n, c, p + chunk + p]
        let stacked = Tensor::stack(&windows, 1)?.reshape((b * n, c, p + chunk))?.pad_with_zeros(D::Minus1, 0, p)?;
        let y = self.conv.forward(&stacked)?;
        let (_, out_c, l) = y.dims3()?;
        y.reshape((b, n, out_c, l))?.transpose(1, 2)?.reshape((b, out_c, n * l))?.narrow(D::Minus1, 0, out_len)
    }

    /// The chunk size, when the convolution is chunk-causal.
    pub(crate) fn chunked(&self) -> Option<usize> {
        self.chunk.filter(|c| (1..999).contains(c))
    }

    /// Outputs per chunk when a chunk's outputs line up with the input's (chunk·i ↦ chunk·i /
    /// stride), which incremental runs need; None otherwise.
    pub(crate) fn aligned_chunk(&self) -> Option<usize> {
        let chunk = self.chunked()?;
        let p = self.kernel / 2;
        let per_window = (chunk + 2 * p).checked_sub(self.kernel)? / self.stride + 1;
        (chunk % self.stride == 0 && per_window == chunk / self.stride).then_some(chunk)
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

    /// Output frames that no later input can change, of `t` input frames: those of whole
    /// chunks at every layer (0 when a layer is not chunk-causal).
    pub fn final_frames(&self, mut t: usize) -> usize {
        for layer in &self.layers {
            let Some(c) = layer.aligned_chunk() else { return 0 };
            t = t / c * (c / layer.stride);
        }
        t
    }

    /// The outputs from frame `start` on, of input `x` `[batch, frames, in_channels]` (the
    /// whole sequence so far), computing only the chunks they depend on: as
    /// [`forward`](Self::forward)`(x)` narrowed to `start..`. Every layer must be chunk-causal
    /// with aligned chunks (else the whole sequence is computed).
    pub fn forward_from(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        if start == 0 || self.layers.iter().any(|l| l.aligned_chunk().is_none()) {
            let y = self.forward(x)?;
            let n = y.dim(1)?.saturating_sub(start);
            return y.narrow(1, start.min(y.dim(1)?), n);
        }
        // Backwards: the chunk-aligned input frame each layer starts at, and the context
        // before it the previous layer must provide.
        let mut starts = vec![0; self.layers.len()];
        let mut need = start;
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let c = layer.aligned_chunk().expect("checked above");
            starts[i] = need * layer.stride / c * c;
            need = starts[i].saturating_sub(layer.kernel / 2);
        }
        // Forwards from `need` (input frames before it are not looked at).
        let mut x = x.narrow(1, need, x.dim(1)? - need)?.transpose(1, 2)?.contiguous()?;
        let mut at = need;
        for (layer, &s) in self.layers.iter().zip(&starts) {
            let t = x.dim(D::Minus1)?;
            let context = (s > at).then(|| x.narrow(D::Minus1, 0, s - at)).transpose()?;
            let main = x.narrow(D::Minus1, s - at, t - (s - at))?;
            x = glu(&layer.forward_with_context(&main, context.as_ref())?)?;
            at = s / layer.stride;
        }
        let x = x.narrow(D::Minus1, start - at, x.dim(D::Minus1)? - (start - at))?;
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
