//! The built CLAP bundle with the real default models (from `models/`, fetched by
//! `cargo xtask models`): the full signal path at several host rates.

use host_tests::clap_host::{ClapPlugin, load_entry, use_models};
use streamspeech_vocoder::{LatencyChoice, expected_offline_latency};

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

/// A mono, offline (bounce) instance with 640 ms chunks (the fewest model steps, so the
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
        assert_eq!(lat as u32, expected_offline_latency(sr as u32, 1024, LatencyChoice::Ms640), "{sr} Hz");
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

/// The CLI's render (`streamspeech_cli::render`, what `streamspeech-vocoder render` runs) equals
/// a DAW offline bounce of the same stereo file through the built plugin, after latency
/// compensation, with the same Original→Modified automation: bit for bit.
#[test]
fn cli_render_equals_daw_offline_bounce() {
    use std::sync::Arc;
    use streamspeech_cli::audio_io::Audio;
    use streamspeech_cli::render::{RenderSetup, Switch, render};

    let entry = entry();
    let sr = 44_100u32;
    let mut r = hound::WavReader::open(host_tests::workspace_root().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let clip_sr = r.spec().sample_rate;
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).take(clip_sr as usize * 2).collect();
    let left = engine::stream::resample_whole(&clip, clip_sr, sr);
    let right: Vec<f32> = left.iter().map(|v| -0.5 * v).collect();
    let input = Audio { rate: sr, channels: vec![left.clone(), right.clone()] };

    // The DAW: offline, stereo, 80 ms (default Latency), Mode automated to Modified at 1.0 s.
    let mut p = ClapPlugin::new(&entry);
    p.set_offline(true);
    p.select_channels(2);
    p.activate(sr as f64, 1, 512);
    let lat = p.latency() as usize;
    let mode_id = p.param_id("Mode");
    let padded: Vec<Vec<f32>> = [&left, &right].iter().map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect()).collect();
    let automation = [host_tests::clap_host::Automation { time: sr as u64, id: mode_id, value: 1.0 }];
    let bounce = p.render(&padded, &[512], &automation);

    // The CLI, with the same model files the plugin found.
    let load = |f: &str| Some(Arc::new(vocoder::load_vocoder(&host_tests::workspace_root().join("models").join(f), None, &candle_core::Device::Cpu).unwrap().vocoder));
    let setup = RenderSetup {
        slots: [load("hifigan_v1_universal.safetensors"), load("grc_mrf_distilled.safetensors")],
        chunk_ms: 80,
        block: 512,
        initial_slot: 0,
        switches: vec![Switch { seconds: 1.0, slot: 1 }],
    };
    let cli = render(&input, &setup, &mut |_, _| {});
    // The announced bounce gathers input ahead (large model steps); the CLI's blocks are large.
    assert_eq!(cli.latency as u64 + engine::render_ahead_samples(sr), lat as u64, "the CLI's engine plans the plugin's latency");
    for c in 0..2 {
        let daw = &bounce[c][lat..lat + left.len()];
        assert_eq!(cli.audio.channels[c].len(), daw.len());
        let diff = cli.audio.channels[c].iter().zip(daw).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert_eq!(diff, 0.0, "channel {c}: CLI render vs DAW bounce max abs diff {diff}");
    }
    assert!(bounce[0][lat..].iter().any(|v| v.abs() > 0.01), "the bounce is not silent");
}

/// The engine issue's alignment test, with the real Original model through the built plugin:
/// the wet output, advanced by exactly the reported latency, lines up with a whole-file render
/// of the same input (model forward over the whole file's mel, resampled both ways) —
/// cross-correlation peak at lag 0 — at 44.1, 48 and 96 kHz for every Latency choice.
#[test]
fn wet_output_minus_reported_latency_aligns_with_whole_file_render() {
    let entry = entry();
    let v1 = vocoder::load_vocoder(&host_tests::workspace_root().join("models/hifigan_v1_universal.safetensors"), None, &candle_core::Device::Cpu)
        .unwrap()
        .vocoder;
    let mut r = hound::WavReader::open(host_tests::workspace_root().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let clip_sr = r.spec().sample_rate;
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).skip(clip_sr as usize / 2).take(clip_sr as usize).collect();
    for sr in [44_100u32, 48_000, 96_000] {
        let x = engine::stream::resample_whole(&clip, clip_sr, sr);
        let model_in = engine::stream::resample_whole(&x, sr, 22_050);
        let (mel, frames) = vocoder::mel::MelFrontEnd::new(v1.config()).mel(&model_in);
        let whole = engine::stream::resample_whole(&v1.synthesize(&mel, frames).unwrap(), 22_050, sr);
        for (i, choice) in LatencyChoice::ALL.iter().enumerate() {
            let mut p = ClapPlugin::new(&entry);
            p.set_offline(true);
            let lat_id = p.param_id("Latency");
            p.set_params_inactive(&[(lat_id, i as f64)]);
            p.select_channels(1);
            p.activate(sr as f64, 1, 512);
            let lat = p.latency() as usize;
            assert_eq!(lat as u32, expected_offline_latency(sr, 512, *choice), "{sr} Hz {choice:?}");
            let input: Vec<f32> = x.iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect();
            let out = p.render(&[input], &[512], &[]);
            let aligned = &out[0][lat..lat + x.len()];
            // The interior (the whole-file render differs only where the file ends).
            let n = x.len() - sr as usize / 10;
            let lag = host_tests::signals::peak_lag(&whole[..n], &aligned[..n], 200);
            assert_eq!(lag, 0, "{sr} Hz {choice:?}: wet output minus {lat} samples is off by {lag} samples");
            let diff = aligned[..n].iter().zip(&whole[..n]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-3, "{sr} Hz {choice:?}: aligned output vs whole-file render max abs {diff}");
        }
    }
}

/// A host that renders faster than real time without announcing offline mode (a freewheel
/// export: the CLAP render extension left at real time) gets the wet signal, exactly the
/// offline bounce, not the real-time fallback's dry signal — and the plugin says it recognised
/// the freewheel. Real models (V1 and the GRC student) at 48 kHz, 80 ms, stereo.
#[test]
fn unannounced_freewheel_bounce_equals_the_offline_bounce() {
    let entry = entry();
    let sr = 48_000u32;
    let mut r = hound::WavReader::open(host_tests::workspace_root().join("tests/data/fr_cv_17767732.wav")).unwrap();
    assert_eq!(r.spec().sample_rate, sr);
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).take(sr as usize * 2).collect();
    let input = vec![clip.clone(), clip.iter().map(|v| 0.5 * v).collect::<Vec<f32>>()];
    let render = |offline: bool| {
        let mut p = ClapPlugin::new(&entry);
        p.set_offline(offline);
        p.select_channels(2);
        p.activate(sr as f64, 1, 512);
        let lat = p.latency() as usize;
        let padded: Vec<Vec<f32>> = input.iter().map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect()).collect();
        let mode_id = p.param_id("Mode");
        let automation = [host_tests::clap_host::Automation { time: sr as u64, id: mode_id, value: 1.0 }];
        (p.render(&padded, &[512], &automation), lat)
    };
    let (offline, lat) = render(true);
    let (freewheel, lat_fw) = render(false);
    // Only the announced bounce reports the render-ahead (its latency is fixed at activation).
    assert_eq!(lat as u64, lat_fw as u64 + engine::render_ahead_samples(sr));
    let dry_diff = (lat_fw..lat_fw + clip.len()).map(|i| (freewheel[0][i] - 0.75 * clip[i - lat_fw]).abs()).fold(0.0, f32::max);
    assert!(dry_diff > 1e-2, "the freewheel bounce is the dry signal");
    for c in 0..2 {
        let first = (0..clip.len()).find(|&i| offline[c][lat + i] != freewheel[c][lat_fw + i]);
        assert!(first.is_none(), "channel {c}: the unannounced freewheel differs from the offline bounce first at input sample {first:?} (latencies {lat}, {lat_fw})");
    }
}

/// The window's "switching" choice (persisted as `unheard`): "heard slot only" reports the
/// planner's latency with the spin-up replay in its margin, survives a save/load, and bounces
/// exactly the audio of the default (both slots computed live; a bounce spins up either way),
/// Mode automation included, once each output is advanced by its own latency.
#[test]
fn heard_slot_only_persists_reports_its_latency_and_bounces_the_same_audio() {
    use host_tests::clap_host::{Automation, state_bytes, state_json};
    use streamspeech_vocoder::{UnheardChoice, expected_latency_with};
    let entry = entry();
    let sr = 44_100u32;
    let mut r = hound::WavReader::open(host_tests::workspace_root().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let clip_sr = r.spec().sample_rate;
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).take(clip_sr as usize * 2).collect();
    let x = engine::stream::resample_whole(&clip, clip_sr, sr);
    let bounce = |spin_up: bool| {
        let mut p = ClapPlugin::new(&entry);
        p.set_offline(true);
        p.select_channels(1);
        if spin_up {
            let mut state = state_json(&p.save_state());
            assert_eq!(state["fields"]["unheard"], "\"compute\"", "a new instance computes both slots");
            state["fields"]["unheard"] = serde_json::json!("\"spin-up\"");
            p.load_state(&state_bytes(&state));
            assert_eq!(state_json(&p.save_state())["fields"]["unheard"], "\"spin-up\"");
        }
        p.activate(sr as f64, 1, 512);
        let lat = p.latency() as usize;
        let mode_id = p.param_id("Mode");
        let padded = vec![x.iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect::<Vec<f32>>()];
        let automation = [
            Automation { time: 26_000, id: mode_id, value: 1.0 },
            Automation { time: 57_000, id: mode_id, value: 0.0 },
            Automation { time: 70_000, id: mode_id, value: 1.0 },
        ];
        let out = p.render(&padded, &[512], &automation);
        (out[0][lat..lat + x.len()].to_vec(), lat)
    };
    let (computed, lat_compute) = bounce(false);
    let (spun, lat_spin) = bounce(true);
    assert_eq!(lat_compute as u32, expected_offline_latency(sr, 512, LatencyChoice::Ms80));
    let ahead = engine::render_ahead_samples(sr) as u32;
    assert_eq!(lat_spin as u32, expected_latency_with(sr, 512, LatencyChoice::Ms80, UnheardChoice::SpinUp) + ahead);
    eprintln!("80 ms at 44.1 kHz: {lat_compute} samples computing both, {lat_spin} heard slot only");
    assert!(lat_spin > lat_compute);
    let first = computed.iter().zip(&spun).position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(first.is_none(), "the bounces differ first at input sample {first:?}");
    assert!(spun.iter().any(|v| v.abs() > 0.01), "the bounce is not silent");
}
