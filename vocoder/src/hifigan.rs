//! The HiFi-GAN generator (jik876/hifi-gan `Generator`, also fairseq's), config-driven.

use candle_core::Tensor;

use crate::config::VocoderConfig;
use crate::error::VocoderError;
use crate::kernels::PreAct;
use crate::layers::{Conv1dLayer as Conv1d, ConvTranspose1dLayer as ConvTranspose1d};
use crate::streaming::{ConvHist, Fifo, TransHist, take_sum};
use crate::weights::Weights;

fn padding(k: usize, d: usize) -> usize {
    (k * d - d) / 2
}

enum ResBlock {
    /// Pairs (dilated conv, conv), each preceded by a leaky ReLU, with a residual per pair.
    One { convs1: Vec<Conv1d>, convs2: Vec<Conv1d> },
    /// Single dilated convs with a residual each.
    Two { convs: Vec<Conv1d> },
}

impl ResBlock {
    /// The block's output plus `acc` (the running MRF sum, folded into the last conv's residual).
    fn forward_acc(&self, x: &Tensor, slope: f64, acc: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        let a = PreAct::leaky(slope);
        match self {
            ResBlock::One { convs1, convs2 } => {
                let n = convs1.len();
                for (m, (c1, c2)) in convs1.iter().zip(convs2).enumerate() {
                    let xt = c1.forward(&x, a, &[])?;
                    x = match acc.filter(|_| m + 1 == n) {
                        Some(acc) => c2.forward(&xt, a, &[&x, acc])?,
                        None => c2.forward(&xt, a, &[&x])?,
                    };
                }
            }
            ResBlock::Two { convs } => {
                let n = convs.len();
                for (m, c) in convs.iter().enumerate() {
                    x = match acc.filter(|_| m + 1 == n) {
                        Some(acc) => c.forward(&x, a, &[&x, acc])?,
                        None => c.forward(&x, a, &[&x])?,
                    };
                }
            }
        }
        Ok(x)
    }
}

/// A per-stage modulation of the upsampled features: (stage, x) → x'.
pub type StageHook<'a> = dyn Fn(usize, &Tensor) -> candle_core::Result<Tensor> + 'a;

pub struct HifiGan {
    conv_pre: Conv1d,
    ups: Vec<ConvTranspose1d>,
    resblocks: Vec<ResBlock>,
    conv_post: Conv1d,
    num_kernels: usize,
    slope: f64,
    final_slope: f64,
}

impl HifiGan {
    pub fn new(cfg: &VocoderConfig, w: &Weights) -> Result<Self, VocoderError> {
        cfg.validate()?;
        let conv_pre = w.conv1d("conv_pre", cfg.num_mels, cfg.channels_at(0), 7, 1, 3)?;
        let nk = cfg.resblock_kernel_sizes.len();
        let mut ups = Vec::new();
        let mut resblocks = Vec::new();
        for (i, (&r, &k)) in cfg.upsample_rates.iter().zip(&cfg.upsample_kernel_sizes).enumerate() {
            let (cin, ch) = (cfg.channels_at(i), cfg.channels_at(i + 1));
            ups.push(w.conv_transpose1d(&format!("ups.{i}"), cin, ch, k, r)?);
            for (j, (&k, dil)) in cfg.resblock_kernel_sizes.iter().zip(&cfg.resblock_dilation_sizes).enumerate() {
                let rb = format!("resblocks.{}", i * nk + j);
                if cfg.resblock == "1" {
                    let convs1 = dil
                        .iter()
                        .enumerate()
                        .map(|(m, &d)| w.conv1d(&format!("{rb}.convs1.{m}"), ch, ch, k, d, padding(k, d)))
                        .collect::<Result<_, _>>()?;
                    let convs2 = (0..dil.len())
                        .map(|m| w.conv1d(&format!("{rb}.convs2.{m}"), ch, ch, k, 1, padding(k, 1)))
                        .collect::<Result<_, _>>()?;
                    resblocks.push(ResBlock::One { convs1, convs2 });
                } else {
                    let convs = dil
                        .iter()
                        .enumerate()
                        .map(|(m, &d)| w.conv1d(&format!("{rb}.convs.{m}"), ch, ch, k, d, padding(k, d)))
                        .collect::<Result<_, _>>()?;
                    resblocks.push(ResBlock::Two { convs });
                }
            }
        }
        let last = cfg.channels_at(cfg.upsample_rates.len());
        let conv_post = w.conv1d("conv_post", last, 1, 7, 1, 3)?;
        Ok(Self { conv_pre, ups, resblocks, conv_post, num_kernels: nk, slope: cfg.lrelu_slope, final_slope: cfg.final_lrelu_slope })
    }

    /// mel [B, num_mels, T] → audio [B, 1, T · hop].
    pub fn forward(&self, mel: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(mel, None)
    }

    /// As [`forward`](Self::forward), with `film(stage, x)` applied to each upsampling layer's
    /// output (the UnitHiFiGAN+FiLM conditioning).
    pub fn forward_with(&self, mel: &Tensor, film: Option<&StageHook<'_>>) -> candle_core::Result<Tensor> {
        let mut x = self.conv_pre.forward(mel, PreAct::NONE, &[])?;
        // The MRF mean's 1/num_kernels is folded into the next layer's input activation.
        let mut scale = 1.0f32;
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&x, PreAct { scale, slope: Some(self.slope as f32) })?;
            if let Some(f) = film {
                x = f(i, &x)?;
            }
            let mut acc: Option<Tensor> = None;
            for j in 0..self.num_kernels {
                acc = Some(self.resblocks[i * self.num_kernels + j].forward_acc(&x, self.slope, acc.as_ref())?);
            }
            x = acc.expect("at least one resblock");
            scale = 1.0 / self.num_kernels as f32;
        }
        let x = self.conv_post.forward(&x, PreAct { scale, slope: Some(self.final_slope as f32) }, &[])?;
        x.tanh()
    }
}

/// Streaming state of one resblock: a history per conv and a residual fifo per residual add.
struct ResBlockStream {
    first: Vec<ConvHist>,
    second: Vec<ConvHist>,
    res: Vec<Fifo>,
}

struct StageStream {
    up: TransHist,
    blocks: Vec<ResBlockStream>,
    outs: Vec<Fifo>,
}

/// The explicit streaming state of a [`HifiGan`] (see `crate::streaming`).
pub struct HifiGanStream {
    pre: ConvHist,
    stages: Vec<StageStream>,
    post: ConvHist,
}

impl ResBlock {
    fn stream(&self, like: &Tensor) -> candle_core::Result<ResBlockStream> {
        Ok(match self {
            ResBlock::One { convs1, convs2 } => ResBlockStream {
                first: convs1.iter().map(|c| ConvHist::new(c, like)).collect::<Result<_, _>>()?,
                second: convs2.iter().map(|c| ConvHist::new(c, like)).collect::<Result<_, _>>()?,
                res: convs1.iter().map(|_| Fifo::default()).collect(),
            },
            ResBlock::Two { convs } => ResBlockStream {
                first: convs.iter().map(|c| ConvHist::new(c, like)).collect::<Result<_, _>>()?,
                second: Vec::new(),
                res: convs.iter().map(|_| Fifo::default()).collect(),
            },
        })
    }

    fn lag(&self) -> usize {
        match self {
            ResBlock::One { convs1, convs2 } => convs1.iter().chain(convs2).map(ConvHist::lag).sum(),
            ResBlock::Two { convs } => convs.iter().map(ConvHist::lag).sum(),
        }
    }

    fn step(&self, st: &mut ResBlockStream, x: &Tensor, slope: f64) -> candle_core::Result<Option<Tensor>> {
        let a = PreAct::leaky(slope);
        let mut x = x.clone();
        match self {
            ResBlock::One { convs1, convs2 } => {
                for m in 0..convs1.len() {
                    st.res[m].push(&x)?;
                    let Some(h) = st.first[m].step(&convs1[m], &x, a, &mut [])? else { return Ok(None) };
                    let Some(y) = st.second[m].step(&convs2[m], &h, a, &mut [&mut st.res[m]])? else { return Ok(None) };
                    x = y;
                }
            }
            ResBlock::Two { convs } => {
                for m in 0..convs.len() {
                    st.res[m].push(&x)?;
                    let Some(y) = st.first[m].step(&convs[m], &x, a, &mut [&mut st.res[m]])? else { return Ok(None) };
                    x = y;
                }
            }
        }
        Ok(Some(x))
    }
}

impl HifiGan {
    pub fn stream(&self, like: &Tensor) -> candle_core::Result<HifiGanStream> {
        let mut stages = Vec::new();
        for (i, up) in self.ups.iter().enumerate() {
            let blocks = (0..self.num_kernels)
                .map(|j| self.resblocks[i * self.num_kernels + j].stream(like))
                .collect::<candle_core::Result<_>>()?;
            stages.push(StageStream { up: TransHist::new(up, like)?, blocks, outs: (0..self.num_kernels).map(|_| Fifo::default()).collect() });
        }
        Ok(HifiGanStream { pre: ConvHist::new(&self.conv_pre, like)?, stages, post: ConvHist::new(&self.conv_post, like)? })
    }

    /// Output samples still owed after `frames` frames: emitted = hop · frames − lag.
    pub fn stream_lag(&self) -> usize {
        let mut lag = ConvHist::lag(&self.conv_pre);
        for (i, up) in self.ups.iter().enumerate() {
            let s = up.geometry().1;
            let mrf = (0..self.num_kernels).map(|j| self.resblocks[i * self.num_kernels + j].lag()).max().unwrap_or(0);
            lag = lag * s + TransHist::lag(up) + mrf;
        }
        lag + ConvHist::lag(&self.conv_post)
    }

    /// Feeds mel columns [1, num_mels, n]; returns the newly computable audio [1, 1, m].
    pub fn stream_step(&self, st: &mut HifiGanStream, mel: &Tensor) -> candle_core::Result<Option<Tensor>> {
        self.stream_step_with(st, mel, None)
    }

    /// As [`stream_step`](Self::stream_step) with the per-stage hook of
    /// [`forward_with`](Self::forward_with) (it must act on each column alone, as FiLM does).
    pub fn stream_step_with(&self, st: &mut HifiGanStream, mel: &Tensor, film: Option<&StageHook<'_>>) -> candle_core::Result<Option<Tensor>> {
        let Some(mut x) = st.pre.step(&self.conv_pre, mel, PreAct::NONE, &mut [])? else { return Ok(None) };
        let mut scale = 1.0f32;
        for (i, (up, stage)) in self.ups.iter().zip(&mut st.stages).enumerate() {
            let Some(mut u) = stage.up.step(up, &x, PreAct { scale, slope: Some(self.slope as f32) })? else { return Ok(None) };
            if let Some(f) = film {
                u = f(i, &u)?;
            }
            for (j, (block, out)) in stage.blocks.iter_mut().zip(&mut stage.outs).enumerate() {
                if let Some(r) = self.resblocks[i * self.num_kernels + j].step(block, &u, self.slope)? {
                    out.push(&r)?;
                }
            }
            let Some(sum) = take_sum(&mut stage.outs)? else { return Ok(None) };
            x = sum;
            scale = 1.0 / self.num_kernels as f32;
        }
        let act = PreAct { scale, slope: Some(self.final_slope as f32) };
        let Some(y) = st.post.step(&self.conv_post, &x, act, &mut [])? else { return Ok(None) };
        Ok(Some(y.tanh()?))
    }
}
