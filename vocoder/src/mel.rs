//! The HiFi-GAN mel front end, exactly as the reference `meldataset.mel_spectrogram`:
//! reflect-pad (n_fft − hop)/2 on both sides, STFT with center=False and a periodic Hann window of
//! `win_size` (zero-padded to n_fft, centred), magnitude sqrt(re² + im² + 1e−9), librosa's Slaney
//! mel basis, log(clamp(x, 1e−5)).
//!
//! Computed in f64 (the FFT and the mel projection): PyTorch's own f32 result is ~1e-4 from the
//! exact value in quiet bins, so f64 keeps us within that of the reference.
//!
//! Streaming-capable: [`MelFrontEnd::frame_into`] computes one frame from a window of the padded
//! signal, so an engine can produce frames as audio arrives ([`MelFrontEnd::reflect_pad`] is for
//! whole signals).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::config::VocoderConfig;

pub struct MelFrontEnd {
    pub n_fft: usize,
    pub hop: usize,
    pub num_mels: usize,
    window: Vec<f64>,
    /// [num_mels][n_fft/2 + 1], row-major (librosa's f32 values, held as f64).
    basis: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

fn hz_to_mel_slaney(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
}

fn mel_to_hz_slaney(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney"), computed in f64
/// and stored as f32 like librosa's default dtype.
pub fn slaney_mel_basis(sr: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fftfreqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * sr / n_fft as f64).collect();
    let (mmin, mmax) = (hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax));
    let mel_f: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz_slaney(mmin + (mmax - mmin) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut w = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let fdiff_lo = mel_f[m + 1] - mel_f[m];
        let fdiff_hi = mel_f[m + 2] - mel_f[m + 1];
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (b, f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[m] - f) / fdiff_lo;
            let upper = (mel_f[m + 2] - f) / fdiff_hi;
            w[m * n_bins + b] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

impl MelFrontEnd {
    pub fn new(cfg: &VocoderConfig) -> Self {
        let n_fft = cfg.n_fft;
        // torch.hann_window(win_size) is periodic; torch.stft centres it in n_fft with zeros.
        let mut window = vec![0f64; n_fft];
        let off = (n_fft - cfg.win_size) / 2;
        for i in 0..cfg.win_size {
            // torch builds the window in f32.
            let v = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / cfg.win_size as f64).cos();
            window[off + i] = v as f32 as f64;
        }
        let basis = slaney_mel_basis(cfg.sampling_rate as f64, n_fft, cfg.num_mels, cfg.fmin, cfg.fmax_hz())
            .into_iter()
            .map(f64::from)
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Self { n_fft, hop: cfg.hop_size, num_mels: cfg.num_mels, window, basis, fft }
    }

    /// Samples of padding on each side.
    pub fn pad(&self) -> usize {
        (self.n_fft - self.hop) / 2
    }

    /// Number of frames for a signal of `len` samples: floor(len / hop) for the reference padding.
    pub fn frames_for(&self, len: usize) -> usize {
        let padded = len + 2 * self.pad();
        if padded < self.n_fft { 0 } else { 1 + (padded - self.n_fft) / self.hop }
    }

    /// Reflect padding as torch's `F.pad(mode="reflect")` (the edge sample is not repeated).
    pub fn reflect_pad(&self, x: &[f32]) -> Vec<f32> {
        let p = self.pad();
        let n = x.len() as isize;
        (-(p as isize)..n + p as isize)
            .map(|i| {
                let mut j = i;
                if n <= 1 {
                    return x.first().copied().unwrap_or(0.0);
                }
                // Fold repeatedly for pads longer than the signal.
                loop {
                    if j < 0 {
                        j = -j;
                    } else if j >= n {
                        j = 2 * (n - 1) - j;
                    } else {
                        break;
                    }
                }
                x[j as usize]
            })
            .collect()
    }

    /// One log-mel frame from `n_fft` samples of the padded signal.
    pub fn frame_into(&self, segment: &[f32], scratch: &mut MelScratch, out: &mut [f32]) {
        debug_assert_eq!(segment.len(), self.n_fft);
        for ((d, s), w) in scratch.input.iter_mut().zip(segment).zip(&self.window) {
            *d = *s as f64 * w;
        }
        self.fft
            .process_with_scratch(&mut scratch.input, &mut scratch.spectrum, &mut scratch.fft_scratch)
            .expect("FFT sizes are fixed at construction");
        for (m, c) in scratch.mag.iter_mut().zip(&scratch.spectrum) {
            *m = (c.re * c.re + c.im * c.im + 1e-9).sqrt();
        }
        let n_bins = self.n_fft / 2 + 1;
        for (i, o) in out.iter_mut().enumerate() {
            let row = &self.basis[i * n_bins..(i + 1) * n_bins];
            let v: f64 = row.iter().zip(&scratch.mag).map(|(a, b)| a * b).sum();
            *o = v.max(1e-5).ln() as f32;
        }
    }

    pub fn scratch(&self) -> MelScratch {
        MelScratch {
            input: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            fft_scratch: self.fft.make_scratch_vec(),
            mag: vec![0.0; self.n_fft / 2 + 1],
        }
    }

    /// Log-mel of a whole signal: `[num_mels][frames]` row-major (mel-bin major, like the
    /// model's `[num_mels, T]` input) and the frame count.
    pub fn mel(&self, audio: &[f32]) -> (Vec<f32>, usize) {
        let padded = self.reflect_pad(audio);
        let frames = self.frames_for(audio.len());
        let mut out = vec![0f32; self.num_mels * frames];
        let mut scratch = self.scratch();
        let mut col = vec![0f32; self.num_mels];
        for t in 0..frames {
            self.frame_into(&padded[t * self.hop..t * self.hop + self.n_fft], &mut scratch, &mut col);
            for (m, v) in col.iter().enumerate() {
                out[m * frames + t] = *v;
            }
        }
        (out, frames)
    }
}

pub struct MelScratch {
    input: Vec<f64>,
    spectrum: Vec<realfft::num_complex::Complex<f64>>,
    fft_scratch: Vec<realfft::num_complex::Complex<f64>>,
    mag: Vec<f64>,
}
