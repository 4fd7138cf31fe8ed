//! The health probe: after a model loads, it vocodes a fixed speech-like mel and looks at the
//! mel-spectrogram of its own output. A model that outputs white-noise-like sound — the seed's
//! flat horizontal bands — or silence, or non-finite samples, is marked unhealthy with a reason
//! a person can read, and the plugin will not use it.

use serde::Serialize;

use crate::error::VocoderError;
use crate::mel::MelFrontEnd;
use crate::model::Vocoder;

/// Thresholds, calibrated on the universal HiFi-GAN (healthy) and same-shape random weights
/// (unhealthy); the measured values are in the tests.
pub const MAX_SPECTRAL_FLATNESS: f64 = 0.5;
pub const MIN_BIN_VARIANCE_RATIO: f64 = 0.25;
pub const MIN_MEL_CORRELATION: f64 = 0.5;
pub const MIN_RMS: f64 = 1e-3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthMetrics {
    pub finite: bool,
    pub rms: f64,
    pub peak: f64,
    /// Mean over frames of the output mel spectrum's flatness (geometric / arithmetic mean of
    /// the linear mel energies): ~1 for white noise, low for speech.
    pub spectral_flatness: f64,
    /// Mean over mel bins of the variance over time of the output log-mel ("flat horizontal
    /// bands" = near zero) ...
    pub bin_variance: f64,
    /// ... and the same for the probe input, for scale.
    pub input_bin_variance: f64,
    /// Pearson correlation of input and output log-mel: does the output follow the input?
    pub mel_correlation: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthVerdict {
    pub healthy: bool,
    pub reasons: Vec<String>,
    pub metrics: HealthMetrics,
}

impl std::fmt::Display for HealthVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        if self.healthy {
            write!(f, "healthy")?;
        } else {
            write!(f, "UNHEALTHY: {}", self.reasons.join("; "))?;
        }
        write!(
            f,
            " (rms {:.4}, peak {:.3}, spectral flatness {:.3}, bin variance {:.3} vs input {:.3}, mel correlation {:.3})",
            m.rms, m.peak, m.spectral_flatness, m.bin_variance, m.input_bin_variance, m.mel_correlation
        )
    }
}

/// A fixed speech-like probe at `sr`: a glottal pulse train with a gliding pitch through
/// vowel-like formant resonators, syllable envelopes and short pauses (deterministic).
pub fn probe_signal(sr: u32, seconds: f64) -> Vec<f32> {
    let n = (sr as f64 * seconds) as usize;
    let sr = sr as f64;
    // (F1, F2, F3) of /a/, /i/, /u/, /e/.
    let vowels = [(730.0, 1090.0, 2440.0), (270.0, 2290.0, 3010.0), (300.0, 870.0, 2240.0), (530.0, 1840.0, 2480.0)];
    let mut phase = 0.0f64;
    let mut source = vec![0f64; n];
    for (i, s) in source.iter_mut().enumerate() {
        let t = i as f64 / sr;
        let f0 = 110.0 + 60.0 * (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 0.7 * t).sin());
        phase += f0 / sr;
        if phase >= 1.0 {
            phase -= 1.0;
            *s = 1.0;
        }
    }
    let mut out = vec![0f32; n];
    let syllable = 0.25; // seconds per vowel
    // Two-pole resonators per formant, parameters switched per syllable.
    let mut states = [[0f64; 2]; 3];
    for i in 0..n {
        let t = i as f64 / sr;
        let k = ((t / syllable) as usize) % vowels.len();
        let (f1, f2, f3) = vowels[k];
        let mut y = 0.0;
        for (j, (f, bw)) in [(f1, 80.0), (f2, 100.0), (f3, 120.0)].iter().enumerate() {
            let r = (-std::f64::consts::PI * bw / sr).exp();
            let a1 = 2.0 * r * (2.0 * std::f64::consts::PI * f / sr).cos();
            let a2 = -r * r;
            let v = source[i] * (1.0 - r) + a1 * states[j][0] + a2 * states[j][1];
            states[j][1] = states[j][0];
            states[j][0] = v;
            y += v / (j + 1) as f64;
        }
        // Syllable envelope with a short pause at the end of every other syllable.
        let pos = (t % syllable) / syllable;
        let env = (std::f64::consts::PI * pos).sin().powf(0.6) * if k % 2 == 1 && pos > 0.8 { 0.0 } else { 1.0 };
        out[i] = (y * env * 4.0) as f32;
    }
    let peak = out.iter().fold(0f32, |a, b| a.max(b.abs())).max(1e-9);
    out.iter_mut().for_each(|x| *x *= 0.5 / peak);
    out
}

fn stats(mel: &[f32], bins: usize, frames: usize) -> (f64, f64) {
    // (flatness, mean temporal variance per bin)
    let mut flat = 0.0;
    for t in 0..frames {
        let mut log_sum = 0.0;
        let mut sum = 0.0;
        for m in 0..bins {
            let e = (mel[m * frames + t] as f64).exp();
            log_sum += e.ln();
            sum += e;
        }
        let geo = (log_sum / bins as f64).exp();
        flat += geo / (sum / bins as f64).max(1e-30);
    }
    let mut var = 0.0;
    for m in 0..bins {
        let row = &mel[m * frames..(m + 1) * frames];
        let mean = row.iter().map(|v| *v as f64).sum::<f64>() / frames as f64;
        var += row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / frames as f64;
    }
    (flat / frames.max(1) as f64, var / bins as f64)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let ma = a.iter().map(|v| *v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|v| *v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (*x as f64 - ma, *y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 { 0.0 } else { sab / (saa * sbb).sqrt() }
}

/// Measures an output signal against the mel it was made from.
pub fn judge(front: &MelFrontEnd, input_mel: &[f32], input_frames: usize, audio: &[f32]) -> HealthVerdict {
    let finite = audio.iter().all(|x| x.is_finite());
    let clean: Vec<f32> = audio.iter().map(|x| if x.is_finite() { *x } else { 0.0 }).collect();
    let rms = (clean.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / clean.len().max(1) as f64).sqrt();
    let peak = clean.iter().fold(0f64, |a, b| a.max(b.abs() as f64));
    let (out_mel, out_frames) = front.mel(&clean);
    let bins = front.num_mels;
    let (spectral_flatness, bin_variance) = stats(&out_mel, bins, out_frames);
    let (_, input_bin_variance) = stats(input_mel, bins, input_frames);
    // Align frame counts before correlating (row by row).
    let frames = input_frames.min(out_frames);
    let mut a = Vec::with_capacity(bins * frames);
    let mut b = Vec::with_capacity(bins * frames);
    for m in 0..bins {
        a.extend_from_slice(&input_mel[m * input_frames..m * input_frames + frames]);
        b.extend_from_slice(&out_mel[m * out_frames..m * out_frames + frames]);
    }
    let mel_correlation = correlation(&a, &b);
    let metrics = HealthMetrics { finite, rms, peak, spectral_flatness, bin_variance, input_bin_variance, mel_correlation };
    let mut reasons = Vec::new();
    if !finite {
        reasons.push("output contains NaN or Inf samples".to_string());
    }
    if rms < MIN_RMS {
        reasons.push(format!("output is (near) silent: rms {rms:.2e} < {MIN_RMS:.0e}"));
    } else {
        if spectral_flatness > MAX_SPECTRAL_FLATNESS {
            reasons.push(format!(
                "white-noise-like spectrum: spectral flatness {spectral_flatness:.2} > {MAX_SPECTRAL_FLATNESS}"
            ));
        }
        if bin_variance < MIN_BIN_VARIANCE_RATIO * input_bin_variance {
            reasons.push(format!(
                "flat horizontal bands: mel bins barely change over time (variance {bin_variance:.3} < {MIN_BIN_VARIANCE_RATIO} x input's {input_bin_variance:.3})"
            ));
        }
        if mel_correlation < MIN_MEL_CORRELATION {
            reasons.push(format!(
                "output does not follow the input mel (correlation {mel_correlation:.2} < {MIN_MEL_CORRELATION})"
            ));
        }
    }
    HealthVerdict { healthy: reasons.is_empty(), reasons, metrics }
}

/// Runs the probe through `vocoder`.
pub fn probe(vocoder: &Vocoder) -> Result<HealthVerdict, VocoderError> {
    let cfg = vocoder.config();
    let front = MelFrontEnd::new(cfg);
    let signal = probe_signal(cfg.sampling_rate, 1.0);
    let (mel, frames) = front.mel(&signal);
    let audio = vocoder.synthesize(&mel, frames)?;
    Ok(judge(&front, &mel, frames, &audio))
}
