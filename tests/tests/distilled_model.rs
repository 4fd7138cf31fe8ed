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

/// The held-out validation clips (never trained on; scripts/train_manifest.tsv).
const VALIDATION_CLIPS: [&str; 4] =
    ["en_cmuarctic_axb_a0004.wav", "es_picovoice_bat_test_es.wav", "fr_cv_17299458.wav", "es_librivox_cuentosdehadas03_14_grimm.wav"];

/// Per validation clip: `f(name, student L1, teacher L1, input mel, frames, student audio)`, the
/// log-mel L1s to the input's mel of the student's and the teacher's audio for that mel.
fn each_validation_clip(student: &Vocoder, teacher: &Vocoder, mut f: impl FnMut(&str, f64, f64, &[f32], usize, &[f32])) {
    let cfg = student.config();
    assert_eq!(cfg.sampling_rate, teacher.config().sampling_rate);
    let front = MelFrontEnd::new(cfg);
    for name in VALIDATION_CLIPS {
        let x = clip(name, cfg.sampling_rate);
        let (mel, frames) = front.mel(&x);
        let s = student.synthesize(&mel, frames).unwrap();
        let t = teacher.synthesize(&mel, frames).unwrap();
        f(name, mel_l1(&front, &mel, frames, &s), mel_l1(&front, &mel, frames, &t), &mel, frames, &s);
    }
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
    each_validation_clip(&student, &teacher, |name, ls, lt, _, _, _| {
        eprintln!("{name}: log-mel L1 to input: student {ls:.3}, teacher {lt:.3} (ratio {:.3})", ls / lt);
        assert!(ls <= TARGET_RATIO_BOUND * lt, "{name}: student {ls:.3} > {TARGET_RATIO_BOUND} x teacher {lt:.3}");
    });
    // Parameters: far smaller than the teacher (speed is measured by the benchmark, not here).
    assert!(student.param_count() * 4 < teacher.param_count());
}

/// Per clip, the causal student's log-mel L1 <= this x the teacher's. The target is 1.6
/// per clip, which this export does NOT meet yet: it reaches 1.355-1.932 (mean 1.64; PyTorch
/// measure, models/MODEL_CARD_causal.md; 1.355-1.938 measured here) after a 70- and a 62-minute
/// CPU run (the first export: 1.40-1.97). The bound holds it to what it reaches (a regression
/// fails) until a longer run meets the target.
const CAUSAL_RATIO_BOUND: f64 = 2.0;

/// The low-latency Modified model (`models/grc_mrf_causal.safetensors`, a causal GRC-MRF student of
/// V1 universal): strict load, health, no look-ahead, causal in fact, and its quality per clip.
#[test]
fn causal_student_loads_is_healthy_has_no_lookahead_and_holds_its_quality_on_every_clip() {
    let student = load("grc_mrf_causal.safetensors");
    assert_eq!(student.family(), Family::GrcMrf);
    assert!(student.config().causal);
    assert_eq!(student.stream_lag(), 0, "the causal student looks no sample ahead");
    let verdict = health::probe(&student).unwrap();
    assert!(verdict.healthy, "causal student: {verdict}");
    let teacher = load("hifigan_v1_universal.safetensors");
    let cfg = student.config().clone();
    let mut ratios = Vec::new();
    each_validation_clip(&student, &teacher, |name, ls, lt, mel, frames, s| {
        eprintln!("{name}: log-mel L1 to input: causal student {ls:.3}, teacher {lt:.3} (ratio {:.3})", ls / lt);
        assert!(ls <= CAUSAL_RATIO_BOUND * lt, "{name}: causal student {ls:.3} > {CAUSAL_RATIO_BOUND} x teacher {lt:.3}");
        ratios.push(ls / lt);
        // Causal in fact: audio before a change in the mel does not move.
        let cut = frames / 2;
        let mut later = mel.to_vec();
        for b in 0..cfg.num_mels {
            for v in &mut later[b * frames + cut..(b + 1) * frames] {
                *v -= 2.0;
            }
        }
        let s2 = student.synthesize(&later, frames).unwrap();
        assert_eq!(s[..cut * cfg.hop_size], s2[..cut * cfg.hop_size], "{name}: output before frame {cut} changed");
    });
    eprintln!("causal student / teacher log-mel L1 per clip: {ratios:.3?}");
}
