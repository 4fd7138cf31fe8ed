//! The README's main job, after `cargo xtask demo` has fetched the models and bundled the
//! plugin: load the **bundled** CLAP plugin with a host (clack-host, offline render mode, as a
//! DAW bounces), bounce a demo clip with Mode automated Original → Modified, and write the WAV
//! and the comparison report (the Original-only and Modified-only bounces beside it).
//!
//! `cargo run --release -p host-tests --bin demo_bounce -- [INPUT] [--switch SECONDS] [--out DIR]`

use std::path::PathBuf;
use std::time::Instant;

use host_tests::clap_host::{Automation, ClapPlugin, load_entry, use_models};
use streamspeech_cli::audio_io::{self, Audio, Bits};
use streamspeech_cli::render::{MODIFIED, ORIGINAL, Switch};
use streamspeech_cli::report::{self, ModelInfo, Panel, RunFacts};

fn main() {
    let root = host_tests::workspace_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let input_path = args
        .iter()
        .find(|a| !a.starts_with("--") && flag("--switch").as_deref() != Some(a.as_str()) && flag("--out").as_deref() != Some(a.as_str()))
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav"));
    let switch_at: f64 = flag("--switch").and_then(|s| s.parse().ok()).unwrap_or(1.8);
    let out_dir = flag("--out").map(PathBuf::from).unwrap_or_else(|| root.join("target/demo"));
    std::fs::create_dir_all(&out_dir).expect("output folder");

    let input = audio_io::read_audio(&input_path).unwrap_or_else(|e| panic!("{e}"));
    let stereo = Audio { rate: input.rate, channels: if input.channels.len() == 1 { vec![input.channels[0].clone(); 2] } else { input.channels.clone() } };
    use_models(true);
    let entry = load_entry();
    let bounce = |automation_to_modified: Option<f64>, initial_modified: bool| -> (Audio, u32, f64) {
        let mut p = ClapPlugin::new(&entry);
        p.set_offline(true);
        p.select_channels(2);
        let mode_id = p.param_id("Mode");
        if initial_modified {
            p.set_params_inactive(&[(mode_id, 1.0)]);
        }
        p.activate(stereo.rate as f64, 1, 512);
        let lat = p.latency() as usize;
        let padded: Vec<Vec<f32>> = stereo.channels.iter().map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect()).collect();
        let automation: Vec<Automation> = automation_to_modified
            .map(|t| Automation { time: (t * stereo.rate as f64).round() as u64, id: mode_id, value: 1.0 })
            .into_iter()
            .collect();
        let t0 = Instant::now();
        let out = p.render(&padded, &[512], &automation);
        let secs = t0.elapsed().as_secs_f64();
        let channels = out.iter().map(|c| c[lat..lat + stereo.frames()].to_vec()).collect();
        (Audio { rate: stereo.rate, channels }, lat as u32, secs)
    };
    let t_all = Instant::now();
    let (switched, latency, secs) = bounce(Some(switch_at), false);
    let wav = out_dir.join("bounce_original_to_modified.wav");
    audio_io::write_wav(&wav, &switched, Bits::Float32, true).expect("bounce written");
    let (original, _, _) = bounce(None, false);
    let (modified, _, _) = bounce(None, true);

    // The report describes the model files the plugin loaded (the repository's models/).
    let dir = root.join("models");
    let mut infos = Vec::new();
    let mut configs = Vec::new();
    for (slot, name) in [(ORIGINAL, "original"), (MODIFIED, "modified")] {
        let path = dir.join(vocoder::fetch::default_file(name).unwrap());
        let loaded = vocoder::load_vocoder(&path, None, &candle_core::Device::Cpu).expect("default model loads");
        let verdict = vocoder::health::probe(&loaded.vocoder).ok();
        configs.push(loaded.vocoder.config().clone());
        infos.push(ModelInfo::new(slot, &path, &loaded, verdict));
    }
    let switches = [Switch { seconds: switch_at, slot: MODIFIED }];
    let panels = [
        Panel { name: "Original (plugin bounce)", audio: &original },
        Panel { name: "Modified (plugin bounce)", audio: &modified },
        Panel { name: "Original → Modified (plugin bounce, Mode automated)", audio: &switched },
    ];
    let facts = RunFacts { models: infos, chunk_ms: 80, block_size: 512, latency_samples: latency, compute_seconds: secs };
    let rep_dir = out_dir.join("report");
    report::write_report(&rep_dir, &input_path.display().to_string(), &stereo, &panels, &switches, &configs[0], facts).expect("report written");
    println!("bounced {} through {} (offline, Mode → Modified at {switch_at} s)", input_path.display(), host_tests::clap_bundle().display());
    println!("  {}", wav.display());
    println!("  {}", rep_dir.join("spectrogram.png").display());
    println!("  {}", rep_dir.join("report.json").display());
    println!("latency {latency} samples; three bounces took {:.1} s", t_all.elapsed().as_secs_f64());
    println!("demo folder: {}", out_dir.display());
}
