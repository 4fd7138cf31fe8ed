//! The built CLAP bundle with the real default models (from `models/`, fetched by
//! `cargo xtask models`): the full signal path at several host rates.

use host_tests::clap_host::{ClapPlugin, load_entry, use_models};
use streamspeech_vocoder::{LatencyChoice, expected_latency};

fn entry() -> clack_host::prelude::PluginEntry {
    use_models(true);
    let m = host_tests::workspace_root().join("models/hifigan_v1_universal.safetensors");
    assert!(m.is_file(), "{} missing: run `cargo xtask models`", m.display());
    load_entry()
}

/// f0 by autocorrelation (highest peak between 60 and 500 Hz), with parabolic refinement.
fn pitch(x: &[f32], sr: f32) -> f32 {
    let (lo, hi) = ((sr / 500.0) as usize, (sr / 60.0) as usize);
    let ac = |lag: usize| -> f64 { x.iter().zip(&x[lag..]).map(|(a, b)| *a as f64 * *b as f64).sum() };
    let (mut best, mut val) = (lo, f64::MIN);
    for lag in lo..hi {
        let v = ac(lag);
        if v > val {
            best = lag;
            val = v;
        }
    }
    let (a, b, c) = (ac(best - 1), val, ac(best + 1));
    let shift = 0.5 * (a - c) / (a - 2.0 * b + c);
    sr / (best as f64 + shift) as f32
}

fn tone(sr: f32, seconds: f32, f0: f32) -> Vec<f32> {
    (0..(sr * seconds) as usize)
        .map(|n| {
            let t = n as f32 / sr;
            (1..8).map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32).sum::<f32>() * 0.25
        })
        .collect()
}

/// A mono, offline (bounce) instance with 640 ms chunks (the least context overhead, so the
/// debug-built bundle stays quick), activated at `sr`.
fn bounce_instance(entry: &clack_host::prelude::PluginEntry, sr: f64) -> ClapPlugin {
    let mut p = ClapPlugin::new(entry);
    p.set_offline(true);
    let lat_id = p.param_id("Latency");
    p.set_params_inactive(&[(lat_id, 5.0)]);
    p.select_channels(1);
    p.activate(sr, 1, 1024);
    p
}

#[test]
fn original_mode_keeps_pitch_and_duration_at_every_host_rate() {
    let entry = entry();
    for sr in [22_050.0f64, 44_100.0, 48_000.0, 96_000.0] {
        let mut p = bounce_instance(&entry, sr);
        let lat = p.latency() as usize;
        assert_eq!(lat as u32, expected_latency(sr as u32, 1024, LatencyChoice::Ms640), "{sr} Hz");
        let x = tone(sr as f32, 1.0, 220.0);
        let mut input = x.clone();
        input.extend(std::iter::repeat_n(0.0, lat));
        let out = p.render(&[input], &[1024], &[]);
        // Latency removed, the output has exactly the input's duration.
        let aligned = &out[0][lat..lat + x.len()];
        assert_eq!(aligned.len(), x.len());
        let mid = &aligned[x.len() / 4..3 * x.len() / 4];
        let rms = (mid.iter().map(|v| v * v).sum::<f32>() / mid.len() as f32).sqrt();
        assert!(rms > 0.01, "{sr} Hz: wet output is (near) silent: rms {rms}");
        let f = pitch(mid, sr as f32);
        eprintln!("{sr} Hz host: output pitch {f:.2} Hz (input 220 Hz), latency {lat} samples");
        assert!((f - 220.0).abs() / 220.0 < 0.005, "{sr} Hz: pitch {f} Hz is not 220 Hz ±0.5% (chipmunk?)");
    }
}

/// f0 per 40 ms frame (None when not clearly periodic: normalised autocorrelation peak <= 0.8),
/// with parabolic refinement of the lag.
fn f0_track(x: &[f32], sr: f32) -> Vec<Option<f32>> {
    let frame = (sr * 0.04) as usize;
    let (lo, hi) = ((sr / 400.0) as usize, (sr / 70.0) as usize);
    let mut out = Vec::new();
    let mut start = 0;
    while start + frame + hi + 1 < x.len() {
        let seg = &x[start..start + frame + hi + 1];
        let e0: f64 = seg[..frame].iter().map(|v| (*v as f64).powi(2)).sum();
        let r = |lag: usize| -> f64 {
            let num: f64 = (0..frame).map(|i| seg[i] as f64 * seg[i + lag] as f64).sum();
            let e1: f64 = seg[lag..lag + frame].iter().map(|v| (*v as f64).powi(2)).sum();
            num / (e0 * e1).sqrt().max(1e-30)
        };
        let mut f = None;
        if e0 > 1e-4 * frame as f64 {
            let (mut best, mut val) = (lo, f64::MIN);
            for lag in lo..hi {
                let v = r(lag);
                if v > val {
                    best = lag;
                    val = v;
                }
            }
            if val > 0.8 && best > lo {
                let (a, c) = (r(best - 1), r(best + 1));
                let shift = 0.5 * (a - c) / (a - 2.0 * val + c);
                f = Some(sr / (best as f64 + shift) as f32);
            }
        }
        out.push(f);
        start += frame / 2;
    }
    out
}

#[test]
fn real_speech_keeps_pitch_and_duration_at_every_host_rate() {
    let entry = entry();
    let mut r = hound::WavReader::open(host_tests::workspace_root().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let clip_sr = r.spec().sample_rate;
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    let clip = &clip[..(clip_sr as usize * 2)];
    for sr in [22_050.0f64, 44_100.0, 48_000.0, 96_000.0] {
        let x = engine::stream::resample_whole(clip, clip_sr, sr as u32);
        let mut p = bounce_instance(&entry, sr);
        let lat = p.latency() as usize;
        let mut input = x.clone();
        input.extend(std::iter::repeat_n(0.0, lat));
        let out = p.render(&[input], &[1024], &[]);
        let aligned = &out[0][lat..lat + x.len()];
        assert_eq!(aligned.len(), x.len(), "duration");
        // Frame by frame, where both are clearly voiced: the median pitch ratio output/input.
        let (ti, to) = (f0_track(&x, sr as f32), f0_track(aligned, sr as f32));
        let mut ratios: Vec<f32> = ti.iter().zip(&to).filter_map(|(a, b)| Some((*b)? / (*a)?)).collect();
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!(ratios.len() > 10, "{sr} Hz: too few voiced frames ({})", ratios.len());
        let ratio = ratios[ratios.len() / 2];
        eprintln!("{sr} Hz host: speech pitch ratio out/in {ratio:.4} over {} voiced frames", ratios.len());
        assert!((ratio - 1.0).abs() < 0.005, "{sr} Hz: speech pitch ratio {ratio} (chipmunk?)");
    }
}
