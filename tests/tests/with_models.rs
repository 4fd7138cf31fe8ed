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

#[test]
fn original_mode_keeps_pitch_and_duration_at_every_host_rate() {
    let entry = entry();
    for sr in [22_050.0f64, 44_100.0, 48_000.0, 96_000.0] {
        let mut p = ClapPlugin::new(&entry);
        p.set_offline(true);
        let lat_id = p.param_id("Latency");
        // 640 ms chunks: the least context overhead, so the debug-built bundle stays quick.
        p.set_params_inactive(&[(lat_id, 5.0)]);
        p.select_channels(1);
        p.activate(sr, 1, 1024);
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
