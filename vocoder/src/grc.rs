//! The GRC-MRF "Modified" generator: multi-receptive-field stages made of full-channel Grouped
//! Residual Convolution blocks `conv2(relu(conv1(x))) + x` with kernel sizes 3/5/7.

use candle_core::Tensor;

use crate::config::VocoderConfig;
use crate::error::VocoderError;
use crate::kernels::PreAct;
use crate::layers::{Conv1dLayer as Conv1d, ConvTranspose1dLayer as ConvTranspose1d};
use crate::streaming::{ConvHist, Fifo, TransHist, take_sum};
use crate::weights::Weights;

struct GrcBlock {
    conv1: Conv1d,
    conv2: Conv1d,
}

/// A conv1d of the generator in batch mode. Centred convs pad both sides inside the layer; a
/// causal conv is built with padding `k − 1` (so its streaming history starts as `k − 1` zeros and
/// its lag is 0) and, in batch mode, gets those zeros on the left only and runs unpadded, which
/// keeps the output `T` columns long for the residuals fused into it.
fn conv_batch(conv: &Conv1d, causal: bool, x: &Tensor, act: PreAct, residuals: &[&Tensor]) -> candle_core::Result<Tensor> {
    if !causal {
        return conv.forward(x, act, residuals);
    }
    let (_, _, p) = conv.geometry();
    conv.forward_valid(&x.pad_with_zeros(2, p, 0)?, act, residuals)
}

impl GrcBlock {
    /// The block's output plus `acc` (the running MRF sum, folded into conv2's residuals).
    fn forward_acc(&self, x: &Tensor, acc: Option<&Tensor>, causal: bool) -> candle_core::Result<Tensor> {
        let h = conv_batch(&self.conv1, causal, x, PreAct::NONE, &[])?;
        let relu = PreAct { scale: 1.0, slope: Some(0.0) };
        match acc {
            Some(acc) => conv_batch(&self.conv2, causal, &h, relu, &[x, acc]),
            None => conv_batch(&self.conv2, causal, &h, relu, &[x]),
        }
    }
}

/// Mean of the stage's GRC blocks.
struct Mrf {
    blocks: Vec<GrcBlock>,
}

impl Mrf {
    fn forward(&self, x: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
        let mut acc: Option<Tensor> = None;
        for b in &self.blocks {
            acc = Some(b.forward_acc(x, acc.as_ref(), causal)?);
        }
        acc.expect("at least one GRC block") / self.blocks.len() as f64
    }
}

pub struct GrcMrf {
    initial_conv: Conv1d,
    mrfs: Vec<Mrf>,
    ups: Vec<ConvTranspose1d>,
    final_conv: Conv1d,
    slope: f64,
    final_slope: Option<f64>,
    /// `VocoderConfig::causal`: no look-ahead (streaming lag 0).
    causal: bool,
}

impl GrcMrf {
    pub fn new(cfg: &VocoderConfig, w: &Weights) -> Result<Self, VocoderError> {
        cfg.validate()?;
        // Centred convs pad (k−1)/2 on each side; causal ones k−1 on the left (see `conv_batch`).
        let pad = |k: usize| if cfg.causal { k - 1 } else { k / 2 };
        let initial_conv = w.conv1d("initial_conv", cfg.num_mels, cfg.channels_at(0), 7, 1, pad(7))?;
        let n = cfg.upsample_rates.len();
        let mut mrfs = Vec::new();
        for s in 0..=n {
            let c = cfg.channels_at(s);
            let blocks = cfg
                .grc_kernel_sizes
                .iter()
                .enumerate()
                .map(|(j, &k)| {
                    Ok(GrcBlock {
                        conv1: w.conv1d(&format!("mrfs.{s}.convs.{j}.conv1"), c, c, k, 1, pad(k))?,
                        conv2: w.conv1d(&format!("mrfs.{s}.convs.{j}.conv2"), c, c, k, 1, pad(k))?,
                    })
                })
                .collect::<Result<_, VocoderError>>()?;
            mrfs.push(Mrf { blocks });
        }
        let ups = (0..n)
            .map(|i| {
                let (k, r) = (cfg.upsample_kernel_sizes[i], cfg.upsample_rates[i]);
                // Causal: no padding, the batch output cut to T·r (see `forward`).
                let padding = if cfg.causal { 0 } else { (k - r) / 2 };
                w.conv_transpose1d_padded(&format!("ups.{i}"), cfg.channels_at(i), cfg.channels_at(i + 1), k, r, padding)
            })
            .collect::<Result<_, _>>()?;
        let final_conv = w.conv1d("final_conv", cfg.channels_at(n), 1, 7, 1, pad(7))?;
        Ok(Self {
            initial_conv,
            mrfs,
            ups,
            final_conv,
            slope: cfg.lrelu_slope,
            final_slope: cfg.grc_final_lrelu_slope,
            causal: cfg.causal,
        })
    }

    /// mel [B, num_mels, T] → audio [B, 1, T · hop].
    pub fn forward(&self, mel: &Tensor) -> candle_core::Result<Tensor> {
        let causal = self.causal;
        let x = conv_batch(&self.initial_conv, causal, mel, PreAct::NONE, &[])?;
        let mut x = self.mrfs[0].forward(&x, causal)?;
        for (i, up) in self.ups.iter().enumerate() {
            x = if causal {
                let (_, r, _) = up.geometry();
                let t = x.dim(2)?;
                up.forward_full(&x, PreAct::leaky(self.slope))?.narrow(2, 0, t * r)?
            } else {
                up.forward(&x, PreAct::leaky(self.slope))?
            };
            x = self.mrfs[i + 1].forward(&x, causal)?;
        }
        let act = PreAct { scale: 1.0, slope: self.final_slope.map(|s| s as f32) };
        conv_batch(&self.final_conv, causal, &x, act, &[])?.tanh()
    }
}

struct BlockStream {
    conv1: ConvHist,
    conv2: ConvHist,
    res: Fifo,
}

struct MrfStream {
    blocks: Vec<BlockStream>,
    outs: Vec<Fifo>,
}

/// The explicit streaming state of a [`GrcMrf`] (see `crate::streaming`).
pub struct GrcMrfStream {
    initial: ConvHist,
    mrfs: Vec<MrfStream>,
    ups: Vec<TransHist>,
    last: ConvHist,
}

impl Mrf {
    fn stream(&self, like: &Tensor) -> candle_core::Result<MrfStream> {
        let blocks = self
            .blocks
            .iter()
            .map(|b| Ok(BlockStream { conv1: ConvHist::new(&b.conv1, like)?, conv2: ConvHist::new(&b.conv2, like)?, res: Fifo::default() }))
            .collect::<candle_core::Result<_>>()?;
        Ok(MrfStream { blocks, outs: self.blocks.iter().map(|_| Fifo::default()).collect() })
    }

    fn lag(&self) -> usize {
        self.blocks.iter().map(|b| ConvHist::lag(&b.conv1) + ConvHist::lag(&b.conv2)).max().unwrap_or(0)
    }

    fn step(&self, st: &mut MrfStream, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let relu = PreAct { scale: 1.0, slope: Some(0.0) };
        for ((b, bs), out) in self.blocks.iter().zip(&mut st.blocks).zip(&mut st.outs) {
            bs.res.push(x)?;
            let Some(h) = bs.conv1.step(&b.conv1, x, PreAct::NONE, &mut [])? else { continue };
            if let Some(y) = bs.conv2.step(&b.conv2, &h, relu, &mut [&mut bs.res])? {
                out.push(&y)?;
            }
        }
        match take_sum(&mut st.outs)? {
            Some(sum) => Ok(Some((sum / self.blocks.len() as f64)?)),
            None => Ok(None),
        }
    }
}

impl GrcMrf {
    pub fn stream(&self, like: &Tensor) -> candle_core::Result<GrcMrfStream> {
        Ok(GrcMrfStream {
            initial: ConvHist::new(&self.initial_conv, like)?,
            mrfs: self.mrfs.iter().map(|m| m.stream(like)).collect::<candle_core::Result<_>>()?,
            ups: self.ups.iter().map(|u| TransHist::new(u, like)).collect::<candle_core::Result<_>>()?,
            last: ConvHist::new(&self.final_conv, like)?,
        })
    }

    pub fn stream_lag(&self) -> usize {
        let mut lag = ConvHist::lag(&self.initial_conv) + self.mrfs[0].lag();
        for (i, up) in self.ups.iter().enumerate() {
            lag = lag * up.geometry().1 + TransHist::lag(up) + self.mrfs[i + 1].lag();
        }
        lag + ConvHist::lag(&self.final_conv)
    }

    /// How far back, in output samples, an output sample's inputs reach (an upper bound): for a
    /// causal generator its whole receptive field, which is what a stream restarted from an
    /// earlier frame must replay before it equals the stream that ran all along.
    pub fn past_reach(&self) -> usize {
        let conv = |c: &Conv1d| {
            let (k, d, _) = c.geometry();
            d * (k - 1)
        };
        let mrf = |m: &Mrf| m.blocks.iter().map(|b| conv(&b.conv1) + conv(&b.conv2)).max().unwrap_or(0);
        let mut reach = conv(&self.initial_conv) + mrf(&self.mrfs[0]);
        for (i, up) in self.ups.iter().enumerate() {
            let (k, s, _) = up.geometry();
            reach = reach * s + (k - 1) + mrf(&self.mrfs[i + 1]);
        }
        reach + conv(&self.final_conv)
    }

    pub fn is_causal(&self) -> bool {
        self.causal
    }

    pub fn stream_step(&self, st: &mut GrcMrfStream, mel: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let Some(x) = st.initial.step(&self.initial_conv, mel, PreAct::NONE, &mut [])? else { return Ok(None) };
        let Some(mut x) = self.mrfs[0].step(&mut st.mrfs[0], &x)? else { return Ok(None) };
        for (i, up) in self.ups.iter().enumerate() {
            let Some(u) = st.ups[i].step(up, &x, PreAct::leaky(self.slope))? else { return Ok(None) };
            let Some(y) = self.mrfs[i + 1].step(&mut st.mrfs[i + 1], &u)? else { return Ok(None) };
            x = y;
        }
        let act = PreAct { scale: 1.0, slope: self.final_slope.map(|s| s as f32) };
        let Some(y) = st.last.step(&self.final_conv, &x, act, &mut [])? else { return Ok(None) };
        Ok(Some(y.tanh()?))
    }
}
