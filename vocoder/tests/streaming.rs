//! The explicit streaming state against the batch forward: for every family (tiny fixtures of
//! V1, V3 and GRC-MRF, and the real universal V1 on real speech), feeding the mel in chunks of
//! any size gives the same audio as one forward over all frames (max abs diff ≤ 1e−4, except the
//! last `lag` samples the batch computes against its right zero padding), and after f frames
//! exactly max(0, hop·f − lag) samples have come out.

mod common;

use candle_core::{Device, Tensor};
use common::{fixtures, max_abs_diff, universal_model};
use vocoder::Vocoder;
use vocoder::mel::MelFrontEnd;
use vocoder::model::load_vocoder;

const TOL: f32 = 1e-4;

fn speech_mel(v: &Vocoder, seconds: f64) -> (Vec<f32>, usize) {
    let mut r = hound::WavReader::open(common::workspace().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let rate = r.spec().sample_rate as f64;
    let x: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).take((rate * seconds) as usize).collect();
    MelFrontEnd::new(v.config()).mel(&x)
}

/// Streams `mel` [num_mels, frames] in chunks of the given sizes (cycled), checking the emitted
/// count after every step, and compares with the batch forward.
fn check(v: &Vocoder, mel: &[f32], frames: usize, chunks: &[usize], what: &str) {
    let m = v.config().num_mels;
    let hop = v.config().hop_size;
    let lag = v.stream_lag();
    let whole = Tensor::from_slice(mel, (1, m, frames), &Device::Cpu).unwrap();
    let batch = v.forward(&whole).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut st = v.stream().unwrap();
    let mut out = Vec::new();
    let mut f = 0;
    for &c in chunks.iter().cycle() {
        if f >= frames {
            break;
        }
        let n = c.min(frames - f);
        let cols = whole.narrow(2, f, n).unwrap();
        v.stream_step(&mut st, &cols, &mut out).unwrap();
        f += n;
        assert_eq!(out.len(), (hop * f).saturating_sub(lag), "{what}: emitted count after {f} frames (lag {lag})");
    }
    let n = out.len();
    assert!(n > 0, "{what}: nothing came out");
    let err = max_abs_diff(&out, &batch[..n]);
    assert!(err <= TOL, "{what}: stream vs batch max abs {err} over {n} samples (chunks {chunks:?})");
}

#[test]
fn tiny_models_stream_equals_batch_for_any_chunking() {
    for model in ["v1_tiny", "v3_tiny", "grc_tiny"] {
        let file = fixtures().join(model).join("model.safetensors");
        let v = load_vocoder(&file, None, &Device::Cpu).unwrap_or_else(|e| panic!("{model}: {e}")).vocoder;
        let (mel, frames) = speech_mel(&v, 1.0);
        for chunks in [&[1usize][..], &[3], &[7], &[2, 5, 1, 11], &[frames]] {
            check(&v, &mel, frames, chunks, model);
        }
    }
}

#[test]
fn universal_v1_stream_equals_batch_on_real_speech() {
    let v = load_vocoder(&universal_model(), None, &Device::Cpu).unwrap().vocoder;
    let (mel, frames) = speech_mel(&v, 1.5);
    // 2 frames ≈ 23 ms, 7 ≈ 80 ms (the default Latency), plus ragged sizes.
    for chunks in [&[7usize][..], &[2], &[13, 1, 6]] {
        check(&v, &mel, frames, chunks, "universal V1");
    }
}
