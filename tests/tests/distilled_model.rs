//! The default Modified model (a GRC-MRF student distilled from HiFi-GAN V1 universal, trained by
//! scripts/train_grc.py and committed in models/): strict load, health, and quality against the
//! teacher on the held-out validation clips (each clip, not only on average).
//!
//! The target is a student within 1.5x of the teacher's log-mel L1 on every clip; this
//! model reaches 1.05-1.48x (mean 1.24x; see models/MODEL_CARD.md), and the test holds it to the
//! target on each clip.

use std::path::PathBuf;

use candle_core::Device;
use vocoder::mel::MelFrontEnd;
use vocoder::model::load_vocoder;
use vocoder::{Family, Vocoder, health};

fn root() -> PathBuf {
    host_tests::workspace_root()
}

fn load(name: &str) -> Vocoder {
    let p = root().join("models").join(name);
    assert!(p.is_file(), "{} missing", p.display());
    let loaded = load_vocoder(&p, None, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(loaded.report.is_clean(), "{name}: {}", loaded.report);
    loaded.vocoder
}

fn clip(name: &str, to: u32) -> Vec<f32> {
    let mut r = hound::WavReader::open(root().join("tests/data").join(name)).unwrap();
    let sr = r.spec().sample_rate;
    let x: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    engine::stream::resample_whole(&x, sr, to)
}

/// Mean |log-mel(output) - log-mel(input)| over the frames both have.
fn mel_l1(front: &MelFrontEnd, input_mel: &[f32], frames: usize, out: &[f32]) -> f64 {
    let (m, f) = front.mel(out);
    let n = frames.min(f);
    let bins = front.num_mels;
    let mut acc = 0.0;
    for b in 0..bins {
        for t in 0..n {
            acc += (m[b * f + t] - input_mel[b * frames + t]).abs() as f64;
        }
    }
    acc / (bins * n) as f64
}

/// Per clip, student log-mel L1 <= this x the teacher's: the target (measured here:
/// 1.045-1.482, mean 1.24; earlier exports: 1.054-1.486, 1.09-1.55, 1.16-1.67, 1.47-2.07, and 2.06-2.42 before that).
const TARGET_RATIO_BOUND: f64 = 1.5;

#[test]
fn distilled_student_loads_is_healthy_and_is_within_1_5x_of_the_teacher_on_every_clip() {
    let student = load("grc_mrf_distilled.safetensors");
    assert_eq!(student.family(), Family::GrcMrf);
    let verdict = health::probe(&student).unwrap();
    assert!(verdict.healthy, "student: {verdict}");
    let teacher = load("hifigan_v1_universal.safetensors");
    let cfg = student.config().clone();
    assert_eq!(cfg.sampling_rate, teacher.config().sampling_rate);
    let front = MelFrontEnd::new(&cfg);
    for name in [
        "en_cmuarctic_axb_a0004.wav",
        "es_picovoice_bat_test_es.wav",
        "fr_cv_17299458.wav",
        "es_librivox_cuentosdehadas03_14_grimm.wav",
    ] {
        let x = clip(name, cfg.sampling_rate);
        let (mel, frames) = front.mel(&x);
        let s = student.synthesize(&mel, frames).unwrap();
        let t = teacher.synthesize(&mel, frames).unwrap();
        let (ls, lt) = (mel_l1(&front, &mel, frames, &s), mel_l1(&front, &mel, frames, &t));
        eprintln!("{name}: log-mel L1 to input: student {ls:.3}, teacher {lt:.3} (ratio {:.3})", ls / lt);
        assert!(ls <= TARGET_RATIO_BOUND * lt, "{name}: student {ls:.3} > {TARGET_RATIO_BOUND} x teacher {lt:.3}");
    }
    // Parameters: far smaller than the teacher (speed is measured by the benchmark, not here).
    assert!(student.param_count() * 4 < teacher.param_count());
}
