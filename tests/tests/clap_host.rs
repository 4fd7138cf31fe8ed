//! The built CLAP bundle, loaded by a real CLAP host (clack-host).

use host_tests::clap_host::{Automation, ClapPlugin, state_bytes, state_json};
use host_tests::signals::{expected_mode_switch, max_abs_diff, test_signal};
use streamspeech_vocoder::{LatencyChoice, expected_latency, mode_fade_samples};

/// This file tests the plugin as hosts see it with empty mode slots (no default models found):
/// each slot passes the latency-delayed input. Rendering is offline (a DAW bounce) unless a test
/// says otherwise, so results do not depend on thread timing.
fn load_entry() -> clack_host::prelude::PluginEntry {
    host_tests::clap_host::use_models(false);
    host_tests::clap_host::load_entry()
}

fn offline(entry: &clack_host::prelude::PluginEntry) -> ClapPlugin {
    let mut p = ClapPlugin::new(entry);
    p.set_offline(true);
    p
}

const RATES: [f64; 3] = [44_100.0, 48_000.0, 96_000.0];

fn stereo_input(len: usize, sr: f32) -> Vec<Vec<f32>> {
    vec![test_signal(len, sr, 1), test_signal(len, sr, 2)]
}

/// What the shell must output at mix 100 %: the mono sum, delayed by exactly `latency`.
fn expected_wet(input: &[Vec<f32>], latency: usize) -> Vec<f32> {
    let len = input[0].len();
    (0..len)
        .map(|n| {
            if n < latency {
                0.0
            } else {
                input.iter().map(|c| c[n - latency]).sum::<f32>() / input.len() as f32
            }
        })
        .collect()
}

fn latency_index(choice: LatencyChoice) -> f64 {
    LatencyChoice::ALL.iter().position(|c| *c == choice).unwrap() as f64
}

#[test]
fn discovery_and_ids() {
    let entry = load_entry();
    let factory = entry.get_plugin_factory().expect("plugin factory");
    let descriptors: Vec<_> = factory.plugin_descriptors().collect();
    assert_eq!(descriptors.len(), 1);
    let d = &descriptors[0];
    assert_eq!(d.id().unwrap().to_str().unwrap(), streamspeech_vocoder::CLAP_ID);
    assert_eq!(d.name().unwrap().to_str().unwrap(), "StreamSpeech Vocoder");
    let features: Vec<String> = d.features().map(|f| f.to_string_lossy().into_owned()).collect();
    assert!(features.iter().any(|f| f == "audio-effect"), "{features:?}");
    assert!(features.iter().any(|f| f == "stereo"), "{features:?}");
    assert!(features.iter().any(|f| f == "mono"), "{features:?}");
}

#[test]
fn parameter_list_ranges_and_text() {
    let entry = load_entry();
    let mut p = ClapPlugin::new(&entry);
    let params = p.params();
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Mode", "Latency", "Mix", "Output", "Bypass", "Task"]);
    let task = &params[5];
    assert_eq!((task.min, task.max, task.default), (0.0, 1.0, 0.0), "Task: Resynthesize (default) | Translate");
    assert!(!task.automatable && task.stepped, "Task changes the latency: not automatable");

    let mode = &params[0];
    assert_eq!((mode.min, mode.max, mode.default), (0.0, 1.0, 0.0));
    assert!(mode.automatable && mode.stepped);
    let latency = &params[1];
    assert_eq!((latency.min, latency.max), (0.0, 5.0));
    assert!((latency.default - 2.0).abs() < 1e-6, "default Latency is 80 ms (index 2)");
    // Automatable, so hosts that list only automatable parameters show it (changes closer than
    // a second are coalesced, tested with VST3).
    assert!(latency.automatable);
    let bypass = &params[4];
    assert!(bypass.is_bypass, "Bypass carries CLAP's bypass flag");
    assert_eq!((bypass.min, bypass.max, bypass.default), (0.0, 1.0, 0.0));
    let mix = &params[2];
    assert_eq!((mix.min, mix.max, mix.default), (0.0, 1.0, 1.0));
    assert!(mix.automatable);
    // nice-plug exposes continuous parameters to CLAP hosts normalised (0..1); the text
    // conversions carry the units.
    let out = &params[3];
    assert_eq!((out.min, out.max), (0.0, 1.0));
    assert!((out.default - 24.0 / 36.0).abs() < 1e-6, "default Output is 0 dB");
    assert!(out.automatable);

    let (mode_id, lat_id, mix_id, out_id) = (mode.id, latency.id, mix.id, out.id);
    assert_eq!(p.value_to_text(mode_id, 0.0), "Original");
    assert_eq!(p.value_to_text(mode_id, 1.0), "Modified");
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-6);
    assert!(near(p.text_to_value(mode_id, "Modified"), 1.0));
    for (i, c) in LatencyChoice::ALL.iter().enumerate() {
        assert_eq!(p.value_to_text(lat_id, i as f64), format!("{} ms", c.millis()));
        assert!(near(p.text_to_value(lat_id, &format!("{} ms", c.millis())), i as f64), "{c:?}");
    }
    assert_eq!(p.value_to_text(mix_id, 0.5), "50.0 %");
    let v = p.text_to_value(mix_id, "25%").unwrap();
    assert!((v - 0.25).abs() < 1e-6, "{v}");
    assert_eq!(p.value_to_text(out_id, 0.0), "-24.0 dB");
    assert_eq!(p.value_to_text(out_id, 1.0), "12.0 dB");
    assert_eq!(p.value_to_text(out_id, 0.5), "-6.0 dB");
    let v = p.text_to_value(out_id, "3.5 dB").unwrap();
    assert!((v - 27.5 / 36.0).abs() < 1e-6, "{v}");
    assert_eq!(p.text_to_value(out_id, "loud"), None);
}

#[test]
fn reported_latency_matches_engine_for_every_choice_and_rate() {
    let entry = load_entry();
    for sr in RATES {
        for choice in LatencyChoice::ALL {
            let mut p = offline(&entry);
            let lat_id = p.param_id("Latency");
            p.set_params_inactive(&[(lat_id, latency_index(choice))]);
            p.activate(sr, 1, 4096);
            let expected = expected_latency(sr as u32, 4096, choice);
            assert_eq!(p.latency(), expected, "{sr} Hz, {choice:?}");
            // And the audio really is delayed by exactly that much.
            let len = expected as usize + 5000;
            let input = stereo_input(len, sr as f32);
            let out = p.render(&input, &[512], &[]);
            let want = expected_wet(&input, expected as usize);
            assert!(max_abs_diff(&out[0], &want) < 1e-6, "{sr} Hz, {choice:?}");
        }
    }
}

#[test]
fn latency_change_while_active_restarts_and_rereports() {
    let entry = load_entry();
    let mut p = offline(&entry);
    let lat_id = p.param_id("Latency");
    p.activate(48_000.0, 1, 1024);
    assert_eq!(p.latency(), expected_latency(48_000, 1024, LatencyChoice::Ms80));
    assert_eq!(p.latency(), 3840 + 480, "no models: the 80 ms block + half the 20 ms mode fade");
    let input = stereo_input(4096, 48_000.0);
    let before = p.latency_changed_count();
    // The user picks 320 ms in the generic UI: the host sends the change with the next block.
    p.render(&input, &[256], &[Automation { time: 100, id: lat_id, value: latency_index(LatencyChoice::Ms320) }]);
    let restarted = p.pump_main_thread();
    assert!(restarted, "the plugin must request a restart so the host can re-query latency");
    assert!(p.latency_changed_count() > before, "host latency.changed() was not called");
    assert_eq!(p.latency(), expected_latency(48_000, 1024, LatencyChoice::Ms320));
    assert!(p.is_active());
}

#[test]
fn irregular_block_sizes_at_every_rate_and_max_block() {
    let entry = load_entry();
    for sr in RATES {
        for max_block in [32u32, 512, 8192] {
            let mut p = offline(&entry);
            p.activate(sr, 1, max_block);
            let lat = p.latency() as usize;
            let input = stereo_input(lat + 20_000, sr as f32);
            let out = p.render(&input, &[1, 7, 64, 480, 4096], &[]);
            let want = expected_wet(&input, lat);
            for ch in &out {
                assert!(max_abs_diff(ch, &want) < 1e-6, "{sr} Hz, max block {max_block}");
            }
        }
    }
}

#[test]
fn mix_zero_is_the_phase_aligned_dry_signal_per_channel() {
    let entry = load_entry();
    let mut p = offline(&entry);
    let mix_id = p.param_id("Mix");
    p.set_params_inactive(&[(mix_id, 0.0)]);
    p.activate(48_000.0, 1, 1024);
    let lat = p.latency() as usize;
    let input = stereo_input(lat + 8000, 48_000.0);
    let out = p.render(&input, &[333], &[]);
    for c in 0..2 {
        let want: Vec<f32> = (0..input[c].len()).map(|n| if n < lat { 0.0 } else { input[c][n - lat] }).collect();
        assert!(max_abs_diff(&out[c], &want) < 1e-6, "channel {c}");
    }
    // The two channels stay different: the dry path keeps the input's channels.
    assert!(max_abs_diff(&out[0], &out[1]) > 0.01);
}

#[test]
fn output_gain_in_db() {
    let entry = load_entry();
    let mut p = offline(&entry);
    let out_id = p.param_id("Output");
    let minus6 = p.text_to_value(out_id, "-6 dB").unwrap();
    p.set_params_inactive(&[(out_id, minus6)]);
    p.activate(44_100.0, 1, 1024);
    let lat = p.latency() as usize;
    let input = stereo_input(lat + 4000, 44_100.0);
    let out = p.render(&input, &[256], &[]);
    let g = 10f32.powf(-6.0 / 20.0);
    let want: Vec<f32> = expected_wet(&input, lat).iter().map(|x| x * g).collect();
    assert!(max_abs_diff(&out[0], &want) < 1e-5);
}

#[test]
fn mode_automation_lands_on_its_sample() {
    let entry = load_entry();
    for (sr, t) in [(48_000.0, 12_345u64), (44_100.0, 20_001)] {
        let mut p = offline(&entry);
        let mode_id = p.param_id("Mode");
        p.activate(sr, 1, 4096);
        let lat = p.latency() as u64;
        let fade = mode_fade_samples(sr as f32);
        let input = stereo_input(t as usize + lat as usize + 10_000, sr as f32);
        // Irregular blocks so the event never falls on a block boundary by luck.
        let out = p.render(&input, &[1000, 77, 4096, 3], &[Automation { time: t, id: mode_id, value: 1.0 }]);
        let mono = expected_wet(&input, lat as usize);
        let want = expected_mode_switch(&mono, lat, t, fade);
        let diff = max_abs_diff(&out[0], &want);
        assert!(diff < 1e-5, "{sr} Hz: mode switch misplaced (max diff {diff})");
        // Well before the switch the output is the Original slot, well after it the Modified one.
        let before = (t + lat - fade) as usize;
        let after = (t + lat + fade) as usize;
        assert!((out[0][before - 1] - mono[before - 1]).abs() < 1e-6);
        assert!((out[0][after] + mono[after]).abs() < 1e-6);
    }
}

/// nice-plug's CLAP state: a little-endian u64 length, then the JSON.
#[test]
fn state_round_trip_restores_params_and_persisted_fields() {
    let entry = load_entry();
    let mut a = ClapPlugin::new(&entry);
    let ids: Vec<u32> = ["Mode", "Latency", "Mix", "Output"].iter().map(|n| a.param_id(n)).collect();
    let minus_7_5 = a.text_to_value(ids[3], "-7.5 dB").unwrap();
    a.set_params_inactive(&[(ids[0], 1.0), (ids[1], 4.0), (ids[2], 0.25), (ids[3], minus_7_5)]);
    // Persisted fields are set by the editor; here we put them into the saved JSON the way the
    // editor would have, load that, and check they survive a save → fresh instance → load.
    let mut state = state_json(&a.save_state());
    let fields = state["fields"].as_object_mut().expect("fields");
    assert!(fields.contains_key("model-original") && fields.contains_key("device"), "{fields:?}");
    assert_eq!(fields["worker-threads"], "\"auto\"", "a new instance's worker threads follow the machine");
    fields.insert("model-original".into(), serde_json::json!("\"/models/my_hifigan.safetensors\""));
    fields.insert("model-modified".into(), serde_json::json!("\"/models/thesis_grc.safetensors\""));
    fields.insert("device".into(), serde_json::json!("\"gpu\""));
    fields.insert("worker-threads".into(), serde_json::json!("{\"fixed\":2}"));
    a.load_state(&state_bytes(&state));
    let saved = a.save_state();

    let mut b = ClapPlugin::new(&entry);
    b.load_state(&saved);
    for id in &ids {
        assert_eq!(a.param_value(*id), b.param_value(*id));
    }
    assert!((b.param_value(ids[0]) - 1.0).abs() < 1e-6);
    assert!((b.param_value(ids[1]) - 4.0).abs() < 1e-6);
    assert!((b.param_value(ids[2]) - 0.25).abs() < 1e-6);
    let out_value = b.param_value(ids[3]);
    assert_eq!(b.value_to_text(ids[3], out_value), "-7.5 dB");
    let restored = state_json(&b.save_state());
    assert_eq!(restored["fields"]["model-original"], "\"/models/my_hifigan.safetensors\"");
    assert_eq!(restored["fields"]["model-modified"], "\"/models/thesis_grc.safetensors\"");
    assert_eq!(restored["fields"]["device"], "\"gpu\"");
    assert_eq!(restored["fields"]["worker-threads"], "{\"fixed\":2}");
    // The restored Latency is the one reported once active.
    b.activate(48_000.0, 1, 512);
    assert_eq!(b.latency(), expected_latency(48_000, 512, LatencyChoice::Ms320));
}

#[test]
fn deactivate_reactivate_and_sample_rate_change_leave_no_stale_audio() {
    let entry = load_entry();
    let mut p = offline(&entry);
    p.activate(44_100.0, 1, 2048);
    let input = stereo_input(10_000, 44_100.0);
    p.render(&input, &[512], &[]);
    p.deactivate();
    p.activate(96_000.0, 1, 2048);
    let lat = p.latency() as usize;
    assert_eq!(lat as u32, expected_latency(96_000, 2048, LatencyChoice::Ms80));
    let input = stereo_input(lat + 3000, 96_000.0);
    let out = p.render(&input, &[512], &[]);
    // Nothing from the 44.1 kHz session comes out: silence until the new input arrives.
    assert!(out[0][..lat].iter().all(|x| *x == 0.0));
    assert!(max_abs_diff(&out[0], &expected_wet(&input, lat)) < 1e-6);
}

#[test]
fn nan_and_inf_input_never_reach_the_output() {
    let entry = load_entry();
    let mut p = offline(&entry);
    p.activate(48_000.0, 1, 512);
    let lat = p.latency() as usize;
    let mut input = stereo_input(lat + 4000, 48_000.0);
    for n in (0..input[0].len()).step_by(97) {
        input[0][n] = f32::NAN;
        input[1][n] = f32::INFINITY;
    }
    let out = p.render(&input, &[128], &[]);
    assert!(out.iter().flatten().all(|x| x.is_finite()));
}

#[test]
fn mono_and_stereo_layouts() {
    let entry = load_entry();
    let mut p = offline(&entry);
    let configs = p.port_configs();
    let layouts: Vec<(u32, u32)> = configs.iter().map(|c| (c.2, c.3)).collect();
    assert!(layouts.contains(&(2, 2)) && layouts.contains(&(1, 1)), "{configs:?}");
    p.select_channels(1);
    p.activate(48_000.0, 1, 1024);
    let lat = p.latency() as usize;
    let x = vec![test_signal(lat + 4000, 48_000.0, 3)];
    let y = p.render(&x, &[100, 1024], &[]);
    assert_eq!(y.len(), 1);
    assert!(max_abs_diff(&y[0], &expected_wet(&x, lat)) < 1e-6);
}

#[test]
fn realtime_rendering_with_empty_slots_is_the_delayed_input() {
    let entry = load_entry();
    let mut p = ClapPlugin::new(&entry);
    p.set_offline(false);
    p.activate(48_000.0, 1, 512);
    let lat = p.latency() as usize;
    let input = stereo_input(lat + 20_000, 48_000.0);
    let out = p.render_paced(&input, 512, 48_000.0);
    // Whatever the worker's timing, an empty Original slot outputs the delayed mono input.
    assert!(max_abs_diff(&out[0], &expected_wet(&input, lat)) < 1e-6);
}

#[test]
fn offline_bounce_is_bit_identical_for_any_block_size() {
    let entry = load_entry();
    let input = stereo_input(50_000, 44_100.0);
    let mut renders = Vec::new();
    for blocks in [vec![1usize], vec![64], vec![512], vec![4096], vec![3, 1000, 17, 4096, 250]] {
        let mut p = offline(&entry);
        p.activate(44_100.0, 1, 4096);
        renders.push(p.render(&input, &blocks, &[]));
    }
    for (k, r) in renders.iter().enumerate().skip(1) {
        let first = (0..r[0].len()).find(|&i| r[0][i] != renders[0][0][i] || r[1][i] != renders[0][1][i]);
        assert!(first.is_none(), "bounce {k} differs from bounce 0 first at sample {first:?}");
    }
}

/// A unit vocoder (CodeHiFiGAN) loaded into the Modified slot: the plugin cannot feed it mel
/// (it needs the translator's units), so Modified plays the latency-delayed dry signal — no
/// noise, no crash — while the slot's status says why (unit-tested in the plugin crate).
#[test]
fn unit_vocoder_in_a_slot_plays_the_delayed_dry_signal() {
    let entry = load_entry();
    let mut p = offline(&entry);
    let unit_model = host_tests::workspace_root().join("vocoder/tests/fixtures/units/code_tiny/g_tiny.pth");
    let mut state = state_json(&p.save_state());
    let fields = state["fields"].as_object_mut().expect("fields");
    fields.insert("model-modified".into(), serde_json::json!(serde_json::to_string(&unit_model.to_string_lossy()).unwrap()));
    p.load_state(&state_bytes(&state));
    let mode_id = p.param_id("Mode");
    p.set_params_inactive(&[(mode_id, 1.0)]);
    p.activate(48_000.0, 1, 512);
    let lat = p.latency() as usize;
    let input = stereo_input(lat + 24_000, 48_000.0);
    let out = p.render(&input, &[512], &[]);
    let want = expected_wet(&input, lat);
    // The test build gives a passthrough Modified slot the opposite polarity (host-test-slots).
    let neg: Vec<f32> = want.iter().map(|v| -v).collect();
    let diff = max_abs_diff(&out[0], &want).min(max_abs_diff(&out[0], &neg));
    assert!(diff < 1e-6, "Modified with a unit vocoder is not the delayed dry signal (max abs {diff})");
    assert!(out[0].iter().all(|v| v.is_finite()));
}

/// The host's bypass button: from the automation sample on, the output crossfades (20 ms) to
/// each channel's own input delayed by the reported latency — latency-compensated, click-free,
/// sample-accurate — and back.
#[test]
fn bypass_is_the_latency_compensated_input_per_channel() {
    let entry = load_entry();
    let mut p = offline(&entry);
    let bypass_id = p.param_id("Bypass");
    p.activate(48_000.0, 1, 1024);
    let lat = p.latency() as usize;
    let fade = mode_fade_samples(48_000.0) as usize;
    let (on, off) = (10_007u64, 30_011u64);
    let input = stereo_input(lat + 40_000, 48_000.0);
    let out = p.render(&input, &[256, 1000], &[
        Automation { time: on, id: bypass_id, value: 1.0 },
        Automation { time: off, id: bypass_id, value: 0.0 },
    ]);
    let mono = expected_wet(&input, lat);
    for c in 0..2 {
        let dry = |n: usize| if n < lat { 0.0 } else { input[c][n - lat] };
        for n in 0..out[c].len() {
            let b = if (n as u64) < on {
                0.0
            } else if (n as u64) < off {
                ((n as u64 - on + 1) as f32 / fade as f32).min(1.0)
            } else {
                1.0 - ((n as u64 - off + 1) as f32 / fade as f32).min(1.0)
            };
            let want = (1.0 - b) * mono[n] + b * dry(n);
            assert!((out[c][n] - want).abs() < 1e-5, "channel {c} sample {n}: {} vs {want}", out[c][n]);
        }
        // Fully bypassed in between: each channel's own delayed input, not the mono wet signal.
        let mid = (on + off) as usize / 2;
        assert!((out[c][mid] - dry(mid)).abs() < 1e-6);
    }
    assert!(max_abs_diff(&out[0], &out[1]) > 0.01, "bypass keeps the channels apart");
}
