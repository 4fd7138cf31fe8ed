//! The chunk-causal subsampler against StreamSpeech's own module (fixture:
//! `scripts/make_subsampler_fixture.py`, seeded weights, real speech features). Tolerance 1e−4
//! absolute (the states are O(1)).

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use translator::subsampler::{Conv1dSubsampler, SubsamplerConfig};


#[test]
fn chunk_causal_subsampler_matches_upstream() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/subsampler_ref.safetensors");
    let all = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let weights = common::under(&all, "weights.");
    let input = all["input"].unsqueeze(0).unwrap();
    let mut outputs = Vec::new();
    for chunk in [0usize, 8, 3] {
        let cfg = SubsamplerConfig { in_channels: 80, mid_channels: 64, out_channels: 16, kernel_sizes: vec![5, 5], chunk_size: (chunk > 0).then_some(chunk) };
        let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu);
        let m = Conv1dSubsampler::new(&cfg, vb).unwrap();
        let y = m.forward(&input).unwrap().squeeze(0).unwrap();
        let reference = &all[&format!("output.chunk{chunk}")];
        assert_eq!(m.out_frames(input.dim(1).unwrap()), reference.dim(0).unwrap());
        let d = common::max_abs_diff(&y, reference);
        assert!(d <= 1e-4, "chunk {chunk}: max |diff| {d:.2e}");
        outputs.push(y);
    }
    // The chunk sizes matter (the test would not notice a chunking that did nothing).
    assert!(common::max_abs_diff(&outputs[0], &outputs[1]) > 1e-2);
    assert!(common::max_abs_diff(&outputs[1], &outputs[2]) > 1e-2);
}
