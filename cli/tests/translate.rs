//! `streamspeech-vocoder translate` with the real-format small StreamSpeech checkpoint and its
//! data directory (translator/tests/fixtures): the texts equal upstream's model on the same clip,
//! the units are voiced by a unit vocoder, and a vocoder with another unit count is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamspeech-vocoder")).args(args).current_dir(root()).output().expect("runs")
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// The tiny CodeHiFiGAN fixture with its unit table tiled to `units` rows (an untrained vocoder
/// that takes StreamSpeech's 1000 units), as one safetensors file with its config embedded.
fn unit_vocoder(dir: &Path, units: usize) -> PathBuf {
    let fx = root().join("vocoder/tests/fixtures/units/code_tiny");
    let ckpt = vocoder::checkpoint::load(&fx.join("g_tiny.pth")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx.join("config.json")).unwrap()).unwrap();
    cfg["num_embeddings"] = serde_json::json!(units);
    let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (k, t) in &ckpt.tensors {
        let Some(v) = &t.values else { continue };
        let (shape, values) = if k == "dict.weight" {
            let dim = t.shape[1];
            (vec![units, dim], (0..units).flat_map(|r| v[(r % t.shape[0]) * dim..(r % t.shape[0] + 1) * dim].to_vec()).collect::<Vec<f32>>())
        } else {
            (t.shape.clone(), v.clone())
        };
        data.insert(k.clone(), (shape, values.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(k, (s, b))| (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let meta = [("config".to_string(), cfg.to_string())].into_iter().collect();
    let path = dir.join(format!("units{units}.safetensors"));
    safetensors::serialize_to_file(views, Some(meta), &path).unwrap();
    path
}

#[test]
fn translate_texts_units_and_speech() {
    let d = tempfile::tempdir().unwrap();
    let fx = root().join("translator/tests/fixtures");
    let clip = root().join("tests/data/es_picovoice_bat_test_es.wav");
    let json = d.path().join("t.json");
    let wav = d.path().join("t.wav");
    let voc = unit_vocoder(d.path(), 1000);
    let o = run(&[
        "translate", p(&clip), "--translator", p(&fx.join("streamspeech/small.pt")), "--data", p(&fx.join("es-en-small")),
        "--text", p(&json), "-o", p(&wav), "--vocoder", p(&voc), "--max-tokens", "40",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx.join("streamspeech/pipeline_text.json")).unwrap()).unwrap();
    assert_eq!(got["source_text"], expected["asr"]);
    assert_eq!(got["target_text_ctc"], expected["st"]);
    assert_eq!(got["target_text"], expected["mt"]);
    let units = got["units"].as_array().unwrap();
    assert!(units.len() >= 10 && units.iter().all(|u| u.as_u64().unwrap() < 1000), "{units:?}");
    let r = hound::WavReader::open(&wav).unwrap();
    assert!(r.len() > 0, "speech written");
    // A vocoder with another unit count is refused before anything runs.
    let small = unit_vocoder(d.path(), 50);
    let o = run(&[
        "translate", p(&clip), "--translator", p(&fx.join("streamspeech/small.pt")), "--data", p(&fx.join("es-en-small")),
        "-o", p(&d.path().join("u.wav")), "--vocoder", p(&small),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("takes 50 units; the translator emits 1000"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn inspect_recognises_a_translator_checkpoint() {
    let fx = root().join("translator/tests/fixtures");
    let ckpt = fx.join("streamspeech/small.pt");
    let o = run(&["inspect", p(&ckpt), "--data", p(&fx.join("es-en-small"))]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("StreamSpeech translator (arch streamspeech); 762080 parameters stored as f16"), "{out}");
    assert!(out.contains("verdict: loads (strict)"), "{out}");
    let o = run(&["inspect", p(&ckpt), "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((j["loads"].as_bool(), j["parameters"].as_u64(), j["units"].as_u64(), j["chunk_size"].as_u64()), (Some(true), Some(762_080), Some(1000), Some(8)));
}
