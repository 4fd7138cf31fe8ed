//! Strict loading: mismatched, corrupt and bad checkpoints are refused with a clear error,
//! never a panic, and never a model with weights that did not load.

mod common;
use common::*;

use candle_core::Device;
use vocoder::arch::infer;
use vocoder::checkpoint;
use vocoder::model::{Inspection, load_vocoder};
use vocoder::{Family, VocoderConfig, VocoderError};

#[test]
fn complex_grc_is_refused_with_every_extra_key_and_mismatch_named() {
    let path = fixtures().join("grc_complex/checkpoint.pth");
    let err = match load_vocoder(&path, None, &Device::Cpu) {
        Err(VocoderError::Mismatch(r)) => r,
        Err(e) => panic!("expected a mismatch report, got {e}"),
        Ok(_) => panic!("the complex GRC checkpoint loaded against the simple GRC config"),
    };
    let ckpt = checkpoint::load(&path).unwrap();
    assert_eq!(err.checkpoint_keys, 224);
    assert_eq!(err.model_keys, 44);
    assert_eq!(err.common, 44);
    assert!(err.missing_in_checkpoint.is_empty());
    assert_eq!(err.missing_in_model.len(), 180);
    // Every conv1/conv2 weight is grouped (and 12 of them also have the wrong kernel).
    assert_eq!(err.shape_mismatches.len(), 18);
    let text = err.to_string();
    for key in ckpt.tensors.keys().filter(|k| {
        k.contains("norm") || k.contains("lora") || k.contains("attention")
    }) {
        assert!(text.contains(key.as_str()), "report does not name {key}");
    }
    for m in &err.shape_mismatches {
        assert!(text.contains(&m.key), "report does not name mismatch {}", m.key);
    }
    assert!(text.contains("mrfs.1.convs.1.conv2.weight: checkpoint [8,2,3], model [8,8,5]"), "{text}");
    assert!(text.contains("mrfs.0: 72 / 12 keys, 3 blocks; convs.0: 24 / 4 params"), "{text}");
    let hints = err.hints.join("\n");
    for h in ["grouped", "groups=4", "kernel vs dilation", "normalisation", "LoRA", "attention"] {
        assert!(hints.contains(h), "hint about {h} missing: {hints}");
    }
}

#[test]
fn architecture_is_inferred_from_the_checkpoint_alone() {
    let c = checkpoint::load(&fixtures().join("grc_complex/checkpoint.pth")).unwrap();
    let a = infer(&c.shapes(), false);
    assert_eq!(a.family, Some(Family::GrcMrf));
    assert_eq!(a.stage_channels, vec![16, 8, 4]);
    assert_eq!(a.block_kernel_sizes, vec![3, 3, 3]);
    assert_eq!(a.groups, Some(4));
    assert_eq!(a.extra_layers.len(), 4);
    let cfg = VocoderConfig::from_json(&std::fs::read_to_string(fixtures().join("grc_complex/config.json")).unwrap()).unwrap();
    let d = a.disagreements(&cfg).join("\n");
    assert!(d.contains("grc_kernel_sizes: checkpoint [3, 3, 3], config [3, 5, 7]"), "{d}");

    let c = checkpoint::load(&fixtures().join("v3_tiny/model_legacy.pth")).unwrap();
    let a = infer(&c.shapes(), true);
    assert_eq!(a.family, Some(Family::HifiGanV3));
    assert_eq!(a.upsample_kernel_sizes, vec![8, 8]);
    assert_eq!(a.block_kernel_sizes, vec![3, 7]);
    assert_eq!(a.convs_per_resblock, Some(2));
}

#[test]
fn wrong_family_config_is_explained() {
    let err = match load_vocoder(
        &fixtures().join("v1_tiny/model.safetensors"),
        Some(&fixtures().join("grc_tiny/config.json")),
        &Device::Cpu,
    ) {
        Err(VocoderError::Mismatch(r)) => r,
        other => panic!("expected mismatch, got {:?}", other.err().map(|e| e.to_string())),
    };
    assert!(err.hints.iter().any(|h| h.contains("HiFi-GAN generator")), "{:?}", err.hints);
}

fn expect_err(file: &str) -> String {
    match load_vocoder(&fixtures().join("broken").join(file), None, &Device::Cpu) {
        Ok(_) => panic!("{file} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_file_is_a_clear_error() {
    let e = expect_err("truncated.safetensors");
    assert!(e.contains("truncated.safetensors") && e.contains("truncated or corrupt"), "{e}");
    // Truncated PyTorch files too (zip and legacy), at several lengths: errors, never panics.
    for f in ["grc_tiny/model_zip.pth", "grc_tiny/model_legacy.pth", "v1_tiny/model_legacy.pth"] {
        let bytes = std::fs::read(fixtures().join(f)).unwrap();
        for cut in [10, 100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
            let r = checkpoint::load_bytes(std::path::Path::new(f), &bytes[..cut]);
            assert!(r.is_err(), "{f} cut at {cut} loaded");
        }
    }
}

#[test]
fn wrong_dtype_is_a_clear_error() {
    let e = expect_err("wrong_dtype.safetensors");
    assert!(e.contains("final_conv.weight") && e.contains("i32") && e.contains("floating point"), "{e}");
}

#[test]
fn nan_weight_is_a_clear_error() {
    let e = expect_err("nan_weight.safetensors");
    assert!(e.contains("mrfs.1.convs.2.conv1.weight") && e.contains("non-finite"), "{e}");
}

#[test]
fn missing_tensor_is_reported() {
    let e = expect_err("missing_tensor.safetensors");
    assert!(e.contains("ups.1.bias") && e.contains("missing in checkpoint: 1"), "{e}");
}

#[test]
fn garbage_and_empty_files_are_errors() {
    for bytes in [&b""[..], b"hello", b"\x80\x02garbage-that-is-not-a-pickle", b"PK\x03\x04broken zip", &[0u8; 64][..]] {
        assert!(checkpoint::load_bytes(std::path::Path::new("x"), bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn inspect_verdicts() {
    let ok = Inspection::run(&fixtures().join("grc_complex/checkpoint.pth"), None, &Device::Cpu);
    assert!(!ok.ok());
    assert!(ok.report.as_ref().is_some_and(|r| !r.is_clean()));
    let json = serde_json::to_value(&ok).unwrap();
    assert_eq!(json["report"]["missing_in_model"].as_array().unwrap().len(), 180);
    assert!(json["inferred"]["groups"] == 4);
    // Tiny random models load (clean report) but are not healthy speech vocoders.
    let tiny = Inspection::run(&fixtures().join("grc_tiny/model.safetensors"), None, &Device::Cpu);
    assert!(tiny.report.as_ref().unwrap().is_clean());
    assert!(tiny.health.is_some());
    let broken = Inspection::run(&fixtures().join("broken/truncated.safetensors"), None, &Device::Cpu);
    assert!(broken.read_error.is_some() && !broken.ok());
}

#[test]
fn convert_round_trip_preserves_the_model() {
    let dir = std::env::temp_dir().join(format!("ssv-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("v1.safetensors");
    let ckpt = checkpoint::load(&fixtures().join("v1_tiny/model_legacy.pth")).unwrap();
    let cfg = VocoderConfig::from_json(&std::fs::read_to_string(fixtures().join("v1_tiny/config.json")).unwrap()).unwrap();
    vocoder::convert::convert(&ckpt, &cfg, &out).unwrap();
    // One file: the config travels inside it.
    let loaded = load_vocoder(&out, None, &Device::Cpu).unwrap();
    assert_eq!(loaded.vocoder.config(), &cfg);
    let (shape, mel) = tensor(&fixtures().join("v1_tiny/io.safetensors"), "mel");
    let (_, want) = tensor(&fixtures().join("v1_tiny/io.safetensors"), "audio");
    let got = loaded.vocoder.synthesize(&mel, shape[2]).unwrap();
    assert!(max_abs_diff(&got, &want) <= 1e-4);
    // A mismatched conversion is refused and leaves no file behind.
    let bad = dir.join("bad.safetensors");
    let grc_cfg = VocoderConfig::from_json(&std::fs::read_to_string(fixtures().join("grc_tiny/config.json")).unwrap()).unwrap();
    assert!(vocoder::convert::convert(&ckpt, &grc_cfg, &bad).is_err());
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
