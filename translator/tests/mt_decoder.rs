//! The MT decoder against StreamSpeech's own (fixture: `scripts/make_mt_decoder_fixture.py`,
//! fairseq-fixed 0.12.3.1): teacher-forced logits within 1e−3, and the greedy tokens (upstream's
//! incremental decoding) identical.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use translator::mt_decoder::{MtDecoder, MtDecoderConfig};

#[test]
fn logits_and_greedy_tokens_match_upstream() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mt_decoder_ref.safetensors");
    let r = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let weights = common::under(&r, "weights.");
    let cfg = MtDecoderConfig { vocab: 40, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4, layers: 2, encoder_dim: 24, padding_idx: 1, eos: 2, max_positions: 1024 };
    let dec = MtDecoder::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu)).unwrap();
    let enc = r["encoder_out"].unsqueeze(0).unwrap();
    let tokens: Vec<u32> = r["tokens"].to_vec1::<i64>().unwrap().into_iter().map(|t| t as u32).collect();
    let logits = dec.forward(&tokens, &enc).unwrap().squeeze(0).unwrap();
    let d = (logits - &r["logits"]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(d <= 1e-3, "teacher-forced logits: max |diff| {d:.2e}");
    let expected: Vec<u32> = r["greedy"].to_vec1::<i64>().unwrap().into_iter().map(|t| t as u32).collect();
    let ours = dec.greedy(&enc, 1, expected.len()).unwrap();
    assert_eq!(ours, expected, "greedy tokens");
    assert!(expected.iter().collect::<std::collections::BTreeSet<_>>().len() >= 3, "a non-degenerate sequence: {expected:?}");
    println!("logits max |diff| {d:.2e}; greedy {ours:?}");
}
