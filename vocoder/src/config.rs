//! Vocoder configuration: the reference HiFi-GAN `config.json` fields, plus the GRC-MRF fields
//! and the activation slopes the reference code hides.

use serde::{Deserialize, Serialize};

use crate::error::VocoderError;

/// Bounds on config fields: far beyond any real vocoder, small enough that nothing sized from
/// them can exhaust memory.
pub struct Limits {
    /// Sampling rates, Hz (inclusive).
    pub rate: (usize, usize),
    pub max_fft: usize,
    pub max_mels: usize,
    pub max_channels: usize,
    pub max_kernel: usize,
    /// Entries of any list field.
    pub max_list: usize,
}

pub const LIMITS: Limits =
    Limits { rate: (1_000, 384_000), max_fft: 16_384, max_mels: 512, max_channels: 4_096, max_kernel: 64, max_list: 16 };

/// Which generator a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// HiFi-GAN with ResBlock "1" (V1/V2, fairseq).
    HifiGanV1,
    /// HiFi-GAN with ResBlock "2" (V3).
    HifiGanV3,
    /// The thesis's GRC-MRF "Modified" generator.
    GrcMrf,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::HifiGanV1 => "hifigan (resblock 1)",
            Family::HifiGanV3 => "hifigan (resblock 2)",
            Family::GrcMrf => "grc-mrf",
        }
    }
}

fn default_lrelu_slope() -> f64 {
    0.1
}
fn default_final_lrelu_slope() -> f64 {
    // jik876/hifi-gan calls `F.leaky_relu(x)` before conv_post: PyTorch's default 0.01.
    0.01
}
fn default_grc_kernels() -> Vec<usize> {
    vec![3, 5, 7]
}

/// The vocoder config. Unknown fields of the reference config (training settings) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VocoderConfig {
    /// "1", "2" (HiFi-GAN) or "grc".
    pub resblock: String,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub upsample_initial_channel: usize,
    #[serde(default)]
    pub resblock_kernel_sizes: Vec<usize>,
    #[serde(default)]
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    /// GRC-MRF: kernel size of each GRC block in an MRF stage.
    #[serde(default = "default_grc_kernels")]
    pub grc_kernel_sizes: Vec<usize>,

    /// Slope of the leaky ReLUs before each upsampling layer and inside the resblocks.
    #[serde(default = "default_lrelu_slope")]
    pub lrelu_slope: f64,
    /// HiFi-GAN: slope of the leaky ReLU before `conv_post` (reference: 0.01; the thesis's
    /// UnitHiFiGAN uses 0.1).
    #[serde(default = "default_final_lrelu_slope")]
    pub final_lrelu_slope: f64,
    /// GRC-MRF: optional leaky ReLU before `final_conv` (none by default).
    #[serde(default)]
    pub grc_final_lrelu_slope: Option<f64>,
    /// GRC-MRF: every conv padded on the left only and the transposed convs cut to `T·stride`,
    /// so audio sample `n` depends on mel frames `≤ ⌊n/hop⌋` (no look-ahead; the low-latency
    /// student). Omitted from the JSON when false so that existing configs keep their hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub causal: bool,

    pub sampling_rate: u32,
    pub n_fft: usize,
    pub hop_size: usize,
    pub win_size: usize,
    pub num_mels: usize,
    pub fmin: f64,
    /// `null` in some configs means sampling_rate / 2.
    pub fmax: Option<f64>,
}

impl VocoderConfig {
    pub fn from_json(text: &str) -> Result<Self, VocoderError> {
        let cfg: VocoderConfig =
            serde_json::from_str(text).map_err(|e| VocoderError::Config(format!("config JSON: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    pub fn family(&self) -> Result<Family, VocoderError> {
        match self.resblock.as_str() {
            "1" => Ok(Family::HifiGanV1),
            "2" => Ok(Family::HifiGanV3),
            "grc" => Ok(Family::GrcMrf),
            other => Err(VocoderError::Config(format!(
                "unknown \"resblock\": {other:?} (expected \"1\", \"2\" or \"grc\")"
            ))),
        }
    }

    pub fn fmax_hz(&self) -> f64 {
        self.fmax.unwrap_or(self.sampling_rate as f64 / 2.0)
    }

    /// Samples of audio per mel frame: the product of the upsampling rates, which must equal
    /// `hop_size` or the audio plays at the wrong speed. (Saturates; `validate` refuses a
    /// product that overflows.)
    pub fn upsample_factor(&self) -> usize {
        self.upsample_rates.iter().try_fold(1usize, |a, r| a.checked_mul(*r)).unwrap_or(usize::MAX)
    }

    /// Channels after upsampling stage `i` (0 = before any upsampling).
    pub fn channels_at(&self, stage: usize) -> usize {
        self.upsample_initial_channel >> stage
    }

    pub fn validate(&self) -> Result<(), VocoderError> {
        let bad = |m: String| Err(VocoderError::Config(m));
        let family = self.family()?;
        // Sane ranges first: every later computation (mel basis, FFT plan, layer shapes) sizes
        // memory from these fields, so a file from a stranger must not choose those sizes.
        let range = |name: &str, v: usize, lo: usize, hi: usize| -> Result<(), VocoderError> {
            if v < lo || v > hi {
                return Err(VocoderError::Config(format!("{name} = {v} is outside {lo}..={hi}")));
            }
            Ok(())
        };
        range("sampling_rate", self.sampling_rate as usize, LIMITS.rate.0, LIMITS.rate.1)?;
        range("n_fft", self.n_fft, 16, LIMITS.max_fft)?;
        range("win_size", self.win_size, 1, LIMITS.max_fft)?;
        range("hop_size", self.hop_size, 1, self.n_fft)?;
        range("num_mels", self.num_mels, 1, LIMITS.max_mels)?;
        range("upsample_initial_channel", self.upsample_initial_channel, 1, LIMITS.max_channels)?;
        range("number of upsampling stages", self.upsample_rates.len(), 1, LIMITS.max_list)?;
        for (name, list) in [
            ("upsample_rates", &self.upsample_rates),
            ("upsample_kernel_sizes", &self.upsample_kernel_sizes),
            ("resblock_kernel_sizes", &self.resblock_kernel_sizes),
            ("grc_kernel_sizes", &self.grc_kernel_sizes),
        ] {
            range(&format!("number of {name}"), list.len(), 0, LIMITS.max_list)?;
            for v in list.iter() {
                range(&format!("an entry of {name}"), *v, 1, LIMITS.max_kernel)?;
            }
        }
        range("number of resblock_dilation_sizes", self.resblock_dilation_sizes.len(), 0, LIMITS.max_list)?;
        for d in self.resblock_dilation_sizes.iter() {
            range("number of dilations in a resblock", d.len(), 1, LIMITS.max_list)?;
            for v in d {
                range("a dilation", *v, 1, LIMITS.max_kernel)?;
            }
        }
        for (name, s) in [("lrelu_slope", Some(self.lrelu_slope)), ("final_lrelu_slope", Some(self.final_lrelu_slope)), ("grc_final_lrelu_slope", self.grc_final_lrelu_slope)] {
            if let Some(s) = s
                && !(0.0..=1.0).contains(&s)
            {
                return bad(format!("{name} = {s} is outside 0..=1"));
            }
        }
        if !self.fmin.is_finite() || self.fmin < 0.0 || self.fmax.is_some_and(|f| !f.is_finite() || f > self.sampling_rate as f64 / 2.0) {
            return bad(format!("fmin/fmax must lie within 0..={} Hz (half the sampling rate)", self.sampling_rate / 2));
        }
        if self.upsample_rates.is_empty() {
            return bad("upsample_rates is empty".into());
        }
        if self.upsample_rates.len() != self.upsample_kernel_sizes.len() {
            return bad(format!(
                "upsample_rates has {} entries but upsample_kernel_sizes has {}",
                self.upsample_rates.len(),
                self.upsample_kernel_sizes.len()
            ));
        }
        for (r, k) in self.upsample_rates.iter().zip(&self.upsample_kernel_sizes) {
            if *r == 0 || k < r || (k - r) % 2 != 0 {
                return bad(format!("upsample kernel {k} with rate {r}: need kernel >= rate and (kernel - rate) even"));
            }
        }
        if self.upsample_initial_channel >> self.upsample_rates.len() == 0 {
            return bad("upsample_initial_channel too small for the number of upsampling stages".into());
        }
        if self.upsample_factor() != self.hop_size {
            return bad(format!(
                "the upsampling rates multiply to {} but hop_size is {}: the audio would play at the wrong speed",
                self.upsample_factor(),
                self.hop_size
            ));
        }
        if self.num_mels == 0 || self.n_fft == 0 || self.win_size == 0 || self.win_size > self.n_fft {
            return bad("num_mels, n_fft and win_size must be positive with win_size <= n_fft".into());
        }
        if self.sampling_rate == 0 || self.fmax_hz() <= self.fmin {
            return bad("sampling_rate must be positive and fmax > fmin".into());
        }
        match family {
            Family::HifiGanV1 | Family::HifiGanV3 => {
                if self.causal {
                    return bad("\"causal\": true is defined for the GRC-MRF generator (\"resblock\": \"grc\") only".into());
                }
                if self.resblock_kernel_sizes.is_empty()
                    || self.resblock_kernel_sizes.len() != self.resblock_dilation_sizes.len()
                {
                    return bad("resblock_kernel_sizes and resblock_dilation_sizes must be non-empty and of equal length".into());
                }
            }
            Family::GrcMrf => {
                if self.grc_kernel_sizes.is_empty() || self.grc_kernel_sizes.iter().any(|k| k % 2 == 0) {
                    return bad("grc_kernel_sizes must be non-empty odd kernel sizes".into());
                }
            }
        }
        Ok(())
    }

    /// A short stable hash of the config (for reports).
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(serde_json::to_vec(self).expect("config serialises"));
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}
