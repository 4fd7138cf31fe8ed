//! The default Original model (HiFi-GAN V1 universal, fetched by `models fetch`): strict load,
//! health, and parity with PyTorch on real speech. Random weights of the same shapes must fail
//! the health probe.

mod common;
use common::*;

use std::collections::BTreeMap;

use candle_core::Device;
use vocoder::arch::expected_params;
use vocoder::health::{self, judge, probe_signal};
use vocoder::mel::MelFrontEnd;
use vocoder::model::load_vocoder;
use vocoder::weights::Weights;
use vocoder::{Vocoder, VocoderConfig};

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let sig: f64 = reference.iter().map(|x| (*x as f64).powi(2)).sum();
    let err: f64 = reference.iter().zip(test).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    10.0 * (sig / err.max(1e-30)).log10()
}

#[test]
fn universal_loads_clean_is_healthy_and_matches_pytorch() {
    let loaded = load_vocoder(&universal_model(), None, &Device::Cpu).expect("universal loads");
    let r = &loaded.report;
    assert!(r.is_clean());
    assert_eq!((r.checkpoint_keys, r.model_keys, r.common), (156, 156, 156));
    assert!(r.missing_in_checkpoint.is_empty() && r.missing_in_model.is_empty() && r.shape_mismatches.is_empty());

    let verdict = health::probe(&loaded.vocoder).unwrap();
    assert!(verdict.healthy, "{verdict}");

    let (shape, mel) = tensor(&fixtures().join("mel_ref.safetensors"), "mel");
    let (_, want) = tensor(&fixtures().join("universal_ref.safetensors"), "audio");
    let got = loaded.vocoder.synthesize(&mel, shape[2]).unwrap();
    let snr = snr_db(&want, &got);
    let d = max_abs_diff(&got, &want);
    eprintln!("universal vs PyTorch on real speech: SNR {snr:.1} dB, max abs error {d:.2e}");
    assert!(snr >= 60.0, "SNR {snr:.1} dB < 60 dB");
}

fn random_model(cfg: &VocoderConfig, std: f32, seed: u64) -> Vocoder {
    let mut state = seed;
    let mut next = move || {
        // Box-Muller over a 64-bit LCG: deterministic, no extra crates.
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u1 = ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u2 = ((state >> 11) as f64) / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    };
    let mut data = BTreeMap::new();
    for (k, shape) in expected_params(cfg).unwrap() {
        let n: usize = shape.iter().product();
        // Kaiming-like scale per layer when std <= 0, else a fixed std.
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let s = if std <= 0.0 { 1.0 / (fan_in as f32).sqrt() } else { std };
        data.insert(k, (shape, (0..n).map(|_| next() * s).collect()));
    }
    Vocoder::new(cfg.clone(), &Weights::from_f32(&data, &Device::Cpu).unwrap(), &Device::Cpu).unwrap()
}

#[test]
fn random_weights_of_the_same_shapes_fail_the_probe() {
    let loaded = load_vocoder(&universal_model(), None, &Device::Cpu).unwrap();
    let cfg = loaded.vocoder.config().clone();
    // HiFi-GAN's own init (N(0, 0.01)) and a Kaiming-like init: both untrained.
    for (std, seed) in [(0.01f32, 1u64), (0.0, 2)] {
        let v = random_model(&cfg, std, seed);
        let verdict = health::probe(&v).unwrap();
        eprintln!("random weights (std {std}): {verdict}");
        assert!(!verdict.healthy, "random weights passed the probe: {verdict}");
    }
}

#[test]
fn white_noise_output_is_flagged_as_flat_bands() {
    let cfg = universal_config();
    let front = MelFrontEnd::new(&cfg);
    let probe = probe_signal(cfg.sampling_rate, 1.0);
    let (mel, frames) = front.mel(&probe);
    let mut state = 12345u32;
    let noise: Vec<f32> = (0..probe.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 0.5
        })
        .collect();
    let v = judge(&front, &mel, frames, &noise);
    eprintln!("white noise: {v}");
    assert!(!v.healthy);
    assert!(v.reasons.iter().any(|r| r.contains("white-noise") || r.contains("flat horizontal bands")), "{v}");
    // The probe itself, passed through unchanged, is healthy.
    let v = judge(&front, &mel, frames, &probe);
    assert!(v.healthy, "identity: {v}");
    // Silence and NaN are caught.
    assert!(!judge(&front, &mel, frames, &vec![0.0; probe.len()]).healthy);
    let mut nan = probe.clone();
    nan[100] = f32::NAN;
    let v = judge(&front, &mel, frames, &nan);
    assert!(!v.healthy && v.reasons.iter().any(|r| r.contains("NaN")));
}
