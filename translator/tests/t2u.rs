//! The T2U encoder and CTC unit decoder against StreamSpeech's own (fixture:
//! `scripts/make_t2u_fixture.py`, fairseq-fixed 0.12.3.1): states and logits within 1e−3, units
//! identical.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use translator::ctc;
use translator::t2u::{T2uConfig, T2uEncoder, UnitDecoder};


#[test]
fn t2u_states_unit_logits_and_units_match_upstream() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t2u_ref.safetensors");
    let r = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let part = |prefix: &str| common::under(&r, prefix);
    let cfg = T2uConfig { embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4, encoder_layers: 2, decoder_layers: 2, vocab: 29, ctc_upsample_rate: 5, padding_idx: 1 };
    let encoder = T2uEncoder::new(&cfg, VarBuilder::from_tensors(part("encoder."), DType::F32, &Device::Cpu)).unwrap();
    let decoder = UnitDecoder::new(&cfg, VarBuilder::from_tensors(part("decoder."), DType::F32, &Device::Cpu)).unwrap();
    let states = encoder.forward(&r["mt_states"].unsqueeze(0).unwrap()).unwrap();
    let d = common::max_abs_diff(&states.squeeze(0).unwrap(), &r["t2u_states"]);
    assert!(d <= 1e-3, "T2U states: max |diff| {d:.2e}");
    let logits = decoder.forward(&states).unwrap().squeeze(0).unwrap();
    assert_eq!(logits.dims(), &[30, 29], "6 states × upsample 5");
    let d = common::max_abs_diff(&logits, &r["logits"]);
    assert!(d <= 1e-3, "unit logits: max |diff| {d:.2e}");
    let units = ctc::greedy(&logits, 1, 3, 28).unwrap().tokens;
    let expected: Vec<u32> = r["units"].to_vec1::<i64>().unwrap().into_iter().map(|u| u as u32).collect();
    assert_eq!(units, expected);
    assert!(expected.len() >= 3, "a non-degenerate unit sequence: {expected:?}");
    println!("units {units:?}");
}

/// The unit decoder's first layer runs its self-attention per token (every frame of a token has
/// the same input); that equals attending over every frame, with and without trailing pads (the
/// agent's whole-word MT input), within 1e−5.
#[test]
fn per_token_first_layer_equals_attending_over_every_frame() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t2u_ref.safetensors");
    let r = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let cfg = T2uConfig { embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4, encoder_layers: 2, decoder_layers: 2, vocab: 29, ctc_upsample_rate: 5, padding_idx: 1 };
    let decoder = UnitDecoder::new(&cfg, VarBuilder::from_tensors(common::under(&r, "decoder."), DType::F32, &Device::Cpu)).unwrap();
    let states = r["t2u_states"].unsqueeze(0).unwrap();
    for pads in [vec![false; 6], vec![false, false, false, false, true, true], vec![false, false, false, false, false, true]] {
        let per_token = decoder.forward_masked(&states, &pads).unwrap();
        let frames = decoder.forward_masked_frames(&states, &pads).unwrap();
        assert_eq!(per_token.dims(), &[1, 30, 29]);
        let d = common::max_abs_diff(&per_token.squeeze(0).unwrap(), &frames.squeeze(0).unwrap());
        assert!(d <= 1e-5, "pads {pads:?}: max |diff| {d:.2e}");
        let spread = frames.flatten_all().unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(spread > 0.1, "logits that could differ: {spread}");
    }
}
