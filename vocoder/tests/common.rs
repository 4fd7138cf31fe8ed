//! Shared test helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vocoder::VocoderConfig;
use vocoder::checkpoint;

/// The universal HiFi-GAN V1 config (jik876/hifi-gan config_v1.json audio + model fields).
pub fn universal_config() -> VocoderConfig {
    let cfg = r#"{"resblock":"1","upsample_rates":[8,8,2,2],"upsample_kernel_sizes":[16,16,4,4],
        "upsample_initial_channel":512,"resblock_kernel_sizes":[3,7,11],
        "resblock_dilation_sizes":[[1,3,5],[1,3,5],[1,3,5]],"num_mels":80,"n_fft":1024,
        "hop_size":256,"win_size":1024,"sampling_rate":22050,"fmin":0,"fmax":8000}"#;
    VocoderConfig::from_json(cfg).unwrap()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A named f32 tensor from a fixture safetensors file: (shape, values).
pub fn tensor(file: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let c = checkpoint::load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let t = c.tensors.get(name).unwrap_or_else(|| panic!("{name} missing in {}", file.display()));
    (t.shape.clone(), t.values.clone().expect("float tensor"))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The default Original model, fetched by `streamspeech-vocoder models fetch` (CI runs it).
pub fn universal_model() -> PathBuf {
    let p = workspace().join("models/hifigan_v1_universal.safetensors");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo run -p streamspeech-cli -- models fetch` (the README's test command does)",
        p.display()
    );
    p
}
