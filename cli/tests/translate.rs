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
    assert_eq!(got["asr"], expected["asr"]);
    assert_eq!(got["translation_ctc"], expected["st"]);
    assert_eq!(got["translation"], expected["mt"]);
    // The ids are the dictionaries' (the detokenized text is made of exactly those pieces).
    let ids = |k: &str| got[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!((ids("asr_ids").len(), ids("translation_ctc_ids").len(), ids("translation_ids").len()), (51, 48, 40));
    assert!(ids("translation_ids").iter().all(|&i| (4..6000).contains(&i)), "specials are not text");
    let units = got["units"].as_array().unwrap();
    assert!(units.len() >= 10 && units.iter().all(|u| u.as_u64().unwrap() < 1000), "{units:?}");
    assert_eq!(got["speech"]["mode"], "original");
    assert_eq!(got["speech"]["vocoder_family"], "codehifigan");
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().sample_rate, got["speech"]["sample_rate"].as_u64().unwrap() as u32);
    assert!(r.len() > 0, "speech written");
    // The host-facing rate asked: the same speech resampled, its length in proportion.
    let wav48 = d.path().join("t48.wav");
    let o = run(&[
        "translate", p(&clip), "--translator", p(&fx.join("streamspeech/small.pt")), "--data", p(&fx.join("es-en-small")),
        "-o", p(&wav48), "--vocoder", p(&voc), "--max-tokens", "40", "--rate", "48000", "--mode", "original",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r48 = hound::WavReader::open(&wav48).unwrap();
    assert_eq!(r48.spec().sample_rate, 48_000);
    let ratio = r48.len() as f64 / r.len() as f64;
    let expected_ratio = 48_000.0 / r.spec().sample_rate as f64;
    assert!((ratio / expected_ratio - 1.0).abs() < 0.01, "length ratio {ratio} vs {expected_ratio}");
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

/// Errors as in render: exit 2, one clear line, nothing written.
#[test]
fn translate_refuses_wrong_inputs_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let fx = root().join("translator/tests/fixtures");
    let clip = root().join("tests/data/es_picovoice_bat_test_es.wav");
    let ckpt = fx.join("streamspeech/small.pt");
    let data = fx.join("es-en-small");
    let voc = unit_vocoder(d.path(), 1000);
    let out = d.path().join("o.wav");
    let json = d.path().join("o.json");
    let refused = |args: &[&str], says: &str| {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: expected `{says}` in: {err}");
        assert!(!out.exists() && !json.exists(), "{args:?} wrote an output");
    };
    // A data directory missing a file.
    let partial = d.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            std::fs::create_dir(partial.join(e.file_name())).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), partial.join(e.file_name()).join(f.file_name())).unwrap();
            }
        } else if e.file_name() != "gcmvn.npz" {
            std::fs::copy(e.path(), partial.join(e.file_name())).unwrap();
        }
    }
    refused(&["translate", p(&clip), "--translator", p(&ckpt), "--data", p(&partial), "--text", p(&json)], "gcmvn.npz");
    // A checkpoint of another architecture (a vocoder) given as the translator.
    let other = root().join("vocoder/tests/fixtures/grc_tiny/model_zip.pth");
    refused(&["translate", p(&clip), "--translator", p(&other), "--data", p(&data), "--text", p(&json)], "not a StreamSpeech translator checkpoint");
    // A mel vocoder where a unit vocoder is needed.
    let mel = root().join("vocoder/tests/fixtures/grc_tiny/model_zip.pth");
    refused(
        &["translate", p(&clip), "--translator", p(&ckpt), "--data", p(&data), "-o", p(&out), "--vocoder", p(&mel)],
        "is a mel-spectrogram vocoder; translate needs a unit vocoder",
    );
    // The mode asked and the vocoder's family disagree.
    refused(
        &["translate", p(&clip), "--translator", p(&ckpt), "--data", p(&data), "-o", p(&out), "--vocoder", p(&voc), "--mode", "modified"],
        "--mode modified needs a UnitHiFiGAN+FiLM unit vocoder",
    );
    // An existing output is kept unless --force.
    std::fs::write(&json, b"keep").unwrap();
    let o = run(&["translate", p(&clip), "--translator", p(&ckpt), "--data", p(&data), "--text", p(&json)]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&json).unwrap(), b"keep");
}

/// `translate --simultaneous`: the policy's decisions per segment equal upstream's agent (the
/// 320 ms trace of translator/tests/fixtures/simultaneous), and the listener's timeline keeps its
/// rules: speech starts no earlier than its decision + the fixed delay, never overlaps, and the
/// WAV covers the input plus the tail; the SRT cues follow the speech.
#[test]
fn simultaneous_timeline_equals_upstream_decisions() {
    let d = tempfile::tempdir().unwrap();
    let fx = root().join("translator/tests/fixtures");
    let clip = root().join("tests/data/es_picovoice_bat_test_es.wav");
    let (wav, timeline, srt) = (d.path().join("s.wav"), d.path().join("s.json"), d.path().join("s.srt"));
    let o = run(&[
        "translate", p(&clip), "--simultaneous", "--segment-ms", "320", "--translator", p(&fx.join("streamspeech/small.pt")),
        "--data", p(&fx.join("es-en-small")), "--vocoder", p(&fx.join("simultaneous/unit_vocoder_tiny.safetensors")),
        "-o", p(&wav), "--timeline", p(&timeline), "--srt", p(&srt), "--no-health-check", "--single-utterance",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&timeline).unwrap()).unwrap();
    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx.join("simultaneous/trace_320.json")).unwrap()).unwrap();
    let (got, want) = (t["segments"].as_array().unwrap(), trace["segments"].as_array().unwrap());
    assert_eq!(got.len(), want.len(), "one entry per segment");
    let delay = t["delay_ms"].as_f64().unwrap();
    assert!(delay >= 320.0, "{delay}");
    let mut queue_end = 0.0f64;
    let rate = t["sample_rate"].as_f64().unwrap();
    for (g, w) in got.iter().zip(want) {
        for k in ["action", "asr_ids", "translation_ids", "new_units"] {
            assert_eq!(g[k], w[k], "segment {}: {k}", g["index"]);
        }
        assert_eq!(g["input_ms"].as_f64().unwrap(), w["input_samples"].as_f64().unwrap() / 16.0);
        if let Some(start) = g["audio_start_ms"].as_f64() {
            assert!(start + 1e-6 >= g["input_ms"].as_f64().unwrap() + delay - 1000.0 / rate, "segment {}: heard before its decision + delay", g["index"]);
            assert!(start + 1e-6 >= queue_end, "segment {}: overlaps the speech before it", g["index"]);
            queue_end = start + g["emitted_samples"].as_f64().unwrap() * 1000.0 / rate;
        }
    }
    assert!((t["output_ms"].as_f64().unwrap() - queue_end).abs() < 1.0);
    // Every unit is heard in full: the speech adds up to a whole vocoding of the units.
    let units: Vec<i64> = got.iter().flat_map(|g| g["new_units"].as_array().unwrap().iter().map(|u| u.as_i64().unwrap())).collect();
    let voc = vocoder::units::load_unit_vocoder(&fx.join("simultaneous/unit_vocoder_tiny.safetensors"), None, &candle_core::Device::Cpu).unwrap();
    let whole = voc.vocoder.synthesize(&units, None, true, None).unwrap().audio.len();
    let heard: u64 = got.iter().map(|g| g["emitted_samples"].as_u64().unwrap()).sum();
    assert_eq!(heard as usize, whole, "all of the units' speech");
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().sample_rate, 16_000, "the input's rate");
    let input_len = hound::WavReader::open(&clip).unwrap().len() as usize;
    let expected = input_len.max((queue_end * 16.0).round() as usize);
    assert!((r.len() as i64 - expected as i64).abs() <= 2, "{} samples, expected {expected}", r.len());
    // The run's metrics are SimulEval's on this trace (latency_ref.json, made by SimulEval's
    // scorers from the same upstream trace).
    let refs: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(fx.join("simultaneous/latency_ref.json")).unwrap()).unwrap();
    let want = &refs.iter().find(|c| c["name"] == "trace_320").unwrap()["expected"];
    let nca = &t["latency"]["non_computation_aware"];
    for k in ["AL", "LAAL", "AP", "DAL", "StartOffset"] {
        let (g, w) = (nca[k].as_f64().unwrap(), want[k].as_f64().unwrap());
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{k}: {g} vs SimulEval {w}");
    }
    let ca = &t["latency"]["computation_aware"];
    assert!(ca["AL"].as_f64().unwrap() > nca["AL"].as_f64().unwrap(), "compute adds latency");
    // ATD of the speech as ours emits it (the streaming vocoder's pieces, not upstream's).
    assert!(ca["ATD"].as_f64().unwrap() > nca["ATD"].as_f64().unwrap() && nca["ATD"].as_f64().unwrap() > 0.0, "ATD {nca} {ca}");
    let srt = std::fs::read_to_string(&srt).unwrap();
    let cues: Vec<&str> = srt.split("\n\n").filter(|c| !c.trim().is_empty()).collect();
    assert!(cues.len() >= 3, "{srt}");
    assert!(cues[0].starts_with("1\n00:00:0"), "{srt}");
}
