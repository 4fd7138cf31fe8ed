//! What the translator benchmarks share: the generated full-size inputs (written once into
//! `target/bench/translate/`: the translator checkpoint in the real format, a full-size
//! CodeHiFiGAN, the data directory, real Spanish speech at 16 kHz).
#![allow(dead_code)] // each bench uses its part

use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn scratch() -> PathBuf {
    root().join("target/bench/translate")
}

pub fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// StreamSpeech's unit vocoder (fairseq's mHuBERT 1000-unit CodeHiFiGAN with a duration
/// predictor, 16 kHz).
pub const VOCODER_CONFIG: &str = r#"{"resblock": "1", "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
 "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
 "num_embeddings": 1000, "embedding_dim": 128, "model_in_dim": 128, "sampling_rate": 16000, "code_hop_size": 320,
 "dur_predictor_params": {"encoder_embed_dim": 128, "var_pred_hidden_dim": 128, "var_pred_kernel_size": 3, "var_pred_dropout": 0.5}}"#;

pub fn write_vocoder(path: &Path) {
    let cfg = vocoder::units::UnitVocoderConfig::from_json(VOCODER_CONFIG).unwrap();
    let params = vocoder::units::expected_unit_params(&cfg).unwrap();
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(k, shape)| {
            let n: usize = shape.iter().product();
            let fan_in: usize = if shape.len() > 1 { shape[1..].iter().product() } else { 1 };
            let values: Vec<f32> = if k.contains(".ln") && k.ends_with("weight") {
                vec![1.0; n]
            } else if k.contains(".ln") || shape.len() == 1 {
                (0..n).map(|_| 0.01 * next()).collect()
            } else {
                let bound = if k == "dict.weight" { 1.0 } else { 1.0 / (fan_in as f32).sqrt() };
                (0..n).map(|_| bound * next()).collect()
            };
            (k.clone(), shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        data.iter().map(|(k, s, b)| (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
    let meta = [("config".to_string(), VOCODER_CONFIG.to_string())].into_iter().collect();
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

/// S seconds of real Spanish speech at 16 kHz (a 22.05 kHz clip looped, resampled as the CLI does).
pub fn speech(seconds: f64) -> Vec<f32> {
    let clip = streamspeech_cli::audio_io::read_audio(&root().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let mono = clip.mono();
    let looped: Vec<f32> = mono.iter().cycle().take((clip.rate as f64 * seconds) as usize).copied().collect();
    engine::stream::resample_whole(&looped, clip.rate, 16_000)
}

pub struct Inputs {
    pub translator: PathBuf,
    pub vocoder: PathBuf,
    pub wave: PathBuf,
    pub data: PathBuf,
}

pub fn prepare(seconds: f64) -> Inputs {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let translator = dir.join("streamspeech.es-en.generated.pt");
    if !translator.exists() {
        let t = Instant::now();
        let cfg = translator::synthetic::es_en_full_size();
        let tmp = dir.join("streamspeech.partial");
        let spec = translator::synthetic::SyntheticCheckpoint { cfg: &cfg, stored_as: translator::synthetic::StoredAs::F16, seed: 1, optimizer_state: true };
        let w = translator::synthetic::write(&tmp, &spec).unwrap();
        std::fs::rename(&tmp, &translator).unwrap();
        eprintln!("wrote {} ({:.0} MB, {} parameters) in {:.1} s", translator.display(), w.bytes as f64 / 1e6, w.parameters, t.elapsed().as_secs_f64());
    }
    let vocoder = dir.join("codehifigan.generated.safetensors");
    if !vocoder.exists() {
        write_vocoder(&vocoder);
    }
    // The data directory: the real dictionaries and CMVN, the full-size MT decoder settings.
    let data = dir.join("es-en");
    std::fs::create_dir_all(&data).unwrap();
    let fx = root().join("translator/tests/fixtures/es-en-small");
    for sub in ["src_unigram6000", "tgt_unigram6000"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
        for e in std::fs::read_dir(fx.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), data.join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(fx.join("gcmvn.npz"), data.join("gcmvn.npz")).unwrap();
    let yaml = std::fs::read_to_string(fx.join("config_mtl_asr_st_ctcst.yaml")).unwrap();
    let yaml = yaml.replace("decoder_layers: 2", "decoder_layers: 4").replace("decoder_embed_dim: 32", "decoder_embed_dim: 512");
    let yaml = yaml.replace("decoder_ffn_embed_dim: 64", "decoder_ffn_embed_dim: 2048").replace("decoder_attention_heads: 4", "decoder_attention_heads: 8");
    std::fs::write(data.join("config_mtl_asr_st_ctcst.yaml"), yaml).unwrap();
    let wave = dir.join(format!("speech_{seconds}s_16k.wav"));
    let audio = streamspeech_cli::audio_io::Audio { rate: 16_000, channels: vec![speech(seconds)] };
    streamspeech_cli::audio_io::write_wav(&wave, &audio, streamspeech_cli::audio_io::Bits::Float32, true).unwrap();
    Inputs { translator, vocoder, wave, data }
}

