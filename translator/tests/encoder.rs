//! The chunk conformer encoder against StreamSpeech's own `ChunkS2TConformerEncoder` (fixture:
//! `scripts/make_encoder_fixture.py`: fairseq-fixed 0.12.3.1 + torch 2.4.1, seeded weights and
//! BatchNorm statistics, real speech features). Tolerance: 1e−3 absolute on every layer's state.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use translator::conformer::ConformerConfig;
use translator::encoder::{ChunkConformerEncoder, EncoderConfig};
use translator::subsampler::SubsamplerConfig;


#[test]
fn encoder_states_match_upstream_with_and_without_chunks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let reference = candle_core::safetensors::load(dir.join("encoder_ref.safetensors"), &Device::Cpu).unwrap();
    let features = candle_core::safetensors::load(dir.join("fbank_ref.safetensors"), &Device::Cpu).unwrap()["cmvn"].unsqueeze(0).unwrap();
    let weights = common::under(&reference, "weights.");
    let mut last = Vec::new();
    for chunk in [0usize, 8] {
        let chunk_size = (chunk > 0).then_some(chunk);
        let cfg = EncoderConfig {
            subsampler: SubsamplerConfig { in_channels: 80, mid_channels: 64, out_channels: 32, kernel_sizes: vec![5, 5], chunk_size },
            layer: ConformerConfig { embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4, depthwise_conv_kernel_size: 31, chunk_size },
            layers: 2,
            scale_embedding: true,
            attention_chunk: chunk_size,
        };
        let enc = ChunkConformerEncoder::new(&cfg, VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu)).unwrap();
        let states = enc.forward(&features).unwrap();
        for (i, s) in states.iter().enumerate() {
            let r = &reference[&format!("state{i}.chunk{chunk}")];
            let d = common::max_abs_diff(&s.squeeze(0).unwrap(), r);
            assert!(d <= 1e-3, "chunk {chunk}, layer {i}: max |diff| {d:.2e}");
            println!("chunk {chunk}, layer {i}: max |diff| {d:.2e}");
        }
        last.push(states.last().unwrap().clone());
    }
    assert!(common::max_abs_diff(&last[0], &last[1]) > 1e-2, "the chunk mask and causal convs change the output");
}
