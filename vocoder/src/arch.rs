//! Architecture bookkeeping: the parameters a config implies, and the architecture a checkpoint
//! implies on its own (so a mismatch can be explained field by field).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Family, VocoderConfig};
use crate::error::VocoderError;

/// Every parameter (name → shape) the model built from `cfg` has.
pub fn expected_params(cfg: &VocoderConfig) -> Result<BTreeMap<String, Vec<usize>>, VocoderError> {
    let mut p = BTreeMap::new();
    let mut conv = |name: String, out: usize, inp: usize, k: usize| {
        p.insert(format!("{name}.weight"), vec![out, inp, k]);
        p.insert(format!("{name}.bias"), vec![out]);
    };
    let n = cfg.upsample_rates.len();
    match cfg.family()? {
        Family::HifiGanV1 | Family::HifiGanV3 => {
            conv("conv_pre".into(), cfg.channels_at(0), cfg.num_mels, 7);
            let nk = cfg.resblock_kernel_sizes.len();
            for i in 0..n {
                let (cin, cout) = (cfg.channels_at(i), cfg.channels_at(i + 1));
                // ConvTranspose1d weights are [in, out, k].
                conv(format!("ups.{i}"), cin, cout, cfg.upsample_kernel_sizes[i]);
                // `conv` wrote [cin, cout, k] with bias [cin]: fix the bias to out-channels.
                for (j, (k, d)) in cfg.resblock_kernel_sizes.iter().zip(&cfg.resblock_dilation_sizes).enumerate() {
                    let rb = format!("resblocks.{}", i * nk + j);
                    if cfg.resblock == "1" {
                        for m in 0..d.len() {
                            conv(format!("{rb}.convs1.{m}"), cout, cout, *k);
                            conv(format!("{rb}.convs2.{m}"), cout, cout, *k);
                        }
                    } else {
                        for m in 0..d.len() {
                            conv(format!("{rb}.convs.{m}"), cout, cout, *k);
                        }
                    }
                }
            }
            conv("conv_post".into(), 1, cfg.channels_at(n), 7);
        }
        Family::GrcMrf => {
            conv("initial_conv".into(), cfg.channels_at(0), cfg.num_mels, 7);
            for s in 0..=n {
                let c = cfg.channels_at(s);
                for (j, k) in cfg.grc_kernel_sizes.iter().enumerate() {
                    conv(format!("mrfs.{s}.convs.{j}.conv1"), c, c, *k);
                    conv(format!("mrfs.{s}.convs.{j}.conv2"), c, c, *k);
                }
            }
            for i in 0..n {
                conv(format!("ups.{i}"), cfg.channels_at(i), cfg.channels_at(i + 1), cfg.upsample_kernel_sizes[i]);
            }
            conv("final_conv".into(), 1, cfg.channels_at(n), 7);
        }
    }
    // Transposed-conv biases have the output-channel count.
    for i in 0..n {
        p.insert(format!("ups.{i}.bias"), vec![cfg.channels_at(i + 1)]);
    }
    Ok(p)
}

/// What a checkpoint's keys and shapes say about its architecture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InferredArch {
    pub family: Option<Family>,
    pub num_mels: Option<usize>,
    pub upsample_initial_channel: Option<usize>,
    /// Channels at each stage (0 = before upsampling).
    pub stage_channels: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    /// Guessed as kernel / 2 (the HiFi-GAN convention); strides are not stored in weights.
    pub upsample_rates_guess: Vec<usize>,
    /// HiFi-GAN: kernel sizes of the resblocks of one stage. GRC: kernel sizes of an MRF's blocks.
    pub block_kernel_sizes: Vec<usize>,
    /// HiFi-GAN: number of dilated convs per resblock (dilation values are not stored in weights).
    pub convs_per_resblock: Option<usize>,
    /// Grouped convolutions detected (groups), if any.
    pub groups: Option<usize>,
    /// Layers no supported family has (norms, LoRA, attention...).
    pub extra_layers: Vec<String>,
    pub weight_norm: bool,
}

fn idx_set(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> Vec<usize> {
    let mut v: Vec<usize> = shapes
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|r| r.split('.').next()?.parse().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn infer(shapes: &BTreeMap<String, Vec<usize>>, weight_norm: bool) -> InferredArch {
    let get = |k: &str| shapes.get(k).cloned();
    let mut a = InferredArch {
        family: None,
        num_mels: None,
        upsample_initial_channel: None,
        stage_channels: Vec::new(),
        upsample_kernel_sizes: Vec::new(),
        upsample_rates_guess: Vec::new(),
        block_kernel_sizes: Vec::new(),
        convs_per_resblock: None,
        groups: None,
        extra_layers: Vec::new(),
        weight_norm,
    };
    let ups = idx_set(shapes, "ups.");
    for i in &ups {
        if let Some(w) = get(&format!("ups.{i}.weight")).filter(|w| w.len() == 3) {
            if a.stage_channels.is_empty() {
                a.stage_channels.push(w[0]);
            }
            a.stage_channels.push(w[1]);
            a.upsample_kernel_sizes.push(w[2]);
            a.upsample_rates_guess.push((w[2] / 2).max(1));
        }
    }
    if let Some(w) = get("conv_pre.weight") {
        a.family = Some(Family::HifiGanV1);
        a.num_mels = w.get(1).copied();
        a.upsample_initial_channel = w.first().copied();
        let rbs = idx_set(shapes, "resblocks.");
        let has_convs1 = shapes.keys().any(|k| k.starts_with("resblocks.") && k.contains(".convs1."));
        if !has_convs1 && shapes.keys().any(|k| k.starts_with("resblocks.") && k.contains(".convs.")) {
            a.family = Some(Family::HifiGanV3);
        }
        if !ups.is_empty() && !rbs.is_empty() {
            let per_stage = rbs.len() / ups.len();
            for j in 0..per_stage {
                let conv = if has_convs1 { "convs1" } else { "convs" };
                if let Some(w) = get(&format!("resblocks.{j}.{conv}.0.weight")) {
                    a.block_kernel_sizes.push(w[2]);
                }
            }
            let conv = if has_convs1 { "convs1" } else { "convs" };
            a.convs_per_resblock = Some(idx_set(shapes, &format!("resblocks.0.{conv}.")).len());
        }
    } else if let Some(w) = get("initial_conv.weight") {
        a.family = Some(Family::GrcMrf);
        a.num_mels = w.get(1).copied();
        a.upsample_initial_channel = w.first().copied();
        for j in idx_set(shapes, "mrfs.0.convs.") {
            if let Some(w) = get(&format!("mrfs.0.convs.{j}.conv1.weight")) {
                a.block_kernel_sizes.push(w[2]);
                if w[1] > 0 && w[0] != w[1] && w[0] % w[1] == 0 {
                    a.groups = Some(w[0] / w[1]);
                }
            }
        }
    }
    let mut extra: Vec<String> = Vec::new();
    for k in shapes.keys() {
        for (pat, name) in [
            ("norm", "normalisation (BatchNorm/LayerNorm)"),
            ("lora", "LoRA adapters"),
            ("channel_attention", "channel attention"),
            ("temporal_attention", "temporal attention"),
            ("film", "FiLM conditioning"),
            ("cond_proj", "conditioning projection"),
        ] {
            if k.contains(pat) && !extra.iter().any(|e| e == name) {
                extra.push(name.to_string());
            }
        }
    }
    a.extra_layers = extra;
    a
}

impl InferredArch {
    /// Fields where a declared config disagrees with what the checkpoint implies.
    pub fn disagreements(&self, cfg: &VocoderConfig) -> Vec<String> {
        let mut d = Vec::new();
        if let (Some(f), Ok(cf)) = (self.family, cfg.family()) {
            if f != cf {
                d.push(format!("family: checkpoint {}, config {}", f.name(), cf.name()));
            }
        }
        if let Some(m) = self.num_mels.filter(|m| *m != cfg.num_mels) {
            d.push(format!("num_mels: checkpoint {m}, config {}", cfg.num_mels));
        }
        if let Some(c) = self.upsample_initial_channel.filter(|c| *c != cfg.upsample_initial_channel) {
            d.push(format!("upsample_initial_channel: checkpoint {c}, config {}", cfg.upsample_initial_channel));
        }
        if !self.upsample_kernel_sizes.is_empty() && self.upsample_kernel_sizes != cfg.upsample_kernel_sizes {
            d.push(format!(
                "upsample_kernel_sizes: checkpoint {:?}, config {:?}",
                self.upsample_kernel_sizes, cfg.upsample_kernel_sizes
            ));
        }
        let cfg_kernels = match cfg.family() {
            Ok(Family::GrcMrf) => &cfg.grc_kernel_sizes,
            _ => &cfg.resblock_kernel_sizes,
        };
        if !self.block_kernel_sizes.is_empty() && &self.block_kernel_sizes != cfg_kernels {
            let field = if cfg.resblock == "grc" { "grc_kernel_sizes" } else { "resblock_kernel_sizes" };
            d.push(format!("{field}: checkpoint {:?}, config {:?}", self.block_kernel_sizes, cfg_kernels));
        }
        if let Some(n) = self.convs_per_resblock {
            if let Some(dil) = cfg.resblock_dilation_sizes.first().filter(|dil| dil.len() != n) {
                d.push(format!("resblock_dilation_sizes: checkpoint has {n} convs per resblock, config {} dilations", dil.len()));
            }
        }
        if let Some(g) = self.groups {
            d.push(format!("groups: checkpoint uses grouped convolutions (groups={g}), config describes full-channel convs"));
        }
        for e in &self.extra_layers {
            d.push(format!("layers: checkpoint has {e}, the config's family has none"));
        }
        d
    }
}

impl std::fmt::Display for InferredArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "family: {}", self.family.map(|f| f.name()).unwrap_or("unknown"))?;
        if let Some(m) = self.num_mels {
            writeln!(f, "num_mels: {m}")?;
        }
        if !self.stage_channels.is_empty() {
            writeln!(f, "channels per stage: {:?}", self.stage_channels)?;
        } else if let Some(c) = self.upsample_initial_channel {
            writeln!(f, "upsample_initial_channel: {c}")?;
        }
        if !self.upsample_kernel_sizes.is_empty() {
            writeln!(
                f,
                "upsample_kernel_sizes: {:?} (upsample_rates not stored; kernel/2 suggests {:?})",
                self.upsample_kernel_sizes, self.upsample_rates_guess
            )?;
        }
        if !self.block_kernel_sizes.is_empty() {
            let what = if self.family == Some(Family::GrcMrf) { "GRC block kernel sizes" } else { "resblock kernel sizes" };
            writeln!(f, "{what}: {:?}", self.block_kernel_sizes)?;
        }
        if let Some(n) = self.convs_per_resblock {
            writeln!(f, "convs per resblock: {n} (dilation values are not stored in weights)")?;
        }
        if let Some(g) = self.groups {
            writeln!(f, "grouped convolutions: groups={g}")?;
        }
        if !self.extra_layers.is_empty() {
            writeln!(f, "extra layers: {}", self.extra_layers.join(", "))?;
        }
        writeln!(f, "weight norm: {}", if self.weight_norm { "yes (folded at load)" } else { "no" })
    }
}
