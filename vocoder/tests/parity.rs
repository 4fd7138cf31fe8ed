//! Parity with PyTorch: tiny random-weight models of each family, in every checkpoint format,
//! against the outputs of the reference code (scripts/make_fixtures.py). Max abs error 1e-4.

mod common;
use common::*;

use candle_core::Device;
use vocoder::mel::MelFrontEnd;
use vocoder::model::load_vocoder;
use vocoder::{Family, VocoderConfig};

const TOL: f32 = 1e-4;

fn check(model: &str, file: &str, family: Family) {
    let dir = fixtures().join(model);
    let loaded = load_vocoder(&dir.join(file), None, &Device::Cpu).unwrap_or_else(|e| panic!("{model}/{file}: {e}"));
    assert!(loaded.report.is_clean());
    assert_eq!(loaded.vocoder.family(), family);
    let (mel_shape, mel) = tensor(&dir.join("io.safetensors"), "mel");
    let (_, want) = tensor(&dir.join("io.safetensors"), "audio");
    let got = loaded.vocoder.synthesize(&mel, mel_shape[2]).unwrap();
    assert_eq!(got.len(), mel_shape[2] * loaded.vocoder.config().hop_size);
    let d = max_abs_diff(&got, &want);
    assert!(d <= TOL, "{model}/{file}: max abs error {d} > {TOL}");
}

#[test]
fn hifigan_v1_all_formats_match_pytorch() {
    for f in ["model.safetensors", "model_zip.pth", "model_legacy.pth"] {
        check("v1_tiny", f, Family::HifiGanV1);
    }
}

#[test]
fn hifigan_v3_all_formats_match_pytorch() {
    for f in ["model.safetensors", "model_zip.pth", "model_legacy.pth"] {
        check("v3_tiny", f, Family::HifiGanV3);
    }
}

#[test]
fn grc_mrf_all_formats_match_pytorch() {
    for f in ["model.safetensors", "model_zip.pth", "model_legacy.pth"] {
        check("grc_tiny", f, Family::GrcMrf);
    }
}

/// The causal GRC-MRF (config `"causal": true`, the low-latency student's architecture): equal
/// to the reference's left-padded convs and cut transposed convs, and with no streaming lag.
#[test]
fn causal_grc_mrf_matches_pytorch_and_has_no_lookahead() {
    check("grc_causal_tiny", "model.safetensors", Family::GrcMrf);
    let causal = load_vocoder(&fixtures().join("grc_causal_tiny/model.safetensors"), None, &Device::Cpu).unwrap().vocoder;
    assert!(causal.config().causal);
    assert_eq!(causal.stream_lag(), 0, "a causal generator owes no look-ahead");
    let centred = load_vocoder(&fixtures().join("grc_tiny/model.safetensors"), None, &Device::Cpu).unwrap().vocoder;
    assert!(!centred.config().causal && centred.stream_lag() > 0);
    // Causality in our forward too: a change from frame 10 on leaves the audio before it alone.
    let (mel_shape, mel) = tensor(&fixtures().join("grc_causal_tiny/io.safetensors"), "mel");
    let frames = mel_shape[2];
    let mut later = mel.clone();
    for (i, v) in later.iter_mut().enumerate() {
        if i % frames >= 10 {
            *v += 1.0;
        }
    }
    let (a, b) = (causal.synthesize(&mel, frames).unwrap(), causal.synthesize(&later, frames).unwrap());
    let hop = causal.config().hop_size;
    assert_eq!(a[..10 * hop], b[..10 * hop]);
    assert!(max_abs_diff(&a[10 * hop..], &b[10 * hop..]) > 1e-3);
    // The field is the GRC-MRF's only: a HiFi-GAN config that claims it is refused.
    let mut v1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("v1_tiny/config.json")).unwrap()).unwrap();
    v1["causal"] = true.into();
    let e = VocoderConfig::from_json(&v1.to_string()).unwrap_err().to_string();
    assert!(e.contains("causal"), "{e}");
    // A centred config serialises without the field (its hash is what it was).
    assert!(!centred.config().to_json().contains("causal"));
}

#[test]
fn normalisations_are_reported_as_notes() {
    let v1 = load_vocoder(&fixtures().join("v1_tiny/model_zip.pth"), None, &Device::Cpu).unwrap();
    let notes = v1.report.notes.join("\n");
    assert!(notes.contains("nested dict `generator`"), "{notes}");
    assert!(notes.contains("prefix `module.`"), "{notes}");
    assert!(notes.contains("weight_g/weight_v"), "{notes}");
    assert!(notes.contains("steps"), "{notes}");
    let v3 = load_vocoder(&fixtures().join("v3_tiny/model_zip.pth"), None, &Device::Cpu).unwrap();
    let notes = v3.report.notes.join("\n");
    assert!(notes.contains("nested dict `state_dict`") && notes.contains("prefix `generator.`"), "{notes}");
    assert!(notes.contains("parametrizations"), "{notes}");
    let legacy = load_vocoder(&fixtures().join("v3_tiny/model_legacy.pth"), None, &Device::Cpu).unwrap();
    assert!(legacy.report.notes.iter().any(|n| n.contains("legacy")));
}

#[test]
fn fp16_weights_load_as_f32() {
    let dir = fixtures();
    let loaded = load_vocoder(&dir.join("broken/fp16.safetensors"), None, &Device::Cpu).expect("fp16 loads");
    let (mel_shape, mel) = tensor(&dir.join("grc_tiny/io.safetensors"), "mel");
    let (_, want) = tensor(&dir.join("grc_tiny/io.safetensors"), "audio");
    let got = loaded.vocoder.synthesize(&mel, mel_shape[2]).unwrap();
    // fp16 rounding of the weights (not of the computation): close, not exact.
    let d = max_abs_diff(&got, &want);
    assert!(d < 2e-2, "fp16 model drifted by {d}");
}

#[test]
fn mel_front_end_matches_reference_on_real_speech() {
    let file = fixtures().join("mel_ref.safetensors");
    let (_, audio) = tensor(&file, "audio");
    for (name, cfg) in [
        ("mel", universal_config()),
        (
            "mel_small",
            VocoderConfig::from_json(&std::fs::read_to_string(fixtures().join("v1_tiny/config.json")).unwrap()).unwrap(),
        ),
    ] {
        let (shape, want) = tensor(&file, name);
        let front = MelFrontEnd::new(&cfg);
        let (got, frames) = front.mel(&audio);
        assert_eq!(frames, shape[2], "{name}: frame count");
        assert_eq!(front.frames_for(audio.len()), frames);
        let d = max_abs_diff(&got, &want);
        assert!(d <= TOL, "{name}: max abs error {d} > {TOL}");
    }
}

#[test]
fn config_refuses_upsampling_that_does_not_match_hop() {
    let mut cfg = universal_config();
    cfg.hop_size = 200;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("wrong speed"), "{e}");
}
