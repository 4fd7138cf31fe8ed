//! Test signals and measurements.

/// A deterministic speech-like test signal: a harmonic source with a slowly moving pitch and
/// an amplitude envelope, so every sample differs from its neighbours (alignment is unambiguous).
pub fn test_signal(len: usize, sample_rate: f32, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(747796405).wrapping_add(2891336453);
    let mut phase = 0.0f32;
    (0..len)
        .map(|n| {
            let t = n as f32 / sample_rate;
            let f0 = 140.0 + 30.0 * (2.0 * std::f32::consts::PI * 1.3 * t).sin();
            phase += f0 / sample_rate;
            let mut x = 0.0;
            for h in 1..6 {
                x += (2.0 * std::f32::consts::PI * h as f32 * phase).sin() / h as f32;
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f32 / u32::MAX as f32 - 0.5) * 0.05;
            0.3 * x * (0.6 + 0.4 * (2.0 * std::f32::consts::PI * 3.0 * t).sin()) + noise
        })
        .collect()
}

/// Lag (in samples, 0..=max_lag) at which `y` best matches `x` delayed: argmax of the
/// cross-correlation sum x[n] * y[n + lag].
pub fn best_lag(x: &[f32], y: &[f32], max_lag: usize) -> usize {
    let mut best = (0usize, f64::MIN);
    for lag in 0..=max_lag {
        let mut acc = 0.0f64;
        for n in 0..x.len().min(y.len().saturating_sub(lag)) {
            acc += x[n] as f64 * y[n + lag] as f64;
        }
        if acc > best.1 {
            best = (lag, acc);
        }
    }
    best.0
}

/// Lag (in samples, −max_lag..=max_lag) of the cross-correlation peak of `y` against `x`
/// (positive: `y` lags `x`).
pub fn peak_lag(x: &[f32], y: &[f32], max_lag: i64) -> i64 {
    let n = x.len().min(y.len()) as i64;
    let mut best = (0i64, f64::MIN);
    for lag in -max_lag..=max_lag {
        let mut acc = 0.0f64;
        for i in (-lag).max(0)..(n - lag).min(n) {
            acc += x[i as usize] as f64 * y[(i + lag) as usize] as f64;
        }
        if acc > best.1 {
            best = (lag, acc);
        }
    }
    best.0
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The host-test-slots build's output around one Original→Modified switch: the delayed mono
/// input `mono` (already shifted by `latency`), with Original = +signal, Modified = −signal and
/// an equal-power crossfade of `fade` samples centred on input sample `t` (output t + latency).
pub fn expected_mode_switch(mono: &[f32], latency: u64, t: u64, fade: u64) -> Vec<f32> {
    (0..mono.len() as u64)
        .map(|n| {
            let x = mono[n as usize];
            let Some(i) = n.checked_sub(latency) else { return x };
            let w = ((i as f64 - t as f64 + fade as f64 / 2.0) / fade as f64).clamp(0.0, 1.0) as f32;
            let a = w * std::f32::consts::FRAC_PI_2;
            x * (a.cos() - a.sin())
        })
        .collect()
}

/// The Spanish clip (tests/data, 16 kHz) at `rate`, with 2 s of silence after it.
pub fn spanish_clip(rate: u32) -> Vec<f32> {
    let mut r = hound::WavReader::open(crate::workspace_root().join("tests/data/es_picovoice_bat_test_es.wav")).unwrap();
    assert_eq!(r.spec().sample_rate, 16_000);
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    let mut x = engine::stream::resample_whole(&clip, 16_000, rate);
    x.extend(std::iter::repeat_n(0.0, 2 * rate as usize));
    x
}

/// The first sample where `a` and `b` differ in any bit (over their common length).
pub fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
}
