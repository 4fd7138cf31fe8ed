//! The built VST3 bundle, loaded by a real VST3 host (the `vst3` crate's bindings + libloading).

use host_tests::signals::{expected_mode_switch, max_abs_diff, test_signal};
use host_tests::vst3_host::{Vst3Automation, Vst3Plugin, class_infos};
use streamspeech_vocoder::{LatencyChoice, expected_latency, mode_fade_samples};

/// Empty mode slots here (no default models found): the shell behaviour.
fn no_models() {
    host_tests::clap_host::use_models(false);
}
use vst3::Steinberg::Vst::RestartFlags_;

fn input(channels: usize, len: usize, sr: f32) -> Vec<Vec<f32>> {
    (0..channels).map(|c| test_signal(len, sr, c as u32 + 1)).collect()
}

fn expected_wet(input: &[Vec<f32>], latency: usize) -> Vec<f32> {
    (0..input[0].len())
        .map(|n| if n < latency { 0.0 } else { input.iter().map(|c| c[n - latency]).sum::<f32>() / input.len() as f32 })
        .collect()
}

fn latency_normalized(choice: LatencyChoice) -> f64 {
    LatencyChoice::ALL.iter().position(|c| *c == choice).unwrap() as f64 / 5.0
}

#[test]
fn discovery_and_class_id() {
    no_models();
    let classes = class_infos();
    let audio: Vec<_> = classes.iter().filter(|c| c.category == "Audio Module Class").collect();
    assert_eq!(audio.len(), 1, "{classes:?}");
    assert_eq!(audio[0].cid, streamspeech_vocoder::VST3_CLASS_ID);
    assert_eq!(audio[0].name, "StreamSpeech Vocoder");
    assert!(audio[0].sub_categories.starts_with("Fx"), "{}", audio[0].sub_categories);
}

#[test]
fn parameters_and_text() {
    no_models();
    let p = Vst3Plugin::new();
    let params = p.params();
    let titles: Vec<&str> = params.iter().map(|p| p.title.as_str()).collect();
    for t in ["Mode", "Latency", "Mix", "Output", "Bypass", "Task"] {
        assert!(titles.contains(&t), "{titles:?}");
    }
    let get = |t: &str| params.iter().find(|p| p.title == t).unwrap().clone();
    assert_eq!(get("Mode").step_count, 1);
    assert_eq!(get("Task").step_count, 1);
    assert!(!get("Task").automatable, "Task changes the latency: not automatable");
    assert!(get("Mode").automatable);
    assert_eq!(get("Latency").step_count, 5);
    // Automatable, so hosts that list only automatable parameters (Ardour) show it.
    assert!(get("Latency").automatable);
    let bypass: Vec<&str> = params.iter().filter(|p| p.bypass).map(|p| p.title.as_str()).collect();
    assert_eq!(bypass, ["Bypass"], "exactly one parameter is the host's bypass");
    assert_eq!(get("Bypass").step_count, 1);
    assert!((get("Latency").default_normalized - 0.4).abs() < 1e-6);
    assert!(get("Mix").automatable && get("Output").automatable);
    assert!(get("Output").units.contains("dB"), "{:?}", get("Output").units);
    let out = get("Output").id;
    assert_eq!(p.value_to_text(out, 0.0), "-24.0");
    assert_eq!(p.value_to_text(out, 1.0), "12.0");
    let v = p.text_to_value(out, "-6").unwrap();
    assert!((v - 0.5).abs() < 1e-6, "{v}");
    assert_eq!(p.value_to_text(get("Mode").id, 1.0), "Modified");
    assert_eq!(p.value_to_text(get("Latency").id, 1.0), "640 ms");
}

#[test]
fn latency_for_every_choice_mono_and_stereo() {
    no_models();
    for sr in [44_100.0, 48_000.0, 96_000.0] {
        for choice in LatencyChoice::ALL {
            let mut p = Vst3Plugin::new();
            let id = p.param_id("Latency");
            p.set_normalized(id, latency_normalized(choice));
            // Hosts also send it to the processor; setState/params both end up in the shared
            // parameter object of nice-plug's single-component wrapper.
            let channels = if choice == LatencyChoice::Ms40 { 1 } else { 2 };
            p.activate(sr, 1024, channels, false);
            let want = expected_latency(sr as u32, 1024, choice);
            assert_eq!(p.latency(), want, "{sr} Hz {choice:?}");
            let x = input(channels, want as usize + 3000, sr as f32);
            let y = p.render(&x, &[1, 7, 64, 480, 1024], &[]);
            assert!(max_abs_diff(&y[0], &expected_wet(&x, want as usize)) < 1e-6, "{sr} Hz {choice:?}");
        }
    }
}

/// A Latency change while active takes effect without a re-activation (Ardour never
/// re-activates): the new plan starts at the block of the change, continuing from the input the
/// old plan had, and from that very sample the output is delayed by the new latency, which is the
/// one the host reads (with `kLatencyChanged`). Changes closer than a second are coalesced:
/// 80 → 40 → 160 → 40 ms within 400 samples is one re-plan.
#[test]
fn latency_change_applies_without_reactivation_and_is_reported_when_it_runs() {
    no_models();
    let mut p = Vst3Plugin::new();
    let id = p.param_id("Latency");
    p.activate(48_000.0, 512, 2, true);
    let l80 = p.latency() as usize;
    assert_eq!(l80 as u32, expected_latency(48_000, 512, LatencyChoice::Ms80));
    let l40 = expected_latency(48_000, 512, LatencyChoice::Ms40) as usize;
    let x = input(2, l80 + 20_000, 48_000.0);
    let t = 700usize;
    let changes = [(t, LatencyChoice::Ms40), (t + 200, LatencyChoice::Ms160), (t + 400, LatencyChoice::Ms40)];
    let automation: Vec<Vst3Automation> =
        changes.iter().map(|(at, c)| Vst3Automation { time: *at as u64, id, normalized: latency_normalized(*c) }).collect();
    let y = p.render(&x, &[512], &automation);
    assert_eq!(p.latency() as usize, l40, "the host reads the latency of the plan that runs");
    let t0 = std::time::Instant::now();
    while p.restart_flags() & RestartFlags_::kLatencyChanged as i32 == 0 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(p.restart_flags() & RestartFlags_::kLatencyChanged as i32 != 0, "flags {:#x}", p.restart_flags());
    let mono: Vec<f32> = (0..x[0].len()).map(|n| (x[0][n] + x[1][n]) / 2.0).collect();
    for o in 0..y[0].len() {
        let lat = if o < t { l80 } else { l40 };
        let want = if o < lat { 0.0 } else { mono[o - lat] };
        assert!((y[0][o] - want).abs() < 1e-6, "sample {o}: {} vs {want} (latency {lat})", y[0][o]);
    }
}

#[test]
fn offline_bounce_with_mode_automation_is_sample_accurate() {
    let sr = 48_000.0;
    let t = 30_011u64;
    no_models();
    let mut p = Vst3Plugin::new();
    let mode = p.param_id("Mode");
    p.activate(sr, 4096, 2, true);
    let lat = p.latency() as u64;
    let fade = mode_fade_samples(sr as f32);
    let x = input(2, (t + lat) as usize + 8000, sr as f32);
    let y = p.render(&x, &[4096, 13, 999], &[Vst3Automation { time: t, id: mode, normalized: 1.0 }]);
    let mono = expected_wet(&x, lat as usize);
    let want = expected_mode_switch(&mono, lat, t, fade);
    let d = max_abs_diff(&y[1], &want);
    assert!(d < 1e-5, "mode switch misplaced (max diff {d})");
}

#[test]
fn offline_bounce_is_identical_for_any_block_size() {
    let sr = 44_100.0f64;
    let x = input(2, 50_000, sr as f32);
    let mut renders = Vec::new();
    no_models();
    for blocks in [vec![1usize], vec![64], vec![512], vec![4096], vec![3, 1000, 17, 4096, 250]] {
        let mut p = Vst3Plugin::new();
        p.activate(sr, 4096, 2, true);
        renders.push(p.render(&x, &blocks, &[]));
    }
    for (k, r) in renders.iter().enumerate().skip(1) {
        let first = (0..r[0].len()).find(|&i| r[0][i] != renders[0][0][i] || r[1][i] != renders[0][1][i]);
        assert!(first.is_none(), "bounce {k} differs from bounce 0 first at sample {first:?}");
    }
}

#[test]
fn state_round_trip() {
    no_models();
    let a = Vst3Plugin::new();
    let ids: Vec<u32> = ["Mode", "Latency", "Mix", "Output"].iter().map(|t| a.param_id(t)).collect();
    for (id, v) in ids.iter().zip([1.0, 0.8, 0.3, 0.25]) {
        a.set_normalized(*id, v);
    }
    let saved = a.save_state();
    assert!(!saved.is_empty());
    let mut b = Vst3Plugin::new();
    b.load_state(&saved);
    for id in &ids {
        assert!((a.normalized(*id) - b.normalized(*id)).abs() < 1e-6);
    }
    b.activate(48_000.0, 512, 2, false);
    assert_eq!(b.latency(), expected_latency(48_000, 512, LatencyChoice::Ms320));
}
