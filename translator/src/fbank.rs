//! StreamSpeech's speech front end: Kaldi filter banks exactly as `torchaudio.compliance.kaldi.fbank`
//! computes them with fairseq's settings (`extract_fbank_features`: the waveform × 2^15, 80 bins,
//! every other option at torchaudio's default), then global CMVN from the model's `gcmvn.npz`.
//!
//! Per frame (25 ms window, 10 ms shift, `snip_edges`: only whole windows): remove the DC offset,
//! pre-emphasis 0.97 (the first sample against itself), Povey window (a symmetric Hann to the power
//! 0.85), zero-pad to the next power of two (512 at 16 kHz), power spectrum, triangular mel filters
//! on Kaldi's mel scale (1127 ln(1 + f/700)) from 20 Hz to Nyquist, natural log floored at f32's
//! epsilon.
//!
//! Computed in f64: torchaudio's f32 result is within ~1e−6 relative of the exact value, so the
//! f64 result is within that of the reference.

use std::path::Path;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::error::TranslatorError;

/// The front-end settings (fairseq's: torchaudio defaults with 80 bins).
#[derive(Debug, Clone, PartialEq)]
pub struct FbankConfig {
    pub sample_rate: u32,
    pub num_mel_bins: usize,
    pub frame_length_ms: f64,
    pub frame_shift_ms: f64,
    pub preemphasis: f64,
    pub low_freq: f64,
    /// ≤ 0: offset from Nyquist (Kaldi's convention; 0 = Nyquist).
    pub high_freq: f64,
}

impl Default for FbankConfig {
    fn default() -> Self {
        FbankConfig { sample_rate: 16_000, num_mel_bins: 80, frame_length_ms: 25.0, frame_shift_ms: 10.0, preemphasis: 0.97, low_freq: 20.0, high_freq: 0.0 }
    }
}

pub struct Fbank {
    pub cfg: FbankConfig,
    /// Samples per window and per shift.
    pub window_len: usize,
    pub shift: usize,
    padded: usize,
    window: Vec<f64>,
    /// Per mel bin: first FFT bin and its weights.
    banks: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn RealToComplex<f64>>,
}

fn mel(f: f64) -> f64 {
    1127.0 * (1.0 + f / 700.0).ln()
}

impl Fbank {
    pub fn new(cfg: FbankConfig) -> Result<Self, TranslatorError> {
        let sr = cfg.sample_rate as f64;
        if !(1_000..=384_000).contains(&cfg.sample_rate) || cfg.num_mel_bins == 0 || cfg.num_mel_bins > 512 {
            return Err(TranslatorError::Config(format!("fbank: {} Hz with {} bins is out of range", cfg.sample_rate, cfg.num_mel_bins)));
        }
        // torchaudio truncates: int(sample_rate * ms / 1000).
        let window_len = (sr * cfg.frame_length_ms / 1000.0) as usize;
        let shift = (sr * cfg.frame_shift_ms / 1000.0) as usize;
        if window_len < 2 || shift == 0 {
            return Err(TranslatorError::Config("fbank: window and shift must be positive".into()));
        }
        let padded = window_len.next_power_of_two();
        let window = (0..window_len)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (window_len - 1) as f64).cos()).powf(0.85))
            .collect();
        let nyquist = sr / 2.0;
        let high = if cfg.high_freq <= 0.0 { cfg.high_freq + nyquist } else { cfg.high_freq };
        if !(0.0..nyquist).contains(&cfg.low_freq) || high <= cfg.low_freq || high > nyquist {
            return Err(TranslatorError::Config(format!("fbank: band {}..{high} Hz does not fit 0..{nyquist} Hz", cfg.low_freq)));
        }
        let (mel_low, mel_high) = (mel(cfg.low_freq), mel(high));
        let delta = (mel_high - mel_low) / (cfg.num_mel_bins + 1) as f64;
        let bin_width = sr / padded as f64;
        let n_fft_bins = padded / 2; // Kaldi leaves out the Nyquist bin
        let banks = (0..cfg.num_mel_bins)
            .map(|b| {
                let left = mel_low + b as f64 * delta;
                let center = mel_low + (b + 1) as f64 * delta;
                let right = mel_low + (b + 2) as f64 * delta;
                let w: Vec<f64> = (0..n_fft_bins)
                    .map(|k| {
                        let m = mel(bin_width * k as f64);
                        let up = (m - left) / (center - left);
                        let down = (right - m) / (right - center);
                        up.min(down).max(0.0)
                    })
                    .collect();
                let first = w.iter().position(|v| *v > 0.0).unwrap_or(0);
                let last = w.iter().rposition(|v| *v > 0.0).map_or(first, |l| l + 1);
                (first, w[first..last].to_vec())
            })
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(padded);
        Ok(Fbank { cfg, window_len, shift, padded, window, banks, fft })
    }

    /// Filter-bank channels per frame.
    pub fn bins(&self) -> usize {
        self.cfg.num_mel_bins
    }

    /// Samples between frame starts.
    pub fn shift(&self) -> usize {
        self.shift
    }

    /// Frames for `n` samples (`snip_edges`: whole windows only).
    pub fn frames(&self, n: usize) -> usize {
        if n < self.window_len { 0 } else { 1 + (n - self.window_len) / self.shift }
    }

    /// Filter banks of `wave` (samples in −1..1 at `cfg.sample_rate`), row-major
    /// `[frames][num_mel_bins]`, and the frame count.
    pub fn compute(&self, wave: &[f32]) -> (Vec<f32>, usize) {
        let frames = self.frames(wave.len());
        let bins = self.cfg.num_mel_bins;
        let mut out = Vec::with_capacity(frames * bins);
        let mut buf = vec![0f64; self.padded];
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; spec.len()];
        let floor = f32::EPSILON as f64;
        for f in 0..frames {
            let x = &wave[f * self.shift..f * self.shift + self.window_len];
            // Kaldi compliance: 16-bit integer scale (fairseq multiplies by 2^15).
            let mean = x.iter().map(|v| *v as f64 * 32768.0).sum::<f64>() / self.window_len as f64;
            for (b, v) in buf.iter_mut().zip(x) {
                *b = *v as f64 * 32768.0 - mean;
            }
            for i in (1..self.window_len).rev() {
                buf[i] -= self.cfg.preemphasis * buf[i - 1];
            }
            buf[0] -= self.cfg.preemphasis * buf[0];
            for (b, w) in buf.iter_mut().zip(&self.window) {
                *b *= w;
            }
            buf[self.window_len..].iter_mut().for_each(|v| *v = 0.0);
            self.fft.process_with_scratch(&mut buf, &mut spec, &mut scratch).expect("sizes match the plan");
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (first, w) in &self.banks {
                let e: f64 = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
                out.push(e.max(floor).ln() as f32);
            }
        }
        (out, frames)
    }
}

/// Global CMVN: `(x − mean) / std` per bin, from the model's `gcmvn.npz` (`mean`, `std`).
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalCmvn {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl GlobalCmvn {
    /// Reads `gcmvn.npz` (a zip of `mean.npy` and `std.npy`), bounded: at most 1 MB, each
    /// array 1-d of `bins` float32/float64 values, every std positive.
    pub fn from_npz(path: &Path, bins: usize) -> Result<Self, TranslatorError> {
        let bytes = vocoder::files::read_limited(path, 1 << 20, "gcmvn.npz")?;
        let bad = |m: String| TranslatorError::Data(format!("{}: {m}", path.display()));
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(format!("not an .npz archive ({e})")))?;
        let mut array = |name: &str| -> Result<Vec<f32>, TranslatorError> {
            let f = zip.by_name(&format!("{name}.npy")).map_err(|_| bad(format!("no `{name}` array")))?;
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, 1 << 20), &mut b).map_err(|e| bad(e.to_string()))?;
            let v = vocoder::units::read_npy_f32(&b).map_err(|e| bad(format!("`{name}`: {e}")))?;
            if v.len() != bins {
                return Err(bad(format!("`{name}` has {} values, the front end has {bins} bins", v.len())));
            }
            Ok(v)
        };
        let (mean, std) = (array("mean")?, array("std")?);
        if mean.iter().chain(&std).any(|v| !v.is_finite()) || std.iter().any(|s| *s <= 0.0) {
            return Err(bad("mean/std must be finite and std positive".into()));
        }
        Ok(GlobalCmvn { mean, std })
    }

    /// Normalises row-major `[frames][bins]` features in place (f32, as numpy does upstream).
    pub fn apply(&self, feats: &mut [f32]) {
        let bins = self.mean.len();
        for row in feats.chunks_exact_mut(bins) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
    }
}
