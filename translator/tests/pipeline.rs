//! The whole model, loaded strictly from a real-format checkpoint, against upstream's own model
//! on real speech (fixture: `scripts/make_streamspeech_fixture.py`, every stage called as the
//! agent calls it). Tolerance: 1e−3 absolute on states (the issue's); on logits 5e−4 of the
//! largest reference logit (the unit logits come after both decoders, whose fixture weights are
//! scaled to avoid degenerate arg-maxes, and differ by up to 1e−4 of it); every token and unit
//! sequence identical.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use translator::model::{MtSettings, StreamSpeech};


fn ids(t: &Tensor) -> Vec<u32> {
    t.to_vec1::<i64>().unwrap().into_iter().map(|v| v as u32).collect()
}

#[test]
fn every_stage_matches_upstream_on_real_speech() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (model, report) =
        StreamSpeech::load(&dir.join("streamspeech/small.pt"), MtSettings { layers: 2, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4 }, &Device::Cpu).unwrap();
    assert!(report.is_clean());
    let r = candle_core::safetensors::load(dir.join("streamspeech/pipeline_ref.safetensors"), &Device::Cpu).unwrap();
    let features = candle_core::safetensors::load(dir.join("fbank_ref.safetensors"), &Device::Cpu).unwrap()["cmvn"].unsqueeze(0).unwrap();
    let out = model.translate(&features, 40).unwrap();
    let close = |name: &str, ours: &Tensor| {
        let reference = &r[name];
        let ours = ours.squeeze(0).unwrap_or_else(|_| ours.clone());
        let ours = ours.narrow(0, 0, reference.dim(0).unwrap()).unwrap();
        let d = common::max_abs_diff(&ours, reference);
        let scale = reference.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let tolerance = if name.ends_with("logits") { 5e-4 * scale.max(1.0) } else { 1e-3 };
        assert!(d <= tolerance, "{name}: max |diff| {d:.2e} (tolerance {tolerance:.1e}, largest |reference| {scale:.1})");
        println!("{name}: max |diff| {d:.2e} (largest |reference| {scale:.1})");
    };
    close("encoder_out", &out.encoder_out);
    close("asr_logits", &out.asr_logits);
    close("st_logits", &out.st_logits);
    assert_eq!(out.asr.tokens, ids(&r["asr_tokens"]), "ASR pieces");
    assert_eq!(out.st.tokens, ids(&r["st_tokens"]), "ST pieces");
    assert_eq!(out.mt_tokens, ids(&r["mt_tokens"]), "MT tokens");
    close("mt_states", &out.mt_states);
    close("t2u_states", &out.t2u_states);
    close("unit_logits", &out.unit_logits);
    assert_eq!(out.units, ids(&r["units"]), "units");
    for (what, n) in [("ASR", out.asr.tokens.len()), ("ST", out.st.tokens.len()), ("MT", out.mt_tokens.len()), ("units", out.units.len())] {
        assert!(n >= 10, "{what}: a non-trivial sequence ({n})");
    }
}

/// A checkpoint that does not match its own config is refused with the report, not built.
#[test]
fn a_mismatched_checkpoint_is_refused_with_the_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streamspeech");
    // Claiming the MT decoder has 3 layers: its third layer's entries are missing.
    let e = StreamSpeech::load(&dir.join("small.pt"), MtSettings { layers: 3, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4 }, &Device::Cpu)
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(text.contains("target_unigram_decoder.layers.2.fc1.weight"), "{text}");
}

/// The data directory (CMVN, dictionaries, multitask config) gives the MT decoder's settings and
/// the text: the same as upstream's dictionaries give for the same pieces.
#[test]
fn data_directory_settings_and_text() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let data = translator::data::DataDir::load(&dir.join("es-en-small")).unwrap();
    assert_eq!(data.mt, MtSettings { layers: 2, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4 });
    assert_eq!((data.source.len(), data.target.len()), (6000, 6000));
    let (model, _) = StreamSpeech::load(&dir.join("streamspeech/small.pt"), data.mt, &Device::Cpu).unwrap();
    let features = candle_core::safetensors::load(dir.join("fbank_ref.safetensors"), &Device::Cpu).unwrap()["cmvn"].unsqueeze(0).unwrap();
    let out = model.translate(&features, 40).unwrap();
    let expected: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("streamspeech/pipeline_text.json")).unwrap()).unwrap();
    assert_eq!(data.source.detokenize(&out.asr.tokens), expected["asr"]);
    assert_eq!(data.target.detokenize(&out.st.tokens), expected["st"]);
    assert_eq!(data.target.detokenize(&out.mt_tokens), expected["mt"]);
    assert!(expected["mt"].split(' ').count() >= 10, "{}", expected["mt"]);
}
