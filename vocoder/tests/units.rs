//! The unit vocoders against PyTorch (fixtures from scripts/make_unit_fixtures.py): CodeHiFiGAN
//! with duration predictor and speaker embedding (fairseq `{"generator": ...}` zip checkpoint with
//! weight norm), UnitHiFiGAN+FiLM (Linear and MLP FiLM, `ema_generator` preferred) with and
//! without conditioning. Max abs error ≤ 1e−4; durations identical; streaming equals whole.

mod common;

use candle_core::Device;
use common::{fixtures, max_abs_diff};
use vocoder::VocoderError;
use vocoder::units::{Conditioning, UnitVocoder, load_unit_vocoder};

const TOL: f32 = 1e-4;

fn io(model: &str) -> std::path::PathBuf {
    fixtures().join("units").join(model).join("io.safetensors")
}

fn ints(file: &std::path::Path, name: &str) -> Vec<i64> {
    // Ids and durations are stored as exact float32 values.
    common::tensor(file, name).1.iter().map(|x| *x as i64).collect()
}

fn load(model: &str, file: &str) -> UnitVocoder {
    let p = fixtures().join("units").join(model).join(file);
    load_unit_vocoder(&p, None, &Device::Cpu).unwrap_or_else(|e| panic!("{model}: {e}")).vocoder
}

#[test]
fn codehifigan_matches_pytorch_with_and_without_duration_prediction() {
    let v = load("code_tiny", "g_tiny.pth");
    assert!(v.has_duration_predictor());
    let units = ints(&io("code_tiny"), "units");
    assert!(units.iter().any(|u| *u < 0), "the fixture has negative ids to drop");
    let (_, want) = common::tensor(&io("code_tiny"), "audio");
    let out = v.synthesize(&units, Some(3), false, None).unwrap();
    assert_eq!(out.units.len(), units.iter().filter(|u| **u >= 0).count());
    assert_eq!(out.audio.len(), out.units.len() * 20);
    let err = max_abs_diff(&out.audio, &want);
    assert!(err <= TOL, "CodeHiFiGAN vs PyTorch: max abs {err}");

    let (_, want) = common::tensor(&io("code_tiny"), "audio_dur");
    let want_dur: Vec<u32> = ints(&io("code_tiny"), "durations").iter().map(|d| *d as u32).collect();
    let out = v.synthesize(&units, Some(3), true, None).unwrap();
    assert_eq!(out.durations.as_deref(), Some(&want_dur[..]), "durations identical to PyTorch");
    let err = max_abs_diff(&out.audio, &want);
    assert!(err <= TOL, "CodeHiFiGAN with durations vs PyTorch: max abs {err}");
}

#[test]
fn codehifigan_with_a_speaker_vector_matches_pytorch() {
    let v = load("code_xvec_tiny", "g_tiny.pth");
    let units = ints(&io("code_xvec_tiny"), "units");
    let spk = Conditioning::load(&fixtures().join("units/code_xvec_tiny/speaker.safetensors"), 16, 0).unwrap();
    let (_, want) = common::tensor(&io("code_xvec_tiny"), "audio");
    let out = v.synthesize(&units, None, false, Some(&spk)).unwrap();
    let err = max_abs_diff(&out.audio, &want);
    assert!(err <= TOL, "CodeHiFiGAN with Linear spkr vs PyTorch: max abs {err}");
    let Err(e) = v.synthesize(&units, None, false, None) else { panic!("a speaker-vector model needs its vector") };
    assert!(e.to_string().contains("speaker vector"), "{e}");
}

#[test]
fn film_matches_pytorch_with_and_without_conditioning_both_variants() {
    for model in ["film_tiny", "film_mlp_tiny"] {
        let v = load(model, "ckpt.pth");
        let units = ints(&io(model), "units");
        let (_, want) = common::tensor(&io(model), "audio");
        let plain = v.synthesize(&units, None, false, None).unwrap();
        let err = max_abs_diff(&plain.audio, &want);
        assert!(err <= TOL, "{model} without conditioning vs PyTorch: max abs {err} (ema_generator must be the one loaded)");
        let cond = Conditioning::load(&fixtures().join("units").join(model).join("cond.safetensors"), 192, 768).unwrap();
        let (_, want) = common::tensor(&io(model), "audio_cond");
        let out = v.synthesize(&units, None, false, Some(&cond)).unwrap();
        let err = max_abs_diff(&out.audio, &want);
        assert!(err <= TOL, "{model} with FiLM conditioning vs PyTorch: max abs {err}");
        assert!(max_abs_diff(&out.audio, &plain.audio) > 1e-3, "{model}: conditioning changes the output");
    }
}

#[test]
fn streaming_units_equals_whole_sequence() {
    let v = load("code_tiny", "g_tiny.pth");
    // The fixture's ids, repeated so the stream runs well past the generator's lookahead.
    let units: Vec<i64> = ints(&io("code_tiny"), "units").repeat(6);
    assert!(units.iter().filter(|u| **u >= 0).count() * 20 > 2 * v.stream_lag());
    for dur in [false, true] {
        let whole = v.synthesize(&units, Some(3), dur, None).unwrap().audio;
        for chunk in [1usize, 3, 5] {
            let mut st = v.stream(Some(3), dur, None).unwrap();
            let mut out = Vec::new();
            let pieces: Vec<&[i64]> = units.chunks(chunk).collect();
            for (i, p) in pieces.iter().enumerate() {
                v.stream_push(&mut st, p, i + 1 == pieces.len(), &mut out).unwrap();
            }
            let n = whole.len() - v.stream_lag();
            assert_eq!(out.len(), n, "dur {dur} chunk {chunk}: emitted = whole − the generator's lag");
            let err = max_abs_diff(&out, &whole[..n]);
            assert!(err <= TOL, "dur {dur} chunk {chunk}: stream vs whole max abs {err}");
        }
    }
    // A finished stream is the whole synthesis, its end computed from the last units only (the
    // stream here is far longer than that context).
    let long: Vec<i64> = ints(&io("code_tiny"), "units").repeat(30);
    assert!(long.len() > 3 * v.tail_context_units(), "{} units, context {}", long.len(), v.tail_context_units());
    for dur in [false, true] {
        let whole = v.synthesize(&long, Some(3), dur, None).unwrap().audio;
        for chunk in [1usize, 7] {
            let mut st = v.stream(Some(3), dur, None).unwrap();
            let mut out = Vec::new();
            for p in long.chunks(chunk) {
                v.stream_push(&mut st, p, false, &mut out).unwrap();
            }
            v.stream_finish(&mut st, &mut out).unwrap();
            assert_eq!(out.len(), whole.len(), "dur {dur} chunk {chunk}: a finished stream has every sample");
            let err = max_abs_diff(&out, &whole);
            assert!(err <= TOL, "dur {dur} chunk {chunk}: finished stream vs whole max abs {err}");
            let tail = v.stream_lag();
            let tail_err = max_abs_diff(&out[out.len() - tail..], &whole[whole.len() - tail..]);
            assert!(tail_err <= TOL && whole[whole.len() - tail..].iter().any(|x| x.abs() > 1e-3), "dur {dur} chunk {chunk}: the end {tail_err}");
        }
    }
    assert_eq!(v.lookahead_units(true), 2, "k=3 predictor: two units of lookahead");
    assert_eq!(v.lookahead_units(false), 0);
    // FiLM, streamed.
    let f = load("film_tiny", "ckpt.pth");
    let cond = Conditioning::load(&fixtures().join("units/film_tiny/cond.safetensors"), 192, 768).unwrap();
    // The same vectors from a .npy file (speaker then emotion, float64) give the same output.
    let npy = Conditioning::load(&fixtures().join("units/film_tiny/cond.npy"), 192, 768).unwrap();
    assert_eq!(npy.speaker.len(), 192);
    assert!(npy.speaker.iter().zip(&cond.speaker).all(|(a, b)| (a - b).abs() < 1e-6));
    assert!(npy.emotion.iter().zip(&cond.emotion).all(|(a, b)| (a - b).abs() < 1e-6));
    let units: Vec<i64> = ints(&io("film_tiny"), "units").repeat(8);
    let whole = f.synthesize(&units, None, false, Some(&cond)).unwrap().audio;
    let mut st = f.stream(None, false, Some(&cond)).unwrap();
    let mut out = Vec::new();
    for p in units.chunks(2) {
        f.stream_push(&mut st, p, false, &mut out).unwrap();
    }
    let n = out.len();
    assert_eq!(n, whole.len().saturating_sub(f.stream_lag()));
    assert!(n > 0);
    assert!(max_abs_diff(&out, &whole[..n]) <= TOL);
}

#[test]
fn film_checkpoint_against_plain_config_and_back_names_the_film_keys() {
    let film_ckpt = fixtures().join("units/film_tiny/ckpt.pth");
    let mut plain: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("units/film_tiny/config.json")).unwrap()).unwrap();
    plain.as_object_mut().unwrap().remove("film");
    let dir = tempfile_dir();
    let plain_cfg = dir.join("plain.json");
    std::fs::write(&plain_cfg, plain.to_string()).unwrap();
    let Err(VocoderError::Mismatch(r)) = load_unit_vocoder(&film_ckpt, Some(&plain_cfg), &Device::Cpu) else { panic!("FiLM checkpoint with the plain config must be refused") };
    let text = r.to_string();
    assert!(text.contains("cond_proj.weight") && text.contains("film_layers.0.net.weight"), "{text}");

    // And the other way: the FiLM config against a plain (FiLM-less) checkpoint.
    let film_cfg = fixtures().join("units/film_tiny/config.json");
    let code = fixtures().join("units/code_tiny/g_tiny.pth");
    let Err(VocoderError::Mismatch(r)) = load_unit_vocoder(&code, Some(&film_cfg), &Device::Cpu) else { panic!("plain checkpoint with the FiLM config must be refused") };
    let text = r.to_string();
    assert!(text.contains("cond_proj") && text.contains("film_layers"), "{text}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("streamspeech-units-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
