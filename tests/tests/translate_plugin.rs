//! The Translate task through the built CLAP and VST3 bundles, with the small real-format
//! StreamSpeech checkpoint and the tiny 1000-unit CodeHiFiGAN of translator/tests/fixtures and a
//! Spanish clip: the reported latency per segment and rate, a bounce equal to the CLI's
//! `translate --simultaneous` render bit for bit at any block size, Mode automation on its
//! sample, the slots' state round trip, a missing translator playing the dry signal, and a paced
//! real-time run (the bundle is built with `assert_process_allocs`: an allocation in `process`
//! aborts the test).

use std::path::PathBuf;

use host_tests::clap_host::{Automation, ClapPlugin, state_bytes, state_json};
use host_tests::signals::{first_difference, spanish_clip as input};
use streamspeech_vocoder::translate::{TranslatorFiles, UnitVoiceFile, planned_translate};
use streamspeech_vocoder::{LatencyChoice, VocoderParams, expected_translate_latency, mode_fade_samples};

fn fixtures() -> PathBuf {
    host_tests::workspace_root().join("translator/tests/fixtures")
}

fn translator_files() -> TranslatorFiles {
    TranslatorFiles {
        checkpoint: fixtures().join("streamspeech/small.pt").to_string_lossy().into(),
        data: fixtures().join("es-en-small").to_string_lossy().into(),
    }
}

fn unit_file() -> UnitVoiceFile {
    UnitVoiceFile { path: fixtures().join("simultaneous/unit_vocoder_tiny.safetensors").to_string_lossy().into(), cond: None }
}

/// The same slots in this process (for the expected values).
fn params_like(translator: Option<TranslatorFiles>, original: Option<UnitVoiceFile>, modified: Option<UnitVoiceFile>) -> VocoderParams {
    let p = VocoderParams::default();
    *p.translator.write() = translator;
    *p.unit_original.write() = original;
    *p.unit_modified.write() = modified;
    p
}

/// A persisted field's value as nice-plug stores it (JSON text inside the state's JSON).
fn field<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::Value::String(serde_json::to_string(v).unwrap())
}

fn latency_index(choice: LatencyChoice) -> f64 {
    choice.index() as f64
}

/// A CLAP instance in Translate with these slots and Latency choice (inactive).
fn translating(entry: &clack_host::prelude::PluginEntry, translator: Option<TranslatorFiles>, original: Option<UnitVoiceFile>, modified: Option<UnitVoiceFile>, choice: LatencyChoice, offline: bool) -> ClapPlugin {
    let mut p = ClapPlugin::new(entry);
    p.set_offline(offline);
    let mut state = state_json(&p.save_state());
    let fields = state["fields"].as_object_mut().expect("fields");
    fields.insert("translator".into(), field(&translator));
    fields.insert("unit-original".into(), field(&original));
    fields.insert("unit-modified".into(), field(&modified));
    p.load_state(&state_bytes(&state));
    let (task, latency) = (p.param_id("Task"), p.param_id("Latency"));
    p.set_params_inactive(&[(task, 1.0), (latency, latency_index(choice))]);
    p.select_channels(1);
    p
}

/// `streamspeech-vocoder translate IN --simultaneous --segment-ms S --vocoder V -o OUT` on `x`
/// written as a float WAV at `rate`; the WAV it writes.
fn cli_render(x: &[f32], rate: u32, segment_ms: usize) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("ssv-translate-plugin-{}-{segment_ms}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (wav_in, wav_out) = (dir.join("in.wav"), dir.join("out.wav"));
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(&wav_in, spec).unwrap();
    for v in x {
        w.write_sample(*v).unwrap();
    }
    w.finalize().unwrap();
    let (t, u) = (translator_files(), unit_file());
    let args = streamspeech_cli::translate::TranslateArgs {
        input: &wav_in,
        translator: std::path::Path::new(&t.checkpoint),
        data: std::path::Path::new(&t.data),
        segment_ms,
        max_tokens: 200,
        vocoder: Some(std::path::Path::new(&u.path)),
        vocoder_config: None,
        mode: None,
        cond: None,
        speaker: None,
        no_dur_prediction: false,
        rate: None,
        no_health_check: true,
        output: Some(&wav_out),
        text: None,
        simultaneous: true,
        timeline: None,
        srt: None,
        single_utterance: false,
        progress: false,
        force: true,
    };
    streamspeech_cli::translate::translate_simultaneous(&args).expect("the CLI translates");
    let out: Vec<f32> = hound::WavReader::open(&wav_out).unwrap().samples::<f32>().map(|s| s.unwrap()).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

#[test]
fn reported_latency_is_the_timelines_delay_per_segment_and_rate() {
    let entry = host_tests::clap_host::load_entry();
    let like = params_like(Some(translator_files()), Some(unit_file()), None);
    println!("| Latency choice | segment | 44.1 kHz | 48 kHz | 96 kHz |");
    for choice in [LatencyChoice::Ms20, LatencyChoice::Ms160, LatencyChoice::Ms320, LatencyChoice::Ms640] {
        let mut row = format!("| {} ms | {} ms |", choice.millis(), streamspeech_vocoder::translate::segment_ms(choice));
        for rate in [44_100u32, 48_000, 96_000] {
            let mut p = translating(&entry, Some(translator_files()), Some(unit_file()), None, choice, true);
            p.activate(rate as f64, 1, 512);
            let want = expected_translate_latency(&like, rate, 512, choice);
            assert_eq!(p.latency(), want, "{} ms at {rate} Hz", choice.millis());
            let segment = streamspeech_vocoder::translate::segment_ms(choice) as u32;
            assert!(p.latency() > segment * rate / 1000, "the latency covers the segment");
            row += &format!(" {} ({:.1} ms) |", p.latency(), p.latency() as f64 * 1000.0 / rate as f64);
        }
        println!("{row}");
    }
    // Resynthesize stays the default: a fresh instance reports the vocoder engine's latency.
    let mut p = ClapPlugin::new(&entry);
    p.set_offline(true);
    p.activate(48_000.0, 1, 512);
    assert_eq!(p.latency(), streamspeech_vocoder::expected_offline_latency(48_000, 512, LatencyChoice::Ms80));
}

#[test]
fn bounce_is_the_cli_render_bit_for_bit_for_any_block_size() {
    let entry = host_tests::clap_host::load_entry();
    let rate = 44_100u32;
    let x = input(rate);
    let want = cli_render(&x, rate, 320);
    assert!(want.iter().any(|v| v.abs() > 1e-3), "the CLI render has speech");
    let like = params_like(Some(translator_files()), Some(unit_file()), None);
    let random: Vec<usize> = (0..997).map(|i| 1 + (i * 7919 + 13) % 3000).collect();
    for blocks in [vec![1usize], vec![64], vec![512], vec![4096], random] {
        let max_block = *blocks.iter().max().unwrap();
        let mut p = translating(&entry, Some(translator_files()), Some(unit_file()), None, LatencyChoice::Ms320, true);
        p.activate(rate as f64, 1, max_block as u32);
        let plan = planned_translate(&like.translate_slots(LatencyChoice::Ms320), LatencyChoice::Ms320, rate, max_block);
        assert_eq!(p.latency() as u64, plan.latency());
        // The raw output is the timeline delayed by the pipeline's reach (the host's delay
        // compensation then moves it `latency` earlier: speech at its decision + the queue).
        let reach = (plan.reach + plan.margin) as usize;
        let x = if blocks == [1] { &x[..rate as usize * 2] } else { &x[..] };
        let out = p.render(&[x.to_vec()], &blocks, &[]).remove(0);
        assert!(out[..reach].iter().all(|v| *v == 0.0), "{:?}: silence before the timeline", &blocks[..1]);
        let n = out.len() - reach;
        assert_eq!(first_difference(&out[reach..], &want[..n]), None, "{:?}: bounce vs CLI render", &blocks[..1]);
        println!("blocks {:?}…: {n} samples equal to the CLI render", &blocks[..1]);
    }
}

#[test]
fn mode_automation_lands_on_its_sample_and_a_mode_without_voice_plays_dry() {
    let entry = host_tests::clap_host::load_entry();
    let rate = 48_000u32;
    let x = input(rate);
    // Original voiced, Modified without a unit vocoder (the delayed dry signal).
    let voiced = {
        let mut p = translating(&entry, Some(translator_files()), Some(unit_file()), None, LatencyChoice::Ms320, true);
        p.activate(rate as f64, 1, 512);
        p.render(&[x.clone()], &[512], &[]).remove(0)
    };
    let mut p = translating(&entry, Some(translator_files()), Some(unit_file()), None, LatencyChoice::Ms320, true);
    p.activate(rate as f64, 1, 512);
    let lat = p.latency() as usize;
    let mode = p.param_id("Mode");
    let (t1, t2) = (rate as usize * 2, rate as usize * 3 + 333);
    let automation = [Automation { time: t1 as u64, id: mode, value: 1.0 }, Automation { time: t2 as u64, id: mode, value: 0.0 }];
    let out = p.render(&[x.clone()], &[512], &automation).remove(0);
    let half = mode_fade_samples(rate as f32) as usize / 2;
    assert_eq!(first_difference(&out[..t1 + lat - half], &voiced[..t1 + lat - half]), None, "Original before the switch");
    assert_eq!(first_difference(&out[t1 + lat + half..t2 + lat - half], &x[t1 + half..t2 - half]), None, "Modified: the dry signal delayed by the latency");
    assert_eq!(first_difference(&out[t2 + lat + half..], &voiced[t2 + lat + half..]), None, "Original after the second switch");
    let c = t1 + lat;
    let w = std::f32::consts::FRAC_PI_4.cos();
    assert!((out[c] - w * (voiced[c] + x[t1])).abs() < 1e-5, "the fade is centred on the automation sample");
}

#[test]
fn a_missing_or_mismatched_translator_plays_the_delayed_dry_signal() {
    let entry = host_tests::clap_host::load_entry();
    let rate = 48_000u32;
    let x = input(rate);
    let gone = TranslatorFiles { checkpoint: "/nonexistent/streamspeech.simultaneous.es-en.pt".into(), data: translator_files().data };
    // A unit vocoder file where the checkpoint belongs: it loads as nothing, with the reason.
    let wrong = TranslatorFiles { checkpoint: unit_file().path, data: translator_files().data };
    // A unit vocoder for another unit vocabulary (100 units; the translator emits 1000).
    let other_units = UnitVoiceFile { path: host_tests::workspace_root().join("vocoder/tests/fixtures/units/code_tiny/g_tiny.pth").to_string_lossy().into(), cond: None };
    for (translator, voice) in [(None, Some(unit_file())), (Some(gone), Some(unit_file())), (Some(wrong), Some(unit_file())), (Some(translator_files()), Some(other_units))] {
        let what = format!("{translator:?} / {voice:?}");
        let mut p = translating(&entry, translator.clone(), voice.clone(), None, LatencyChoice::Ms320, true);
        p.activate(rate as f64, 1, 512);
        let lat = p.latency() as usize;
        let like = params_like(translator, voice, None);
        let slots = like.translate_slots(LatencyChoice::Ms320);
        assert!(slots.voices[0].voice().is_none() || slots.translator.translator().is_none(), "{what}");
        assert_eq!(lat as u32, expected_translate_latency(&like, rate, 512, LatencyChoice::Ms320), "{what}");
        let out = p.render(&[x.clone()], &[512], &[]).remove(0);
        assert_eq!(first_difference(&out[lat..], &x[..x.len() - lat]), None, "{what}: the dry signal delayed by the latency");
        let reason = format!("{} | {}", slots.translator.summary(), slots.voices[0].summary());
        assert!(reason.contains("dry") || reason.contains("not used"), "{what}: {reason}");
        println!("{reason}");
    }
}

#[test]
fn translate_slots_survive_a_state_round_trip() {
    let entry = host_tests::clap_host::load_entry();
    let modified = UnitVoiceFile { path: "/voices/unit_hifigan_film.pt".into(), cond: Some("/voices/speaker_emotion.npy".into()) };
    let mut a = translating(&entry, Some(translator_files()), Some(unit_file()), Some(modified.clone()), LatencyChoice::Ms640, true);
    let saved = a.save_state();
    let mut b = ClapPlugin::new(&entry);
    b.load_state(&saved);
    let (task, latency) = (b.param_id("Task"), b.param_id("Latency"));
    assert_eq!(b.param_value(task), 1.0, "Task = Translate");
    assert_eq!(b.param_value(latency), latency_index(LatencyChoice::Ms640));
    let restored = state_json(&b.save_state());
    assert_eq!(restored["fields"]["translator"], field(&Some(translator_files())));
    assert_eq!(restored["fields"]["unit-original"], field(&Some(unit_file())));
    assert_eq!(restored["fields"]["unit-modified"], field(&Some(modified)));
    // Task is not automatable.
    let task_desc = a.params().into_iter().find(|d| d.name == "Task").expect("a Task parameter");
    assert!(!task_desc.automatable, "Task changes the latency: not automatable");
}

#[test]
fn paced_real_time_translation_does_not_allocate_on_the_audio_thread() {
    let entry = host_tests::clap_host::load_entry();
    let rate = 48_000u32;
    let x = input(rate);
    let mut p = translating(&entry, Some(translator_files()), Some(unit_file()), None, LatencyChoice::Ms320, false);
    p.activate(rate as f64, 1, 512);
    // The bundle under test aborts on an allocation inside process() (assert_process_allocs).
    let out = p.render_paced(&[x.clone()], 512, rate as f64).remove(0);
    assert!(out.iter().all(|v| v.is_finite()));
    assert!(out.iter().any(|v| v.abs() > 1e-3), "translated speech (or the dry fallback) plays");
}

/// The same engine through the VST3 bundle: its latency and its offline bounce are the CLAP's.
#[test]
fn vst3_reports_the_same_latency_and_bounces_the_same_audio() {
    use host_tests::vst3_host::Vst3Plugin;
    let entry = host_tests::clap_host::load_entry();
    let rate = 48_000u32;
    let x = input(rate);
    let mut c = translating(&entry, Some(translator_files()), Some(unit_file()), None, LatencyChoice::Ms320, true);
    let clap_state = c.save_state();
    c.activate(rate as f64, 1, 512);
    let want = c.render(&[x.clone()], &[512], &[]).remove(0);
    let mut v = Vst3Plugin::new();
    // The same JSON; CLAP's stream carries its length first, VST3's is the JSON alone.
    assert!(serde_json::from_slice::<serde_json::Value>(&v.save_state()).is_ok(), "VST3's state is the JSON alone");
    v.load_state(&clap_state[8..]);
    v.activate(rate as f64, 512, 1, true);
    assert_eq!(v.latency(), c.latency());
    let out = v.render(&[x.clone()], &[512], &[]).remove(0);
    assert_eq!(first_difference(&out, &want), None, "VST3 bounce vs CLAP bounce");
}

/// Choosing Translate while active re-plans as a Latency change does: CLAP asks the host for a
/// restart and re-reports; VST3 builds the new engine off the audio thread, swaps it in at a
/// block boundary and reports its latency once it runs (`kLatencyChanged`), no re-activation.
#[test]
fn choosing_translate_while_active_replans_and_rereports_the_latency() {
    use host_tests::vst3_host::{Vst3Automation, Vst3Plugin};
    use vst3::Steinberg::Vst::RestartFlags_;
    let entry = host_tests::clap_host::load_entry();
    let rate = 48_000u32;
    let like = params_like(Some(translator_files()), Some(unit_file()), None);
    let want = expected_translate_latency(&like, rate, 512, LatencyChoice::Ms80);
    // CLAP: slots set, Task still Resynthesize.
    let mut p = translating(&entry, Some(translator_files()), Some(unit_file()), None, LatencyChoice::Ms80, true);
    let task = p.param_id("Task");
    p.set_params_inactive(&[(task, 0.0)]);
    p.activate(rate as f64, 1, 512);
    assert_ne!(p.latency(), want);
    let before = p.latency_changed_count();
    p.render(&[vec![0.0; 2048]], &[512], &[Automation { time: 100, id: task, value: 1.0 }]);
    assert!(p.pump_main_thread(), "a restart is requested");
    assert!(p.latency_changed_count() > before);
    assert_eq!(p.latency(), want, "the Translate engine's latency (Latency 80 ms: 320 ms segments)");
    // VST3: the same, without re-activation.
    let clap_state = p.save_state();
    let mut v = Vst3Plugin::new();
    v.load_state(&clap_state[8..]);
    let task = v.param_id("Task");
    v.set_normalized(task, 0.0);
    v.activate(rate as f64, 512, 1, true);
    assert_ne!(v.latency(), want);
    let x = input(rate);
    v.render(&[x[..rate as usize].to_vec()], &[512], &[Vst3Automation { time: 700, id: task, normalized: 1.0 }]);
    assert_eq!(v.latency(), want, "the host reads the latency of the plan that runs");
    let t0 = std::time::Instant::now();
    while v.restart_flags() & RestartFlags_::kLatencyChanged as i32 == 0 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(v.restart_flags() & RestartFlags_::kLatencyChanged as i32 != 0, "flags {:#x}", v.restart_flags());
}

/// A project file is a user file: Translate slots of the wrong shape, absurd paths or devices
/// never crash the plugin or the host; the instance comes up (in Translate, playing the dry
/// signal where a slot is unusable).
#[test]
fn hostile_translate_slots_in_a_project_play_dry() {
    let entry = host_tests::clap_host::load_entry();
    let rate = 48_000u32;
    let x = input(rate);
    let long = "x".repeat(100_000);
    let cases: Vec<(serde_json::Value, serde_json::Value)> = vec![
        (serde_json::json!("\"not an object\""), serde_json::json!("42")),
        (serde_json::json!("{\"checkpoint\": 7}"), serde_json::json!("{\"path\": null}")),
        (field(&Some(TranslatorFiles { checkpoint: "/dev/zero".into(), data: "/dev".into() })), field(&Some(UnitVoiceFile { path: "/dev/zero".into(), cond: Some("/dev/urandom".into()) }))),
        (field(&Some(TranslatorFiles { checkpoint: long.clone(), data: long.clone() })), field(&Some(UnitVoiceFile { path: long.clone(), cond: None }))),
        (field(&Some(TranslatorFiles { checkpoint: translator_files().checkpoint, data: "/proc/self".into() })), field(&Some(unit_file()))),
        (serde_json::json!("{not json"), serde_json::json!("")),
    ];
    for (translator, unit) in cases {
        let mut p = ClapPlugin::new(&entry);
        p.set_offline(true);
        let mut state = state_json(&p.save_state());
        let fields = state["fields"].as_object_mut().expect("fields");
        fields.insert("translator".into(), translator.clone());
        fields.insert("unit-original".into(), unit.clone());
        p.load_state(&state_bytes(&state));
        let task = p.param_id("Task");
        p.set_params_inactive(&[(task, 1.0)]);
        p.select_channels(1);
        p.activate(rate as f64, 1, 512);
        let lat = p.latency() as usize;
        let out = p.render(&[x[..rate as usize * 2].to_vec()], &[512], &[]).remove(0);
        assert_eq!(first_difference(&out[lat..], &x[..rate as usize * 2 - lat]), None, "{translator} / {unit}: the delayed dry signal");
    }
}
