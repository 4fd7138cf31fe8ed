//! The MT decoder against StreamSpeech's own (fixture: `scripts/make_mt_decoder_fixture.py`,
//! fairseq-fixed 0.12.3.1): teacher-forced logits within 1e−3, and the greedy tokens (upstream's
//! incremental decoding) identical.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use translator::mt_decoder::{MtDecoder, MtDecoderConfig};

/// The fixture's tensors, the decoder built from its weights, and its encoder output `[1, s, d]`.
fn fixture() -> (HashMap<String, Tensor>, MtDecoderConfig, MtDecoder, Tensor) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mt_decoder_ref.safetensors");
    let r = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let weights = common::under(&r, "weights.");
    let cfg = MtDecoderConfig { vocab: 40, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4, layers: 2, encoder_dim: 24, padding_idx: 1, eos: 2, max_positions: 1024 };
    let dec = MtDecoder::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu)).unwrap();
    let enc = r["encoder_out"].unsqueeze(0).unwrap();
    (r, cfg, dec, enc)
}

#[test]
fn logits_and_greedy_tokens_match_upstream() {
    let (r, _, dec, enc) = fixture();
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

/// The states a greedy run computed on the way are the second pass's: for the whole sequence,
/// for a trimmed prefix followed by pads (the agent's whole-word input), and no answer for a
/// sequence the run did not decode.
#[test]
fn states_from_the_greedy_run_equal_a_second_pass() {
    let (_, cfg, dec, enc) = fixture();
    let cross = dec.cross_keys_values(&enc).unwrap();
    let run = dec.greedy_run(&[], &cross, 1, 12).unwrap();
    let n = run.tokens.len();
    assert!(n >= 4, "a run long enough to trim: {:?}", run.tokens);
    let max_diff = |a: &candle_core::Tensor, b: &candle_core::Tensor| (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let mut whole = vec![cfg.eos];
    whole.extend(&run.tokens);
    let mut trimmed = vec![cfg.eos];
    trimmed.extend(&run.tokens[..n - 2]);
    trimmed.extend([1, 1]);
    for tokens in [whole, trimmed] {
        let reused = dec.states_from_run(&tokens, &run).unwrap().expect("a prefix of the run");
        let again = dec.states_with(&tokens, &cross).unwrap();
        assert_eq!(reused.dims(), again.dims());
        let d = max_diff(&reused, &again);
        assert!(d <= 1e-5, "{tokens:?}: max |diff| {d:.2e}");
    }
    let mut other = vec![cfg.eos];
    other.extend(&run.tokens);
    other[1] = (other[1] + 1) % cfg.vocab as u32 + 3;
    assert!(dec.states_from_run(&other, &run).unwrap().is_none(), "a sequence the run did not decode");
    let mut longer = vec![cfg.eos];
    longer.extend(&run.tokens);
    longer.push(5);
    assert!(dec.states_from_run(&longer, &run).unwrap().is_none(), "longer than the run");
}
