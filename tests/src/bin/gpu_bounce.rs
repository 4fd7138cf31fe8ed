//! An offline bounce through a given CLAP bundle with the plugin's persisted `device` setting
//! chosen, for `scripts/gpu_check.sh`: the CUDA build's bundle bounced with `device=gpu` and with
//! `device=cpu`, and the two compared (`streamspeech-vocoder device-check --compare`).
//!
//! `gpu_bounce --bundle X.clap --models DIR --input IN.wav --output OUT.wav [--device auto|cpu|gpu]
//! [--mode original|modified]`
//!
//! Unlike the test harness it takes every path explicitly (it runs on a GPU machine from a copied
//! checkout), and it does not check the bundle's age. Offline render mode (as a DAW bounces),
//! stereo, 512-sample blocks, the reported latency removed.

use std::path::PathBuf;
use std::time::Instant;

use clack_host::prelude::PluginEntry;
use host_tests::clap_host::{ClapPlugin, state_json};
use streamspeech_cli::audio_io::{self, Audio, Bits};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let need = |name: &str| flag(name).unwrap_or_else(|| panic!("{name} is required (see the file's header)"));
    let bundle = PathBuf::from(need("--bundle"));
    let models = PathBuf::from(need("--models"));
    let input = PathBuf::from(need("--input"));
    let output = PathBuf::from(need("--output"));
    let device = flag("--device").unwrap_or_else(|| "auto".into());
    assert!(["auto", "cpu", "gpu"].contains(&device.as_str()), "--device auto|cpu|gpu");
    let modified = flag("--mode").is_some_and(|m| m == "modified");

    // SAFETY: set before the plugin (or any other thread) reads the environment.
    unsafe { std::env::set_var(streamspeech_vocoder::models::MODELS_ENV, std::fs::canonicalize(&models).expect("--models folder")) };
    let audio = audio_io::read_audio(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let stereo: Vec<Vec<f32>> = if audio.channels.len() == 1 { vec![audio.channels[0].clone(); 2] } else { audio.channels.clone() };
    let frames = stereo[0].len();

    // SAFETY: loading the plugin bundle named on the command line.
    let entry = unsafe { PluginEntry::load(&bundle) }.unwrap_or_else(|e| panic!("{}: {e:?}", bundle.display()));
    let mut p = ClapPlugin::new(&entry);
    p.set_device(&device);
    p.set_offline(true);
    p.select_channels(2);
    if modified {
        let mode = p.param_id("Mode");
        p.set_params_inactive(&[(mode, 1.0)]);
    }
    p.activate(audio.rate as f64, 1, 512);
    let lat = p.latency() as usize;
    let padded: Vec<Vec<f32>> = stereo.iter().map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect()).collect();
    let t0 = Instant::now();
    let out = p.render(&padded, &[512], &[]);
    let secs = t0.elapsed().as_secs_f64();
    let restored = state_json(&p.save_state());
    let channels: Vec<Vec<f32>> = out.iter().map(|c| c[lat..lat + frames].to_vec()).collect();
    audio_io::write_wav(&output, &Audio { rate: audio.rate, channels }, Bits::Float32, true).expect("bounce written");
    println!(
        "bounced {:.1} s with device={} (persisted {}) in {secs:.2} s ({:.1}× real time), latency {lat} samples: {}",
        frames as f64 / audio.rate as f64,
        device,
        restored["fields"]["device"],
        frames as f64 / audio.rate as f64 / secs,
        output.display()
    );
}
