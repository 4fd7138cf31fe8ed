//! The HiFi-GAN generator (jik876/hifi-gan `Generator`, also fairseq's), config-driven.

use candle_core::Tensor;

use crate::config::VocoderConfig;
use crate::error::VocoderError;
use crate::kernels::PreAct;
use crate::layers::{Conv1dLayer as Conv1d, ConvTranspose1dLayer as ConvTranspose1d};
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
        let mut x = self.conv_pre.forward(mel, PreAct::NONE, &[])?;
        // The MRF mean's 1/num_kernels is folded into the next layer's input activation.
        let mut scale = 1.0f32;
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&x, PreAct { scale, slope: Some(self.slope as f32) })?;
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
