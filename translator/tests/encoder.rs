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

/// The fixture's encoder with the chunk sizes upstream's agent sets for `segment_ms`.
fn agent_encoder(weights: &std::collections::HashMap<String, candle_core::Tensor>, segment_ms: usize) -> ChunkConformerEncoder {
    let (attention, conv) = translator::encoder::agent_chunk_sizes(segment_ms);
    let cfg = EncoderConfig {
        subsampler: SubsamplerConfig { in_channels: 80, mid_channels: 64, out_channels: 32, kernel_sizes: vec![5, 5], chunk_size: Some(conv) },
        layer: ConformerConfig { embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4, depthwise_conv_kernel_size: 31, chunk_size: Some(conv) },
        layers: 2,
        scale_embedding: true,
        attention_chunk: Some(attention),
    };
    ChunkConformerEncoder::new(&cfg, VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu)).unwrap()
}

fn fixture() -> (std::collections::HashMap<String, candle_core::Tensor>, candle_core::Tensor) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let reference = candle_core::safetensors::load(dir.join("encoder_ref.safetensors"), &Device::Cpu).unwrap();
    let features = candle_core::safetensors::load(dir.join("fbank_ref.safetensors"), &Device::Cpu).unwrap()["cmvn"].unsqueeze(0).unwrap();
    (common::under(&reference, "weights."), features)
}

/// Appending audio leaves the outputs of completed chunks as they were: what makes caching them
/// exact. A whole recompute over each longer prefix is compared with one over a shorter prefix.
#[test]
fn appended_audio_leaves_completed_chunks_unchanged() {
    let (weights, features) = fixture();
    let n = features.dim(1).unwrap();
    for segment_ms in [160, 320, 640, 1280] {
        let enc = agent_encoder(&weights, segment_ms);
        let unit = enc.final_unit().unwrap();
        let mut worst = 0f32;
        let mut checked = 0;
        for short in (20..n).step_by(23) {
            let final_frames = enc.final_frames(short);
            if final_frames == 0 {
                continue;
            }
            let a = enc.forward(&features.narrow(1, 0, short).unwrap()).unwrap().pop().unwrap().narrow(1, 0, final_frames).unwrap();
            let b = enc.forward(&features).unwrap().pop().unwrap().narrow(1, 0, final_frames).unwrap();
            worst = worst.max(common::max_abs_diff(&a, &b));
            checked += 1;
            // The first frame after the final ones does change (so the bound is tight).
            let total = enc.forward(&features.narrow(1, 0, short).unwrap()).unwrap().pop().unwrap().dim(1).unwrap();
            if total > final_frames {
                let a = enc.forward(&features.narrow(1, 0, short).unwrap()).unwrap().pop().unwrap().narrow(1, final_frames, total - final_frames).unwrap();
                let b = enc.forward(&features).unwrap().pop().unwrap().narrow(1, final_frames, total - final_frames).unwrap();
                assert!(common::max_abs_diff(&a, &b) > 1e-4, "{segment_ms} ms: frames after the final ones of {short} feature frames should change with more audio");
            }
        }
        println!("{segment_ms} ms (unit {unit} frames): completed chunks over {checked} prefixes, max |diff| {worst:.2e}");
        assert!(checked >= 5);
        assert!(worst <= 1e-6, "{segment_ms} ms: completed chunks changed by {worst:.2e}");
    }
}

/// The incremental encoder (final chunks cached, the rest computed) equals a whole recompute of
/// every prefix, fed as an agent feeds it (a segment at a time) and in uneven pieces. Tolerance
/// 1e−4 absolute.
#[test]
fn incremental_encoder_equals_recompute() {
    let (weights, features) = fixture();
    let n = features.dim(1).unwrap();
    for segment_ms in [160, 320, 640, 1280] {
        let enc = agent_encoder(&weights, segment_ms);
        for pieces in [vec![segment_ms / 10], vec![7, 13, 1, 40, 3]] {
            let mut cache = translator::encoder::EncoderCache::default();
            let (mut at, mut k, mut worst, mut cached) = (0, 0, 0f32, 0);
            while at < n {
                at = (at + pieces[k % pieces.len()]).min(n);
                k += 1;
                let prefix = features.narrow(1, 0, at).unwrap();
                let incremental = enc.forward_incremental(&prefix, &mut cache).unwrap();
                let whole = enc.forward(&prefix).unwrap().pop().unwrap();
                assert_eq!(incremental.dims(), whole.dims(), "{segment_ms} ms, {at} frames");
                worst = worst.max(common::max_abs_diff(&incremental, &whole));
                cached = cache.final_frames();
            }
            println!("{segment_ms} ms, pieces {pieces:?}: {k} calls, {cached} frames cached at the end, max |diff| {worst:.2e}");
            assert!(cached > 0 && cached + 2 * enc.final_unit().unwrap() >= enc.forward(&features).unwrap()[0].dim(1).unwrap());
            assert!(worst <= 1e-4, "{segment_ms} ms: incremental differs from recompute by {worst:.2e}");
        }
    }
    // A source that shrinks is refused (the cache belongs to a longer one).
    let enc = agent_encoder(&weights, 320);
    let mut cache = translator::encoder::EncoderCache::default();
    enc.forward_incremental(&features, &mut cache).unwrap();
    assert!(enc.forward_incremental(&features.narrow(1, 0, 10).unwrap(), &mut cache).is_err());
}
