//! The GRC-MRF "Modified" generator: multi-receptive-field stages made of full-channel Grouped
//! Residual Convolution blocks `conv2(relu(conv1(x))) + x` with kernel sizes 3/5/7.

use candle_core::Tensor;

use crate::config::VocoderConfig;
use crate::error::VocoderError;
use crate::kernels::PreAct;
use crate::layers::{Conv1dLayer as Conv1d, ConvTranspose1dLayer as ConvTranspose1d};
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
