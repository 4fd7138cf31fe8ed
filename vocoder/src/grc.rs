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

impl GrcBlock {
    /// The block's output plus `acc` (the running MRF sum, folded into conv2's residuals).
    fn forward_acc(&self, x: &Tensor, acc: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let h = self.conv1.forward(x, PreAct::NONE, &[])?;
        let relu = PreAct { scale: 1.0, slope: Some(0.0) };
        match acc {
            Some(acc) => self.conv2.forward(&h, relu, &[x, acc]),
            None => self.conv2.forward(&h, relu, &[x]),
        }
    }
}

/// Mean of the stage's GRC blocks.
struct Mrf {
    blocks: Vec<GrcBlock>,
}

impl Mrf {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut acc: Option<Tensor> = None;
        for b in &self.blocks {
            acc = Some(b.forward_acc(x, acc.as_ref())?);
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
}

impl GrcMrf {
    pub fn new(cfg: &VocoderConfig, w: &Weights) -> Result<Self, VocoderError> {
        cfg.validate()?;
        let initial_conv = w.conv1d("initial_conv", cfg.num_mels, cfg.channels_at(0), 7, 1, 3)?;
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
                        conv1: w.conv1d(&format!("mrfs.{s}.convs.{j}.conv1"), c, c, k, 1, k / 2)?,
                        conv2: w.conv1d(&format!("mrfs.{s}.convs.{j}.conv2"), c, c, k, 1, k / 2)?,
                    })
                })
                .collect::<Result<_, VocoderError>>()?;
            mrfs.push(Mrf { blocks });
        }
        let ups = (0..n)
            .map(|i| {
                w.conv_transpose1d(
                    &format!("ups.{i}"),
                    cfg.channels_at(i),
                    cfg.channels_at(i + 1),
                    cfg.upsample_kernel_sizes[i],
                    cfg.upsample_rates[i],
                )
            })
            .collect::<Result<_, _>>()?;
        let final_conv = w.conv1d("final_conv", cfg.channels_at(n), 1, 7, 1, 3)?;
        Ok(Self { initial_conv, mrfs, ups, final_conv, slope: cfg.lrelu_slope, final_slope: cfg.grc_final_lrelu_slope })
    }

    /// mel [B, num_mels, T] → audio [B, 1, T · hop].
    pub fn forward(&self, mel: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.initial_conv.forward(mel, PreAct::NONE, &[])?;
        let mut x = self.mrfs[0].forward(&x)?;
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&x, PreAct::leaky(self.slope))?;
            x = self.mrfs[i + 1].forward(&x)?;
        }
        let act = PreAct { scale: 1.0, slope: self.final_slope.map(|s| s as f32) };
        self.final_conv.forward(&x, act, &[])?.tanh()
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
